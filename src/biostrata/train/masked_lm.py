"""The masked-language-model training loop with Lightning, for any model that implements
``masked_logits(src [B, L], selected [B, L] bool) -> [n, V]`` (the domain LM, the protein LMs).

The loss is the cross-entropy at the masked positions only (masking: :mod:`biostrata.train.masking`).
Validation uses one fixed masking (seeded) so that numbers are comparable across runs and arms, and
reports ``val_loss`` (mean cross-entropy per masked token), ``val_acc`` (fraction of masked tokens
whose arg-max prediction is the original token) and ``val_ppl = exp(val_loss)``.
:func:`evaluate_masked_lm` computes the same numbers on other sequences (e.g. held-out test
clusters), once: ``evaluate_masked_lm(model, valid, scheme, batch_size=b, seed=s)`` of the best
weights gives the best epoch's validation numbers of a run with batch size ``b`` and seed ``s``.
What is trained and written for each model: :mod:`biostrata.train.pretrain`.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics import SumMetric

from biostrata.errors import InputError, NumericalError
from biostrata.models.pretrained import is_pretrained
from biostrata.train.masking import MaskingScheme, MLMCollator
from biostrata.train.trainer import interruptible, make_trainer

__all__ = ["MaskedLMModule", "EpochSnapshots", "LengthBucketSampler", "fit_masked_lm", "evaluate_masked_lm"]


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of similar lengths, reshuffled every epoch: shuffle, cut into pools of
    ``pool * batch_size`` items, sort each pool by length, cut into batches, shuffle the batches.
    Padding then costs little compute while every epoch still sees new batch compositions."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, pool: int = 50) -> None:
        self.lengths, self.batch_size, self.pool = list(lengths), batch_size, pool
        self.rng = random.Random(seed)

    def __iter__(self):
        order = list(range(len(self.lengths)))
        self.rng.shuffle(order)
        size = self.pool * self.batch_size
        batches = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start : start + size], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        self.rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return sum(
            math.ceil(min(self.pool * self.batch_size, len(self.lengths) - s) / self.batch_size)
            for s in range(0, len(self.lengths), self.pool * self.batch_size)
        )


def _fixed_batches(seqs: Sequence[torch.Tensor], scheme: MaskingScheme, batch_size: int, seed: int, repeats: int,
                   max_length: int | None, keep_first: int, keep_last: int) -> list[tuple]:  # fmt: skip
    """Validation batches sorted by length, each sequence masked ``repeats`` times independently,
    once for all by the collator of seed ``seed + 1`` (so every epoch and every run with this seed,
    and :func:`evaluate_masked_lm` with it, see the same masks)."""
    collator = MLMCollator(scheme, max_length, keep_first, keep_last, train=False, seed=seed + 1)
    seqs = list(seqs) * repeats
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    return [collator([seqs[j] for j in order[i : i + batch_size]]) for i in range(0, len(seqs), batch_size)]


class MaskedLMModule(pl.LightningModule):
    """Lightning wrapper: Adam (no weight decay, so frozen table rows stay fixed), masked CE loss."""

    def __init__(self, model: nn.Module, lr: float = 1e-3) -> None:
        super().__init__()
        self.model, self.lr = model, lr
        self.val_loss_sum, self.val_correct, self.val_count = SumMetric(), SumMetric(), SumMetric()
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.best: dict | None = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mlm"] = {"history": self.history, "best": self.best, "best_state": self.best_state}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("mlm", {})
        self.history, self.best, self.best_state = saved.get("history", []), saved.get("best"), saved.get("best_state")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=self.lr)

    def _logits(self, batch: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        target, src, selected = batch
        return self.model.masked_logits(src, selected), target[selected]

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        logits, target = self._logits(batch)
        loss = F.cross_entropy(logits.float(), target)
        if not torch.isfinite(loss):
            raise NumericalError(f"training loss is {loss.item()} at epoch {self.current_epoch}, step {batch_idx}")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(target))
        return loss

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        logits, target = self._logits(batch)
        self.val_loss_sum.update(F.cross_entropy(logits.float(), target, reduction="sum"))
        self.val_correct.update((logits.argmax(-1) == target).sum().float())
        self.val_count.update(torch.tensor(float(len(target)), device=logits.device))

    def compute_validation(self, where: str) -> dict | None:
        """``{"val_loss", "val_acc", "val_ppl", "masked_tokens"}`` of the batches seen by
        ``validation_step`` since the last call (None if no token was masked); resets the sums."""
        n = float(self.val_count.compute())
        loss, acc = float(self.val_loss_sum.compute()) / max(n, 1), float(self.val_correct.compute()) / max(n, 1)
        for m in (self.val_loss_sum, self.val_correct, self.val_count):
            m.reset()
        if not math.isfinite(loss):
            raise NumericalError(f"validation loss is {loss} {where}; no metric reported")
        return {"val_loss": loss, "val_acc": acc, "val_ppl": math.exp(loss), "masked_tokens": int(n)} if n else None

    def on_validation_epoch_end(self) -> None:
        metrics = self.compute_validation(f"at epoch {self.current_epoch}")
        if metrics is None:
            return
        for key in ("val_loss", "val_acc", "val_ppl"):
            self.log(key, metrics[key], prog_bar=key != "val_loss", sync_dist=False)
        if self.trainer.sanity_checking:
            return
        record = {"epoch": self.current_epoch + 1, **metrics}
        self.history.append(record)
        if self.best is None or metrics["val_loss"] < self.best["val_loss"]:
            self.best = record
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})


class EpochSnapshots(pl.Callback):
    """Call ``save(folder)`` on ``directory/epoch_000`` before training and ``epoch_<e>`` after epoch ``e``
    (1-based), e.g. ``model.save_pretrained``. On resume, the start's snapshot already written is kept."""

    def __init__(self, directory: Path, save: Callable[[Path], None]) -> None:
        self.directory, self.save = Path(directory), save

    def _write(self, epoch: int) -> None:
        path = self.directory / f"epoch_{epoch:03d}"
        if epoch > 0 or not is_pretrained(path):
            self.save(path)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == 0:
            self._write(0)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._write(trainer.current_epoch + 1)


def fit_masked_lm(
    model: nn.Module,
    train: Sequence[torch.Tensor],
    valid: Sequence[torch.Tensor],
    scheme: MaskingScheme,
    out_dir: str | Path,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    max_length: int | None = None,
    keep_first: int = 0,
    keep_last: int = 0,
    accelerator: str = "auto",
    devices: int | str = "auto",
    progress: bool = True,
    resume: bool = False,
    val_repeats: int = 4,
    snapshot: Callable[[Path], None] | None = None,
) -> dict:
    """Train ``model`` by masked-token prediction; keep the weights of the best validation epoch.

    Each validation sequence is masked ``val_repeats`` times (fixed draws) to steady the metrics.
    ``snapshot(path)``, if given, writes the model to ``out_dir/snapshots/epoch_<e>.pt`` at the start
    (``e = 0``) and after every epoch (:class:`EpochSnapshots`).

    Writes Lightning checkpoints to ``out_dir/checkpoints`` (``last.ckpt``; ``resume=True`` continues
    from it) and CSV logs to ``out_dir/logs``. Returns ``{"best": {...}, "history": [...],
    "wall_time_s", "params", "trainable_params"}``; the model holds the best weights afterwards.
    """
    if not train or not valid:
        raise InputError(f"need training and validation sequences, got {len(train)} and {len(valid)}")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError(f"epochs={epochs}, batch_size={batch_size}, lr={lr}: all must be positive")
    out_dir = Path(out_dir)
    pl.seed_everything(seed, workers=True, verbose=False)
    collate = MLMCollator(scheme, max_length, keep_first, keep_last, train=True, seed=seed)
    val_batches = _fixed_batches(valid, scheme, batch_size, seed, val_repeats, max_length, keep_first, keep_last)
    sampler = LengthBucketSampler([len(t) for t in train], batch_size, seed)
    train_loader = DataLoader(list(train), batch_sampler=sampler, collate_fn=collate)
    val_loader = DataLoader(val_batches, batch_size=None)
    module = MaskedLMModule(model, lr)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=out_dir / "checkpoints", save_last=True, save_top_k=0)
    callbacks: list[pl.Callback] = [checkpoint]
    if snapshot is not None:
        callbacks.append(EpochSnapshots(out_dir / "snapshots", snapshot))
    trainer = make_trainer(out_dir, epochs=epochs, batches_per_epoch=len(train_loader), callbacks=callbacks,
                           accelerator=accelerator, devices=devices, progress=progress)  # fmt: skip
    last = out_dir / "checkpoints" / "last.ckpt"
    start = time.perf_counter()
    with interruptible(trainer):  # Ctrl-C comes out as KeyboardInterrupt: no metrics for a half-trained model
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume and last.is_file() else None)
    if module.best_state is None:
        raise NumericalError("training ended without a validation epoch; no metric reported")
    model.load_state_dict(module.best_state)
    return {
        "best": module.best,
        "history": module.history,
        "wall_time_s": time.perf_counter() - start,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


@torch.no_grad()
def evaluate_masked_lm(
    model: nn.Module,
    sequences: Sequence[torch.Tensor],
    scheme: MaskingScheme,
    *,
    batch_size: int,
    seed: int,
    repeats: int = 4,
    max_length: int | None = None,
    keep_first: int = 0,
    keep_last: int = 0,
    device: torch.device | str | None = None,
) -> dict:
    """Masked-token metrics of ``model`` on ``sequences`` (e.g. held-out test clusters, evaluated
    once), on the fixed masks a run with this ``seed`` validates on (each sequence masked ``repeats``
    times), computed by the validation code: ``{"acc", "ppl", "loss", "masked_tokens"}``, loss = mean
    cross-entropy per masked token, ppl = exp(loss). ``device``: default the model's (the model moves
    there)."""
    if not sequences or batch_size < 1 or repeats < 1:
        raise InputError(f"{len(sequences)} sequences, batch_size={batch_size}, repeats={repeats}: all must be >= 1")
    batches = _fixed_batches(sequences, scheme, batch_size, seed, repeats, max_length, keep_first, keep_last)
    batches = [b for b in batches if b[2].any()]  # a batch with no masked token adds nothing
    if not batches:
        raise InputError(f"none of the {len(sequences)} sequences has a token that the masking scheme may mask")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    module, training = MaskedLMModule(model).to(device), model.training
    model.eval()
    try:
        for i, batch in enumerate(batches):
            module.validation_step(tuple(t.to(device) for t in batch), i)
    finally:
        model.train(training)
    metrics = module.compute_validation(f"on {len(sequences)} sequences")
    assert metrics is not None  # every batch masked a token
    return {"acc": metrics["val_acc"], "ppl": metrics["val_ppl"], "loss": metrics["val_loss"],
            "masked_tokens": metrics["masked_tokens"]}  # fmt: skip
