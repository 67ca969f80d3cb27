"""The install path: one dependency list, mirrored by environment.yml; CPU torch pinned first."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0]
    return name.lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = _pyproject()["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    conda = {CONDA_NAMES.get(_name(d), _name(d)) for d in env["dependencies"] if isinstance(d, str)}
    conda -= {"python", "pip"}
    assert conda == wanted, f"only in environment.yml: {conda - wanted}; only in pyproject: {wanted - conda}"
    pip_section = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_section and any(".[dev]" in line for line in pip_section[0]["pip"]), (
        "environment.yml's pip section must install the package itself")


def test_extras_dev_and_gpu_exist():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {"dev", "gpu"} <= set(extras)
    assert {"pytest", "nbval", "papermill"} <= {_name(r) for r in extras["dev"]}


def test_makefile_pins_cpu_torch_before_the_package():
    makefile = (ROOT / "Makefile").read_text()
    assert "TORCH_SPEC   ?= torch==2.13.0" in makefile
    torch_step = makefile.index('pip install --quiet "$(TORCH_SPEC)"')
    package_step = makefile.index('pip install --quiet -e ".[$(EXTRAS)]"')
    assert torch_step < package_step, "torch must be installed (pinned) before the package"
    for target in ("reproduce:", "test:", "notebooks:", "lab:"):
        assert re.search(rf"^{target} setup", makefile, re.M), f"`make {target[:-1]}` must set itself up"


def test_ci_calls_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
