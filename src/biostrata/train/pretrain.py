"""Masked-language-model pre-training with Lightning, for the domain LM and the small protein LM.

The loss is the cross-entropy at the masked positions only (masking: :mod:`biostrata.train.masking`).
Validation uses one fixed masking (seeded) so that numbers are comparable across runs and arms, and
reports ``val_loss`` (mean cross-entropy per masked token), ``val_acc`` (fraction of masked tokens
whose arg-max prediction is the original token) and ``val_ppl = exp(val_loss)``.

A model trained here implements ``masked_logits(src [B, L], selected [B, L] bool) -> [n, V]``.

Outputs of :func:`pretrain_domain_lm` / :func:`pretrain_protein_lm` in ``out_dir``: ``model.pt``
(sequence-models format for the domain LM, fair-esm format for the protein LM; best validation
epoch), ``metrics.json`` (best epoch, per-epoch history, settings), ``checkpoints/last.ckpt``
(Lightning, for resuming) and ``logs/`` (CSV); with ``snapshots=True`` also
``snapshots/epoch_000.pt`` (the initial weights) and ``snapshots/epoch_<e>.pt`` after each epoch ``e``
(same format as ``model.pt``), e.g. to follow how far the token table moves in training.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics import SumMetric

from biostrata.config import PretrainSettings as _D  # the keyword defaults below are its fields
from biostrata.data.clusters import ClusterCorpus, DomainVocabulary
from biostrata.data.pfam import PfamTable
from biostrata.data.proteins import CANONICAL_AMINO_ACIDS, ProteinRecord
from biostrata.errors import InputError, NumericalError
from biostrata.io import atomic_write_json
from biostrata.models.domain_lm import DomainLM
from biostrata.models.init_table import ARMS, FamilyTable, initialize_token_table
from biostrata.models.protein_lm import ProteinLM
from biostrata.train.masking import MaskingScheme, MLMCollator
from biostrata.train.trainer import interruptible, make_trainer

__all__ = [
    "MaskedLMModule",
    "EpochSnapshots",
    "LengthBucketSampler",
    "fit_masked_lm",
    "split_clusters",
    "domain_masking_scheme",
    "protein_masking_scheme",
    "pretrain_domain_lm",
    "pretrain_protein_lm",
    "RUN_OPTIONS",
]


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


def _fixed_batches(
    seqs: Sequence[torch.Tensor], collator: MLMCollator, batch_size: int, repeats: int = 1
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Validation batches sorted by length, each sequence masked ``repeats`` times independently,
    once for all (so every epoch and every run sees the same masks)."""
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

    def on_validation_epoch_end(self) -> None:
        n = float(self.val_count.compute())
        if n == 0:
            return
        loss = float(self.val_loss_sum.compute()) / n
        if not math.isfinite(loss):
            raise NumericalError(f"validation loss is {loss} at epoch {self.current_epoch}; no metric reported")
        metrics = {"val_loss": loss, "val_acc": float(self.val_correct.compute()) / n, "val_ppl": math.exp(loss)}
        for key, value in metrics.items():
            self.log(key, value, prog_bar=key != "val_loss", sync_dist=False)
        for m in (self.val_loss_sum, self.val_correct, self.val_count):
            m.reset()
        if self.trainer.sanity_checking:
            return
        record = {"epoch": self.current_epoch + 1, **metrics, "masked_tokens": int(n)}
        self.history.append(record)
        if self.best is None or loss < self.best["val_loss"]:
            self.best = record
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})


class EpochSnapshots(pl.Callback):
    """Call ``save(path)`` on ``directory/epoch_000.pt`` before training and ``epoch_<e>.pt`` after
    epoch ``e`` (1-based). On resume, files already written are kept."""

    def __init__(self, directory: Path, save: Callable[[Path], None]) -> None:
        self.directory, self.save = Path(directory), save

    def _write(self, epoch: int) -> None:
        path = self.directory / f"epoch_{epoch:03d}.pt"
        if epoch > 0 or not path.is_file():
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
    epochs: int = _D.epochs,
    batch_size: int = _D.batch_size,
    lr: float = _D.lr,
    seed: int = _D.seed,
    max_length: int | None = None,
    keep_first: int = 0,
    keep_last: int = 0,
    accelerator: str = _D.accelerator,
    devices: int | str = _D.devices,
    progress: bool = _D.progress,
    resume: bool = _D.resume,
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
    val_batches = _fixed_batches(
        valid,
        MLMCollator(scheme, max_length, keep_first, keep_last, train=False, seed=seed + 1),
        batch_size,
        val_repeats,
    )
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


_VALID_NAMES = ("valid", "validation", "val", "dev")
#: How a run goes, not what it learns: keywords the pretrain_* functions hand on to fit_masked_lm.
RUN_OPTIONS = ("accelerator", "devices", "progress", "resume")


def split_clusters(corpus: ClusterCorpus, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train / validation indices, split by BGC.

    If every cluster carries a ``split`` (BiGCARP CSV), ``train`` rows train and ``valid``/``val``/
    ``dev`` rows validate (``test`` rows are left out). Otherwise clusters with identical domain
    lists are grouped (so no duplicate leaks across the split) and whole groups are drawn, seeded,
    until at least ``val_fraction`` of the clusters validate.
    """
    if len(corpus) and all(c.split for c in corpus):
        train = [i for i, c in enumerate(corpus) if c.split == "train"]
        valid = [i for i, c in enumerate(corpus) if c.split in _VALID_NAMES]
        return train, valid
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction={val_fraction}: must be in (0, 1)")
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(corpus):
        groups.setdefault(c.domains, []).append(i)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    valid: list[int] = []
    target = val_fraction * len(corpus)
    while keys and len(valid) < target:
        valid += groups[keys.pop()]
    train = sorted(i for k in keys for i in groups[k])
    return train, sorted(valid)


def domain_masking_scheme(vocab: DomainVocabulary, rate: float = 0.15) -> MaskingScheme:
    """Mask domain positions (UNK included; class and separator tokens never); random replacements
    are drawn from the domain tokens."""
    maskable = torch.zeros(len(vocab), dtype=torch.bool)
    maskable[vocab.unk_idx :] = True
    replacements = torch.arange(vocab.domain_slice.start, vocab.domain_slice.stop)
    return MaskingScheme(vocab.pad_idx, vocab.mask_idx, maskable, replacements, rate=rate)


def protein_masking_scheme(plm: ProteinLM, rate: float = 0.15) -> MaskingScheme:
    """Mask residues only; random replacements are drawn from the 20 canonical amino acids."""
    a = plm.alphabet
    maskable = torch.zeros(len(a.all_toks), dtype=torch.bool)
    maskable[[a.tok_to_idx[t] for t in a.standard_toks]] = True
    replacements = torch.tensor([a.tok_to_idx[c] for c in CANONICAL_AMINO_ACIDS])
    return MaskingScheme(a.padding_idx, a.mask_idx, maskable, replacements, rate=rate)


def pretrain_domain_lm(
    corpus: ClusterCorpus,
    out_dir: str | Path,
    *,
    preset: str = _D.preset,
    arm: str = _D.arm,
    family_table: FamilyTable | None = None,
    projection: str = _D.projection,
    pfam: PfamTable | None = None,
    class_token: bool = _D.class_token,
    separators: bool = _D.separators,
    val_fraction: float = _D.val_fraction,
    max_length: int | None = _D.max_length,
    epochs: int = _D.epochs,
    batch_size: int = _D.batch_size,
    lr: float = _D.lr,
    seed: int = _D.seed,
    snapshots: bool = _D.snapshots,
    **options: Any,
) -> dict:
    """Pre-train the domain LM in one arm: ``random`` table, or initialized from ``family_table``
    and then ``finetune``-d or kept ``frozen``. Returns (and writes) the metrics dict. With
    ``snapshots`` the weights at the start and after every epoch go to ``out_dir/snapshots/``
    (sequence-models format, like ``model.pt``). ``options``: the :data:`RUN_OPTIONS` of
    :func:`fit_masked_lm`, and sizes that override the preset's (``d_embed``, ``n_layers``, ...)."""
    run = {k: v for k, v in options.items() if k in RUN_OPTIONS}
    sizes = {k: v for k, v in options.items() if k not in RUN_OPTIONS}
    if arm not in ARMS:
        raise InputError(f"arm={arm!r}: choose one of {list(ARMS)}")
    if (arm == "random") != (family_table is None):
        raise InputError(f"arm={arm!r} {'needs' if arm != 'random' else 'takes no'} family table")
    out_dir = Path(out_dir)
    vocab = DomainVocabulary.from_corpus(corpus, class_tokens=class_token, gene_separator=separators)
    if family_table is not None and projection == "learned":
        if sizes.get("d_embed", family_table.dim) != family_table.dim:
            raise InputError(
                f"d_embed={sizes['d_embed']} differs from the family vectors' {family_table.dim} dimensions; "
                "with projection='learned' the table takes their width (leave d_embed unset, or use 'pca')"
            )
        sizes = {**sizes, "d_embed": family_table.dim}
    torch.manual_seed(seed)
    model = DomainLM.from_preset(preset, vocab, **sizes)
    report = None
    if family_table is not None:
        report = initialize_token_table(model, family_table, projection, freeze=arm == "frozen")
    train_idx, val_idx = split_clusters(corpus, val_fraction, seed)
    if not train_idx or not val_idx:
        how = (
            "by its split column"
            if all(c.split for c in corpus)
            else f"with val_fraction={val_fraction} (--val-fraction), identical domain lists kept together"
        )
        raise InputError(
            f"{corpus.source}: its {len(corpus)} cluster(s) split into {len(train_idx)} for training and "
            f"{len(val_idx)} for validation ({how}); pre-training needs both, so give more clusters"
        )
    encode = [vocab.encode(c, class_token=class_token, separators=separators) for c in corpus]
    settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)  # for the fit and its record
    result = fit_masked_lm(
        model,
        [encode[i] for i in train_idx],
        [encode[i] for i in val_idx],
        domain_masking_scheme(vocab),
        out_dir,
        max_length=max_length,
        keep_first=int(class_token),
        snapshot=(lambda path: model.save(path, pfam, name=f"bigcarp_{arm}")) if snapshots else None,
        **settings,
        **run,
    )
    model.save(out_dir / "model.pt", pfam, name=f"bigcarp_{arm}")
    result.update(
        arm=arm,
        preset=preset,
        config=model.config,
        vocab_size=len(vocab),
        corpus=corpus.source,
        train_clusters=len(train_idx),
        val_clusters=len(val_idx),
        frozen_rows=int(model.frozen_rows.sum()),
        **settings,
        max_length=max_length,
        init=None
        if report is None
        else {
            "initialized": len(report.initialized),
            "missing": len(report.missing),
            "unused": len(report.unused),
            "projection": report.projection,
            "table": dict(family_table.meta),  # type: ignore[union-attr]
        },
    )
    atomic_write_json(out_dir / "metrics.json", result)
    return result


def pretrain_protein_lm(
    plm: ProteinLM,
    records: Sequence[ProteinRecord],
    out_dir: str | Path,
    *,
    val_fraction: float = _D.val_fraction,
    max_length: int | None = _D.max_length,
    epochs: int = 5,  # a protein LM here is a small helper model, not the object of study
    batch_size: int = _D.batch_size,
    lr: float = _D.lr,
    seed: int = _D.seed,
    **run: Any,
) -> dict:
    """Pre-train a protein LM (e.g. :func:`~biostrata.models.protein_lm.small_protein_lm`) by masked
    residue prediction on ``records``, split at random by sequence. ``max_length`` counts residues;
    ``run``: the :data:`RUN_OPTIONS` of :func:`fit_masked_lm`."""
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction={val_fraction}: must be in (0, 1)")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(val_fraction * len(order)))
    if n_val >= len(order):
        raise InputError(
            f"{len(order)} protein sequence(s) split with val_fraction={val_fraction} (--val-fraction) into "
            f"{len(order) - n_val} for training and {min(n_val, len(order))} for validation; pre-training needs both, "
            "so give more sequences"
        )
    tokens = [plm.tokenize([r.sequence])[0] for r in records]
    out_dir = Path(out_dir)
    settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)  # for the fit and its record
    result = fit_masked_lm(
        plm,
        [tokens[i] for i in order[n_val:]],
        [tokens[i] for i in order[:n_val]],
        protein_masking_scheme(plm),
        out_dir,
        max_length=None if max_length is None else max_length + 2,
        keep_first=1,
        keep_last=1,
        **settings,
        **run,
    )
    plm.save(out_dir / "model.pt")
    result.update(
        model=plm.name,
        layers=plm.num_layers,
        embed_dim=plm.embed_dim,
        train_sequences=len(order) - n_val,
        val_sequences=n_val,
        **settings,
        max_length=max_length,
    )
    atomic_write_json(out_dir / "metrics.json", result)
    return result
