"""BERT-style masking of token sequences, as BiGCARP and ESM pre-train.

In each sequence ``max(1, floor(rate * n))`` of its ``n`` maskable positions are chosen uniformly;
each chosen position becomes the mask token with probability ``p_mask`` (0.8), a token drawn
uniformly from ``replacements`` with probability ``p_random`` (0.1, which may redraw the original
token with probability 1/K), and stays unchanged otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from biostrata.errors import InputError, ParameterError

__all__ = ["MaskingScheme", "mask_tokens", "MLMCollator"]


@dataclass(frozen=True)
class MaskingScheme:
    """Which tokens may be masked and what replaces them (see module docstring)."""

    pad_idx: int
    mask_idx: int
    maskable: torch.Tensor  # bool [V]
    replacements: torch.Tensor  # long [K]
    rate: float = 0.15
    p_mask: float = 0.8
    p_random: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1 or self.p_mask < 0 or self.p_random < 0 or self.p_mask + self.p_random > 1:
            raise InputError(
                f"masking rate={self.rate}, p_mask={self.p_mask}, p_random={self.p_random}: need 0 < rate <= 1 "
                "and p_mask + p_random <= 1"
            )
        if len(self.replacements) == 0:
            raise InputError("masking needs at least one replacement token")


def mask_tokens(
    tokens: torch.Tensor, scheme: MaskingScheme, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a padded batch ``[B, L]``; returns ``(src, selected)`` (see module docstring)."""
    maskable = scheme.maskable[tokens]
    n = maskable.sum(1)
    k = torch.where(n > 0, torch.clamp((n.double() * scheme.rate).floor().long(), min=1), torch.zeros_like(n))
    keys = torch.rand(tokens.shape, generator=generator).masked_fill(~maskable, 2.0)
    rank = keys.argsort(1).argsort(1)  # rank of each position's key within its row
    selected = rank < k.unsqueeze(1)
    u = torch.rand(tokens.shape, generator=generator)
    pick = torch.randint(len(scheme.replacements), tokens.shape, generator=generator)
    src = tokens.clone()
    src[selected & (u < scheme.p_mask)] = scheme.mask_idx
    swap = selected & (u >= scheme.p_mask) & (u < scheme.p_mask + scheme.p_random)
    src[swap] = scheme.replacements[pick[swap]]
    return src, selected


class MLMCollator:
    """Pads 1-D token tensors, crops long ones, and masks them.

    A sequence longer than ``max_length`` keeps its first ``keep_first`` and last ``keep_last``
    tokens (class token, BOS/EOS) and a window of the rest: a random window when ``train`` is True,
    the first one otherwise. Returns ``(target, src, selected)``, each ``[B, L]``.
    """

    def __init__(
        self,
        scheme: MaskingScheme,
        max_length: int | None = None,
        keep_first: int = 0,
        keep_last: int = 0,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        if max_length is not None and max_length <= keep_first + keep_last:
            raise ParameterError(
                "max_length", f"max_length={max_length}: must exceed the {keep_first + keep_last} kept end tokens"
            )
        self.scheme, self.max_length, self.train = scheme, max_length, train
        self.keep_first, self.keep_last = keep_first, keep_last
        self.generator = torch.Generator().manual_seed(seed)
        self._rng = random.Random(seed)

    def crop(self, t: torch.Tensor) -> torch.Tensor:
        if self.max_length is None or len(t) <= self.max_length:
            return t
        body_len = self.max_length - self.keep_first - self.keep_last
        body = t[self.keep_first : len(t) - self.keep_last]
        start = self._rng.randrange(len(body) - body_len + 1) if self.train else 0
        return torch.cat([t[: self.keep_first], body[start : start + body_len], t[len(t) - self.keep_last :]])

    def pad(self, seqs: Sequence[torch.Tensor]) -> torch.Tensor:
        return nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=self.scheme.pad_idx)

    def __call__(self, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        target = self.pad([self.crop(t) for t in batch])
        src, selected = mask_tokens(target, self.scheme, self.generator)
        return target, src, selected
