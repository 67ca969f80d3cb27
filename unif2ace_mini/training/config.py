"""TrainConfig: how the unified model is trained, per profile (step AND time limits included)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..diffusion.masking import check_time_power
from ..model.config import asdict_without_defaults

# Fields that may change between an interrupted run and its resumption without changing what the
# run computes (the rest must match, or the resumed run would not be the same run).
RESUMABLE_CHANGES = ("max_seconds", "checkpoint_every", "log_every")


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 32             # global rows per step (split across processes)
    t2i_share: float = 0.5           # fraction of each batch that is t2i (the rest mmu)
    lr: float = 2e-3
    min_lr_ratio: float = 0.1        # cosine decays to lr * min_lr_ratio at max_steps
    warmup_steps: int = 20
    weight_decay: float = 0.01       # on matrices only (not biases, norms, embeddings)
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    ema_decay: float = 0.0           # 0 disables the EMA copy of the weights
    loss_t2i: float = 1.0            # weight of D3Diff on the image tokens of t2i rows
    loss_mmu: float = 1.0            # weight of next-token CE on the answers of mmu rows
    loss_aux: float = 1.0            # weight of the MoE balance losses (already lambda-weighted)
    lambda_score: float = 0.01       # D3Diff = MGM + lambda_score * score entropy (paper: 0.01)
    text_loss: str = "row_mean"      # mmu CE: "row_mean" (each answer counts) | "token_mean"
    schedule: str = "cosine"         # masking schedule of the t2i forward process
    t2i_time_power: float = 1.0      # t2i rows draw t = u ** power (< 1: more masked images;
                                     # the score term then weighs t by that law, not uniformly)
    score_head: str = "tied"
    caption_dropout: float = 0.1     # t2i captions dropped for classifier-free guidance
    mmu_caption_prob: float = 0.25   # mmu rows that caption instead of answering a question
    vqa_turns: int = 1               # questions per VQA row (as many as fit; 1: one per row)
    max_steps: int = 250
    max_seconds: float = 240.0       # wall-clock limit of one invocation
    checkpoint_every: int = 100
    log_every: int = 1
    mixed_precision: str = "no"      # accelerate: "no" | "bf16" | "fp16"
    seed: int = 0

    def __post_init__(self):
        if self.batch_size < 1 or self.max_steps < 0 or self.warmup_steps < 0:
            raise ValueError("batch_size must be >= 1, max_steps and warmup_steps >= 0")
        if not 0.0 <= self.t2i_share <= 1.0:
            raise ValueError(f"t2i_share must lie in [0, 1], got {self.t2i_share}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.vqa_turns < 1:
            raise ValueError(f"vqa_turns must be >= 1, got {self.vqa_turns}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("checkpoint_every and log_every must be >= 1")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got "
                             f"{self.mixed_precision!r}")
        if self.text_loss not in ("row_mean", "token_mean"):
            raise ValueError(f"text_loss must be 'row_mean' or 'token_mean', got "
                             f"{self.text_loss!r}")
        check_time_power(self.t2i_time_power, "t2i_time_power")
        object.__setattr__(self, "betas", tuple(self.betas))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict_without_defaults(self, _OMIT_WHEN_DEFAULT)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)

    def run_differences(self, other: "TrainConfig") -> dict[str, tuple]:
        """Differences that change what a run computes (everything but RESUMABLE_CHANGES)."""
        a, b = dataclasses.asdict(self), dataclasses.asdict(other)
        return {k: (a[k], b[k]) for k in a if k not in RESUMABLE_CHANGES and a[k] != b[k]}


_OMIT_WHEN_DEFAULT = {"t2i_time_power": 1.0}

TRAIN_CONFIGS: dict[str, TrainConfig] = {
    # 450 steps of batch 32 x 128 tokens: 115 s on 2 quiet cores (0.26 s/step). Step-bound:
    # the time limit is only a safety net for slow machines. VQA rows ask as many of their face's
    # questions as fit (~4 of 8): VQA 0.467 -> 0.536 at equal steps (benchmarks/quick_recipe.py).
    # t2i times t = u ** 0.5 show the model more heavily masked images, where the caption is the
    # main evidence: generation margin over the shuffled prompt +0.058 / +0.039 -> +0.095 /
    # +0.064 (two training seeds, 512 val faces; benchmarks/quick_recipe.py "power1").
    "quick": TrainConfig(max_steps=450, max_seconds=600.0, vqa_turns=8, t2i_time_power=0.5),
    # the best a laptop CPU reaches in <= 2 h on 2 cores. Step-bound like quick: a step took
    # 1.4-2.6 s (median 1.7) on 2 quiet Xeon cores (2026-12-07), so 2,400 steps fit the 6,600 s
    # limit with room for a slower CPU; the former 6,000 outran it, cut mid-schedule.
    "cpu": TrainConfig(lr=1e-3, warmup_steps=200, max_steps=2400, max_seconds=6600.0,
                       ema_decay=0.999, checkpoint_every=500, log_every=10, vqa_turns=8),
    "gpu": TrainConfig(batch_size=128, lr=5e-4, warmup_steps=1000, max_steps=40000,
                       max_seconds=6600.0, ema_decay=0.9995, checkpoint_every=2000,
                       log_every=50, mixed_precision="bf16", vqa_turns=8),
    "paper": TrainConfig(batch_size=512, lr=1e-4, warmup_steps=5000, max_steps=500000,
                         max_seconds=7 * 24 * 3600.0, ema_decay=0.9999, weight_decay=0.01,
                         checkpoint_every=5000, log_every=100, mixed_precision="bf16"),
}


def get_train_config(profile) -> TrainConfig:
    name = getattr(profile, "name", profile)
    try:
        return TRAIN_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(TRAIN_CONFIGS)}") \
            from None
