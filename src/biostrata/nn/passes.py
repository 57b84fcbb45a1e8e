"""The full-size passes of the Lorentz batch norm's torch path (:mod:`biostrata.nn.fused`), for any device:
reductions over channels to per-position rows, sums over positions to channel vectors, and linear
combinations of full-size tensors with per-position weights. (On the CPU, biostrata's C++ operators,
:mod:`biostrata.nn.native`, do the same work and the algebra between it.)

Tensors are (B, C, L) activations, (B, k, L) per-position rows and (k, C) or (B, k, C) channel vectors.
"""

from __future__ import annotations

import torch


def _dot(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(W, C) . (B, C, L) over channels -> (B, W, L)."""
    # as batched matrix products on the (B, C, L) layout as it is: torch.matmul and einsum copied the
    # activations into (B, L, C) first, which cost more than the products
    return torch.bmm(u.expand(x.shape[0], -1, -1), x)


def _sum_positions(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum over (b, l) of w[b, i, l] x[b, c, l] -> (W, C)."""
    return torch.bmm(w, x.transpose(1, 2)).sum(0)


def stats(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_c s^2 (B, 1, L), mean_l s (B, C))."""
    return (s * s).sum(1, keepdim=True), s.mean(2)


def dots(g: torch.Tensor | None, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g None: (|x|^2, w x); else (g . x, w g), over channels: (B, 1, L) and (B, 2, L) for w (2, C)."""
    v = x if g is None else g
    return (v * x).sum(1, keepdim=True), _dot(w, v)


def sums(g: torch.Tensor, rg: torch.Tensor, x: torch.Tensor, rx: torch.Tensor) -> torch.Tensor:
    """sum over positions of rg[b, i, l] g[b, c, l] + rx[b, i, l] x[b, c, l]: (3, C)."""
    return _sum_positions(rg, g) + _sum_positions(rx, x)


def combine(g: torch.Tensor | None, p: torch.Tensor | None, x: torch.Tensor, q: torch.Tensor, vectors: torch.Tensor,
            rows: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """p g + q x + sum_i vectors[b, i, c] rows[b, i, l]: (B, C, L); vectors (B, k, C), rows (B, k, L)."""
    out = x * q
    if g is not None:
        out.addcmul_(g, p)
    return out.baddbmm_(vectors.transpose(1, 2), rows)
