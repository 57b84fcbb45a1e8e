"""Bar charts of a results table: one PNG per suite.

For each task, one bar per model (height = mean score x100, error bar = std over seeds) and a
dashed or dotted line per published model (Zhou et al. 2024, Table 4) where a published number exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.data.benchmarks import SUITES
from biostrata.io import atomic_write
from biostrata.report.tables import metric_note, models_in, published_in

_PUBLISHED_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))


def plot_suite(table: pd.DataFrame, path: str | Path) -> Path:
    """Draw the rows of one suite of ``results_table`` into a PNG at ``path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in models_in(table) if table[f"{m} seeds"].sum() > 0]
    published = [p for p in published_in(table) if table[p].notna().any()]
    tasks = list(table["task"])
    x = np.arange(len(tasks))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(tasks) * (len(models) + 1) + 3), 4.5))
    try:
        for i, m in enumerate(models):
            means = table[f"{m} mean"].to_numpy(dtype=float)
            stds = table[f"{m} std"].to_numpy(dtype=float)  # NaN (one seed): no error bar drawn
            ax.bar(x - 0.4 + width * (i + 0.5), means, width, yerr=stds, capsize=2, label=m)
        for style, p in zip(_PUBLISHED_STYLES, published):
            values = table[p].to_numpy(dtype=float)
            ax.hlines(values, x - 0.45, x + 0.45, colors="black", linestyles=style, label=f"{p} (published)")
        suite = str(table["suite"].iloc[0])
        ax.set_title(f"{SUITES[suite].title if suite in SUITES else suite}: mean ± std over seeds")
        ax.set_ylabel(metric_note(table), fontsize="small")
        ax.set_xticks(x, tasks, rotation=45, ha="right", rotation_mode="anchor")
        values = table[[f"{m} mean" for m in models] + published].to_numpy(dtype=float)
        if np.nanmin(values) < 0:
            ax.axhline(0, color="grey", linewidth=0.8)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
    return Path(path)
