"""Encoder settings per profile (DESIGN §3, §8), as frozen dataclasses.

Two encoders feed the sequence-level MoE's injecting experts:
  ClipConfig          a small transformers CLIPModel trained contrastively here (quick / cpu / gpu),
                      or a pretrained CLIP loaded by id or local folder (paper)
  FaceEncoderConfig   an ArcFace-trained IResNet identity encoder (quick / cpu / gpu), or a
                      face-recognition model from a local file (paper; see features.load_face_model)

Training runs for `max_steps` steps, and the learning-rate schedule (and the ArcFace margin ramp)
follow the steps, so a trained encoder depends on the config and the seed, not on how fast or busy
the machine is. `max_seconds` is only a safety net, 3-5x the expected time on 2 cores: a run
that hits it stops early and says so (history["stop_reason"] == "time").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

FEATURE_TOKENS = ("patches", "pooled")


class _Config:
    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name: f for f in dataclasses.fields(cls)}
        if unknown := set(d) - set(known):
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class ClipConfig(_Config):
    image_size: int = 32                  # the data's pixels per side (input of the extractor)
    patch_size: int = 8                   # 32 px / 8 = 4x4 patches (+ CLS: 17 feature tokens)
    vision_width: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_width: int = 64
    # One text layer learnt faster than two in every quick trial (0.41 vs 0.39 zero-shot after
    # 500 steps, and 30% cheaper): the EOS token attends once over the caption, close to the
    # bag of attribute phrases the task needs.
    text_layers: int = 1
    text_heads: int = 2
    max_text_len: int = 96                # BPE tokens incl. the end token; longer captions are cut
    projection_dim: int = 64
    feature_tokens: str = "patches"       # what the extractor returns, see features.ClipImageFeatures
    n_pool: int = 12000                   # extra labelled renders (the oracle's pool, same cache)
    fresh_caption_prob: float = 1.0       # a train image gets a newly generated caption this often
    # (mean, std) attributes per new caption; None: the data's (17.7 +- 4, ~90 tokens). Quick
    # trials, 500 steps: 3 -> 0.38, 6 -> 0.41, 10 -> 0.43, 14 -> 0.45 mean zero-shot accuracy,
    # data's captions -> 0.42 (and 20% slower): more attributes per caption make each pair unique
    # in the batch, so fewer gradients chase look-alike images.
    caption_attrs: tuple[float, float] | None = (14.0, 3.0)
    batch_size: int = 128
    lr: float = 2e-3                      # 4e-3 trained slower (0.37), 1e-3 similar to 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    max_steps: int = 250
    max_seconds: float = 200.0            # safety net only (see the module docstring)
    eval_split: str = "validation"
    seed: int = 0
    pretrained: str | None = None         # paper: hub id or local folder of a CLIPModel

    def __post_init__(self):
        if self.feature_tokens not in FEATURE_TOKENS:
            raise ValueError(f"feature_tokens must be one of {FEATURE_TOKENS}, "
                             f"got {self.feature_tokens!r}")
        if self.pretrained is None and self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size "
                             f"{self.patch_size}")
        if not 0.0 <= self.fresh_caption_prob <= 1.0:
            raise ValueError(f"fresh_caption_prob must be in [0, 1], got {self.fresh_caption_prob}")


@dataclass(frozen=True)
class FaceEncoderConfig(_Config):
    image_size: int = 32                  # the data's pixels per side
    widths: tuple[int, ...] = (32, 64, 128)       # IResNet stage widths (insightface: 64..512)
    layers: tuple[int, ...] = (1, 1, 1)           # blocks per stage (insightface r50: 3,4,14,3)
    stem_stride: int = 2                  # insightface: 1 (full-resolution stem, 112 px input)
    embedding_dim: int = 128
    # ArcFace's additive angular margin m (radians; the paper's 0.5) and logit scale s (64 for
    # 512-d at insightface). Quick measured: m=0.3 beats 0.5 and 0 on 1-minute budgets, and s=16
    # suffices for ~300 classes (s >= ln(C) * ~2), while s=32 starts with a loss near 10.
    margin: float = 0.3
    margin_warmup: float = 0.5            # m ramps up from 0 over this fraction of the budget
    scale: float = 16.0
    holdout_fraction: float = 0.2         # identities never trained on: the verification set
    n_pool: int = 12000                   # extra renders (the oracle's pool) labelled by identity
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 30
    max_steps: int = 200
    max_seconds: float = 120.0            # safety net only (see the module docstring)
    max_pairs: int = 6000                 # verification pairs (half same, half different person)
    seed: int = 0
    pretrained: str | None = None         # paper: local safetensors / TorchScript face model
    pretrained_size: int = 112            # the pretrained model's input pixels (ArcFace: 112)

    def __post_init__(self):
        if len(self.widths) != len(self.layers) or not self.widths:
            raise ValueError(f"widths {self.widths} and layers {self.layers} need the same, "
                             "non-zero length (one entry per stage)")
        down = self.stem_stride * 2 ** len(self.widths)
        if self.pretrained is None and self.image_size % down:
            raise ValueError(f"stem stride {self.stem_stride} and {len(self.widths)} stride-2 "
                             f"stages need image_size divisible by {down}, got {self.image_size}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not 0.0 <= self.margin < 1.5:
            raise ValueError(f"ArcFace margin must be in [0, 1.5) radians, got {self.margin}")


CLIP_CONFIGS: dict[str, ClipConfig] = {
    # 32 px, 4x4 patches of 8 px, 250 steps: 82 s of CPU time (2 threads), ~45-50 s on a quiet
    # 2-core machine (135 s wall under load 5-7). Validation, measured (the same numbers on every
    # run: step-bound, seeded): zero-shot attribute accuracy 0.393 (chance 0.319, always the
    # majority value 0.512: better than majority in 7 of 31 groups), caption retrieval R@5
    # image->text 0.267 / text->image 0.220 (chance 0.017). 300 steps: 0.399, R@5 0.327 / 0.263.
    "quick": ClipConfig(),
    # 64 px, 8x8 patches of 8 px, wider and deeper, ~10 min on 2 cores (estimated ~0.6 s/step
    # quiet, from 249 steps in 600 s on a machine loaded ~4x; not yet re-measured step-bound).
    "cpu": ClipConfig(image_size=64, patch_size=8, vision_width=128, vision_layers=3,
                      vision_heads=4, text_width=128, text_layers=1, text_heads=4,
                      projection_dim=128, n_pool=24000, lr=1e-3, max_steps=1000,
                      max_seconds=1800.0),
    # 128 px, 16x16 patches of 8 px, on one GPU (steps per second not measured yet: if the time
    # net stops it, the schedule has not finished).
    "gpu": ClipConfig(image_size=128, patch_size=8, vision_width=384, vision_layers=6,
                      vision_heads=6, text_width=384, text_layers=4, text_heads=6,
                      projection_dim=256, max_text_len=160, n_pool=0, caption_attrs=None,
                      batch_size=256, lr=1e-3, max_steps=30000, max_seconds=1800.0),
    # OpenAI's ViT-L/14 at 224 px, as UniF²ace uses; never trained here (or in tests).
    "paper": ClipConfig(image_size=256, pretrained="openai/clip-vit-large-patch14", n_pool=0,
                        max_steps=0, max_seconds=0.0),
}

FACE_ENCODER_CONFIGS: dict[str, FaceEncoderConfig] = {
    # 200 steps: 40 s of CPU time, ~20-25 s on a quiet 2-core machine. Verification on 80 held-out
    # people (5788 pairs): accuracy 0.847, ROC AUC 0.915 (raw pixels 0.560 / 0.594). 250 steps:
    # 0.870 / 0.930.
    "quick": FaceEncoderConfig(),
    # ~10 min on 2 cores (estimated ~0.35 s/step quiet, from 418 steps in 600 s under load)
    "cpu": FaceEncoderConfig(image_size=64, widths=(32, 64, 128), layers=(1, 2, 1),
                             embedding_dim=256, margin=0.4, margin_warmup=0.3, n_pool=24000,
                             max_steps=1600, max_seconds=1800.0, max_pairs=20000),
    "gpu": FaceEncoderConfig(image_size=128, widths=(64, 128, 256, 512), layers=(2, 2, 4, 2),
                             embedding_dim=512, margin=0.5, margin_warmup=0.2, scale=32.0,
                             n_pool=0, batch_size=256, max_steps=30000, max_seconds=1200.0,
                             max_pairs=20000),
    # An insightface ArcFace IResNet-50 converted to our safetensors format (see
    # features.convert_insightface_checkpoint); the path is the user's, never downloaded.
    "paper": FaceEncoderConfig(image_size=256, pretrained="checkpoints/arcface_r50.safetensors",
                               widths=(64, 128, 256, 512), layers=(3, 4, 14, 3), stem_stride=1,
                               embedding_dim=512, margin=0.5, scale=64.0, n_pool=0, max_steps=0,
                               max_seconds=0.0),
}


def _lookup(table: dict, attr: str, profile):
    from .. import profiles

    profile = profiles.get_profile(profile)
    cfg = getattr(profile, attr, None) or table.get(profile.name)
    if cfg is None:
        raise ValueError(f"profile {profile.name!r} has no {attr} config; pass one explicitly or "
                         f"use one of {sorted(table)}")
    if cfg.pretrained is None and cfg.image_size != profile.data.image_size:
        raise ValueError(f"profile {profile.name!r}: the {attr} config takes {cfg.image_size} px "
                         f"but the data is rendered at {profile.data.image_size} px")
    return cfg


def clip_config(profile) -> ClipConfig:
    """The profile's CLIP settings (`profile.clip` once wired into Profile, else CLIP_CONFIGS)."""
    return _lookup(CLIP_CONFIGS, "clip", profile)


def face_encoder_config(profile) -> FaceEncoderConfig:
    """The profile's identity-encoder settings (`profile.face_encoder` or FACE_ENCODER_CONFIGS)."""
    return _lookup(FACE_ENCODER_CONFIGS, "face_encoder", profile)
