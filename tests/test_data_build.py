"""SynthFaces on disk: determinism, the imagefolder schema, splits, loaders and bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from unif2ace_mini import profiles
from unif2ace_mini.__main__ import main
from unif2ace_mini.data import (SPLITS, TAXONOMY, SynthFacesDataset, build, build_or_load,
                                load_split, load_tensors)

TINY = profiles.DataConfig(image_size=32, supersample=2, n_identities=20, n_train=64, n_val=16,
                           n_test=16, n_compositional=16, seed=3)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build(TINY, tmp_path_factory.mktemp("tiny") / "faces", workers=1)


def test_same_seed_same_bytes_whatever_the_workers(tiny, tmp_path):
    again = build(TINY, tmp_path / "again", workers=2)
    assert _digest(tiny) == _digest(again)
    other = build(dataclasses.replace(TINY, seed=4, n_train=8, n_val=2, n_test=2,
                                      n_compositional=2), tmp_path / "other", workers=1)
    assert _digest(other)["train/images/000000.png"] != _digest(tiny)["train/images/000000.png"]


def test_imagefolder_loads_every_split(tiny, monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    datasets.disable_progress_bars()
    ds = datasets.load_dataset("imagefolder", data_dir=str(tiny))
    assert {k: len(v) for k, v in ds.items()} == {"train": 64, "validation": 16, "test": 16}
    row = ds["train"][0]
    assert set(row) == {"image", "id", "identity_id", "attributes", "caption", "vqa"}
    assert row["image"].size == (32, 32) and set(row["attributes"]) == set(TAXONOMY.names)
    assert set(row["vqa"][0]) == {"question", "answer", "group", "type"}
    comp = datasets.load_dataset("imagefolder", data_files={"compositional": f"{tiny}/compositional/**"})
    assert len(comp["compositional"]) == 16
    every = datasets.load_dataset(str(tiny))            # the card's YAML lists all four splits
    assert set(every) == set(SPLITS)


def test_metadata_schema_and_taxonomy_file(tiny):
    records = load_split(tiny, "train")
    assert len(records) == 64 and records[0]["id"] == "train-000000"
    for r in records:
        assert Path(r["image_path"]).is_file() and r["file_name"].startswith("images/")
        TAXONOMY.validate(r["attributes"])
        assert 0 <= r["identity_id"] < TINY.n_identities and len(r["vqa"]) == TINY.vqa_per_image
    saved = json.loads((tiny / "taxonomy.json").read_text())
    assert len(saved["groups"]) == len(TAXONOMY) and saved["compositional_pairs"]


def test_compositional_split_holds_pairs_never_seen_in_train(tiny):
    for split in ("train", "validation", "test"):
        assert all(TAXONOMY.held_out_pairs(r["attributes"]) == [] for r in load_split(tiny, split))
    comp = load_split(tiny, "compositional")
    assert [TAXONOMY.held_out_pairs(r["attributes"]) for r in comp] == \
        [[i % len(TAXONOMY.compositional_pairs)] for i in range(len(comp))]


def test_torch_dataset_and_tensor_fast_path_agree(tiny):
    ds = SynthFacesDataset(tiny, "validation")
    item = ds[3]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["labels"].shape == (len(TAXONOMY),) and isinstance(item["caption"], str)
    t = load_tensors(tiny, "validation")
    assert t["images"].shape == (16, 3, 32, 32) and t["images"].dtype == torch.uint8
    assert torch.equal(t["labels"], ds.labels)
    assert torch.allclose(t["images"][3].float() / 127.5 - 1, item["image"])
    flipped = SynthFacesDataset(tiny, "validation", transform=lambda x: -x)
    assert torch.equal(flipped[3]["image"], -item["image"])


def test_tensor_cache_is_rebuilt_when_missing(tiny, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    (copy / "cache" / "test.safetensors").unlink()
    assert torch.equal(load_tensors(copy, "test")["images"], load_tensors(tiny, "test")["images"])
    assert (copy / "cache" / "test.safetensors").is_file()


def test_build_or_load_reuses_complete_builds_and_redoes_broken_ones(tmp_path):
    cfg = dataclasses.replace(TINY, n_train=4, n_val=1, n_test=1, n_compositional=1)
    path = build_or_load(cfg, root=tmp_path)
    assert (path / "COMPLETE").is_file()
    stamp = (path / "COMPLETE").stat().st_mtime_ns
    assert build_or_load(cfg, root=tmp_path) == path and (path / "COMPLETE").stat().st_mtime_ns == stamp
    (path / "COMPLETE").unlink()                   # an interrupted build is rebuilt
    assert build_or_load(cfg, root=tmp_path) == path and (path / "COMPLETE").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp folders left


def test_bad_input_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"unsupported image size 48.*\[32, 64, 128, 256\]"):
        build(dataclasses.replace(TINY, image_size=48), tmp_path / "x")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="not writable"):
        build(TINY, blocker / "sub")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_split(tmp_path / "nowhere", "train")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="metadata.jsonl"):
        load_split(tmp_path / "empty", "train")
    with pytest.raises(ValueError, match=r"unknown split 'valid'.*validation"):
        load_split(tiny, "valid")
    with pytest.raises(ValueError, match="unknown profile"):
        build_or_load("huge")


def test_cli_builds_with_profile_defaults_and_overrides(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "build", "--profile", "quick", "--n", "6", "--size", "32", "--seed", "1",
                 "--out", str(out), "--workers", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"] == {"train": 6, "validation": 6, "test": 6, "compositional": 6}
    assert len(load_split(out, "train")) == 6
    assert main(["data", "build", "--size", "48", "--out", str(tmp_path / "bad")]) == 2
    assert "unsupported image size" in capsys.readouterr().err
