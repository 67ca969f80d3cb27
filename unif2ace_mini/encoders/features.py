"""One interface for the frozen image encoders that feed the sequence-level MoE (DESIGN §8).

    extractor(images float [-1, 1] (B, 3, S, S)) -> features (B, n_tokens, dim)

with `.name` ("clip" / "face"), `.dim`, `.n_tokens` and `.image_size` (the S it accepts). The
extractor is always in eval mode and never builds a graph. It resizes to its model's native size
and applies that model's normalisation itself, so callers pass the data's images unchanged.

    ClipImageFeatures     tokens="patches": the vision tower's last hidden states after its final
                          LayerNorm, CLS first then the patch grid row by row: (B, 1 + P, width).
                          The resampler gets *where* things are (hair at the top, a beard at the
                          bottom), which a single pooled vector would blur. tokens="pooled": the
                          projected, L2-normalised CLIP embedding: (B, 1, projection_dim).
    FaceIdentityFeatures  the L2-normalised identity embedding as one token: (B, 1, D).

Paper scale uses the same classes around pretrained models (no code here downloads anything
unless it is handed a hub id):
    load_pretrained_clip(path_or_id)  transformers CLIP (e.g. openai/clip-vit-large-patch14)
    load_face_model(path)             a face-recognition model from a local file, either
      - *.safetensors written by save_face_model: IResNet weights + metadata {"format":
        "unif2ace-face-iresnet", "arch": {widths, layers, embedding_dim, image_size, stem_stride},
        "mean", "std"}; insightface ArcFace .pth checkpoints convert with
        convert_insightface_checkpoint;
      - *.pt / *.ts TorchScript taking (B, 3, model_size, model_size) in [-1, 1] (insightface's
        convention) and returning (B, D). Faces are expected roughly centred and aligned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import runtime
from ..data.dataset import to_unit_range
from .identity import IResNet

FACE_FORMAT = "unif2ace-face-iresnet"
UNIT = (0.5, 0.5, 0.5)                                   # [0,1] -> [-1,1]: models trained here
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # OpenAI CLIP's preprocessing
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FeatureExtractor(nn.Module):
    """Base class: input checks, resizing, normalisation, eval mode, no grad."""

    name: str = "features"

    def __init__(self, image_size: int, model_size: int, dim: int, n_tokens: int,
                 mean=UNIT, std=UNIT):
        super().__init__()
        self.image_size, self.model_size = int(image_size), int(model_size)
        self.dim, self.n_tokens = int(dim), int(n_tokens)
        as_buffer = lambda v: torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", as_buffer(mean), persistent=False)
        self.register_buffer("std", as_buffer(std), persistent=False)

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)                      # frozen: BatchNorm / dropout stay off

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float [-1, 1] images (B, 3, image_size, image_size) -> float on our device."""
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"{self.name} features need a torch.Tensor of images, "
                             f"got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name} features need RGB images (B, 3, H, W), got shape "
                             f"{tuple(images.shape)}")
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"{self.name} features take {self.image_size}x{self.image_size} images, "
                             f"got {images.shape[-2]}x{images.shape[-1]}")
        if len(images) == 0:
            raise ValueError(f"{self.name} features got an empty batch")
        if images.dtype == torch.uint8:
            images = to_unit_range(images)
        elif not images.is_floating_point():
            raise ValueError(f"images must be uint8 or float in [-1, 1], got {images.dtype}")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1.001 or hi > 1.001 or images.isnan().any():
            raise ValueError(f"{self.name} features take images in [-1, 1], got values in "
                             f"[{lo:.3g}, {hi:.3g}] (uint8 images: use data.to_unit_range)")
        return images.to(self.device, torch.float32)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if self.model_size != self.image_size:
            images = F.interpolate(images, size=(self.model_size, self.model_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        return ((images + 1) / 2 - self.mean) / self.std

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(self.check_images(images))
        with torch.no_grad():
            out = self.encode(x)                                   # (B, n_tokens, dim)
        assert out.shape[1:] == (self.n_tokens, self.dim), out.shape
        return out

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, image_size={self.image_size}, model_size={self.model_size}, "
                f"n_tokens={self.n_tokens}, dim={self.dim}")


class ClipImageFeatures(FeatureExtractor):
    """CLIP image features; `model` is a transformers CLIPModel or CLIPVisionModelWithProjection."""

    name = "clip"

    def __init__(self, model: nn.Module, image_size: int | None = None, tokens: str = "patches",
                 mean=UNIT, std=UNIT):
        vcfg = model.config.vision_config if hasattr(model.config, "vision_config") else model.config
        size = vcfg.image_size if isinstance(vcfg.image_size, int) else vcfg.image_size[0]
        patch = vcfg.patch_size if isinstance(vcfg.patch_size, int) else vcfg.patch_size[0]
        if tokens == "patches":
            dim, n_tokens = vcfg.hidden_size, 1 + (size // patch) ** 2
        elif tokens == "pooled":
            dim, n_tokens = model.visual_projection.out_features, 1
        else:
            raise ValueError(f"tokens must be 'patches' or 'pooled', got {tokens!r}")
        super().__init__(image_size or size, size, dim, n_tokens, mean, std)
        self.tokens = tokens
        self.model = model.eval().requires_grad_(False)
        self.to(next(model.parameters()).device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.vision_model(pixel_values=x)
        if self.tokens == "patches":
            return self.model.vision_model.post_layernorm(out.last_hidden_state)     # (B, 1+P, W)
        emb = self.model.visual_projection(out.pooler_output)                          # (B, proj)
        return F.normalize(emb, dim=-1).unsqueeze(1)                                   # (B, 1, proj)


class FaceIdentityFeatures(FeatureExtractor):
    """The L2-normalised embedding of a face-recognition backbone, as a single token."""

    name = "face"

    def __init__(self, backbone: nn.Module, image_size: int, model_size: int,
                 embedding_dim: int | None = None, mean=UNIT, std=UNIT):
        device = next(iter(backbone.parameters()), torch.zeros(0)).device
        if embedding_dim is None:   # TorchScript models do not say: ask them
            with torch.no_grad():
                probe = torch.zeros(2, 3, model_size, model_size, device=device)
                embedding_dim = backbone.eval()(probe).shape[-1]
        super().__init__(image_size, model_size, embedding_dim, 1, mean, std)
        self.backbone = backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.to(device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(x).float(), dim=-1).unsqueeze(1)             # (B, 1, D)


def load_pretrained_clip(path_or_id: str | os.PathLike, image_size: int | None = None,
                         tokens: str = "patches", device: str | torch.device = "cpu"
                         ) -> ClipImageFeatures:
    """A pretrained CLIP's vision tower (+ projection) behind the extractor interface.

    Only the vision side is loaded (CLIPVisionModelWithProjection reads a full CLIPModel
    checkpoint). The normalisation comes from the folder's preprocessor_config.json when there
    is one, else OpenAI CLIP's. A hub id downloads through transformers: paper profile only.
    """
    from transformers import CLIPVisionModelWithProjection

    try:
        model = CLIPVisionModelWithProjection.from_pretrained(str(path_or_id))
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load a CLIP model from {str(path_or_id)!r}: {err}") from err
    mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    proc = Path(path_or_id) / "preprocessor_config.json"
    if proc.is_file():
        p = json.loads(proc.read_text())
        mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
    return ClipImageFeatures(model.to(device), image_size, tokens, mean, std)


def save_face_model(backbone: IResNet, path: str | os.PathLike, mean=UNIT, std=UNIT,
                    extra: dict | None = None) -> Path:
    """Atomically write an IResNet as safetensors with the metadata load_face_model needs."""
    meta = {"format": FACE_FORMAT, "arch": backbone.arch(), "mean": list(mean), "std": list(std)}
    return runtime.save_safetensors(backbone.state_dict(), path, meta | (extra or {}))


def load_face_backbone(path: str | os.PathLike) -> tuple[IResNet, dict]:
    """(IResNet in eval mode, metadata) from a file written by save_face_model."""
    tensors, meta = runtime.load_safetensors(path)
    if meta.get("format") != FACE_FORMAT or "arch" not in meta:
        raise ValueError(f"{path} is not a face model in the {FACE_FORMAT!r} format (metadata "
                         f"keys: {sorted(meta)}); convert insightface weights with "
                         "convert_insightface_checkpoint")
    try:
        model = IResNet(**meta["arch"])
        model.load_state_dict(tensors)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"face model {path} does not match its recorded architecture: "
                         f"{err}") from err
    return model.eval(), meta


def load_face_model(path: str | os.PathLike, image_size: int, model_size: int | None = None,
                    device: str | torch.device = "cpu") -> FaceIdentityFeatures:
    """A face-recognition model from a local file (see the module docstring for the formats).

    image_size: the data's pixels per side; model_size: the model's input (TorchScript only;
    the safetensors format records it; insightface ArcFace models take 112).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"face model not found: {path} (the paper profile expects a local "
                                "file; nothing is downloaded)")
    if path.suffix == ".safetensors":
        backbone, meta = load_face_backbone(path)
        return FaceIdentityFeatures(backbone.to(device), image_size, meta["arch"]["image_size"],
                                    meta["arch"]["embedding_dim"], meta["mean"], meta["std"])
    if path.suffix in (".pt", ".ts", ".torchscript"):
        try:
            backbone = torch.jit.load(str(path), map_location=device)
        except RuntimeError as err:
            raise ValueError(f"{path} is not a TorchScript model: {err}") from err
        return FaceIdentityFeatures(backbone, image_size, model_size or 112)
    raise ValueError(f"unknown face model format {path.suffix!r}: use .safetensors "
                     "(save_face_model) or a TorchScript .pt/.ts file")


def convert_insightface_checkpoint(pth: str | os.PathLike, out: str | os.PathLike,
                                   layers=(3, 4, 14, 3), widths=(64, 128, 256, 512),
                                   embedding_dim: int = 512, image_size: int = 112) -> Path:
    """An insightface arcface_torch backbone .pth (a state dict) -> our safetensors format.

    Defaults are IResNet-50 (r18: layers (2, 2, 2, 2), r100: (3, 13, 30, 3)). Missing BatchNorm
    step counters are the only tolerated difference; anything else is a clear error.
    """
    state = torch.load(str(pth), map_location="cpu", weights_only=True)
    model = IResNet(widths, layers, embedding_dim, image_size)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{pth} does not fit IResNet(layers={tuple(layers)}): missing "
                         f"{missing[:5]}, unexpected {list(unexpected)[:5]}")
    return save_face_model(model.eval(), out)
