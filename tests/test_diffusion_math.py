"""Exactness of the discrete-diffusion maths (DESIGN §6), in float64 on an explicit joint table."""

from __future__ import annotations

import math

import pytest
import torch

from unif2ace_mini import diffusion as D
from unif2ace_mini.diffusion import toy

SCHEDULES = [D.LinearSchedule(), D.CosineSchedule(), D.LogLinearSchedule(1e-3),
             D.LogLinearSchedule(0.0), D.GeometricSchedule(1e-4, 20.0)]
FULL = [D.LinearSchedule(), D.CosineSchedule(), D.LogLinearSchedule(0.0)]   # alpha: 1 -> 0


@pytest.fixture(scope="module")
def table():
    return D.JointTable.random(length=3, n_real=4, seed=0)


def perturbed_denoiser(table, bad_count: int, eps: float):
    """Exact conditionals, mixed with uniform where exactly `bad_count` tokens are masked."""
    def denoiser(xt):
        p = table.conditionals(xt)
        bad = ((xt == table.mask_id).sum(-1) == bad_count)[:, None, None]
        logp = torch.where(bad, (1 - eps) * p + eps / table.n_real, p).log()
        return torch.cat([logp, torch.full_like(logp[..., :1], -math.inf)], -1)
    return denoiser


# ----------------------------------------------------------------------------- schedules

@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_schedule_identities(schedule):
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    alpha, sbar = schedule.alpha(t), schedule.sigma_bar(t)
    torch.testing.assert_close(alpha, torch.exp(-sbar), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(schedule.ratio(t), 1 / torch.expm1(sbar), rtol=1e-10, atol=0)
    torch.testing.assert_close(schedule.masked_fraction(t), 1 - alpha, rtol=1e-10, atol=1e-14)
    h = 1e-6
    fd_sigma = (schedule.sigma_bar(t + h) - schedule.sigma_bar(t - h)) / (2 * h)
    torch.testing.assert_close(schedule.dsigma(t), fd_sigma, rtol=1e-6, atol=0)
    fd_alpha = (schedule.alpha(t + h) - schedule.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(schedule.elbo_weight(t), -fd_alpha / (1 - alpha), rtol=1e-6, atol=0)
    torch.testing.assert_close(schedule.elbo_weight(t), schedule.dsigma(t) * schedule.ratio(t),
                               rtol=1e-10, atol=0)
    assert schedule.alpha(t.view(9, 11)).shape == (9, 11)                       # vectorised


def test_named_schedule_laws():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)[1:-1]
    torch.testing.assert_close(D.LinearSchedule().alpha(t), 1 - t)
    torch.testing.assert_close(D.LinearSchedule().elbo_weight(t), 1 / t)
    torch.testing.assert_close(D.CosineSchedule().masked_fraction(t), torch.cos(math.pi / 2 * (1 - t)))
    assert float(D.LogLinearSchedule(0.01).alpha(torch.tensor(1.0))) == pytest.approx(0.01)
    geo = D.GeometricSchedule(1e-3, 10.0)
    assert float(geo.sigma_bar(torch.tensor(0.0, dtype=torch.float64))) == pytest.approx(1e-3)
    assert float(geo.sigma_bar(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(10.0)
    assert D.get_schedule("cosine").name == "cosine"
    with pytest.raises(ValueError, match="unknown schedule"):
        D.get_schedule("quadratic")


@pytest.mark.parametrize("schedule", FULL, ids=repr)
def test_elbo_weight_integrates_binomial_count_to_one_over_k(schedule):
    # int_0^1 w(t) C(L,k) (1-alpha)^k alpha^(L-k) dt = 1/k: why the NELBO is schedule-free
    length = 6
    t, wq = toy.gauss_legendre_01(300)
    m, alpha = schedule.masked_fraction(t), schedule.alpha(t)
    for k in range(1, length + 1):
        val = (wq * schedule.elbo_weight(t) * math.comb(length, k) * m ** k
               * alpha ** (length - k)).sum()
        assert float(val) == pytest.approx(1 / k, rel=1e-9)


# ----------------------------------------------------------------------------- (a) CTMC, score

def test_ctmc_transition_is_the_closed_form():
    sbar = 0.37
    trans = toy.transition_matrix(sbar, 4)
    alpha = math.exp(-sbar)
    expected = torch.zeros(5, 5, dtype=torch.float64)
    expected[:4, :4] = alpha * torch.eye(4, dtype=torch.float64)
    expected[:4, 4] = 1 - alpha
    expected[4, 4] = 1.0
    torch.testing.assert_close(trans, expected, rtol=1e-12, atol=1e-14)


def test_concrete_score_is_ratio_times_conditional(table):
    sbar = 0.7
    r, alpha, mask = 1 / math.expm1(sbar), math.exp(-sbar), table.mask_id
    pt = table.forward_marginal(sbar)
    assert float(pt.sum()) == pytest.approx(1.0, abs=1e-12)
    states = table.all_states()
    states = states[(states == mask).any(-1)]                                   # every masked state
    cond = table.conditionals(states)
    for x, p in zip(states, cond):
        for i in torch.nonzero(x == mask).flatten():
            y = x.repeat(table.n_real, 1)
            y[:, i] = torch.arange(table.n_real)
            score = pt[table.state_index(y)] / pt[table.state_index(x[None])]  # p_t(y)/p_t(x)
            torch.testing.assert_close(score, r * p[i], rtol=1e-12, atol=1e-15)
    # the whole-sequence identity p(x0|xt) = p_t(xt|x0) * p_t(x0)/p_t(xt) is off by alpha^L
    xt = torch.tensor([[0, mask, mask]])
    x0 = table.sequences
    consistent = ((xt == mask) | (xt == x0)).all(-1)
    q = consistent * alpha * (1 - alpha) ** 2
    posterior = q * table.flat / pt[table.state_index(xt)]
    literal = q * pt[table.state_index(x0)] / pt[table.state_index(xt)]
    torch.testing.assert_close(literal[consistent] / posterior[consistent],
                               torch.full((int(consistent.sum()),), alpha ** 3, dtype=torch.float64))


# ----------------------------------------------------------------------------- (b) DSE = r CE

def _batch(table, schedule, seed=0, batch=64):
    g = torch.Generator().manual_seed(seed)
    x0 = table.sample(batch, g)
    t = torch.rand(batch, dtype=torch.float64, generator=g) * 0.98 + 0.01
    xt = D.forward_mask(x0, t, schedule, table.mask_id, g)
    logits = torch.randn(batch, table.length, table.n_real + 1, dtype=torch.float64, generator=g)
    return x0, t, xt, logits


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_tied_score_entropy_is_ratio_times_cross_entropy(table, schedule):
    x0, t, xt, logits = _batch(table, schedule)
    mask = table.mask_id
    sbar = schedule.sigma_bar(t)
    dse = D.score_entropy(D.tied_log_score(logits, sbar, mask), xt, x0, sbar, mask)
    ce = -D.denoiser_log_probs(logits, mask).gather(-1, x0[..., None]).squeeze(-1)
    expected = torch.where(xt == mask, schedule.ratio(t)[:, None] * ce, 0.0)
    torch.testing.assert_close(dse, expected, rtol=1e-9, atol=1e-12)
    # diffusion-weighted: dsigma * sum DSE == MDLM's NELBO integrand == d3diff's score term
    weighted = schedule.dsigma(t) * dse.sum(-1)
    integrand = D.nelbo_integrand(logits, xt, x0, t, schedule, mask)
    torch.testing.assert_close(weighted, integrand, rtol=1e-9, atol=1e-12)
    parts = D.d3diff_loss(logits, xt, x0, t, schedule, mask, 0.3, return_parts=True)
    torch.testing.assert_close(parts.score, weighted.mean(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(parts.loss, parts.mgm + 0.3 * parts.score)
    torch.testing.assert_close(
        parts.mgm, D.masked_ce_loss(D.drop_mask_column(logits, mask), x0, xt == mask))


@pytest.mark.parametrize("schedule", SCHEDULES[:3], ids=repr)
def test_untied_head_adds_a_nonnegative_penalty(table, schedule):
    x0, t, xt, logits = _batch(table, schedule, seed=1)
    mask = table.mask_id
    sbar = schedule.sigma_bar(t)
    tied = D.score_entropy(D.tied_log_score(logits, sbar, mask), xt, x0, sbar, mask)
    untied = D.score_entropy(D.untied_log_score(logits, sbar, mask), xt, x0, sbar, mask)
    z = logits[..., :mask].exp().sum(-1) / (logits.shape[-1] - 1)
    penalty = torch.where(xt == mask, schedule.ratio(t)[:, None] * (z - 1 - z.log()), 0.0)
    torch.testing.assert_close(untied - tied, penalty, rtol=1e-9, atol=1e-12)
    assert (penalty >= 0).all()
    parts = D.d3diff_loss(logits, xt, x0, t, schedule, mask, 1.0, "untied", return_parts=True)
    torch.testing.assert_close(parts.score, (schedule.dsigma(t) * untied.sum(-1)).mean(),
                               rtol=1e-9, atol=1e-12)
    # a normalised untied head (Z = 1) pays nothing: it is the tied head
    norm_logits = D.denoiser_log_probs(logits, mask) + math.log(logits.shape[-1] - 1)
    norm_logits[..., mask] = 0.0
    untied_norm = D.score_entropy(D.untied_log_score(norm_logits, sbar, mask), xt, x0, sbar, mask)
    torch.testing.assert_close(untied_norm, tied, rtol=1e-9, atol=1e-12)


def test_score_entropy_shape_mask_column_and_unmasked_zero(table):
    x0, t, xt, logits = _batch(table, D.CosineSchedule(), seed=2)
    mask, sbar = table.mask_id, D.CosineSchedule().sigma_bar(t)
    log_score = D.tied_log_score(logits, sbar, mask)
    out = D.score_entropy(log_score, xt, x0, sbar, mask)
    assert out.shape == x0.shape
    assert (out[xt != mask] == 0).all() and (out[xt == mask] > 0).all()
    other = log_score.clone()
    other[..., mask] = torch.randn_like(other[..., mask]) * 10
    torch.testing.assert_close(D.score_entropy(other, xt, x0, sbar, mask), out, rtol=0, atol=0)
    # exact score minimises DSE: the gap is r * KL >= 0
    assert (D.score_entropy(log_score, xt, x0, sbar, mask) >= 0).all()


def test_tied_loss_is_stable_in_float32_near_t_equals_one():
    g = torch.Generator().manual_seed(0)
    length, vocab, mask = 8, 6, 5
    x0 = torch.randint(0, mask, (4, length), generator=g)
    xt = x0.clone()
    xt[:, ::2] = mask
    logits64 = torch.randn(4, length, vocab, dtype=torch.float64, generator=g) * 3
    sched = D.LinearSchedule()
    for t_val in [0.999, 1 - 1e-6, 1 - 2 ** -24, 1.0]:
        t32 = torch.full((4,), t_val, dtype=torch.float32)
        t64 = t32.double()
        ref = D.d3diff_loss(logits64, xt, x0, t64, sched, mask, 1.0, return_parts=True).score
        logits32 = logits64.float().requires_grad_()
        got = D.d3diff_loss(logits32, xt, x0, t32, sched, mask, 1.0, return_parts=True).score
        got.backward()
        assert torch.isfinite(got) and torch.isfinite(logits32.grad).all()
        assert float(got.detach()) == pytest.approx(float(ref), rel=1e-5)
    # the literal DSE form breaks at t = 1 in float32: r = 0, dsigma = inf, inf * 0 = NaN
    t32 = torch.ones(4)
    sbar = sched.sigma_bar(t32)
    naive = sched.dsigma(t32) * D.score_entropy(
        D.tied_log_score(logits64.float(), sbar, mask), xt, x0, sbar, mask).sum(-1)
    assert not torch.isfinite(naive).all()


def test_masked_ce_loss_is_mean_over_masked_tokens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g)
    x0 = torch.randint(0, 6, (3, 5), generator=g)
    mask = torch.rand(3, 5, generator=g) < 0.5
    ce = torch.nn.functional.cross_entropy(logits[mask], x0[mask])
    torch.testing.assert_close(D.masked_ce_loss(logits, x0, mask), ce)
    assert float(D.masked_ce_loss(logits, x0, torch.zeros_like(mask))) == 0.0


# ----------------------------------------------------------------------------- (c) NELBO vs H

@pytest.mark.parametrize("schedule", FULL, ids=repr)
def test_nelbo_of_exact_conditionals_is_the_entropy(table, schedule):
    c, k = table.pattern_ce(table.denoiser)
    assert toy.nelbo_by_quadrature(c, k, 3, schedule, 200) == pytest.approx(table.entropy(),
                                                                             abs=1e-10)
    assert toy.nelbo_by_counts(c, k, 3) == pytest.approx(table.entropy(), abs=1e-12)


@pytest.mark.parametrize("schedule", [D.LogLinearSchedule(1e-2), D.GeometricSchedule(1e-3, 8.0)],
                         ids=repr)
def test_truncated_schedules_drop_end_terms_and_report_below_h(table, schedule):
    c, k = table.pattern_ce(table.denoiser)
    got = toy.nelbo_by_quadrature(c, k, 3, schedule, 400)
    ends = [float(schedule.alpha(torch.tensor(x, dtype=torch.float64))) for x in (0.0, 1.0)]
    expected = (toy.conditional_entropy_given_alpha(table, ends[1])
                - toy.conditional_entropy_given_alpha(table, ends[0]))
    assert got == pytest.approx(expected, abs=1e-9)
    assert got < table.entropy() - 1e-6


@pytest.mark.parametrize("bad_count", [1, 2, 3])
def test_wrong_models_are_strictly_above_h(table, bad_count):
    c, k = table.pattern_ce(perturbed_denoiser(table, bad_count, 0.3))
    for schedule in FULL:
        assert toy.nelbo_by_quadrature(c, k, 3, schedule, 200) > table.entropy() + 1e-4


def test_monte_carlo_nelbo_estimators_are_unbiased(table):
    g = torch.Generator().manual_seed(3)
    h, mask, n = table.entropy(), table.mask_id, 20000
    x0 = table.sample(n, g)
    sched = D.CosineSchedule()
    t = D.sample_t(n, g, dtype=torch.float64)
    xt = D.forward_mask(x0, t, sched, mask, g)
    vals = D.nelbo_integrand(table.denoiser(xt), xt, x0, t, sched, mask)
    assert abs(float(vals.mean()) - h) < 4 * float(vals.std()) / n ** 0.5
    any_order = D.nelbo_any_order(table.denoiser, x0, mask, g)
    assert abs(float(any_order.mean()) - h) < 4 * float(any_order.std()) / n ** 0.5
    assert float(any_order.std()) < float(vals.std())                       # lower variance
    est = D.nelbo_bits_per_token(table.denoiser, x0[:100], mask, g)
    assert est.nats_per_sequence.shape == (100,) and est.stderr > 0


def test_time_power_draws_u_to_the_power_and_its_density_integrates_to_one():
    t1 = D.sample_t(1000, torch.Generator().manual_seed(5), dtype=torch.float64)
    t2 = D.sample_t(1000, torch.Generator().manual_seed(5), dtype=torch.float64, power=0.5)
    assert torch.equal(t2, t1 ** 0.5)                    # same u, so power 1 is the old draw
    # importance weights: mean of f(t) / q(t) over stratified t = u^p is the integral of f
    t = D.sample_t(100000, torch.Generator().manual_seed(6), dtype=torch.float64, power=0.5)
    assert float((t ** 2 / D.time_density(t, 0.5)).mean()) == pytest.approx(1 / 3, abs=1e-4)
    grid = torch.linspace(1e-6, 1, 200001, dtype=torch.float64)
    for p in (0.33, 0.5, 2.0):
        assert float(torch.trapezoid(D.time_density(grid, p), grid)) == pytest.approx(1, abs=2e-3)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="time power"):
            D.sample_t(4, power=bad)


def test_time_power_reweights_the_nelbo_unless_divided_by_its_density(table):
    """TrainConfig.t2i_time_power draws t = u^p: the score term then averages the NELBO
    integrand under q(t), not U(0, 1), so it is no longer the bound; dividing by q(t) would
    restore it (an unbiased estimate of the entropy here)."""
    g = torch.Generator().manual_seed(7)
    h, mask, n = table.entropy(), table.mask_id, 20000
    x0 = table.sample(n, g)
    sched = D.CosineSchedule()
    t = D.sample_t(n, g, dtype=torch.float64, power=0.5)        # late, masked times favoured
    xt = D.forward_mask(x0, t, sched, mask, g)
    plain = D.nelbo_integrand(table.denoiser(xt), xt, x0, t, sched, mask)
    weighted = plain / D.time_density(t, 0.5)
    assert abs(float(plain.mean()) - h) > 10 * float(plain.std()) / n ** 0.5
    assert abs(float(weighted.mean()) - h) < 4 * float(weighted.std()) / n ** 0.5


# ----------------------------------------------------------------------------- (d) MGM

def test_showo_count_law(table):
    probs = D.showo_count_probs(16)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12) and (probs > 0).all()
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(20000, 16, dtype=torch.long)
    xt, mask, k = D.showo_mask(x0, 1, g)
    assert (mask.sum(-1) == k).all() and ((xt == 1) == mask).all()
    emp = torch.bincount(k - 1, minlength=16).double() / len(k)
    assert float((emp - probs).abs().max()) < 0.01
    pos = mask[k == 4].double().mean(0)                                       # uniform positions
    assert float((pos - 4 / 16).abs().max()) < 0.04


def test_mgm_is_a_reweighting_not_a_bound(table):
    exact_c, k = table.pattern_ce(table.denoiser)
    model_a = table.pattern_ce(perturbed_denoiser(table, 1, 0.1))[0]          # bad on few masks
    model_b = table.pattern_ce(perturbed_denoiser(table, 3, 0.5))[0]          # bad on all masks
    nelbo_a, nelbo_b = toy.nelbo_by_counts(model_a, k, 3), toy.nelbo_by_counts(model_b, k, 3)
    mgm_a, mgm_b = toy.mgm_by_counts(model_a, k, 3), toy.mgm_by_counts(model_b, k, 3)
    assert nelbo_a > nelbo_b > table.entropy()                                # the bound prefers B
    assert mgm_a < mgm_b                                                      # MGM prefers A
    # weighting each sequence's mean CE by 1/pi(k) restores the NELBO (Monte Carlo)
    g = torch.Generator().manual_seed(5)
    x0 = table.sample(40000, g)
    xt, _, _ = D.showo_mask(x0, table.mask_id, g)
    weighted = D.reweighted_mgm(perturbed_denoiser(table, 1, 0.1)(xt), xt, x0, table.mask_id)
    assert abs(float(weighted.mean()) - nelbo_a) < 4 * float(weighted.std()) / 40000 ** 0.5


def test_elbo_count_law_under_linear_schedule_is_uniform():
    # int_0^1 C(L,k) t^k (1-t)^(L-k) dt = 1/(L+1): every count, 0 included, equally likely
    probs = D.elbo_count_probs(5, D.LinearSchedule())
    torch.testing.assert_close(probs, torch.full((6,), 1 / 6, dtype=torch.float64))
    assert float(D.elbo_count_probs(7, D.CosineSchedule()).sum()) == pytest.approx(1.0, abs=1e-10)
