"""What training reads: SynthFaces records, their image codes (tokenised once, cached), the text
tokenizer and the joint vocabulary, and a deterministic stream of mixed t2i / mmu batches.

Batches are a pure function of (seed, step): the t2i and the mmu rows each walk through their
own seeded permutation of the records, epoch after epoch. Resuming at step s therefore needs no
sampler state to reproduce the data order of an uninterrupted run.

Encoder features (sequence-level MoE only). A model whose sequence slot has CLIP / face experts
reads features of each mmu row's image. `with_model_features(data, profile, model_config)`
attaches them once per split (encoders.extract_features: trained and extracted once, cached);
for dense / token-MoE models it returns the data untouched, so those never touch an encoder.
Batches then carry batch["features"] = {"clip": (B, N_f, D_f), "face": (B, 1, D_f)}: the
record's features on mmu rows and zeros on t2i rows (no input image; the experts act as copy).
They are rows of a fixed table indexed like the records, so batches stay a function of the step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import runtime
from ..model.moe_config import SequenceMoEConfig, feature_kinds
from ..model.sequences import SequenceBuilder, UniFaceDataset, collate
from ..model.tasks import MMU, T2I


@dataclass
class TrainingData:
    records: list[dict]            # SynthFaces records (caption, vqa, attributes, ...)
    image_codes: Tensor            # (N, h * w) codes in [0, K), row i = records[i]'s image
    text_tokenizer: object         # transformers tokenizer with Show-o's special tokens
    vocab: object                  # tokenizers.Vocabulary
    key: str                       # identifies the data + tokenizers, for caches and resume
    split: str = "train"           # the SynthFaces split the records come from
    # encoder features per record {"clip": (N, N_f, D), "face": (N, 1, D)} (float16, as cached),
    # only for models with a sequence-level MoE; see with_features / with_model_features
    features: dict[str, Tensor] | None = None

    @property
    def n_image_tokens(self) -> int:
        return self.image_codes.shape[1]

    def with_features(self, features: dict[str, Tensor]) -> "TrainingData":
        """This data with per-record encoder features; the key then names the features too
        (another encoder is another run: no resume across it, another model-cache entry)."""
        if not isinstance(features, dict) or not features:
            raise ValueError("features must be a non-empty dict of name -> (N, N_f, D) tensors")
        for name, f in features.items():
            if not isinstance(f, Tensor) or f.dim() != 3 or len(f) != len(self.records) \
                    or not f.is_floating_point():
                raise ValueError(f"features[{name!r}] must be a float ({len(self.records)}, N_f, "
                                 f"D) tensor (one row per record), got "
                                 f"{tuple(getattr(f, 'shape', ()))}")
        features = {k: v.detach().cpu().half() for k, v in sorted(features.items())}
        base = self.key.split("-features-")[0]
        return dataclasses.replace(self, features=features,
                                   key=f"{base}-features-{tensor_digest(features)}")


def with_model_features(data: TrainingData, profile, model_config) -> TrainingData:
    """`data` with the encoder features `model_config` reads (model_config.sequence ==
    "sequence_moe" with CLIP / face experts), extracted once per split and cached; otherwise
    `data` itself (dense and token-MoE models never load or train an encoder)."""
    kinds = feature_kinds(model_config)
    if not kinds:
        return data
    if data.features is None:
        from ..encoders import extract_features

        features = extract_features(profile, data.split)
        data = data.with_features({k: features[k] for k in kinds})
    missing = set(kinds) - set(data.features)
    if missing:
        raise ValueError(f"the model reads features {sorted(missing)} that the training data "
                         f"lacks (it has {sorted(data.features)})")
    seq = model_config.seq_moe or SequenceMoEConfig()
    for kind in kinds:
        if data.features[kind].shape[-1] != seq.feature_dim(kind):
            raise ValueError(f"the {kind} features are {data.features[kind].shape[-1]}-d but the "
                             f"model's SequenceMoEConfig has {kind}_dim={seq.feature_dim(kind)}; "
                             f"use moe_config.SEQUENCE_MOE_CONFIGS[profile] (its widths follow "
                             f"the profile's encoders)")
    return data


def tensor_digest(tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:10]


def load_or_encode_codes(image_tokenizer, data_path, split: str, root=None) -> Tensor:
    """(N, h * w) codes of a whole split, encoded once per (tokenizer weights, data) and cached."""
    from ..data.dataset import load_tensors, to_unit_range

    key = f"{Path(data_path).name}-{split}-{tensor_digest(image_tokenizer.state_dict())}"
    file = (Path(root) if root is not None else runtime.cache_dir("image_codes")) / \
        f"{key}.safetensors"
    if file.is_file():
        return runtime.load_safetensors(file)[0]["codes"]
    images = to_unit_range(load_tensors(data_path, split)["images"])        # (N, 3, H, W)
    codes = image_tokenizer.encode(images).flatten(1)                        # (N, h * w)
    runtime.save_safetensors({"codes": codes}, file)
    return codes


def load_training_data(profile, split: str = "train") -> TrainingData:
    """The profile's dataset, tokenizers and codes, building / training whatever is missing."""
    from .. import profiles
    from ..data.build import build_or_load
    from ..data.dataset import load_split
    from ..tokenizers import Vocabulary
    from ..tokenizers.cache import load_or_train_image_tokenizer, load_or_train_text_tokenizer

    profile = profiles.get_profile(profile)
    path = build_or_load(profile.data)
    image_tok, _ = load_or_train_image_tokenizer(profile)
    text_tok = load_or_train_text_tokenizer(profile)
    codes = load_or_encode_codes(image_tok, path, split)
    key_parts = [path.name, split, tensor_digest(image_tok.state_dict()),
                 hashlib.sha256(json.dumps(text_tok.get_vocab(), sort_keys=True).encode())
                 .hexdigest()[:10]]
    return TrainingData(load_split(path, split), codes, text_tok,
                        Vocabulary.from_tokenizers(text_tok, image_tok), "-".join(key_parts),
                        split)


class IndexStream:
    """An endless, seeded stream of record indices: epoch e is permutation (seed, e) of range(n).
    Position p of the stream is a pure function of p, so any step can be rebuilt directly."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("cannot sample batches from an empty dataset")
        self.n, self.seed = n, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def take(self, start: int, count: int) -> list[tuple[int, int]]:
        """[(record, epoch)] at stream positions start .. start + count - 1."""
        return [(int(self._perm(p // self.n)[p % self.n]), p // self.n)
                for p in range(start, start + count)]


class BatchStream:
    """Mixed batches: n_t2i t2i rows then n_mmu mmu rows, a pure function of the step."""

    def __init__(self, data: TrainingData, max_len: int, batch_size: int, t2i_share: float,
                 seed: int, caption_dropout: float, mmu_caption_prob: float, vqa_turns: int = 1):
        if not 0.0 <= t2i_share <= 1.0:
            raise ValueError(f"t2i_share must lie in [0, 1], got {t2i_share}")
        builder = SequenceBuilder(data.text_tokenizer, data.vocab, max_len, data.n_image_tokens)
        self.dataset = UniFaceDataset(data.records, data.image_codes, builder, seed,
                                      caption_dropout, mmu_caption_prob, vqa_turns)
        self.n_t2i = round(batch_size * t2i_share)
        self.n_mmu = batch_size - self.n_t2i
        n = len(data.records)
        self.streams = {T2I: IndexStream(n, seed * 2 + 1), MMU: IndexStream(n, seed * 2 + 2)}
        self.features = data.features

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict:
        """The rows of global batch `step` that process `rank` of `world` trains on; with
        features, batch["features"] holds each mmu row's and zeros on t2i rows."""
        rows = [(T2I, r, e) for r, e in self.streams[T2I].take(step * self.n_t2i, self.n_t2i)]
        rows += [(MMU, r, e) for r, e in self.streams[MMU].take(step * self.n_mmu, self.n_mmu)]
        rows = rows[rank::world]
        batch = collate([self.dataset.example(r, task, e) for task, r, e in rows])
        if self.features is not None:
            index = torch.tensor([r for _, r, _ in rows])
            has_image = (batch["task"] == MMU).float()[:, None, None]            # (B, 1, 1)
            batch["features"] = {k: v.index_select(0, index).float() * has_image
                                 for k, v in self.features.items()}
        return batch
