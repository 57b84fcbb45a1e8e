"""Protein language models (ESM via fair-esm): loading, tokenizing and layer-wise outputs.

Conventions (fair-esm): a protein is tokenized as ``<cls> residues <eos>``; layer 0 is the token
embedding, layer ``i`` the output of transformer block ``i``, and the last layer is reported after
the final LayerNorm. Running a model over many proteins (packing, windows, HDF5 store, resume,
sharding) is :mod:`biostrata.models.extract`.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from biostrata.compat import moved
from biostrata.errors import DataNotFoundError, InputError
from biostrata.io import atomic_write
from biostrata.models.hub import hub_file, load_torch_file
from biostrata.models.layerwise import resolve_layers

__all__ = ["ProteinLM", "load_protein_lm", "small_protein_lm", "ESM_URL"]

#: Where fair-esm publishes its weights (``<name>.pt``).
ESM_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/"


class ProteinLM(nn.Module):
    """A fair-esm model (ESM-1b, ESM-2, or a small ESM-2 trained here) with layer-wise outputs."""

    def __init__(self, model: nn.Module, alphabet: object, name: str = "", max_residues: int | None = 1022) -> None:
        super().__init__()
        self.model, self.alphabet, self.name = model, alphabet, name
        self.max_residues = max_residues
        lookup = np.full(256, alphabet.unk_idx, dtype=np.int64)
        for tok, idx in alphabet.tok_to_idx.items():
            if len(tok) == 1:
                lookup[ord(tok)] = idx
        self._lookup = lookup

    @property
    def num_layers(self) -> int:
        return int(self.model.num_layers)

    @property
    def embed_dim(self) -> int:
        return int(self.model.embed_dim if hasattr(self.model, "embed_dim") else self.model.args.embed_dim)

    #: ``<cls>`` before and ``<eos>`` after each protein's residues.
    special_tokens = (1, 1)

    def tokenize(self, seqs: Sequence[str]) -> torch.Tensor:
        """``<cls> seq <eos>`` rows, right-padded: ``[B, max_len + 2]`` (unknown letters -> ``<unk>``)."""
        a = self.alphabet
        out = torch.full((len(seqs), max((len(s) for s in seqs), default=0) + 2), a.padding_idx, dtype=torch.long)
        for i, s in enumerate(seqs):
            codes = np.frombuffer(s.upper().encode("ascii", "replace"), dtype=np.uint8)
            out[i, 0] = a.cls_idx
            out[i, 1 : len(s) + 1] = torch.from_numpy(self._lookup[codes])
            out[i, len(s) + 1] = a.eos_idx
        return out

    def layer_index(self, layers: Iterable[int]) -> list[int]:
        """Layers as indices in 0..num_layers (see :mod:`biostrata.models.layerwise`)."""
        return resolve_layers(layers, self.num_layers)

    def embed(self, tokens: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """States ``[B, T, D]`` per layer (keys as given by :meth:`layer_index`)."""
        want = self.layer_index(layers)
        reps = self.model(tokens, repr_layers=want)["representations"]
        return {i: reps[i] for i in want}

    def forward_layers(self, tokens: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """Deprecated name of :meth:`embed` (the layer-wise contract of every encoder); goes in the next release."""
        warnings.warn("ProteinLM.forward_layers is now ProteinLM.embed", DeprecationWarning, stacklevel=2)
        return self.embed(tokens, layers)

    def masked_logits(self, src: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, 33]`` at the selected positions."""
        return self.model(src)["logits"][selected]

    def save(self, path: str | Path) -> None:
        """Write an ESM-2 model in fair-esm's checkpoint layout (``model`` + ``cfg``), atomically."""
        from esm.model.esm2 import ESM2

        if not isinstance(self.model, ESM2):
            raise InputError(f"only ESM-2 models can be saved here, not {type(self.model).__name__}")
        m = self.model
        cfg = argparse.Namespace(
            encoder_layers=m.num_layers,
            encoder_embed_dim=m.embed_dim,
            encoder_attention_heads=m.attention_heads,
            token_dropout=m.token_dropout,
        )
        data = {
            "model": {k: v.detach().cpu() for k, v in m.state_dict().items()},
            "cfg": {"model": cfg},
            "biostrata": {"name": self.name, "max_residues": self.max_residues},
        }
        atomic_write(Path(path), lambda tmp: torch.save(data, tmp))


#: What ``load_protein_lm`` takes, for its errors.
_ESM_FILE = "a fair-esm .pt file (e.g. esm2_t33_650M_UR50D.pt) or a hub name such as esm2_t33_650M_UR50D"


def load_protein_lm(name_or_path: str | Path, trusted: bool = False, max_residues: int | None = None) -> ProteinLM:
    """Load an ESM model from a local fair-esm ``.pt`` file or by hub name (e.g. ``esm2_t33_650M_UR50D``,
    ``esm1b_t33_650M_UR50S``) from ``$TORCH_HOME/hub/checkpoints``, downloading it if absent.

    Hub files come from fair-esm's own server and are unpickled in full; a local file must load with
    ``weights_only`` unless ``trusted``. ``max_residues`` defaults to the value saved with the model,
    else 1022 (ESM-1b's hard limit, and the length ESM-2 was trained on).
    """
    import esm

    if max_residues is not None and max_residues < 1:
        raise InputError(f"max_residues={max_residues} (--max-residues): must be at least 1")
    path = Path(name_or_path)
    if path.is_dir():
        raise InputError(
            f"{path} is a folder; pass the fair-esm .pt file itself (its -contact-regression.pt sibling is optional)"
        )
    if not path.is_file():
        if path.suffix == ".pt" or os.sep in str(name_or_path):
            raise DataNotFoundError(f"ESM checkpoint not found: {path}")
        path, trusted = hub_file(str(name_or_path), f"{ESM_URL}{name_or_path}.pt", "ESM model"), True
    trust = "--trust-checkpoint (trusted=True; official fair-esm files need it)"
    data = load_torch_file(path, _ESM_FILE, trusted, trust)
    if not isinstance(data, dict) or "model" not in data:
        raise InputError(f"{path}: a torch file, but not a fair-esm checkpoint; expected {_ESM_FILE}")
    regression_path = path.with_name(path.stem + "-contact-regression.pt")
    regression = (
        load_torch_file(regression_path, "fair-esm contact-regression weights", trusted, trust)
        if regression_path.is_file()
        else None
    )
    arch = "esm2" if "cfg" in data else path.stem
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Regression weights not found")
            model, alphabet = esm.pretrained.load_model_and_alphabet_core(arch, data, regression)
    except (KeyError, AttributeError, RuntimeError, ValueError) as err:
        raise InputError(
            f"{path}: not a fair-esm checkpoint this version can read ({type(err).__name__}: {err})"
        ) from None
    saved = data.get("biostrata", {}) if isinstance(data.get("biostrata"), dict) else {}
    limit = max_residues if max_residues is not None else saved.get("max_residues", 1022)
    return ProteinLM(model.eval(), alphabet, saved.get("name") or path.stem, limit)


def small_protein_lm(
    num_layers: int = 4, embed_dim: int = 64, attention_heads: int = 4, seed: int = 0, max_residues: int | None = 1022
) -> ProteinLM:
    """A randomly initialised ESM-2 of the given size (ESM-1b alphabet), e.g. to pre-train on a CPU."""
    from esm.data import Alphabet
    from esm.model.esm2 import ESM2

    if embed_dim % attention_heads:
        raise InputError(f"embed_dim={embed_dim} must be a multiple of attention_heads={attention_heads}")
    torch.manual_seed(seed)
    alphabet = Alphabet.from_architecture("ESM-1b")
    model = ESM2(num_layers=num_layers, embed_dim=embed_dim, attention_heads=attention_heads, alphabet=alphabet)
    return ProteinLM(model, alphabet, f"esm2_t{num_layers}_d{embed_dim}_small", max_residues)


__getattr__ = moved(
    __name__,
    {name: "biostrata.models.extract" for name in ("plan_batches", "window_starts", "embed_batch", "extract_embeddings",
                                                   "shard_path")},
    " (plan_batches now counts special tokens only when given special=2)",
)  # fmt: skip
