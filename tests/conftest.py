"""pytest configuration shared by the unit tests and the nbval notebook run."""

from __future__ import annotations

import pytest


def pytest_collectstart(collector):
    # nbval compares stderr by default; warnings and library chatter there are not course output.
    # nbmake and other runners lack skip_compare, hence the guard.
    if getattr(collector, "fspath", None) is not None and str(collector.fspath).endswith(".ipynb"):
        if hasattr(collector, "skip_compare"):
            collector.skip_compare += ("stderr", "application/vnd.jupyter.widget-view+json",
                                       "text/html")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: two threads on shared cores can be 10-20x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
