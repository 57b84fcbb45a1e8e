"""When does a hyperbolic model help? A sweep over the conditions that generated the data.

Each condition simulates a dataset (biostrata.data.simulation.simulate) with one factor changed from a base:
tree ``shape`` (balanced, yule, caterpillar: increasingly unbalanced), substitution ``height``
(root-to-leaf substitutions per site: the rate), and label ``depth`` (number of clades dealt into
two classes: more clades = labels set deeper in the tree). On each dataset the Euclidean and the
hyperbolic CNN are trained per seed, and the relative Gromov delta of their test embeddings is
measured.

Output folder: ``settings.json``, ``data/<condition>/`` (GUE layout), ``runs/<condition>/<model>/seed<k>/``
(one training run each; a run whose metrics.json exists is skipped, so the sweep resumes),
``conditions.csv`` (one row per run), ``conditions.md`` (means and spreads per condition) and
``conditions.png``. A folder resumes only with the settings that make its data and runs; the factor
levels and seeds (operational fields of :class:`ConditionsSettings`) may change, adding or leaving out runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from biostrata.analysis.hyperbolicity import embedding_delta
from biostrata.config import ConditionsSettings, TrainConfig
from biostrata.data.dna.genome import read_gue_dir
from biostrata.data.simulation.simulate import simulate_dataset, write_gue
from biostrata.io import atomic_write_text, cached, ensure
from biostrata.report.plots import plot_conditions

MODELS = ("cnn", "hcnn-s")


def condition_name(c: dict) -> str:
    return f"{c['shape']}_h{c['height']:g}_d{c['depth']}"


def run_conditions(out: str | Path, s: ConditionsSettings | None = None, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) the sweep into ``out``; return one row per (condition, model, seed)."""
    s = s or ConditionsSettings()
    out = Path(out)
    s.record(out / "settings.json")  # a resumed sweep keeps the settings its data and runs were made with
    rows = []
    plan = [(c, m, seed) for c in s.conditions() for m in MODELS for seed in s.seeds]
    for c, model, seed in tqdm(plan, desc="conditions study", disable=not progress):
        metrics, d = run_one(out, s, c, model, seed)
        rows.append(
            {**{k: c[k] for k in ("factor", "shape", "height", "depth")}, "model": model, "seed": seed,
             "test_mcc": metrics["test_mcc"], "relative_delta": d["relative_delta"]}
        )  # fmt: skip
    table = pd.DataFrame(rows)
    atomic_write_text(out / "conditions.csv", table.to_csv(index=False))
    atomic_write_text(out / "conditions.md", summary_markdown(table, s))
    plot_conditions(summarize(table), ("shape", "height", "depth"), lambda f: _order(f, s), out / "conditions.png")
    return table


def run_one(out: Path, s: ConditionsSettings, c: dict, model: str, seed: int) -> tuple[dict, dict]:
    """The metrics and delta of one (condition, model, seed), each step skipped when its file exists: the
    dataset (``data/<condition>/``), the run (its ``metrics.json``), the delta (``delta.json``)."""
    from biostrata.train.run import train

    name = condition_name(c)
    data_dir = out / "data" / name
    run_dir = out / "runs" / name / model / f"seed{seed}"

    def simulate() -> None:
        ds = simulate_dataset(
            s.leaves, s.length, tree=c["shape"], height=c["height"], n_classes=2, n_clades=c["depth"], seed=0,
            fixed_length=True,
        )  # fmt: skip
        write_gue(ds, data_dir)

    def fit() -> None:
        cfg = TrainConfig(
            model=model, length=s.length, epochs=s.epochs, lr=s.lr, milestones=[], seed=seed, progress=False
        )
        train(cfg, read_gue_dir(data_dir), run_dir)

    def delta() -> dict:
        d = embedding_delta(run_dir, read_gue_dir(data_dir).test.sequences, s.delta_points, seed)
        return {k: d[k] for k in ("delta", "relative_delta")}

    ensure(data_dir / "test.csv", simulate)
    metrics = json.loads(ensure(run_dir / "metrics.json", fit).read_text())
    return metrics, cached(run_dir / "delta.json", delta, write=lambda path, d: atomic_write_text(path, json.dumps(d)))


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per condition: mean and sd over seeds of MCC(hcnn-s) - MCC(cnn), and mean delta per model."""
    keys = ["factor", "shape", "height", "depth"]
    wide = table.pivot_table(index=keys + ["seed"], columns="model", values=["test_mcc", "relative_delta"])
    gain = wide[("test_mcc", "hcnn-s")] - wide[("test_mcc", "cnn")]
    frame = pd.DataFrame(
        {
            "mcc_cnn": wide[("test_mcc", "cnn")],
            "mcc_hcnn": wide[("test_mcc", "hcnn-s")],
            "gain": gain,
            "delta_cnn": wide[("relative_delta", "cnn")],
            "delta_hcnn": wide[("relative_delta", "hcnn-s")],
        }
    ).reset_index()
    agg = frame.groupby(keys, sort=False).agg(
        mcc_cnn=("mcc_cnn", "mean"), mcc_hcnn=("mcc_hcnn", "mean"), gain=("gain", "mean"),
        gain_sd=("gain", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")),
        delta_cnn=("delta_cnn", "mean"), delta_hcnn=("delta_hcnn", "mean"), seeds=("gain", "size"),
    )  # fmt: skip
    return agg.reset_index()


def summary_markdown(table: pd.DataFrame, s: ConditionsSettings) -> str:
    head = (
        f"# Data-generating conditions: hyperbolic vs Euclidean CNN\n\n"
        f"{s.leaves} simulated sequences of {s.length} bp per condition (HKY85, 2 classes dealt from "
        f"`depth` clades), {s.epochs} epochs at lr {s.lr}, seeds {s.seeds}. `gain` = test MCC(hcnn-s) - "
        f"MCC(cnn), mean (and sd) over seeds; `delta_*` = relative Gromov delta 2δ/diam of the test "
        f"embeddings ({s.delta_points} points, exact).\n\n"
    )
    return head + summarize(table).to_markdown(index=False, floatfmt=".3f") + "\n"


def _order(factor: str, s: ConditionsSettings):
    if factor == "shape":
        rank = {v: i for i, v in enumerate(s.shapes)}
        return lambda col: col.map(lambda v: rank.get(v, -1))
    return lambda col: col
