"""The face-token D3Diff experiment's code on a tiny fake token set (no dataset, no tokenizer)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from unif2ace_mini.diffusion import faces as F
from unif2ace_mini.diffusion.denoiser import ToyTrainConfig, TinyDenoiser

N_CODES, GRID, N_CLASSES = 6, 2, 3


def fake_tokens(n: int = 48, seed: int = 0) -> F.FaceTokens:
    """Class c draws codes from {2c, 2c+1}: the class is readable from every code."""
    g = torch.Generator().manual_seed(seed)

    def split(m):
        labels = torch.randint(0, N_CLASSES, (m,), generator=g)
        codes = 2 * labels[:, None] + torch.randint(0, 2, (m, GRID * GRID), generator=g)
        return torch.cat([labels[:, None] + N_CODES, codes], 1), labels

    train, _ = split(n)
    test, test_labels = split(16)
    val_labels = torch.randint(0, N_CLASSES, (16,), generator=g)

    def images(lab):
        return (lab[:, None, None, None] * 80).expand(-1, 3, 4, 4).to(torch.uint8)

    return F.FaceTokens(train=train, test=test, test_images=images(test_labels),
                        val_images=images(val_labels), val_labels=val_labels, attribute="toy",
                        attribute_index=0, class_names=("a", "b", "c"), n_codes=N_CODES,
                        grid=GRID, key="fake")


class FakeTokenizer(nn.Module):
    """Code v -> a flat 2x2-pixel patch of grey level 40 v: images (N, 3, 4, 4) in [-1, 1]."""

    def decode(self, codes):
        img = (codes.float() * 40 / 127.5 - 1).repeat_interleave(2, 1).repeat_interleave(2, 2)
        return img[:, None].expand(-1, 3, -1, -1)


class FakeOracle(nn.Module):
    """Features: mean grey level per pixel row; class: the nearest class grey level."""

    def features(self, images):
        return images.float().mean(1).flatten(1) + 1e-3 * torch.arange(16.0)

    def predict_labels(self, images):
        return (images.float().mean((1, 2, 3)) / 80).floor().clamp(0, N_CLASSES - 1).long()[:, None]


TINY = F.FaceConfig(train=ToyTrainConfig(steps=3, max_seconds=30.0, batch_size=8, d_model=16,
                                         n_layers=1, n_heads=2),
                    n_samples=12, maskgit_steps=3, ancestral_steps=4, n_nelbo=8, n_bootstrap=4)


# --- FD-oracle -----------------------------------------------------------------------------------

def test_frechet_distance_of_identical_sets_is_zero():
    a = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert abs(F.frechet_distance(a, a)) < 1e-8


def test_frechet_distance_shift_and_one_dimensional_closed_form():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, 5, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    assert F.frechet_distance(a + shift, a) == pytest.approx(float(shift.square().sum()), rel=1e-9)
    x, y = torch.randn(400, 1, generator=g), 3 + 2 * torch.randn(400, 1, generator=g)
    m1, m2, s1, s2 = x.mean(), y.mean(), x.std(), y.std()
    expected = float((m1 - m2) ** 2 + (s1 - s2) ** 2)      # FD of N(m1, s1^2), N(m2, s2^2)
    assert F.frechet_distance(x, y) == pytest.approx(expected, rel=1e-5)


def test_frechet_distance_matches_the_nonsymmetric_textbook_form():
    g = torch.Generator().manual_seed(2)
    mix = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = torch.randn(100, 6, generator=g, dtype=torch.float64) @ mix
    b = torch.randn(90, 6, generator=g, dtype=torch.float64) * 2 + 1
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    tr_sqrt = torch.linalg.eigvals(ca @ cb).real.clamp(min=0).sqrt().sum()   # Tr sqrtm(C_a C_b)
    expected = (a.mean(0) - b.mean(0)).square().sum() + ca.trace() + cb.trace() - 2 * tr_sqrt
    assert F.frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-8)
    assert F.frechet_distance(a, b) == pytest.approx(F.frechet_distance(b, a), rel=1e-8)


@pytest.mark.parametrize("a, b, match", [
    (torch.randn(10), torch.randn(10, 3), "feats_a"),
    (torch.randn(10, 3), torch.randn(10, 4), "feature sizes differ"),
    (torch.randn(1, 3), torch.randn(10, 3), "N >= 2"),
    (torch.full((4, 3), math.nan), torch.randn(10, 3), "NaN"),
])
def test_frechet_distance_rejects_bad_features(a, b, match):
    with pytest.raises(ValueError, match=match):
        F.frechet_distance(a, b)


def test_fd_stderr_is_positive_and_deterministic():
    g = torch.Generator().manual_seed(3)
    a, ref = torch.randn(64, 4, generator=g), torch.randn(64, 4, generator=g) + 1
    v1, se1 = F.fd_with_stderr(a, ref, n_bootstrap=8, seed=0)
    v2, se2 = F.fd_with_stderr(a, ref, n_bootstrap=8, seed=0)
    assert (v1, se1) == (v2, se2) and se1 > 0 and v1 == F.frechet_distance(a, ref)


# --- tokens, baseline, sampling ------------------------------------------------------------------

def test_token_layout_and_legal_bias():
    tokens = fake_tokens()
    assert tokens.length == 1 + GRID * GRID and tokens.vocab_size == N_CODES + N_CLASSES + 1
    assert tokens.mask_id == tokens.vocab_size - 1
    assert tokens.codes(tokens.test).shape == (16, GRID, GRID)
    assert (tokens.labels(tokens.test) < N_CLASSES).all()
    bias = tokens.legal_bias()
    assert bias.shape == (tokens.length, tokens.vocab_size)
    assert torch.isfinite(bias[0]).sum() == N_CLASSES
    assert torch.isfinite(bias[1:]).sum(1).eq(N_CODES).all()
    assert not torch.isfinite(bias[:, tokens.mask_id]).any()
    with pytest.raises(ValueError, match="not codes"):
        tokens.codes(torch.full((1, tokens.length), tokens.mask_id))


def test_independent_baseline_nll_and_samples():
    tokens = fake_tokens(n=600)
    base = F.IndependentTokens(tokens, smoothing=0.01)
    est = base.nll_bits_per_token(tokens.test)
    # each code is a fair coin between two values given the class, the class ~ uniform of 3:
    # (log2 3 + 4 * 1) / 5 bits per token, up to the smoothing and the empirical class frequencies
    assert est.bits_per_token == pytest.approx((math.log2(3) + 4) / 5, abs=0.03)
    labels = torch.tensor([0, 1, 2, 2])
    seqs = base.sample(labels, torch.Generator().manual_seed(0))
    assert seqs.shape == (4, tokens.length) and torch.equal(tokens.labels(seqs), labels)
    assert ((seqs[:, 1:] // 2) == labels[:, None]).all()                 # learned the class rule
    with pytest.raises(ValueError, match="smoothing"):
        F.IndependentTokens(tokens, smoothing=0.0)


@pytest.mark.parametrize("sampler", F.SAMPLERS)
def test_generate_keeps_the_class_and_emits_only_codes(sampler):
    tokens = fake_tokens()
    torch.manual_seed(0)
    model = TinyDenoiser(tokens.vocab_size, tokens.length, d_model=16, n_layers=1, n_heads=2).eval()
    nn.init.normal_(model.head.weight)                                   # make illegal ids tempting
    labels = torch.tensor([0, 1, 2, 1, 0])
    out = F.generate(F.face_denoiser(model, tokens), tokens, labels, sampler, 3,
                     torch.Generator().manual_seed(0))
    assert torch.equal(tokens.labels(out.tokens), labels)
    assert (out.tokens[:, 1:] < N_CODES).all()
    with pytest.raises(ValueError, match="unknown sampler"):
        F.generate(F.face_denoiser(model, tokens), tokens, labels, "euler!", 3, None)


def test_weights_digest_sees_every_weight():
    torch.manual_seed(0)
    a = TinyDenoiser(9, 4, d_model=8, n_layers=1, n_heads=2)
    b = TinyDenoiser(9, 4, d_model=8, n_layers=1, n_heads=2)
    b.load_state_dict(a.state_dict())
    assert F.weights_digest(a) == F.weights_digest(b)
    with torch.no_grad():
        b.head.bias[3] += 1e-6
    assert F.weights_digest(a) != F.weights_digest(b)


def test_unknown_attribute_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown attribute"):
        F.load_face_tokens("quick", "hair_colour")


# --- training and evaluation entry points ---------------------------------------------------------

def test_train_evaluate_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIF2ACE_CACHE", str(tmp_path))
    tokens = fake_tokens()
    models, logs = F.train_face_models(tokens, TINY, ("mgm", "d3diff_0.01"))
    assert set(models) == {"mgm", "d3diff_0.01"}
    assert all(log["steps"] == 3 and not log["cached"] for log in logs.values())
    again, logs2 = F.train_face_models(tokens, TINY, ("mgm",))
    assert logs2["mgm"]["cached"]
    for a, b in zip(models["mgm"].state_dict().values(), again["mgm"].state_dict().values()):
        assert torch.equal(a, b)

    nelbo = F.evaluate_nelbo(models, tokens, TINY, seed=0)
    assert set(nelbo) == {"independent", "mgm", "d3diff_0.01"}
    assert all(math.isfinite(e.bits_per_token) and e.bits_per_token > 0 for e in nelbo.values())

    scores, images = F.evaluate_samples(models, tokens, FakeTokenizer(), FakeOracle(), TINY, 0)
    expected = {("test reconstructions", "-"), ("validation images", "-"), ("independent", "-")}
    expected |= {(m, s) for m in models for s in F.SAMPLERS}
    assert set(scores) == expected == set(images)
    assert all(img.dtype == torch.uint8 and len(img) == TINY.n_samples for img in images.values())
    recon = scores[("test reconstructions", "-")]
    assert recon.accuracy == 1.0                                          # the fake oracle is exact
    assert all(math.isfinite(s.fd) and s.fd >= -1e-6 for s in scores.values())
    assert scores[("mgm", "ancestral")].calls_per_sample <= TINY.ancestral_steps


def test_face_sizes_cover_every_profile():
    from unif2ace_mini import profiles
    for name in ("quick", "cpu", "gpu", "paper"):
        profiles.get_profile(name)
        config = F.FACE_SIZES[name]
        assert dataclasses.is_dataclass(config) and config.train.steps > 0
