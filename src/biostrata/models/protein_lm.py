"""Protein language models: one interface, a small adapter per backend.

Every backend tokenizes a protein as ``<cls> residues <eos>`` (ESM's alphabet) and numbers layers as
fair-esm does: layer 0 is the token embedding, layer ``i`` the output of transformer block ``i``, and
the last layer is reported after the final LayerNorm. Backends: :class:`FairESM` (fair-esm ``.pt``
files and names; models pre-trained here) and :class:`~biostrata.models.esm_hf.TransformersESM`
(Hugging Face ``EsmModel``: hub names such as ``facebook/esm2_t33_650M_UR50D`` or a local model
directory, safetensors weights). :func:`load_protein_lm` picks the backend. Running a model over many
proteins (packing, windows, precision, HDF5 store, resume, sharding) is :mod:`biostrata.models.extract`.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from biostrata.compat import moved
from biostrata.errors import InputError, ParameterError
from biostrata.extras import require
from biostrata.io import atomic_write
from biostrata.models.esm_hf import check_model_path, load_transformers_esm
from biostrata.models.hub import hub_file, load_torch_file
from biostrata.models.pretrained import Pretrained, load_pretrained, pretrained_config
from biostrata.models.protein_interface import ProteinLM

__all__ = ["ProteinLM", "FairESM", "load_protein_lm", "fair_esm_from_saved", "small_protein_lm", "ESM_URL", "BACKENDS"]

#: Where fair-esm publishes its weights (``<name>.pt``).
ESM_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/"


class FairESM(Pretrained, ProteinLM):
    """A fair-esm model (ESM-1b, ESM-2, or a small ESM-2 trained here)."""

    backend = "fair-esm"

    def __init__(self, model: nn.Module, alphabet: object, name: str = "", max_residues: int | None = 1022) -> None:
        super().__init__()
        self.model, self.alphabet, self.name = model, alphabet, name
        self.max_residues = max_residues
        a = alphabet
        self._set_vocab(a.tok_to_idx, a.cls_idx, a.eos_idx, a.padding_idx, a.unk_idx)

    @property
    def num_layers(self) -> int:
        return int(self.model.num_layers)

    @property
    def embed_dim(self) -> int:
        return int(self.model.embed_dim if hasattr(self.model, "embed_dim") else self.model.args.embed_dim)

    def embed(self, tokens: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """States ``[B, T, D]`` per layer (keys as given by :meth:`layer_index`)."""
        want = self.layer_index(layers)
        reps = self.model(tokens, repr_layers=want)["representations"]
        return {i: reps[i] for i in want}

    def masked_logits(self, src: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, 33]`` at the selected positions."""
        return self.model(src)["logits"][selected]

    family = "fair-esm"

    def _esm2(self) -> nn.Module:
        ESM2 = require("esm.model.esm2").ESM2

        if not isinstance(self.model, ESM2):
            raise InputError(f"only ESM-2 models can be saved here, not {type(self.model).__name__}")
        return self.model

    def pretrained_config(self) -> dict:
        """``architecture`` (the arguments of fair-esm's ``ESM2``; alphabet ESM-1b, as ESM-2's), ``name``,
        ``max_residues``."""
        m = self._esm2()
        arch = {"num_layers": m.num_layers, "embed_dim": m.embed_dim, "attention_heads": m.attention_heads,
                "token_dropout": m.token_dropout}  # fmt: skip
        return {"architecture": arch, "name": self.name, "max_residues": self.max_residues}

    def pretrained_tensors(self) -> dict:
        return self._esm2().state_dict()

    @classmethod
    def from_config(cls, config: dict, tensors: dict, where: str) -> FairESM:
        Alphabet = require("esm.data").Alphabet
        ESM2 = require("esm.model.esm2").ESM2

        alphabet = Alphabet.from_architecture("ESM-1b")
        model = ESM2(**config["architecture"], alphabet=alphabet)
        model.load_state_dict(tensors)
        return cls(model.eval(), alphabet, config["name"], config["max_residues"])

    def save_fair_esm(self, path: str | Path) -> None:
        """Export an ESM-2 model in fair-esm's checkpoint layout (``model`` + ``cfg``), atomically; fair-esm's
        ``esm.pretrained.load_model_and_alphabet_local`` reads it."""
        m = self._esm2()
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


ProteinLM._legacy = FairESM  # the deprecated ProteinLM(model, alphabet, ...) makes one, for one release

#: What ``load_protein_lm`` takes, for its errors.
_ESM_FILE = "a fair-esm .pt file (e.g. esm2_t33_650M_UR50D.pt) or a hub name such as esm2_t33_650M_UR50D"


#: The backends :func:`load_protein_lm` knows.
BACKENDS = ("auto", "transformers", "fair-esm")


def load_protein_lm(
    name_or_path: str | Path,
    trusted: bool = False,
    max_residues: int | None = None,
    backend: str = "auto",
    progress: bool = False,
) -> ProteinLM:
    """Load an ESM model. A folder of ``save_pretrained`` (either backend) loads as it was saved. Otherwise
    ``backend="auto"``: a ``.pt`` file is fair-esm's, a directory and a name are transformers' (:mod:`biostrata.models.esm_hf`; ``esm2_t33_650M_UR50D`` means
    ``facebook/esm2_t33_650M_UR50D``). ``backend="fair-esm"`` with a name loads fair-esm's file from
    ``$TORCH_HOME/hub/checkpoints``, downloading it if absent.

    fair-esm's hub files come from its own server and are unpickled in full; a local file must load with
    ``weights_only`` unless ``trusted``. ``max_residues`` defaults to the value saved with the model,
    else 1022 (ESM-1b's hard limit, and the length ESM-2 was trained on). A path that does not exist
    (``./my_esm``, ``~/esm``, ``a/b/c``) is refused, not looked up on the hub
    (:func:`~biostrata.models.esm_hf.check_model_path`). ``progress``: transformers' loading bars.
    """
    if backend not in BACKENDS:
        raise ParameterError("backend", f"backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    if max_residues is not None and max_residues < 1:
        raise ParameterError("max_residues", f"max_residues={max_residues}: must be at least 1")
    path = check_model_path(name_or_path)
    config = pretrained_config(path)
    if config is not None:  # a folder of save_pretrained, of either backend
        model = load_pretrained(path, config)
        if not isinstance(model, ProteinLM):
            raise InputError(f"{path}: holds a {type(model).__name__}, not a protein LM")
        if max_residues is not None:
            model.max_residues = max_residues
        return model
    if backend == "transformers" or (
        backend == "auto" and (path.is_dir() or not (path.is_file() or path.suffix == ".pt"))
    ):
        return load_transformers_esm(name_or_path, max_residues, progress)
    return _load_fair_esm(path, str(name_or_path), trusted, max_residues)


def _load_fair_esm(path: Path, name: str, trusted: bool, max_residues: int | None) -> FairESM:
    if path.is_dir():
        raise InputError(
            f"{path} is a folder; pass the fair-esm .pt file itself (its -contact-regression.pt sibling is optional)"
        )
    if not path.is_file():
        if "/" in name or os.sep in name:  # org/name: a Hugging Face name
            raise ParameterError(
                "backend",
                f"{name}: fair-esm (backend='fair-esm') takes a .pt file or a bare name such as "
                "esm2_t33_650M_UR50D; org/name is a Hugging Face name: use backend 'auto' or 'transformers'",
            )
        path, trusted = hub_file(name, f"{ESM_URL}{name}.pt", "ESM model"), True
    return fair_esm_from_saved(load_torch_file(path, _ESM_FILE, trusted, TRUST), path, trusted, max_residues)


#: How to allow full unpickling, for the errors of files that need it.
TRUST = "trusted=True (official fair-esm files need it)"


def fair_esm_from_saved(data: object, path: Path, trusted: bool = False, max_residues: int | None = None) -> FairESM:
    """The model of a dict read from the fair-esm file ``path`` (its ``-contact-regression.pt`` sibling,
    if there, is read too; ``trusted`` allows its full unpickling). ``max_residues`` as in
    :func:`load_protein_lm`."""
    esm = require("esm")

    if not isinstance(data, dict) or "model" not in data:
        raise InputError(f"{path}: a torch file, but not a fair-esm checkpoint; expected {_ESM_FILE}")
    regression_path = path.with_name(path.stem + "-contact-regression.pt")
    regression = (
        load_torch_file(regression_path, "fair-esm contact-regression weights", trusted, TRUST)
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
    return FairESM(model.eval(), alphabet, saved.get("name") or path.stem, limit)


def small_protein_lm(
    num_layers: int = 4, embed_dim: int = 64, attention_heads: int = 4, seed: int = 0, max_residues: int | None = 1022
) -> FairESM:
    """A randomly initialised ESM-2 of the given size (ESM-1b alphabet), e.g. to pre-train on a CPU."""
    Alphabet = require("esm.data").Alphabet
    ESM2 = require("esm.model.esm2").ESM2

    if embed_dim % attention_heads:
        raise ParameterError(
            "embed_dim", f"embed_dim={embed_dim}: must be a multiple of attention_heads={attention_heads}"
        )
    torch.manual_seed(seed)
    alphabet = Alphabet.from_architecture("ESM-1b")
    model = ESM2(num_layers=num_layers, embed_dim=embed_dim, attention_heads=attention_heads, alphabet=alphabet)
    return FairESM(model, alphabet, f"esm2_t{num_layers}_d{embed_dim}_small", max_residues)


__getattr__ = moved(
    __name__,
    {name: "biostrata.models.extract" for name in ("plan_batches", "window_starts", "embed_batch", "extract_embeddings",
                                                   "shard_path")},
    " (plan_batches now counts special tokens only when given special=2)",
)  # fmt: skip
