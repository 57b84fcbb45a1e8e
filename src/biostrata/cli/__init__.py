"""The ``biostrata`` command: one thin subcommand per job; the work lives in the library.

The subcommands live in :mod:`.genome`, :mod:`.representations` and :mod:`.studies`, each joining
the registry of :mod:`.common` with ``@command(...)``; importing them here registers them. Their
modules load no torch, Lightning or pandas at import time (each ``_run_*`` function imports what it
needs), so ``biostrata COMMAND --help`` and argument errors are fast. Ctrl-C while the command starts
(this module's imports, the parser) exits 130 with one line and no traceback: the handler is installed
before those imports; once the command runs, Ctrl-C is a KeyboardInterrupt that :func:`main` and the
commands answer.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings


def _on_interrupt(signum: int, frame: object) -> None:
    """SIGINT while `biostrata` runs. Inside an import (this module's, the parser's, torch's in a command):
    exit 130 at once, in one line; an exception raised there can surface wrapped in another one
    ("RuntimeError: Error calling __set_name__") or abort in C++ code. Anywhere else: a KeyboardInterrupt,
    as Python's own handler raises, which :func:`main` and the commands answer (what was kept, how to
    resume)."""
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("importlib._bootstrap"):  # type: ignore[attr-defined]
            sys.stderr.write("biostrata: interrupted\n")
            sys.stderr.flush()
            os._exit(130)
        frame = frame.f_back  # type: ignore[attr-defined]
    raise KeyboardInterrupt


def _hold_interrupts() -> object:
    """Install :func:`_on_interrupt` for SIGINT where Python's own handler is (not where SIGINT is ignored,
    nor outside the main thread); return the handler to restore, or None."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    try:
        return signal.signal(signal.SIGINT, _on_interrupt)
    except ValueError:  # not the main thread
        return None


def _restore(previous: object) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)  # type: ignore[arg-type]


_starting = _hold_interrupts()  # before the imports below: the `biostrata` command imports this module first

import argparse  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from biostrata import __version__  # noqa: E402
from biostrata.cli import annotate, genome, representations, studies  # noqa: E402, F401  (registers their subcommands)
from biostrata.cli.common import COMMANDS, check_paths, check_threads  # noqa: E402
from biostrata.cli.options import named  # noqa: E402
from biostrata.errors import BiostrataError  # noqa: E402

_restore(_starting)  # whoever imports this module keeps its own handler; main() installs it again

__all__ = ["build_parser", "main"]

# The order of the subcommands in `biostrata --help`; a command not named here comes last.
ORDER = (
    "demo", "study", "train", "simulate", "benchmark", "report", "annotate", "pretrain", "embed", "delta", "cka", "probe",
)  # fmt: skip


class HelpFormatter(argparse.HelpFormatter):
    """The help of every command: each option's text ends with its default, taken from the parser (where the
    default is written once), unless the text gives it already. Unset (None) and off (False) are not shown."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default is argparse.SUPPRESS  # not 0: a default worth showing
        if not action.option_strings or unset or "default" in text:
            return text
        value = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {str(value).replace('%', '%%')})"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each sets ``run=<function(args) -> int>``."""
    parser = argparse.ArgumentParser(
        prog="biostrata",
        description="Learn, measure and compare representations of biological sequences "
        "in Euclidean and hyperbolic geometry.",
    )
    parser.add_argument("--version", action="version", version=f"biostrata {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in sorted(COMMANDS, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        cmd = COMMANDS[name]
        cmd.add_options(sub.add_parser(name, help=cmd.help, description=cmd.description, formatter_class=HelpFormatter))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``biostrata`` with ``argv`` (default: the command line); return the exit status."""
    held = _hold_interrupts()
    shown = warnings.formatwarning
    warnings.formatwarning = _one_line  # a warning reads as an error does, not as Python's file:line and code
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = shown
        _restore(held)


def _one_line(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"biostrata: warning: {message}\n"


def _main(argv: Sequence[str] | None) -> int:
    args = argparse.Namespace()
    try:
        args = build_parser().parse_args(argv)
        check_paths(args)  # before any work: a wrong path or option fails in a fraction of a second
        check_threads(args)
        if (settings := getattr(args, "settings_class", None)) is not None:
            args.settings = settings.from_args(args)  # checked here, before torch and Lightning load
        return int(args.run(args) or 0)
    except BiostrataError as err:  # one named by a library parameter names the command's option too
        print(f"biostrata: error: {named(err, getattr(args, 'flags', {}))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("biostrata: interrupted; finished results are kept.", file=sys.stderr)
        return 130
