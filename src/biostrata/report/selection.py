"""What the choice of epoch does to a reported number: test MCC under three selection rules.

Reads sweeps of ``biostrata benchmark`` (one folder per schedule, the *variant*, named after the
folder), whose runs wrote ``curve.csv`` and ``test_curve.csv`` (``train.curves``). Per run:

- ``val``: the test metric at the epoch with the best validation metric (biostrata's rule; the
  number of the run's record);
- ``test``: the test metric at the epoch with the best test metric, i.e. the maximum of the test
  curve (the effective rule of the reference code, whose "validation" loader reads the test file);
- ``last``: the test metric at the last epoch (no selection);
- ``ref_printed``: the validation metric at the epoch chosen on test (what the reference code prints
  as "Performance on test dataset", its loaders being swapped).

``clip_max`` is the largest share of positions that a Lorentz batch norm's radius clip moved in any
epoch, in training or on validation (NaN for a Euclidean model).

Ties go to the earliest epoch, as in training. ``optimism`` is ``test - val`` in metric points x100:
what selecting on the test split adds to a number, in the same run.

Files (``write_selection``): ``selection.md`` (tables and verdicts), ``selection_runs.csv`` (one row
per run), ``selection.csv`` (per variant, task and model: mean and sample std over seeds x100 of each
rule) and ``curves_<variant>_<task>.png`` (validation and test curves, mean over seeds per model,
each rule's mean epoch marked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.errors import InputError
from biostrata.io import atomic_write_text
from biostrata.report.figures import COLORS, figure
from biostrata.report.published import PUBLISHED
from biostrata.report.tables import EUCLIDEAN, HYPERBOLIC, model_order, sweep_records, task_order
from biostrata.train.curves import CURVE_NAME, TEST_CURVE_NAME, read_curve
from biostrata.train.sweep import Run

__all__ = ["RULES", "selection_runs", "selection_table", "write_selection"]

RULES = ("val", "test", "last")
RULE_TITLES = {
    "val": "chosen on validation (ours)",
    "test": "chosen on test (reference)",
    "last": "last epoch",
}


def _read_run(variant: str, record: dict, folder: Path) -> tuple[dict, list[dict]]:
    """The selection numbers of one run from its record and curve files, and its curves as rows
    (variant, task, model, seed, epoch, val, test)."""
    metric = record["metric"]
    curve_path, test_path = folder / "train" / CURVE_NAME, folder / "train" / TEST_CURVE_NAME
    for path in (curve_path, test_path):
        if not path.is_file():
            raise InputError(
                f"{path}: missing; this run was made before runs wrote learning curves. Delete {folder} and run "
                "the sweep again to redo it"
            )
    curve, test = read_curve(curve_path), read_curve(test_path)
    if [r["epoch"] for r in curve] != [r["epoch"] for r in test]:
        raise InputError(f"{test_path}: its epochs differ from those of {curve_path}; run {folder} again")
    val = np.array([r[f"val_{metric}"] for r in curve])
    scores = np.array([r[f"test_{metric}"] for r in test])
    # training chose the first epoch of the best value as Lightning logged it, in float32
    by_val = int(np.argmax(val.astype(np.float32)))
    by_test = int(np.argmax(scores))  # the first of ties, as the reference's strict '>' keeps it
    if curve[by_val]["epoch"] != record["best_epoch"]:
        raise InputError(
            f"{curve_path}: the best validation epoch is {curve[by_val]['epoch']}, but the record says "
            f"{record['best_epoch']}; the files are not of one run"
        )
    # the record's number is the test curve's value at the chosen epoch: anything else is a broken run
    if abs(record["score"] - scores[by_val]) > 1e-9:
        raise InputError(
            f"{folder}: reports {record['score']:.4f}, but its test curve has {scores[by_val]:.4f} at the chosen "
            "epoch; run it again"
        )
    clips = [r[k] for r in curve for k in r if "clip_" in k]
    run = {"variant": variant, "task": record["task"], "model": record["model"], "seed": record["seed"]}
    row = run | {
        "suite": record["suite"], "metric": metric, "epochs": len(curve),
        "val_epoch": curve[by_val]["epoch"], "test_epoch": curve[by_test]["epoch"],
        "val": record["score"], "test": float(scores[by_test]), "last": float(scores[-1]),
        "ref_printed": float(val[by_test]), "clip_max": float(np.nanmax(clips)) if clips else float("nan"),
    }  # fmt: skip
    rows = [run | {"epoch": c["epoch"], "val": v, "test": s} for c, v, s in zip(curve, val, scores)]
    return row, rows


def _read_sweeps(sweeps: Mapping[str, str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run of every sweep folder, each read once: the runs table of :func:`selection_runs`, and
    the long table of their curves (variant, task, model, seed, epoch, val, test)."""
    runs, curves = [], []
    for variant, root in sweeps.items():
        for record in sweep_records(root):  # an error names a missing or empty folder
            folder = Run(record["suite"], record["task"], record["model"], record["seed"]).folder(root)
            row, rows = _read_run(variant, record, folder)
            runs.append(row)
            curves += rows
    columns = ["variant", "suite", "task", "model", "seed"]
    frame = pd.DataFrame(runs)
    return frame[columns + [c for c in frame.columns if c not in columns]], pd.DataFrame(curves)


def selection_runs(sweeps: Mapping[str, str | Path]) -> pd.DataFrame:
    """One row per run of every sweep folder (``sweeps``: variant name -> folder): its epochs chosen
    by validation and by test, and the test metric under each rule (see the module docstring)."""
    return _read_sweeps(sweeps)[0]


def selection_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, suite, task, model): seeds, mean and sample std x100 of each rule, the mean optimism
    ``test - val`` x100, and DNABERT-2's published number where there is one."""
    frame = runs.copy()
    for rule in (*RULES, "ref_printed"):
        frame[rule] = frame[rule] * 100
    frame["optimism"] = frame["test"] - frame["val"]
    aggs = {"seeds": ("seed", "nunique"), "epochs": ("epochs", "max"), "clip max": ("clip_max", "max")}
    for rule in (*RULES, "optimism", "ref_printed"):
        aggs[f"{rule} mean"] = (rule, "mean")
        aggs[f"{rule} std"] = (rule, "std")
    table = frame.groupby(["variant", "suite", "task", "model"], sort=False).agg(**aggs).reset_index()
    table["DNABERT-2"] = [
        PUBLISHED.get(s, {}).get("DNABERT-2", {}).get(t, np.nan) for s, t in zip(table["suite"], table["task"])
    ]
    return _ordered(table)


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    variants = list(dict.fromkeys(table["variant"]))
    key = {}
    for suite in table["suite"].unique():
        for i, task in enumerate(task_order(suite, table.loc[table["suite"] == suite, "task"].unique())):
            key[(suite, task)] = i
    models = model_order(table["model"].unique())
    return (
        table.assign(
            _v=table["variant"].map(variants.index),
            _t=[key[(s, t)] for s, t in zip(table["suite"], table["task"])],
            _m=table["model"].map(models.index),
        )
        .sort_values(["_v", "suite", "_t", "_m"])
        .drop(columns=["_v", "_t", "_m"])
        .reset_index(drop=True)
    )


def wins(table: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, suite, task) and rule: whether each hyperbolic model's mean >= the Euclidean CNN's."""
    rows = []
    for (variant, suite, task), group in table.groupby(["variant", "suite", "task"], sort=False):
        means = group.set_index("model")
        euclid = [m for m in EUCLIDEAN if m in means.index]
        if not euclid:
            continue
        for model in (m for m in HYPERBOLIC if m in means.index):
            row = {"variant": variant, "suite": suite, "task": task, "model": model}
            for rule in RULES:
                row[rule] = bool(means.loc[model, f"{rule} mean"] >= means.loc[euclid[0], f"{rule} mean"])
            rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "suite", "task", "model", *RULES])


def _fmt(mean: float, std: float) -> str:
    return "–" if np.isnan(mean) else f"{mean:.1f}" if np.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def selection_markdown(table: pd.DataFrame, won: pd.DataFrame) -> str:
    """The rules table per variant, the win counts under each rule and the optimism per model."""
    lines = ["# The test metric under three epoch-selection rules", ""]
    lines += [
        "Test metric x100 (MCC; F1 for virus/covid), mean ± sample std over seeds. Rules: " + "; ".join(f"**{r}**: {t}" for r, t in RULE_TITLES.items())
        + ". Optimism: test minus val, in points. Ref. printed: the validation metric at the epoch chosen on test, "
        "what the reference code prints as its test result (its loaders are swapped). DNABERT-2: published test "
        "MCC (Zhou et al. 2024, Table 4).",
        "",
    ]  # fmt: skip
    for variant, part in table.groupby("variant", sort=False):
        lines += [f"## {variant}", ""]
        lines.append("| task | model | seeds | epochs | val | test | last | optimism | ref. printed | DNABERT-2 |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for _, r in part.iterrows():
            cells = [_fmt(r[f"{rule} mean"], r[f"{rule} std"]) for rule in (*RULES, "optimism", "ref_printed")]
            published = "" if np.isnan(r["DNABERT-2"]) else f"{r['DNABERT-2']:.2f}"
            lines.append(
                f"| {r['task']} | {r['model']} | {r['seeds']} | {r['epochs']} | {' | '.join(cells)} | {published} |"
            )
        lines.append("")
        w = won[won["variant"] == variant]
        if len(w):
            lines.append("Hyperbolic >= Euclidean (by mean), tasks won of tasks run, per rule:")
            lines.append("")
            for model, mw in w.groupby("model", sort=False):
                counts = ", ".join(f"{rule} {int(mw[rule].sum())}/{len(mw)}" for rule in RULES)
                lines.append(f"- {model}: {counts}")
            lines.append("")
        per_model = part.groupby("model", sort=False)["optimism mean"].mean()
        lines.append(
            "Mean optimism of selecting on test, over tasks: "
            + ", ".join(f"{m} {v:+.1f} points" for m, v in per_model.items())
            + "."
        )
        clip = part["clip max"].max()
        if not np.isnan(clip):
            acted = f"at most {clip:.2g} of a batch norm's positions" if clip > 0 else "never"
            lines.append(f"The batch norms' radius clip acted {acted} in any epoch of any hyperbolic run.")
        lines.append("")
    return "\n".join(lines)


def plot_curves(curves: pd.DataFrame, runs: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Validation (solid) and test (dashed) metric per epoch, mean over seeds, one colour per model; the
    mean epoch each rule chose marked on the test curve (o: on validation, x: on test)."""
    with figure(path, figsize=(7.5, 4.2)) as (_, ax):
        for model in model_order(curves["model"].unique()):
            part = curves[curves["model"] == model].groupby("epoch")[["val", "test"]].mean()
            colour = COLORS.get(model)
            ax.plot(part.index, part["val"] * 100, color=colour, label=f"{model} validation")
            ax.plot(part.index, part["test"] * 100, color=colour, linestyle="--", label=f"{model} test")
            chosen = runs[runs["model"] == model]
            for column, marker in (("val_epoch", "o"), ("test_epoch", "x")):
                epoch = int(round(chosen[column].mean()))
                if epoch in part.index:
                    ax.plot(epoch, part.loc[epoch, "test"] * 100, marker=marker, color=colour, markersize=8)
        for marker, rule in (("o", "chosen on validation"), ("x", "chosen on test")):
            ax.plot([], [], marker=marker, color="black", linestyle="none", label=f"{rule} (mean epoch)")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (from 0, as in the CSV files)")
        ax.set_ylabel(f"{runs['metric'].iloc[0].upper()} x100")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    return Path(path)


def write_selection(sweep_dirs: Sequence[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write ``selection.md``, ``selection.csv``, ``selection_runs.csv`` and one learning-curve PNG per
    (variant, task) into ``out_dir``; returns the paths keyed ``markdown``, ``csv``, ``runs`` and
    ``curves:<variant>/<task>``. Variants are named after their folders, which must differ."""
    names = [Path(d).name for d in sweep_dirs]
    if len(set(names)) != len(names):
        raise InputError(f"sweep folders must have different names (they name the variants): {', '.join(names)}")
    runs, curves = _read_sweeps(dict(zip(names, sweep_dirs)))
    table = selection_table(runs)
    out_dir = Path(out_dir)
    paths = {
        "markdown": out_dir / "selection.md",
        "csv": out_dir / "selection.csv",
        "runs": out_dir / "selection_runs.csv",
    }
    atomic_write_text(paths["markdown"], selection_markdown(table, wins(table)))
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    atomic_write_text(paths["runs"], runs.to_csv(index=False))
    for (variant, task), part in curves.groupby(["variant", "task"], sort=False):
        name = f"curves_{variant}_{task.replace('/', '_')}.png"
        chosen = runs[(runs["variant"] == variant) & (runs["task"] == task)]
        paths[f"curves:{variant}/{task}"] = plot_curves(part, chosen, out_dir / name, f"{task}, {variant}")
    return paths
