"""The embedded default job: simulate tree-structured DNA, train the Euclidean and the hyperbolic
CNN on it, compare their test MCC and the Gromov delta of their embeddings.

Everything is generated in code (no download). Output folder layout:
``data/`` (GUE layout, with tree.nwk), ``runs/<model>/`` (config, model, metrics),
``summary.csv``, ``summary.md`` and ``summary.png``.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import torch

from biostrata.analysis.hyperbolicity import embedding_delta
from biostrata.config import DemoSettings, TrainConfig
from biostrata.data.simulation.simulate import simulate_dataset, write_gue
from biostrata.io import atomic_write_text
from biostrata.report.plots import plot_demo
from biostrata.threads import set_cpu_threads
from biostrata.train.run import train

MODELS = ("cnn", "hcnn-s")


class EpochLine(pl.Callback):
    """One printed line per epoch: readable when two trainings share a terminal."""

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if "val_mcc" not in trainer.callback_metrics:
            return
        loss = trainer.callback_metrics.get("train_loss")
        loss_text = f", train loss {float(loss):.3f}" if loss is not None else ""
        print(
            f"  {module.cfg.model}: epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, "
            f"val MCC {float(trainer.callback_metrics['val_mcc']):.3f}{loss_text}",
            flush=True,
        )


def _train_one(cfg: TrainConfig, splits, out: Path, threads: int | None = 1) -> dict:
    set_cpu_threads(threads)
    return train(cfg, splits, out / "runs" / cfg.model, callbacks=[EpochLine()] if not cfg.progress else None)


def run_demo(out: str | Path, settings: DemoSettings | None = None) -> pd.DataFrame:
    """Run the demo into ``out``; return the summary table (one row per model)."""
    s = settings or DemoSettings()
    out = Path(out)
    print(f"[1/3] simulating {s.leaves} sequences of {s.length} bp along a {s.tree} tree ({s.classes} clades)")
    dataset = simulate_dataset(
        s.leaves, s.length, tree=s.tree, height=s.height, n_classes=s.classes, seed=s.seed, fixed_length=True
    )
    write_gue(dataset, out / "data")
    splits = dataset.to_splits()
    parallel = s.parallel and not torch.cuda.is_available() and (os.cpu_count() or 1) >= 2
    configs = [
        TrainConfig(
            model=name,
            length=s.length,
            epochs=s.epochs,
            lr=s.lr,
            milestones=[],
            patience=s.patience,
            seed=s.seed + 1,
            progress=s.progress and not parallel,
        )  # fmt: skip
        for name in MODELS
    ]
    stop = f", stopping after {s.patience} without a better dev MCC" if s.patience else ""
    print(f"[2/3] training {' and '.join(MODELS)}, up to {s.epochs} epochs{stop}{' in parallel' if parallel else ''}")
    if parallel:
        with ProcessPoolExecutor(len(MODELS), mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_train_one, configs, [splits] * len(MODELS), [out] * len(MODELS)))
    else:
        results = [_train_one(cfg, splits, out, threads=None) for cfg in configs]
    rows = [
        {
            "model": cfg.model,
            **{
                k: m[k]
                for k in ("test_mcc", "test_accuracy", "dev_mcc", "best_epoch", "epochs_run", "params", "wall_time_s")
            },  # fmt: skip
        }
        for cfg, m in zip(configs, results)
    ]
    points = min(s.delta_points, len(splits.test))  # the test split may hold fewer
    print(f"[3/3] Gromov delta of the test embeddings ({points} points)")
    for row in rows:
        d = embedding_delta(out / "runs" / row["model"], splits.test.sequences, points, s.seed)
        row["delta"], row["relative_delta"] = d["delta"], d["relative_delta"]
    table = pd.DataFrame(rows)
    atomic_write_text(out / "summary.csv", table.to_csv(index=False))
    atomic_write_text(out / "summary.md", _markdown(table, s))
    plot_demo(table, out / "summary.png")
    return table


def _markdown(table: pd.DataFrame, s: DemoSettings) -> str:
    head = (
        f"# biostrata demo\n\n{s.leaves} simulated sequences of {s.length} bp, {s.classes} classes "
        f"(clades of a {s.tree} tree, root-to-leaf height {s.height} substitutions/site, HKY85), "
        f"split 80/10/10; up to {s.epochs} epochs at lr {s.lr}"
        + (f", stopped when dev MCC had not improved for {s.patience} epochs" if s.patience else "")
        + "; model selected on dev by MCC (epochs counted from 1).\n\n"
    )
    return head + table.to_markdown(index=False, floatfmt=".4f") + "\n"
