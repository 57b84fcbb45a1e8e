"""Centered kernel alignment (CKA) between representations of the same n examples.

For Gram matrices ``K = k(X, X)`` and ``L = k(Y, Y)`` (``n x n``),

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).

Two HSIC estimators (Kornblith et al. 2019; Song et al. 2012):

- biased: ``HSIC_b = tr(K H L H) / (n - 1)^2`` with ``H = I - 11^T / n``;
- debiased (unbiased HSIC), with ``K~``, ``L~`` the Gram matrices with their diagonals set to 0:
  ``HSIC_u = [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n - 1)(n - 2)) - 2 1^T K~ L~ 1 / (n - 2)] / (n (n - 3))``.
  It is near 0 for independent representations even when they have many more dimensions than
  examples, where the biased CKA is large (needs ``n >= 4``).

Kernels: ``linear`` ``k(x, y) = x.y``; ``rbf`` ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))`` with
``sigma = sigma_frac * median pairwise distance`` (the median over up to 2,000 rows, seeded).

Every HSIC above is a function of a few sums over examples, so it can be computed without any
``n x n`` matrix. Linear kernel, for representations ``X`` and ``Y`` (rows ``x_i``, ``y_i``):
``G = X^T Y``, ``s = sum x_i``, ``t = sum y_i``, ``a = sum |x_i|^2 |y_i|^2``,
``u = sum |y_i|^2 x_i``, ``v = sum |x_i|^2 y_i``; then ``tr(K~ L~) = |G|_F^2 - a``,
``1^T K~ 1 = |s|^2 - sum |x_i|^2`` and ``1^T K~ L~ 1 = s^T G t - u.s - v.t + a``, while the biased
estimate is ``|X^T Y - s t^T / n|_F^2`` up to the factor ``(n - 1)^-2``. :class:`LinearCKA`
accumulates these sums minibatch by minibatch (in float64, on features shifted by the first batch's
mean, which changes neither estimate), for any number of representations at once. Other kernels
are computed in row blocks from ``sum K o L``, the row sums ``K 1`` and the diagonals
(:func:`kernel_cka_matrix`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from biostrata.compat import moved
from biostrata.errors import InputError, NumericalError, ParameterError
from biostrata.geometry.distances import as_points

__all__ = [
    "as_matrix",
    "gram_linear",
    "gram_rbf",
    "median_distance",
    "hsic",
    "cka",
    "LinearCKA",
    "kernel_cka_matrix",
    "cka_matrix",
    "cka_curve",
    "is_constant",
    "KERNELS",
]

KERNELS = ("linear", "rbf")
ArrayLike = np.ndarray | torch.Tensor


def as_matrix(x: ArrayLike, *, name: str = "x") -> torch.Tensor:
    """``x`` as a finite 2-d float64 CPU tensor (any numpy layout, e.g. a reversed view)."""
    return as_points(x if isinstance(x, torch.Tensor) else np.ascontiguousarray(x), name=name)


def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ParameterError("kernel", f"kernel={kernel!r}: choose one of {', '.join(KERNELS)}")


def gram_linear(x: ArrayLike) -> torch.Tensor:
    """``K = X X^T`` (float64)."""
    x = as_matrix(x, name="x")
    return x @ x.T


def median_distance(x: ArrayLike, max_rows: int = 2000, seed: int = 0) -> float:
    """Median Euclidean distance between distinct rows (over a seeded sample of ``max_rows`` rows)."""
    x = as_matrix(x, name="x")
    if len(x) > max_rows:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))
        x = x[torch.as_tensor(idx)]
    d = torch.cdist(x, x)
    iu = torch.triu_indices(len(x), len(x), 1)
    return float(d[iu[0], iu[1]].median()) if len(x) > 1 else 0.0


def gram_rbf(x: ArrayLike, sigma: float | None = None, sigma_frac: float = 1.0) -> torch.Tensor:
    """``K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2))``; ``sigma`` defaults to ``sigma_frac`` x the median distance."""
    x = as_matrix(x, name="x")
    sigma = _sigma(x, sigma, sigma_frac)
    return torch.exp(-torch.cdist(x, x).square() / (2 * sigma**2))


def _sigma(x: torch.Tensor, sigma: float | None, sigma_frac: float) -> float:
    if sigma is None:
        sigma = sigma_frac * median_distance(x)
    if not sigma > 0:
        raise InputError(f"RBF bandwidth sigma={sigma} must be > 0 (are all rows identical?)")
    return float(sigma)


def _hsic_from_sums(
    n: int, kl: float, ks: float, ls: float, kd: float, ld: float, kdld: float, rows: float, debiased: bool
) -> float:
    """HSIC from ``kl = sum K o L``, ``ks = 1^T K 1``, ``kd = tr K``, ``kdld = sum K_ii L_ii`` (and the
    same for L) and ``rows``: ``(K 1)^T (L 1)`` for the biased estimate, ``1^T K~ L~ 1`` for the debiased one."""
    if not debiased:
        return (kl - 2.0 * rows / n + ks * ls / n**2) / (n - 1) ** 2
    if n < 4:
        raise InputError(f"the debiased HSIC needs at least 4 examples, got {n}")
    t1 = kl - kdld  # tr(K~ L~)
    sk, sl = ks - kd, ls - ld  # 1^T K~ 1, 1^T L~ 1
    return (t1 + sk * sl / ((n - 1) * (n - 2)) - 2.0 * rows / (n - 2)) / (n * (n - 3))


def _hsic_from_parts(n: int, kl: float, k1: torch.Tensor, l1: torch.Tensor, dk: torch.Tensor, dl: torch.Tensor,
                     debiased: bool) -> float:  # fmt: skip
    """HSIC from ``kl = sum K o L``, the row sums ``k1 = K 1``, ``l1 = L 1`` and the diagonals ``dk``, ``dl``."""
    rows = float((k1 - dk) @ (l1 - dl)) if debiased else float(k1 @ l1)
    sums = (float(k1.sum()), float(l1.sum()), float(dk.sum()), float(dl.sum()), float(dk @ dl))
    return _hsic_from_sums(n, kl, *sums, rows, debiased)


def hsic(gram_x: ArrayLike, gram_y: ArrayLike, debiased: bool = False) -> float:
    """HSIC of two ``n x n`` Gram matrices K = ``gram_x``, L = ``gram_y`` (biased or debiased; see the module
    docstring)."""
    gx, gy = as_matrix(gram_x, name="K"), as_matrix(gram_y, name="L")
    n = gx.shape[0]
    if gx.shape != (n, n) or gy.shape != (n, n):
        raise InputError(f"K and L must be square and of the same size, got {tuple(gx.shape)} and {tuple(gy.shape)}")
    return _hsic_from_parts(
        n, float((gx * gy).sum()), gx.sum(1), gy.sum(1), torch.diagonal(gx), torch.diagonal(gy), debiased
    )


def _ratio(xy: float, xx: float, yy: float) -> float:
    """CKA from HSIC(K, L) = ``xy``, HSIC(K, K) = ``xx`` and HSIC(L, L) = ``yy``: xy / sqrt(xx yy)."""
    if xx <= 0 or yy <= 0:
        return float("nan")  # a constant representation (or a debiased self-HSIC <= 0): undefined
    return xy / float(np.sqrt(xx * yy))


def cka(x: ArrayLike, y: ArrayLike, kernel: str = "linear", debiased: bool = False, sigma_frac: float = 1.0) -> float:
    """CKA between representations ``x [n, p]`` and ``y [n, q]`` of the same ``n`` examples."""
    _check_kernel(kernel)
    x, y = as_matrix(x, name="x"), as_matrix(y, name="y")
    if len(x) != len(y):
        raise InputError(f"x has {len(x)} rows and y has {len(y)}; CKA compares the same examples")
    if kernel == "linear" and len(x) > x.shape[1] + y.shape[1]:  # feature space smaller than n x n
        acc = LinearCKA([x.shape[1], y.shape[1]])
        acc.update(x, y)
        return float(acc.matrix(debiased)[0, 1])
    return float(kernel_cka_matrix([x, y], kernel, debiased=debiased, sigma_frac=sigma_frac)[0, 1])


class LinearCKA:
    """Linear-kernel HSIC and CKA between several representations, accumulated over minibatches.

    ``LinearCKA([p1, p2, ...])`` for representations of widths ``p1, p2, ...``; ``update(x1, x2, ...)``
    with one batch of the same rows of each; ``matrix(debiased)`` gives the CKA between every pair.
    The result does not depend on how the rows are cut into batches (see the module docstring).
    """

    def __init__(self, dims: Sequence[int]) -> None:
        dims = [int(d) for d in dims]
        if not dims or min(dims) < 1:
            raise ParameterError("dims", f"dims={dims}: give the (positive) width of each representation")
        self.dims = dims
        self.offsets = np.concatenate([[0], np.cumsum(dims)])
        total, b = int(self.offsets[-1]), len(dims)
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.gram = torch.zeros(total, total, dtype=torch.float64)  # Z^T Z
        self.sums = torch.zeros(total, dtype=torch.float64)  # sum z_i
        self.norm_products = torch.zeros(b, b, dtype=torch.float64)  # sum |x_i^b|^2 |x_i^c|^2
        self.norm_weighted = torch.zeros(b, total, dtype=torch.float64)  # sum |x_i^b|^2 z_i

    def update(self, *batches: ArrayLike) -> LinearCKA:
        """Add one minibatch: the same rows of each representation, in the order given to ``__init__``."""
        if len(batches) != len(self.dims):
            raise InputError(f"update needs {len(self.dims)} arrays (one per representation), got {len(batches)}")
        parts = [as_matrix(x, name=f"representation {i}") for i, x in enumerate(batches)]
        rows = {len(p) for p in parts}
        if len(rows) != 1:
            raise InputError(f"the batches have different numbers of rows {sorted(rows)}; pass the same examples")
        widths = [p.shape[1] for p in parts]
        if widths != self.dims:
            raise InputError(f"batch widths {widths} differ from the declared dims {self.dims}")
        z = torch.cat(parts, 1)
        if self.shift is None:
            self.shift = z.mean(0)
        z = z - self.shift
        q = torch.stack([z[:, a:b].square().sum(1) for a, b in zip(self.offsets[:-1], self.offsets[1:])], 1)
        self.n += len(z)
        self.gram += z.T @ z
        self.sums += z.sum(0)
        self.norm_products += q.T @ q
        self.norm_weighted += q.T @ z
        return self

    def hsic_matrix(self, debiased: bool = False) -> np.ndarray:
        """HSIC between every pair of representations, ``[B, B]``."""
        n, o = self.n, self.offsets
        if n < 2:
            raise InputError(f"HSIC needs at least 2 examples, got {n}")
        if debiased and n < 4:
            raise InputError(f"the debiased HSIC needs at least 4 examples, got {n}")
        b = len(self.dims)
        out = np.zeros((b, b))
        for i in range(b):
            for j in range(i, b):
                si, sj = slice(o[i], o[i + 1]), slice(o[j], o[j + 1])
                g, s, t = self.gram[si, sj], self.sums[si], self.sums[sj]
                if not debiased:
                    value = float((g - torch.outer(s, t) / n).square().sum()) / (n - 1) ** 2
                else:
                    a = float(self.norm_products[i, j])
                    rows = (
                        float(s @ g @ t)
                        - float(self.norm_weighted[j, si] @ s)
                        - float(self.norm_weighted[i, sj] @ t)
                        + a
                    )
                    kd, ld = float(torch.trace(self.gram[si, si])), float(torch.trace(self.gram[sj, sj]))
                    value = _hsic_from_sums(
                        n, float(g.square().sum()), float(s @ s), float(t @ t), kd, ld, a, rows, True
                    )
                out[i, j] = out[j, i] = value
        return out

    def matrix(self, debiased: bool = False) -> np.ndarray:
        """CKA between every pair of representations, ``[B, B]`` (NaN where one is constant)."""
        h = self.hsic_matrix(debiased)
        d = np.diag(h)
        out = np.array([[_ratio(h[i, j], d[i], d[j]) for j in range(len(d))] for i in range(len(d))])
        return out


def kernel_cka_matrix(
    reps: Sequence[ArrayLike],
    kernel: str = "rbf",
    debiased: bool = False,
    sigma_frac: float = 1.0,
    block: int = 1024,
) -> np.ndarray:
    """CKA between every pair of representations with a (non-linear) kernel, in row blocks of the Gram
    matrices (memory ``block x n`` per representation, never ``n x n``)."""
    _check_kernel(kernel)
    xs = [as_matrix(x, name=f"representation {i}") for i, x in enumerate(reps)]
    n = len(xs[0])
    if any(len(x) != n for x in xs):
        raise InputError(f"representations have different numbers of rows {[len(x) for x in xs]}")
    sigmas = [_sigma(x, None, sigma_frac) for x in xs] if kernel == "rbf" else [1.0] * len(xs)

    def gram_rows(x: torch.Tensor, sigma: float, lo: int, hi: int) -> torch.Tensor:
        if kernel == "linear":
            return x[lo:hi] @ x.T
        return torch.exp(-torch.cdist(x[lo:hi], x).square() / (2 * sigma**2))

    b = len(xs)
    kl = np.zeros((b, b))
    row_sums = [torch.zeros(n, dtype=torch.float64) for _ in xs]
    diags = [torch.zeros(n, dtype=torch.float64) for _ in xs]
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        ks = [gram_rows(x, s, lo, hi) for x, s in zip(xs, sigmas)]
        idx = torch.arange(lo, hi)
        for i, k in enumerate(ks):
            row_sums[i][lo:hi] = k.sum(1)
            diags[i][lo:hi] = k[idx - lo, idx]
            for j in range(i, b):
                kl[i, j] += float((k * ks[j]).sum())
    h = np.zeros((b, b))
    for i in range(b):
        for j in range(i, b):
            h[i, j] = h[j, i] = _hsic_from_parts(n, kl[i, j], row_sums[i], row_sums[j], diags[i], diags[j], debiased)
    d = np.diag(h)
    return np.array([[_ratio(h[i, j], d[i], d[j]) for j in range(b)] for i in range(b)])


def is_constant(x: ArrayLike, block: int = 4096) -> bool:
    """Whether every row of ``x [n, d]`` is the same: then ``K`` centred is 0 and any CKA with ``x`` is
    undefined (0 / 0). Compared in row blocks, so memory stays ``block x d``."""
    return all(bool((x[lo : lo + block] == x[:1]).all()) for lo in range(0, len(x), block))


def _batches(x: ArrayLike, size: int) -> Iterable[ArrayLike]:
    for lo in range(0, len(x), size):
        yield x[lo : lo + size]


def cka_matrix(
    reps_a: Mapping[str, ArrayLike],
    reps_b: Mapping[str, ArrayLike] | None = None,
    kernel: str = "linear",
    debiased: bool = False,
    sigma_frac: float = 1.0,
    batch_size: int = 4096,
) -> pd.DataFrame:
    """Layer x layer CKA: rows = representations of ``reps_a``, columns = those of ``reps_b`` (``reps_a``
    itself when omitted). All arrays hold the same examples in the same order. Linear CKA is
    accumulated over minibatches of ``batch_size`` rows when there are more examples than features
    in all; otherwise (and for other kernels) it runs on row blocks of the ``n x n`` Gram matrices."""
    _check_kernel(kernel)
    if not reps_a:
        raise InputError("cka_matrix: no representations given")
    if batch_size < 1:
        raise ParameterError("batch_size", f"batch_size={batch_size}: must be at least 1")
    if not sigma_frac > 0:
        raise ParameterError("sigma_frac", f"sigma_frac={sigma_frac}: must be > 0")
    names_a = list(reps_a)
    names_b = list(reps_b) if reps_b is not None else names_a
    arrays = list(reps_a.values()) + (list(reps_b.values()) if reps_b is not None else [])
    labels = [repr(n) for n in names_a] + [f"{n!r} (reps_b)" for n in names_b if reps_b is not None]
    for label, x in zip(labels, arrays):
        if len(np.shape(x)) != 2:
            raise InputError(
                f"representation {label}: expected a 2-d array (examples x features), got shape {np.shape(x)}"
            )
    counts = {len(x) for x in arrays}
    if len(counts) != 1:
        raise InputError(f"representations have different numbers of rows {sorted(counts)}; align them first")
    n, width = counts.pop(), sum(np.shape(x)[1] for x in arrays)
    need = 4 if debiased else 2
    if n < need:
        raise InputError(f"{n} row(s): the {'debiased ' if debiased else ''}CKA needs at least {need}")
    for label, x in zip(labels, arrays):
        if is_constant(x):
            raise InputError(
                f"representation {label} is constant over the {n} rows (every row the same), so its CKA is "
                "undefined; leave it out"
            )
    if kernel == "linear" and n > width:  # accumulate width x width sums; else n x n Gram blocks are smaller
        acc = LinearCKA([np.shape(x)[1] for x in arrays])
        for parts in zip(*(_batches(x, batch_size) for x in arrays)):
            acc.update(*parts)
        full = acc.matrix(debiased)
    else:
        full = kernel_cka_matrix(arrays, kernel, debiased, sigma_frac)
    undefined = [label for label, v in zip(labels, np.diag(full)) if not np.isfinite(v)]
    if undefined:  # a debiased self-HSIC <= 0: too few rows for the estimator
        raise NumericalError(
            f"the {'debiased ' if debiased else ''}CKA of {undefined[0]} is undefined over {n} rows (its "
            "self-HSIC is <= 0); use more rows or the biased CKA"
        )
    cols = slice(len(names_a), None) if reps_b is not None else slice(0, len(names_a))
    return pd.DataFrame(full[: len(names_a), cols], index=names_a, columns=names_b)


def cka_curve(
    snapshots: Sequence[ArrayLike], reference: ArrayLike, kernel: str = "linear", debiased: bool = False
) -> np.ndarray:
    """CKA of each snapshot (e.g. a checkpoint's embedding table, rows = the same tokens) against
    ``reference`` (e.g. the table it was initialized from)."""
    return np.array([cka(s, reference, kernel, debiased) for s in snapshots])


__getattr__ = moved(__name__, {"plot_cka_heatmap": "biostrata.report.plots"})
