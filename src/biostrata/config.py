"""Typed experiment configs, read from and written to YAML.

A config file holds the fields of ``TrainConfig``; unknown keys are errors. Command-line options
override the file. The config used is saved beside every result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from biostrata.errors import InputError
from biostrata.io import atomic_write_text


@dataclass
class TrainConfig:
    """Training of one genome classifier. Defaults are those of Khan et al. (ICLR 2025)."""

    model: str = "hcnn-s"  # cnn | hcnn-s | hcnn-m
    length: int | None = None  # model input length; None: the longest train or dev sequence
    truncate: bool = False  # cut longer sequences to `length` instead of failing
    pool: str = "flatten"  # flatten (paper) | mean
    channels: int = 32
    kernel_size: int = 9
    blocks: int = 3
    hidden: int = 528
    init_curvature: float = 1.0
    learn_curvature: bool = True
    bn_warm_start: bool = True  # running batch-norm stats start from the first batches (False: reference)
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-5
    weight_decay: float = 0.1
    manifold_lr: float = 2e-2  # Riemannian parameters (batch-norm centres)
    curvature_lr: float = 1e-4  # curvatures: own group, no weight decay
    milestones: list[int] = field(default_factory=lambda: [60, 85])
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear lr warm-up over this many epochs (fractions allowed); 0: none (paper)
    patience: int | None = None  # early stopping on the validation metric; None: off
    metric: str = "mcc"  # model-selection metric on dev: mcc | f1 | accuracy
    seed: int = 1
    precision: str = "32-true"  # Lightning precision, e.g. bf16-mixed or 16-mixed on GPU
    accelerator: str = "auto"
    devices: str = "auto"
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        from biostrata.models import MODELS

        checks = [
            (self.model in MODELS, "model", f"one of {', '.join(MODELS)}"),
            (self.length is None or self.length >= 1, "length", "a positive integer"),
            (self.pool in ("flatten", "mean"), "pool", "'flatten' or 'mean'"),
            (self.metric in ("mcc", "f1", "accuracy"), "metric", "'mcc', 'f1' or 'accuracy'"),
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.batch_size >= 1, "batch_size", "at least 1"),
            (self.init_curvature > 0, "init_curvature", "> 0"),
            (min(self.lr, self.manifold_lr, self.curvature_lr) > 0, "lr", "> 0 (lr, manifold_lr, curvature_lr)"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.patience is None or self.patience >= 1, "patience", "at least 1, or unset"),
            (self.warmup_epochs >= 0, "warmup_epochs", ">= 0"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise InputError(f"config: {name}={getattr(self, name, None)!r} is invalid; expected {expected}")

    def to_yaml(self, path: str | Path) -> None:
        atomic_write_text(Path(path), yaml.safe_dump(asdict(self), sort_keys=False))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise InputError(f"{path}: config file not found") from None
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(values, dict):
            raise InputError(f"{path}: expected a mapping of config keys, found {type(values).__name__}")
        return cls.from_dict(values, str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class DemoSettings:
    """Size of the demo. The defaults run in a few minutes on 2 CPU cores."""

    leaves: int = 5000
    length: int = 200
    classes: int = 4
    tree: str = "balanced"
    height: float = 2.0
    epochs: int = 12
    lr: float = 1e-3
    delta_points: int = 600
    seed: int = 0
    progress: bool = True
    parallel: bool = True  # train the two models at once, one CPU thread each (CPU only)
