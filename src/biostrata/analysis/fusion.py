"""Combining two models' features: align by domain, concatenate or fuse, pool per cluster.

Per-position features of two models (e.g. a protein LM's embedding of each domain's protein
segment, and a domain LM's state at each domain position of a BGC) are joined **by domain**, never
by truncating one list to the other's length (which silently pairs unrelated domains as soon as one
model sees a domain the other does not):

- ``order``: the longest common subsequence of the two domain lists (both in genomic order); a
  domain is paired with one of the same name, order preserved, and unmatched ones are left out;
- ``occurrence``: the k-th occurrence of a domain in one list with its k-th occurrence in the other
  (for lists whose order is not genomic, e.g. a domain table sorted by family).

Then features are concatenated (:func:`aligned_concat`) or fused by a learned projection
(:class:`ProjectionFusion`: each model's features are projected to a shared ``dim``-wide space,
layer-normed, and mixed by a learned gate, ``z = g * P_a x_a + (1 - g) * P_b x_b`` with
``g = sigmoid(W [P_a x_a; P_b x_b])``, followed by an MLP head; trained end to end on the probe
labels). :func:`pool` averages (or max-pools) per-position rows into one row per cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from biostrata.analysis.probes import ProbeBase
from biostrata.data.clusters.domains import align_occurrences
from biostrata.errors import InputError, ParameterError

__all__ = [
    "ALIGNMENTS",
    "align_domains",
    "aligned_concat",
    "pool",
    "concat_features",
    "GatedFusionNet",
    "ProjectionFusion",
]

ALIGNMENTS = ("order", "occurrence")


def align_domains(a: Sequence[Hashable], b: Sequence[Hashable], method: str = "order") -> np.ndarray:
    """Index pairs ``[m, 2]`` pairing the domains of two lists (see module docstring for ``method``):
    ``a[i] == b[j]`` for each row ``(i, j)``, rows in increasing ``i`` (and ``j``, for ``order``), each
    index used at most once."""
    if method not in ALIGNMENTS:
        raise ParameterError("method", f"method={method!r}: choose one of {', '.join(ALIGNMENTS)}")
    if method == "occurrence":
        return align_occurrences(a, b)
    # longest common subsequence; row i+1 of the table is a running maximum over row i
    codes: dict[Hashable, int] = {}
    ca = np.array([codes.setdefault(x, len(codes)) for x in a], dtype=np.int64)
    cb = np.array([codes.get(x, -1) for x in b], dtype=np.int64)
    table = np.zeros((len(a) + 1, len(b) + 1), dtype=np.int64)
    for i in range(len(a)):
        step = np.maximum(table[i, 1:], table[i, :-1] + (cb == ca[i]))
        table[i + 1, 1:] = np.maximum.accumulate(step)
    pairs = []
    i, j = len(a), len(b)
    while i > 0 and j > 0:
        if ca[i - 1] == cb[j - 1] and table[i, j] == table[i - 1, j - 1] + 1:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i - 1, j] >= table[i, j - 1]:
            i -= 1
        else:
            j -= 1
    return np.array(pairs[::-1], dtype=np.int64).reshape(-1, 2)


def aligned_concat(
    features_a: np.ndarray,
    keys_a: Sequence[Hashable],
    features_b: np.ndarray,
    keys_b: Sequence[Hashable],
    method: str = "order",
) -> tuple[np.ndarray, np.ndarray]:
    """``([m, d_a + d_b], pairs [m, 2])``: rows of both models' features at the domains paired by
    :func:`align_domains` (``features_x[i]`` belongs to ``keys_x[i]``)."""
    fa, fb = np.asarray(features_a), np.asarray(features_b)
    for name, f, keys in (("a", fa, keys_a), ("b", fb, keys_b)):
        if f.ndim != 2 or len(f) != len(keys):
            raise InputError(
                f"features_{name} must be [positions, features] with one row per key; got {f.shape} for {len(keys)} keys"
            )
    pairs = align_domains(keys_a, keys_b, method)
    return np.concatenate([fa[pairs[:, 0]], fb[pairs[:, 1]]], 1), pairs


def pool(
    features: np.ndarray, segments: Sequence[int] | np.ndarray, how: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """One row per segment: ``segments[i]`` names the cluster of row ``i``. Returns ``(segment ids
    in order of first appearance, pooled [n_segments, d])``; ``how`` is ``mean`` or ``max``."""
    if how not in ("mean", "max"):
        raise ParameterError("how", f"how={how!r}: choose 'mean' or 'max'")
    x = np.asarray(features, dtype=np.float64)
    seg = np.asarray(segments)
    if x.ndim != 2 or len(x) != len(seg):
        raise InputError(f"features {x.shape} and segments ({len(seg)}) must have one entry per row")
    ids, first, inverse = np.unique(seg, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    inv = rank[inverse]
    out = np.zeros((len(ids), x.shape[1]))
    if how == "mean":
        np.add.at(out, inv, x)
        out /= np.bincount(inv, minlength=len(ids))[:, None]
    else:
        out[:] = -np.inf
        np.maximum.at(out, inv, x)
    return ids[order], out


def concat_features(*blocks: np.ndarray) -> np.ndarray:
    """Column-wise concatenation of feature blocks of the same rows."""
    arrays = [np.asarray(b, dtype=np.float64) for b in blocks]
    if not arrays or any(a.ndim != 2 for a in arrays):
        raise InputError("concat_features: give 2-d arrays [rows, features]")
    rows = {len(a) for a in arrays}
    if len(rows) != 1:
        raise InputError(f"blocks have different numbers of rows {sorted(rows)}; align them first (never truncate)")
    return np.concatenate(arrays, 1)


class _Gated(nn.Module):
    def __init__(self, da: int, db: int, dim: int, hidden: int, out: int, dropout: float) -> None:
        super().__init__()
        self.da = da
        self.pa = nn.Sequential(nn.Linear(da, dim), nn.LayerNorm(dim))
        self.pb = nn.Sequential(nn.Linear(db, dim), nn.LayerNorm(dim))
        self.gate = nn.Linear(2 * dim, dim)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))

    def fuse(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.pa(x[:, : self.da]), self.pb(x[:, self.da :])
        g = torch.sigmoid(self.gate(torch.cat([a, b], 1)))
        return g * a + (1 - g) * b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fuse(x))


@dataclass(eq=False, repr=False)  # the estimators' parameters; eq and repr stay scikit-learn's
class _Gating:
    """What the gated network and its probe share: ``split`` (width of ``x_a`` in ``[x_a | x_b]``),
    the projection ``dim``, the head's ``hidden`` width, and full-batch Adam training."""

    split: int
    dim: int = 64
    hidden: int = 128
    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    patience: int = 20


@dataclass(eq=False, repr=False)
class GatedFusionNet(_Gating, ClassifierMixin, BaseEstimator):
    """The gated projection network on raw features ``[x_a | x_b]`` (``split`` = width of ``x_a``),
    trained full-batch with Adam; the epoch of lowest loss on a held-out ``val_fraction`` is kept
    (training stops ``patience`` epochs after it). Labels: codes ``0..C-1`` or a 0/1 matrix."""

    val_fraction: float = 0.1
    random_state: int = 0

    def fit(self, X: np.ndarray, y: np.ndarray) -> GatedFusionNet:
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
        if not 0 < self.split < X.shape[1]:
            raise ParameterError(
                "split", f"split={self.split}: must lie strictly between 0 and the {X.shape[1]} feature columns"
            )
        self.multilabel_ = y.ndim == 2
        self.classes_ = np.arange(y.shape[1]) if self.multilabel_ else np.unique(y)
        target = (
            torch.as_tensor(y, dtype=torch.float32)
            if self.multilabel_
            else torch.as_tensor(np.searchsorted(self.classes_, y), dtype=torch.long)
        )
        gen = torch.Generator().manual_seed(self.random_state)
        torch.manual_seed(self.random_state)
        self.net_ = _Gated(self.split, X.shape[1] - self.split, self.dim, self.hidden, len(self.classes_), self.dropout)
        order = torch.randperm(len(X), generator=gen)
        n_val = int(round(self.val_fraction * len(X))) if len(X) >= 20 else 0
        val, train = order[:n_val], order[n_val:]
        x = torch.as_tensor(X)
        loss_fn = nn.BCEWithLogitsLoss() if self.multilabel_ else nn.CrossEntropyLoss()
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best, best_state, since = float("inf"), None, 0
        for _ in range(self.epochs):
            self.net_.train()
            opt.zero_grad()
            loss = loss_fn(self.net_(x[train]), target[train])
            loss.backward()
            opt.step()
            if n_val:
                self.net_.eval()
                with torch.no_grad():
                    val_loss = float(loss_fn(self.net_(x[val]), target[val]))
                if val_loss < best - 1e-6:
                    best, best_state, since = val_loss, copy.deepcopy(self.net_.state_dict()), 0
                else:
                    since += 1
                    if since > self.patience:
                        break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        self.net_.eval()
        return self

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = self.net_(torch.as_tensor(np.asarray(X, dtype=np.float32)))
        p = torch.sigmoid(logits) if self.multilabel_ else torch.softmax(logits, 1)
        return p.double().numpy()

    @torch.no_grad()
    def transform(self, X: np.ndarray) -> np.ndarray:
        """The fused features ``z`` ``[n, dim]``."""
        return self.net_.fuse(torch.as_tensor(np.asarray(X, dtype=np.float32))).double().numpy()


@dataclass(eq=False, repr=False)
class ProjectionFusion(_Gating, ProbeBase):
    """Probe on two models' features fused by a learned gated projection (see module docstring).
    ``X = [x_a | x_b]`` column-wise, ``split`` = width of ``x_a``; features are standardized first."""

    standardize: bool = True
    random_state: int = 0

    def _network(self, task: str, **params: object) -> GatedFusionNet:
        gating = {f.name: getattr(self, f.name) for f in fields(_Gating)}
        return GatedFusionNet(**gating, random_state=self.random_state)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Fused features ``[n, dim]`` of new rows."""
        steps = getattr(self.model_, "steps", None)
        x = np.asarray(X, dtype=np.float64)
        if steps:
            x = steps[0][1].transform(x)
            return steps[-1][1].transform(x)
        return self.model_.transform(x)
