"""Execute the course: every notebook on one profile, then a report; and refresh stored outputs.

`make reproduce` runs `execute_course` (papermill, into runs/<profile>/notebooks/) and
`write_report`. `make notebooks` runs `refresh_notebooks`, the only way stored outputs are made:
a fresh kernel per notebook, execution counts 1..N, no widget state or papermill metadata, so
nbval in CI compares against exactly what this command produced.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .runtime import atomic_write_bytes

KERNEL = "unif2ace-mini"
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
REPORT_TAG = "report"

# The same switches the Makefile exports, for direct `python -m unif2ace_mini ...` calls.
NOTEBOOK_ENV = {
    "UNIF2ACE_NO_PROGRESS": "1",
    "GOMP_SPINCOUNT": "10000",     # read at kernel start: short spins (see the Makefile)
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}


def course_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The ordered notebooks: NN_name.ipynb."""
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks named NN_*.ipynb in {folder}")
    return paths


@dataclass
class NotebookRun:
    source: Path
    executed: Path
    seconds: float
    error: str | None = None


def execute_course(out_dir: Path, profile: str = "quick", notebooks: list[Path] | None = None,
                   ) -> list[NotebookRun]:
    """Run each notebook with papermill (one fresh kernel each) into out_dir/notebooks/."""
    import papermill

    for key, value in NOTEBOOK_ENV.items():
        os.environ.setdefault(key, value)
    target = Path(out_dir) / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    runs = []
    for nb in notebooks or course_notebooks():
        executed = target / nb.name
        print(f"[reproduce] {nb.name} ...", flush=True)
        start = time.perf_counter()
        error = None
        try:
            papermill.execute_notebook(str(nb), str(executed), parameters={"PROFILE": profile},
                                       kernel_name=KERNEL, language="python", cwd=str(nb.parent),
                                       progress_bar=False, log_output=False)
        except Exception as err:  # papermill stores the failing notebook; keep going, report it
            error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
        seconds = time.perf_counter() - start
        print(f"[reproduce] {nb.name} {'FAILED' if error else 'ok'} in {seconds:.0f} s", flush=True)
        runs.append(NotebookRun(nb, executed, seconds, error))
    return runs


def _title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return "(untitled)"


def _report_cell_markdown(cell, figure_dir: Path, stem: str) -> list[str]:
    lines = []
    for k, output in enumerate(cell.get("outputs", [])):
        if output.output_type == "stream" and output.name == "stdout":
            lines += ["```", output.text.rstrip(), "```"]
        elif output.output_type in ("execute_result", "display_data"):
            data = output.get("data", {})
            if "image/png" in data:
                png = figure_dir / f"{stem}_{k}.png"
                atomic_write_bytes(png, base64.b64decode(data["image/png"]))
                lines.append(f"![{stem}](figures/{png.name})")
            elif "text/markdown" in data:
                lines.append(data["text/markdown"])
            elif "text/plain" in data:
                lines += ["```", data["text/plain"].rstrip(), "```"]
    return lines


def write_report(runs: list[NotebookRun], out_dir: Path, profile: str) -> Path:
    """Collect each notebook's `report`-tagged cells (text and figures) into report.md."""
    import nbformat

    out_dir = Path(out_dir)
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    total = sum(r.seconds for r in runs)
    lines = [f"# unif2ace-mini: course report ({profile} profile)", "",
             f"{len(runs)} notebooks, {sum(r.error is None for r in runs)} succeeded, "
             f"{total / 60:.1f} min in total.", "",
             "| notebook | status | seconds |", "| --- | --- | --- |"]
    lines += [f"| {r.source.name} | {'FAILED: ' + r.error if r.error else 'ok'} | {r.seconds:.0f} |"
              for r in runs]
    for r in runs:
        if not r.executed.exists():
            continue
        nb = nbformat.read(r.executed, as_version=4)
        lines += ["", f"## {r.source.stem}: {_title(nb)}", ""]
        tagged = [c for c in nb.cells if REPORT_TAG in c.get("metadata", {}).get("tags", [])]
        for i, cell in enumerate(tagged):
            lines += _report_cell_markdown(cell, figure_dir, f"{r.source.stem}_{i}") + [""]
    path = out_dir / "report.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    summary = {"profile": profile, "notebooks": [
        {"name": r.source.name, "seconds": round(r.seconds, 1), "error": r.error} for r in runs]}
    atomic_write_bytes(out_dir / "runs.json", (json.dumps(summary, indent=2) + "\n").encode())
    return path


def clean_notebook(nb) -> None:
    """Drop what must never be committed: widget state, papermill metadata, cell timings."""
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL, "language": "python"}
    for cell in nb.cells:
        for key in ("papermill", "execution", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)


def refresh_notebooks(paths: list[Path] | None = None, timeout: int = 1800) -> None:
    """Re-execute notebooks in place on their default (quick) parameters: the stored outputs."""
    import nbformat
    from nbclient import NotebookClient

    for key, value in NOTEBOOK_ENV.items():
        os.environ.setdefault(key, value)
    for path in paths or course_notebooks():
        path = Path(path)
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                if not cell.source.strip():
                    raise ValueError(f"{path.name}: empty code cell (it would get no execution count)")
                cell.outputs, cell.execution_count = [], None
        start = time.perf_counter()
        print(f"[refresh] {path.name} ...", flush=True)
        NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, store_widget_state=False,
                       record_timing=False, resources={"metadata": {"path": str(path.parent)}}
                       ).execute()
        clean_notebook(nb)
        atomic_write_bytes(path, nbformat.writes(nb).encode())
        print(f"[refresh] {path.name} done in {time.perf_counter() - start:.0f} s", flush=True)
