"""One training run: fit on train, select the best epoch on dev, evaluate that model once on test.

Files written in ``out_dir`` (each atomically):
- ``config.yaml``: the TrainConfig used;
- ``config.json`` and ``model.safetensors``: the best model (``save_pretrained``, family ``genome-cnn``:
  ``architecture``, ``geometry``, ``curvatures``) with ``class_labels`` and ``training`` (the TrainConfig)
  added, so that the run folder is a model folder (``biostrata.load(out_dir)``);
- ``curve.csv`` and ``test_curve.csv``: per-epoch learning curves (``train.curves``; training and
  selection never read the test curve);
- ``metrics.json``: ``dev_*`` and ``test_*`` (mcc, accuracy, f1) of the best epoch, ``best_epoch``
  (counted from 1, as the progress bar and ``curve.csv`` count), ``epochs_run``, ``stopped_early``
  (``patience`` ended the run before ``epochs``), ``params``, ``curvatures``, ``bn_clip_share`` (per Lorentz batch norm, the share of
  positions whose radius the clip moved at the best epoch, in training and on dev), ``wall_time_s``,
  ``code_version``, the CPU thread
  setting (``threads``, ``omp_wait_policy``) and the run's ``model``, ``seed``, ``length``,
  ``num_classes`` and ``class_labels`` (the data's label of each class of the model: labels need
  not run 0..C-1). It is removed when a run starts and written last: its presence marks a
  finished run. A run interrupted (Ctrl-C) or stopped by NaN writes none.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader

from biostrata.compat import moved
from biostrata.config import PRECISIONS, TrainConfig
from biostrata.data.dna.genome import SPLITS, EncodedSequences, Splits
from biostrata.errors import InputError, NumericalError
from biostrata.io import atomic_write_json
from biostrata.models.genome_cnn import load_model as load_genome_model
from biostrata.provenance import code_version
from biostrata.train.curves import LearningCurves, clip_summary, curvatures
from biostrata.train.module import GenomeClassifier, count_parameters
from biostrata.train.trainer import check_accelerator, interruptible, make_trainer

EVAL_BATCH = 512
# The flatten head has channels x length x hidden weights: past this many, a run would not fit in memory.
MAX_HEAD_WEIGHTS = 10**9


def _loader(data: EncodedSequences, batch_size: int, shuffle: bool, seed: int, workers: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=workers)


def train(cfg: TrainConfig, splits: Splits, out_dir: str | Path, callbacks: list[pl.Callback] | None = None) -> dict:
    """Train ``cfg.model`` on ``splits``; return (and write) the metrics of the best dev epoch.
    ``callbacks`` are added to the Lightning trainer (e.g. to report progress another way)."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    version = code_version()  # the code the run starts with
    check_accelerator(cfg.accelerator)
    labels = check_splits(splits)
    length = cfg.length or splits.max_length
    head = cfg.channels * length * cfg.hidden
    if cfg.pool == "flatten" and head > MAX_HEAD_WEIGHTS:
        raise InputError(
            f"{splits.train.source}: sequences of {length} bp make a flatten head of {head:,} weights, too many "
            "to train; use pool='mean', or cut the sequences with length=N and truncate"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").unlink(missing_ok=True)  # from here on, the run is not finished
    ckpt_dir = out_dir / "checkpoints"
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # an interrupted run's
    cfg.to_yaml(out_dir / "config.yaml")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    train_set, dev_set, test_set = (EncodedSequences(s, length, truncate=cfg.truncate, labels=labels) for s in splits)
    loaders = {
        "train": _loader(train_set, cfg.batch_size, True, cfg.seed, cfg.num_workers),
        "dev": _loader(dev_set, EVAL_BATCH, False, cfg.seed, cfg.num_workers),
        "test": _loader(test_set, EVAL_BATCH, False, cfg.seed, cfg.num_workers),
    }
    module = GenomeClassifier(cfg, length, len(labels), steps_per_epoch=len(loaders["train"]))
    monitor = f"val_{cfg.metric}"
    checkpoint = ModelCheckpoint(ckpt_dir, filename="best-{epoch}", monitor=monitor, mode="max", save_top_k=1)
    # the test curve gets a loader of its own: the one of the final test keeps its state untouched
    curves = LearningCurves(out_dir, _loader(test_set, EVAL_BATCH, False, cfg.seed, cfg.num_workers))
    callbacks = [checkpoint, curves, *(callbacks or [])]
    if cfg.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode="max", patience=cfg.patience))
    # one device unless asked: "auto" would start one process per GPU (DDP)
    trainer = make_trainer(out_dir, epochs=cfg.epochs, batches_per_epoch=len(loaders["train"]), callbacks=callbacks,
                           accelerator=cfg.accelerator, devices=1 if cfg.devices == "auto" else cfg.devices,
                           precision=PRECISIONS[cfg.precision], progress=cfg.progress, log_version="")  # fmt: skip
    with warnings.catch_warnings(), interruptible(trainer):
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        trainer.fit(module, loaders["train"], loaders["dev"])
        best_path = checkpoint.best_model_path
        trainer.validate(module, loaders["dev"], ckpt_path=best_path, verbose=False)
        trainer.test(module, loaders["test"], ckpt_path=best_path, verbose=False)
    match = re.search(r"epoch=(\d+)", Path(best_path).name)
    best = int(match.group(1)) + 1 if match else None  # Lightning's file names count epochs from 0
    best_row = next((r for r in curves.rows if r["epoch"] == best), {})
    metrics = {f"dev_{k}": v for k, v in module.results["val"].items()}
    metrics |= {f"test_{k}": v for k, v in module.results["test"].items()}
    metrics |= {
        "best_epoch": best,
        "epochs_run": int(trainer.current_epoch),
        "stopped_early": int(trainer.current_epoch) < cfg.epochs,
        "params": count_parameters(module.model),
        "curvatures": curvatures(module.model),
        "bn_clip_share": clip_summary(best_row),
        "model": cfg.model,
        "seed": cfg.seed,
        "length": length,
        "num_classes": len(labels),
        "class_labels": labels,
        "code_version": version,
        "threads": torch.get_num_threads(),  # the CPU thread setting the run used
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    nonfinite = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    nonfinite += ["curvatures"] if not all(map(math.isfinite, metrics["curvatures"])) else []
    if nonfinite:
        raise NumericalError(
            f"{', '.join(nonfinite)} of the run in {out_dir} came out NaN or infinite; no metric is reported. "
            "Try a lower learning rate (lr), float32 precision, or another seed."
        )
    module.model.save_pretrained(out_dir, class_labels=labels, training=asdict(cfg))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def check_splits(splits: Splits) -> list[int]:
    """The class labels of ``splits`` (``Splits.labels``) once the splits can train and evaluate a
    classifier: two labels at least in each split (with one, MCC is 0 whatever the model), no dev or test
    label unseen in training."""
    for name, part in zip(SPLITS, splits):
        if not len(part):
            raise InputError(f"{part.source or name}: the {name} split has no sequences; every split needs some")
        if len(seen := set(part.labels.tolist())) < 2:
            why = "to train a classifier" if name == "train" else "for its MCC and F1 to measure anything"
            raise InputError(
                f"{part.source}: every sequence of the {name} split has label {seen.pop()}; it needs two labels at "
                f"least {why}"
            )
    return splits.labels


def load_run(path: str | Path) -> tuple[torch.nn.Module, TrainConfig]:
    """The model of a ``train`` run (its folder, or a ``model.pt`` of earlier versions) in eval mode, and its
    config."""
    model, saved = load_genome_model(path)
    if "training" not in saved:
        raise InputError(f"{path}: a model without its training config; give the folder of a `biostrata train` run")
    return model, TrainConfig.from_saved(saved["training"], str(path))


# ``load_model`` was this function's name, and also that of models.genome_cnn.load_model (another return type)
__getattr__ = moved(__name__, {"load_model": "biostrata.train.run:load_run"})
