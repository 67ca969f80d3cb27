"""(e) Samplers with exact conditionals: ancestral and Euler sample p0, MaskGIT does not."""

from __future__ import annotations

import pytest
import torch

from unif2ace_mini import diffusion as D

N = 12000
TV_TOL = 0.045     # TV of 12k samples over 64 states from p0 itself is ~0.02


@pytest.fixture(scope="module")
def table():
    return D.JointTable.random(length=3, n_real=4, seed=0)


def test_monte_carlo_floor(table):
    assert table.tv_distance(table.sample(N, torch.Generator().manual_seed(0))) < TV_TOL


def test_ancestral_samples_p0_with_at_most_l_calls(table):
    res = D.ancestral_sample(table.denoiser, N, 3, table.mask_id, 128,
                             generator=torch.Generator().manual_seed(1))
    assert (res.tokens != table.mask_id).all()
    assert table.tv_distance(res.tokens) < TV_TOL
    assert res.calls_per_sample <= 3.0                                        # RADD caching
    uncached = D.ancestral_sample(table.denoiser, 64, 3, table.mask_id, 32, cache=False,
                                  generator=torch.Generator().manual_seed(1))
    assert uncached.network_calls == 32


def test_euler_samples_p0(table):
    res = D.euler_sample(table.denoiser, N, 3, table.mask_id, 128,
                         schedule=D.CosineSchedule(), generator=torch.Generator().manual_seed(2))
    assert (res.tokens != table.mask_id).all()
    assert table.tv_distance(res.tokens) < TV_TOL


def test_maskgit_does_not_sample_p0(table):
    res = D.maskgit_sample(table.denoiser, N, 3, table.mask_id, 3, temperature=1.0,
                           generator=torch.Generator().manual_seed(3))
    assert res.network_calls == 3 and (res.tokens != table.mask_id).all()
    assert table.tv_distance(res.tokens) > 2 * TV_TOL


def test_maskgit_guidance_combines_logits_and_counts_calls():
    vocab, mask = 5, 4
    cond_bias = torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0])
    uncond_bias = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])

    def cond(xt):
        return cond_bias.expand(*xt.shape, vocab).clone()

    def uncond(xt):
        return uncond_bias.expand(*xt.shape, vocab).clone()

    seen = []

    def probe(xt):
        seen.append(xt.clone())
        return cond(xt)
    res = D.maskgit_sample(probe, 4, 6, mask, 4, guidance_scale=2.0, uncond_denoiser=uncond,
                           generator=torch.Generator().manual_seed(0))
    assert res.network_calls == 8 and res.calls_per_sample == 8.0
    # masked counts kept after each step follow floor(L cos(pi/2 (s+1)/S)), clamped
    assert [int((x == mask).sum(-1)[0]) for x in seen] == [6, 5, 4, 2]
    # guided logits (1 + w) cond - w uncond = [4, -2, 0, 0]: p(0) = 0.96 instead of 0.71
    assert float((res.tokens == 0).double().mean()) > 0.9
    with pytest.raises(ValueError, match="uncond_denoiser"):
        D.maskgit_sample(cond, 2, 6, mask, 4, guidance_scale=1.0)


@pytest.mark.parametrize("sampler", [D.maskgit_sample, D.ancestral_sample, D.euler_sample])
def test_samplers_are_seeded(table, sampler):
    a = sampler(table.denoiser, 32, 3, table.mask_id, 8, generator=torch.Generator().manual_seed(7))
    b = sampler(table.denoiser, 32, 3, table.mask_id, 8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.tokens, b.tokens)
    with pytest.raises(ValueError, match="num_steps"):
        sampler(table.denoiser, 2, 3, table.mask_id, 0)
