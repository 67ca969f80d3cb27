"""Configuration of the two mixtures of experts (DESIGN §8).

UniF²ace states the structure but not the sizes. Everything the paper leaves open is a field here,
with the choice we made and why. The notebook quotes this docstring.

Token-level MoE (`TokenMoEConfig`), replacing each block's FFN
    Known from the paper: two groups (understanding = mmu, generation = t2i) chosen by the
    sample's task; each group is shared expert(s) plus routed experts; top-K = 4 routing; a
    Switch-style balance loss per group with its own weight (lambda_mmu, lambda_t2i).
    Unknown, our choices:
    - n_routed = 8 routed experts per group (16 at gpu/paper scale). With K = 4 a token uses half
      of its group's routed experts: real routing choices, while every expert still sees about
      half of the group's tokens in a small batch, so none starves on the quick profile.
    - n_shared = 1, as DeepSeekMoE and the paper's "a shared expert".
    - Expert width (DeepSeekMoE's fine-grained experts): expert_d_ff = d_ff / (K + n_shared),
      rounded to a multiple of 4. A token passes through n_shared + K experts, so its FFN compute
      and active parameters equal the dense FFN's (d=128, d_ff=512: 5 experts of width 104 vs
      one of 512, +1.6 %). Total parameters grow to 2 * (n_shared + n_routed) / (K + n_shared)
      = 3.6x the dense FFN's.
    - lambda_mmu = lambda_t2i = 0.01, Switch Transformer's alpha. The loss equals 1 at perfect
      balance, so 0.01 adds at most a few percent to a loss of order 1-5.

Sequence-level MoE (`SequenceMoEConfig`), after each block's FFN
    Known: one router decision per sequence on the mean-pooled sequence, top-2; understanding
    group [CLIP, face, copy, copy], generation group [copy, zero, noise, copy]; injecting experts
    compute w * x + (1 - w) * Resampler(F), w a softmax of trainable weights, the resampler
    Perceiver-style cross-attention.
    Unknown, our choices:
    - w: each injecting expert owns two logits (a_x, a_f); w = softmax(a_x, a_f)[0] is the weight
      of the sequence's own x, 1 - w the weight of the injected features. init_x_weight = 0.5
      starts both logits equal (no prior preference); w is a scalar per expert, not per channel.
    - Resampler: queries are the sequence's own tokens; keys/values are the feature tokens F
      projected to d_model, plus `resampler_latents` learned key/value slots (Flamingo's Perceiver
      Resampler also attends over its latents). Each token thus reads its own mix of features
      (a caption token about the eyes can read the eye-related CLIP tokens), which the additive
      formula needs: it adds Resampler(F) to x position by position. A broadcast alternative
      (learned latents -> one pooled vector added to every token) can only shift the whole
      sequence by one vector. The learned slots let a token read "nothing"; see resampler.py.
    - Noise expert input: `noise_tokens` Gaussian N(0, 1) feature vectors of size `noise_dim`,
      drawn fresh from the global torch RNG in training (so `seed_everything` fixes them). In the
      generation group there is no input image to encode, so the paper's noise expert cannot carry
      information; we read it as a learned stochastic perturbation (a regulariser / diversity
      source, as StyleGAN's noise inputs). In eval mode it reads one fixed draw (seed
      `noise_seed`) shared by every row, so sampling is reproducible and does not depend on a
      sequence's position in the batch.
    - lambda_mmu = lambda_t2i = 0.01 (as the token MoE). Balance matters less here: the groups
      deliberately contain two copy experts, so a balanced router still copies half the time.
    - clip_dim / face_dim: the width of the feature tensors the encoders produce, per profile
      below (a mismatch is a clear ValueError at the first forward).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SEQUENCE_EXPERT_KINDS = ("copy", "zero", "noise", "clip", "face")
FEATURE_KINDS = ("clip", "face")  # expert kinds that read features[kind]
GROUP_NAMES = ("mmu", "t2i")      # group index = task id (tasks.MMU = 0, tasks.T2I = 1)


@dataclass(frozen=True)
class TokenMoEConfig:
    n_routed: int = 8             # routed experts per group
    n_shared: int = 1             # always-on experts per group
    top_k: int = 4                # routed experts per token (clamped to n_routed)
    expert_d_ff: int | None = None  # None: d_ff / (top_k + n_shared) rounded to a multiple of 4
    lambda_mmu: float = 0.01      # balance-loss weight of the understanding group
    lambda_t2i: float = 0.01      # balance-loss weight of the generation group

    def __post_init__(self):
        if self.n_routed < 1:
            raise ValueError(f"n_routed must be >= 1, got {self.n_routed}")
        if self.n_shared < 0:
            raise ValueError(f"n_shared must be >= 0, got {self.n_shared}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.expert_d_ff is not None and self.expert_d_ff < 1:
            raise ValueError(f"expert_d_ff must be >= 1 or None, got {self.expert_d_ff}")
        if self.lambda_mmu < 0 or self.lambda_t2i < 0:
            raise ValueError(f"balance weights must be >= 0, got lambda_mmu={self.lambda_mmu}, "
                             f"lambda_t2i={self.lambda_t2i}")

    @property
    def k(self) -> int:
        """Routed experts per token after clamping top_k to the group size."""
        return min(self.top_k, self.n_routed)

    def expert_hidden(self, d_ff: int) -> int:
        """Width of one expert: the dense d_ff split over the experts a token passes through."""
        if self.expert_d_ff is not None:
            return self.expert_d_ff
        if d_ff < 1:
            raise ValueError(f"d_ff must be >= 1, got {d_ff}")
        # A multiple of 4 keeps fp32 rows 16-byte aligned (fast GEMM, grouped_mm's requirement).
        return max(4, 4 * round(d_ff / (self.k + self.n_shared) / 4))

    def replace(self, **changes) -> "TokenMoEConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SequenceMoEConfig:
    mmu_experts: tuple[str, ...] = ("clip", "face", "copy", "copy")
    t2i_experts: tuple[str, ...] = ("copy", "zero", "noise", "copy")
    top_k: int = 2                # experts per sequence
    lambda_mmu: float = 0.01
    lambda_t2i: float = 0.01
    clip_dim: int = 128           # D_f of features["clip"] (B, N_f, clip_dim)
    face_dim: int = 128           # D_f of features["face"] (B, N_f, face_dim) or (B, face_dim)
    noise_dim: int = 64           # D_f of the noise expert's Gaussian features
    noise_tokens: int = 8         # N_f of the noise expert's Gaussian features
    noise_seed: int = 0           # the fixed draw the noise expert reads in eval mode
    resampler_heads: int = 4
    resampler_latents: int = 4    # learned key/value slots beside the feature tokens
    init_x_weight: float = 0.5    # initial w (weight of x) of every injecting expert

    def __post_init__(self):
        object.__setattr__(self, "mmu_experts", tuple(self.mmu_experts))
        object.__setattr__(self, "t2i_experts", tuple(self.t2i_experts))
        for name, group in (("mmu_experts", self.mmu_experts), ("t2i_experts", self.t2i_experts)):
            unknown = [kind for kind in group if kind not in SEQUENCE_EXPERT_KINDS]
            if unknown:
                raise ValueError(f"{name}: unknown expert kind(s) {unknown}; "
                                 f"choose from {SEQUENCE_EXPERT_KINDS}")
            if len(group) < self.top_k:
                raise ValueError(f"{name} has {len(group)} experts but top_k={self.top_k}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.lambda_mmu < 0 or self.lambda_t2i < 0:
            raise ValueError(f"balance weights must be >= 0, got lambda_mmu={self.lambda_mmu}, "
                             f"lambda_t2i={self.lambda_t2i}")
        for name in ("clip_dim", "face_dim", "noise_dim", "noise_tokens", "resampler_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.resampler_latents < 0:
            raise ValueError(f"resampler_latents must be >= 0, got {self.resampler_latents}")
        if not 0.0 < self.init_x_weight < 1.0:
            raise ValueError(f"init_x_weight must be in (0, 1), got {self.init_x_weight}")

    @property
    def groups(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Expert kinds per group, indexed by task id (0 = mmu, 1 = t2i)."""
        return (self.mmu_experts, self.t2i_experts)

    def feature_dim(self, kind: str) -> int:
        return {"clip": self.clip_dim, "face": self.face_dim, "noise": self.noise_dim}[kind]

    def replace(self, **changes) -> "SequenceMoEConfig":
        return dataclasses.replace(self, **changes)


def feature_kinds(model_config) -> tuple[str, ...]:
    """The encoder features ("clip", "face") a model with this ModelConfig reads: those of the
    sequence-level MoE's experts, () for a dense / token-MoE model (no encoder needed)."""
    if getattr(model_config, "sequence", "identity") != "sequence_moe":
        return ()
    seq = getattr(model_config, "seq_moe", None) or SequenceMoEConfig()
    used = {kind for group in seq.groups for kind in group}
    return tuple(kind for kind in FEATURE_KINDS if kind in used)


# Per-profile choices; the lead wires them into the model config. Feature widths follow
# encoders/config.py: clip_dim = ClipConfig.vision_width (the extractor returns patch tokens),
# face_dim = FaceEncoderConfig.embedding_dim; paper: CLIP ViT-L/14 (1024) and ArcFace r50 (512).
TOKEN_MOE_CONFIGS: dict[str, TokenMoEConfig] = {
    "quick": TokenMoEConfig(),
    "cpu": TokenMoEConfig(),
    "gpu": TokenMoEConfig(n_routed=16),
    "paper": TokenMoEConfig(n_routed=16),
}

SEQUENCE_MOE_CONFIGS: dict[str, SequenceMoEConfig] = {
    "quick": SequenceMoEConfig(clip_dim=64, face_dim=128),
    "cpu": SequenceMoEConfig(clip_dim=128, face_dim=256, noise_dim=128),
    "gpu": SequenceMoEConfig(clip_dim=384, face_dim=512, noise_dim=256, resampler_heads=8),
    "paper": SequenceMoEConfig(clip_dim=1024, face_dim=512, noise_dim=512, noise_tokens=16,
                               resampler_heads=16),
}
