"""The optimizer step the training benchmarks time, as training/loop.py runs it: loss, backward,
gradient clipping, AdamW on the model's parameter groups (shared by bench_transformer.py and
bench_moe.py; `python benchmarks/<script>.py` puts this folder on sys.path)."""

from __future__ import annotations

from typing import Callable

import torch

from unif2ace_mini.training.config import TrainConfig
from unif2ace_mini.training.loop import param_groups


def training_step(model: torch.nn.Module, compute_loss: Callable[[], torch.Tensor],
                  config: TrainConfig) -> Callable[[], None]:
    """A closure that runs one full training step of `model` on the loss `compute_loss()`."""
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr,
                                  betas=config.betas)

    def step() -> None:
        loss = compute_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
    return step
