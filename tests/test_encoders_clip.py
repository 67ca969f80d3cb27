"""The small CLIP: built on our tokenizer, captions batched right, it learns, zero-shot maths is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unif2ace_mini import profiles
from unif2ace_mini.data import TAXONOMY, make_caption, parse_caption
from unif2ace_mini.encoders import (CaptionSampler, ClipConfig, TextBatcher, attribute_prompts,
                                    build_clip_model, encode_images, encode_texts,
                                    retrieval_recall, train_clip, zero_shot_accuracy)
from unif2ace_mini.tokenizers import special_ids, train_text_tokenizer

TINY = ClipConfig(image_size=16, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2,
                  text_width=32, text_layers=1, text_heads=2, max_text_len=24, projection_dim=16,
                  n_pool=0, batch_size=16, lr=3e-3, warmup_steps=5, max_steps=60, max_seconds=30.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _attrs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [TAXONOMY.sample(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def tok():
    rng = np.random.default_rng(0)
    texts = [make_caption(a, rng)[0] for a in _attrs(150)]
    return train_text_tokenizer(texts, vocab_size=400)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return build_clip_model(TINY, tok).eval()


def test_text_config_uses_our_vocabulary_and_specials(model, tok):
    ids = special_ids(tok)
    text_cfg = model.config.text_config
    assert text_cfg.vocab_size == len(tok)
    assert text_cfg.eos_token_id == ids["<|eot|>"] and text_cfg.pad_token_id == ids["<|pad|>"]
    assert model.config.vision_config.image_size == 16


def test_batcher_appends_eos_pads_and_truncates(model, tok):
    batcher = TextBatcher.for_model(model, tok)
    eos, pad = special_ids(tok)["<|eot|>"], special_ids(tok)["<|pad|>"]
    long = "The person has long curly red hair and a pearl necklace. " * 10
    ids, mask = batcher(["red hair", long])
    assert ids.shape == mask.shape and ids.shape[1] == TINY.max_text_len
    n0 = int(mask[0].sum())
    assert ids[0, n0 - 1] == eos and (ids[0, n0:] == pad).all() and (mask[0, n0:] == 0).all()
    assert ids[1, -1] == eos and mask[1].all()                      # cut, but still ends in eos
    with pytest.raises(ValueError, match="no texts"):
        batcher([])


def test_text_embedding_ignores_padding(model, tok):
    batcher = TextBatcher.for_model(model, tok)
    alone = encode_texts(model, batcher, ["The person has red hair."])
    padded = encode_texts(model, batcher, ["The person has red hair.", "a much longer caption " * 3])
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_every_prompt_parses_back_to_its_attribute():
    for g in TAXONOMY.groups:
        for value, prompts in attribute_prompts(g.name).items():
            for p in prompts:
                assert parse_caption(p) == {g.name: value}, p


def test_zero_shot_is_exact_for_an_oracle_embedding_and_near_chance_for_noise():
    """An 'encoder' that embeds (group, value) as one-hot axes scores 100%; noise does not."""
    attrs = _attrs(120, seed=1)
    labels = torch.from_numpy(np.stack([TAXONOMY.encode(a) for a in attrs]))
    axes = {(g.name, v): k for k, (g, v) in enumerate((g, v) for g in TAXONOMY.groups for v in g.values)}

    def embed_attrs(d):
        e = torch.zeros(len(axes))
        for gv in d.items():
            e[axes[gv]] = 1.0
        return torch.nn.functional.normalize(e, dim=0)

    images = torch.stack([embed_attrs(a) for a in attrs])
    texts = lambda prompts: torch.stack([embed_attrs(parse_caption(p)) for p in prompts])
    result = zero_shot_accuracy(images, labels, texts)
    assert result["mean"] == 1.0 and len(result["per_group"]) == len(TAXONOMY)
    assert result["per_group"]["background"]["chance"] == pytest.approx(1 / 6)
    gen = torch.Generator().manual_seed(0)
    noise = torch.nn.functional.normalize(torch.randn(120, len(axes), generator=gen), dim=1)
    result = zero_shot_accuracy(noise, labels, texts)
    assert result["mean"] < result["chance_mean"] + 0.15
    with pytest.raises(ValueError, match="labels"):
        zero_shot_accuracy(images, labels[:, :3], texts)


def test_retrieval_recall_extremes():
    e = torch.eye(5)
    r = retrieval_recall(e, e)
    assert r["image_to_text_r@1"] == r["text_to_image_r@1"] == 1.0
    r = retrieval_recall(e, e.roll(1, dims=0))
    assert r["image_to_text_r@1"] == 0.0 and r["image_to_text_r@5"] == 1.0


def test_caption_sampler_is_seeded_and_states_true_attributes():
    attrs = _attrs(8, seed=2)
    labels = torch.from_numpy(np.stack([TAXONOMY.encode(a) for a in attrs]))
    stored = ["stored caption"] * 4 + [None] * 4
    a = CaptionSampler(labels, stored, 0.5, seed=0, mean_attrs=6, std_attrs=2)(torch.arange(8))
    b = CaptionSampler(labels, stored, 0.5, seed=0, mean_attrs=6, std_attrs=2)(torch.arange(8))
    assert a == b
    for i in range(4, 8):                        # no stored caption: always a fresh one
        stated = parse_caption(a[i])
        assert stated and all(attrs[i][g] == v for g, v in stated.items())


def test_contrastive_training_reduces_the_loss(tok):
    """A tiny CLIP on 48 distinct colour-coded images: the InfoNCE loss must fall."""
    attrs = _attrs(48, seed=3)
    labels = torch.from_numpy(np.stack([TAXONOMY.encode(a) for a in attrs]))
    bg = labels[:, TAXONOMY.names.index("background")]
    cloth = labels[:, TAXONOMY.names.index("clothing_color")]
    images = torch.zeros(48, 3, 16, 16, dtype=torch.uint8)
    images[:, :, :8] = (bg * 40 + 20).to(torch.uint8)[:, None, None, None]      # top: background
    images[:, :, 8:] = (cloth * 50 + 10).to(torch.uint8)[:, None, None, None]   # bottom: clothes
    data = {"images": images, "labels": labels, "captions": [None] * 48}
    torch.manual_seed(0)
    model = build_clip_model(TINY, tok)
    hist = train_clip(model, tok, data, TINY.replace(caption_attrs=(4.0, 1.0)),
                      profiles.DataConfig(), progress=False)
    assert hist["steps"] == TINY.max_steps
    assert sum(hist["loss"][-10:]) / 10 < 0.9 * sum(hist["loss"][:10]) / 10
    emb = encode_images(model, images)
    assert emb.shape == (48, TINY.projection_dim)
    assert torch.allclose(emb.norm(dim=1), torch.ones(48), atol=1e-5)
