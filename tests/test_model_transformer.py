"""UniFace: forward contract, KV-cache decoding == full forward, save/load, clear errors."""

import json

import pytest
import torch
from torch import nn

from unif2ace_mini.model import (MMU, T2I, ModelConfig, SequenceBuilder, UniFace,
                                 condition_mask, task_from_ids)
from unif2ace_mini.model.attention import image_position_ids
from unif2ace_mini.tokenizers import Vocabulary, train_text_tokenizer

QUESTIONS = ["Is the person smiling?", "What colour are the eyes?"]
N_IMG = 4


@pytest.fixture(scope="module")
def setup():
    tok = train_text_tokenizer(QUESTIONS * 4 + ["yes no blue green red"], vocab_size=300)
    vocab = Vocabulary.from_tokenizers(tok, 16)
    return vocab, SequenceBuilder(tok, vocab, max_len=48, n_image_tokens=N_IMG)


def tiny(vocab, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=48, **kw)
    return UniFace(cfg.for_vocab(vocab), vocab).eval()


def prompts(vocab, builder):
    imgs = vocab.image_ids(torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]))
    return builder.mmu_prompt_batch(imgs, QUESTIONS)                      # left-padded (2, P)


class PoolingSlot(nn.Module):
    """A stand-in sequence-level layer: mixes every token with the mean of the masked tokens,
    the way a sequence router reads the pooled sequence."""

    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, x, task, token_mask=None, features=None):
        m = token_mask.float()[..., None]
        pooled = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
        shift = torch.tanh(self.proj(pooled)) * (1 + task.float()[:, None, None])
        return x + shift, {"balance_loss": pooled.pow(2).mean()}


def decode_matches_full_forward(model, vocab, builder, steps=5):
    prompt = prompts(vocab, builder)
    with torch.no_grad():
        out = model(prompt, use_cache=True)
        cache, ids, step_logits = out.past_key_values, prompt, [out.logits[:, -1]]
        for _ in range(steps):                   # greedy decoding, one token at a time
            nxt = step_logits[-1][:, :vocab.n_text].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], 1)
            out = model(nxt, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            step_logits.append(out.logits[:, -1])
        full = model(ids).logits                 # the same sequence in one pass
    p = prompt.shape[1]
    for i, logits in enumerate(step_logits):
        torch.testing.assert_close(logits, full[:, p - 1 + i], rtol=1e-4, atol=1e-5)
    assert cache.length == ids.shape[1] and cache.task.tolist() == [MMU, MMU]
    return ids, cache


@pytest.mark.parametrize("positions,image_positions", [("rope", 0), ("learned", 0),
                                                        ("rope", N_IMG)])
def test_kv_cache_decoding_equals_full_forward(setup, positions, image_positions):
    vocab, builder = setup
    decode_matches_full_forward(tiny(vocab, positions=positions, image_positions=image_positions),
                                vocab, builder)


def test_image_position_ids_count_inside_each_image():
    vocab = Vocabulary(n_text=10, n_image_codes=4)
    soi, eoi, t = vocab.special_id("soi"), vocab.special_id("eoi"), 3
    img = vocab.image_ids(torch.tensor([0, 1, 2]))
    ids = torch.tensor([[t, soi, *img, eoi, t, soi, *img[:2], eoi],
                        [soi, vocab.mask_id, vocab.mask_id, eoi, t, t, t, t, t, t, t]])
    assert image_position_ids(ids, vocab).tolist() == [
        [-1, -1, 0, 1, 2, -1, -1, -1, 0, 1, -1],
        [-1, 0, 1, -1, -1, -1, -1, -1, -1, -1, -1]]


def test_image_position_embedding_tells_masked_cells_apart(setup):
    """An all-MASK image: with image_positions every cell gets its own embedding, and the
    embedding lands on image rows only (the caption's logits are the same with or without it)."""
    vocab, builder = setup
    batch = builder.t2i_batch(["A face."])
    batch[0, -1 - N_IMG:-1] = vocab.mask_id
    plain, with_cells = tiny(vocab), tiny(vocab, image_positions=N_IMG)
    missing, unexpected = with_cells.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["image_pos_embed.weight"] and not unexpected
    with torch.no_grad():
        with_cells.image_pos_embed.weight.normal_(std=1.0)
        a, b = plain(batch).logits[0], with_cells(batch).logits[0]
    image = slice(-1 - N_IMG, -1)
    torch.testing.assert_close(a[:-1 - N_IMG], b[:-1 - N_IMG])            # text: unchanged
    assert not torch.allclose(a[image], b[image])
    cells = b[image]
    assert all(not torch.allclose(cells[i], cells[j]) for i in range(N_IMG)
               for j in range(i + 1, N_IMG))
    with pytest.raises(ValueError, match="image_positions"):
        tiny(vocab, image_positions=N_IMG - 1)(batch)
    with pytest.raises(ValueError, match="image_positions must be >= 0"):
        ModelConfig(image_positions=-1)


def test_kv_cache_with_a_sequence_level_slot(setup):
    vocab, builder = setup
    model = tiny(vocab)
    for block in model.blocks:
        block.seq = PoolingSlot(32)
    ids, cache = decode_matches_full_forward(model, vocab, builder)
    assert all(ctx is not None for ctx in cache.context)
    # the router reads the condition only: for mmu the prefix through <|eoi|>
    cond = condition_mask(ids, cache.task, vocab)
    eoi = (ids == vocab.special_id("eoi")).int().argmax(1)
    for row in range(2):
        real = (ids[row] != vocab.pad_id).nonzero().flatten()
        assert cond[row].nonzero().flatten().tolist() == \
            [int(c) for c in real if c <= eoi[row]]
    # select() keeps a row's cache: continuing row 1 alone gives row 1's logits
    nxt = torch.tensor([[7], [9]])
    with torch.no_grad():
        both = model(nxt, past_key_values=cache).logits
        one = model(nxt[1:], past_key_values=cache.select([1])).logits
    torch.testing.assert_close(one[0], both[1], rtol=1e-5, atol=1e-6)


def test_kv_cache_with_both_moe_slots(setup):
    pytest.importorskip("unif2ace_mini.model.sequence_moe")
    from unif2ace_mini.model.moe_config import SequenceMoEConfig, TokenMoEConfig

    vocab, builder = setup
    model = tiny(vocab, ffn="token_moe", sequence="sequence_moe",
                 moe=TokenMoEConfig(n_routed=4, top_k=2),
                 seq_moe=SequenceMoEConfig(clip_dim=8, face_dim=8, noise_dim=8))
    prompt = prompts(vocab, builder)
    feats = {"clip": torch.randn(2, 3, 8), "face": torch.randn(2, 1, 8)}
    with torch.no_grad():
        out = model(prompt, features=feats, use_cache=True)
        nxt = torch.tensor([[5], [6]])
        step = model(nxt, past_key_values=out.past_key_values).logits[:, -1]
        full = model(torch.cat([prompt, nxt], 1), features=feats).logits[:, -1]
    torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-5)
    assert out.aux_loss > 0 and "routing" in out.aux[0]["sequence"]


def test_forward_contract(setup):
    vocab, builder = setup
    model = tiny(vocab)
    batch = torch.stack([builder.t2i("A face.", vocab.image_ids(torch.arange(4))).input_ids,
                         builder.mmu(vocab.image_ids(torch.arange(4)), QUESTIONS[0],
                                     "yes").input_ids])
    assert task_from_ids(batch, vocab).tolist() == [T2I, MMU]
    out = model(batch)
    assert out.logits.shape == (2, 48, vocab.size)
    assert out.aux_loss.shape == () and float(out.aux_loss) == 0.0
    assert len(out.aux) == 2 and out.aux[0] == {"ffn": {}, "sequence": {}}
    assert out.past_key_values is None
    # logits_mask (training): logits of the selected positions only, row-major
    pick = torch.zeros_like(batch, dtype=torch.bool)
    pick[0, -5:-1], pick[1, 10:13] = True, True
    torch.testing.assert_close(model(batch, logits_mask=pick).logits, out.logits[pick])
    with pytest.raises(ValueError, match="logits_mask"):
        model(batch, logits_mask=pick[:, :5])


def test_token_moe_slot_reports_balance_loss(setup):
    pytest.importorskip("unif2ace_mini.model.token_moe")
    vocab, builder = setup
    model = tiny(vocab, ffn="token_moe")
    batch = builder.t2i_batch(["A face.", None])
    out = model(batch)
    assert out.aux_loss > 0 and all("balance_loss" in a["ffn"] for a in out.aux)


def test_bad_inputs(setup):
    vocab, builder = setup
    model = tiny(vocab)
    ok = builder.t2i_batch(["A face."])
    with pytest.raises(ValueError, match="<\\|t2i\\|>"):
        model(ok.flip(1))                                                 # no task token first
    with pytest.raises(ValueError, match="integer"):
        model(ok.float())
    with pytest.raises(ValueError, match="token ids must lie"):
        model(ok + vocab.size)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.cat([ok, torch.full((1, 50), 5)], 1))
    with pytest.raises(ValueError, match="features"):
        model(ok, features={"clip": torch.zeros(3, 2, 5)})
    prefix = torch.tensor([[vocab.special_id("mmu"), vocab.special_id("soi"), vocab.image_ids(1)]])
    cache = model(prefix, use_cache=True).past_key_values
    with pytest.raises(ValueError, match="inside an image segment"):
        model(torch.tensor([[vocab.image_ids(2)]]), past_key_values=cache)
    with pytest.raises(ValueError, match="vocab_size"):
        UniFace(ModelConfig(vocab_size=10, d_model=32, n_heads=2), vocab)
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="unknown ffn"):
        ModelConfig(ffn="moe")


@pytest.mark.parametrize("tie", [False, True])
def test_save_and_load(setup, tmp_path, tie):
    vocab, builder = setup
    model = tiny(vocab, tie_embeddings=tie, positions="learned", image_positions=N_IMG)
    batch = builder.t2i_batch(["A face.", None])
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_config"]["tie_embeddings"] \
        is tie
    loaded = UniFace.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config and loaded.vocab == vocab
    assert (loaded.head.weight is loaded.embed.weight) is tie
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).logits, model(batch).logits, rtol=0, atol=0)
    assert UniFace.from_pretrained(tmp_path, config=model.config, vocab=vocab) is not None


def test_load_errors(setup, tmp_path):
    vocab, _ = setup
    model = tiny(vocab)
    model.save_pretrained(tmp_path / "dense")
    with pytest.raises(ValueError, match="ffn: saved 'dense' vs requested 'token_moe'"):
        UniFace.from_pretrained(tmp_path / "dense", config=model.config.replace(ffn="token_moe"))
    with pytest.raises(ValueError, match="d_model"):
        UniFace.from_pretrained(tmp_path / "dense", config=model.config.replace(d_model=64))
    with pytest.raises(ValueError, match="vocabulary"):
        UniFace.from_pretrained(tmp_path / "dense", vocab=Vocabulary(n_text=10, n_image_codes=4))
    with pytest.raises(FileNotFoundError):
        UniFace.from_pretrained(tmp_path / "nothing")
    weights = tmp_path / "dense" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])                      # truncated file
    with pytest.raises(ValueError, match="corrupt"):
        UniFace.from_pretrained(tmp_path / "dense")
    (tmp_path / "dense" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        UniFace.from_pretrained(tmp_path / "dense")
    # weights that do not fit the config (a MoE checkpoint's config with dense weights)
    tiny(vocab).save_pretrained(tmp_path / "other")
    other = tmp_path / "other"
    desc = json.loads((other / "config.json").read_text())
    desc["model_config"]["n_layers"] = 3
    (other / "config.json").write_text(json.dumps(desc))
    with pytest.raises(ValueError, match="different models"):
        UniFace.from_pretrained(other)


def test_every_profile_fits_its_images_and_cells():
    """Each profile's model has room for an image of its tokenizer plus text, and one learned
    cell embedding per image token where it uses them."""
    from unif2ace_mini.model.config import MODEL_CONFIGS
    from unif2ace_mini.tokenizers import TOKENIZER_CONFIGS

    for name, mc in MODEL_CONFIGS.items():
        n = TOKENIZER_CONFIGS[name].tokens_per_image
        assert mc.max_len >= n + 5 + 32, name
        mc.check_image_tokens(n)
    assert MODEL_CONFIGS["quick"].image_positions == 64
