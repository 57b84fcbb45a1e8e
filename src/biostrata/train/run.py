"""One training run: fit on train, select the best epoch on dev, evaluate that model once on test.

Files written in ``out_dir`` (each atomically):
- ``config.yaml``: the TrainConfig used;
- ``model.pt``: the best model, written by ``models.genome_cnn.save_model`` (``format``,
  ``architecture``, ``state_dict``) with the training ``config`` (dict) added;
- ``metrics.json``: ``dev_*`` and ``test_*`` (mcc, accuracy, f1) of the best epoch, ``best_epoch``,
  ``epochs_run``, ``params``, ``curvatures``, ``wall_time_s``, ``code_version``, the CPU thread
  setting (``threads``, ``omp_wait_policy``) and the run's ``model``, ``seed``, ``length``,
  ``num_classes``. It is written last: its presence marks a
  finished run.
"""

from __future__ import annotations

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

from biostrata.config import TrainConfig
from biostrata.data.genome import EncodedSequences, Splits
from biostrata.errors import InputError
from biostrata.geometry.lorentz import Lorentz
from biostrata.io import atomic_write_json
from biostrata.models.genome_cnn import load_model as load_genome_model
from biostrata.models.genome_cnn import save_model
from biostrata.provenance import code_version
from biostrata.train.module import GenomeClassifier, count_parameters
from biostrata.train.trainer import make_trainer

EVAL_BATCH = 512


def _loader(data: EncodedSequences, batch_size: int, shuffle: bool, seed: int, workers: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=workers)


def train(cfg: TrainConfig, splits: Splits, out_dir: str | Path, callbacks: list[pl.Callback] | None = None) -> dict:
    """Train ``cfg.model`` on ``splits``; return (and write) the metrics of the best dev epoch.
    ``callbacks`` are added to the Lightning trainer (e.g. to report progress another way)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    version = code_version()  # the code the run starts with
    length = cfg.length or splits.max_length
    num_classes = splits.num_classes
    if num_classes < 2:
        raise InputError(f"{splits.train.source}: only one class found; classification needs labels 0 and 1 at least")
    cfg.to_yaml(out_dir / "config.yaml")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    train_set, dev_set, test_set = (EncodedSequences(s, length, truncate=cfg.truncate) for s in splits)
    loaders = {
        "train": _loader(train_set, cfg.batch_size, True, cfg.seed, cfg.num_workers),
        "dev": _loader(dev_set, EVAL_BATCH, False, cfg.seed, cfg.num_workers),
        "test": _loader(test_set, EVAL_BATCH, False, cfg.seed, cfg.num_workers),
    }
    module = GenomeClassifier(cfg, length, num_classes, steps_per_epoch=len(loaders["train"]))
    monitor = f"val_{cfg.metric}"
    ckpt_dir = out_dir / "checkpoints"
    checkpoint = ModelCheckpoint(ckpt_dir, filename="best-{epoch}", monitor=monitor, mode="max", save_top_k=1)
    callbacks = [checkpoint, *(callbacks or [])]
    if cfg.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode="max", patience=cfg.patience))
    # one device unless asked: "auto" would start one process per GPU (DDP)
    trainer = make_trainer(out_dir, epochs=cfg.epochs, batches_per_epoch=len(loaders["train"]), callbacks=callbacks,
                           accelerator=cfg.accelerator, devices=1 if cfg.devices == "auto" else cfg.devices,
                           precision=cfg.precision, progress=cfg.progress, log_version="")  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*Checkpoint directory.*exists and is not empty.*")
        trainer.fit(module, loaders["train"], loaders["dev"])
        best_path = checkpoint.best_model_path
        trainer.validate(module, loaders["dev"], ckpt_path=best_path, verbose=False)
        trainer.test(module, loaders["test"], ckpt_path=best_path, verbose=False)
    match = re.search(r"epoch=(\d+)", Path(best_path).name)
    metrics = {f"dev_{k}": v for k, v in module.results["val"].items()}
    metrics |= {f"test_{k}": v for k, v in module.results["test"].items()}
    metrics |= {
        "best_epoch": int(match.group(1)) if match else None,
        "epochs_run": int(trainer.current_epoch),
        "params": count_parameters(module.model),
        "curvatures": [float(m.curvature.detach()) for m in module.model.modules() if isinstance(m, Lorentz)],
        "model": cfg.model,
        "seed": cfg.seed,
        "length": length,
        "num_classes": num_classes,
        "code_version": version,
        "threads": torch.get_num_threads(),  # the CPU thread setting the run used
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    save_model(module.model, out_dir / "model.pt", config=asdict(cfg))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def load_model(path: str | Path) -> tuple[torch.nn.Module, TrainConfig]:
    """The model of a ``train`` run (``model.pt`` or its folder) in eval mode, and its config."""
    model, blob = load_genome_model(path)
    return model, TrainConfig.from_dict(blob["config"], str(path))
