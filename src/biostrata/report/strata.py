"""Pictures of the strata study: the same Pfam domain instances represented at four strata
(nucleotide, protein, domain, cluster), by one or more models with several layers, in Euclidean
and Lorentz geometry.

- ``plot_delta``: relative Gromov delta ``2δ/diam`` per layer, one panel per stratum.
- ``plot_strata_cka``: the stratum x stratum linear-CKA map of every (stratum, model, layer).
- ``plot_umap``: UMAP of per-family vectors, one panel per colouring (Pfam clan, product class, ...).
- ``plot_widths``: small-width Euclidean vs Lorentz models, one panel per metric.
- ``summary_markdown``: the results page of the study.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.errors import InputError, ParameterError
from biostrata.extras import require
from biostrata.report.figures import COLORS, figure

__all__ = [
    "STRATA",
    "strata_order",
    "split_label",
    "top_categories",
    "present_metrics",
    "plot_delta",
    "plot_strata_cka",
    "plot_umap",
    "plot_widths",
    "summary_markdown",
]

#: The strata, from the finest to the coarsest: the order of panels and blocks in every picture.
STRATA = ("nucleotide", "protein", "domain", "cluster")

_OTHER = "#BBBBBB"  # the grey of categories outside the top ones
_METRIC_LABELS = {
    "test_acc": "test masked-token accuracy",
    "test_ppl": "test perplexity",
    "clan_probe": "Pfam clan probe (macro AUROC)",
    "product_probe": "product-class probe (macro AUROC)",
}
_GEOMETRY_COLORS = {"euclidean": COLORS["cnn"], "lorentz": COLORS["hcnn-s"]}


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raise InputError naming the columns of ``columns`` that ``frame`` (argument ``name``) lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{name} lacks column(s) {missing}; it has {list(frame.columns)}")


def strata_order(strata: pd.DataFrame | Sequence[str]) -> list[str]:
    """The strata present in ``strata`` (a frame's ``stratum`` column, or a sequence of names), in the
    order of ``STRATA``. Raises InputError on a name outside ``STRATA``."""
    names = strata["stratum"] if isinstance(strata, pd.DataFrame) else strata
    present = set(map(str, names))
    unknown = sorted(present - set(STRATA))
    if unknown:
        raise InputError(f"unknown stratum {unknown}; a stratum is one of {list(STRATA)}")
    return [s for s in STRATA if s in present]


def is_hyperbolic(model: str) -> bool:
    """Deprecated (goes in the next release): a guess from the name, "lorentz" in it or "hcnn" first.
    The pictures now take hyperbolicity from the data: ``plot_delta`` from the frame's ``hyperbolic``
    column (the strata study sets it from the layers' curvatures), ``plot_widths`` from ``geometry``."""
    warnings.warn(
        "biostrata.report.strata.is_hyperbolic guesses from a name and goes in the next release; give plot_delta "
        "a 'hyperbolic' column (from the layers' curvatures, model.layer_manifold(i))",
        DeprecationWarning,
        stacklevel=2,
    )
    name = model.lower()
    return "lorentz" in name or name.startswith("hcnn")


def _model_style(model: str, index: int, hyperbolic: bool) -> dict:
    """Colour, line style and marker of ``model`` (the ``index``-th model of its picture): the house
    colour where there is one, else the ``index``-th of tab10; hyperbolic models dashed with squares."""
    import matplotlib

    color = COLORS.get(model, matplotlib.colormaps["tab10"](index % 10))
    if hyperbolic:
        return {"color": color, "linestyle": "--", "marker": "s"}
    return {"color": color, "linestyle": "-", "marker": "o"}


def plot_delta(frame: pd.DataFrame, path: str | Path, calibration: Mapping[str, float] | None = None) -> None:
    """Relative Gromov delta ``2δ/diam`` per layer: one panel per stratum (``strata_order``, shared y
    axis), one line per model with ``relative_delta_std`` as error bars. ``frame`` has one row per
    (stratum, model, layer); an optional bool column ``hyperbolic`` marks the models drawn dashed (without
    it, none is). ``calibration`` maps a reference name (e.g.
    "tree", "sphere") to its relative delta, drawn as a dotted line labelled at the right edge."""
    _require_columns(frame, ["stratum", "model", "layer", "relative_delta", "relative_delta_std"], "frame")
    if frame.duplicated(["stratum", "model", "layer"]).any():
        raise InputError("frame has more than one row for some (stratum, model, layer); give one row each")
    strata = strata_order(frame)
    if not strata:
        raise InputError("frame has no rows: nothing to plot")
    models = list(dict.fromkeys(frame["model"]))  # one colour per model across panels
    size = (1.0 + 3.2 * len(strata) + (1.2 if calibration else 0.0), 3.6)
    with figure(path, 1, len(strata), figsize=size, sharey=True, squeeze=False) as (_, axes):
        for ax, stratum in zip(axes[0], strata):
            _draw_delta_panel(ax, frame[frame["stratum"] == stratum], models)
            ax.set_title(stratum)
        for ax in axes[0]:
            _draw_calibration(ax, calibration or {}, label=ax is axes[0, -1])
        axes[0, 0].set_ylabel("relative Gromov delta 2δ/diam")
        axes[0, 0].set_ylim(bottom=0)


def _draw_delta_panel(ax, part: pd.DataFrame, models: Sequence[str]) -> None:
    """One stratum's lines of ``plot_delta`` on ``ax``, one per model of ``part``."""
    from matplotlib.ticker import MaxNLocator

    for model, rows in part.groupby("model", sort=False):
        rows = rows.sort_values("layer")
        yerr = rows["relative_delta_std"].to_numpy(dtype=float)
        hyperbolic = "hyperbolic" in rows and bool(rows["hyperbolic"].any())
        ax.errorbar(rows["layer"], rows["relative_delta"], yerr=np.nan_to_num(yerr), capsize=2, markersize=4,
                    label=model, **_model_style(str(model), models.index(model), hyperbolic))  # fmt: skip
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")


def _draw_calibration(ax, calibration: Mapping[str, float], label: bool) -> None:
    """Horizontal reference lines on ``ax``; with ``label``, each named just right of the axes."""
    for name, value in calibration.items():
        ax.axhline(value, color="grey", linestyle=":", linewidth=0.9, zorder=0)
        if label:
            ax.text(1.02, value, name, transform=ax.get_yaxis_transform(), va="center", fontsize="small",
                    color="dimgrey", clip_on=False)  # fmt: skip


def split_label(label: str) -> tuple[str, str, int]:
    """``"protein/esm/3"`` -> ``("protein", "esm", 3)``: the stratum, model and layer of a CKA label
    (the model may itself contain "/")."""
    parts = str(label).split("/")
    if len(parts) < 3 or not parts[-1].strip().lstrip("-").isdigit():
        raise InputError(f"CKA label {label!r} is not 'stratum/model/layer' (e.g. 'protein/esm/3')")
    return parts[0], "/".join(parts[1:-1]), int(parts[-1])


def _cka_order(labels: Sequence[str]) -> list[int]:
    """Positions of ``labels`` sorted by stratum (``STRATA`` order), then model (first appearance
    within its stratum), then layer."""
    parsed = [split_label(label) for label in labels]
    strata = strata_order([s for s, _, _ in parsed])
    first = {(s, m): i for i, (s, m, _) in reversed(list(enumerate(parsed)))}
    return sorted(range(len(parsed)), key=lambda i: (strata.index(parsed[i][0]), first[parsed[i][:2]], parsed[i][2]))


def _boundaries(keys: Sequence) -> list[float]:
    """Positions (between cells, ``i - 0.5``) where ``keys`` changes from one entry to the next."""
    return [i - 0.5 for i in range(1, len(keys)) if keys[i] != keys[i - 1]]


def _centres(keys: Sequence) -> tuple[list[float], list]:
    """The centre position and key of every run of equal consecutive ``keys``."""
    starts = [0] + [int(b + 0.5) for b in _boundaries(keys)]
    ends = starts[1:] + [len(keys)]
    return [(a + b - 1) / 2 for a, b in zip(starts, ends)], [keys[a] for a in starts]


def plot_strata_cka(matrix: pd.DataFrame, path: str | Path) -> None:
    """Heat map (viridis, ``[0, 1]``) of a square CKA matrix whose index and columns are the same
    "stratum/model/layer" labels. Rows are grouped by stratum (``STRATA`` order) then model; thin lines
    separate models, thick ones strata; ticks read "model L<layer>", strata name the groups."""
    if matrix.shape[0] != matrix.shape[1] or list(matrix.index) != list(matrix.columns):
        raise InputError(f"matrix must be square with index == columns; got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise InputError("matrix is empty: nothing to plot")
    order = _cka_order(list(matrix.index))
    matrix = matrix.iloc[order, order]
    parsed = [split_label(label) for label in matrix.index]
    n = len(parsed)
    font = float(np.clip(240 / n, 4.5, 9))
    side = float(np.clip(2.5 + 0.22 * n, 4.5, 14))
    with figure(path, figsize=(side + 1.2, side), dpi=130) as (fig, ax):
        im = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1)
        ticks = [f"{m} L{layer}" for _, m, layer in parsed]
        ax.set_xticks(range(n), ticks, rotation=90, fontsize=font)
        ax.set_yticks(range(n), ticks, fontsize=font)
        _draw_blocks(ax, parsed, font)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.1, label="linear CKA")


def _draw_blocks(ax, parsed: Sequence[tuple[str, str, int]], font: float) -> None:
    """Separator lines of ``plot_strata_cka`` (thin between models, thick between strata) and the strata
    names as group labels on the top and right edges."""
    strata = [s for s, _, _ in parsed]
    for b in _boundaries([(s, m) for s, m, _ in parsed]):
        ax.axhline(b, color="white", linewidth=0.5)
        ax.axvline(b, color="white", linewidth=0.5)
    for b in _boundaries(strata):
        ax.axhline(b, color="white", linewidth=2.2)
        ax.axvline(b, color="white", linewidth=2.2)
    centres, names = _centres(strata)
    top = ax.secondary_xaxis("top")
    top.set_xticks(centres, names, fontsize=font + 1.5, fontweight="bold")
    top.tick_params(length=0)
    right = ax.secondary_yaxis("right")
    right.set_yticks(centres, names, fontsize=font + 1.5, fontweight="bold", rotation=-90, va="center")
    right.tick_params(length=0)


def top_categories(labels: Sequence[str], top: int) -> list[str]:
    """The ``top`` most frequent non-empty ``labels``, most frequent first (ties by name)."""
    counts = Counter(str(x) for x in labels if str(x) != "")
    return sorted(counts, key=lambda c: (-counts[c], c))[: max(top, 0)]


def _check_umap_input(vectors: np.ndarray, colourings: Mapping[str, Sequence[str]], top: int) -> np.ndarray:
    """``vectors`` as a float [n, d] array, after checking the arguments of ``plot_umap``."""
    vectors = np.asarray(vectors, dtype=float)
    if vectors.ndim != 2:
        raise InputError(f"vectors must be a 2-D array [n, d]; got shape {vectors.shape}")
    if vectors.shape[0] < 4:
        raise InputError(f"UMAP needs at least 4 vectors; got {vectors.shape[0]}")
    if not np.isfinite(vectors).all():
        raise InputError("vectors contain NaN or infinity; drop or fix those rows before UMAP")
    if not colourings:
        raise InputError("colourings is empty; give at least one, e.g. {'Pfam clan': labels}")
    for name, labels in colourings.items():
        if len(labels) != vectors.shape[0]:
            raise InputError(f"colouring {name!r} has {len(labels)} labels for {vectors.shape[0]} vectors")
    if not 0 <= top <= 20:
        raise ParameterError("top", f"top={top}: must be between 0 and 20 (the distinct colours of tab20)")
    return vectors


def plot_umap(
    vectors: np.ndarray,
    colourings: Mapping[str, Sequence[str]],
    path: str | Path,
    *,
    seed: int = 0,
    top: int = 10,
    n_neighbors: int = 15,
    title: str = "",
) -> np.ndarray:
    """UMAP (umap-learn, 2-D, ``random_state=seed``) of ``vectors`` [n, d], drawn once per colouring
    (a name -> n labels): the ``top`` most frequent labels in distinct colours (tab10, or tab20 beyond
    10) with a legend, the rest and empty labels grey "other". Returns the [n, 2] coordinates."""
    vectors = _check_umap_input(vectors, colourings, top)
    umap = require("umap")  # slow to import (numba): only here

    n = vectors.shape[0]
    reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(n_neighbors, n - 1))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")  # random_state -> 1 job
        coords = np.asarray(reducer.fit_transform(vectors), dtype=float)
    k = len(colourings)
    with figure(path, 1, k, figsize=(5.2 * k, 4.4), squeeze=False) as (fig, axes):
        for ax, (name, labels) in zip(axes[0], colourings.items()):
            _draw_umap_panel(ax, coords, [str(x) for x in labels], top)
            ax.set_title(name)
        if title:
            fig.suptitle(title)
    return coords


def _draw_umap_panel(ax, coords: np.ndarray, labels: Sequence[str], top: int) -> None:
    """One colouring of ``plot_umap`` on ``ax``: "other" grey underneath, the top categories above."""
    import matplotlib

    cats = top_categories(labels, top)
    cmap = matplotlib.colormaps["tab10" if len(cats) <= 10 else "tab20"]
    labels = np.asarray(labels, dtype=object)
    other = ~np.isin(labels, cats)
    size = float(np.clip(3000 / len(labels), 3, 30))
    for i, cat in enumerate(cats):
        mask = labels == cat
        ax.scatter(*coords[mask].T, s=size, color=cmap(i), linewidths=0, label=f"{cat} ({mask.sum()})", zorder=2)
    if other.any():  # drawn last (last in the legend) but underneath
        ax.scatter(*coords[other].T, s=size, color=_OTHER, linewidths=0, label=f"other ({other.sum()})", zorder=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    scale = float(np.clip(8 / np.sqrt(size), 1, 4))  # legend dots about 8 points wide
    ax.legend(fontsize="x-small", markerscale=scale, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def present_metrics(frame: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """The ``metrics`` that are columns of ``frame`` with at least one value, in the given order."""
    return [m for m in metrics if m in frame.columns and frame[m].notna().any()]


def plot_widths(
    frame: pd.DataFrame,
    path: str | Path,
    metrics: Sequence[str] = ("test_acc", "test_ppl", "clan_probe", "product_probe"),
) -> None:
    """Small-width models, Euclidean against Lorentz: one panel per metric of ``present_metrics`` (a
    missing column is skipped), x = width (log2 axis), one line per geometry at the mean over seeds with
    min-max error bars. ``frame`` has one row per (geometry, width, seed)."""
    _require_columns(frame, ["geometry", "width", "seed"], "frame")
    shown = present_metrics(frame, metrics)
    if not shown:
        raise InputError(f"frame has none of the metric columns {list(metrics)}; it has {list(frame.columns)}")
    widths = sorted(int(w) for w in frame["width"].unique())
    with figure(path, 1, len(shown), figsize=(0.8 + 3.3 * len(shown), 3.4), squeeze=False) as (_, axes):
        for ax, metric in zip(axes[0], shown):
            _draw_width_panel(ax, frame, metric, widths)
        axes[0, 0].legend(fontsize="small")


def _draw_width_panel(ax, frame: pd.DataFrame, metric: str, widths: Sequence[int]) -> None:
    """One metric of ``plot_widths`` on ``ax``: per geometry, mean over seeds with min-max bars."""
    stats = frame.dropna(subset=[metric]).groupby(["geometry", "width"])[metric].agg(["mean", "min", "max"])
    geometries = sorted(stats.index.get_level_values(0).unique(), key=lambda g: (g != "euclidean", g != "lorentz", g))
    for i, geometry in enumerate(geometries):
        part = stats.loc[geometry].sort_index()
        yerr = np.vstack([part["mean"] - part["min"], part["max"] - part["mean"]])
        hyperbolic = geometry != "euclidean"
        style = _model_style(str(geometry), i, hyperbolic) | {"color": _GEOMETRY_COLORS.get(geometry, f"C{i}")}
        ax.errorbar(part.index, part["mean"], yerr=yerr, capsize=3, markersize=4, label=geometry, **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.minorticks_off()
    ax.set_xlabel("width")
    ax.set_ylabel(_METRIC_LABELS.get(metric, metric))


# -- the results page ----------------------------------------------------------------------------------
def _pm(mean: pd.Series, sd: pd.Series) -> pd.Series:
    """``"mean ± sd"`` to 3 decimals (``"mean"`` where the spread is missing)."""
    mean, sd = pd.to_numeric(mean, errors="coerce"), pd.to_numeric(sd, errors="coerce")
    return pd.Series([f"{m:.3f}" + ("" if pd.isna(e) else f" ± {e:.3f}") for m, e in zip(mean, sd)], index=mean.index)


def _mean_sd(frame: pd.DataFrame, by: Sequence[str], metric: str) -> pd.Series:
    g = frame.groupby(list(by))[metric]
    return _pm(g.mean(), g.std(ddof=1))


def summary_markdown(tables: Mapping[str, pd.DataFrame], s, facts: Mapping) -> str:
    """The strata study's tables as Markdown: the facts of the run, delta per representation beside the
    calibration spaces, the probes, the width comparison (mean ± standard deviation over seeds), and the
    CKA between the last layers of the strata. Every number comes from ``tables`` and ``facts``."""
    delta, probes, widths = tables["delta"], tables["probes"], tables["widths"]
    lines = [
        "# Strata study: results",
        "",
        f"Code version {facts.get('code_version')}. {facts.get('study_instances')} of {facts.get('instances')} domain "
        f"instances are seen at every stratum (a corpus token and a checked reading frame), in "
        f"{facts.get('clusters')} clusters; instances per split: {facts.get('splits')}. Delta and CKA on "
        f"{facts.get('sample')} sampled instances ({s.delta_samples} points x {s.delta_repeats} repeats per delta); "
        f"clan probe on {facts.get('clan_probe_rows')} instances of the {facts.get('held_out_families')} families held "
        f"out from the clan-trained CNNs ({facts.get('clan_probe_clans')} clans, {facts.get('clan_probe_families')} "
        f"families, folds grouped by family); product-class probe on {facts.get('product_clusters')} clusters (folds "
        f"grouped by split group: identical domain lists or a shared sequence); {s.folds} folds x fold seeds "
        f"{list(s.probe_seeds)}, mean ± sd over the fold seeds (each model below is trained once, seed {s.seed}, "
        "except the domain LMs of the width comparison).",
        "",
    ]
    for key in sorted(k for k in facts if k.startswith("cnn_")):
        f = facts[key]
        lines.append(f"- {key[4:]} clan classifier ({facts.get('clan_classes')} clans, {f['params']:,} parameters): "
                     f"dev MCC {f['dev_mcc']:.3f}, test MCC {f['test_mcc']:.3f}, test accuracy {f['test_accuracy']:.3f}, "
                     f"best epoch {f['best_epoch']}.")  # fmt: skip
    if "protein" in facts and "best" in facts["protein"]:
        b = facts["protein"]["best"]
        lines.append(
            f"- protein LM: validation masked-residue accuracy {b['val_acc']:.3f}, perplexity {b['val_ppl']:.2f}."
        )
    lines += ["", "## Relative Gromov delta (2δ/diam) per representation", ""]
    table = delta.assign(cell=_pm(delta["relative_delta"], delta["relative_delta_std"])).pivot(
        index="name", columns="metric", values="cell"
    )
    table = table.reindex(list(dict.fromkeys(delta["name"]))).fillna("")
    lines += [table.to_markdown(), "", "Calibration (same estimator):", ""]
    cal = tables["calibration"]
    lines += [cal[["space", "relative_delta", "relative_delta_std"]].to_markdown(index=False, floatfmt=".3f"), ""]
    lines += ["## Probes (linear, standardized features)", "",
              "`clan_f1`: macro F1 of the Pfam clan per instance; `product_auroc`: macro AUROC of the MIBiG "
              "product classes per cluster (mean of its instances).", ""]  # fmt: skip
    cells = {"clan_f1": "clan_f1_macro", "clan_auroc": "clan_auroc_macro", "product_auroc": "product_auroc_macro"}
    p = pd.DataFrame({"representation": probes["name"],
                      **{k: _pm(probes[c], probes[f"{c}_sd"]) for k, c in cells.items() if c in probes}})  # fmt: skip
    lines += [p.to_markdown(index=False), ""]
    skipped = tables.get("skipped")
    if skipped is not None and len(skipped):
        lines += ["## Skipped", "", *(f"- {r.part}: {r.reason}" for r in skipped.itertuples()), ""]
    if len(widths):
        lines += ["## Domain LM: Euclidean vs Lorentz at each width (mean ± sd over seeds)", "",
                  f"Seeds {list(s.domain_seeds)}, {s.domain_layers} blocks, {s.domain_epochs} epochs; the same split, "
                  "masks and seeds in both geometries. Test = held-out clusters, evaluated once with the best "
                  "validation epoch. Probes of the last layer, macro AUROC: clan per instance, product class per "
                  "cluster.", ""]  # fmt: skip
        cols = [c for c in ("test_acc", "test_ppl", "val_acc", "clan_probe", "product_probe",
                            f"delta_L{s.domain_layers}") if c in widths]  # fmt: skip
        w = pd.DataFrame({c: _mean_sd(widths, ["width", "geometry"], c) for c in cols})
        w["params"] = widths.groupby(["width", "geometry"])["params"].first()
        lines += [w.reset_index().to_markdown(index=False), ""]
    cka = tables["cka"]
    parsed = {n: split_label(n) for n in cka.index}
    deepest: dict[tuple[str, str], int] = {}
    for stratum, model, layer in parsed.values():
        deepest[stratum, model] = max(layer, deepest.get((stratum, model), layer))
    last = [n for n, (stratum, model, layer) in parsed.items() if layer == deepest[stratum, model]]
    lines += ["## Linear CKA between the last layers of every model", "",
              cka.loc[last, last].to_markdown(floatfmt=".2f"), ""]  # fmt: skip
    return "\n".join(lines)
