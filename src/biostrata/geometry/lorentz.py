"""Lorentz (hyperboloid) model maths shared by the layers.

A point is x = (x_0, x_s) with <x, x>_L = -x_0 y_0 + x_s . y_s = -k, x_0 > 0: the hyperboloid of
curvature -1/k (K = 1/k in the papers' notation). As in geoopt, ``k`` is carried by the manifold.
Every point is determined by its space part, x_0 = sqrt(k + |x_s|^2); layers compute space parts
and recompute the time coordinate, so a point never leaves the manifold by drift.
Tensors are laid out channel-first, (B, 1 + C, ...) with the time coordinate at channel 0.
"""

from __future__ import annotations

import geoopt
import torch

K_MIN = 1e-4  # smallest k used in formulas: a learnable k is clamped here, never to 0 or below


class Lorentz(geoopt.Lorentz):
    """geoopt's hyperboloid <x,x>_L = -k, built from the curvature magnitude K = 1/k."""

    def __init__(self, curvature: float = 1.0, learnable: bool = False) -> None:
        if curvature <= 0:
            raise ValueError(f"curvature must be > 0 (the magnitude K of -K), got {curvature}")
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


def boost_space(
    space: torch.Tensor, time: torch.Tensor, point: torch.Tensor, k: torch.Tensor, *, to_origin: bool
) -> torch.Tensor:
    """Space part of the Lorentz boost along the geodesic between ``point`` and the origin.

    With ``to_origin`` it maps ``point`` to the origin o = (sqrt(k), 0), otherwise o to ``point``;
    on tangent vectors it is parallel transport along that geodesic. For p = (p_0, p_s), sign s = -1
    towards the origin and +1 away from it:
        y_s = x_s + p_s ((p_s . x_s) / (sqrt(k) (p_0 + sqrt(k))) + s x_0 / sqrt(k)).
    ``space`` is (B, C, ...) channel-first, ``time`` (B, 1, ...), ``point`` (1 + C,).
    """
    sk = torch.sqrt(k)
    p0, ps = point[0], point[1:]
    shape = (1, -1) + (1,) * (space.dim() - 2)
    ps_b = ps.view(shape)
    dot = (space * ps_b).sum(1, keepdim=True)
    sign = -1.0 if to_origin else 1.0
    return space + ps_b * (dot / (sk * (p0 + sk)) + sign * time / sk)
