"""The exceptions users see. Each message says what went wrong and what to do."""

from __future__ import annotations


class BiostrataError(Exception):
    """Base class of every error biostrata raises on purpose."""


class InputError(BiostrataError, ValueError):
    """Bad input: a file, a line, a character or an argument. The message names it."""


class DataNotFoundError(BiostrataError, FileNotFoundError):
    """A dataset or file is missing. The message names the expected path and where to get it."""


class NumericalError(BiostrataError, FloatingPointError):
    """A run produced NaN or infinity. The message says where; no metric is reported."""


class ParameterError(InputError):
    """A refused value of a library function's parameter. ``param`` is the parameter's name, so that the
    command layer, which alone knows its options, can name the option too (``--token-budget`` for
    ``token_budget``); the message itself names the parameter, never a command-line flag."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(message)
