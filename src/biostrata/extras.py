"""The optional parts of biostrata (pip extras) and the one way the code imports them.

The core (genome CNNs, training, delta, CKA, probes, the domain LM) installs with ``pip install
biostrata``; these parts need an extra:

- ``protein``: protein language models (fair-esm's ``esm``, Hugging Face ``transformers``);
- ``annotate``: genome annotation (``pyhmmer``, ``pyrodigal``, ``gb-io``);
- ``umap``: UMAP pictures (``umap-learn``);
- ``ray``: sweeps on a Ray cluster (``ray``).

``require(module)`` imports a module of one of them; when its package is missing, the error is one line
that names the extra to install (``pip install 'biostrata[protein]'``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from biostrata.errors import InputError

__all__ = ["EXTRAS", "require"]

#: extra -> {top-level module: the PyPI package that provides it}
EXTRAS: dict[str, dict[str, str]] = {
    "protein": {"esm": "fair-esm", "transformers": "transformers"},
    "annotate": {"pyhmmer": "pyhmmer", "pyrodigal": "pyrodigal", "gb_io": "gb-io"},
    "umap": {"umap": "umap-learn"},
    "ray": {"ray": "ray"},
}


def require(module: str) -> ModuleType:
    """``importlib.import_module(module)``, ``module`` being part of an extra's package (``esm.model.esm2``).

    Raises ``InputError`` naming the extra when that package is not installed; an ImportError raised
    inside an installed package (a broken install, a missing dependency of its own) passes through."""
    top = module.partition(".")[0]
    extra = next((name for name, modules in EXTRAS.items() if top in modules), None)
    if extra is None:
        raise ValueError(f"{module!r} belongs to no extra of biostrata.extras.EXTRAS")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if (err.name or "").partition(".")[0] != top:
            raise
        raise InputError(
            f"this needs {EXTRAS[extra][top]}, which is not installed: pip install 'biostrata[{extra}]'"
        ) from None
