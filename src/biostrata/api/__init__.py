"""The front door's functions (re-exported lazily by :mod:`biostrata`), one module per line of work:
:mod:`.models` (load, embed), :mod:`.domains` (annotate), :mod:`.genome` (simulate, train) and
:mod:`.analysis` (delta, cka, probe).

Each function owns its defaults; a command reads them with :func:`default` so that they are written
once. The modules load nothing heavy at import time (each function imports what it needs), so the
commands can build their options from them at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["default"]


def default(function: Callable, name: str) -> Any:
    """The default value of keyword ``name`` of ``function`` (a programming error if it has none)."""
    value = inspect.signature(function).parameters[name].default
    assert value is not inspect.Parameter.empty, f"{function.__name__}({name}) has no default"
    return value
