"""The one Lightning ``Trainer`` set-up of biostrata's training runs (genome classifiers and masked-LM
pre-training): CSV logs under ``out_dir/logs/``, no sanity-check batches, no model summary, a log
row every ``min(10, batches per epoch)`` steps."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger

__all__ = ["make_trainer", "quiet_lightning"]


def quiet_lightning() -> None:
    """Hide Lightning's info lines (devices, checkpoint restores, tips) and a torch 2.13 deprecation
    warning it triggers; warnings and errors still show."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")


def make_trainer(
    out_dir: str | Path,
    *,
    epochs: int,
    batches_per_epoch: int,
    callbacks: Sequence[pl.Callback] = (),
    accelerator: str = "auto",
    devices: int | str = "auto",
    precision: str | None = None,
    progress: bool = True,
    log_version: str | None = None,
) -> pl.Trainer:
    """A Trainer for ``epochs`` epochs writing its logs to ``out_dir/logs/<log_version>`` (None: a new
    ``version_<k>`` per run, so that a resumed run keeps the earlier logs). ``precision`` None is
    Lightning's default (32-bit)."""
    quiet_lightning()
    return pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        default_root_dir=out_dir,
        logger=CSVLogger(out_dir, name="logs", version=log_version),
        callbacks=list(callbacks),
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(10, batches_per_epoch)),
    )
