"""Stored notebooks must be checkable by nbval and fit to commit (DESIGN §11)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_NOTEBOOK_BYTES = 3_000_000
MAX_IMAGE_BYTES = 400_000
MAX_TEXT_CHARS = 20_000
FORBIDDEN_IN_OUTPUT = re.compile(r"/home/|/root/|/work/|/tmp/|/Users/|ipykernel_\d+")


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def test_there_are_notebooks_with_unique_ordered_numbers():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(set(numbers)) == len(numbers), f"duplicate notebook numbers: {numbers}"
    assert numbers[0] == "00"


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request) -> tuple[Path, dict]:
    return request.param, _load(request.param)


def test_first_code_cell_is_literal_parameters_with_quick_default(notebook):
    path, nb = notebook
    first = _code_cells(nb)[0]
    assert "parameters" in first["metadata"].get("tags", []), f"{path.name}: first code cell not tagged 'parameters'"
    tree = ast.parse(_source(first))
    names = {}
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant), (
            f"{path.name}: parameters cell must hold literal assignments only (papermill -p takes scalars)")
        names[stmt.targets[0].id] = stmt.value.value
    assert names.get("PROFILE") == "quick", f"{path.name}: PROFILE must default to 'quick'"
    assert "SEED" in names, f"{path.name}: parameters cell must set SEED"
    import papermill  # its parser skips a line it cannot read, and -p NAME then only warns
    inferred = set(papermill.inspect_notebook(str(path)))
    assert inferred == set(names), (
        f"{path.name}: papermill cannot read the parameters {sorted(set(names) - inferred)} "
        "(a quote or '=' in a trailing comment?)")


def test_execution_counts_run_one_to_n(notebook):
    # nbval only compares cells with a stored execution_count: without them it passes vacuously.
    path, nb = notebook
    counts = [c.get("execution_count") for c in _code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..N; refresh with `make notebooks`")


def test_no_widget_state_papermill_metadata_or_errors(notebook):
    path, nb = notebook
    assert "widgets" not in nb["metadata"], f"{path.name}: widget state is committed"
    assert "papermill" not in nb["metadata"], f"{path.name}: papermill metadata is committed"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "unif2ace-mini"
    for cell in nb["cells"]:
        assert "papermill" not in cell.get("metadata", {})
        assert "injected-parameters" not in cell.get("metadata", {}).get("tags", [])
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name}: stored error output"
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), (
                f"{path.name}: widget output stored; give widget cells a static fallback")


def test_outputs_are_bounded_and_free_of_machine_paths(notebook):
    path, nb = notebook
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    for cell in _code_cells(nb):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            png = data.get("image/png", "")
            assert len(png) * 3 // 4 < MAX_IMAGE_BYTES, f"{path.name}: an image output is too large"
            text = out.get("text", "") or data.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            assert len(text) < MAX_TEXT_CHARS, f"{path.name}: a text output is too long"
            if out.get("name") != "stderr":
                assert not FORBIDDEN_IN_OUTPUT.search(text), (
                    f"{path.name}: an output shows a machine-specific path: "
                    f"{FORBIDDEN_IN_OUTPUT.search(text).group(0)!r}")


def test_code_cells_are_not_empty(notebook):
    path, nb = notebook
    for cell in _code_cells(nb):
        assert _source(cell).strip(), f"{path.name}: empty code cell"


def test_training_cells_assert_and_ignore_output(notebook):
    # cells that train or time things print unstable numbers: they must opt out of comparison
    # and carry their own checks instead.
    path, nb = notebook
    for cell in _code_cells(nb):
        src = _source(cell)
        if "NBVAL_IGNORE_OUTPUT" in src and re.search(r"\btrain\w*\(", src):
            assert "assert" in src, f"{path.name}: a training cell has no assert:\n{src[:200]}"
