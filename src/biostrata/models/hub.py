"""Published weights by name: the torch hub cache (``$TORCH_HOME/hub/checkpoints/<name>.pt``), filled
from the publisher's URL when the file is not there yet."""

from __future__ import annotations

from pathlib import Path

import torch

from biostrata.errors import DataNotFoundError

__all__ = ["hub_file"]


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
