"""Seeding, threads, determinism, device choice, the artifact cache and atomic checkpoints.

Every notebook and CLI command starts with `setup(...)`, so one seed fixes every random choice and
CPU numbers do not drift with the machine's thread count.
"""

from __future__ import annotations

import json
import os
import platform
import random
import tempfile
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

CACHE_ENV = "UNIF2ACE_CACHE"
DEFAULT_THREADS = 2  # CI's machine; more threads change float summation order and printed numbers


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator seeded the same way."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(n: int | None = DEFAULT_THREADS) -> int:
    """Pin torch's intra-op thread count; env UNIF2ACE_THREADS overrides; None keeps torch's."""
    if os.environ.get("UNIF2ACE_THREADS"):
        n = int(os.environ["UNIF2ACE_THREADS"])
    if n is None:
        return torch.get_num_threads()
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n


def get_device(preference: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA GPU")
    return device


def setup(seed: int = 0, threads: int | None = DEFAULT_THREADS, deterministic: bool = True,
          device: str = "auto") -> torch.device:
    """One call at the top of every notebook / command: seed, threads, determinism, device."""
    set_threads(threads)
    seed_everything(seed)
    if deterministic:
        # warn_only: a few CUDA kernels have no deterministic version; on CPU everything does.
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return get_device(device)


def progress_disabled() -> bool:
    """True under CI / nbval / papermill (env UNIF2ACE_NO_PROGRESS=1): pass as tqdm's `disable=`.

    tqdm.auto draws a widget when ipywidgets is present; nbval would store and compare it, so the
    test and reproduce commands switch bars off explicitly instead of relying on TQDM_DISABLE.
    """
    return os.environ.get("UNIF2ACE_NO_PROGRESS", "0") not in ("", "0", "false", "False")


def warn_if_time_limited(what: str, steps: int, max_steps: int, max_seconds: float) -> None:
    """Training loops stop on `max_steps`; `max_seconds` is a safety net for very slow machines.
    When it fires, the run is shorter than the reference run, so its results differ: say so."""
    if steps < max_steps:
        warnings.warn(f"{what}: the time limit ({max_seconds:.0f} s) stopped training after "
                      f"{steps} of {max_steps} steps; this machine is slower than the profile "
                      f"assumes, so results differ from the reference run", RuntimeWarning,
                      stacklevel=2)


# The recipe version of each kind of cached artifact. A cache key hashes the configs, but it cannot
# see a change in the code that builds the artifact (a text tokenizer once survived a change of its
# training corpus and silently skewed a notebook). Bump a kind's number with such a change: the
# old folders are then ignored instead of reused.
ARTIFACT_VERSIONS = {
    "synthfaces": 1, "oracle": 1, "image_tokenizer": 1, "text_tokenizer": 2, "image_codes": 1,
    "face_tokens": 1, "diffusion_toy": 1, "encoders": 1, "uniface": 2, "moe_ablation": 2,
}


def machine_name() -> str:
    """The CPU's model name and core count, for benchmark records ("Intel Xeon ..., 2 cores"):
    timings from different machines must never be compared as if they were one."""
    name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                     if line.startswith("model name")), "")
    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def cache_dir(kind: str, *parts: str) -> Path:
    """The artifact cache folder for one kind of artifact. Override the root with $UNIF2ACE_CACHE."""
    if kind not in ARTIFACT_VERSIONS:
        raise ValueError(f"unknown artifact kind {kind!r}; known: {sorted(ARTIFACT_VERSIONS)}")
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "unif2ace-mini")
    path = root.joinpath(f"{kind}-v{ARTIFACT_VERSIONS[kind]}", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def merge_json(path: str | os.PathLike, key: str, value) -> dict:
    """Set `key` in the JSON object stored at `path` (created if missing) and write it back
    atomically. The file is re-read first, so results another process stored meanwhile stay."""
    path = Path(path)
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored[key] = value
    atomic_write_bytes(path, (json.dumps(stored, indent=1) + "\n").encode())
    return stored


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Mapping[str, object] | None = None) -> Path:
    """Atomically save tensors as safetensors; metadata values are JSON-encoded strings."""
    from safetensors.torch import save

    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta)
    return atomic_write_bytes(path, data)


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Load tensors and JSON-decoded metadata; a missing or corrupt file is a clear error."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            raw = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"corrupt or unreadable safetensors checkpoint {path}: {err}") from err
    return tensors, {k: json.loads(v) for k, v in raw.items()}
