"""Everything a resumed run needs, in one atomic safetensors file, and the small pieces it holds:
the warmup + cosine learning rate, the EMA of the weights, RNG states, deferred Ctrl-C.

checkpoint.safetensors
    tensors   model.*  optim.<param index>.<exp_avg | exp_avg_sq | step>  ema.*  rng.torch
              rng.cuda (when there is a GPU)
    metadata  "state": {step, seconds, model_config, vocabulary, train_config, data_key,
              optimizer param_groups, scheduler state, data order, log lines}
"""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import runtime

CHECKPOINT_NAME = "checkpoint.safetensors"


class WarmupCosine:
    """lr multiplier: linear warmup to 1 over `warmup` steps, cosine down to `min_ratio` at
    `total` steps. A plain object (not a lambda) so LambdaLR can save and restore it."""

    def __init__(self, warmup: int, total: int, min_ratio: float = 0.1):
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of the parameters: shadow = d_n * shadow + (1 - d_n) * p, with
    the warm-up d_n = min(decay, (1 + n) / (10 + n)) after n earlier updates (as diffusers'
    EMAModel): a fixed 0.999 would keep 0.999^500 = 61% of the random initial weights after 500
    steps, so any short or time-limited run would be scored on a mostly untrained model."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

    def decay_at(self, updates: int) -> float:
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int) -> None:
        """Fold in the current weights; `updates` = how many updates came before (the training
        step), so a resumed run continues the same schedule."""
        params = dict(model.named_parameters())
        names = list(self.shadow)
        torch._foreach_lerp_([self.shadow[n] for n in names], [params[n].detach() for n in names],
                             1.0 - self.decay_at(updates))

    def copy_to(self, model: nn.Module) -> nn.Module:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(self.shadow[n])
        return model


def optimizer_to_tensors(optimizer) -> tuple[dict[str, Tensor], list[dict]]:
    """AdamW state as flat tensors + its param groups (JSON-able)."""
    sd = optimizer.state_dict()
    tensors = {f"optim.{pid}.{k}": v for pid, st in sd["state"].items()
               for k, v in st.items() if isinstance(v, Tensor)}
    return tensors, sd["param_groups"]


def optimizer_from_tensors(optimizer, tensors: dict[str, Tensor], param_groups: list[dict]):
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in param_groups]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors() -> dict[str, Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["rng.cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return out


def restore_rng(tensors: dict[str, Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(tensors["rng.cuda"]))


def save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, ema: EMA | None,
                    meta: dict) -> Path:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()
               if not (model.config.tie_embeddings and k == "head.weight")}
    optim_tensors, groups = optimizer_to_tensors(optimizer)
    tensors.update(optim_tensors)
    tensors.update(rng_tensors())
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.shadow.items()})
    state = dict(meta, param_groups=groups, scheduler=scheduler.state_dict())
    return runtime.save_safetensors(tensors, path, {"state": state})


def load_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict]:
    tensors, meta = runtime.load_safetensors(path)
    if "state" not in meta or "step" not in meta["state"]:
        raise ValueError(f"{path} is not a training checkpoint of this package")
    return tensors, meta["state"]


def prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class DeferredInterrupt:
    """Turn Ctrl-C (SIGINT) into a flag checked between steps, so a checkpoint is never taken in
    the middle of an update. Only in the main thread (signal handlers live there)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:                   # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
