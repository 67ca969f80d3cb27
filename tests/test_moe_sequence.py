"""Grouped sequence-level MoE: top-2 per sequence, exact copy / zero / injection, features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unif2ace_mini.model.moe_config import SEQUENCE_MOE_CONFIGS, SequenceMoEConfig
from unif2ace_mini.model.resampler import InjectionExpert, Resampler
from unif2ace_mini.model.sequence_moe import SequenceMoE

D, CLIP, FACE = 16, 12, 8
CONFIG = SequenceMoEConfig(clip_dim=CLIP, face_dim=FACE, noise_dim=6, noise_tokens=3,
                           resampler_heads=2, lambda_mmu=0.1, lambda_t2i=0.2)


def make(seed=0, **changes) -> SequenceMoE:
    torch.manual_seed(seed)
    moe = SequenceMoE(D, CONFIG.replace(**changes))
    with torch.no_grad():
        moe.router.weight.normal_(std=1.0)
    return moe


def inputs(B=6, L=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, D, generator=g)
    task = torch.tensor([0, 1] * (B // 2))
    mask = torch.rand(B, L, generator=g) > 0.3
    feats = {"clip": torch.randn(B, 5, CLIP, generator=g), "face": torch.randn(B, 1, FACE,
                                                                               generator=g)}
    return x, task, mask, feats


def force(moe: SequenceMoE, chosen_local: list[list[int]], gates: list[list[float]]):
    """Make the router pick the given experts (indices local to each row's group) and gates."""
    def route(normed, task, token_mask):
        top_i = torch.tensor(chosen_local) + torch.tensor(moe.offsets)[task][:, None]
        probs = torch.zeros(len(task), len(moe.kinds))
        g = torch.tensor(gates)
        probs.scatter_(1, top_i, g)
        return probs, top_i, g
    moe.route = route


def test_exactly_two_experts_per_sequence_within_its_group():
    moe = make().eval()                                              # eval: fixed noise
    x, task, mask, feats = inputs(B=8)
    y, aux = moe(x, task, mask, feats)
    assert y.shape == x.shape
    assert aux["chosen"].shape == (8, 2) and aux["routing"].shape == (8, 4)
    assert (aux["chosen"][:, 0] != aux["chosen"][:, 1]).all()
    assert ((aux["chosen"] >= 0) & (aux["chosen"] < 4)).all()
    torch.testing.assert_close(aux["routing"].sum(-1), torch.ones(8))
    torch.testing.assert_close(aux["gates"].sum(-1), torch.ones(8))
    top2 = aux["routing"].topk(2, -1).indices
    assert torch.equal(top2, aux["chosen"])
    # generation rows cannot reach the CLIP / face experts: their output ignores the features
    other = {k: torch.randn_like(v) for k, v in feats.items()}
    y2, _ = moe(x, task, mask, other)
    t2i = task == 1
    torch.testing.assert_close(y2[t2i], y[t2i])


def test_copy_and_zero_are_exact():
    moe = make()
    x, task, mask, feats = inputs(B=2)                               # rows: mmu, t2i
    force(moe, [[2, 3], [0, 1]], [[0.6, 0.4], [0.7, 0.3]])           # copy+copy | copy+zero
    y, _ = moe(x, task, mask, feats)
    torch.testing.assert_close(y[0], x[0], rtol=0, atol=1e-6)
    assert torch.equal(y[1], x[1] * torch.tensor(0.7))


def test_injection_formula_on_a_toy_case():
    moe = make(init_x_weight=0.25)
    x, task, mask, feats = inputs(B=2)
    force(moe, [[0, 2], [2, 3]], [[0.8, 0.2], [0.5, 0.5]])           # clip+copy | noise+copy
    moe.eval()
    y, _ = moe(x, task, mask, feats)
    clip = moe.experts["mmu0_clip"]
    assert abs(clip.x_weight.item() - 0.25) < 1e-6
    normed = moe.norm(x)
    injected = 0.25 * x[0] + 0.75 * clip.resampler(normed[:1], feats["clip"][:1])[0]
    torch.testing.assert_close(y[0], 0.8 * injected + 0.2 * x[0])
    noise = moe.experts["t2i2_noise"]
    fixed = moe.eval_noise[None]                                     # eval: the fixed draw
    injected = 0.25 * x[1] + 0.75 * noise.resampler(normed[1:], fixed)[0]
    torch.testing.assert_close(y[1], 0.5 * injected + 0.5 * x[1])


def test_resampler_is_cross_attention_without_token_mixing():
    torch.manual_seed(0)
    res = Resampler(D, CLIP, n_heads=2, n_latents=3)
    q, f = torch.randn(2, 5, D), torch.randn(2, 4, CLIP)
    out = res(q, f)
    ctx = torch.cat([res.feature_norm(res.feature_proj(f)), res.latents.expand(2, -1, -1)], 1)
    k, v = res.key_value(ctx).chunk(2, -1)
    qh, kh, vh = (t.unflatten(-1, (2, 8)).transpose(1, 2) for t in (res.query(q), k, v))
    att = (qh @ kh.transpose(-1, -2) / 8 ** 0.5).softmax(-1) @ vh
    torch.testing.assert_close(out, res.out(att.transpose(1, 2).reshape(2, 5, D)))
    perm = torch.randperm(5)                                         # each token reads alone
    torch.testing.assert_close(res(q[:, perm], f), out[:, perm])


def test_missing_features_fall_back_to_copy():
    moe = make()
    x, task, mask, feats = inputs(B=2)
    force(moe, [[0, 1], [0, 3]], [[0.5, 0.5], [0.5, 0.5]])           # clip+face | copy+copy
    for missing in (None, {}, {"clip": torch.zeros(2, 5, CLIP), "face": torch.zeros(2, 1, FACE)}):
        y, _ = moe(x, task, mask, missing)
        torch.testing.assert_close(y, x)
    y, _ = moe(x, task, mask, {"clip": feats["clip"]})              # face absent: clip only
    clip = moe.experts["mmu0_clip"]
    w = clip.x_weight
    expect = 0.5 * (w * x[0] + (1 - w) * clip.resampler(moe.norm(x)[:1], feats["clip"][:1])[0])
    torch.testing.assert_close(y[0], expect + 0.5 * x[0])


def test_noise_expert_training_random_eval_fixed():
    moe = make()
    x, task, mask, _ = inputs(B=2)
    force(moe, [[2, 3], [2, 0]], [[0.5, 0.5], [0.5, 0.5]])           # t2i row uses noise
    torch.manual_seed(3)
    a, _ = moe(x, task, mask)
    b, _ = moe(x, task, mask)
    torch.manual_seed(3)
    c, _ = moe(x, task, mask)
    assert not torch.allclose(a[1], b[1]) and torch.equal(a, c)     # fresh noise, seeded
    moe.eval()
    d, _ = moe(x, task, mask)
    e, _ = moe(x, task, mask)
    assert torch.equal(d, e)
    force(moe, [[2, 0]], [[0.5, 0.5]])                               # same row alone in a batch
    alone, _ = moe(x[1:], task[1:], mask[1:])
    torch.testing.assert_close(alone[0], d[1])


def test_routing_pools_only_conditioning_tokens():
    moe = make()
    x, task, mask, feats = inputs()
    _, aux = moe(x, task, mask, feats)
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 5)
    _, aux2 = moe(x2, task, mask, feats)
    torch.testing.assert_close(aux2["routing"], aux["routing"])
    _, aux3 = moe(x, task, torch.zeros_like(mask), feats)           # no condition: pool all
    _, aux4 = moe(x, task, None, feats)
    torch.testing.assert_close(aux3["routing"], aux4["routing"])


def test_balance_loss_formula_and_uniform_minimum():
    moe = make()
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1, 0, 0, 0, 0],
                          [0.1, 0.2, 0.3, 0.4, 0, 0, 0, 0]])
    top_i = torch.tensor([[0, 1], [3, 2]])
    # mmu only: f = (1/4,)*4, P = (0.25,)*4 -> 4 * 4 * (1/16) = 1, times lambda_mmu = 0.1
    torch.testing.assert_close(moe.balance(probs, top_i, torch.zeros(2, dtype=torch.long)),
                               torch.tensor(0.1))
    top_i = torch.tensor([[0, 1], [0, 1]])                           # skewed choice
    # f = (1/2, 1/2, 0, 0), P = (0.25, 0.25, ...): 4 * (0.125 + 0.125) = 1
    torch.testing.assert_close(moe.balance(probs, top_i, torch.zeros(2, dtype=torch.long)),
                               torch.tensor(0.1))
    probs = torch.tensor([[0.5, 0.5, 0, 0, 0, 0, 0, 0]] * 2)        # skewed probs and choice
    torch.testing.assert_close(moe.balance(probs, top_i, torch.zeros(2, dtype=torch.long)),
                               torch.tensor(0.1 * 4 * 0.5))
    x, task, mask, feats = inputs()
    with torch.no_grad():
        moe.router.weight.zero_()
    _, aux = moe(x, task, mask, feats)
    torch.testing.assert_close(aux["balance_loss"], torch.tensor(0.1 + 0.2))


def test_gradients_reach_router_mixing_weights_and_resamplers():
    moe = make()
    x, task, mask, feats = inputs(B=12)
    force(moe, [[0, 1], [2, 0]] * 6, [[0.6, 0.4], [0.7, 0.3]] * 6)
    y, _ = moe(x.requires_grad_(), task, mask, feats)
    y.square().mean().backward()
    for name in ("mmu0_clip", "mmu1_face", "t2i2_noise"):
        expert = moe.experts[name]
        assert expert.mix_logits.grad.abs().sum() > 0, name
        assert expert.resampler.feature_proj.weight.grad.abs().sum() > 0, name
    del moe.route                                                    # the real router again
    moe.zero_grad()
    y, aux = moe(x, task, mask, feats)
    (y.square().mean() + aux["balance_loss"]).backward()
    assert moe.router.weight.grad.abs().sum() > 0


def test_bad_features_are_clear_errors():
    moe = make()
    x, task, mask, feats = inputs()
    for bad, match in [({"clip": torch.randn(6, 5, CLIP + 1)}, "clip_dim"),
                       ({"face": torch.randn(5, 1, FACE)}, "face"),
                       ({"face": torch.randn(6, FACE)}, "face"),
                       ({"clip_tokens": feats["clip"]}, "unknown feature"),
                       ([feats["clip"]], "dict")]:
        with pytest.raises(ValueError, match=match):
            moe(x, task, mask, bad)
    with pytest.raises(ValueError, match="task"):
        moe(x, task[:3], mask, feats)


@pytest.mark.parametrize("kwargs", [dict(mmu_experts=("clip", "dragon")), dict(top_k=5),
                                    dict(top_k=0), dict(init_x_weight=1.0), dict(clip_dim=0),
                                    dict(lambda_t2i=-1.0)])
def test_bad_config_is_a_clear_error(kwargs):
    with pytest.raises(ValueError):
        SequenceMoEConfig(**kwargs)


def test_configs_and_expert_names():
    assert set(SEQUENCE_MOE_CONFIGS) == {"quick", "cpu", "gpu", "paper"}
    moe = SequenceMoE(D, CONFIG)
    assert sorted(moe.experts) == ["mmu0_clip", "mmu1_face", "t2i2_noise"]
    assert CONFIG.groups == (("clip", "face", "copy", "copy"), ("copy", "zero", "noise", "copy"))
    expert = InjectionExpert(D, 4, n_heads=2, init_x_weight=0.8)
    assert abs(expert.x_weight.item() - 0.8) < 1e-6
    assert F.softmax(expert.mix_logits, 0).sum().item() == pytest.approx(1.0)
    x, normed, f = torch.randn(2, 3, D), torch.randn(2, 3, D), torch.randn(2, 5, 4)
    torch.testing.assert_close(expert(x, normed, f), 0.8 * x + 0.2 * expert.resampler(normed, f))


def test_feature_widths_match_the_encoders_of_each_profile():
    # The sequence MoE's resampler projects encoder features: a width mismatch would only
    # surface as a shape error deep inside training.
    from unif2ace_mini.encoders.config import CLIP_CONFIGS, FACE_ENCODER_CONFIGS

    for name, cfg in SEQUENCE_MOE_CONFIGS.items():
        assert cfg.face_dim == FACE_ENCODER_CONFIGS[name].embedding_dim, name
        if not CLIP_CONFIGS[name].pretrained:
            assert cfg.clip_dim == CLIP_CONFIGS[name].vision_width, name
