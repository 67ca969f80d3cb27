"""Omni-attention by structure and by behaviour: causal text, bidirectional images, inert pads."""

import pytest
import torch

from unif2ace_mini.model import ModelConfig, SequenceBuilder, UniFace, omni_attention_mask
from unif2ace_mini.model.attention import position_ids
from unif2ace_mini.tokenizers import Vocabulary, train_text_tokenizer

CAPTION = "A portrait of a person. They have red hair. The person is smiling."
N_IMG = 4


@pytest.fixture(scope="module")
def setup():
    tok = train_text_tokenizer([CAPTION, "Is the person smiling? yes"] * 4, vocab_size=300)
    vocab = Vocabulary.from_tokenizers(tok, 16)
    builder = SequenceBuilder(tok, vocab, max_len=40, n_image_tokens=N_IMG)
    return vocab, builder


def tiny_model(vocab, positions="rope", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=48, positions=positions)
    return UniFace(cfg.for_vocab(vocab), vocab).eval()


def image(vocab, codes=(1, 2, 3, 4)):
    return vocab.image_ids(torch.tensor(codes))


def test_mask_structure(setup):
    vocab, _ = setup
    s = {n: vocab.special_id(n) for n in ("t2i", "sot", "eot", "soi", "eoi", "pad")}
    t1, t2 = 5, 6                                                         # two text tokens
    ids = torch.tensor([[s["pad"], s["t2i"], s["sot"], t1, t2, s["eot"], s["soi"]]
                        + image(vocab).tolist() + [s["eoi"], s["pad"]]])
    m = omni_attention_mask(ids, vocab)[0]
    assert m.dtype == torch.bool and m.shape == (13, 13)
    pads = torch.tensor([0, 12])
    assert not m[:, pads][torch.tensor([i for i in range(13) if i not in (0, 12)])].any()
    assert m[0].nonzero().flatten().tolist() == [0] and m[12].nonzero().flatten().tolist() == [12]
    for row in range(1, 7):                                               # text + <|soi|>: causal
        assert m[row].nonzero().flatten().tolist() == list(range(1, row + 1))
    for row in range(7, 11):                                              # image rows
        assert m[row].nonzero().flatten().tolist() == list(range(1, 11))
    assert m[11].nonzero().flatten().tolist() == list(range(1, 12))       # <|eoi|> sees it all
    assert position_ids(ids, vocab)[0].tolist() == [0] + list(range(11)) + [10]


def test_later_image_tokens_do_not_change_earlier_text(setup):
    vocab, builder = setup
    model = tiny_model(vocab)
    a = builder.t2i(CAPTION, image(vocab)).input_ids[None]
    b = a.clone()
    cols = builder.t2i_image_columns
    b[0, cols.start + 2] = vocab.image_ids(9)                             # one later image token
    with torch.no_grad():
        la, lb = model(a).logits, model(b).logits
    text = slice(0, cols.start)                                           # every column before it
    torch.testing.assert_close(la[:, text], lb[:, text], rtol=0, atol=0)
    # image positions influence each other both ways: earlier and later image rows both change
    diff = (la[0, cols] - lb[0, cols]).abs().amax(-1)
    assert (diff > 1e-6).all(), diff


def test_answer_tokens_do_not_change_the_prefix(setup):
    vocab, builder = setup
    model = tiny_model(vocab)
    a = builder.mmu(image(vocab), "Is the person smiling?", "yes").input_ids[None]
    b = builder.mmu(image(vocab), "Is the person smiling?", "no").input_ids[None]
    first = int((a != b).nonzero()[0, 1])
    with torch.no_grad():
        la, lb = model(a).logits, model(b).logits
    torch.testing.assert_close(la[:, :first], lb[:, :first], rtol=0, atol=0)


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_pads_change_nothing(setup, positions):
    vocab, builder = setup
    model = tiny_model(vocab, positions)
    pad = vocab.pad_id
    real = builder.mmu(image(vocab), "Is the person smiling?", "yes").input_ids
    real = real[real != pad]                                              # (n,)
    n = len(real)
    variants = [torch.cat([real, torch.full((k,), pad)]) for k in (0, 3)]        # right pads
    variants += [torch.cat([torch.full((k,), pad), real]) for k in (2, 7)]       # left pads
    variants += [torch.cat([real[:5], torch.full((3,), pad), real[5:]])]          # pads inside
    with torch.no_grad():
        ref = model(real[None]).logits[0]
        for v in variants:
            out = model(v[None]).logits[0]
            assert torch.isfinite(out).all()
            torch.testing.assert_close(out[v != pad], ref, rtol=1e-5, atol=1e-5)
    # a batch mixing rows of different pad counts gives each row its own logits
    batch = torch.stack([torch.cat([real, torch.full((7,), pad)]),
                         torch.cat([torch.full((7,), pad), real])])
    with torch.no_grad():
        out = model(batch).logits
    torch.testing.assert_close(out[0, :n], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[1, 7:], ref, rtol=1e-5, atol=1e-5)
