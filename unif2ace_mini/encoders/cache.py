"""Trained encoders and their features in the artifact cache: trained once per (data, config).

Notebook 06 and the MoE training call these, so each runs standalone (DESIGN §10): the first
call trains, evaluates and saves; later calls load, and both return the same model and report.

    load_or_train_clip(profile)          -> (CLIPModel, report: history, zero_shot, retrieval)
    load_or_train_face_encoder(profile)  -> (IResNet, report: history, verification)
    load_feature_extractors(profile)     -> {"clip": ClipImageFeatures, "face": FaceIdentityFeatures}
    extract_features(profile, split)     -> {"clip": (N, n_tok, D), "face": (N, 1, D)} float32

Cache keys hold the dataset key (its config, taxonomy and renderer code), the encoder config and
a format version, so changing any of them retrains instead of loading a stale model. Features are
stored as float16 (half the disk; far below the encoders' own precision) and always returned as
the float32 of those stored values, so a fresh and a cached call give identical tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import profiles, runtime
from ..data.dataset import load_split, load_tensors
from .clip import TextBatcher, build_clip_model, encode_images, encode_texts, train_clip
from .config import ClipConfig, FaceEncoderConfig, clip_config, face_encoder_config
from .data import clip_training_set, held_out_identities, identity_training_set, verification_set
from .features import (ClipImageFeatures, FaceIdentityFeatures, load_face_backbone,
                       load_face_model, load_pretrained_clip, save_face_model)
from .identity import build_face_encoder, embed_faces, train_face_encoder
from .verification import pixel_embeddings, verification_report
from .zeroshot import retrieval_recall, zero_shot_accuracy

FORMAT_VERSION = 1
REPORT_NAME = "report.json"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _data(profile: profiles.Profile, data_path) -> tuple[Path, str]:
    from ..data.build import build_or_load, cache_key

    path = Path(data_path) if data_path is not None else build_or_load(profile.data)
    return path, cache_key(profile.data)


@contextmanager
def _quiet_transformers():
    """transformers draws its own bars ("Loading weights", "Writing model shards"): they would
    land in notebook outputs, so they are off while we load or save."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _json(report: dict) -> dict:
    """The report as it reads back from disk (tuples become lists), so fresh == cached."""
    return json.loads(json.dumps(report))


def _base(root, kind: str) -> Path:
    return (Path(root) / kind) if root is not None else runtime.cache_dir(kind)


# --- CLIP ------------------------------------------------------------------------------------
def clip_dir(profile, config: ClipConfig | None = None, root=None) -> Path:
    """Where the profile's trained CLIP lives (a save_pretrained folder plus report.json)."""
    profile = profiles.get_profile(profile)
    cfg = config or clip_config(profile)
    from ..data.build import cache_key
    key = _digest([cfg.to_dict(), profile.text_tokenizer.__dict__, FORMAT_VERSION])
    return _base(root, "encoders") / f"clip-{cache_key(profile.data)}-{key}"


def load_clip(path: str | os.PathLike):
    """(CLIPModel in eval mode, its text tokenizer) from a folder written by load_or_train_clip."""
    from transformers import CLIPModel

    from ..tokenizers.text import load_text_tokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no trained CLIP in {path}")
    with _quiet_transformers():
        return CLIPModel.from_pretrained(path).eval(), load_text_tokenizer(path)


def evaluate_clip(model, tokenizer, data_path, split: str = "validation") -> dict:
    """Zero-shot attribute accuracy and caption retrieval recall on one split."""
    t = load_tensors(data_path, split)
    captions = [r["caption"] for r in load_split(data_path, split)]
    batcher = TextBatcher.for_model(model, tokenizer)
    image_emb = encode_images(model, t["images"])                               # (N, proj)
    return {"split": split,
            "zero_shot": zero_shot_accuracy(image_emb, t["labels"],
                                            lambda texts: encode_texts(model, batcher, texts)),
            "retrieval": retrieval_recall(image_emb, encode_texts(model, batcher, captions))}


def load_or_train_clip(profile, config: ClipConfig | None = None, data_path=None, root=None,
                       progress: bool | None = None):
    """(CLIPModel, report) for a profile: from the cache, or trained on its train split (+ pool).

    Paper profile (config.pretrained set): the pretrained CLIPModel and an empty report.
    """
    from transformers import CLIPModel

    from ..tokenizers.cache import load_or_train_text_tokenizer

    profile = profiles.get_profile(profile)
    cfg = config or clip_config(profile)
    if cfg.pretrained:
        with _quiet_transformers():
            return CLIPModel.from_pretrained(cfg.pretrained).eval(), {"pretrained": cfg.pretrained}
    out = clip_dir(profile, cfg, root)
    if (out / REPORT_NAME).is_file():
        return load_clip(out)[0], json.loads((out / REPORT_NAME).read_text())

    path, _ = _data(profile, data_path)
    tok_root = Path(root) / "text_tokenizer" if root is not None else None
    tokenizer = load_or_train_text_tokenizer(profile, data_path=path, root=tok_root)
    runtime.seed_everything(cfg.seed)
    model = build_clip_model(cfg, tokenizer).to(runtime.get_device(profile.device))
    history = train_clip(model, tokenizer, clip_training_set(path, profile.data, cfg.n_pool),
                         cfg, profile.data, progress)
    report = {"history": history, "config": cfg.to_dict(),
              "parameters": sum(p.numel() for p in model.parameters())}
    report = _json(report | evaluate_clip(model, tokenizer, path, cfg.eval_split))

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet_transformers():
        model.save_pretrained(tmp)                  # safetensors (transformers' default)
    tokenizer.save_pretrained(tmp)
    runtime.atomic_write_bytes(tmp / REPORT_NAME, json.dumps(report).encode())
    try:
        os.rename(tmp, out)                         # atomic: readers never see half a folder
    except OSError:                                 # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return model, report


# --- identity encoder ------------------------------------------------------------------------
def face_encoder_path(profile, config: FaceEncoderConfig | None = None, root=None) -> Path:
    profile = profiles.get_profile(profile)
    cfg = config or face_encoder_config(profile)
    from ..data.build import cache_key
    key = _digest([cfg.to_dict(), FORMAT_VERSION])
    name = f"face-{cache_key(profile.data)}-{key}.safetensors"
    return _base(root, "encoders") / name


def evaluate_face_encoder(backbone, data_path, held_out: torch.Tensor,
                          cfg: FaceEncoderConfig) -> dict:
    """Verification on the held-out people's images, next to a raw-pixel baseline."""
    faces = verification_set(data_path, held_out)
    ids = faces["identity_ids"]
    return {"verification": verification_report(embed_faces(backbone, faces["images"]), ids,
                                                cfg.max_pairs, cfg.seed),
            "pixel_baseline": verification_report(pixel_embeddings(faces["images"]), ids,
                                                  cfg.max_pairs, cfg.seed)}


def load_or_train_face_encoder(profile, config: FaceEncoderConfig | None = None, data_path=None,
                               root=None, progress: bool | None = None):
    """(backbone, report): an ArcFace-trained IResNet from the cache, or trained now.

    Paper profile (config.pretrained set): the local face model's backbone, empty report.
    """
    profile = profiles.get_profile(profile)
    cfg = config or face_encoder_config(profile)
    if cfg.pretrained:
        face = load_face_model(cfg.pretrained, profile.data.image_size, cfg.pretrained_size)
        return face.backbone, {"pretrained": cfg.pretrained}
    file = face_encoder_path(profile, cfg, root)
    report_file = file.with_suffix(".json")
    if file.is_file() and report_file.is_file():
        return load_face_backbone(file)[0], json.loads(report_file.read_text())

    path, _ = _data(profile, data_path)
    held = held_out_identities(profile.data.n_identities, cfg.holdout_fraction, cfg.seed)
    runtime.seed_everything(cfg.seed)
    backbone = build_face_encoder(cfg).to(runtime.get_device(profile.device))
    faces = identity_training_set(path, profile.data, cfg.n_pool, held)
    history = train_face_encoder(backbone, faces, cfg, progress)
    report = {"history": history, "config": cfg.to_dict(),
              "parameters": sum(p.numel() for p in backbone.parameters()),
              "held_out_identities": held.tolist()}
    report = _json(report | evaluate_face_encoder(backbone, path, held, cfg))
    save_face_model(backbone, file, extra={"config": cfg.to_dict()})
    runtime.atomic_write_bytes(report_file, json.dumps(report).encode())   # last: "done"
    return backbone, report


# --- feature extractors and cached features --------------------------------------------------
def clip_extractor(profile, config: ClipConfig | None = None, data_path=None, root=None,
                   progress: bool | None = None) -> ClipImageFeatures:
    profile = profiles.get_profile(profile)
    cfg = config or clip_config(profile)
    device = runtime.get_device(profile.device)
    if cfg.pretrained:
        with _quiet_transformers():
            return load_pretrained_clip(cfg.pretrained, profile.data.image_size,
                                        cfg.feature_tokens, device)
    model, _ = load_or_train_clip(profile, cfg, data_path, root, progress)
    return ClipImageFeatures(model.to(device), profile.data.image_size, cfg.feature_tokens)


def face_extractor(profile, config: FaceEncoderConfig | None = None, data_path=None, root=None,
                   progress: bool | None = None) -> FaceIdentityFeatures:
    profile = profiles.get_profile(profile)
    cfg = config or face_encoder_config(profile)
    device = runtime.get_device(profile.device)
    if cfg.pretrained:
        return load_face_model(cfg.pretrained, profile.data.image_size, cfg.pretrained_size, device)
    backbone, _ = load_or_train_face_encoder(profile, cfg, data_path, root, progress)
    return FaceIdentityFeatures(backbone.to(device), profile.data.image_size,
                                backbone.image_size, backbone.embedding_dim)


def load_feature_extractors(profile, clip: ClipConfig | None = None,
                            face: FaceEncoderConfig | None = None, data_path=None, root=None,
                            progress: bool | None = None) -> dict:
    """{"clip": ClipImageFeatures, "face": FaceIdentityFeatures} (trained first if needed)."""
    return {"clip": clip_extractor(profile, clip, data_path, root, progress),
            "face": face_extractor(profile, face, data_path, root, progress)}


def features_path(profile, split: str, clip: ClipConfig | None = None,
                  face: FaceEncoderConfig | None = None, root=None) -> Path:
    profile = profiles.get_profile(profile)
    clip, face = clip or clip_config(profile), face or face_encoder_config(profile)
    models = [clip_dir(profile, clip, root).name, face_encoder_path(profile, face, root).name,
              clip.feature_tokens, FORMAT_VERSION]
    return _base(root, "encoders") / f"features-{split}-{_digest(models)}.safetensors"


def extract_features(profile, split: str, clip: ClipConfig | None = None,
                     face: FaceEncoderConfig | None = None, data_path=None, root=None,
                     batch_size: int = 256, progress: bool | None = None
                     ) -> dict[str, torch.Tensor]:
    """{"clip": (N, n_tokens, D), "face": (N, 1, D)} float32 for every image of `split`, cached.

    Rows follow the split's order (load_tensors / load_split), so row i belongs to record i.
    Trains the encoders first if they are not cached (with gradients: only the extraction below
    runs under no_grad).
    """
    profile = profiles.get_profile(profile)
    file = features_path(profile, split, clip, face, root)
    if file.is_file():
        tensors, _ = runtime.load_safetensors(file)
        return {k: v.float() for k, v in tensors.items()}
    path, _ = _data(profile, data_path)
    images = load_tensors(path, split)["images"]                                # (N, 3, H, W)
    extractors = load_feature_extractors(profile, clip, face, path, root, progress)
    out = {}
    with torch.no_grad():
        for name, extractor in extractors.items():
            parts = [extractor(images[i:i + batch_size]).cpu()
                     for i in range(0, len(images), batch_size)]
            out[name] = torch.cat(parts).half()
    runtime.save_safetensors(out, file, {"split": split, "n": len(images),
                                         "dims": {k: list(v.shape[1:]) for k, v in out.items()}})
    return {k: v.float() for k, v in out.items()}
