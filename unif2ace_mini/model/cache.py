"""The trained unified model in the artifact cache: trained once per (configs, data), then reused.

Notebooks 07 and 08 (and generation / evaluation) call `load_or_train_model(profile)`: the first
call trains (resuming an interrupted attempt), later calls load the saved weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import runtime
from .config import ModelConfig
from .transformer import UniFace

# TrainConfig fields that do not change the trained weights' recipe.
_NOT_RECIPE = ("max_seconds", "checkpoint_every", "log_every")


def _cut_short(summary: dict, train_config) -> bool:
    """A cached run the time limit stopped before max_steps: the next call resumes it, so the
    cache always ends up holding the recipe's full run, whatever the machine's speed."""
    return summary.get("stop_reason") == "time" and summary["step"] < train_config.max_steps


def model_cache_dir(profile_name: str, model_config: ModelConfig, train_config, data_key: str,
                    root=None) -> Path:
    recipe = {k: v for k, v in train_config.to_dict().items() if k not in _NOT_RECIPE}
    blob = json.dumps([model_config.to_dict(), recipe, data_key], sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
    base = Path(root) if root is not None else runtime.cache_dir("uniface")
    return base / f"{profile_name}-{digest}"


def finished_run(profile, model_config: ModelConfig, train_config, data, root=None
                 ) -> Path | None:
    """The cache folder of the recipe's finished run, or None when load_or_train_model would
    train (nothing cached, an interrupted run, or one the time limit cut short). Never trains:
    for a sequence MoE whose encoder features are not extracted yet, the answer is None."""
    from .. import profiles
    from ..encoders.cache import features_path
    from ..training.data import with_model_features
    from ..training.loop import SUMMARY_NAME
    from .moe_config import feature_kinds

    profile = profiles.get_profile(profile)
    if feature_kinds(model_config) and data.features is None \
            and not features_path(profile, data.split).is_file():
        return None
    data = with_model_features(data, profile, model_config)
    out = model_cache_dir(profile.name, model_config, train_config, data.key, root)
    summary_file = out / SUMMARY_NAME
    if summary_file.is_file() and not _cut_short(json.loads(summary_file.read_text()),
                                                 train_config):
        return out
    return None


def load_or_train_model(profile, model_config: ModelConfig | None = None, train_config=None,
                        data=None, root=None, progress: bool = True
                        ) -> tuple[UniFace, list[dict]]:
    """(model, training log) for a profile: the EMA weights when the recipe keeps an EMA."""
    from .. import profiles
    from ..training import get_train_config, load_training_data, read_log, train
    from ..training.data import with_model_features
    from ..training.loop import LOG_NAME
    from .config import get_model_config

    profile = profiles.get_profile(profile)
    data = data or load_training_data(profile)
    mc = model_config or get_model_config(profile)
    mc = mc if mc.vocab_size is not None else mc.for_vocab(data.vocab)
    data = with_model_features(data, profile, mc)  # sequence MoE: the features are in data.key
    tc = train_config or get_train_config(profile)
    done = finished_run(profile, mc, tc, data, root)
    if done is not None:
        weights = done / "model_ema" if (done / "model_ema").is_dir() else done / "model"
        return UniFace.from_pretrained(weights, config=mc).eval(), read_log(done / LOG_NAME)
    out = model_cache_dir(profile.name, mc, tc, data.key, root)
    # no run yet, an interrupted one, or one the time limit cut short: train / resume exactly
    result = train(profile, out_dir=out, resume=True, model_config=mc, train_config=tc,
                   data=data, progress=progress)
    return result.best_model, result.history
