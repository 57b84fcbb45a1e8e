"""Names moved in a release keep working for one more, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable


def moved(module: str, names: dict[str, str], hint: str = "") -> Callable[[str], object]:
    """A module-level ``__getattr__`` for ``module`` whose ``names`` (old name -> new module) now live
    elsewhere: using one warns and returns the new object. ``hint`` is added to the warning."""

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} moved to {names[name]}.{name}{hint}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
