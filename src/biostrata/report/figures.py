"""The one way biostrata draws a figure: matplotlib's Agg backend (no display needed), a PNG written
atomically, the figure closed even when drawing fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from biostrata.io import atomic_write

__all__ = ["figure", "COLORS"]

#: One colour per model or arm, the same in every picture.
COLORS = {"cnn": "#4C72B0", "hcnn-s": "#C44E52", "hcnn-m": "#55A868",
          "random": "#4C72B0", "finetune": "#C44E52", "frozen": "#55A868"}  # fmt: skip


@contextmanager
def figure(path: str | Path | None, nrows: int = 1, ncols: int = 1, dpi: int = 120, **subplots: Any) -> Iterator:
    """``with figure(path, 1, 2, figsize=(8, 3)) as (fig, axes): ...`` draws a new figure
    (``plt.subplots(nrows, ncols, **subplots)``), then lays it out and writes it to ``path`` as a PNG
    (atomically; not at all when ``path`` is None or drawing raised) and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        if path is not None:
            atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)
