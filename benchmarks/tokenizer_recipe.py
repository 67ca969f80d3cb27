"""Which quick image-tokenizer recipe keeps the attributes? (issue 3: retention >= 0.90)

    .venv/bin/python benchmarks/tokenizer_recipe.py                       # every recipe
    .venv/bin/python benchmarks/tokenizer_recipe.py --recipes landed,width96
    .venv/bin/python benchmarks/tokenizer_recipe.py --table               # stored results

Each recipe is a set of changes to TOKENIZER_CONFIGS["quick"] (plus "extra_images": that many
renders from the oracle's cached pool added to the 3,000 training faces). It is trained with
the package's `fit_image_tokenizer` (the cache's own seeded build-and-train) and scored like
notebook 02: the quick oracle's mean accuracy on reconstructions of the 300 validation faces,
divided by its accuracy on the originals. Results merge into benchmarks/results/tokenizer_recipe.json.

Findings (quiet 2-core machine, 2026-12-02, benchmarks/results/tokenizer_recipe.json; one seed
each: the same recipe from other initial weights moved by up to 0.007, so smaller gaps are noise):
  * the landed recipe (width 64, K = 512, 900 steps, ~45 s) keeps 0.879 (notebook 02: 0.88). More
    steps barely help (1,200: 0.887, 1,500: 0.889), nor do K = 1024 (0.884), code_dim 32 (0.887),
    lr 3e-3 (0.892) or 12,000 extra training renders (0.880): not short of data or steps.
  * width 96 is the one change that reaches 0.90 (0.900; one residual block and lr 3e-3: 0.901;
    with K = 1024 too: 0.905), at 1.2-2x the training time. Not landed: 0.90-0.905 is within the
    init noise of the target, training differs in the last bits between machines (so a notebook
    assert at 0.90 would be a coin flip on CI), and the change re-draws every downstream result.
  * 2026-12-06 (a slower day: the landed recipe took 88 s instead of 45 s): the landed recipe
    again from seeds 0 / 1 keeps 0.866 / 0.868 (0.879 on 2026-12-02 with another oracle run),
    so the init and oracle noise is about +-0.01. More channels at full resolution
    (min_channels 32: 0.879 / 0.883 from seeds 0 / 1; 48: 0.883) gain ~0.015 at 2-4x the time;
    with width 96 too: 0.886. None reaches 0.90 with a margin; not landed.
  * cpu profile (64 px): "cpu_grid16" keeps 4 px per token as the quick profile does (16x16
    grid, width 64, 3,000 steps) instead of the 8x8 grid that kept 0.805 after 12,000 steps.
    2026-12-06 (niced, on the slow day): the cpu profile's 1,200 s limit stopped it at 2,167
    steps (0.55 s/step) with retention 0.830 (oracle 0.982 on originals; emotion -0.53, mouth
    -0.42, earrings -0.42, eye colour -0.39): a finer grid alone does not reach 0.97 at this
    budget either; not landed. Re-judged by the blur-robust oracle (below; cpu oracle 0.971 on
    clean test faces): 0.885 after 1,718 steps (the same 1,200 s limit on a slower day; mouth
    -0.34, eye colour -0.32, emotion -0.32, lipstick -0.31): closer, still far from 0.97.
  * the judge (2026-12-06, second session). Every result above was scored by an oracle trained on
    clean renders only, which lost 6% of its accuracy to a 3x3 blur (PSNR 24 dB) and 5% to noise
    at the reconstructions' error: it read exact pixels, so part of the "loss" was the judge's.
    The oracle now trains on a share of blurred and noised renders (OracleConfig.degrade_share
    0.5; ~0.01 lower accuracy on clean faces, 0.99 / 0.98 kept under those controls). The same
    landed tokenizer then keeps 0.920 / 0.926 (seeds 0 / 1) and 0.866 with --clean-oracle: the
    target is met by the landed recipe with that judge. A stronger judge finds more loss: an
    oracle trained 900 instead of 600 steps (0.833 instead of 0.805 on clean faces) measured
    0.895 with degradation and 0.837 without (one-off runs), so the margin is judge-dependent.
  * what is lost is the same in every recipe: eye colour (oracle 0.73 on originals, ~0.30 on
    reconstructions: the iris is about one pixel at 32 px and a 4x4-pixel token spends its bits
    on larger structure), then eyes, head turn, clothing and skin tone (about -0.2 each). An L1
    loss on image gradients, meant to sharpen the small parts, made it worse (0.876 / 0.875 /
    0.861 at weights 0.5 / 1 / 2, unseeded runs; not kept as a recipe).
  * where the loss happens (2026-12-07, AMD EPYC, two runs sharing the 2 cores; the blur-robust
    judges). The "unquantized" column decodes the encoder's output without the codebook: landed
    0.922 quantized vs 0.930 unquantized; the cpu recipe stopped at 1,500 steps ("cpu_steps1500",
    702 s alone on 2 cores; a prototype of the loop gave the same digits) 0.756 vs 0.773. The
    codebook costs 0.01-0.02; the autoencoder loses the rest, so the cpu target needs an
    autoencoder that draws the small parts, not a better codebook. Three kinds of prototype
    (scripts not kept; one seed each), none landed:
    - attribute-supervised codes: a small conv head reads the decoder's input and predicts the 31
      labels (cross-entropy, weight 1, added to the loss). The codes then carry the attributes
      (head CE 0.28 at the end) but quick retention stays 0.916: the decoder does not draw what
      the codes know, because the pixel loss barely rewards a one-pixel iris.
    - perceptual losses from a separately trained attribute net (seed 1, clean renders; not the
      judge): feature matching, weight 1: 0.928 (quick); the KL between its predictions on the
      reconstruction and the original, weight 1: 0.939 (PSNR 20.0 vs 22.3), weight 3: 0.900. On
      cpu (KL, weight 1, 2,200 steps, its net 1,500 steps at val 0.917): 0.656 at PSNR 17.0, far
      below the plain loss: the tokenizer learns to satisfy that net, not to draw the face.
    - a patch tokenizer (ViT-VQGAN-like: pixel-unshuffle, 1x1 conv, 4 residual blocks at the token
      grid, width 128, and the mirror image with pixel-shuffle): quick 0.927 (unquantized 0.955)
      at 807 steps but 3.8x slower per step; cpu 1,500 steps 0.766 (unquantized 0.808) vs 0.756.
  * 2026-12-07 (third session, AMD EPYC, 2-3 jobs sharing the 2 cores; the quick and cpu oracles
    retrained on this machine, so these compare with each other, not with the rows above):
    - detail weighting ("detail*" recipes): the same L2 + L1 loss, weighted per pixel by
      detail_weight_map, 1 + alpha * (high-frequency energy at that pixel, averaged over the
      training faces), normalised to mean 1 (0.33-3.4 at alpha 2), so the loss spends more on
      where eyes, mouth and accessories usually sit. Quick, seed 0: 0.921 plain (the landed
      recipe, through a prototype of the same loop) -> 0.935 (alpha 2) / 0.935 (alpha 4),
      unquantized 0.933 -> 0.948 / 0.952, eye colour -0.32 -> -0.28 / -0.27; seed 1: 0.928
      plain -> 0.933 (alpha 2; unquantized 0.936 -> 0.950). cpu, 1,500 steps: 0.759 plain
      ("cpu_steps1500" again with this oracle; 0.756 with the previous one) -> 0.778 (alpha 2),
      unquantized 0.775 -> 0.793. A gain of about 0.005-0.02 (one seed per cell) at no cost in
      time, the same size at both profiles: it moves the quick margin, not the cpu gap. Not
      landed: the quick target is already met, and a new tokenizer re-draws every stored result
      downstream.
    - "cpu_grid16_4000": the 16x16 grid (4 px per token, width 64) trained 4,000 steps without a
      time limit (2,236 s, sharing the cores): 0.901, unquantized 0.917 (mouth -0.33, lipstick
      -0.29, earrings -0.28, emotion -0.26, eye colour -0.22), against 0.885 at 1,718 steps: 0.016
      for 2.3x the steps, so 0.97 lies far beyond the cpu profile's 2 h, which this run alone
      used a third of (and a 16x16 grid makes the unified model's image rows 4x longer).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from unif2ace_mini import profiles, runtime
from unif2ace_mini.data.build import build_or_load, render_pool
from unif2ace_mini.data.dataset import load_tensors, to_unit_range
from unif2ace_mini.data.oracle import evaluate_oracle, load_or_train_oracle
from unif2ace_mini.tokenizers import attribute_retention, fit_image_tokenizer
import unif2ace_mini.tokenizers.train as tokenizer_training

RESULTS = Path(__file__).parent / "results" / "tokenizer_recipe.json"

RECIPES: dict[str, dict] = {
    "landed": {},
    "steps1200": {"max_steps": 1200},
    "steps1500": {"max_steps": 1500},
    "codes1024": {"codebook_size": 1024},
    "code_dim32": {"code_dim": 32},
    "lr3e-3": {"lr": 3e-3},
    "extra12000": {"extra_images": 12000},
    "width80": {"width": 80, "lr": 3e-3},
    "width96": {"width": 96},
    "width96_1block": {"width": 96, "n_res_blocks": 1, "lr": 3e-3},
    "width96_codes1024": {"width": 96, "codebook_size": 1024, "lr": 3e-3},
    "floor32": {"min_channels": 32},
    "floor48": {"min_channels": 48},
    "floor32_lr3e-3": {"min_channels": 32, "lr": 3e-3},
    "floor48_lr3e-3": {"min_channels": 48, "lr": 3e-3},
    "landed_seed1": {"seed": 1},
    "floor32_seed1": {"min_channels": 32, "seed": 1},
    "width96_floor32": {"width": 96, "min_channels": 32},
    # the reconstruction loss weighted per pixel by where details sit (detail_weight_map)
    "detail2": {"detail_weight": 2.0},
    "detail4": {"detail_weight": 4.0},
    "detail2_seed1": {"detail_weight": 2.0, "seed": 1},
    # cpu profile (64 px), relative to TOKENIZER_CONFIGS["cpu"] (8x8 grid: 0.805 at 12,000 steps)
    "cpu_grid16": {"profile": "cpu", "downsample": 4, "width": 64, "max_steps": 3000},
    "cpu_steps1500": {"profile": "cpu", "max_steps": 1500, "max_seconds": 1e9},
    "cpu_grid16_4000": {"profile": "cpu", "downsample": 4, "width": 64, "max_steps": 4000,
                        "max_seconds": 1e9},
    "cpu_steps1500_detail2": {"profile": "cpu", "max_steps": 1500, "max_seconds": 1e9,
                              "detail_weight": 2.0},
}


def detail_weight_map(images: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1, 1, H, W), mean 1: 1 + alpha * E / mean(E), where E is the mean over images and
    channels of |x - blur_3x3(x)|, the high-frequency energy: heavier where small parts sit."""
    x = images[:2000]
    kernel = torch.ones(3, 1, 3, 3) / 9
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    energy = (x - blurred).abs().mean((0, 1))                                  # (H, W)
    weight = 1 + alpha * energy / energy.mean()
    return (weight / weight.mean())[None, None]


@contextlib.contextmanager
def weighted_reconstruction(weight: torch.Tensor):
    """Swap the package's reconstruction loss (L2 + L1) for the same loss weighted per pixel."""
    plain = tokenizer_training.reconstruction_loss

    def weighted(recon, images):
        diff = recon - images
        return (diff.pow(2) * weight).mean() + (diff.abs() * weight).mean()

    tokenizer_training.reconstruction_loss = weighted
    try:
        yield
    finally:
        tokenizer_training.reconstruction_loss = plain


def run_recipe(name: str, profile, train_images, val, oracle) -> dict:
    changes = dict(RECIPES[name])
    changes.pop("profile", None)
    extra = changes.pop("extra_images", 0)
    alpha = changes.pop("detail_weight", 0.0)
    images = train_images
    if extra:
        pool = render_pool(profile.data, profile.oracle.n_pool)["images"][:extra]
        images = torch.cat([images, to_unit_range(pool)])
    config = profile.tokenizer.replace(**changes)
    loss = weighted_reconstruction(detail_weight_map(images, alpha)) if alpha else \
        contextlib.nullcontext()
    start = time.perf_counter()
    with loss:
        tokenizer, history = fit_image_tokenizer(config, images, progress=False)
    seconds = time.perf_counter() - start
    kept = attribute_retention(oracle, tokenizer, val["x"], val["labels"])
    acc, originals = kept["reconstructions"], kept["originals"]
    # the same path without the codebook: how much the autoencoder loses before quantising
    with torch.no_grad():
        unquantized = torch.cat([tokenizer.decode_latents(tokenizer.encode_latents(x))
                                 for x in val["x"].split(256)])
    unquantized_acc = evaluate_oracle(oracle, unquantized, val["labels"])["mean"]
    losses = sorted((acc[g] - originals[g], g) for g in acc if g != "mean")
    judge = "blur-robust" if profile.oracle.degrade_share > 0 else "clean"
    return {"changes": RECIPES[name], "judge": judge, "steps": history["steps"],
            "seconds": round(seconds, 1),
            "retention": round(kept["retention"], 4),
            "unquantized_retention": round(unquantized_acc / originals["mean"], 4),
            "largest_losses": {g: round(d, 3) for d, g in losses[:5]}}


def print_table(results: dict) -> None:
    print(f"{'recipe':24s} {'judge':>11s} {'steps':>5s} {'seconds':>7s} {'retention':>9s} "
          f"{'unquantized':>11s}  largest losses")
    for name, r in results.items():
        worst = ", ".join(f"{g} {d:+.2f}" for g, d in list(r["largest_losses"].items())[:3])
        print(f"{name:24s} {r.get('judge', 'clean'):>11s} {r['steps']:5d} {r['seconds']:7.0f} "
              f"{r['retention']:9.3f} {r.get('unquantized_retention', float('nan')):11.3f}  "
              f"{worst}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", help=f"comma-separated, from {list(RECIPES)} (default: "
                        "every quick recipe; cpu ones build the cpu data and oracle first)",
                        default=",".join(n for n, r in RECIPES.items() if "profile" not in r))
    parser.add_argument("--table", action="store_true", help="print the stored results only")
    parser.add_argument("--clean-oracle", action="store_true",
                        help="judge with an oracle trained on clean renders only (degrade_share "
                        "0); stored as '<recipe>@clean_oracle'. Each result records its judge")
    args = parser.parse_args()
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.table:
        return print_table(stored)
    names = [n for n in args.recipes.split(",") if n]
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        raise SystemExit(f"unknown recipes {unknown}; choose from {list(RECIPES)}")

    suffix = "@clean_oracle" if args.clean_oracle else ""
    for profile_name in dict.fromkeys(RECIPES[n].get("profile", "quick") for n in names):
        profile = profiles.get_profile(profile_name)
        if args.clean_oracle:
            profile = profile.replace(oracle=dataclasses.replace(profile.oracle, degrade_share=0.0))
        runtime.setup(0, threads=profile.threads)
        path = build_or_load(profile.data)
        train_images = to_unit_range(load_tensors(path, "train")["images"])
        val_tensors = load_tensors(path, "validation")
        val = {"x": to_unit_range(val_tensors["images"]), "labels": val_tensors["labels"]}
        oracle, _ = load_or_train_oracle(profile)
        for name in names:
            if RECIPES[name].get("profile", "quick") != profile_name:
                continue
            key = name + suffix
            result = run_recipe(name, profile, train_images, val, oracle)
            print(key, json.dumps(result), flush=True)
            stored = runtime.merge_json(RESULTS, key, result)
    print_table({n + suffix: stored[n + suffix] for n in names})


if __name__ == "__main__":
    main()
