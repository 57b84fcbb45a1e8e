"""The protein-LM interface that every backend adapter implements (:mod:`biostrata.models.protein_lm`:
fair-esm; :mod:`biostrata.models.esm_hf`: transformers): ESM's ``<cls> residues <eos>`` tokens from a
letter table, fair-esm's layer numbering, and ``embed(tokens, layers) -> {layer: [B, T, D]}``."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from biostrata.models.layerwise import resolve_layers

__all__ = ["ProteinLM"]


class ProteinLM(nn.Module):
    """The protein-LM interface: a letter table for :meth:`tokenize`, the layer numbering, and
    ``embed(tokens, layers) -> {layer: [B, T, D]}`` from the backend. ``vocab`` maps tokens to ids;
    ``cls``, ``eos``, ``pad`` and ``unk`` are the ids of the special tokens."""

    #: ``<cls>`` before and ``<eos>`` after each protein's residues.
    special_tokens = (1, 1)
    backend = ""

    #: What the deprecated constructor ``ProteinLM(model, alphabet, ...)`` makes (it was fair-esm's adapter):
    #: :mod:`biostrata.models.protein_lm` sets it to ``FairESM`` when it loads, the name's old home.
    _legacy: type[ProteinLM] | None = None

    def __new__(cls, *args, **kwargs):
        if cls is ProteinLM and ProteinLM._legacy is not None:  # for one release
            warnings.warn(
                "ProteinLM(model, alphabet) is now FairESM(model, alphabet)", DeprecationWarning, stacklevel=2
            )
            return nn.Module.__new__(ProteinLM._legacy)
        return super().__new__(cls)

    def _set_vocab(self, vocab: dict[str, int], cls: int, eos: int, pad: int, unk: int) -> None:
        self.cls_idx, self.eos_idx, self.pad_idx, self.unk_idx = cls, eos, pad, unk
        lookup = np.full(256, unk, dtype=np.int64)
        for tok, idx in vocab.items():
            if len(tok) == 1:
                lookup[ord(tok)] = idx
        self._lookup = lookup

    @property
    def num_layers(self) -> int:
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        raise NotImplementedError

    def tokenize(self, seqs: Sequence[str]) -> torch.Tensor:
        """``<cls> seq <eos>`` rows, right-padded: ``[B, max_len + 2]`` (unknown letters -> ``<unk>``)."""
        out = torch.full((len(seqs), max((len(s) for s in seqs), default=0) + 2), self.pad_idx, dtype=torch.long)
        for i, s in enumerate(seqs):
            codes = np.frombuffer(s.upper().encode("ascii", "replace"), dtype=np.uint8)
            out[i, 0] = self.cls_idx
            out[i, 1 : len(s) + 1] = torch.from_numpy(self._lookup[codes])
            out[i, len(s) + 1] = self.eos_idx
        return out

    def layer_index(self, layers: Iterable[int]) -> list[int]:
        """Layers as indices in 0..num_layers (see :mod:`biostrata.models.layerwise`)."""
        return resolve_layers(layers, self.num_layers)

    def embed(self, tokens: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """States ``[B, T, D]`` per layer (keys as given by :meth:`layer_index`)."""
        raise NotImplementedError

    def forward_layers(self, tokens: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """Deprecated name of :meth:`embed` (the layer-wise contract of every encoder); goes in the next release."""
        warnings.warn("ProteinLM.forward_layers is now ProteinLM.embed", DeprecationWarning, stacklevel=2)
        return self.embed(tokens, layers)
