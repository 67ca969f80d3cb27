"""Paper-scale adapters without downloads: an aMUSEd-shaped VQModel and a Phi-format tokenizer,
both random/tiny and saved locally by the test."""

import json

import pytest
import torch
from diffusers import VQModel
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from unif2ace_mini.tokenizers import (SPECIAL_TOKENS, Vocabulary, build_image_tokenizer,
                                      coloured_shapes, load_image_tokenizer, load_text_tokenizer)
from unif2ace_mini.tokenizers.vqmodel import AMUSED_VQ_CONFIG, DiffusersVQTokenizer


def amused_like(channels=(8, 8, 16, 16, 16)):
    """aMUSEd's VQ-GAN structure (5 levels = 16x, 64-dim codes, 8192 codes) at toy width."""
    cfg = dict(AMUSED_VQ_CONFIG, block_out_channels=channels, norm_num_groups=8,
               layers_per_block=1)
    return VQModel(**cfg)


@pytest.fixture(scope="module")
def vq_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("amused")
    torch.manual_seed(0)
    amused_like().save_pretrained(root / "vqvae")
    return root


def test_amused_config_shape():
    assert AMUSED_VQ_CONFIG["num_vq_embeddings"] == 8192
    assert 2 ** (len(AMUSED_VQ_CONFIG["block_out_channels"]) - 1) == 16
    assert AMUSED_VQ_CONFIG["latent_channels"] == 64


def test_wrap_pretrained_vqmodel_from_local_folder(vq_dir):
    tok = DiffusersVQTokenizer.from_vqmodel(vq_dir, subfolder="vqvae", image_size=32)
    assert tok.codebook_size == 8192 and tok.config.downsample == 16 and tok.grid == 2
    x = coloured_shapes(3, 32, seed=0)
    codes = tok.encode(x)
    assert codes.shape == (3, 2, 2) and int(codes.max()) < 8192
    assert tok.decode(codes).shape == (3, 3, 32, 32)

    # Same tokens and pixels as diffusers' own quantiser / decoder
    vq = tok.vqmodel
    with torch.no_grad():
        h = vq.encode(x).latents
        _, _, (_, _, idx) = vq.quantize(h)
        assert torch.equal(codes.flatten(), idx.flatten())
        ref = vq.decode(codes.flatten(), force_not_quantize=True, shape=(3, 2, 2, 64)).sample
    assert torch.allclose(tok.decode(codes), ref.clamp(-1, 1), atol=1e-5)


def test_pretrained_backend_via_config_and_save_load(vq_dir, tmp_path):
    from unif2ace_mini.tokenizers import TOKENIZER_CONFIGS
    cfg = TOKENIZER_CONFIGS["paper"].replace(image_size=32, pretrained=str(vq_dir))
    tok = build_image_tokenizer(cfg)
    assert isinstance(tok, DiffusersVQTokenizer) and tok.codebook_size == 8192
    tok.save_pretrained(tmp_path / "saved")   # our format: no hub access needed to reload
    again = load_image_tokenizer(tmp_path / "saved")
    x = coloured_shapes(2, 32, seed=1)
    assert torch.equal(tok.encode(x), again.encode(x))
    assert torch.allclose(tok.decode(tok.encode(x)), again.decode(tok.encode(x)))


def test_missing_pretrained_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="could not load a diffusers VQModel"):
        DiffusersVQTokenizer.from_vqmodel(tmp_path / "absent", local_files_only=True)


@pytest.fixture(scope="module")
def phi_dir(tmp_path_factory):
    """A tiny byte-level BPE in the GPT-2 / Phi-1.5 file format (vocab.json + merges.txt +
    tokenizer_config.json naming CodeGenTokenizer, <|endoftext|> as bos/eos/unk)."""
    root = tmp_path_factory.mktemp("phi")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(["def f(x): return x + 1", "a face with red hair"] * 20, trainer)
    bpe.model.save(str(root))
    (root / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CodeGenTokenizer", "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "add_prefix_space": False,
        "model_max_length": 2048}))
    return root


def test_phi_format_tokenizer_gets_show_o_tokens(phi_dir, tmp_path):
    tok = load_text_tokenizer(phi_dir)
    n_base = len(tok) - len(SPECIAL_TOKENS)
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(n_base, len(tok)))
    assert tok.pad_token == "<|pad|>"
    text = "a face with red hair, 😀 naïve"
    assert tok.decode(tok(text)["input_ids"]) == text
    vocab = Vocabulary.from_tokenizers(tok, 8192)
    assert vocab.image_offset == len(tok) and vocab.mask_id == len(tok) + 8192
    # saving and reloading keeps the layout and does not add the tokens twice
    tok.save_pretrained(tmp_path / "phi2")
    again = load_text_tokenizer(tmp_path / "phi2")
    assert len(again) == len(tok)
    assert again(text)["input_ids"] == tok(text)["input_ids"]


def test_missing_text_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="could not load a tokenizer"):
        load_text_tokenizer(tmp_path / "absent", local_files_only=True)
