"""Image-tokenizer speed on this machine: training img/s, encode img/s, decode img/s.

    python benchmarks/bench_tokenizer.py                 # quick (32 px) and cpu (64 px) sizes
    python benchmarks/bench_tokenizer.py --seconds 5 --threads 2 --sizes 32

Compares the plain-torch VQ-VAE with diffusers' VQModel, the latter with its default-style
blocks (2 ResNets per level, mid-block attention, 32 norm groups) and with the lean config of
TOKENIZER_CONFIGS (1 ResNet per level, no attention, 16 groups, channels_last), plus lean without
channels_last to isolate that switch. Timings on a shared 2-core machine are noisy (+-30%).
Tip: with other processes on the same cores, run with OMP_WAIT_POLICY=PASSIVE.
"""

from __future__ import annotations

import argparse
import time

import torch

from unif2ace_mini import runtime
from unif2ace_mini.tokenizers import TOKENIZER_CONFIGS, build_image_tokenizer, coloured_shapes


def variants(size: int) -> dict:
    base = TOKENIZER_CONFIGS["quick"] if size == 32 else TOKENIZER_CONFIGS["cpu"]
    n_levels = base.downsample.bit_length()                  # blocks = log2(downsample) + 1
    lean = (32, 64, 64, 64, 64)[:n_levels]
    default_ch = (64, 128, 128, 128, 128)[:n_levels]
    return {
        "plain VQ-VAE": base,
        "VQModel default-style": base.replace(
            backend="diffusers", block_out_channels=default_ch, layers_per_block=2,
            norm_num_groups=32, mid_block_attention=True, channels_last=False),
        "VQModel lean": base.replace(backend="diffusers", block_out_channels=lean),
        "VQModel lean, NCHW": base.replace(backend="diffusers", block_out_channels=lean,
                                           channels_last=False),
    }


def train_rate(tok, images, batch: int, seconds: float) -> float:
    """Training steps (forward, backward, AdamW) per second x batch, after 2 warm-up steps."""
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-4)
    tok.train()
    steps, start = -2, None
    while start is None or time.perf_counter() - start < seconds:
        x = images[torch.randint(len(images), (batch,))]
        recon, _, vq_loss = tok(x)
        loss = (recon - x).pow(2).mean() + (recon - x).abs().mean() + vq_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        if steps == 0:
            start = time.perf_counter()
    tok.eval()
    return steps * batch / (time.perf_counter() - start)


def infer_rate(fn, data, seconds: float) -> float:
    fn(data[:8])                                             # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(data)
        n += len(data)
    return n / (time.perf_counter() - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64], choices=[32, 64])
    ap.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    runtime.setup(0, threads=args.threads)

    rows = []
    for size in args.sizes:
        images = coloured_shapes(512, size, seed=0)
        for name, cfg in variants(size).items():
            torch.manual_seed(0)
            tok = build_image_tokenizer(cfg)
            n_params = sum(p.numel() for p in tok.parameters()) / 1e6
            tr = train_rate(tok, images, args.batch, args.seconds)
            codes = tok.encode(images[:256])
            enc = infer_rate(tok.encode, images[:256], args.seconds / 2)
            dec = infer_rate(tok.decode, codes, args.seconds / 2)
            rows.append((f"{size}px -> {cfg.grid}x{cfg.grid}", name, n_params, tr, enc, dec))
            print(f"  measured {rows[-1][0]} {name}", flush=True)

    print(f"\nthreads={torch.get_num_threads()}  batch={args.batch}  torch {torch.__version__}")
    head = f"| {'size':<14} | {'tokenizer':<22} | {'params M':>8} | {'train img/s':>11} | " \
           f"{'encode img/s':>12} | {'decode img/s':>12} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for size, name, p, tr, enc, dec in rows:
        print(f"| {size:<14} | {name:<22} | {p:>8.2f} | {tr:>11.0f} | {enc:>12.0f} "
              f"| {dec:>12.0f} |")
    plain = {r[0]: r[3] for r in rows if r[1] == "plain VQ-VAE"}
    for size, name, _, tr, _, _ in rows:
        if name != "plain VQ-VAE":
            print(f"{size} {name}: plain VQ-VAE trains {plain[size] / tr:.1f}x faster")


if __name__ == "__main__":
    main()
