"""Build SynthFaces on disk in Hugging Face `imagefolder` layout, deterministically and fast.

    DIR/
      README.md            dataset card whose YAML lists all four splits for load_dataset(DIR)
      taxonomy.json        the attribute taxonomy (groups, phrases, rules, held-out pairs)
      dataset_info.json    config, split sizes, taxonomy fingerprint
      train/ validation/ test/ compositional/
        metadata.jsonl     file_name, id, identity_id, attributes, caption, vqa
        images/000000.png
      cache/<split>.safetensors   uint8 images (N,3,H,W) + labels (N,G): the fast training path
      COMPLETE             written last: a folder without it is an interrupted build

Image i of a split draws everything from seeds derived from (seed, split, i), so the bytes do
not depend on the number of worker processes or on the order in which they finish.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import profiles, runtime
from .groups import TAXONOMY
from .identities import make_identity, sample_image_attributes
from .renderer import check_size, render
from .text import make_caption, make_vqa

SPLITS = ("train", "validation", "test", "compositional")
FORMAT_VERSION = 1   # bump when this file changes what is written
_SOURCES = ("groups", "taxonomy", "identities", "renderer", "parts", "accessories", "text")  # + FORMAT_VERSION
_STREAM = {"attributes": 0, "render": 1, "text": 2}
POOL_STREAM = len(SPLITS)   # seeds of the oracle's extra renders: never equal to a split's


def _config(cfg) -> profiles.DataConfig:
    if isinstance(cfg, (str, profiles.Profile)):
        return profiles.get_profile(cfg).data
    if not isinstance(cfg, profiles.DataConfig):
        raise TypeError(f"expected a profile name, Profile or DataConfig, got {type(cfg).__name__}")
    check_size(cfg.image_size)
    return cfg


def split_sizes(cfg: profiles.DataConfig) -> dict[str, int]:
    return {"train": cfg.n_train, "validation": cfg.n_val, "test": cfg.n_test,
            "compositional": cfg.n_compositional}


def _draw(cfg: profiles.DataConfig, code: int, index: int, pair: int | None):
    rng = {k: np.random.default_rng([cfg.seed, code, index, s]) for k, s in _STREAM.items()}
    identity = make_identity(cfg.seed, int(rng["attributes"].integers(cfg.n_identities)))
    attrs = sample_image_attributes(rng["attributes"], identity, pair)
    image = render(attrs, identity, cfg.image_size, cfg.supersample, rng["render"])
    return identity, attrs, np.asarray(image), rng["text"]


def make_example(cfg: profiles.DataConfig, split: str, index: int) -> tuple[dict, np.ndarray]:
    """Record and uint8 image (H,W,3) of image `index` of `split`: a pure function of its inputs."""
    pair = index % len(TAXONOMY.compositional_pairs) if split == "compositional" else None
    identity, attrs, image, rng = _draw(cfg, SPLITS.index(split), index, pair)
    caption, _ = make_caption(attrs, rng, cfg.caption_attrs_mean, cfg.caption_attrs_std)
    record = {"file_name": f"images/{index:06d}.png", "id": f"{split}-{index:06d}",
              "identity_id": identity.identity_id, "attributes": attrs, "caption": caption,
              "vqa": make_vqa(attrs, rng, cfg.vqa_per_image)}
    return record, image


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)   # no timestamps or text chunks
    return buf.getvalue()


def _build_chunk(job):
    cfg_dict, split, start, stop, split_dir = job
    cfg = profiles.DataConfig(**cfg_dict)
    records, images = [], []
    for i in range(start, stop):
        record, image = make_example(cfg, split, i)
        (Path(split_dir) / record["file_name"]).write_bytes(_png_bytes(image))
        records.append(record)
        images.append(image)
    return records, np.stack(images)


def _pool_chunk(job):
    cfg_dict, start, stop = job
    cfg = profiles.DataConfig(**cfg_dict)
    out = [_draw(cfg, POOL_STREAM, i, None) for i in range(start, stop)]
    return (np.stack([o[2] for o in out]), np.stack([TAXONOMY.encode(o[1]) for o in out]))


def _map(fn, jobs: list[tuple], counts: list[int], workers: int, desc: str):
    """Yield (job, fn(job)) in job order, in worker processes if workers > 1, with a progress
    bar that advances by each job's image count."""
    bar = tqdm(total=sum(counts), desc=desc, unit="img", disable=runtime.progress_disabled())
    if workers > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            for job, count, res in zip(jobs, counts, pool.imap(fn, jobs)):   # imap keeps order
                bar.update(count)
                yield job, res
    else:
        for job, count in zip(jobs, counts):
            res = fn(job)
            bar.update(count)
            yield job, res
    bar.close()


def _workers(workers: int | None, total: int) -> int:
    return workers if workers is not None else (min(os.cpu_count() or 1, 8) if total >= 1000 else 1)


def render_pool(cfg, n: int, workers: int | None = None) -> dict:
    """n extra labelled renders (no PNG, no text) from their own seed stream, cached: the oracle's
    training pool. Same distribution as train (held-out pairs excluded), disjoint from every split."""
    import torch
    cfg = _config(cfg)
    file = runtime.cache_dir("synthfaces") / f"pool-{cache_key(cfg)}-{n}.safetensors"
    if file.is_file():
        tensors, meta = runtime.load_safetensors(file)
        if meta.get("taxonomy") == TAXONOMY.fingerprint():
            return tensors
    jobs = [(dataclasses.asdict(cfg), s, min(s + 256, n)) for s in range(0, n, 256)]
    parts = [res for _, res in _map(_pool_chunk, jobs, [j[2] - j[1] for j in jobs],
                                     _workers(workers, n), f"oracle pool {cfg.image_size}px")]
    images = np.concatenate([p[0] for p in parts])
    tensors = {"images": torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),  # (N,3,H,W)
               "labels": torch.from_numpy(np.concatenate([p[1] for p in parts]))}             # (N,G)
    runtime.save_safetensors(tensors, file, {"taxonomy": TAXONOMY.fingerprint()})
    return tensors


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"output folder {out} is not writable: {err}") from err


def build(cfg, out: str | os.PathLike, workers: int | None = None) -> Path:
    """Render every split of `cfg` (a profile name, Profile or DataConfig) into `out`."""
    cfg = _config(cfg)
    out = Path(out)
    _check_writable(out)
    (out / "COMPLETE").unlink(missing_ok=True)
    sizes = split_sizes(cfg)
    total = sum(sizes.values())
    workers = _workers(workers, total)
    chunk = 64
    jobs, split_dirs = [], {}
    for split, n in sizes.items():
        split_dirs[split] = out / split
        shutil.rmtree(split_dirs[split], ignore_errors=True)
        (split_dirs[split] / "images").mkdir(parents=True)
        jobs += [(dataclasses.asdict(cfg), split, s, min(s + chunk, n), str(split_dirs[split]))
                 for s in range(0, n, chunk)]
    results = {s: [] for s in sizes}
    counts = [j[3] - j[2] for j in jobs]
    for job, res in _map(_build_chunk, jobs, counts, workers, f"SynthFaces {cfg.image_size}px"):
        results[job[1]].append(res)

    for split, parts in results.items():
        records = [r for recs, _ in parts for r in recs]
        lines = "".join(json.dumps(r) + "\n" for r in records)
        runtime.atomic_write_bytes(split_dirs[split] / "metadata.jsonl", lines.encode())
        images = np.concatenate([im for _, im in parts]) if parts else \
            np.zeros((0, cfg.image_size, cfg.image_size, 3), np.uint8)
        _write_tensor_cache(out, split, images, records)
    _write_card(out, cfg, sizes)
    runtime.atomic_write_bytes(out / "COMPLETE", json.dumps(_identity(cfg)).encode())
    return out


def _write_tensor_cache(out: Path, split: str, images: np.ndarray, records: list[dict]) -> None:
    import torch
    labels = np.stack([TAXONOMY.encode(r["attributes"]) for r in records]) if records else \
        np.zeros((0, len(TAXONOMY)), np.int64)
    tensors = {"images": torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),  # (N,3,H,W)
               "labels": torch.from_numpy(labels),                                              # (N,G)
               "identity_ids": torch.tensor([r["identity_id"] for r in records], dtype=torch.int64)}
    runtime.save_safetensors(tensors, out / "cache" / f"{split}.safetensors",
                             {"taxonomy": TAXONOMY.fingerprint()})


def code_version() -> str:
    """Hash of the modules that decide the bytes: editing the renderer invalidates cached builds."""
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return h.hexdigest()[:12]


def _identity(cfg: profiles.DataConfig) -> dict:
    return {"config": dataclasses.asdict(cfg), "taxonomy": TAXONOMY.fingerprint(),
            "format_version": FORMAT_VERSION, "code": code_version()}


def _write_card(out: Path, cfg: profiles.DataConfig, sizes: dict[str, int]) -> None:
    runtime.atomic_write_bytes(out / "taxonomy.json", TAXONOMY.to_json().encode())
    info = _identity(cfg) | {"splits": sizes}
    runtime.atomic_write_bytes(out / "dataset_info.json", json.dumps(info, indent=1).encode())
    yaml = "".join(f"  - split: {s}\n    path: {s}/**\n" for s in SPLITS)
    card = (f"---\nconfigs:\n- config_name: default\n  data_files:\n{yaml}---\n\n"
            f"# SynthFaces ({cfg.image_size}px, seed {cfg.seed})\n\n"
            "Procedural faces with exact attributes, captions and VQA, built by unif2ace-mini. "
            "See data/README.md in the repository for the full card.\n")
    runtime.atomic_write_bytes(out / "README.md", card.encode())


def cache_key(cfg) -> str:
    cfg = _config(cfg)
    digest = hashlib.sha256(json.dumps(_identity(cfg), sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.image_size}px-n{sum(split_sizes(cfg).values())}-s{cfg.seed}-{digest}"


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / "COMPLETE").is_file()


def build_or_load(cfg, root: str | os.PathLike | None = None, workers: int | None = None) -> Path:
    """The dataset folder for `cfg` in the artifact cache, built once (then reused)."""
    cfg = _config(cfg)
    key = cache_key(cfg)
    final = (Path(root) if root is not None else runtime.cache_dir("synthfaces")) / key
    if is_complete(final):
        return final
    # Build next to the final folder and rename: a crash never leaves a half folder behind it,
    # and two processes building the same key cannot corrupt each other.
    tmp = final.with_name(f".{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build(cfg, tmp, workers=workers)
    if final.exists() and not is_complete(final):
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)   # someone else finished first
        if not is_complete(final):
            raise
    return final
