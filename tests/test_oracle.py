"""The attribute oracle: it learns, it saves and loads, and it refuses a mismatched checkpoint."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from unif2ace_mini import profiles, runtime
from unif2ace_mini.data import (TAXONOMY, AttributeOracle, build, degrade, evaluate_oracle,
                                gaussian_blur, load_oracle, load_tensors, save_oracle, train_oracle)

DATA = profiles.DataConfig(image_size=32, supersample=2, n_identities=30, n_train=384, n_val=8,
                           n_test=128, n_compositional=8, seed=1)
ORACLE = profiles.OracleConfig(width=8, batch_size=64, lr=5e-3, n_pool=0, max_steps=150,
                               max_seconds=25.0)
PROFILE = profiles.Profile("tiny", data=DATA, oracle=ORACLE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runtime.setup(0, threads=1)   # tiny convs: a second thread only adds overhead
    path = build(DATA, tmp_path_factory.mktemp("oracle") / "faces", workers=1)
    model, history = train_oracle(PROFILE, path)
    return path, model, history


def test_oracle_learns_on_a_tiny_build(trained):
    path, model, history = trained
    losses = history["loss"]
    assert history["steps"] >= 30
    assert sum(losses[-10:]) / 10 < 0.85 * sum(losses[:10]) / 10
    test = load_tensors(path, "test")
    acc = evaluate_oracle(model, test["images"], test["labels"])
    chance = sum(1 / n for n in TAXONOMY.num_classes()) / len(TAXONOMY)
    assert acc["mean"] > chance + 0.05
    assert acc["background"] > 0.5   # big flat colours are learnt first


def test_predict_and_features_shapes(trained):
    path, model, _ = trained
    images = load_tensors(path, "test")["images"][:5]
    preds = model.predict(images)
    assert len(preds) == 5 and all(set(p) == set(TAXONOMY.names) for p in preds)
    assert all(p[g] in TAXONOMY.group(g).values for p in preds for g in p)
    feats = model.features(images)
    assert feats.shape == (5, model.heads.in_features)
    assert torch.allclose(model.features(images.float() / 127.5 - 1), feats, atol=1e-5)
    with pytest.raises(ValueError, match="32px"):
        model.features(torch.zeros(1, 3, 64, 64))


def test_save_load_round_trip_and_mismatch_errors(trained, tmp_path):
    path, model, _ = trained
    file = save_oracle(model, tmp_path / "oracle.safetensors", ORACLE)
    loaded = load_oracle(file, image_size=32)
    images = load_tensors(path, "test")["images"][:16]
    assert torch.equal(loaded.predict_labels(images), model.predict_labels(images))
    with pytest.raises(ValueError, match="reads 32px images, not 64px"):
        load_oracle(file, image_size=64)
    tensors, meta = runtime.load_safetensors(file)
    runtime.save_safetensors(tensors, tmp_path / "other.safetensors", {**meta, "taxonomy": "0" * 16})
    with pytest.raises(ValueError, match="taxonomy"):
        load_oracle(tmp_path / "other.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_oracle(tmp_path / "corrupt.safetensors")
    with pytest.raises(FileNotFoundError):
        load_oracle(tmp_path / "missing.safetensors")


def test_architecture_fits_every_supported_size():
    for size in (32, 64, 128):
        model = AttributeOracle(TAXONOMY.num_classes(), size, width=8)
        logits = model(torch.zeros(2, 3, size, size))
        assert [tuple(lg.shape) for lg in logits] == [(2, n) for n in TAXONOMY.num_classes()]
    with pytest.raises(ValueError, match="power of two"):
        AttributeOracle(TAXONOMY.num_classes(), 48)


def test_training_stops_on_the_time_limit(trained):
    path, _, _ = trained
    quick = PROFILE.replace(oracle=dataclasses.replace(ORACLE, max_steps=10_000, max_seconds=1.0))
    with pytest.warns(RuntimeWarning, match="oracle: the time limit"):
        _, history = train_oracle(quick, path)
    assert history["steps"] < 10_000 and history["seconds"] < 10


def test_gaussian_blur_matches_the_hand_computed_kernel():
    impulse = torch.zeros(2, 1, 9, 9)
    impulse[:, :, 4, 4] = 1.0
    out = gaussian_blur(impulse, torch.tensor([0.0, 1.0]))
    assert torch.allclose(out[0], impulse[0], atol=1e-6)           # sigma 0: unchanged
    t = torch.arange(-2.0, 3.0)                                     # radius ceil(2 sigma) = 2
    k = torch.exp(-t ** 2 / 2)
    k = k / k.sum()
    expected = torch.zeros(9, 9)
    expected[2:7, 2:7] = torch.outer(k, k)
    assert torch.allclose(out[1, 0], expected, atol=1e-6)
    flat = torch.full((1, 3, 8, 8), 0.3)                            # edge padding keeps a flat image
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.9])), flat, atol=1e-6)
    with pytest.raises(ValueError, match="one value per image"):
        gaussian_blur(flat, torch.tensor(0.9))


def test_degrade_touches_only_the_chosen_share():
    images = torch.rand(400, 3, 8, 8) * 2 - 1
    same = degrade(images, torch.Generator().manual_seed(0), 0.0, 1.0, 0.1)
    assert same is images
    a = degrade(images, torch.Generator().manual_seed(0), 0.5, 1.0, 0.1)
    b = degrade(images, torch.Generator().manual_seed(0), 0.5, 1.0, 0.1)
    assert torch.equal(a, b)                                        # the generator fixes it
    changed = (a != images).flatten(1).any(1).float().mean()
    assert 0.4 < changed < 0.6
    assert a.min() >= -1 and a.max() <= 1
    with pytest.raises(ValueError, match="share"):
        degrade(images, torch.Generator(), 1.5, 1.0, 0.1)
