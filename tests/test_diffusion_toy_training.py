"""The toy denoiser and the ablation's loss variants: shapes, gradients, caching, the chain oracle."""

from __future__ import annotations

import math

import pytest
import torch

from unif2ace_mini import diffusion as D
from unif2ace_mini.diffusion import denoiser as DN


@pytest.fixture(scope="module")
def chain():
    return D.MarkovChain.random(n_real=5, length=6, concentration=0.3, seed=0)


def test_markov_chain_conditionals_match_enumeration(chain):
    # brute force over all 5^6 sequences vs forward-backward
    seqs = torch.cartesian_prod(*[torch.arange(5)] * 6)
    logp = chain.log_prob(seqs)
    assert float(torch.logsumexp(logp, 0)) == pytest.approx(0.0, abs=1e-10)
    entropy = float(-(logp.exp() * logp).sum())
    assert chain.entropy() == pytest.approx(entropy, rel=1e-10)
    xt = torch.tensor([[chain.mask_id, 2, chain.mask_id, chain.mask_id, 0, chain.mask_id]])
    consistent = ((xt == chain.mask_id) | (xt == seqs)).all(-1)
    w = logp.exp() * consistent
    brute = torch.stack([torch.bincount(seqs[:, i], weights=w, minlength=5) for i in range(6)])
    torch.testing.assert_close(chain.conditionals(xt)[0], brute / w.sum(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant", ["mgm", "score_tied", "score_untied", "d3diff_0.01"])
def test_variant_losses_are_finite_and_differentiable(chain, variant):
    model = DN.TinyDenoiser(chain.n_real + 1, chain.length, d_model=16, n_layers=1, n_heads=2)
    x0 = chain.sample(8, torch.Generator().manual_seed(0))
    loss = DN.variant_loss(variant, model, x0, D.CosineSchedule(), chain.mask_id,
                           torch.Generator().manual_seed(1))
    loss.backward()
    assert loss.dim() == 0 and math.isfinite(float(loss.detach()))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_unknown_variant_is_an_error(chain):
    model = DN.TinyDenoiser(chain.n_real + 1, chain.length, d_model=16, n_layers=1, n_heads=2)
    with pytest.raises(ValueError, match="unknown variant"):
        DN.variant_loss("mask_only", model, chain.sample(2), D.CosineSchedule(), chain.mask_id,
                        torch.Generator())


def test_load_or_train_reuses_complete_runs(chain, tmp_path, monkeypatch):
    monkeypatch.setenv("UNIF2ACE_CACHE", str(tmp_path))
    config = DN.ToyTrainConfig(steps=5, batch_size=4, d_model=16, n_layers=1, n_heads=2,
                               warmup=2)
    data = chain.sample(32, torch.Generator().manual_seed(0))
    args = ("d3diff_0.01", data, chain.n_real + 1, chain.mask_id, D.CosineSchedule(), config)
    first, log1 = DN.load_or_train(*args, cache_key="t")
    second, log2 = DN.load_or_train(*args, cache_key="t")
    assert not log1["cached"] and log2["cached"] and log2["steps"] == 5
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_training_stops_on_steps_and_warns_when_the_time_limit_cuts_it(chain):
    data = chain.sample(64, torch.Generator().manual_seed(0))
    small = dict(d_model=16, n_layers=1, n_heads=2, batch_size=8)
    _, log = DN.train_denoiser("mgm", data, chain.n_real + 1, chain.mask_id, D.CosineSchedule(),
                               DN.ToyTrainConfig(steps=3, max_seconds=60.0, **small))
    assert log["steps"] == 3 and len(log["loss"]) == 3
    with pytest.warns(RuntimeWarning, match="time limit"):
        _, log = DN.train_denoiser("mgm", data, chain.n_real + 1, chain.mask_id,
                                   D.CosineSchedule(),
                                   DN.ToyTrainConfig(steps=50, max_seconds=0.0, **small))
    assert log["steps"] == 1
