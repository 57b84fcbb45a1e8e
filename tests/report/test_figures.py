"""Tests of biostrata.report.figures: the one figure helper."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import pytest

from biostrata.report.figures import figure


def test_figure_writes_a_png_and_closes_it(tmp_path: Path) -> None:
    before = len(plt.get_fignums())
    with figure(tmp_path / "a" / "f.png", 1, 2, figsize=(4, 2), dpi=50) as (fig, axes):
        axes[0].plot([0, 1], [1, 0])
    assert matplotlib.image.imread(tmp_path / "a" / "f.png").shape[:2] == (100, 200)
    assert len(plt.get_fignums()) == before
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f.png"]  # no temporary file left


def test_a_failed_drawing_writes_nothing_and_still_closes(tmp_path: Path) -> None:
    before = len(plt.get_fignums())
    with pytest.raises(ValueError, match="bad data"), figure(tmp_path / "g.png") as (_, ax):
        raise ValueError("bad data")
    assert not (tmp_path / "g.png").exists() and len(plt.get_fignums()) == before
