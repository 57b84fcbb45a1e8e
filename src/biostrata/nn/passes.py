"""The full-size passes of the Lorentz batch norm (:mod:`biostrata.nn.fused`), in two implementations
with one meaning: :class:`TorchPasses` (torch operations, any device) and :class:`NativePasses`
(biostrata's C++ kernels, :mod:`biostrata.nn.native`, on the CPU: one read of each input per pass).
Both have ``stats``, ``center``, ``sums`` and ``combine``. Between the passes lies per-position algebra:
with the torch passes, ``nn.fused`` computes it in torch operations around ``TorchPasses.dots``; the
native ones fuse it with the passes that feed it (``centre``, ``rescale``, ``grad_positions``,
``grad_rows``), which is where most of their gain is (a hundred small operations per layer and step).

Tensors are (B, C, L) activations, (B, k, L) per-position rows and (C,) or (k, C) channel vectors. A
centred input is a pair (x, shift): its values are x - shift[c] (shift None: x itself). The torch
passes take it centred already (``center`` forms x - mu once, and the backward pass reuses it); the
native ones form it on the fly from (s, mu) and never store it.
"""

from __future__ import annotations

import torch

from biostrata.errors import ParameterError
from biostrata.nn import native


def _dot(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(W, C) . (B, C, L) over channels -> (B, W, L)."""
    # as batched matrix products on the (B, C, L) layout as it is: torch.matmul and einsum copied the
    # activations into (B, L, C) first, which cost more than the products
    return torch.bmm(u.expand(x.shape[0], -1, -1), x)


def _sum_positions(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum over (b, l) of w[b, i, l] x[b, c, l] -> (W, C)."""
    return torch.bmm(w, x.transpose(1, 2)).sum(0)


class TorchPasses:
    """The passes in torch operations."""

    native = False  # the per-position algebra runs in torch operations between the passes (nn.fused)

    @staticmethod
    def stats(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum_c s^2 (B, 1, L), mean_l s (B, C))."""
        return (s * s).sum(1, keepdim=True), s.mean(2)

    @staticmethod
    def center(s: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The centred input s - mu as (x, shift)."""
        return s - mu.view(1, -1, 1), None

    @staticmethod
    def dots(
        g: torch.Tensor | None, x: torch.Tensor, shift: None, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """g None: (|x|^2, w x); else (g . x, w g), over channels: (B, 1, L) and (B, 2, L) for w (2, C)."""
        v = x if g is None else g
        return (v * x).sum(1, keepdim=True), _dot(w, v)

    @staticmethod
    def sums(g: torch.Tensor, rg: torch.Tensor, x: torch.Tensor, shift: None, rx: torch.Tensor) -> torch.Tensor:
        """sum over positions of rg[b, i, l] g[b, c, l] + rx[b, i, l] x[b, c, l]: (3, C)."""
        return _sum_positions(rg, g) + _sum_positions(rx, x)

    @staticmethod
    def combine(g: torch.Tensor | None, p: torch.Tensor | None, x: torch.Tensor, shift: None, q: torch.Tensor,
                vectors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """p g + q x + sum_i vectors[b, i, c] rows[b, i, l]: (B, C, L); vectors (B, k, C), rows (B, k, L)."""
        out = x * q
        if g is not None:
            out.addcmul_(g, p)
        return out.baddbmm_(vectors.transpose(1, 2), rows)


class NativePasses:
    """The passes in biostrata's C++ kernels (CPU, float32 and float64), and the per-position algebra of the
    batch norm fused with them (``centre``, ``rescale``, ``grad_positions``, ``grad_rows``: see ``boost.cpp``
    and ``nn.fused``)."""

    native = True

    @staticmethod
    def centre(x, shift, w, t, scalars):
        return native.kernels().centre(x, shift, w, t, scalars)

    @staticmethod
    def rescale(x, shift, w, p, scalars):
        return native.kernels().rescale(x, shift, w, p, scalars)

    @staticmethod
    def grad_positions(g, x, shift, w, p, q, scalars):
        return native.kernels().grad_positions(g, x, shift, w, p, q, scalars)

    @staticmethod
    def grad_rows(p, q, d, scalars):
        return native.kernels().grad_rows(p, q, d, scalars)

    @staticmethod
    def stats(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(native.kernels().stats(s))

    @staticmethod
    def center(s: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return s, mu.contiguous()

    @staticmethod
    def sums(g, rg, x, shift, rx):
        return native.kernels().sums(g, rg, x, shift, rx).sum(0)  # summed over sequences in a fixed order

    @staticmethod
    def combine(g, p, x, shift, q, vectors, rows):
        return native.kernels().combine(g, p, x, shift, q, vectors, rows)


def passes_for(s: torch.Tensor, native_kernels: bool | None = None) -> type[TorchPasses] | type[NativePasses]:
    """The passes for input ``s``: ``native_kernels`` None: the native ones where they take ``s`` (CPU,
    float32/64, built), else torch's; True: the native ones (an error where they cannot be used); False:
    torch's."""
    if native_kernels is False:
        return TorchPasses
    if native.usable(s):
        return NativePasses
    if native_kernels:
        built = "built" if native.kernels() is not None else "not built (see the warning above)"
        raise ParameterError(
            "native_kernels",
            f"native_kernels=True: biostrata's C++ kernels take float32 or float64 tensors on the CPU, and they are "
            f"{built}; got {s.dtype} on {s.device}. Give native_kernels=None to use them where they can be.",
        )
    return TorchPasses
