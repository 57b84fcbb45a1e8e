"""Per-epoch learning curves of a genome-classifier run, for studying how the epoch is selected.

Two files in the run folder, each rewritten atomically after every epoch (a killed run keeps the
epochs it finished):

- ``curve.csv``: what training and model selection see. One row per epoch: ``epoch`` (counted from 1,
  as ``best_epoch`` in metrics.json; files of earlier versions counted from 0 and are read as from 1),
  ``train_loss`` (mean over the epoch's training examples),
  ``val_mcc``, ``val_accuracy``, ``val_f1``, ``lr`` (the ordinary weights' rate at the epoch's last
  step), ``curvature_<i>`` (hyperbolic models), and per Lorentz batch norm (named by its module path
  in the LightningModule, ``model.blocks.0.bn1``) the share of positions whose rescaled radius the
  clip moved, in training passes (``clip_<name>``) and on the validation split (``val_clip_<name>``);
  positions are all B x L of each batch, padding included.
- ``test_curve.csv``: ``epoch``, ``test_mcc``, ``test_accuracy``, ``test_f1``: the model of every
  epoch scored on the test split. Nothing in training or model selection reads it; it is written
  after the epoch's validation, from a forward pass in eval mode with the random state restored,
  so a run gives the same model with or without it. It exists to measure what selecting the epoch
  on test (the reference code's effective rule) would have reported.

Under several devices (DDP), process 0 alone writes them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from biostrata.geometry.lorentz import Lorentz
from biostrata.io import atomic_write_text
from biostrata.nn.lorentz import LorentzBatchNorm1d
from biostrata.train.metrics import classification_metrics

CURVE_NAME = "curve.csv"
TEST_CURVE_NAME = "test_curve.csv"


def batch_norms(model: torch.nn.Module) -> dict[str, LorentzBatchNorm1d]:
    """The Lorentz batch norms of ``model`` by module name (empty for a Euclidean model)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LorentzBatchNorm1d)}


def clip_shares(model: torch.nn.Module, mode: str) -> dict[str, float]:
    """Per Lorentz batch norm, the share of positions the radius clip moved in ``mode`` since the last
    call (which resets the counts); NaN where no position was seen."""
    shares = {}
    for name, bn in batch_norms(model).items():
        clipped, seen = bn.clip_counts(mode)
        shares[name] = clipped / seen if seen else float("nan")
    return shares


def write_rows(path: Path, rows: list[dict]) -> None:
    """``rows`` as a CSV file (columns of the first row), written atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


class LearningCurves(pl.Callback):
    """Writes ``curve.csv`` and, when ``test`` is given, ``test_curve.csv`` into ``out_dir`` (see the
    module docstring). The LightningModule must keep its last validation scores in
    ``module.results["val"]`` and return its training loss from ``training_step``."""

    def __init__(self, out_dir: str | Path, test: DataLoader | None = None) -> None:
        self.out_dir, self.test = Path(out_dir), test
        self.rows: list[dict] = []
        self.test_rows: list[dict] = []
        self._loss: torch.Tensor | None = None
        self._examples = 0
        self._lr = float("nan")

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.rows, self.test_rows = [], []
        for name in (CURVE_NAME, TEST_CURVE_NAME):
            (self.out_dir / name).unlink(missing_ok=True)  # an earlier, interrupted run's
        for mode in ("train", "eval"):
            clip_shares(module, mode)  # counts start with the first epoch

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        # the rate this batch's step uses: by the epoch's end the per-step schedule has moved on
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        n = len(batch[1])
        weighted = loss.detach().float() * n  # a tensor sum: no device-to-host copy per step
        self._loss = weighted if self._loss is None else self._loss + weighted
        self._examples += n

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or "val" not in getattr(module, "results", {}):
            return
        epoch = trainer.current_epoch + 1  # counted from 1, as printed and recorded everywhere
        row = {"epoch": epoch, "train_loss": float(self._loss) / self._examples if self._examples else float("nan")}
        self._loss, self._examples = None, 0
        row |= {f"val_{k}": v for k, v in module.results["val"].items()}
        row["lr"] = self._lr
        row |= {f"curvature_{i}": c for i, c in enumerate(curvatures(module))}
        row |= {f"clip_{name}": share for name, share in clip_shares(module, "train").items()}
        row |= {f"val_clip_{name}": share for name, share in clip_shares(module, "eval").items()}
        self.rows.append(row)
        write_rows(self.out_dir / CURVE_NAME, self.rows)
        if self.test is not None:
            self.test_rows.append({"epoch": epoch, **{f"test_{k}": v for k, v in self.score(trainer, module).items()}})
            write_rows(self.out_dir / TEST_CURVE_NAME, self.test_rows)
            clip_shares(module, "eval")  # the test pass's clips are not the next validation's

    def score(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, float]:
        """The current model's metrics on the test loader: eval mode, no gradients, under the run's
        precision, with every random state restored afterwards."""
        was_training = module.training
        cuda = [module.device] if module.device.type == "cuda" else []
        preds, labels = [], []
        with torch.random.fork_rng(devices=cuda), torch.no_grad(), trainer.precision_plugin.forward_context():
            module.eval()
            try:
                for idx, y in self.test:
                    preds.append(module(idx.to(module.device)).argmax(1).cpu())
                    labels.append(y)
            finally:
                module.train(was_training)
        return classification_metrics(torch.cat(labels).numpy(), torch.cat(preds).numpy())


def curvatures(model: torch.nn.Module) -> list[float]:
    """The curvature magnitude K of each Lorentz manifold of ``model``, in module order."""
    return [float(m.curvature.detach()) for m in model.modules() if isinstance(m, Lorentz)]


def read_curve(path: str | Path) -> list[dict]:
    """The rows of a ``curve.csv`` or ``test_curve.csv`` as dicts of floats (``epoch`` an int)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in rows]
    if out and out[0]["epoch"] == 0:  # written before epochs were counted from 1 (a curve starts at the first)
        for row in out:
            row["epoch"] += 1
    return out


def clip_summary(row: dict) -> dict[str, dict[str, float]]:
    """Per batch norm, the clip shares of one ``curve.csv`` row: {name: {"train": share, "val": share}}."""
    names = [k.removeprefix("clip_") for k in row if k.startswith("clip_")]
    return {name: {"train": row[f"clip_{name}"], "val": row[f"val_clip_{name}"]} for name in names}
