"""Tests of biostrata.report.plots: CKA heatmaps, the demo's and the conditions study's pictures."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd

from biostrata.report.plots import plot_cka_heatmap, plot_conditions, plot_demo


def test_cka_heatmap_on_its_own_figure_or_on_given_axes(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(np.eye(3), index=list("abc"), columns=list("abc"))
    plot_cka_heatmap(frame, tmp_path / "h.png", title="t")
    assert matplotlib.image.imread(tmp_path / "h.png").ndim == 3
    fig, ax = plt.subplots()
    assert plot_cka_heatmap(frame - 0.5, ax=ax, diverging=True) is ax
    assert ax.images[0].get_clim() == (-0.5, 0.5)  # symmetric around 0 for a difference
    plt.close(fig)


def test_demo_and_conditions_pictures(tmp_path: Path) -> None:
    demo = pd.DataFrame({"model": ["cnn", "hcnn-s"], "test_mcc": [0.5, 0.6], "relative_delta": [0.4, 0.2]})
    plot_demo(demo, tmp_path / "demo.png")
    rows = [{"factor": "base", "shape": "yule", "height": 1.0, "gain": 0.1, "gain_sd": 0.01, "delta_cnn": 0.4,
             "delta_hcnn": 0.3}, {"factor": "shape", "shape": "balanced", "height": 1.0, "gain": -0.1,
             "gain_sd": np.nan, "delta_cnn": 0.5, "delta_hcnn": 0.2}]  # fmt: skip
    plot_conditions(pd.DataFrame(rows), ["shape"], lambda f: lambda col: col, tmp_path / "c.png")
    assert all(matplotlib.image.imread(tmp_path / n).ndim == 3 for n in ("demo.png", "c.png"))
