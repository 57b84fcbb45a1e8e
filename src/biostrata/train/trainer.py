"""The one Lightning ``Trainer`` set-up of biostrata's training runs (genome classifiers and masked-LM
pre-training): CSV logs under ``out_dir/logs/``, no sanity-check batches, no model summary, a log
row every ``min(10, batches per epoch)`` steps; an accelerator the machine lacks is refused by name,
and Ctrl-C reaches the caller as ``KeyboardInterrupt`` (see :func:`interruptible`)."""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from lightning.pytorch.loggers import CSVLogger

from biostrata.errors import ParameterError

__all__ = ["check_accelerator", "interruptible", "make_trainer", "quiet_lightning"]


def check_accelerator(accelerator: str) -> None:
    """Refuse an ``accelerator`` that torch cannot use on this machine (``auto`` and ``cpu`` always work)."""
    missing = {
        "gpu": not torch.cuda.is_available(),
        "cuda": not torch.cuda.is_available(),
        "mps": not torch.backends.mps.is_available(),
    }
    if missing.get(accelerator, False):
        kind = "MPS device" if accelerator == "mps" else "GPU"
        raise ParameterError(
            "accelerator", f"accelerator={accelerator!r}: torch sees no {kind} here; use 'cpu' or 'auto'"
        )


@contextmanager
def interruptible(trainer: pl.Trainer) -> Iterator[None]:
    """Run ``trainer.fit`` / ``validate`` / ``test`` inside: Lightning catches Ctrl-C itself, ignores
    SIGINT from then on and exits with status 1; here the interrupt comes back out as ``KeyboardInterrupt``
    (so the caller writes no result) and Ctrl-C works again."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


def quiet_lightning() -> None:
    """Hide Lightning's info lines (devices, checkpoint restores, tips) and a torch 2.13 deprecation
    warning it triggers; warnings and errors still show."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")


class EpochBar(TQDMProgressBar):
    """Lightning's bar, its epochs counted from 1 and out of the total: ``Epoch 3/3`` for the last of three
    (Lightning's says ``Epoch 2``), as ``best_epoch``, ``curve.csv`` and the pre-training history count."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        # Lightning's own method, but for the description (calling it would flash "Epoch 0" first)
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset(total=convert_inf(self.total_train_batches))
        self.train_progress_bar.initial = 0
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")


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
    check_accelerator(accelerator)
    quiet_lightning()
    return pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        default_root_dir=out_dir,
        logger=CSVLogger(out_dir, name="logs", version=log_version),
        callbacks=[*callbacks, *([EpochBar()] if progress else [])],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(10, batches_per_epoch)),
    )
