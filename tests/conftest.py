"""pytest configuration shared by the unit tests and the nbval notebook run."""

from __future__ import annotations


def pytest_collectstart(collector):
    # nbval compares stderr by default; warnings and library chatter there are not course output.
    # nbmake and other runners lack skip_compare, hence the guard.
    if getattr(collector, "fspath", None) is not None and str(collector.fspath).endswith(".ipynb"):
        if hasattr(collector, "skip_compare"):
            collector.skip_compare += ("stderr", "application/vnd.jupyter.widget-view+json",
                                       "text/html")
