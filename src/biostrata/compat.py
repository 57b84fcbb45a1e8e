"""Names moved in a release keep working for one more, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable


def moved(module: str, names: dict[str, str], hint: str = "") -> Callable[[str], object]:
    """A module-level ``__getattr__`` for ``module`` whose ``names`` now live elsewhere: old name -> new
    module (same name) or ``"new.module:new_name"``. Using one warns and returns the new object.
    ``hint`` is added to the warning."""

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, new = names[name].partition(":")
        warnings.warn(
            f"{module}.{name} moved to {target}.{new or name}{hint}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(target), new or name)

    return __getattr__
