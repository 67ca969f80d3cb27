"""An ArcFace-style identity encoder: an IResNet backbone trained with an additive angular margin.

The backbone is insightface's IResNet (arcface_torch/backbones/iresnet.py) with configurable
stage widths and depths, and the same module names, so an insightface ArcFace checkpoint loads
into `IResNet(widths=(64, 128, 256, 512), layers=(3, 4, 14, 3), image_size=112)` unchanged
(features.convert_insightface_checkpoint). The mini encoders are the same network, 4x narrower
and one block per stage.

ArcFace (Deng et al., 2019) classifies training identities with cosine logits and adds a margin
m to the *angle* of the true class: target logit s*cos(theta_y + m), others s*cos(theta_j). The
embedding must then sit at least m radians closer to its own class centre than to any other,
which is what makes unseen people separable by a cosine threshold.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import runtime
from ..data.dataset import to_unit_range
from .config import FaceEncoderConfig
from .data import random_shift


class IBasicBlock(nn.Module):
    """Pre-activation residual block of IResNet: BN-conv-BN-PReLU-conv(stride)-BN + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in, eps=1e-5)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, eps=1e-5)
        self.prelu = nn.PReLU(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out, eps=1e-5)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """(B, 3, S, S) images in [-1, 1] -> (B, embedding_dim) identity embeddings (not normalised).

    Each stage halves the resolution, so the flattened map fed to `fc` is (S / 2^stages)^2
    positions: the embedding keeps *where* features are, which matters for face geometry.
    """

    def __init__(self, widths=(64, 128, 256, 512), layers=(3, 4, 14, 3), embedding_dim: int = 512,
                 image_size: int = 112, stem_stride: int = 1, dropout: float = 0.0):
        super().__init__()
        if len(widths) != len(layers) or not widths:
            raise ValueError(f"widths {widths} and layers {layers} need one entry per stage")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 (insightface) or 2, got {stem_stride}")
        down = stem_stride * 2 ** len(widths)
        side = image_size // down
        if side < 1 or image_size % down:
            raise ValueError(f"image_size {image_size} is not divisible by {down} "
                             f"(stem stride {stem_stride}, {len(widths)} stride-2 stages)")
        self.widths, self.layers = tuple(widths), tuple(layers)
        self.embedding_dim, self.image_size, self.stem_stride = embedding_dim, image_size, stem_stride
        # insightface keeps the stem at full resolution (112 px); the mini encoders use stride 2:
        # on a CPU, BatchNorm/PReLU passes over full-size maps cost more than the convolutions.
        self.conv1 = nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-5)
        self.prelu = nn.PReLU(widths[0])
        c = widths[0]
        for k, (w, n) in enumerate(zip(widths, layers)):   # layer1..layerN, as insightface names them
            blocks = [IBasicBlock(c, w, stride=2)] + [IBasicBlock(w, w) for _ in range(n - 1)]
            self.add_module(f"layer{k + 1}", nn.Sequential(*blocks))
            c = w
        self.bn2 = nn.BatchNorm2d(c, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c * side * side, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False   # as insightface: a pure standardisation

    def arch(self) -> dict:
        """Everything needed to rebuild the network (stored in checkpoints)."""
        return {"widths": list(self.widths), "layers": list(self.layers),
                "embedding_dim": self.embedding_dim, "image_size": self.image_size,
                "stem_stride": self.stem_stride}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))                     # (B, w0, S/stem, S/stem)
        for k in range(len(self.widths)):
            x = getattr(self, f"layer{k + 1}")(x)                   # (B, wk, S/2^(k+1), ...)
        x = self.dropout(torch.flatten(self.bn2(x), 1))             # (B, wN * side^2)
        return self.features(self.fc(x))                            # (B, D)


def arcface_logits(cos: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Cosines (B, C) with the true class's entry replaced by cos(theta + margin). (B, C)

    Past theta = pi - margin, cos(theta + m) would turn back up and reward a *worse* angle, so
    there insightface (and we) use cos(theta) - m * sin(m), which keeps the logit decreasing.
    """
    if labels.shape != cos.shape[:1]:
        raise ValueError(f"need one label per row: cos {tuple(cos.shape)}, "
                         f"labels {tuple(labels.shape)}")
    target = cos.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7)  # (B, 1)
    sin = (1.0 - target.pow(2)).sqrt()
    shifted = target * math.cos(margin) - sin * math.sin(margin)        # cos(theta + m)
    shifted = torch.where(target > math.cos(math.pi - margin), shifted,
                          target - margin * math.sin(margin))
    return cos.scatter(1, labels[:, None], shifted)


class ArcFaceHead(nn.Module):
    """One weight vector per training identity; logits = s * cos(angle), margin on the true one."""

    def __init__(self, embedding_dim: int, n_classes: int, scale: float = 32.0, margin: float = 0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, embedding_dim) * 0.01)
        self.scale, self.margin = scale, margin

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        """Cosine between each embedding and each class centre. (B, C)"""
        return F.normalize(emb, dim=-1) @ F.normalize(self.weight, dim=-1).T

    def forward(self, emb: torch.Tensor, labels: torch.Tensor | None = None,
                margin: float | None = None) -> torch.Tensor:
        cos = self.cosine(emb)                                                 # (B, C)
        if labels is not None:
            cos = arcface_logits(cos, labels, self.margin if margin is None else margin)
        return self.scale * cos


def build_face_encoder(cfg: FaceEncoderConfig) -> IResNet:
    return IResNet(cfg.widths, cfg.layers, cfg.embedding_dim, cfg.image_size, cfg.stem_stride)


def train_face_encoder(backbone: IResNet, data: dict, cfg: FaceEncoderConfig,
                       progress: bool | None = None) -> dict:
    """ArcFace training on data = {images uint8 (N,3,H,W), classes (N,)} for cfg.max_steps
    steps (cfg.max_seconds is only a safety net, as in clip.train_clip); the head is thrown away
    afterwards (only the backbone embeds faces).

    The margin ramps up from 0 over the first `margin_warmup` of the steps: a randomly
    initialised tiny network facing a 0.5 rad margin on hundreds of classes at once never leaves
    the starting plateau (measured: loss rising from 11 to 21, accuracy 0, on the quick profile).
    """
    device = next(backbone.parameters()).device
    images, classes = data["images"], data["classes"]
    n_classes = int(classes.max()) + 1
    head = ArcFaceHead(cfg.embedding_dim, n_classes, cfg.scale, cfg.margin).to(device)
    params = [p for p in list(backbone.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = {"step": [], "loss": [], "lr": [], "margin": [], "batch_acc": []}
    batch = min(cfg.batch_size, len(images))
    backbone.to(memory_format=torch.channels_last)   # measured ~20% faster convs on CPU
    start, step, stop_reason = time.perf_counter(), 0, "steps"
    bar = tqdm(total=cfg.max_steps, desc="ArcFace",
               disable=runtime.progress_disabled() or progress is False)
    backbone.train()
    while step < cfg.max_steps:
        if time.perf_counter() - start >= cfg.max_seconds:   # safety net only (see config.py)
            stop_reason = "time"
            break
        done = step / cfg.max_steps
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * 0.5 * (1 + math.cos(math.pi * done))
        margin = cfg.margin * (min(1.0, done / cfg.margin_warmup) if cfg.margin_warmup else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(images), (batch,), generator=gen)
        x = random_shift(to_unit_range(images[idx]), gen).to(device)    # (B, 3, H, W)
        x = x.contiguous(memory_format=torch.channels_last)
        y = classes[idx].to(device)
        cos = head.cosine(backbone(x))                                  # (B, C)
        loss = F.cross_entropy(head.scale * arcface_logits(cos, y, margin), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc = (cos.argmax(1) == y).float().mean().item()     # nearest class centre, no margin
        history["step"].append(step)
        history["loss"].append(loss.item())
        history["lr"].append(lr)
        history["margin"].append(margin)
        history["batch_acc"].append(acc)
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}")
    bar.close()
    backbone.to(memory_format=torch.contiguous_format).eval()
    seconds = time.perf_counter() - start
    history |= {"steps": step, "stop_reason": stop_reason, "seconds": seconds,
                "img_per_s": step * batch / max(seconds, 1e-9),
                "batch_size": batch, "n_images": len(images), "n_classes": n_classes}
    return history


@torch.no_grad()
def embed_faces(backbone: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """L2-normalised embeddings of uint8 or [-1,1] images (N,3,H,W). (N, D)"""
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        x = to_unit_range(x) if x.dtype == torch.uint8 else x
        out.append(F.normalize(backbone(x.to(device)).float(), dim=-1).cpu())
    backbone.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, getattr(backbone, "embedding_dim", 0))
