"""Results tables of a sweep: per task and model, the metric over seeds, against published numbers.

``results_table(records)`` gives one row per (suite, task) with, for every model ``m``,
``m mean`` and ``m std`` (the test metric x100, mean and sample standard deviation over seeds),
``m seeds`` and ``m params``; ``hyperbolic >= euclidean`` (the best of the hyperbolic models'
means against the Euclidean CNN's, where both ran); and a column per published model where a
published number exists. ``to_markdown`` renders it per suite with the win counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.compat import moved
from biostrata.config import GENOME_GEOMETRY
from biostrata.data.dna.benchmarks import SUITES
from biostrata.errors import InputError
from biostrata.report.published import PUBLISHED
from biostrata.train.sweep import read_records

# the genome models of each geometry, as the models declare it (config.GENOME_GEOMETRY), in registry order
EUCLIDEAN = tuple(m for m, geometry in GENOME_GEOMETRY.items() if geometry == "euclidean")
HYPERBOLIC = tuple(m for m, geometry in GENOME_GEOMETRY.items() if geometry != "euclidean")
MODEL_ORDER = EUCLIDEAN + HYPERBOLIC
WIN = "hyperbolic >= euclidean"
SEED_WINS = "hyperbolic wins (seeds)"


def records_frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per record: suite, task, model, seed, metric, score, params, wall_time_s, best_epoch."""
    cols = ["suite", "task", "model", "seed", "metric", "score", "params", "wall_time_s", "best_epoch"]
    return pd.DataFrame([{c: r[c] for c in cols} for r in records], columns=cols)


def model_order(models: Sequence[str]) -> list[str]:
    return [m for m in MODEL_ORDER if m in models] + sorted(m for m in models if m not in MODEL_ORDER)


def task_order(suite: str, tasks: Sequence[str]) -> list[str]:
    known = [t.name for t in SUITES[suite].tasks] if suite in SUITES else []
    return [t for t in known if t in tasks] + sorted(t for t in tasks if t not in known)


def results_table(records: Sequence[dict]) -> pd.DataFrame:
    """The wide results table (scores x100), one row per (suite, task), in registry order."""
    frame = records_frame(records)
    if frame.empty:
        raise InputError("no records to tabulate")
    frame["score"] = frame["score"].astype(float) * 100
    models = model_order(frame["model"].unique())
    stats = frame.groupby(["suite", "task", "model"]).agg(
        mean=("score", "mean"), std=("score", "std"), seeds=("seed", "nunique"), params=("params", "max")
    )
    rows = []
    for suite in sorted(frame["suite"].unique()):
        part = frame[frame["suite"] == suite]
        for task in task_order(suite, part["task"].unique()):
            metrics = part.loc[part["task"] == task, "metric"].unique()
            row: dict = {"suite": suite, "task": task, "metric": "/".join(sorted(metrics))}
            for m in models:
                have = (suite, task, m) in stats.index
                s = stats.loc[(suite, task, m)] if have else None
                row[f"{m} mean"] = s["mean"] if have else np.nan
                row[f"{m} std"] = s["std"] if have else np.nan
                row[f"{m} seeds"] = int(s["seeds"]) if have else 0
                row[f"{m} params"] = int(s["params"]) if have else np.nan
            row[WIN] = _hyperbolic_wins(row, models)
            row[SEED_WINS] = _seed_wins(part[part["task"] == task], row, models)
            for name, values in PUBLISHED.get(suite, {}).items():
                row[name] = values.get(task, np.nan)
            rows.append(row)
    return pd.DataFrame(rows)  # published columns only for the registered suites that have them


def _hyperbolic_wins(row: dict, models: Sequence[str]) -> bool | None:
    """Best hyperbolic mean >= Euclidean mean; None unless both kinds ran on the task."""
    euc = [row[f"{m} mean"] for m in models if m in EUCLIDEAN and not math.isnan(row[f"{m} mean"])]
    hyp = [row[f"{m} mean"] for m in models if m in HYPERBOLIC and not math.isnan(row[f"{m} mean"])]
    if not euc or not hyp:
        return None
    return bool(max(hyp) >= max(euc))


def _seed_wins(runs: pd.DataFrame, row: dict, models: Sequence[str]) -> str | None:
    """ "w/n": on w of the n seeds both ran, the best hyperbolic model (by mean) scores strictly above
    the best Euclidean one on the same seed; None unless both kinds ran on the task."""
    best = []
    for family in (HYPERBOLIC, EUCLIDEAN):
        ran = [m for m in models if m in family and not math.isnan(row[f"{m} mean"])]
        if not ran:
            return None
        best.append(max(ran, key=lambda m: row[f"{m} mean"]))
    scores = runs.pivot_table(index="seed", columns="model", values="score", aggfunc="mean")[best].dropna()
    if scores.empty:  # no seed ran with both
        return None
    return f"{int((scores[best[0]] > scores[best[1]]).sum())}/{len(scores)}"


def models_in(table: pd.DataFrame) -> list[str]:
    return [c[: -len(" mean")] for c in table.columns if c.endswith(" mean")]


def published_in(table: pd.DataFrame) -> list[str]:
    """The columns of published numbers in ``table`` that hold at least one number (a suite's columns are NaN
    in the rows of another suite)."""
    names = {n for p in PUBLISHED.values() for n in p}
    return [c for c in table.columns if c in names and table[c].notna().any()]


def win_counts(table: pd.DataFrame) -> tuple[int, int]:
    """(tasks where hyperbolic >= Euclidean, tasks where both ran)."""
    decided = table[WIN].dropna()
    return int(decided.astype(bool).sum()), int(len(decided))


def at_or_above(table: pd.DataFrame, published: str, kind: str) -> tuple[int, int]:
    """(tasks where the best ``kind`` model, "hyperbolic" or "euclidean", scores >= the ``published``
    column, tasks where both have a number)."""
    family = HYPERBOLIC if kind == "hyperbolic" else EUCLIDEAN
    cols = [f"{m} mean" for m in models_in(table) if m in family]
    if not cols:
        return 0, 0
    ours = table[cols].max(axis=1)
    have = ours.notna() & table[published].notna()
    return int((ours[have] >= table.loc[have, published]).sum()), int(have.sum())


def format_score(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def format_params(n: float) -> str:
    """1234567 -> '1.23M', 52800 -> '52.8k'."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def metric_note(part: pd.DataFrame) -> str:
    """'Test MCC x100', with the tasks scored otherwise named: '(F1 x100 for virus/covid)'."""
    main = part["metric"].mode().iloc[0]
    others = part[part["metric"] != main]
    note = f"Test {main.upper()} x100"
    for metric, group in others.groupby("metric"):
        note += f" ({metric.upper()} x100 for {', '.join(group['task'])})"
    return note


def to_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown, one section per suite; the best of our models per task in bold."""
    out = []
    total = win_counts(table)
    out.append(f"# Results\n\nHyperbolic >= Euclidean on **{total[0]} of {total[1]}** tasks.\n")
    for suite in table["suite"].unique():
        part = table[table["suite"] == suite]
        models = [m for m in models_in(part) if part[f"{m} seeds"].sum() > 0]
        title = SUITES[suite].title if suite in SUITES else suite
        published = published_in(part)
        out.append(f"## {title}\n\n{metric_note(part)}, mean ± std over seeds.\n")
        head = ["task", *models, "seeds", "params (" + " / ".join(models) + ")", "hyp >= euc", "hyp wins (seeds)"]
        head += published
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, row in part.iterrows():
            means = [row[f"{m} mean"] for m in models]
            best = np.nanmax(means) if not all(math.isnan(x) for x in means) else np.nan
            cells = [str(row["task"])]
            for m, mean in zip(models, means):
                text = format_score(mean, row[f"{m} std"])
                cells.append(f"**{text}**" if mean == best else text)
            cells.append("/".join(str(int(row[f"{m} seeds"])) for m in models))
            cells.append(" / ".join(format_params(row[f"{m} params"]) for m in models))
            win = row[WIN]
            cells.append(
                "–" if win is None or (isinstance(win, float) and math.isnan(win)) else ("yes" if win else "no")
            )
            cells.append(row[SEED_WINS] if isinstance(row[SEED_WINS], str) else "–")
            cells += ["–" if math.isnan(row[p]) else f"{row[p]:.2f}" for p in published]
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines) + "\n")
        wins, decided = win_counts(part)
        where = f"{title} tasks" if suite in SUITES else f"tasks of {suite}"  # a folder's name may be "tasks"
        summary = [f"Hyperbolic >= Euclidean on {wins} of {decided} {where}."]
        for kind in ("hyperbolic", "euclidean"):
            counts = [(p, *at_or_above(part, p, kind)) for p in published]
            counts = [f">= {p} on {k} of {n}" for p, k, n in counts if n]
            if counts:
                summary.append(f"{kind.capitalize()} (best model) {', '.join(counts)} tasks (published numbers).")
        out.append(" ".join(summary) + "\n")
    if published_in(table):
        out.append(
            "Published numbers: Zhou et al., DNABERT-2, ICLR 2024, Table 4 (reference values, not results of this run).\n"
        )
    return "\n".join(out)


def sweep_records(sweep_dir: str | Path) -> list[dict]:
    """The records of one sweep folder; an InputError if it is missing or holds none."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise InputError(f"{sweep_dir}: no such folder; give a folder of records that `biostrata benchmark` wrote")
    records = read_records(sweep_dir)
    if not records:
        raise InputError(f"{sweep_dir}: no record.json found; run `biostrata benchmark --out {sweep_dir}` first")
    return records


__getattr__ = moved(
    __name__, {"write_report": "biostrata.report.summary"}
)  # the old names work, with a warning, for one release
