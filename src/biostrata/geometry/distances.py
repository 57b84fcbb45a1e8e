"""Every distance between points: in float64 for measurement, and in matrix-product form for training.

:func:`pairwise_distances` checks its points and computes in float64, for the metrics the delta
tools accept. Every formula of it is written so that close points keep their precision (no ``arccos``
or ``arccosh`` near 1, no expanded squares):

- ``euclidean``: ``|x - y|``.
- ``cosine``: the angle between x and y, ``arccos(x.y / (|x| |y|))`` in ``[0, pi]``, computed as
  ``2 asin(|x/|x| - y/|y|| / 2)``. It is the great-circle distance on the unit sphere, a metric
  (``1 - cos`` is not: it breaks the triangle inequality).
- ``lorentz``: points ``(x_0, x_s)`` on the hyperboloid ``<x, x>_L = -1/K`` (``K > 0``, time
  coordinate first), ``d = arccosh(-K <x, y>_L) / sqrt(K)``, computed as
  ``(2 / sqrt K) asinh(sqrt(K) |x - y|_L / 2)`` with ``|x - y|_L^2 = |x_s - y_s|^2 - (x_0 - y_0)^2``.
  The time coordinate is recomputed from the space part, ``x_0 = sqrt(1/K + |x_s|^2)``, after a
  check that the given one agrees (relative tolerance ``1e-3``).
- ``poincare``: points in the ball ``K |x|^2 < 1``,
  ``cosh(sqrt(K) d) = 1 + 2 K |x - y|^2 / ((1 - K |x|^2) (1 - K |y|^2))``, computed as
  ``(2 / sqrt K) asinh(sqrt(K |x - y|^2 / ((1 - K |x|^2) (1 - K |y|^2))))``.

The training heads (:mod:`biostrata.nn.distance`, :mod:`biostrata.nn.lorentz`) score a batch against a
few learned points in the model's dtype, differentiably, and use the Gram forms, one matrix product
each: :func:`euclidean_gram_distances`, ``sqrt(|x|^2 - 2 x.y + |y|^2)``, and
:func:`lorentz_gram_distances`, ``sqrt(k) arccosh(-<x, y>_L / k)`` on ``<x, x>_L = -k`` (``k = 1/K``,
the manifold's own parameter, see :class:`~biostrata.geometry.lorentz.Lorentz`). They lose digits for
close points (the expanded square, or ``arccosh`` near 1: an absolute error of about ``eps |x| |y|``
on the square, ``sqrt(eps)`` on the distance of equal points), so they are not for measurement; each
floors its argument just inside the domain (``sqrt`` at 0, ``arccosh`` at 1), where rounding would
otherwise give NaN or an infinite gradient.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from biostrata.errors import InputError, ParameterError

METRICS = ("euclidean", "cosine", "lorentz", "poincare")
_ON_MANIFOLD_RTOL = 1e-3
_INTEGER = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)


def as_points(points: np.ndarray | torch.Tensor, *, name: str = "points") -> torch.Tensor:
    """``points`` as a finite (n, d) float64 CPU tensor; an InputError names the first bad row."""
    # ascontiguousarray: torch cannot wrap numpy views with negative strides (x[::-1]).
    x = points.detach() if isinstance(points, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(points))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"{name}: expected a non-empty 2-d array (points x coordinates), got shape {tuple(x.shape)}")
    if not (x.dtype.is_floating_point or x.dtype in _INTEGER):
        raise InputError(f"{name}: expected real numbers, got dtype {x.dtype}")
    x = x.to("cpu", torch.float64)
    bad = ~torch.isfinite(x)
    if bad.any():
        i, j = (int(v) for v in torch.nonzero(bad)[0])
        raise InputError(f"{name}: row {i}, column {j} is {x[i, j].item()}; every coordinate must be finite")
    return x.contiguous()


def _check_curvature(curvature: float) -> float:
    if not (isinstance(curvature, (int, float)) and math.isfinite(curvature) and curvature > 0):
        raise ParameterError(
            "curvature", f"curvature={curvature!r}: must be a finite number > 0 (the magnitude K of the curvature -K)"
        )
    return float(curvature)


def _euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``|x_i - y_j|`` from coordinate differences (not the Gram-matrix shortcut, which loses digits)."""
    return torch.cdist(x.unsqueeze(0), y.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)


def euclidean_gram_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``|x_i - y_j|`` ``[..., m]`` of points ``x [..., d]`` and ``y [m, d]``, by the Gram form
    ``sqrt(max(|x|^2 - 2 x.y + |y|^2, 1e-12))`` (see the module docstring: for training, not measurement)."""
    square = (x * x).sum(-1, keepdim=True) - 2 * x @ y.T + (y * y).sum(-1)
    # |x - y|^2 >= 0, but the expanded form can round below 0 for near-equal points, and the gradient
    # of sqrt is infinite at 0: floor it just above 0
    return torch.sqrt(square.clamp_min(1e-12))


def lorentz_gram_distances(x: torch.Tensor, y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Geodesic distances ``[..., m]`` of points ``x [..., 1 + d]`` and ``y [m, 1 + d]`` (time first) on
    ``<x, x>_L = -k`` (curvature ``-1/k``), by the inner-product form as in geoopt,
    ``d(x, y) = sqrt(k) arccosh(max(-<x, y>_L / k, 1 + 1e-7))`` (see the module docstring: for training)."""
    inner = x[..., 1:] @ y[:, 1:].T - x[..., :1] * y[:, 0]  # <x, y>_L
    # -<x, y>/k >= 1 on the manifold, but float rounding can go below 1 for near-equal points,
    # where arccosh is undefined and its gradient infinite: floor it just above 1
    ratio = (-inner / k).clamp_min(1 + 1e-7)
    return torch.sqrt(k) * torch.acosh(ratio)


def _unit_rows(x: torch.Tensor, name: str) -> torch.Tensor:
    norm = x.norm(dim=1, keepdim=True)
    zero = torch.nonzero(norm.squeeze(1) == 0)
    if len(zero):
        raise InputError(
            f"{name}: row {int(zero[0])} is the zero vector, which has no angle; drop it or use the euclidean metric"
        )
    return x / norm


def lorentz_space(x: torch.Tensor, curvature: float, *, name: str = "points") -> torch.Tensor:
    """Space parts of points on ``<x, x>_L = -1/K``, after checking the rows lie on that sheet."""
    if x.shape[1] < 2:
        raise InputError(
            f"{name}: Lorentz points need a time coordinate and at least one space coordinate, "
            f"got {x.shape[1]} column(s)"
        )
    t, s = x[:, 0], x[:, 1:]
    inner = -t * t + (s * s).sum(1)
    off = (inner + 1.0 / curvature).abs() / (t * t + 1.0 / curvature)
    bad = torch.nonzero((t <= 0) | (off > _ON_MANIFOLD_RTOL))
    if len(bad):
        i = int(bad[0])
        raise InputError(
            f"{name}: row {i} is not on the upper hyperboloid <x,x>_L = -1/K with K = {curvature:g} "
            f"(x_0 = {t[i].item():.6g}, <x,x>_L = {inner[i].item():.6g}); points must have the time coordinate "
            "first; check the curvature (the model's K) or the point format"
        )
    return s


def pairwise_distances(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor | None = None,
    *,
    metric: str = "euclidean",
    curvature: float = 1.0,
) -> torch.Tensor:
    """(n, m) float64 distances between the rows of ``x`` and of ``y`` (``y = x`` when omitted).

    ``metric`` is one of ``euclidean``, ``cosine``, ``lorentz``, ``poincare`` (see the module
    docstring for the formulas); ``curvature`` is ``K`` of the hyperbolic metrics (curvature ``-K``).
    Distances of a point set to itself have an exact zero diagonal and are exactly symmetric.
    """
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)} (or pass a distance matrix)")
    same = y is None
    xs = as_points(x, name="points" if same else "x")
    ys = xs if same else as_points(y, name="y")
    if xs.shape[1] != ys.shape[1]:
        raise InputError(f"x has {xs.shape[1]} coordinates per point but y has {ys.shape[1]}")
    if metric == "euclidean":
        out = _euclidean(xs, ys)
    elif metric == "cosine":
        u = _unit_rows(xs, "points" if same else "x")
        v = u if same else _unit_rows(ys, "y")
        out = 2.0 * torch.asin((_euclidean(u, v) / 2.0).clamp(max=1.0))
    elif metric == "lorentz":
        k = _check_curvature(curvature)
        sx = lorentz_space(xs, k, name="points" if same else "x")
        sy = sx if same else lorentz_space(ys, k, name="y")
        tx = torch.sqrt(1.0 / k + (sx * sx).sum(1))
        ty = tx if same else torch.sqrt(1.0 / k + (sy * sy).sum(1))
        sq = _euclidean(sx, sy).square() - (tx[:, None] - ty[None, :]).square()
        out = (2.0 / math.sqrt(k)) * torch.asinh(math.sqrt(k) * sq.clamp(min=0.0).sqrt() / 2.0)
    else:  # poincare
        k = _check_curvature(curvature)
        for name, p in (("points" if same else "x", xs), ("y", ys)):
            r2 = k * (p * p).sum(1)
            bad = torch.nonzero(r2 >= 1)
            if len(bad):
                i = int(bad[0])
                raise InputError(
                    f"{name}: row {i} lies outside the Poincare ball of curvature -{k:g} "
                    f"(K |x|^2 = {r2[i].item():.6g} >= 1); check the curvature K"
                )
            if same:
                break
        cx = 1.0 - k * (xs * xs).sum(1)
        cy = cx if same else 1.0 - k * (ys * ys).sum(1)
        ratio = k * _euclidean(xs, ys).square() / (cx[:, None] * cy[None, :])
        out = (2.0 / math.sqrt(k)) * torch.asinh(ratio.sqrt())
    if same:
        out = (out + out.T) / 2.0
        out.fill_diagonal_(0.0)
    return out
