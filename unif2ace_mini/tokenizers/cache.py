"""Trained tokenizers in the artifact cache: built once per (data, config), then reused.

Notebooks 02, 05 and later call these, so each runs standalone (DESIGN §10): the first call
trains and saves, later calls load, and both return the same objects and numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .. import runtime
from .config import ImageTokenizerConfig, TextTokenizerConfig
from .image import ImageTokenizer, build_image_tokenizer
from .text import load_text_tokenizer, train_text_tokenizer

HISTORY_NAME = "history.json"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _data(data_cfg, data_path):
    from ..data.build import build_or_load, cache_key  # data is a sibling package; import late

    path = Path(data_path) if data_path is not None else build_or_load(data_cfg)
    return path, (cache_key(data_cfg) if data_cfg is not None else _digest(str(path)))


def image_tokenizer_dir(config: ImageTokenizerConfig, data_key: str, root=None) -> Path:
    base = Path(root) if root is not None else runtime.cache_dir("image_tokenizer")
    return base / f"{config.backend}-{config.image_size}px-K{config.codebook_size}-" \
                  f"{data_key}-{_digest(config.to_dict())}"


def load_or_train_image_tokenizer(profile, config: ImageTokenizerConfig | None = None,
                                  data_path=None, root=None, progress: bool | None = None
                                  ) -> tuple[ImageTokenizer, dict]:
    """(tokenizer, history) for a profile: from the cache, or trained on its train split."""
    from .. import profiles
    from ..data.dataset import load_tensors, to_unit_range

    profile = profiles.get_profile(profile)
    config = config or profile.tokenizer
    if config.backend == "pretrained":  # nothing to train
        return build_image_tokenizer(config), {}
    path, key = _data(profile.data, data_path)
    out = image_tokenizer_dir(config, key, root)
    if (out / HISTORY_NAME).is_file():
        return ImageTokenizer.from_pretrained(out), json.loads((out / HISTORY_NAME).read_text())

    from .train import fit_image_tokenizer

    images = to_unit_range(load_tensors(path, "train")["images"])       # (N, 3, H, W)
    tok, history = fit_image_tokenizer(config, images, progress=progress)
    tok.save_pretrained(out)
    runtime.atomic_write_bytes(out / HISTORY_NAME, json.dumps(history).encode())  # last: "done"
    return tok, history


def text_corpus(data_path, split: str = "train") -> list[str]:
    """Captions, questions and answers of a split, in file order (deterministic)."""
    from ..data.dataset import load_split

    texts = []
    for r in load_split(data_path, split):
        texts.append(r["caption"])
        for qa in r["vqa"]:
            texts += [qa["question"], " " + qa["answer"]]  # answers follow a question: a new word
    return texts


def load_or_train_text_tokenizer(profile, config: TextTokenizerConfig | None = None,
                                 data_path=None, root=None):
    """The profile's text tokenizer: Phi-1.5's (paper) or a BPE trained on the train split."""
    from .. import profiles

    profile = profiles.get_profile(profile)
    config = config or profile.text_tokenizer
    if config.pretrained:
        return load_text_tokenizer(config.pretrained)
    path, key = _data(profile.data, data_path)
    base = Path(root) if root is not None else runtime.cache_dir("text_tokenizer")
    out = base / f"bpe{config.vocab_size}-{key}-{_digest(config.__dict__)}"
    if (out / "tokenizer.json").is_file():
        return load_text_tokenizer(out)
    tok = train_text_tokenizer(text_corpus(path), config.vocab_size, config.min_frequency)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tok.save_pretrained(tmp)
    try:
        os.rename(tmp, out)          # atomic: readers never see a half-written folder
    except OSError:                  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return load_text_tokenizer(out)
