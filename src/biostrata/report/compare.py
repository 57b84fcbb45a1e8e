"""Several sweeps side by side: which settings did best on the validation split.

Each sweep folder is one *variant* (named after the folder), typically the same tasks and models
run from different configs (``biostrata benchmark --config A.yaml --out runs/A``).
``comparison_table`` gives one row per (suite, task, model, variant) with, over seeds,
``dev mean``/``dev std`` (the validation metric of the selected epoch, x100), ``test mean``/
``test std`` (x100), ``seeds``, ``best epoch`` (mean) and ``minutes`` (mean wall time per run), and
``best on dev`` marking, per (suite, task, model), the variant with the highest dev mean. Choose
settings by that column: the test columns are there to report, not to choose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from biostrata.errors import InputError
from biostrata.io import atomic_write_text
from biostrata.report.tables import format_score, model_order, sweep_records, task_order


def _dev_score(record: dict) -> float:
    """The record's validation score on its metric of record (``dev_<metric>`` in its metrics)."""
    key = f"dev_{record['metric']}"
    if key not in record["metrics"]:
        raise InputError(f"record {record['task']} {record['model']} seed {record['seed']} has no {key!r}")
    return float(record["metrics"][key])


def comparison_table(sweeps: Mapping[str, Sequence[dict]]) -> pd.DataFrame:
    """One row per (suite, task, model, variant); ``sweeps`` maps a variant name to its records."""
    rows = [
        {
            "variant": name, "suite": r["suite"], "task": r["task"], "model": r["model"], "seed": r["seed"],
            "metric": r["metric"], "dev": _dev_score(r) * 100, "test": float(r["score"]) * 100,
            "best_epoch": r["best_epoch"], "minutes": r["wall_time_s"] / 60,
        }
        for name, records in sweeps.items()
        for r in records
    ]  # fmt: skip
    if not rows:
        raise InputError("no records to compare")
    frame = pd.DataFrame(rows)
    stats = frame.groupby(["suite", "task", "model", "variant"], sort=False).agg(
        metric=("metric", "first"), seeds=("seed", "nunique"), **{
            "dev mean": ("dev", "mean"), "dev std": ("dev", "std"), "test mean": ("test", "mean"),
            "test std": ("test", "std"), "best epoch": ("best_epoch", "mean"), "minutes": ("minutes", "mean"),
        },
    ).reset_index()  # fmt: skip
    order = {name: i for i, name in enumerate(sweeps)}
    out = []
    for suite in sorted(stats["suite"].unique()):
        part = stats[stats["suite"] == suite]
        for task in task_order(suite, part["task"].unique()):
            for model in model_order(part.loc[part["task"] == task, "model"].unique()):
                group = part[(part["task"] == task) & (part["model"] == model)]
                group = group.sort_values("variant", key=lambda v: v.map(order)).copy()
                group["best on dev"] = group["dev mean"] == group["dev mean"].max()
                out.append(group)
    return pd.concat(out, ignore_index=True)


def comparison_markdown(table: pd.DataFrame) -> str:
    """The comparison as Markdown, one table per suite; the best variant on dev in bold."""
    out = ["# Sweep comparison\n", "Per task and model, the variant with the best mean validation score is in bold.\n"]
    for suite in table["suite"].unique():
        part = table[table["suite"] == suite]
        out.append(f"## {suite}\n")
        head = ["task", "model", "variant", "seeds", "dev", "test", "best epoch", "min/run"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, row in part.iterrows():
            name = f"**{row['variant']}**" if row["best on dev"] else row["variant"]
            lines.append("| " + " | ".join([
                row["task"], row["model"], name, str(row["seeds"]), format_score(row["dev mean"], row["dev std"]),
                format_score(row["test mean"], row["test std"]), f"{row['best epoch']:.1f}", f"{row['minutes']:.1f}",
            ]) + " |")  # fmt: skip
        metrics = "/".join(sorted(part["metric"].unique()))
        out.append("\n".join(lines) + f"\n\n{metrics.upper()} x100, mean ± std over seeds.\n")
    return "\n".join(out)


def write_comparison(sweep_dirs: Sequence[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write ``comparison.md`` and ``comparison.csv`` for several sweep folders into ``out_dir``."""
    sweeps: dict[str, list[dict]] = {}
    for folder in map(Path, sweep_dirs):
        if folder.name in sweeps:
            raise InputError(f"{folder}: two sweep folders are named {folder.name!r}; variants are named by folder")
        sweeps[folder.name] = sweep_records(folder)
    table = comparison_table(sweeps)
    out_dir = Path(out_dir)
    paths = {"markdown": out_dir / "comparison.md", "csv": out_dir / "comparison.csv"}
    atomic_write_text(paths["markdown"], comparison_markdown(table))
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    return paths
