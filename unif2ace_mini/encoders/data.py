"""Encoder training data: image-caption pairs for CLIP, identity-labelled faces for ArcFace.

SynthFaces draws every image's identity from the same `n_identities` people in every split, so
train, validation and test share people. Face verification must be measured on people the
encoder never saw, so a seeded `holdout_fraction` of identities is removed from training and
*all* their images (train, validation and test splits) form the verification set.

Both encoders also train on the oracle's extra renders (`build.render_pool`, cached once per
profile): 3000 train images are few for a ViT or an identity classifier. The pool stores labels
but not identities; `pool_identity_ids` re-derives them from the seeds without rendering.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..data.build import _STREAM, POOL_STREAM, render_pool
from ..data.dataset import load_split, load_tensors
from ..data.groups import TAXONOMY
from ..data.text import make_caption


def pool_identity_ids(data_cfg, n: int) -> torch.Tensor:
    """Identity of each of the first n pool renders. (n,) int64

    Mirrors build._draw: the identity is the first draw of the image's "attributes" stream.
    tests/test_encoders_data.py checks this against real renders, so a change in build.py that
    breaks it fails loudly instead of silently mislabelling faces.
    """
    stream = _STREAM["attributes"]
    ids = [int(np.random.default_rng([data_cfg.seed, POOL_STREAM, i, stream])
               .integers(data_cfg.n_identities)) for i in range(n)]
    return torch.tensor(ids, dtype=torch.int64)


def held_out_identities(n_identities: int, fraction: float, seed: int) -> torch.Tensor:
    """The sorted ids of the people kept out of identity-encoder training. (k,) int64"""
    k = max(2, int(round(fraction * n_identities)))
    if k >= n_identities:
        raise ValueError(f"holding out {k} of {n_identities} identities leaves none to train on")
    perm = np.random.default_rng([seed, 104729]).permutation(n_identities)
    return torch.from_numpy(np.sort(perm[:k])).long()


def clip_training_set(data_path: str | os.PathLike, data_cfg, n_pool: int) -> dict:
    """Train split (+ pool): images uint8 (N,3,H,W), labels (N,G), captions (None: generate one)."""
    train = load_tensors(data_path, "train")
    captions: list[str | None] = [r["caption"] for r in load_split(data_path, "train")]
    images, labels = train["images"], train["labels"]
    if n_pool:
        pool = render_pool(data_cfg, n_pool)
        images, labels = torch.cat([images, pool["images"]]), torch.cat([labels, pool["labels"]])
        captions += [None] * n_pool
    return {"images": images, "labels": labels, "captions": captions}


def identity_training_set(data_path: str | os.PathLike, data_cfg, n_pool: int,
                          held_out: torch.Tensor) -> dict:
    """Faces of the training identities: images uint8 (N,3,H,W), classes (N,) in 0..C-1, and
    `identities` (C,), the SynthFaces identity id of each class."""
    train = load_tensors(data_path, "train")
    images, ids = train["images"], train["identity_ids"]
    if n_pool:
        pool = render_pool(data_cfg, n_pool)
        images = torch.cat([images, pool["images"]])
        ids = torch.cat([ids, pool_identity_ids(data_cfg, n_pool)])
    keep = ~torch.isin(ids, held_out)
    images, ids = images[keep], ids[keep]
    identities, classes = torch.unique(ids, return_inverse=True)
    if len(identities) < 2:
        raise ValueError(f"only {len(identities)} training identities: the data is too small")
    return {"images": images, "classes": classes, "identities": identities}


def verification_set(data_path: str | os.PathLike, held_out: torch.Tensor,
                     splits=("train", "validation", "test")) -> dict:
    """Every image of the held-out people in `splits`: images uint8 (N,3,H,W), identity_ids (N,)."""
    images, ids = [], []
    for split in splits:
        t = load_tensors(data_path, split)
        keep = torch.isin(t["identity_ids"], held_out)
        images.append(t["images"][keep])
        ids.append(t["identity_ids"][keep])
    return {"images": torch.cat(images), "identity_ids": torch.cat(ids)}


class CaptionSampler:
    """Captions for a batch: the stored one, or (with probability fresh_prob, and always for pool
    images) a new caption from the same generator and the image's true attributes.

    SynthFaces captions state a random subset of ~18 of 31 attributes, so every new draw is a
    new, equally true description: the text-side analogue of image augmentation.
    """

    def __init__(self, labels: torch.Tensor, captions: list[str | None], fresh_prob: float,
                 seed: int, mean_attrs: float, std_attrs: float):
        if len(labels) != len(captions):
            raise ValueError(f"{len(labels)} label rows but {len(captions)} captions")
        self.labels, self.captions, self.fresh_prob = labels, captions, fresh_prob
        self.mean_attrs, self.std_attrs = mean_attrs, std_attrs
        self.rng = np.random.default_rng([seed, 2718])

    def __call__(self, idx: torch.Tensor) -> list[str]:
        out = []
        for i in idx.tolist():
            stored = self.captions[i]
            if stored is not None and self.rng.random() >= self.fresh_prob:
                out.append(stored)
                continue
            attrs = TAXONOMY.decode(self.labels[i].tolist())
            out.append(make_caption(attrs, self.rng, self.mean_attrs, self.std_attrs)[0])
        return out


def random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Shift the batch by up to max_shift pixels (edge-padded). No flips: left/right (head turn,
    tilt, wink side) are attributes, and a flipped face would contradict its caption."""
    s = 2 * max_shift + 1
    dx, dy = (int(v) for v in torch.randint(s, (2,), generator=gen))
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, mode="replicate")
    return padded[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]
