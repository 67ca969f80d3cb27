"""Training inputs: seeded batch streams, cached image codes, the joint loss, the CLI, learning."""

import argparse

import pytest
import torch

from unif2ace_mini.model import MMU, T2I, ModelConfig, UniFace
from unif2ace_mini.model.sequences import IGNORE
from unif2ace_mini.training import (BatchStream, IndexStream, TrainConfig, add_cli, joint_loss,
                                    load_or_encode_codes, step_generator, train)
from unif2ace_mini.training.loop import text_loss

@pytest.fixture(scope="module")
def data(tiny_training_data):
    return tiny_training_data


MC = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=40)


def test_index_stream_walks_through_permutations():
    stream = IndexStream(5, seed=3)
    first = stream.take(0, 15)
    for epoch in range(3):
        rows = first[5 * epoch:5 * epoch + 5]
        assert sorted(r for r, _ in rows) == list(range(5)) and {e for _, e in rows} == {epoch}
    assert IndexStream(5, seed=3).take(7, 4) == first[7:11]               # any position directly
    assert IndexStream(5, seed=4).take(0, 15) != first
    with pytest.raises(ValueError, match="empty"):
        IndexStream(0, 0)


def test_batches_are_a_function_of_the_step(data):
    stream = BatchStream(data, 40, batch_size=6, t2i_share=0.5, seed=0, caption_dropout=0.1,
                         mmu_caption_prob=0.25)
    b = stream.batch(4)
    assert b["input_ids"].shape == (6, 40) and b["task"].tolist() == [T2I] * 3 + [MMU] * 3
    again = BatchStream(data, 40, 6, 0.5, 0, 0.1, 0.25).batch(4)
    assert all(torch.equal(b[k], again[k]) for k in b)
    assert not torch.equal(stream.batch(5)["input_ids"], b["input_ids"])
    # two processes split the global batch between them
    halves = [stream.batch(4, rank, 2) for rank in (0, 1)]
    rows = torch.cat([h["input_ids"] for h in halves])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, b["input_ids"].tolist()))


def test_joint_loss_masks_only_t2i_image_tokens(data):
    torch.manual_seed(0)
    model = UniFace(MC.for_vocab(data.vocab), data.vocab)
    batch = BatchStream(data, 40, 6, 0.5, 0, 0.0, 0.25).batch(0)
    seen = {}
    original_forward = model.forward

    def spy(input_ids, **kw):
        seen["ids"] = input_ids
        return original_forward(input_ids, **kw)
    model.forward = spy
    loss, parts = joint_loss(model, batch, TrainConfig(), step_generator(0, 0))
    changed = seen["ids"] != batch["input_ids"]
    assert changed.any() and (seen["ids"][changed] == data.vocab.mask_id).all()
    assert not changed[batch["task"] == MMU].any()
    t2i_image = (batch["labels"] != IGNORE) & (batch["task"] == T2I)[:, None]
    assert not changed[~t2i_image].any()
    assert set(parts) >= {"loss", "t2i", "t2i_mgm", "t2i_score", "mmu", "aux"}
    assert parts["loss"] == pytest.approx(parts["t2i"] + parts["mmu"] + parts["aux"], rel=1e-5)
    loss.backward()
    assert model.embed.weight.grad is not None
    # the same (seed, step) draws the same noise
    _, again = joint_loss(model, batch, TrainConfig(), step_generator(0, 0))
    assert again["t2i"] == pytest.approx(parts["t2i"], rel=1e-6)


def test_text_loss_weighs_each_answer_equally():
    logits = torch.zeros(4, 5)
    logits[0, 1] = 10.0                                      # row 0's one token: nearly free
    targets, rows = torch.tensor([1, 2, 3, 4]), torch.tensor([0, 2, 2, 2])
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    assert text_loss(logits, targets, rows, "token_mean") == pytest.approx(float(ce.mean()))
    assert text_loss(logits, targets, rows, "row_mean") == \
        pytest.approx(float((ce[0] + ce[1:].mean()) / 2))
    with pytest.raises(ValueError, match="text_loss"):
        TrainConfig(text_loss="sum")


def test_image_codes_are_encoded_once_and_cached(tmp_path):
    from unif2ace_mini import runtime
    from unif2ace_mini.data.groups import TAXONOMY
    from unif2ace_mini.tokenizers import ImageTokenizerConfig, PlainVQTokenizer

    folder = tmp_path / "faces"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "metadata.jsonl").write_text("")
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    runtime.save_safetensors({"images": images, "labels": torch.zeros(3, 1, dtype=torch.long)},
                             folder / "cache" / "train.safetensors",
                             {"taxonomy": TAXONOMY.fingerprint()})
    torch.manual_seed(0)
    tok = PlainVQTokenizer(ImageTokenizerConfig(width=16, n_res_blocks=1))
    codes = load_or_encode_codes(tok, folder, "train", root=tmp_path / "codes")
    assert codes.shape == (3, 64) and codes.dtype == torch.long
    assert len(list((tmp_path / "codes").iterdir())) == 1
    with torch.no_grad():
        tok.embedding.mul_(0)                          # other weights -> another cache entry
    load_or_encode_codes(tok, folder, "train", root=tmp_path / "codes")
    assert len(list((tmp_path / "codes").iterdir())) == 2


def test_cli_registers_train():
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--profile", "quick", "--resume", "--max-steps", "5",
                              "--out", "x"])
    assert (args.profile, args.resume, args.max_steps, args.out) == ("quick", True, 5, "x")
    assert callable(args.func)


def test_both_losses_go_down(data, tmp_path):
    tc = TrainConfig(batch_size=8, max_steps=40, warmup_steps=5, lr=1e-2, checkpoint_every=100,
                     caption_dropout=0.0)
    result = train("quick", tmp_path, model_config=MC, train_config=tc, data=data, progress=False)
    first, last = result.history[:5], result.history[-5:]
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)     # noqa: E731
    assert mean(last, "mmu") < 0.5 * mean(first, "mmu")
    assert mean(last, "t2i_mgm") < 0.6 * mean(first, "t2i_mgm")
