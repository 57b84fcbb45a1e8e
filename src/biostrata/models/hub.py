"""Model weights from files: a torch file read safely (:func:`load_torch_file`), and published
weights by name from the torch hub cache (``$TORCH_HOME/hub/checkpoints/<name>.pt``), filled from
the publisher's URL when the file is not there yet (:func:`hub_file`)."""

from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from pathlib import Path

import torch

from biostrata.errors import DataNotFoundError, InputError, ParameterError

__all__ = ["hub_file", "load_torch_file"]


def hub_file(name: str, url: str, what: str) -> Path:
    """Path of ``<name>.pt`` in the torch hub cache, downloaded from ``url`` if absent; ``what`` names the
    kind of model in the error raised when it is neither there nor downloadable (offline, HTTP error)."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pt"
    if cached.is_file():
        return cached
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=False)
    except Exception as err:  # noqa: BLE001 - no network, HTTP errors, ...
        raise DataNotFoundError(
            f"{what} {name!r} is not in {cached.parent} and could not be downloaded from {url} "
            f"({type(err).__name__}). Download {name}.pt yourself and pass its path, or put it in {cached.parent}."
        ) from None
    return cached


# The first bytes of a torch file in the legacy (pre-1.6, non-zip) format: its pickled magic number.
_LEGACY_TORCH_HEADER = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[:-1]


def load_torch_file(path: str | Path, expected: str, trusted: bool = False, trust_option: str | None = None) -> object:
    """The object saved in the torch file ``path`` (on the CPU), read with ``weights_only`` (tensors, plain
    data and ``argparse.Namespace``); full unpickling, which can run code, only if ``trusted``.

    Every failure is an ``InputError`` that says the file should be ``expected``; only a real torch file
    that needs full unpickling gets the advice to trust it (``trust_option``, e.g. ``trusted=True``, as a
    :class:`~biostrata.errors.ParameterError` of ``trusted``;
    none when the caller cannot)."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(len(_LEGACY_TORCH_HEADER))
    if not head:
        raise InputError(f"{path}: empty file (0 bytes); expected {expected}")
    if not zipfile.is_zipfile(path) and head != _LEGACY_TORCH_HEADER:
        raise InputError(f"{path}: not a PyTorch file (torch.save writes a zip archive); expected {expected}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trusted:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            reason = f"it stores a {found.group(1)} object" if found else "it stores Python objects"
            advice = (
                f"if you got it from a trusted source, pass {trust_option}; full unpickling can run code"
                if trust_option
                else f"expected {expected}, which loads without"
            )
            message = f"{path}: needs full unpickling ({reason}); {advice}"
            raise (ParameterError("trusted", message) if trust_option else InputError(message)) from None
    except Exception as err:  # noqa: BLE001 - a corrupt or foreign file becomes one message
        raise InputError(f"{path}: cannot read ({type(err).__name__}: {err}); expected {expected}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{path}: cannot read ({type(err).__name__}: {err}); expected {expected}") from None
