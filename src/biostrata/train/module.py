"""The Lightning module that trains a genome classifier.

Optimizers: Adam for the Euclidean model; Riemannian Adam (geoopt) for the hyperbolic one, with
three parameter groups: ordinary weights (lr, weight decay), manifold parameters (manifold_lr, no
weight decay), curvatures (curvature_lr, no weight decay). Optional linear warm-up of all rates
over warmup_epochs, then step decay by lr_gamma at the milestones (``train.optim.lr_factor``).
A non-finite loss or weight stops the run with a NumericalError naming where.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from geoopt import ManifoldParameter

from biostrata.config import TrainConfig
from biostrata.data.dna.alphabet import one_hot
from biostrata.errors import NumericalError
from biostrata.geometry.lorentz import Lorentz
from biostrata.models import build_model
from biostrata.train.metrics import classification_metrics
from biostrata.train.optim import RiemannianAdam, lr_factor


def parameter_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Split parameters into ordinary, manifold and curvature groups (empty groups dropped)."""
    curvature = {id(m.k): m.k for m in model.modules() if isinstance(m, Lorentz) and m.k.requires_grad}
    manifold, ordinary = [], []
    for p in model.parameters():
        if not p.requires_grad or id(p) in curvature:
            continue
        (manifold if isinstance(p, ManifoldParameter) else ordinary).append(p)
    groups = [
        {"name": "weights", "params": ordinary, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"name": "manifold", "params": manifold, "lr": cfg.manifold_lr, "weight_decay": 0.0},
        {"name": "curvature", "params": list(curvature.values()), "lr": cfg.curvature_lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def first_nonfinite(model: torch.nn.Module, x: torch.Tensor) -> str:
    """Where a forward pass first leaves the finite numbers: a parameter, or the output of a module
    (``forward`` or, for Lorentz layers, ``space``), with whether that module's inputs were finite."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            return f"parameter {name}"
    found: list[str] = []

    def check(name: str, module: torch.nn.Module, inputs: tuple, output) -> None:
        if not found and isinstance(output, torch.Tensor) and not torch.isfinite(output).all():
            ok = all(torch.isfinite(a).all() for a in inputs if isinstance(a, torch.Tensor))
            found.append(f"{name or 'the model'} ({type(module).__name__}; its inputs finite: {ok})")

    handles, wrapped = [], []
    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(lambda m, a, o, n=name: check(n, m, a, o)))
        if callable(getattr(module, "space", None)):
            original = module.space

            def space(*args, _f=original, _n=name, _m=module):
                out = _f(*args)
                check(_n + ".space", _m, args, out)
                return out

            module.space = space
            wrapped.append(module)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for module in wrapped:
            del module.space
    return found[0] if found else "no module output (the loss itself)"


def build_from_config(cfg: TrainConfig, length: int, num_classes: int) -> torch.nn.Module:
    """The model a config describes, for inputs of ``length`` and ``num_classes`` classes."""
    return build_model(
        cfg.model,
        length,
        num_classes,
        channels=cfg.channels,
        kernel_size=cfg.kernel_size,
        blocks=cfg.blocks,
        hidden=cfg.hidden,
        pool=cfg.pool,
        init_curvature=cfg.init_curvature,
        learn_curvature=cfg.learn_curvature,
        bn_warm_start=cfg.bn_warm_start,
        bn_max_radius=cfg.bn_max_radius,
    )


class GenomeClassifier(pl.LightningModule):
    """Wraps a model from ``biostrata.models``; batches are (indices (B, L) int8, labels)."""

    def __init__(self, cfg: TrainConfig, length: int, num_classes: int, steps_per_epoch: int = 1) -> None:
        super().__init__()
        self.cfg, self.length, self.num_classes = cfg, length, num_classes
        self.steps_per_epoch = steps_per_epoch  # batches per training epoch, for the per-step schedule
        self.model = build_from_config(cfg, length, num_classes)
        self._outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"val": [], "test": []}
        self.results: dict[str, dict[str, float]] = {}

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(one_hot(idx.long()))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        idx, y = batch
        loss = F.cross_entropy(self(idx), y)
        if not torch.isfinite(loss):
            where = first_nonfinite(self.model, one_hot(idx.long()))
            raise NumericalError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}, "
                f"first non-finite in {where} "
                f"(model {self.cfg.model}, lr {self.cfg.lr}, precision {self.cfg.precision}); no metric is "
                "reported. Try a lower learning rate (lr), float32 precision, or another seed."
            )
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        for name, p in self.named_parameters():
            if not torch.isfinite(p).all():
                raise NumericalError(
                    f"parameter {name} became non-finite after epoch {self.current_epoch}; "
                    "no metric is reported. Lower the learning rate."
                )
        for i, m in enumerate(m for m in self.modules() if isinstance(m, Lorentz)):
            self.log(f"curvature_{i}", m.curvature.detach(), on_step=False, on_epoch=True)

    def _eval_step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        idx, y = batch
        logits = self(idx)
        if not torch.isfinite(logits).all():
            raise NumericalError(f"non-finite logits on the {stage} split at epoch {self.current_epoch}")
        self._outputs[stage].append((logits.argmax(1).cpu(), y.cpu()))

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", batch)

    def test_step(self, batch, batch_idx):
        self._eval_step("test", batch)

    def _eval_end(self, stage: str) -> None:
        pred = torch.cat([p for p, _ in self._outputs[stage]]).numpy()
        true = torch.cat([t for _, t in self._outputs[stage]]).numpy()
        self._outputs[stage].clear()
        scores = classification_metrics(true, pred)
        self.results[stage] = scores
        for key, value in scores.items():
            self.log(f"{stage}_{key}", value, prog_bar=key == self.cfg.metric)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def configure_optimizers(self):
        cfg = self.cfg
        optimizer = make_optimizer(self.model, cfg)
        warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, self.steps_per_epoch, warmup, cfg.milestones, cfg.lr_gamma)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (multi-tensor) for a Euclidean model; Riemannian Adam for a hyperbolic one, whose
    batch-norm centres are pulled back within their radius after every step."""
    groups = parameter_groups(model, cfg)
    if model.manifold is None:
        return torch.optim.Adam(groups, foreach=True)  # multi-tensor, as the Riemannian one's Euclidean groups
    # stabilize=1: re-project the momentum onto the tangent space after every step; its float32
    # parallel transport drifts off it (momentum of a batch-norm centre grew to 1e14 by epoch 75 of
    # a prom_core_tata run with stabilize=10, then NaN)
    optimizer = RiemannianAdam(groups, stabilize=1)
    constrained = [m for m in model.modules() if hasattr(m, "clip_centre_")]
    if constrained:
        optimizer.register_step_post_hook(lambda *_: [m.clip_centre_() for m in constrained])
    return optimizer


def count_parameters(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
