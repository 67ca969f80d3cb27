"""Bad input to the diffusion API fails early with a ValueError that names the problem."""

from __future__ import annotations

import pytest
import torch

from unif2ace_mini import diffusion as D

MASK, VOCAB, B, L = 5, 6, 2, 4


def _inputs():
    x0 = torch.tensor([[0, 1, 2, 3], [4, 3, 2, 1]])
    xt = x0.clone()
    xt[:, 1] = MASK
    logits = torch.zeros(B, L, VOCAB)
    return logits, xt, x0, torch.tensor([0.3, 0.7])


@pytest.mark.parametrize("bad_t", [-0.1, 1.5, float("nan")])
def test_time_outside_unit_interval(bad_t):
    logits, xt, x0, t = _inputs()
    t[0] = bad_t
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        D.d3diff_loss(logits, xt, x0, t, D.CosineSchedule(), MASK)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        D.LinearSchedule().alpha(t)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        D.forward_mask(x0, t, D.LinearSchedule(), MASK)


def test_mask_id_out_of_range():
    logits, xt, x0, t = _inputs()
    with pytest.raises(ValueError, match="mask_id 6 is out of range"):
        D.nelbo_integrand(logits, xt, x0, t, D.LinearSchedule(), 6)
    with pytest.raises(ValueError, match="mask_id"):
        D.score_entropy(logits, xt, x0, torch.ones(B), -1)


@pytest.mark.parametrize("fn", ["d3diff", "nelbo", "score"])
def test_mismatched_shapes(fn):
    logits, xt, x0, t = _inputs()
    sched = D.LinearSchedule()
    calls = {
        "d3diff": lambda lg, a, b, tt: D.d3diff_loss(lg, a, b, tt, sched, MASK),
        "nelbo": lambda lg, a, b, tt: D.nelbo_integrand(lg, a, b, tt, sched, MASK),
        "score": lambda lg, a, b, tt: D.score_entropy(lg, a, b, sched.sigma_bar(tt), MASK),
    }[fn]
    with pytest.raises(ValueError, match="shape mismatch"):
        calls(logits[:, :3], xt, x0, t)
    with pytest.raises(ValueError, match="shape mismatch"):
        calls(logits, xt[:, :3], x0, t)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        calls(logits, xt, x0, t[:1])
    with pytest.raises(ValueError, match=r"\(B, L, V\)"):
        calls(logits[0], xt, x0, t)


def test_other_contract_violations():
    logits, xt, x0, t = _inputs()
    sched = D.LinearSchedule()
    with pytest.raises(ValueError, match="contains the mask id"):
        D.d3diff_loss(logits, xt, xt, t, sched, MASK)
    with pytest.raises(ValueError, match="not masked"):
        bad = xt.clone()
        bad[0, 0] = 4
        D.d3diff_loss(logits, bad, x0, t, sched, MASK)
    with pytest.raises(ValueError, match="integer tensor"):
        D.d3diff_loss(logits, xt.float(), x0, t, sched, MASK)
    with pytest.raises(ValueError, match="score_head"):
        D.d3diff_loss(logits, xt, x0, t, sched, MASK, score_head="shared")
    with pytest.raises(ValueError, match="lambda_score"):
        D.d3diff_loss(logits, xt, x0, t, sched, MASK, lambda_score=-1.0)
    with pytest.raises(ValueError, match="sigma_bar must be >= 0"):
        D.score_entropy(logits, xt, x0, torch.tensor([-1.0, 1.0]), MASK)
    with pytest.raises(ValueError, match="eps"):
        D.LogLinearSchedule(eps=1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        D.GeometricSchedule(1.0, 0.5)
