"""The ``biostrata`` command: one thin subcommand per job; the work lives in the library.

The subcommands live in :mod:`.genome`, :mod:`.representations` and :mod:`.studies`, each joining
the registry of :mod:`.common` with ``@command(...)``; importing them here registers them. Their
modules load no torch, Lightning or pandas at import time (each ``_run_*`` function imports what it
needs), so ``biostrata COMMAND --help`` and argument errors are fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from biostrata import __version__
from biostrata.cli import annotate, genome, representations, studies  # noqa: F401  (registers their subcommands)
from biostrata.cli.common import COMMANDS, check_paths, check_threads
from biostrata.errors import BiostrataError

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
        if not action.option_strings or default in (None, False, argparse.SUPPRESS) or "default" in text:
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
    args = build_parser().parse_args(argv)
    try:
        check_paths(args)  # before any work: a wrong path or option fails in a fraction of a second
        check_threads(args)
        if (settings := getattr(args, "settings_class", None)) is not None:
            args.settings = settings.from_args(args)  # checked here, before torch and Lightning load
        return int(args.run(args) or 0)
    except BiostrataError as err:
        print(f"biostrata: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("biostrata: interrupted; finished results are kept.", file=sys.stderr)
        return 130
