"""Benchmark the diffusion package: loss time per batch and sampler network calls per image.

    .venv/bin/python benchmarks/bench_diffusion.py            # quick shapes (CPU, ~30 s)
    .venv/bin/python benchmarks/bench_diffusion.py --large    # Show-o-like 16x16 tokens, 8192 codes

Loss timings are forward + backward through the loss only (random logits that require grad),
so they show the loss's own cost, not the network's. Sampler numbers: batched denoiser calls and
denoiser rows per image (what RADD caching saves), with a tiny random transformer as denoiser.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from unif2ace_mini import diffusion as D
from unif2ace_mini.diffusion.denoiser import TinyDenoiser, as_denoiser


def time_it(fn, repeats: int) -> float:
    fn()                                                                    # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench_losses(batch: int, length: int, vocab: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    mask = vocab - 1
    sched = D.CosineSchedule()
    x0 = torch.randint(0, mask, (batch, length), generator=g)
    t = D.sample_t(batch, g)
    xt = D.forward_mask(x0, t, sched, mask, g)
    logits = torch.randn(batch, length, vocab, generator=g).requires_grad_()
    showo = D.showo_mask(x0, mask, g)

    def run(loss_fn):
        def step():
            logits.grad = None
            loss_fn().backward()
        return 1e3 * time_it(step, repeats)

    sbar = sched.sigma_bar(t)
    return {
        "shape": f"B={batch} L={length} V={vocab}",
        "mgm_ms": run(lambda: D.masked_ce_loss(logits, x0, showo.mask)),
        "d3diff_tied_ms": run(lambda: D.d3diff_loss(logits, xt, x0, t, sched, mask, 0.01)),
        "d3diff_untied_ms": run(lambda: D.d3diff_loss(logits, xt, x0, t, sched, mask, 0.01,
                                                      "untied")),
        "score_entropy_literal_ms": run(lambda: (sched.dsigma(t) * D.score_entropy(
            D.tied_log_score(logits, sbar, mask), xt, x0, sbar, mask).sum(-1)).mean()),
    }


def bench_samplers(batch: int, length: int, vocab: int) -> list[dict]:
    torch.manual_seed(0)
    net = as_denoiser(TinyDenoiser(vocab, length, d_model=64, n_layers=2).eval())
    mask = vocab - 1
    rows = []
    for name, steps, fn in [
        ("maskgit", 8, lambda s, g: D.maskgit_sample(net, batch, length, mask, s, generator=g)),
        ("maskgit", 16, lambda s, g: D.maskgit_sample(net, batch, length, mask, s, generator=g)),
        ("ancestral", 16, lambda s, g: D.ancestral_sample(net, batch, length, mask, s, generator=g)),
        ("ancestral", 256, lambda s, g: D.ancestral_sample(net, batch, length, mask, s,
                                                           generator=g)),
        ("ancestral_nocache", 256, lambda s, g: D.ancestral_sample(net, batch, length, mask, s,
                                                                   cache=False, generator=g)),
        ("euler", 256, lambda s, g: D.euler_sample(net, batch, length, mask, s, generator=g)),
    ]:
        start = time.perf_counter()
        res = fn(steps, torch.Generator().manual_seed(0))
        rows.append({"sampler": name, "steps": steps, "batched_calls": res.network_calls,
                     "calls_per_image": round(res.calls_per_sample, 2),
                     "ms_per_image": round(1e3 * (time.perf_counter() - start) / batch, 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="16x16 tokens, 8193-way logits")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.large:
        losses = bench_losses(8, 256, 8193, repeats=3)
        samplers = bench_samplers(8, 256, 8193)
    else:
        losses = bench_losses(32, 64, 1025, repeats=10)
        samplers = bench_samplers(64, 64, 1025)
    print(json.dumps({"threads": args.threads, "losses": losses}, indent=1))
    for row in samplers:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
