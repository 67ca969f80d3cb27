"""unif2ace-mini: a notebook-first reproduction of UniF²ace (arXiv 2503.08120)."""

__version__ = "0.1.0"
