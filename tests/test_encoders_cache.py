"""Encoders on a tiny SynthFaces build: held-out people, train-once caching, cached features."""

from __future__ import annotations

import importlib

import pytest
import torch

from unif2ace_mini import profiles
from unif2ace_mini.data import build_or_load, load_tensors
from unif2ace_mini.encoders import (ClipConfig, FaceEncoderConfig, clip_config, extract_features,
                                    face_encoder_config, features_path, held_out_identities,
                                    identity_training_set, load_feature_extractors,
                                    load_or_train_clip, load_or_train_face_encoder,
                                    pool_identity_ids, verification_set)
from unif2ace_mini.tokenizers.config import TextTokenizerConfig

DATA = profiles.DataConfig(image_size=32, supersample=2, n_identities=12, n_train=80, n_val=16,
                           n_test=16, n_compositional=4, vqa_per_image=1, seed=1)
PROFILE = profiles.Profile("tiny", data=DATA, text_tokenizer=TextTokenizerConfig(vocab_size=300))
CLIP = ClipConfig(patch_size=8, vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                  text_layers=1, text_heads=2, max_text_len=48, projection_dim=16, n_pool=0,
                  batch_size=16, max_steps=4, max_seconds=20.0)
FACE = FaceEncoderConfig(widths=(8, 16), layers=(1, 1), embedding_dim=16, holdout_fraction=0.34,
                         n_pool=0, batch_size=16, max_steps=4, max_seconds=20.0, max_pairs=200)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    return build_or_load(DATA, root=root / "data", workers=1), root


def test_pool_identities_match_the_renderer():
    build = importlib.import_module("unif2ace_mini.data.build")
    ids = pool_identity_ids(DATA, 6)
    assert ids.tolist() == [build._draw(DATA, build.POOL_STREAM, i, None)[0].identity_id
                            for i in range(6)]


def test_held_out_people_never_reach_training(tiny):
    path, _ = tiny
    held = held_out_identities(12, 0.34, seed=0)
    assert len(held) == 4 and torch.equal(held, held_out_identities(12, 0.34, seed=0))
    train = identity_training_set(path, DATA, 0, held)
    assert not torch.isin(train["identities"], held).any()
    assert train["classes"].max() + 1 == len(train["identities"])
    ids = load_tensors(path, "train")["identity_ids"]
    kept = ids[~torch.isin(ids, held)]
    assert torch.equal(train["identities"][train["classes"]], kept)
    faces = verification_set(path, held)
    assert torch.isin(faces["identity_ids"], held).all() and len(faces["images"]) > 8
    with pytest.raises(ValueError, match="leaves none"):
        held_out_identities(3, 0.99, seed=0)


def test_profile_configs_exist_and_match_the_data():
    for name in ("quick", "cpu", "gpu"):
        assert clip_config(name).image_size == profiles.get_profile(name).data.image_size
        assert face_encoder_config(name).image_size == profiles.get_profile(name).data.image_size
    assert clip_config("paper").pretrained and face_encoder_config("paper").pretrained
    with pytest.raises(ValueError, match="no clip config"):
        clip_config(PROFILE)
    with pytest.raises(ValueError, match="feature_tokens"):
        ClipConfig(feature_tokens="all")


def test_encoders_train_once_then_load_with_identical_features(tiny):
    path, root = tiny
    clip, clip_report = load_or_train_clip(PROFILE, CLIP, path, root, progress=False)
    face, face_report = load_or_train_face_encoder(PROFILE, FACE, path, root, progress=False)
    assert clip_report["history"]["steps"] == 4 and face_report["history"]["steps"] == 4
    zs = clip_report["zero_shot"]
    assert 0.0 <= zs["mean"] <= 1.0 and zs["chance_mean"] < 0.5
    assert set(face_report["verification"]) >= {"accuracy", "roc_auc", "n_pairs"}
    assert face_report["pixel_baseline"]["n_pairs"] == face_report["verification"]["n_pairs"]

    _, again = load_or_train_clip(PROFILE, CLIP, path, root)
    assert again == clip_report                                    # loaded, not retrained
    _, again = load_or_train_face_encoder(PROFILE, FACE, path, root)
    assert again == face_report

    feats = extract_features(PROFILE, "validation", CLIP, FACE, path, root)
    assert feats["clip"].shape == (16, 1 + 16, 32) and feats["clip"].dtype == torch.float32
    assert feats["face"].shape == (16, 1, 16)
    assert torch.allclose(feats["face"].norm(dim=-1), torch.ones(16, 1), atol=2e-3)
    assert all(torch.equal(feats[k], v) for k, v in
               extract_features(PROFILE, "validation", CLIP, FACE, path, root).items())

    # recompute from the *loaded* checkpoints: the same numbers as the freshly trained ones
    features_path(PROFILE, "validation", CLIP, FACE, root).unlink()
    again = extract_features(PROFILE, "validation", CLIP, FACE, path, root)
    assert all(torch.equal(feats[k], again[k]) for k in feats)
    extractors = load_feature_extractors(PROFILE, CLIP, FACE, path, root)
    images = load_tensors(path, "validation")["images"][:4]
    assert torch.allclose(extractors["face"](images), feats["face"][:4], atol=2e-3)


def test_extract_features_trains_missing_encoders_first(tiny, tmp_path):
    """From an empty cache, extract_features trains both encoders (with gradients) and then
    extracts: the MoE training and a notebook on a fresh machine start here."""
    path, _ = tiny
    feats = extract_features(PROFILE, "validation", CLIP, FACE, path, tmp_path)
    assert feats["clip"].shape == (16, 1 + 16, 32) and feats["face"].shape == (16, 1, 16)
    _, clip_report = load_or_train_clip(PROFILE, CLIP, path, tmp_path)       # now cached
    assert clip_report["history"]["steps"] == 4
    assert clip_report["history"]["stop_reason"] == "steps"
