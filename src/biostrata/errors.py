"""The exceptions users see. Each message says what went wrong and what to do."""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class BiostrataError(Exception):
    """Base class of every error biostrata raises on purpose."""


class InputError(BiostrataError, ValueError):
    """Bad input: a file, a line, a character or an argument. The message names it."""


class DataNotFoundError(BiostrataError, FileNotFoundError):
    """A dataset or file is missing. The message names the expected path and where to get it; ``param``, where
    one is given, the parameter that points at it (as :class:`ParameterError`'s, for the command's option)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class NumericalError(BiostrataError, FloatingPointError):
    """A run produced NaN or infinity. The message says where; no metric is reported."""


class ParameterError(InputError):
    """A refused value of a library function's parameter. ``param`` is the parameter's name, so that the
    command layer, which alone knows its options, can name the option too (``--token-budget`` for
    ``token_budget``); the message itself names the parameter, never a command-line flag."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(message)

    def renamed(self, names: Mapping[str, str]) -> ParameterError:
        """This error as the caller, whose parameters ``names`` renames (``{"n_splits": "folds"}``), would
        raise it: its ``param`` and every whole-word mention of a renamed parameter in the message renamed."""
        pattern = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, names)) + r")(?![\w./-])")
        return ParameterError(names.get(self.param, self.param), pattern.sub(lambda m: names[m.group(1)], str(self)))


@contextmanager
def parameters_named(names: Mapping[str, str]) -> Iterator[None]:
    """Within the block, a :class:`ParameterError` raised by a callee about one of the parameters ``names``
    renames is raised again under the caller's parameter names (:meth:`ParameterError.renamed`): a function
    that passes its ``folds`` on as ``n_splits`` reports an error of ``n_splits`` as one of ``folds``."""
    try:
        yield
    except ParameterError as err:
        if err.param not in names:
            raise
        raise err.renamed(names) from None


def check_count(param: str, value: object, least: int = 1, most: int | None = None, why: str = "") -> None:
    """Refuse a ``value`` of the parameter ``param`` that is not a whole number of at least ``least`` (and at
    most ``most``, if given): a :class:`ParameterError` that names it, ``why`` saying why the bounds
    (``check_count("points", 2, 4, why="the four-point condition")``). Imports nothing: a function checks its
    counts with it before it loads anything heavy."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not least <= value <= (most or value):
        bounds = f" from {least} to {most}" if most is not None else f", {least} or more"
        raise ParameterError(param, f"{param}={value!r}: give a whole number{bounds}" + (f" ({why})" if why else ""))


def check_fraction(fraction: float, param: str = "fraction") -> None:
    """Refuse a ``fraction`` held out (a dev or validation share) that holds out nothing or all: a
    :class:`ParameterError` of the parameter ``param``."""
    if not 0.0 < fraction < 1.0:
        raise ParameterError(param, f"{param}={fraction}: give a share strictly between 0 and 1, e.g. 0.1")
