"""Tokenizer settings per profile (DESIGN §3, §5), as frozen dataclasses that `profiles` uses.

Image tokenizer backends:
  "plain"       a plain-torch VQ-VAE (image.PlainVQTokenizer); quick and cpu, 10-30x faster on CPU
  "diffusers"   a diffusers VQModel built from a small config and trained here (gpu)
  "pretrained"  a diffusers VQModel loaded from a local folder or hub id, e.g. aMUSEd's VQ-GAN
                (8192 codes, 16x downsampling); paper scale, not trained here
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

BACKENDS = ("plain", "diffusers", "pretrained")


@dataclass(frozen=True)
class ImageTokenizerConfig:
    backend: str = "plain"
    image_size: int = 32                  # pixels per side the tokenizer accepts
    downsample: int = 4                   # power of two; the token grid is image_size // downsample
    codebook_size: int = 512              # K image codes
    code_dim: int = 16                    # codebook vector size; small dims keep more codes alive
    width: int = 64                       # plain: channels at the token grid
    min_channels: int = 16                # plain: channels never halve below this (full res)
    n_res_blocks: int = 2                 # plain: residual blocks at the token grid
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # diffusers: one block per level
    layers_per_block: int = 1             # diffusers: resnets per block (decoder gets one more)
    norm_num_groups: int = 16             # diffusers: GroupNorm groups
    mid_block_attention: bool = False     # diffusers: self-attention at the lowest resolution
    channels_last: bool = True            # diffusers: NHWC layout (measured neutral on CPU)
    beta: float = 0.25                    # commitment weight (VQ-VAE)
    ae_warmup_steps: int = 100            # plain autoencoder steps before quantising (then k-means)
    restart_every: int = 40               # steps between dead-code restarts; 0 disables
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    max_steps: int = 1500
    max_seconds: float = 150.0
    seed: int = 0
    pretrained: str | None = None         # "pretrained": local folder or hub id of a VQModel
    pretrained_subfolder: str | None = None

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown image tokenizer backend {self.backend!r}; choose {BACKENDS}")
        d = self.downsample
        if d < 1 or d & (d - 1):
            raise ValueError(f"downsample must be a power of two, got {d}")
        if self.image_size % d:
            raise ValueError(f"image_size {self.image_size} is not divisible by downsample {d}")
        if self.backend == "diffusers" and 2 ** (len(self.block_out_channels) - 1) != d:
            raise ValueError(f"diffusers backend: {len(self.block_out_channels)} blocks give "
                             f"{2 ** (len(self.block_out_channels) - 1)}x downsampling, not {d}x")
        if self.backend == "pretrained" and not self.pretrained:
            raise ValueError("backend 'pretrained' needs `pretrained` (a local folder or hub id)")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def grid(self) -> int:
        return self.image_size // self.downsample

    @property
    def tokens_per_image(self) -> int:
        return self.grid ** 2

    def replace(self, **changes) -> "ImageTokenizerConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImageTokenizerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ImageTokenizerConfig fields: {sorted(unknown)}")
        d = dict(d)
        if "block_out_channels" in d:
            d["block_out_channels"] = tuple(d["block_out_channels"])
        return cls(**d)


@dataclass(frozen=True)
class TextTokenizerConfig:
    vocab_size: int = 1024                # byte-level BPE size before the special tokens
    min_frequency: int = 2
    pretrained: str | None = None         # paper: Phi-1.5's tokenizer ("microsoft/phi-1_5")


TOKENIZER_CONFIGS: dict[str, ImageTokenizerConfig] = {
    # 32 px -> 8x8 = 64 tokens. Step-bound (the time limit is only a safety net), so every
    # machine trains the same tokenizer: 900 steps, 41 s on 2 quiet cores (46 ms/step).
    "quick": ImageTokenizerConfig(max_steps=900, max_seconds=600.0),
    # 64 px -> 8x8 = 64 tokens (keeps the CPU transformer's sequences short), wider and longer.
    "cpu": ImageTokenizerConfig(image_size=64, downsample=8, codebook_size=1024, width=128,
                                batch_size=64, lr=1e-3, max_steps=12000, max_seconds=1200.0),
    # 128 px -> 16x16 = 256 tokens with diffusers' VQModel on one GPU.
    "gpu": ImageTokenizerConfig(backend="diffusers", image_size=128, downsample=8,
                                codebook_size=1024, code_dim=32,
                                block_out_channels=(64, 128, 256, 256), layers_per_block=2,
                                norm_num_groups=32, batch_size=128, lr=4e-4, max_steps=20000,
                                max_seconds=1800.0, channels_last=False),
    # 256 px -> 16x16 with aMUSEd's pretrained VQ-GAN (8192 codes), as Show-o uses MAGVIT-v2.
    "paper": ImageTokenizerConfig(backend="pretrained", image_size=256, downsample=16,
                                  codebook_size=8192, code_dim=64, pretrained="amused/amused-256",
                                  pretrained_subfolder="vqvae", max_steps=0, max_seconds=0.0),
}

TEXT_TOKENIZER_CONFIGS: dict[str, TextTokenizerConfig] = {
    "quick": TextTokenizerConfig(vocab_size=1024),
    "cpu": TextTokenizerConfig(vocab_size=2048),
    "gpu": TextTokenizerConfig(vocab_size=4096),
    "paper": TextTokenizerConfig(pretrained="microsoft/phi-1_5"),
}
