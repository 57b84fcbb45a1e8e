"""One model file format for every family: a folder with ``config.json`` and ``model.safetensors``.

``config.json`` holds ``"biostrata": {"format": "biostrata-model/1", "family": F, "code_version": V}``
beside the family's own keys: what builds the model again (architecture, geometry and curvature, class
labels, vocabulary). ``model.safetensors`` holds the weights as a flat ``name -> tensor`` map; reading it
runs no code (no unpickling). The families (``family`` -> class):

- ``genome-cnn``: :class:`~biostrata.models.genome_cnn.EuclideanCNN` / ``HyperbolicCNN`` (the folder of a
  ``biostrata train`` run);
- ``domain-lm``: :class:`~biostrata.models.domain_lm.DomainLM`;
- ``fair-esm``: :class:`~biostrata.models.protein_lm.FairESM` (ESM-2);
- ``transformers-esm``: :class:`~biostrata.models.esm_hf.TransformersESM` (the folder is also a transformers
  model folder: its ``config.json`` is transformers', with the ``biostrata`` key added);
- ``family-table``: :class:`~biostrata.models.init_table.FamilyTable`.

Each class has ``save_pretrained(directory)`` and ``from_pretrained(directory)`` (:class:`Pretrained`);
:func:`load_pretrained` reads a folder of any family. The weights are written first and ``config.json``
last, each atomically, so a folder with a readable ``config.json`` is complete.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from biostrata.errors import DataNotFoundError, InputError
from biostrata.io import atomic_write, atomic_write_json

__all__ = [
    "FORMAT",
    "CONFIG",
    "WEIGHTS",
    "FAMILIES",
    "Pretrained",
    "is_pretrained",
    "pretrained_config",
    "load_pretrained",
]

#: The format of ``config.json`` / ``model.safetensors`` this code writes and reads.
FORMAT = "biostrata-model/1"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
#: Each family and the class that reads it (``module:Class``).
FAMILIES = {
    "genome-cnn": "biostrata.models.genome_cnn:GenomeCNN",
    "domain-lm": "biostrata.models.domain_lm:DomainLM",
    "fair-esm": "biostrata.models.protein_lm:FairESM",
    "transformers-esm": "biostrata.models.esm_hf:TransformersESM",
    "family-table": "biostrata.models.init_table:FamilyTable",
}


def read_config(directory: str | Path) -> dict:
    """The ``config.json`` of a model folder as a dict (``{}`` when the folder has none)."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(
            f"{path}: not JSON ({err}); a model folder's config.json is written by save_pretrained"
        ) from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: holds a JSON {type(config).__name__}, not an object")
    return config


def pretrained_config(directory: str | Path) -> dict | None:
    """The ``config.json`` of a folder written by ``save_pretrained`` (one that names a family), None for any
    other path: :func:`is_pretrained` and the config read once, for a caller that goes on to load the model
    (:func:`load_pretrained` takes it)."""
    if not Path(directory).is_dir():
        return None
    config = read_config(directory)
    return config if isinstance(config.get("biostrata"), dict) else None


def is_pretrained(directory: str | Path) -> bool:
    """Whether ``directory`` holds a model written by ``save_pretrained`` (its ``config.json`` names a family)."""
    return pretrained_config(directory) is not None


def _family(config: Mapping, where: Path) -> str:
    meta = config.get("biostrata")
    if not isinstance(meta, dict):
        raise InputError(f"{where}: no 'biostrata' entry; not a folder written by save_pretrained")
    if meta.get("format") != FORMAT:
        raise InputError(
            f"{where}: format {meta.get('format')!r}; this biostrata reads {FORMAT}: upgrade biostrata to read it"
        )
    family = meta.get("family")
    if family not in FAMILIES:
        raise InputError(f"{where}: unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return family


def _class(family: str) -> type:
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def load_pretrained(directory: str | Path, config: dict | None = None) -> Any:
    """The model (eval mode, on the CPU) of a folder written by ``save_pretrained``, of any family.
    ``config``: the folder's ``config.json`` when the caller has read it (:func:`pretrained_config`), so that
    one load parses it once; read here otherwise."""
    directory = Path(directory)
    if config is None:
        config = read_config(directory)
    if not config:
        raise DataNotFoundError(f"{directory}: no {CONFIG}; give a folder written by save_pretrained")
    return _class(_family(config, directory / CONFIG))._from_parsed(directory, config)


def write_weights(path: Path, tensors: Mapping[str, Any]) -> None:
    """Write ``tensors`` as safetensors atomically: contiguous CPU copies; a tensor stored under several
    names (a parameter shared by modules) is written once per name, since safetensors refuses shared storage."""
    from safetensors.torch import save_file

    seen: set[tuple[int, int]] = set()
    flat = {}
    for name, tensor in tensors.items():
        t = tensor.detach().cpu().contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        flat[name] = t.clone() if key in seen else t
        seen.add(key)
    atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata={"format": FORMAT}))


def read_weights(path: Path) -> dict:
    """The tensors of a safetensors file, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataNotFoundError(f"{path}: missing; a model folder holds {CONFIG} and {WEIGHTS}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise InputError(f"{path}: not a readable safetensors file ({err}); save the model again") from None


def meta(family: str) -> dict:
    """The ``biostrata`` entry of a ``config.json``."""
    from biostrata.provenance import code_version

    return {"format": FORMAT, "family": family, "code_version": code_version()}


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` for a family: a subclass names its ``family`` and gives
    ``pretrained_config()`` (JSON data), ``pretrained_tensors()`` (name -> tensor) and
    ``from_config(config, tensors, where)``, the inverse of the two."""

    family: ClassVar[str]

    def pretrained_config(self) -> dict:
        raise NotImplementedError

    def pretrained_tensors(self) -> Mapping[str, Any]:
        return self.state_dict()  # type: ignore[attr-defined]

    @classmethod
    def from_config(cls, config: dict, tensors: dict, where: str) -> Any:
        raise NotImplementedError

    def save_pretrained(self, directory: str | Path, **extra: Any) -> Path:
        """Write ``config.json`` (the family's config, ``extra`` entries added) and ``model.safetensors`` in
        ``directory`` (made if needed; other files in it stay). Returns the folder."""
        directory = Path(directory)
        config = {**self.pretrained_config(), **extra, "biostrata": meta(self.family)}
        write_weights(directory / WEIGHTS, self.pretrained_tensors())
        atomic_write_json(directory / CONFIG, config)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Any:
        """The model of a folder of :meth:`save_pretrained`, in eval mode on the CPU."""
        directory = Path(directory)
        config = read_config(directory)
        if not config:
            raise DataNotFoundError(f"{directory}: no {CONFIG}; give a folder written by save_pretrained")
        return cls._from_parsed(directory, config)

    @classmethod
    def _from_parsed(cls, directory: Path, config: dict) -> Any:
        """:meth:`from_pretrained` of a folder whose ``config.json`` is read already (``config``, not empty)."""
        where = directory / CONFIG
        family = _family(config, where)
        if family != cls.family:
            raise InputError(f"{where}: holds a {family} model, not a {cls.family}; read it with biostrata.load")
        config = {k: v for k, v in config.items() if k != "biostrata"}
        try:
            return cls.from_config(config, read_weights(directory / WEIGHTS), str(directory))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise InputError(
                f"{directory}: a damaged model folder ({type(err).__name__}: {err}); save it again"
            ) from None
