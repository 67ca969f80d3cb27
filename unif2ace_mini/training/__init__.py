"""Training the unified model (DESIGN §5, issue 5): accelerate, checkpoints, exact resume.

    config      TrainConfig and TRAIN_CONFIGS per profile (step and time limits)
    data        records + cached image codes + tokenizers; seeded mixed t2i / mmu batches
    loop        joint_loss (D3Diff + next-token CE + MoE balance) and train()
    state       warmup + cosine lr, EMA, atomic safetensors checkpoints, deferred Ctrl-C
    cli         `python -m unif2ace_mini train --profile quick [--resume]`
"""

from .cli import add_cli
from .config import TRAIN_CONFIGS, TrainConfig, get_train_config
from .data import BatchStream, IndexStream, TrainingData, load_or_encode_codes, load_training_data
from .loop import TrainResult, joint_loss, read_log, step_generator, train
from .state import EMA, WarmupCosine

__all__ = [
    "TrainConfig", "TRAIN_CONFIGS", "get_train_config", "TrainingData", "load_training_data",
    "load_or_encode_codes", "BatchStream", "IndexStream", "train", "TrainResult", "joint_loss",
    "read_log", "step_generator", "EMA", "WarmupCosine", "add_cli",
]
