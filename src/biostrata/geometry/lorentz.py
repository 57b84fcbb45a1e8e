"""Lorentz (hyperboloid) model maths shared by the layers.

A point is x = (x_0, x_s) with <x, x>_L = -x_0 y_0 + x_s . y_s = -k, x_0 > 0: the hyperboloid of
curvature -1/k (K = 1/k in the papers' notation). As in geoopt, ``k`` is carried by the manifold.
Every point is determined by its space part, x_0 = sqrt(k + |x_s|^2); layers compute space parts
and recompute the time coordinate, so a point never leaves the manifold by drift.
Tensors are laid out channel-first, (B, 1 + C, ...) with the time coordinate at channel 0.

The operations are methods of the manifold (``manifold.lift(space)``, ``manifold.centroid(x, dims)``,
``manifold.carry(space, to=other)``), which use its clamped k; the module-level functions below
are the same maths with k passed explicitly, for kernels and float64 checks. k stays inside this
package: what the library takes and gives is the curvature magnitude K (``Lorentz(curvature)``,
``manifold.curvature``). NumPy callers convert (``torch.from_numpy`` in float64, ``.numpy()`` back),
so that every Lorentz formula is written here once; distances are in :mod:`biostrata.geometry.distances`.
"""

from __future__ import annotations

import math

import geoopt
import torch

from biostrata.errors import ParameterError
from biostrata.geometry.distances import lorentz_gram_distances

K_MIN = 1e-4  # smallest k used in formulas: a learnable k is clamped here, never to 0 or below


class Lorentz(geoopt.Lorentz):
    """geoopt's hyperboloid <x,x>_L = -k, built from the curvature magnitude K = 1/k."""

    def __init__(self, curvature: float = 1.0, learnable: bool = False) -> None:
        if curvature <= 0:
            raise ParameterError("curvature", f"curvature={curvature}: must be > 0 (the magnitude K of -K)")
        super().__init__(k=1.0 / curvature, learnable=learnable)

    @property
    def curvature(self) -> torch.Tensor:
        """K = 1/k, the magnitude of the sectional curvature -K."""
        return 1.0 / self.kk

    @property
    def kk(self) -> torch.Tensor:
        """k clamped to ``K_MIN``, safe to use in square roots and divisions."""
        return self.k.clamp_min(K_MIN)

    def component_inner(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        """<u, v>_L of tangent vectors at x; <u, u>_L is floored at 0. A tangent vector's square norm
        is >= 0, but float32 cancellation can make it negative, and Riemannian Adam takes the square
        root of its running mean: NaN (seen in batch-norm centres at epoch ~60 of genome CNNs)."""
        out = super().component_inner(x, u, v)
        return out.clamp_min(0) if v is None else out

    def time(self, space: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """x_0 = sqrt(k + |x_s|^2) of the points over these space parts, keeping ``dim``."""
        return time_from_space(space, self.kk, dim)

    def lift(self, space: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The points (x_0, x_s) over these space parts."""
        return lift(space, self.kk, dim)

    def centroid(self, x: torch.Tensor, reduce_dims: tuple[int, ...], dim: int = 1) -> torch.Tensor:
        """Lorentz centroid of the points x over ``reduce_dims`` (see ``centroid``)."""
        return centroid(x, self.kk, reduce_dims, dim)

    def expmap0_space(self, v: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Space part of exp_o(v) for a tangent vector (0, v_s) at the origin."""
        return expmap0_space(v, self.kk, dim)

    def expmap0_point(self, v: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The point exp_o(v), time first along ``dim``, of a tangent vector (0, v_s) at the origin: the
        space part of ``expmap0_space``, lifted."""
        return self.lift(self.expmap0_space(v, dim), dim)

    def logmap0_space(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Space part of log_o(x); its time part is 0."""
        return logmap0_space(x, self.kk, dim)

    def carry(self, space: torch.Tensor, to: Lorentz, dim: int = 1) -> torch.Tensor:
        """Space parts of exp_o^{to}(log_o^{self}(x)): points moved to the hyperboloid ``to``
        through the tangent space at the origin; the identity when ``to`` is this manifold."""
        return space if to is self else change_curvature_space(space, self.kk, to.kk, dim)

    def gram_distances(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Geodesic distances ``[..., m]`` of points x ``[..., 1 + d]`` and y ``[m, 1 + d]``, time first, by
        the inner-product form of the training heads (see ``geometry.distances.lorentz_gram_distances``)."""
        return lorentz_gram_distances(x, y, self.kk)

    def clip_radius(self, space: torch.Tensor, radius: float, dim: int = 1) -> torch.Tensor:
        """Points farther than ``radius`` (in units of sqrt(k)) from the origin pulled back (see ``clip_radius``)."""
        return clip_radius(space, self.kk, radius, dim)

    def extra_repr(self) -> str:
        return f"curvature={self.curvature.item():.4g}, learnable={self.k.requires_grad}"


def time_from_space(space: torch.Tensor, k: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x_0 = sqrt(k + |x_s|^2), keeping ``dim``."""
    return torch.sqrt(k + (space * space).sum(dim, keepdim=True))


def lift(space: torch.Tensor, k: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The point (sqrt(k + |x_s|^2), x_s) on the hyperboloid over the space part x_s."""
    return torch.cat([time_from_space(space, k, dim), space], dim)


def minkowski_inner(x: torch.Tensor, y: torch.Tensor, dim: int = 1, keepdim: bool = False) -> torch.Tensor:
    """<x, y>_L = -x_0 y_0 + sum_i x_i y_i."""
    prod = x * y
    out = prod.sum(dim, keepdim=True) - 2 * prod.narrow(dim, 0, 1)
    return out if keepdim else out.squeeze(dim)


def centroid(x: torch.Tensor, k: torch.Tensor, reduce_dims: tuple[int, ...], dim: int = 1) -> torch.Tensor:
    """Lorentz centroid: m = mean of the points, rescaled onto the manifold, sqrt(k) m / sqrt(|<m,m>_L|)."""
    m = x.mean(reduce_dims, keepdim=True)
    norm = torch.sqrt(minkowski_inner(m, m, dim=dim, keepdim=True).abs().clamp_min(1e-8))
    return (torch.sqrt(k) * m / norm).squeeze(reduce_dims)


def _norm(v: torch.Tensor, dim: int) -> torch.Tensor:
    # floor: the maps below are v * h(|v|) / |v| with h(0) = 0; the floor keeps 0 / 0 out at v = 0
    return torch.sqrt((v * v).sum(dim, keepdim=True).clamp_min(1e-15))


def expmap0_space(v: torch.Tensor, k: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Space part of exp_o(v) for a tangent vector v = (0, v_s) at the origin o = (sqrt(k), 0):
    x_s = sqrt(k) sinh(|v_s| / sqrt(k)) v_s / |v_s|."""
    sk = torch.sqrt(k)
    n = _norm(v, dim)
    return v * (sk * torch.sinh(n / sk) / n)


def logmap0_space(x: torch.Tensor, k: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Space part of log_o(x) (its time part is 0): v_s = sqrt(k) asinh(|x_s| / sqrt(k)) x_s / |x_s|."""
    sk = torch.sqrt(k)
    n = _norm(x, dim)
    return x * (sk * torch.asinh(n / sk) / n)


def change_curvature_space(x: torch.Tensor, k_from: torch.Tensor, k_to: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Space part of exp_o^{k_to}(log_o^{k_from}(x)): a point carried to another hyperboloid through
    the tangent space at the origin (Bdeir et al. 2024), keeping its distance to the origin:
        x_s -> x_s / |x_s| sqrt(k_to) sinh(sqrt(k_from / k_to) asinh(|x_s| / sqrt(k_from)))."""
    n = _norm(x, dim)
    radius = torch.sqrt(k_from) * torch.asinh(n / torch.sqrt(k_from))
    return x * (torch.sqrt(k_to) * torch.sinh(radius / torch.sqrt(k_to)) / n)


def clip_radius(space: torch.Tensor, k: torch.Tensor, radius: float, dim: int = 1) -> torch.Tensor:
    """Pull points farther than ``radius`` (in units of sqrt(k)) from the origin back onto that
    sphere along their geodesic: x_s <- x_s min(1, sqrt(k) sinh(radius) / |x_s|)."""
    return clip_norm(space, torch.sqrt(k) * math.sinh(radius), dim)


def clip_norm(v: torch.Tensor, limit: torch.Tensor | float, dim: int = 1) -> torch.Tensor:
    """v min(1, limit / |v|) along ``dim``: vectors longer than ``limit`` shortened to it. For a tangent
    vector at the origin, a limit of R sqrt(k) keeps exp_o(v) within radius R (d(exp_o(v), o) = |v|)."""
    # floor: the ratio is only used where |v| exceeds the limit; it keeps 0 / 0 out at v = 0
    norm = torch.sqrt((v * v).sum(dim, keepdim=True).clamp_min(1e-12))
    return v * (limit / norm).clamp(max=1.0)
