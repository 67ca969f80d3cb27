"""ArcFace identity encoder: the margin formula, the IResNet backbone, training, verification maths."""

from __future__ import annotations

import math

import pytest
import torch

from unif2ace_mini.encoders import (ArcFaceHead, FaceEncoderConfig, IResNet, arcface_logits,
                                    best_threshold, embed_faces, roc_auc, train_face_encoder,
                                    verification_pairs, verification_report)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_arcface_adds_the_margin_to_the_true_angle_only():
    cos = torch.tensor([[0.5, 0.2, -0.3], [0.1, 0.9, 0.4]])
    labels = torch.tensor([0, 1])
    out = arcface_logits(cos, labels, margin=0.5)
    assert out[0, 0] == pytest.approx(math.cos(math.acos(0.5) + 0.5), abs=1e-6)
    assert out[1, 1] == pytest.approx(math.cos(math.acos(0.9) + 0.5), abs=1e-6)
    mask = torch.ones_like(cos, dtype=torch.bool)
    mask[0, 0] = mask[1, 1] = False
    assert torch.equal(out[mask], cos[mask])                       # other classes untouched
    assert torch.allclose(arcface_logits(cos, labels, 0.0), cos, atol=1e-6)


def test_arcface_past_pi_minus_m_uses_the_monotone_fallback():
    m = 0.5
    theta = torch.linspace(0, math.pi, 400)
    cos = torch.cos(theta)[:, None]                                 # one class, every angle
    out = arcface_logits(cos, torch.zeros(400, dtype=torch.long), m)[:, 0]
    far = theta > math.pi - m + 1e-3
    assert torch.allclose(out[far], cos[far, 0] - m * math.sin(m), atol=1e-5)
    assert (out[1:] <= out[:-1] + 1e-6).all()                       # never rewards a worse angle
    assert (out <= cos[:, 0] + 1e-6).all()                          # a margin only ever penalises


def test_head_scales_cosines_and_rejects_bad_labels():
    head = ArcFaceHead(embedding_dim=4, n_classes=3, scale=10.0, margin=0.3)
    emb = torch.randn(5, 4)
    plain = head(emb)
    assert plain.shape == (5, 3) and plain.abs().max() <= 10.0 + 1e-5
    with pytest.raises(ValueError, match="one label per row"):
        head(emb, torch.zeros(4, dtype=torch.long))


def test_iresnet_shapes_and_bad_sizes():
    net = IResNet(widths=(4, 8), layers=(1, 2), embedding_dim=6, image_size=16).eval()
    assert net(torch.zeros(3, 3, 16, 16)).shape == (3, 6)
    assert net.arch() == {"widths": [4, 8], "layers": [1, 2], "embedding_dim": 6, "image_size": 16,
                          "stem_stride": 1}
    assert IResNet((4, 8), (1, 1), 6, 16, stem_stride=2).eval()(torch.zeros(1, 3, 16, 16)).shape == (1, 6)
    with pytest.raises(ValueError, match="not divisible by 8"):
        IResNet(widths=(4, 8), layers=(1, 1), image_size=12, stem_stride=2)
    with pytest.raises(ValueError, match="not divisible"):
        IResNet(widths=(4, 8), layers=(1, 1), image_size=18)
    with pytest.raises(ValueError, match="one entry per stage"):
        IResNet(widths=(4, 8), layers=(1,), image_size=16)
    with pytest.raises(ValueError, match="same"):
        FaceEncoderConfig(widths=(4, 8), layers=(1,))


def _toy_faces(n_people=6, per_person=8, size=16, seed=0):
    """Each 'person' is a fixed random pattern; their images add noise and a random brightness."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n_people, 3, size, size, generator=g) * 255
    ids = torch.arange(n_people).repeat_interleave(per_person)
    x = base[ids] * (0.8 + 0.2 * torch.rand(len(ids), 1, 1, 1, generator=g))
    x = x + 25 * torch.randn(x.shape, generator=g)
    return x.clamp(0, 255).to(torch.uint8), ids


def test_training_reduces_the_arcface_loss():
    images, ids = _toy_faces()
    cfg = FaceEncoderConfig(image_size=16, widths=(8, 16), layers=(1, 1), stem_stride=1,
                            embedding_dim=16, batch_size=24, lr=3e-3, warmup_steps=5, max_steps=40,
                            max_seconds=30.0, scale=16.0, margin=0.3, margin_warmup=0.3)
    torch.manual_seed(0)
    net = IResNet(cfg.widths, cfg.layers, cfg.embedding_dim, cfg.image_size)
    hist = train_face_encoder(net, {"images": images, "classes": ids}, cfg, progress=False)
    assert hist["steps"] == 40 and hist["n_classes"] == 6
    assert hist["margin"][0] < 0.01 and hist["margin"][-1] == 0.3   # the margin ramps up
    # the last losses carry the full margin and still end below the margin-free start
    assert sum(hist["loss"][-8:]) / 8 < 0.7 * sum(hist["loss"][:8]) / 8
    assert sum(hist["batch_acc"][-8:]) / 8 > 0.8
    emb = embed_faces(net, images)
    assert torch.allclose(emb.norm(dim=1), torch.ones(len(emb)), atol=1e-5)


def test_best_threshold_and_auc_on_toy_scores():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    same = torch.tensor([False, False, False, True, True, True])
    t, acc = best_threshold(scores, same)
    assert acc == 1.0 and 0.3 < t < 0.7
    assert roc_auc(scores, same) == 1.0
    assert roc_auc(scores, ~same) == 0.0
    assert roc_auc(torch.ones(6), same) == 0.5                      # ties count half
    t, acc = best_threshold(torch.tensor([0.1, 0.6, 0.4, 0.9]), torch.tensor([False, False, True, True]))
    assert acc == 0.75
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc(scores, torch.ones(6, dtype=torch.bool))


def test_verification_pairs_are_balanced_and_people_disjoint_between_folds():
    ids = torch.arange(10).repeat_interleave(5)
    pairs = verification_pairs(ids, max_pairs=200, seed=0)
    assert pairs["same"].sum() * 2 == len(pairs["same"])
    assert torch.equal(ids[pairs["i"]] == ids[pairs["j"]], pairs["same"])
    people = [set(ids[pairs["i"][pairs["fold"] == f]].tolist())
              | set(ids[pairs["j"][pairs["fold"] == f]].tolist()) for f in (0, 1)]
    assert people[0] and people[1] and not people[0] & people[1]
    again = verification_pairs(ids, max_pairs=200, seed=0)
    assert all(torch.equal(pairs[k], again[k]) for k in pairs)
    with pytest.raises(ValueError, match="no same-person pair"):
        verification_pairs(torch.arange(10), max_pairs=20, seed=0)


def test_verification_report_separates_a_perfect_and_a_random_embedding():
    ids = torch.arange(12).repeat_interleave(4)
    perfect = torch.nn.functional.one_hot(ids).float()
    rep = verification_report(perfect, ids, max_pairs=400, seed=1)
    assert rep["accuracy"] == 1.0 and rep["roc_auc"] == 1.0
    gen = torch.Generator().manual_seed(0)
    noise = torch.nn.functional.normalize(torch.randn(len(ids), 32, generator=gen), dim=1)
    rep = verification_report(noise, ids, max_pairs=400, seed=1)
    assert 0.25 < rep["roc_auc"] < 0.75 and rep["accuracy"] < 0.8
