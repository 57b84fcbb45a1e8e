"""Genome CNNs of Hyperbolic Genome Embeddings (Khan, Chlenski, Pe'er, ICLR 2025): a Euclidean
CNN and its Lorentz twin with the same skeleton.

Skeleton, the same for both twins: one-hot (5, L) -> 3 residual blocks [conv(k=9, pad 4) -> BN ->
ReLU -> conv -> BN (+ block input from block 2 on) -> ReLU], 32 channels, no pooling -> head.
Head ``flatten``: all positions -> FC(528) -> ReLU -> classifier, as in the paper (size grows with
L); head ``mean``: average over positions (Lorentz centroid) -> FC(528) -> ReLU -> classifier (size
independent of L; not in the paper). Euclidean: linear classifier. Lorentz: input lifted with
x_0 = sqrt(k + |x|^2), Lorentz conv / batch norm / ReLU / FC, Lorentz MLR. Widths of the Lorentz
model count ambient dimensions (time + space), as in the reference, so "32 channels" is 31 space
dimensions plus time.

Which reference each choice follows (rrkhan/HGE @f76ee3e, with HyperbolicCV @fe1646d for the layers):
- the Lorentz ReLU between the FC and the MLR, as in HGE's ``HyperbolicCNN.forward``;
- batch norm: HyperbolicCV's ``LorentzBatchNorm`` (nested centroid, mean-distance spread, running
  mean kept as log_o), see ``nn.lorentz.LorentzBatchNorm1d``;
- ``hcnn-m``: block i's output enters block i + 1 (and the head) by exp_o^{K_i+1}(log_o^{K_i}(x)),
  as HGE does;
- the flatten follows Qu & Zou's direct concatenation, time sqrt(k + sum |x_s|^2), which HGE's
  ``lorentz_flatten`` gets wrong when K != 1 ((N - 1) / (-k) instead of -(N - 1) k); we keep the
  correct one;
- ``bn_warm_start`` (both twins; off is the reference) starts the running batch-norm statistics from
  the first batches instead of the initial values, so short runs evaluate sensibly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from biostrata.config import GENOME_GEOMETRY, GENOME_MODELS, LEGACY_RADIUS_CLIP
from biostrata.data.dna.alphabet import ALPHABET
from biostrata.errors import InputError, ParameterError
from biostrata.geometry.lorentz import Lorentz
from biostrata.models.layerwise import resolve_layers
from biostrata.models.pretrained import CONFIG, Pretrained, pretrained_config
from biostrata.nn.lorentz import (
    REFERENCE_RADIUS_CLIP,
    LorentzBatchNorm1d,
    LorentzConv1d,
    LorentzLinear,
    LorentzMLR,
    LorentzReLU,
    lorentz_mean,
)

#: The heads a genome CNN can have (``pool``): ``flatten``, the paper's, or ``mean`` (module docstring).
POOLS = ("flatten", "mean")


@dataclass(frozen=True)
class Skeleton:
    """The arguments the twins share, with the paper's values as defaults (the skeleton in the module
    docstring; Lorentz widths count time + space). Each twin takes them as keywords, e.g.
    ``HyperbolicCNN(200, 4, channels=16, pool="mean")``."""

    channels: int = 32
    kernel_size: int = 9
    blocks: int = 3
    hidden: int = 528
    pool: str = "flatten"  # one of POOLS
    bn_warm_start: bool = True


def _check(length: int, num_classes: int, pool: str) -> None:
    if length < 1:
        raise ParameterError("length", f"length={length}: must be at least 1")
    if num_classes < 2:
        raise ParameterError("num_classes", f"num_classes={num_classes}: must be at least 2")
    if pool not in POOLS:
        raise ParameterError("pool", f"pool={pool!r}: use {' or '.join(map(repr, POOLS))}")


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose running statistics can start warm: with ``warm_start`` the n-th
    training batch is averaged in with momentum max(momentum, 1/n), so the first batch replaces the
    initial (0, 1) and the first 1/momentum batches are a plain average, then the usual moving
    average. Training-mode outputs do not depend on it."""

    def __init__(self, num_features: int, warm_start: bool = True) -> None:
        super().__init__(num_features)
        self.warm_start, self.base_momentum = warm_start, self.momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.warm_start:  # this is batch num_batches_tracked + 1 (a saved buffer)
            self.momentum = max(self.base_momentum, 1.0 / (float(self.num_batches_tracked) + 1))
        return super().forward(x)


class GenomeCNN(Pretrained):
    """What the twins share as model files (family ``genome-cnn``, :mod:`biostrata.models.pretrained`):
    ``config.json`` holds ``architecture`` (the arguments of :func:`build_model`), ``geometry``
    (``euclidean`` / ``lorentz``) and ``curvatures`` (each Lorentz manifold's K, for the reader; the
    weights hold them), plus what the writer adds (``biostrata train``: ``class_labels`` and ``training``,
    the TrainConfig)."""

    family = "genome-cnn"

    def pretrained_config(self) -> dict:
        ks = [float(m.curvature.detach()) for m in self.modules() if isinstance(m, Lorentz)]
        return {"architecture": dict(self.architecture), "geometry": "lorentz" if ks else "euclidean", "curvatures": ks}

    @classmethod
    def from_config(cls, config: dict, tensors: dict, where: str) -> nn.Module:
        return _built(config["architecture"], tensors, where)


class EuclideanCNN(GenomeCNN, nn.Module):
    """The Euclidean reference CNN. ``embed`` returns each layer's states (the last: the FC(528)
    features after ReLU)."""

    manifold = None

    def __init__(self, length: int, num_classes: int, **skeleton: Any) -> None:
        """``skeleton``: keywords of :class:`Skeleton`."""
        super().__init__()
        s = Skeleton(**skeleton)
        _check(length, num_classes, s.pool)
        self.length, self.pool = length, s.pool
        # the arguments of build_model, which save_pretrained writes
        self.architecture = {"name": "cnn", "length": length, "num_classes": num_classes, **skeleton}
        channels, pad = s.channels, s.kernel_size // 2
        self.blocks = nn.ModuleList()
        for i in range(s.blocks):
            cin = len(ALPHABET) if i == 0 else channels
            self.blocks.append(
                nn.Sequential(
                    nn.Conv1d(cin, channels, s.kernel_size, padding=pad),
                    BatchNorm1d(channels, s.bn_warm_start),
                    nn.ReLU(),
                    nn.Conv1d(channels, channels, s.kernel_size, padding=pad),
                    BatchNorm1d(channels, s.bn_warm_start),
                )
            )
        features = channels * length if s.pool == "flatten" else channels
        self.fc = nn.Linear(features, s.hidden)
        self.classifier = nn.Linear(s.hidden, num_classes)

    @property
    def num_layers(self) -> int:
        """Layers 0 (the one-hot input), 1..blocks (block outputs), blocks + 1 (head features)."""
        return len(self.blocks) + 1

    def layer_manifold(self, layer: int) -> None:
        """Every layer is Euclidean."""
        resolve_layers([layer], self.num_layers)

    def embed(self, x: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """(B, 5, L) one-hot -> {layer: states}: layer 0 the input, i in 1..blocks block i's output
        (B, C, L), the last (-1) the head's features after FC and ReLU (B, hidden)."""
        want = resolve_layers(layers, self.num_layers)
        if not want:
            return {}
        out = {0: x} if 0 in want else {}
        for i, block in enumerate(self.blocks, 1):
            if max(want) < i:
                return out
            y = block(x)
            x = torch.relu(y + x if i > 1 else y)
            if i in want:
                out[i] = x
        if self.num_layers in want:
            out[self.num_layers] = torch.relu(self.fc(x.flatten(1) if self.pool == "flatten" else x.mean(2)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x)[self.num_layers])


class _LorentzBlock(nn.Module):
    def __init__(
        self, cin: int, cout: int, kernel_size: int, manifold: Lorentz, residual: bool, bn_warm_start: bool,
        bn_max_radius: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.manifold, self.residual = manifold, residual
        pad = kernel_size // 2
        bn = dict(warm_start=bn_warm_start, max_radius=bn_max_radius)
        self.conv1 = LorentzConv1d(cin, cout, kernel_size, manifold, pad)
        self.bn1 = LorentzBatchNorm1d(cout, manifold, **bn)
        self.conv2 = LorentzConv1d(cout, cout, kernel_size, manifold, pad)
        self.bn2 = LorentzBatchNorm1d(cout, manifold, **bn)

    def space(self, s: torch.Tensor) -> torch.Tensor:
        """Space part in, space part out (residual: space parts added, time implied)."""
        y = self.bn2.space(self.conv2.space(F.relu(self.bn1.space(self.conv1.space(s)))))
        return F.relu(y + s if self.residual else y)


class HyperbolicCNN(GenomeCNN, nn.Module):
    """The Lorentz twin (HCNN). ``curvature_mode="shared"`` (HCNN-S): one learnable curvature;
    ``"per_block"`` (HCNN-M): one per residual block plus one for the head, each starting at the
    curvature magnitude K = ``init_curvature``. ``embed`` returns each layer's points, time first, on the
    hyperboloid ``layer_manifold`` names. ``bn_max_radius``: the batch norms' clip of the rescaled radius
    (``nn.lorentz.LorentzBatchNorm1d``; the default 10 is the reference's cap, 5 the stricter clip of
    earlier versions). The mode's earlier keyword ``curvature=`` works for one more release, with a
    DeprecationWarning."""

    def __init__(
        self,
        length: int,
        num_classes: int,
        curvature_mode: Literal["shared", "per_block"] = "shared",
        init_curvature: float = 1.0,
        learn_curvature: bool = True,
        bn_max_radius: float = REFERENCE_RADIUS_CLIP,
        **skeleton: Any,
    ) -> None:
        """``skeleton``: keywords of :class:`Skeleton`."""
        super().__init__()
        if "curvature" in skeleton:  # the mode's name before this release
            warnings.warn(
                "HyperbolicCNN(curvature=...) is now HyperbolicCNN(curvature_mode=...); the old keyword goes in "
                "the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            curvature_mode = skeleton.pop("curvature")
        s = Skeleton(**skeleton)
        _check(length, num_classes, s.pool)
        if curvature_mode not in ("shared", "per_block"):
            raise ParameterError("curvature_mode", f"curvature_mode={curvature_mode!r}: use 'shared' or 'per_block'")
        self.length, self.pool, self.curvature_mode = length, s.pool, curvature_mode
        self.architecture = {
            "name": next(name for name, kw in MODELS.items() if kw.get("curvature_mode") == curvature_mode),
            "length": length,
            "num_classes": num_classes, "init_curvature": init_curvature, "learn_curvature": learn_curvature,
            "bn_max_radius": bn_max_radius, **skeleton,
        }  # fmt: skip
        n_manifolds = 1 if curvature_mode == "shared" else s.blocks + 1
        self.manifolds = nn.ModuleList(Lorentz(init_curvature, learn_curvature) for _ in range(n_manifolds))
        space = s.channels - 1
        self.blocks = nn.ModuleList(
            _LorentzBlock(
                len(ALPHABET) if i == 0 else space,
                space,
                s.kernel_size,
                self._manifold(i),
                i > 0,
                s.bn_warm_start,
                bn_max_radius,
            )
            for i in range(s.blocks)
        )
        features = space * length if s.pool == "flatten" else space
        self.fc = LorentzLinear(features, s.hidden - 1, self.manifold)
        self.relu = LorentzReLU(self.manifold)
        self.classifier = LorentzMLR(s.hidden - 1, num_classes, self.manifold)

    def _manifold(self, i: int) -> Lorentz:
        return self.manifolds[min(i, len(self.manifolds) - 1)]

    @property
    def manifold(self) -> Lorentz:
        """The head's manifold: the one the last layer's points are on."""
        return self.manifolds[-1]

    @property
    def num_layers(self) -> int:
        """Layers 0 (the lifted input), 1..blocks (block outputs), blocks + 1 (head features)."""
        return len(self.blocks) + 1

    def layer_manifold(self, layer: int) -> Lorentz:
        """The hyperboloid that layer ``layer``'s points are on: block i's for the input (i = 0) and
        block outputs, the head's for the last layer."""
        (i,) = resolve_layers([layer], self.num_layers)
        return self.manifold if i == self.num_layers else self._manifold(max(i - 1, 0))

    def embed(self, x: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """(B, 5, L) one-hot -> {layer: points, time first}: layer 0 the lifted input (B, 6, L), i in
        1..blocks block i's output (B, C, L) on block i's hyperboloid (before ``hcnn-m`` hands it to
        the next curvature), the last (-1) the head's features after FC and ReLU (B, hidden)."""
        want = resolve_layers(layers, self.num_layers)
        if not want:
            return {}
        s = x  # the one-hot is the space part of the lifted input, x_0 = sqrt(k + |x|^2)
        out = {0: self.layer_manifold(0).lift(s)} if 0 in want else {}
        for i, block in enumerate(self.blocks, 1):
            if max(want) < i:
                return out
            s = block.space(s)
            if i in want:
                out[i] = block.manifold.lift(s)
            s = block.manifold.carry(s, to=self._manifold(i))  # hcnn-m: exp_o^{K_i+1}(log_o^{K_i}(x))
        if self.num_layers in want:
            if self.pool == "flatten":  # Lorentz direct concatenation of all positions
                h = self.fc.space(s.flatten(1))
            else:
                h = self.fc.space(lorentz_mean(self.manifold.lift(s), self.manifold)[:, 1:])
            out[self.num_layers] = self.manifold.lift(self.relu.space(h))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x)[self.num_layers])


# arguments of the Lorentz twin alone, dropped when a cnn is built from the same keywords
HYPERBOLIC_ONLY = ("init_curvature", "learn_curvature", "bn_max_radius")
# how each of the names a TrainConfig accepts is built: its geometry (config.GENOME_GEOMETRY) picks the twin
MODELS = dict(zip(GENOME_MODELS, ({}, {"curvature_mode": "shared"}, {"curvature_mode": "per_block"}), strict=True))


def build_model(name: str, length: int, num_classes: int, **kwargs) -> nn.Module:
    """``cnn`` (Euclidean), ``hcnn-s`` (one curvature) or ``hcnn-m`` (one per block and head). The
    model keeps its arguments as ``model.architecture``: what ``save_pretrained`` writes."""
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if GENOME_GEOMETRY[name] == "euclidean":
        kwargs = {k: v for k, v in kwargs.items() if k not in HYPERBOLIC_ONLY}
        model = EuclideanCNN(length, num_classes, **kwargs)
    else:
        model = HyperbolicCNN(length, num_classes, **MODELS[name], **kwargs)
    return model


# /2: the reference's hyperbolic model (ReLU before the MLR, batch norm's running mean as log_o);
# /1 files hold the earlier hyperbolic model and are refused with a message. Files of this kind
# (``model.pt``) are read, no longer written: models are saved with ``save_pretrained``.
CHECKPOINT_FORMAT = "biostrata-genome-classifier/2"


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode, what was saved with it) from a ``biostrata train`` run folder or another
    ``save_pretrained`` folder, or from a ``model.pt`` of earlier versions (format /2, read with
    ``weights_only=True``). The dict holds ``architecture`` and, when the writer gave them,
    ``class_labels`` and ``training`` (the TrainConfig as a dict)."""
    path = Path(path)
    config = pretrained_config(path)
    if config is not None:
        return GenomeCNN._from_parsed(path, config), {k: v for k, v in config.items() if k != "biostrata"}
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise InputError(f"{path}: neither {CONFIG} nor model.pt; give {_EXPECTED}")
        path = path / "model.pt"
    if not path.is_file():
        raise InputError(f"{path}: no such model file; give {_EXPECTED}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a file that torch reads without running code: say what the file should be
        raise InputError(
            f"{path}: not a biostrata model file (torch.load: {type(err).__name__}); give {_EXPECTED}"
        ) from None
    saved = {k: v for k, v in blob.items() if k not in ("state_dict", "config")} if isinstance(blob, dict) else {}
    if isinstance(blob, dict) and "config" in blob:
        saved["training"] = blob["config"]
    return model_from_saved(blob, str(path)), saved


#: What :func:`load_model` takes, for its errors.
_EXPECTED = "the folder of a `biostrata train` run (config.json, model.safetensors) or a model.pt of earlier versions"


def model_from_saved(blob: object, where: str) -> nn.Module:
    """The model (eval mode) of a dict read from a ``model.pt`` of earlier versions (format /2); ``where``
    names the file in errors."""
    found = blob.get("format") if isinstance(blob, dict) else None
    if found == "biostrata-genome-classifier/1":
        raise InputError(
            f"{where}: written by an earlier biostrata (format /1), whose hyperbolic model differs from the "
            "reference's (no ReLU before the MLR, another batch norm); train the model again"
        )
    if found != CHECKPOINT_FORMAT:
        lightning = isinstance(blob, dict) and "pytorch-lightning_version" in blob
        what = "a Lightning training checkpoint" if lightning else f"format {found!r}" if found else "no format"
        raise InputError(
            f"{where}: not a biostrata model file ({what}; expected {CHECKPOINT_FORMAT}); give {_EXPECTED}"
        )
    try:
        arch = dict(blob["architecture"])
        # a hyperbolic model written before the clip was an argument: trained with the stricter one
        if GENOME_GEOMETRY.get(arch["name"]) != "euclidean":
            arch.setdefault("bn_max_radius", LEGACY_RADIUS_CLIP)
        return _built(arch, blob["state_dict"], where)
    except (KeyError, TypeError) as err:
        raise InputError(
            f"{where}: a damaged model file ({type(err).__name__}: {err}); train the model again"
        ) from None


def _built(architecture: dict, state: dict, where: str) -> nn.Module:
    """The model of ``build_model``'s arguments with ``state`` loaded, in eval mode."""
    arch = dict(architecture)
    model = build_model(arch.pop("name"), arch.pop("length"), arch.pop("num_classes"), **arch)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(
            f"{where}: weights do not fit the architecture it declares ({err}); train the model again"
        ) from None
    return model.eval()
