from __future__ import annotations

import os

import pytest
import torch

from unif2ace_mini import profiles, runtime


def test_seed_fixes_every_random_choice():
    runtime.seed_everything(3)
    a = torch.rand(4), __import__("random").random(), __import__("numpy").random.rand()
    runtime.seed_everything(3)
    b = torch.rand(4), __import__("random").random(), __import__("numpy").random.rand()
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)


def test_setup_pins_threads_and_picks_a_device(monkeypatch):
    monkeypatch.delenv("UNIF2ACE_THREADS", raising=False)
    device = runtime.setup(0, threads=1)
    assert torch.get_num_threads() == 1 and device.type in ("cpu", "cuda", "mps")
    runtime.set_threads(2)
    with pytest.raises(ValueError, match="thread"):
        runtime.set_threads(0)


def test_explicit_missing_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="cuda"):
        runtime.get_device("cuda")


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "c"))
    version = runtime.ARTIFACT_VERSIONS["oracle"]
    assert runtime.cache_dir("oracle", "b") == tmp_path / "c" / f"oracle-v{version}" / "b"
    assert (tmp_path / "c" / f"oracle-v{version}" / "b").is_dir()


def test_a_recipe_version_bump_moves_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path))
    before = runtime.cache_dir("text_tokenizer")
    monkeypatch.setitem(runtime.ARTIFACT_VERSIONS, "text_tokenizer",
                        runtime.ARTIFACT_VERSIONS["text_tokenizer"] + 1)
    assert runtime.cache_dir("text_tokenizer") != before  # the old artifact is never found again


def test_every_cached_kind_has_a_recipe_version():
    import re
    from pathlib import Path

    package = Path(runtime.__file__).parent
    sources = [*package.rglob("*.py"), *(package.parent / "notebooks").glob("*.ipynb"),
               *(package.parent / "benchmarks").glob("*.py")]
    used = {m for f in sources
            for m in re.findall(r'cache_dir\(\s*\\?"(\w+)\\?"', f.read_text())}
    used |= set(re.findall(r'_base\(root, "(\w+)"\)', (package / "encoders" / "cache.py").read_text()))
    assert "moe_ablation" in used                    # notebook 06's (JSON-escaped quotes)
    assert used <= set(runtime.ARTIFACT_VERSIONS), used - set(runtime.ARTIFACT_VERSIONS)
    with pytest.raises(ValueError, match="unknown artifact kind"):
        runtime.cache_dir("no_such_kind")


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("UNIF2ACE_NO_PROGRESS", "1")
    assert runtime.progress_disabled()
    monkeypatch.setenv("UNIF2ACE_NO_PROGRESS", "0")
    assert not runtime.progress_disabled()


def test_merge_json_keeps_what_others_stored(tmp_path):
    import json

    path = tmp_path / "results" / "r.json"
    assert runtime.merge_json(path, "a", {"x": 1}) == {"a": {"x": 1}}       # folder created
    path.write_text(json.dumps({"a": {"x": 1}, "b": 2}))                    # another process
    assert runtime.merge_json(path, "a", 3) == {"a": 3, "b": 2}
    assert json.loads(path.read_text()) == {"a": 3, "b": 2}
    assert path.read_text().endswith("}\n") and list(path.parent.iterdir()) == [path]


def test_safetensors_round_trip_is_atomic_and_keeps_metadata(tmp_path):
    path = tmp_path / "ckpt" / "w.safetensors"
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2, dtype=torch.long)}
    runtime.save_safetensors(tensors, path, metadata={"config": {"d": 3}, "step": 7})
    loaded, meta = runtime.load_safetensors(path)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert meta == {"config": {"d": 3}, "step": 7}
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"], "temp file left behind"


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    runtime.save_safetensors({"w": torch.ones(2)}, path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        runtime.save_safetensors({"w": torch.zeros(2)}, path)
    assert torch.equal(runtime.load_safetensors(path)[0]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        runtime.load_safetensors(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        runtime.load_safetensors(bad)


def test_profiles_are_frozen_and_named():
    assert set(profiles.PROFILES) == {"quick", "cpu", "gpu", "paper"}
    quick = profiles.get_profile("quick")
    with pytest.raises(Exception):
        quick.name = "x"  # frozen
    assert profiles.get_profile(quick) is quick
    with pytest.raises(ValueError, match="unknown profile 'fast'.*quick"):
        profiles.get_profile("fast")
    # the profiles grow in size from quick to paper
    sizes = [profiles.get_profile(n).data.n_train for n in ("quick", "cpu", "gpu", "paper")]
    assert sizes == sorted(sizes)


def test_a_time_limited_run_warns_and_a_full_one_does_not():
    import warnings

    with pytest.warns(RuntimeWarning, match=r"oracle: the time limit \(9 s\) stopped .* 3 of 10"):
        runtime.warn_if_time_limited("oracle", 3, 10, 9.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runtime.warn_if_time_limited("oracle", 10, 10, 9.0)


def test_machine_name_says_cpu_and_cores():
    name = runtime.machine_name()
    assert name.endswith(f", {os.cpu_count()} cores") and len(name) > len(", 1 cores")
