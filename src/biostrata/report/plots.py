"""Pictures of results: a benchmark suite's bars, CKA heatmaps, the demo and the conditions study.

``plot_suite``: for each task, one bar per model (height = mean score x100, error bar = std over
seeds) and a dashed or dotted line per published model (Zhou et al. 2024, Table 4) where a
published number exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.data.dna.benchmarks import SUITES
from biostrata.report.figures import COLORS, figure
from biostrata.report.tables import metric_note, models_in, published_in

__all__ = ["plot_suite", "plot_cka_heatmap", "plot_demo", "plot_conditions"]

_PUBLISHED_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))


def plot_suite(table: pd.DataFrame, path: str | Path) -> Path:
    """Draw the rows of one suite of ``results_table`` into a PNG at ``path`` (written atomically)."""
    models = [m for m in models_in(table) if table[f"{m} seeds"].sum() > 0]
    published = published_in(table)
    tasks = list(table["task"])
    x = np.arange(len(tasks))
    width = 0.8 / max(len(models), 1)
    with figure(path, figsize=(max(6.0, 0.25 * len(tasks) * (len(models) + 1) + 3), 4.5)) as (_, ax):
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
    return Path(path)


def plot_cka_heatmap(
    frame: pd.DataFrame,
    path: str | Path | None = None,
    title: str = "",
    ax=None,
    diverging: bool = False,
    annotate: bool = True,
):
    """Heatmap of a CKA matrix (``[0, 1]``; ``diverging`` for a difference of two matrices, ``[-1, 1]``).
    Draws on ``ax`` if given, else on a new figure written to ``path`` (PNG). Returns the axes."""
    if ax is None:
        with figure(path, figsize=(1.0 + 0.45 * frame.shape[1], 0.8 + 0.45 * frame.shape[0]), dpi=130) as (_, ax):
            return plot_cka_heatmap(frame, title=title, ax=ax, diverging=diverging, annotate=annotate)
    values = frame.to_numpy(dtype=float)
    lim = max(float(np.nanmax(np.abs(values))), 1e-9)
    if diverging:
        im = ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim)
    else:
        im = ax.imshow(values, cmap="magma", vmin=0, vmax=1)
    ax.set_xticks(range(frame.shape[1]), [str(c) for c in frame.columns], rotation=90, fontsize=7)
    ax.set_yticks(range(frame.shape[0]), [str(r) for r in frame.index], fontsize=7)
    if annotate and values.size <= 400:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                dark = abs(v) > 0.6 * lim if diverging else v < 0.6
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5.5, color="white" if dark else "black")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_demo(table: pd.DataFrame, path: str | Path) -> None:
    """The demo's two panels: test MCC and relative delta of each model."""
    with figure(path, 1, 2, figsize=(8, 3.2)) as (_, axes):
        colors = [COLORS.get(m) for m in table["model"]]
        axes[0].bar(table["model"], table["test_mcc"], color=colors)
        axes[0].set_ylabel("test MCC")
        axes[0].set_ylim(min(0, table["test_mcc"].min()), 1)
        axes[1].bar(table["model"], table["relative_delta"], color=colors)
        axes[1].set_ylabel("relative delta 2δ/diam")
        axes[1].set_title("tree-likeness of embeddings (0 = tree)", fontsize=9)
        for ax in axes:
            for v in ax.patches:
                x = v.get_x() + v.get_width() / 2
                ax.annotate(f"{v.get_height():.3f}", (x, v.get_height()), ha="center", va="bottom", fontsize=8)


def plot_conditions(summary: pd.DataFrame, factors: Sequence[str], order: Callable[[str], Callable],
                    path: str | Path) -> None:  # fmt: skip
    """The conditions study: per factor, the hyperbolic gain in test MCC (top) and the relative delta
    of both models' embeddings (bottom). ``summary`` has one row per condition (``factor`` names the
    varied one, ``base`` the shared baseline); ``order(factor)`` is the sort key of its values."""
    labels = {"shape": "tree shape", "height": "substitutions/site (root to leaf)", "depth": "clades per 2 classes"}
    base = summary[summary["factor"] == "base"]
    with figure(path, 2, len(factors), figsize=(11, 6), sharey="row", squeeze=False) as (_, axes):
        for j, factor in enumerate(factors):
            part = pd.concat([base, summary[summary["factor"] == factor]]).sort_values(factor, key=order(factor))
            x = [str(v) for v in part[factor]]
            axes[0, j].errorbar(x, part["gain"], yerr=part["gain_sd"].fillna(0), fmt="o-", color=COLORS["hcnn-s"],
                                capsize=3)  # fmt: skip
            axes[0, j].axhline(0, color="grey", lw=0.8)
            axes[1, j].plot(x, part["delta_cnn"], "o-", label="cnn", color=COLORS["cnn"])
            axes[1, j].plot(x, part["delta_hcnn"], "s-", label="hcnn-s", color=COLORS["hcnn-s"])
            axes[1, j].set_xlabel(labels.get(factor, factor))
        axes[0, 0].set_ylabel("MCC(hcnn-s) - MCC(cnn)")
        axes[1, 0].set_ylabel("relative delta of embeddings")
        axes[1, 0].legend(fontsize=8)
