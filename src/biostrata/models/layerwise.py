"""Layer numbering and pooling shared by the layer-wise encoders (genome CNNs, domain LM, protein LM).

Every encoder has ``num_layers`` and ``embed(x, layers=(-1,)) -> dict[int, Tensor]``. Layers are
numbered 0..n: 0 is the input (token-table lookup, or the one-hot DNA), ``i`` the output of block
``i``; a negative
layer counts from the end (-1 is ``n``, ``-(n + 1)`` is 0), as Python indexes a list of n + 1 items.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from biostrata.errors import InputError

__all__ = ["resolve_layers", "masked_mean"]


def resolve_layers(layers: Iterable[int], num_layers: int) -> list[int]:
    """Layers as indices in 0..num_layers; one out of range raises ``InputError``."""
    out = []
    for layer in layers:
        i = int(layer) + num_layers + 1 if int(layer) < 0 else int(layer)
        if not 0 <= i <= num_layers:
            raise InputError(
                f"layer {layer} does not exist; this model has layers 0..{num_layers} (or -1..-{num_layers + 1})"
            )
        out.append(i)
    return out


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is True: ``states [..., T, D]``, ``mask [..., T]`` -> ``[..., D]``."""
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(-2) / weights.sum(-2)
