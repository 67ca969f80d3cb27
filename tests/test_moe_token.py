"""Grouped token-level MoE: routing against a per-token reference, balance loss, groups, pads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unif2ace_mini.model.moe_config import TOKEN_MOE_CONFIGS, TokenMoEConfig
from unif2ace_mini.model.token_moe import TokenMoE

D, D_FF = 16, 48


def make(n_routed=4, top_k=2, n_shared=1, seed=0, **kw) -> TokenMoE:
    torch.manual_seed(seed)
    moe = TokenMoE(D, D_FF, TokenMoEConfig(n_routed=n_routed, top_k=top_k, n_shared=n_shared,
                                           lambda_mmu=0.1, lambda_t2i=0.2, **kw))
    with torch.no_grad():                       # spread the router so top-k has no near-ties
        moe.router.weight.normal_(std=1.0)
    return moe


def inputs(B=4, L=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, D, generator=g)
    task = torch.tensor([0, 1, 1, 0][:B])
    mask = torch.rand(B, L, generator=g) > 0.25
    return x, task, mask


def naive(moe: TokenMoE, x, task, mask):
    """One token at a time, straight from the definition."""
    n, s, k = moe.n, moe.s, moe.k
    ffn = lambda t, e: F.gelu(t @ moe.w_in[e], approximate="tanh") @ moe.w_out[e]  # noqa: E731
    rows = []
    for b in range(x.shape[0]):
        g = int(task[b])
        for l in range(x.shape[1]):
            t = x[b, l]
            if mask is not None and not mask[b, l]:
                rows.append(torch.zeros_like(t))
                continue
            p = (moe.router.weight[g * n:(g + 1) * n] @ t).softmax(-1)
            top_p, top_i = p.topk(k)
            out = sum(ffn(t, g * (s + n) + j) for j in range(s)) if s else 0
            for gate, i in zip(top_p / top_p.sum(), top_i.tolist()):
                out = out + gate * ffn(t, g * (s + n) + s + i)
            rows.append(out)
    return torch.stack(rows).view_as(x)


@pytest.mark.parametrize("dispatch", ["bmm", "loop"])
@pytest.mark.parametrize("n_routed,top_k,n_shared", [(4, 2, 1), (3, 3, 0), (5, 1, 2)])
@pytest.mark.parametrize("tasks", ["mixed", "t2i only"])
def test_matches_per_token_reference(dispatch, n_routed, top_k, n_shared, tasks):
    moe = make(n_routed, top_k, n_shared)
    moe.dispatch = dispatch
    x, task, mask = inputs()
    if tasks == "t2i only":                     # one group holds every row (no row selection)
        task = torch.ones_like(task)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, _ = moe(x1, task, mask)
    ref = naive(moe, x2, task, mask)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    upstream = torch.randn_like(y)
    params = [x1, moe.w_in, moe.w_out, moe.router.weight]
    grads = torch.autograd.grad((y * upstream).sum(), params)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), [x2] + params[1:])
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_no_mask_equals_all_true_mask():
    moe = make()
    x, task, _ = inputs()
    y1, aux1 = moe(x, task, None)
    y2, aux2 = moe(x, task, torch.ones(x.shape[:2], dtype=torch.bool))
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(aux1["balance_loss"], aux2["balance_loss"])


def test_topk_renormalised_and_clamped():
    moe = make(n_routed=4, top_k=2)
    logits = torch.randn(10, 8)
    group = torch.randint(0, 2, (10,))
    probs, top_i, gates = moe.route(logits, group)
    torch.testing.assert_close(probs.sum(-1), torch.ones(10))
    torch.testing.assert_close(gates.sum(-1), torch.ones(10))
    top_p = probs.gather(1, top_i)
    torch.testing.assert_close(gates, top_p / top_p.sum(-1, keepdim=True))
    own = logits.view(10, 2, 4)[torch.arange(10), group]          # the row's group's router
    torch.testing.assert_close(probs, own.softmax(-1))
    wide = make(n_routed=3, top_k=8)                                # top_k > n: all experts
    assert wide.k == 3
    probs, top_i, gates = wide.route(torch.randn(5, 6), torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(gates.sort(-1).values, probs.sort(-1).values)


def test_balance_loss_hand_made_case():
    moe = make(n_routed=2, top_k=1)
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    top_i = probs.argmax(-1, keepdim=True)                          # experts 0, 0, 1, 0
    loss, load = moe.balance(probs, top_i, torch.zeros(4, dtype=torch.long))
    # f = (3/4, 1/4), P = (0.65, 0.35): 2 * (0.75 * 0.65 + 0.25 * 0.35) = 1.15; empty group: 0
    torch.testing.assert_close(loss, torch.tensor([1.15, 0.0]))
    torch.testing.assert_close(load[0], torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(load[1], torch.zeros(2))


def test_balance_loss_is_one_lambda_when_uniform_and_larger_when_skewed():
    moe = make(n_routed=4, top_k=2)
    x, task, mask = inputs()
    with torch.no_grad():
        moe.router.weight.zero_()                                   # p_i = 1/n everywhere
    _, aux = moe(x, task, mask)
    torch.testing.assert_close(aux["balance_loss"], torch.tensor(0.1 * 1.0 + 0.2 * 1.0))
    x = torch.ones_like(x) + 0.01 * x                              # all tokens alike ...
    with torch.no_grad():                                           # ... and all prefer 0, 1
        moe.router.weight[[0, 1, 4, 5]] = 10.0
    _, aux = moe(x, task, mask)
    # f = P = (1/2, 1/2, 0, 0) in both groups: L = 4 * (1/4 + 1/4) = 2, twice the minimum.
    torch.testing.assert_close(aux["balance_loss"], torch.tensor(0.3 * 2.0), rtol=1e-3, atol=0)


def test_forward_balance_loss_matches_formula_and_load():
    moe = make()
    x, task, mask = inputs()
    _, aux = moe(x, task, mask)
    group = task[:, None].expand_as(mask)[mask]
    probs, top_i, _ = moe.route(moe.router(x[mask]), group)
    expected = 0.0
    for g, lam, name in [(0, 0.1, "mmu"), (1, 0.2, "t2i")]:
        rows = group == g
        f = torch.bincount(top_i[rows].flatten(), minlength=4).float() / (2 * rows.sum())
        P = probs[rows].mean(0)
        expected = expected + lam * 4 * (f * P).sum()
        torch.testing.assert_close(aux["load"][name], f)
    torch.testing.assert_close(aux["balance_loss"], expected)


def test_tasks_route_only_within_their_group():
    moe = make()
    x, _, mask = inputs()
    task = torch.zeros(x.shape[0], dtype=torch.long)               # understanding only
    y, aux = moe(x, task, mask)
    (y.square().sum() + aux["balance_loss"]).backward()
    per_group = moe.per_group
    assert moe.w_in.grad[:per_group].abs().sum() > 0
    assert moe.w_in.grad[per_group:].abs().sum() == 0              # generation experts untouched
    assert moe.router.weight.grad[4:].abs().sum() == 0             # generation router untouched
    assert aux["load"]["t2i"].sum() == 0 and aux["load"]["mmu"].sum() > 0.999
    with torch.no_grad():                                           # and they cannot change y
        moe.w_in[per_group:] += 1.0
    torch.testing.assert_close(moe(x, task, mask)[0], y)


def test_pads_are_ignored():
    moe = make()
    x, task, mask = inputs()
    y, aux = moe(x, task, mask)
    assert (y[~mask] == 0).all()
    x2 = x.clone()
    x2[~mask] = 100.0                                              # pads changed: nothing moves
    y2, aux2 = moe(x2, task, mask)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(aux2["balance_loss"], aux["balance_loss"])
    for name in aux["load"]:
        torch.testing.assert_close(aux2["load"][name], aux["load"][name])
    y3, aux3 = moe(x, task, torch.zeros_like(mask))                # all pads
    assert (y3 == 0).all() and aux3["balance_loss"] == 0


def test_gradients_reach_router_and_experts():
    moe = make()
    x, task, mask = inputs()
    y, aux = moe(x, task, mask)
    (y.square().mean() + aux["balance_loss"]).backward()
    assert moe.router.weight.grad.abs().sum() > 0
    assert (moe.w_in.grad.flatten(1).abs().sum(1) > 0).all()        # every expert got tokens
    assert (moe.w_out.grad.flatten(1).abs().sum(1) > 0).all()
    moe.zero_grad()
    moe(x, task, mask)[1]["balance_loss"].backward()               # the balance loss alone
    assert moe.router.weight.grad.abs().sum() > 0


def test_bmm_blocks_cover_every_assignment_once():
    counts = torch.tensor([7, 0, 33, 64, 5])
    rows = TokenMoE.block_rows(counts)
    assert rows % 32 == 0
    moe = make()
    sorted_ids = torch.repeat_interleave(torch.arange(5), counts)
    slot, block_expert, rows = moe.layout(sorted_ids, counts, "bmm")
    assert slot.unique().numel() == slot.numel()                    # no two share a slot
    assert torch.equal(block_expert[slot // rows], sorted_ids)      # each in its expert's block


def test_expert_width_keeps_active_compute_of_dense_ffn():
    cfg = TokenMoEConfig()                                          # K=4, 1 shared
    assert cfg.expert_hidden(512) == 104 and cfg.k == 4
    assert abs((cfg.k + cfg.n_shared) * cfg.expert_hidden(512) / 512 - 1) < 0.05
    assert TokenMoEConfig(expert_d_ff=64).expert_hidden(512) == 64
    assert set(TOKEN_MOE_CONFIGS) == {"quick", "cpu", "gpu", "paper"}


@pytest.mark.parametrize("kwargs", [dict(n_routed=0), dict(top_k=0), dict(n_shared=-1),
                                    dict(lambda_mmu=-0.1), dict(expert_d_ff=0)])
def test_bad_config_is_a_clear_error(kwargs):
    with pytest.raises(ValueError):
        TokenMoEConfig(**kwargs)


def test_bad_inputs_are_clear_errors():
    moe = make()
    x, task, mask = inputs()
    bad = [((x[0], task, mask), "B, L, D"), ((x[..., :8], task, mask), "d_model"),
           ((x, task[:2], mask), "task"), ((x, task.float(), mask), "task"),
           ((x, task + 1, mask), "0 \\(mmu\\) or 1"), ((x, task, mask[:, :3]), "token_mask"),
           ((x, task, mask.long()), "bool")]
    for args, match in bad:
        with pytest.raises(ValueError, match=match):
            moe(*args)
    moe.dispatch = "magic"
    with pytest.raises(ValueError, match="dispatch"):
        moe(x, task, mask)


def test_balance_loss_gradient_moves_probability_off_the_busiest_expert():
    moe = make()
    x, task, mask = inputs()
    x = torch.ones_like(x) + 0.3 * x
    with torch.no_grad():
        moe.router.weight[0] += 1.0                                # mmu expert 0 is overloaded
    group = task[:, None].expand_as(mask)[mask]

    def mmu_mean_probs():
        probs, _, _ = moe.route(moe.router(x[mask]), group)
        return probs[group == 0].mean(0)

    before = mmu_mean_probs()
    assert before.argmax() == 0
    moe(x, task, mask)[1]["balance_loss"].backward()
    with torch.no_grad():
        moe.router.weight -= 10.0 * moe.router.weight.grad
    after = mmu_mean_probs()
    assert after[0] < before[0] and after.std() < before.std()
