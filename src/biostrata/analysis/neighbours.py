"""Mutual k-nearest-neighbour agreement between two representations of the same examples.

For representations ``X`` and ``Y`` of ``n`` examples, let ``N_X(i)`` be the ``k`` nearest
neighbours of example ``i`` in ``X`` (itself excluded; ties broken by index). The agreement is

    m_k(X, Y) = (1 / n) sum_i |N_X(i) ∩ N_Y(i)| / k,

in ``[0, 1]``: 1 when both representations rank every example's neighbours alike (e.g. ``Y`` an
orthogonal transform or an isotropic scaling of ``X``), about ``k / (n - 1)`` for unrelated ones.
Distances are ``euclidean`` or ``cosine`` (angle); neighbours are found in row blocks, so memory is
``block x n``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from biostrata.analysis.cka import ArrayLike, as_matrix
from biostrata.errors import InputError, ParameterError

__all__ = ["knn_indices", "mutual_knn", "mutual_knn_matrix", "METRICS"]

METRICS = ("euclidean", "cosine")


def knn_indices(x: ArrayLike, k: int = 10, metric: str = "euclidean", block: int = 1024) -> np.ndarray:
    """``[n, k]`` indices of each row's ``k`` nearest other rows, nearest first (ties: lower index)."""
    if metric not in METRICS:
        raise ParameterError("metric", f"metric={metric!r}: choose one of {', '.join(METRICS)}")
    x = as_matrix(x, name="x")
    n = len(x)
    if not 1 <= k < n:
        raise ParameterError("k", f"k={k}: must be between 1 and n - 1 = {n - 1}")
    if metric == "cosine":
        norm = x.norm(dim=1, keepdim=True)
        if (norm == 0).any():
            raise InputError(
                f"x: row {int(torch.nonzero(norm.squeeze(1) == 0)[0])} is zero; it has no angle (use euclidean)"
            )
        x = x / norm
    out = np.empty((n, k), dtype=np.int64)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        d = torch.cdist(x[lo:hi], x)
        d[torch.arange(hi - lo), torch.arange(lo, hi)] = float("inf")
        # a stable sort keeps equal distances in index order, so ties never depend on the block size
        out[lo:hi] = torch.sort(d, dim=1, stable=True).indices[:, :k].numpy()
    return out


def mutual_knn(x: ArrayLike, y: ArrayLike, k: int = 10, metric: str = "euclidean") -> float:
    """Mean fraction of shared ``k`` nearest neighbours (see module docstring)."""
    if len(x) != len(y):
        raise InputError(f"x has {len(x)} rows and y has {len(y)}; compare the same examples")
    a, b = knn_indices(x, k, metric), knn_indices(y, k, metric)
    return _agreement(a, b)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    n, k = a.shape
    shared = sum(len(np.intersect1d(a[i], b[i], assume_unique=True)) for i in range(n))
    return shared / (n * k)


def mutual_knn_matrix(
    reps_a: Mapping[str, ArrayLike],
    reps_b: Mapping[str, ArrayLike] | None = None,
    k: int = 10,
    metric: str = "euclidean",
) -> pd.DataFrame:
    """Mutual k-NN agreement between every representation of ``reps_a`` and every one of ``reps_b``
    (``reps_a`` itself when omitted); each neighbour list is computed once."""
    reps_b_ = reps_a if reps_b is None else reps_b
    lengths = {len(v) for v in [*reps_a.values(), *reps_b_.values()]}
    if len(lengths) != 1:
        raise InputError(f"representations have different numbers of rows {sorted(lengths)}; align them first")
    knn_a = {name: knn_indices(v, k, metric) for name, v in reps_a.items()}
    knn_b = knn_a if reps_b is None else {name: knn_indices(v, k, metric) for name, v in reps_b_.items()}
    values = [[_agreement(knn_a[i], knn_b[j]) for j in knn_b] for i in knn_a]
    return pd.DataFrame(values, index=list(knn_a), columns=list(knn_b))
