"""Encoder speed on this machine: training img/s and feature-extraction img/s, CLIP and face.

    python benchmarks/bench_encoders.py                      # quick (32 px) and cpu (64 px) configs
    python benchmarks/bench_encoders.py --profiles quick --seconds 5 --threads 2

Uses the profiles' own encoder configs on random pixels with SynthFaces captions (generated on
the fly, as in training), so no dataset build is needed and the numbers include caption
generation and tokenisation. Timings on a shared 2-core machine are noisy (+-30%); run with
OMP_WAIT_POLICY=PASSIVE when other processes share the cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unif2ace_mini import profiles, runtime
from unif2ace_mini.data import TAXONOMY, make_caption
from unif2ace_mini.encoders import (CLIP_CONFIGS, FACE_ENCODER_CONFIGS, ClipImageFeatures,
                                    FaceIdentityFeatures, build_clip_model, build_face_encoder,
                                    train_clip, train_face_encoder)
from unif2ace_mini.tokenizers import train_text_tokenizer


def fake_data(n: int, size: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    attrs = [TAXONOMY.sample(rng) for _ in range(n)]
    return {"images": torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(seed)),
            "labels": torch.from_numpy(np.stack([TAXONOMY.encode(a) for a in attrs])),
            "captions": [make_caption(a, rng)[0] for a in attrs],
            "classes": torch.arange(n) % 64}


def extract_rate(extractor, images: torch.Tensor, seconds: float, batch: int = 256) -> float:
    extractor(images[:8])                                        # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        extractor(images[:batch])
        n += min(batch, len(images))
    return n / (time.perf_counter() - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profiles", nargs="+", default=["quick", "cpu"],
                    choices=["quick", "cpu", "gpu"])
    ap.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    runtime.setup(0, threads=args.threads)

    rows = []
    for name in args.profiles:
        size = profiles.get_profile(name).data.image_size
        data = fake_data(512, size)
        tok = train_text_tokenizer(data["captions"], vocab_size=512)

        clip_cfg = CLIP_CONFIGS[name].replace(n_pool=0, max_steps=10**6, max_seconds=args.seconds,
                                              warmup_steps=1)
        torch.manual_seed(0)
        model = build_clip_model(clip_cfg, tok)
        hist = train_clip(model, tok, data, clip_cfg, profiles.get_profile(name).data, progress=False)
        feats = ClipImageFeatures(model, size, clip_cfg.feature_tokens)
        rows.append((name, "clip", sum(p.numel() for p in model.parameters()), hist["img_per_s"],
                     extract_rate(feats, data["images"], args.seconds), f"{feats.n_tokens}x{feats.dim}"))

        face_cfg = FACE_ENCODER_CONFIGS[name].replace(n_pool=0, max_steps=10**6,
                                                      max_seconds=args.seconds, warmup_steps=1)
        torch.manual_seed(0)
        net = build_face_encoder(face_cfg)
        hist = train_face_encoder(net, data, face_cfg, progress=False)
        feats = FaceIdentityFeatures(net, size, size, face_cfg.embedding_dim)
        rows.append((name, "face", sum(p.numel() for p in net.parameters()), hist["img_per_s"],
                     extract_rate(feats, data["images"], args.seconds), f"{feats.n_tokens}x{feats.dim}"))

    print(f"threads={torch.get_num_threads()}  (shared CPU: +-30%)")
    print(f"{'profile':8s} {'encoder':7s} {'params':>9s} {'train img/s':>12s} {'extract img/s':>14s} tokens")
    for prof, enc, params, train, extract, shape in rows:
        print(f"{prof:8s} {enc:7s} {params:9,d} {train:12.0f} {extract:14.0f} {shape}")


if __name__ == "__main__":
    main()
