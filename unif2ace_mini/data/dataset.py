"""Reading a built SynthFaces folder: records, a torch Dataset, and whole splits as tensors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import runtime
from .build import SPLITS
from .groups import TAXONOMY
from .taxonomy import Taxonomy


def _split_dir(path: str | os.PathLike, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {list(SPLITS)}")
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"SynthFaces folder not found: {path} (build it with "
                                f"`python -m unif2ace_mini data build` or data.build_or_load)")
    meta = path / split / "metadata.jsonl"
    if not meta.is_file():
        raise FileNotFoundError(f"missing {meta}: not a complete SynthFaces build")
    return path / split


def load_taxonomy(path: str | os.PathLike) -> Taxonomy:
    """The taxonomy a folder was built with (it must match the package's to train on it)."""
    file = Path(path) / "taxonomy.json"
    if not file.is_file():
        raise FileNotFoundError(f"missing {file}: not a SynthFaces build")
    return Taxonomy.from_dict(json.loads(file.read_text()))


def load_split(path: str | os.PathLike, split: str) -> list[dict]:
    """Records of one split: metadata.jsonl fields plus `image_path` (absolute)."""
    split_dir = _split_dir(path, split)
    records = []
    for line in (split_dir / "metadata.jsonl").read_text().splitlines():
        r = json.loads(line)
        r["image_path"] = str((split_dir / r["file_name"]).resolve())
        records.append(r)
    return records


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


class SynthFacesDataset(torch.utils.data.Dataset):
    """One split as a torch Dataset.

    Item: dict(image float (3,H,W) in [-1,1], labels int64 (G,) in taxonomy order, caption,
    vqa, identity_id, id). `transform`, if given, maps the image tensor to a new tensor.
    """

    def __init__(self, path: str | os.PathLike, split: str, transform=None,
                 taxonomy: Taxonomy = TAXONOMY):
        self.records = load_split(path, split)
        self.transform = transform
        self.taxonomy = taxonomy
        self.labels = torch.from_numpy(np.stack([taxonomy.encode(r["attributes"])
                                                 for r in self.records])) if self.records else \
            torch.zeros(0, len(taxonomy), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        with Image.open(r["image_path"]) as im:
            arr = np.asarray(im.convert("RGB"))
        image = to_unit_range(torch.from_numpy(arr.copy()).permute(2, 0, 1))   # (3,H,W)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "labels": self.labels[i], "caption": r["caption"], "vqa": r["vqa"],
                "identity_id": r["identity_id"], "id": r["id"]}


def load_tensors(path: str | os.PathLike, split: str) -> dict[str, torch.Tensor]:
    """A whole split at once: images uint8 (N,3,H,W), labels int64 (N,G), identity_ids (N,).

    Reads the safetensors cache written by the build; rebuilds it from the PNGs if it is missing.
    """
    _split_dir(path, split)
    file = Path(path) / "cache" / f"{split}.safetensors"
    if file.is_file():
        tensors, meta = runtime.load_safetensors(file)
        if meta.get("taxonomy") == TAXONOMY.fingerprint():
            return tensors
    records = load_split(path, split)
    images = np.stack([np.asarray(Image.open(r["image_path"]).convert("RGB")) for r in records])
    tensors = {"images": torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
               "labels": torch.from_numpy(np.stack([TAXONOMY.encode(r["attributes"]) for r in records])),
               "identity_ids": torch.tensor([r["identity_id"] for r in records])}
    # one metadata key only: safetensors stores metadata in a hash map, so several keys would
    # come out in a random order and the bytes would differ between identical builds
    runtime.save_safetensors(tensors, file, {"taxonomy": TAXONOMY.fingerprint()})
    return tensors
