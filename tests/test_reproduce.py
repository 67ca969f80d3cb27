"""The course runner: papermill execution, the report, and the stored-output refresh."""

from __future__ import annotations

import json

import nbformat
import pytest

from unif2ace_mini import reproduce


def _tiny_notebook(path, extra_source="print('answer', 6 * 7)"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Tiny notebook"),
        nbformat.v4.new_code_cell('PROFILE = "quick"\nSEED = 0', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(extra_source, metadata={"tags": ["report"]}),
        nbformat.v4.new_code_cell(
            "import matplotlib.pyplot as plt\nplt.plot([0, 1]); plt.title(PROFILE)\nplt.show()",
            metadata={"tags": ["report"]}),
    ]
    nb.metadata["widgets"] = {"state": {}}
    nbformat.write(nb, path)
    return path


def test_execute_course_and_report(tmp_path):
    source = _tiny_notebook(tmp_path / "00_tiny.ipynb")
    runs = reproduce.execute_course(tmp_path / "out", profile="cpu", notebooks=[source])
    assert [r.error for r in runs] == [None]
    report = reproduce.write_report(runs, tmp_path / "out", "cpu").read_text()
    assert "## 00_tiny: Tiny notebook" in report and "answer 42" in report
    assert "![00_tiny_1](figures/00_tiny_1_0.png)" in report
    assert (tmp_path / "out" / "figures" / "00_tiny_1_0.png").stat().st_size > 1000
    executed = nbformat.read(tmp_path / "out" / "notebooks" / "00_tiny.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "cpu" in injected[0].source
    summary = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert summary["notebooks"][0]["error"] is None


def test_a_failing_notebook_is_reported_not_hidden(tmp_path):
    source = _tiny_notebook(tmp_path / "01_bad.ipynb", "assert False, 'learning regressed'")
    runs = reproduce.execute_course(tmp_path / "out", notebooks=[source])
    assert runs[0].error and "learning regressed" in runs[0].error
    report = reproduce.write_report(runs, tmp_path / "out", "quick").read_text()
    assert "FAILED" in report


def test_refresh_writes_counts_one_to_n_and_no_widget_state(tmp_path):
    path = _tiny_notebook(tmp_path / "00_tiny.ipynb")
    reproduce.refresh_notebooks([path])
    nb = nbformat.read(path, as_version=4)
    assert [c.execution_count for c in nb.cells if c.cell_type == "code"] == [1, 2, 3]
    assert "widgets" not in nb.metadata and nb.metadata.kernelspec.name == reproduce.KERNEL
    assert nb.cells[2].outputs[0].text == "answer 42\n"


def test_refresh_rejects_empty_code_cells(tmp_path):
    path = _tiny_notebook(tmp_path / "00_tiny.ipynb", extra_source="   ")
    with pytest.raises(ValueError, match="empty code cell"):
        reproduce.refresh_notebooks([path])


def test_reproduce_rejects_an_unknown_profile_before_running(capsys):
    from unif2ace_mini.__main__ import main

    assert main(["reproduce", "--profile", "laptop", "--out", "/nonexistent/never-written"]) == 2
    assert "unknown profile 'laptop'" in capsys.readouterr().err
