"""Image tokenizers: images (B, 3, H, W) in [-1, 1] <-> token grids (B, h, w) of codebook indices.

Every backend is an `ImageTokenizer`: it supplies an encoder to latents, a decoder from latents and
a codebook; this base class adds quantisation (vq.py), input checks, batching and save/load.

Why a plain-torch VQ-VAE for the quick and cpu profiles (`PlainVQTokenizer`)? diffusers' VQModel
wraps every level in GroupNorm'd ResNet blocks, always adds a mid block of two more ResNets, and
its decoder runs layers_per_block + 1 ResNets per level. Measured with benchmarks/bench_tokenizer.py
on 2 shared CPU cores (torch 2.13), training img/s at batch 64:

    32 px -> 8x8   plain 287 | VQModel lean 48 (6x slower) | VQModel default-style 11 (27x slower)
    64 px -> 8x8   plain  64 | VQModel lean 12 (5.5x)      | VQModel default-style  2 (31x)

("lean" = 1 ResNet per level, no mid-block attention, 16 norm groups, channels_last.) These were
taken under heavy load from other processes; on a quieter moment the 32 px training loop ran at
~1450 img/s (plain) vs ~170 img/s (VQModel lean), 8.6x. VQModel learns more per step, but per
wall-clock second the plain VQ-VAE reaches the higher PSNR, so it is the CPU choice. The VQModel
backend (vqmodel.py) has the same interface and serves the gpu profile and
pretrained VQ-GANs (aMUSEd's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .. import runtime
from .config import ImageTokenizerConfig
from .vq import lookup, nearest_codes, flatten_grid, quantize

CONFIG_NAME = "image_tokenizer.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
RANGE_TOL = 1e-3  # resampling and float maths overshoot [-1, 1] a little; more is a wrong scale


def check_images(images, image_size: int) -> None:
    """Raise ValueError naming the problem unless images is float (B, 3, S, S) in [-1, 1]."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor (B, 3, H, W) in [-1, 1], got "
                         f"{type(images).__name__}; uint8 arrays go through images_from_uint8")
    if not images.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor in [-1, 1], got dtype "
                         f"{images.dtype}; uint8 pixels go through images_from_uint8")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}"
                         + (" (add a batch dimension)" if images.ndim == 3 else ""))
    if images.shape[1] != 3:
        hint = " (channels-last? use images.permute(0, 3, 1, 2))" if images.shape[-1] == 3 else ""
        raise ValueError(f"images must have 3 channels in dim 1, got {images.shape[1]} "
                         f"(shape {tuple(images.shape)}){hint}")
    if images.shape[2:] != (image_size, image_size):
        raise ValueError(f"image size must be {image_size}x{image_size}, got "
                         f"{images.shape[2]}x{images.shape[3]}")
    if images.numel() and not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    if images.numel():
        lo, hi = float(images.min()), float(images.max())
        if lo < -1 - RANGE_TOL or hi > 1 + RANGE_TOL:
            hint = " (pixels in [0, 255]? use images_from_uint8)" if hi > 2 else ""
            raise ValueError(f"image values must lie in [-1, 1], got [{lo:.3g}, {hi:.3g}]{hint}")


def check_codes(codes, codebook_size: int, grid: int) -> None:
    """Raise ValueError naming the problem unless codes is an integer (B, grid, grid) tensor
    with values in [0, K)."""
    if not isinstance(codes, torch.Tensor):
        raise ValueError(f"codes must be a torch.Tensor (B, h, w), got {type(codes).__name__}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
    if codes.ndim != 3 or codes.shape[1:] != (grid, grid):
        raise ValueError(f"codes must have shape (B, {grid}, {grid}), got {tuple(codes.shape)}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}), got "
                         f"[{int(codes.min())}, {int(codes.max())}]")


def images_from_uint8(pixels) -> torch.Tensor:
    """uint8 pixels (N, H, W, 3) (numpy/PIL layout) -> float (N, 3, H, W) in [-1, 1]."""
    x = torch.as_tensor(np.asarray(pixels))
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 pixels (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), for display and saving."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


class ImageTokenizer(nn.Module):
    """Base class. Subclasses define `encode_latents`, `decode_latents` and `codebook`."""

    backend: str = ""
    _registry: dict[str, type["ImageTokenizer"]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.backend:
            ImageTokenizer._registry[cls.backend] = cls

    def __init__(self, config: ImageTokenizerConfig):
        super().__init__()
        self.config = config

    # --- what a backend supplies -------------------------------------------------------------
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, D, h, w)
        raise NotImplementedError

    def decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:     # (B, D, h, w) -> (B, 3, H, W)
        raise NotImplementedError

    @property
    def codebook(self) -> torch.Tensor:                               # (K, D)
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    @property
    def grid(self) -> int:
        return self.config.grid

    def forward(self, images: torch.Tensor):
        """Training pass: (reconstruction (B, 3, H, W), codes (B, h, w), vq loss)."""
        z = self.encode_latents(images)                               # (B, D, h, w)
        z_q, codes, vq_loss = quantize(z, self.codebook, self.config.beta)
        return self.decode_latents(z_q), codes, vq_loss

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Images float (B, 3, H, W) in [-1, 1] -> codes LongTensor (B, h, w)."""
        check_images(images, self.config.image_size)
        device = self.codebook.device
        out = []
        for chunk in images.split(batch_size):
            z = self.encode_latents(chunk.to(device, torch.float32))  # (b, D, h, w)
            codes = nearest_codes(flatten_grid(z), self.codebook)
            out.append(codes.view(z.shape[0], z.shape[2], z.shape[3]).cpu())
        return torch.cat(out) if out else torch.empty(0, self.grid, self.grid, dtype=torch.long)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Codes integer (B, h, w) in [0, K) -> images float (B, 3, H, W) clamped to [-1, 1]."""
        check_codes(codes, self.codebook_size, self.grid)
        device = self.codebook.device
        out = []
        for chunk in codes.split(batch_size):
            x = self.decode_latents(lookup(chunk.to(device, torch.long), self.codebook))
            out.append(x.float().clamp(-1, 1).cpu())
        s = self.config.image_size
        return torch.cat(out) if out else torch.empty(0, 3, s, s)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        return self.decode(self.encode(images, batch_size), batch_size)

    # --- save / load --------------------------------------------------------------------------
    def extra_config(self) -> dict:
        """Anything besides ImageTokenizerConfig needed to rebuild the network (see vqmodel.py)."""
        return {}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write image_tokenizer.json + model.safetensors (atomic); from_pretrained reads them."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "backend": self.backend,
                "config": self.config.to_dict(), **self.extra_config()}
        runtime.save_safetensors(self.state_dict(), directory / WEIGHTS_NAME)
        runtime.atomic_write_bytes(directory / CONFIG_NAME, json.dumps(meta, indent=2).encode())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu"):
        """Rebuild a tokenizer written by save_pretrained; never downloads anything."""
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}")
        meta = json.loads((directory / CONFIG_NAME).read_text())
        backend = meta.get("backend")
        if backend == "diffusers":
            from . import vqmodel  # noqa: F401  (registers the backend; slow import, so late)
        if backend not in cls._registry:
            raise ValueError(f"{directory}: unknown image tokenizer backend {backend!r}")
        sub = cls._registry[backend]
        if cls is not ImageTokenizer and not issubclass(sub, cls):
            raise ValueError(f"{directory} holds a {backend!r} tokenizer, not a {cls.__name__}")
        model = sub._from_meta(ImageTokenizerConfig.from_dict(meta["config"]), meta)
        tensors, _ = runtime.load_safetensors(directory / WEIGHTS_NAME)
        model.load_state_dict(tensors)
        return model.to(device).eval()

    @classmethod
    def _from_meta(cls, config: ImageTokenizerConfig, meta: dict) -> "ImageTokenizer":
        return cls(config)


class ResBlock(nn.Module):
    """x + conv1x1(act(conv3x3(act(x)))), as in the original VQ-VAE."""

    def __init__(self, ch: int):
        super().__init__()
        self.net = nn.Sequential(nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                 nn.SiLU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        return x + self.net(x)


class PlainVQTokenizer(ImageTokenizer):
    """VQ-VAE: strided 4x4 convs down to the token grid, residual blocks, a 1x1 to the code dim;
    the decoder mirrors it with transposed convs. No normalisation layers: at 32-64 px they cost
    more time than they buy stability."""

    backend = "plain"

    def __init__(self, config: ImageTokenizerConfig):
        super().__init__(config)
        n_down = config.downsample.bit_length() - 1
        chans = [max(config.width >> (n_down - i), config.min_channels)
                 for i in range(n_down + 1)]                                # ... width
        enc = [nn.Conv2d(3, chans[0], 3, padding=1)]
        for c_in, c_out in zip(chans[:-1], chans[1:]):                   # halve H, W each time
            enc += [nn.SiLU(), nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)]
        enc += [ResBlock(config.width) for _ in range(config.n_res_blocks)]
        enc += [nn.SiLU(), nn.Conv2d(config.width, config.code_dim, 1)]
        self.encoder = nn.Sequential(*enc)

        dec = [nn.Conv2d(config.code_dim, config.width, 3, padding=1)]
        dec += [ResBlock(config.width) for _ in range(config.n_res_blocks)]
        for c_in, c_out in zip(chans[::-1][:-1], chans[::-1][1:]):       # double H, W each time
            dec += [nn.SiLU(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        dec += [nn.SiLU(), nn.Conv2d(chans[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

        self.embedding = nn.Parameter(torch.randn(config.codebook_size, config.code_dim))

    def encode_latents(self, images):
        return self.encoder(images)

    def decode_latents(self, z_q):
        return self.decoder(z_q)

    @property
    def codebook(self):
        return self.embedding


def build_image_tokenizer(config: ImageTokenizerConfig) -> ImageTokenizer:
    """A fresh (untrained) tokenizer for a config; backend 'pretrained' loads its VQ-GAN."""
    if config.backend == "plain":
        return PlainVQTokenizer(config)
    from .vqmodel import DiffusersVQTokenizer  # diffusers imports are slow; only when needed

    if config.backend == "diffusers":
        return DiffusersVQTokenizer(config)
    return DiffusersVQTokenizer.from_vqmodel(config.pretrained, image_size=config.image_size,
                                             subfolder=config.pretrained_subfolder)
