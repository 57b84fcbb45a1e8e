"""What the subcommands share: the registry they join, the options several of them take, and the
helpers their ``_run_*`` functions call. Loads no torch, Lightning or pandas (``--help`` stays fast).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from biostrata.cli.options import Option
from biostrata.errors import InputError

AddOptions = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, the one-line ``help`` of ``biostrata --help``, the ``description`` of
    ``biostrata NAME --help``, and the function that adds its options and sets ``run=<function(args) -> int>``."""

    name: str
    help: str
    description: str
    add_options: AddOptions


# Every subcommand, by name; biostrata.cli builds the parser from it.
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[AddOptions], AddOptions]:
    """Register the decorated function as the one that adds the options of subcommand ``name``. The
    first line of its docstring is the subcommand's one-line help, the paragraphs after it its description
    (argparse rewraps them; ``python -OO`` drops docstrings, and with them these texts)."""

    def register(add_options: AddOptions) -> AddOptions:
        help, _, description = inspect.cleandoc(add_options.__doc__ or "").partition("\n\n")
        COMMANDS[name] = Command(name, help, description, add_options)
        return add_options

    return register


def check_paths(args: argparse.Namespace) -> None:
    """Check every path option declared with :func:`.options.paths`; the first bad one raises an ``InputError``
    that names the option and the path."""
    for dest, (kind, flag) in (getattr(args, "path_kinds", None) or {}).items():
        values = getattr(args, dest, None)
        for value in values if isinstance(values, list) else [] if values is None else [values]:
            _check_path(flag, str(value), kind)


def _check_path(flag: str, value: str, kind: str) -> None:
    if kind == "spec" and ":" in Path(value).name:
        value = value.rpartition(":")[0]
    path = Path(value)
    where = f"{flag} {value}"
    if kind in ("file", "spec"):
        if not path.exists():
            raise InputError(f"{where}: no such file")
        if path.is_dir() and not (path / "config.json").is_file():  # a model folder is read as one file
            raise InputError(f"{where}: is a folder; give a file")
    elif kind == "dir":
        if not path.exists():
            raise InputError(f"{where}: no such folder")
        if not path.is_dir():
            raise InputError(f"{where}: is a file; give a folder")
    elif kind == "any":
        if not path.exists():
            raise InputError(f"{where}: no such file or folder")
    else:
        if kind == "out_dir" and path.exists() and not path.is_dir():
            raise InputError(f"{where}: is a file; give a folder for the outputs")
        if kind == "out_file" and path.is_dir():
            raise InputError(f"{where}: is a folder; give a file name")
        parent = path.parent if kind == "out_file" else path
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise InputError(f"{where}: cannot be created, {parent} is a file")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"{where}: cannot write in {parent} (permission denied); choose another place")
        _check_creatable(where, path if kind == "out_dir" else path.parent)


def _check_creatable(where: str, folder: Path) -> None:
    """Make ``folder`` (and the missing folders above it) and a file in it, then take them away again:
    what the system refuses although the permission check passed (a special or read-only file system,
    such as /proc as root) is said in one line before any work, not as a traceback after it."""
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    doing = ""
    try:
        for p in reversed(made):
            doing = f"make the folder {p}"
            p.mkdir()
        doing = f"write in {folder}"
        fd, probe = tempfile.mkstemp(prefix=".biostrata-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise InputError(f"{where}: cannot {doing} ({err.strerror or err}); choose another place") from None
    finally:
        for p in made:
            with contextlib.suppress(OSError):  # not made, or no longer empty
                p.rmdir()


Key = TypeVar("Key")


def overwrite_option(help: str) -> Option:
    """``--overwrite``: replace a finished run in ``--out`` (see :func:`finished_runs`)."""
    return Option("overwrite", help, default=False)


def finished_runs(
    out: str,
    folders: Mapping[Key, Path],
    marker: str,
    overwrite: bool,
    redo: str,
    finished: Callable[[Path], object] | None = None,
) -> dict[Key, object]:
    """The one output-folder guard of the commands that write run folders (train, pretrain, annotate,
    demo): the runs of ``folders`` that finished, by ``finished(folder)`` (default: the ``marker`` file,
    written last, exists; anything but None counts), none with ``overwrite``. When every run has
    finished, the command is refused, naming ``--out`` and the marker, unless ``--overwrite`` (to
    ``redo``, e.g. "train again"): it would do nothing but replace them silently."""
    finished = finished or (lambda folder: True if (folder / marker).is_file() else None)
    done = {} if overwrite else {k: v for k, folder in folders.items() if (v := finished(folder)) is not None}
    if folders and len(done) == len(folders):
        what = f"every seed's run ({', '.join(map(str, folders))})" if len(folders) > 1 else "the run"
        raise InputError(
            f"--out {out}: {what} finished already ({marker} written); pass --overwrite to {redo}, or give another "
            "--out"
        )
    return done


def out_option(help: str = "output folder", default: str | None = None, path: str = "out_dir") -> Option:
    """``--out``, the command's own: with a ``default``, else required; checked as a ``path`` of that kind."""
    return Option("out", help, default=default, type=str, required=default is None, path=path)


def threads_option(help: str = "CPU threads for torch (default: torch's choice, all cores)") -> Option:
    """``--threads``, checked by :func:`check_threads` and applied by :func:`set_torch_threads`."""
    return Option("threads", help, type=int)


def check_threads(args: argparse.Namespace) -> None:
    """Refuse a ``--threads`` below 1, before any work."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads}: give 1 CPU thread or more (or leave it out: all cores)")


def check_seeds(flag: str, seeds: list[int]) -> None:
    """Refuse repeated seeds (a repeat would be counted twice in a mean and spread) and seeds out of range."""
    from biostrata.config import MAX_SEED

    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise InputError(f"{flag}: seed {', '.join(map(str, repeated))} given more than once; give each seed once")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise InputError(f"{flag}: seed {bad[0]} is out of range; seeds are whole numbers in 0..{MAX_SEED}")


def set_torch_threads(threads: int | None) -> None:
    """Apply a ``--threads`` option to torch's CPU thread pool (None: leave torch's default)."""
    from biostrata.threads import set_cpu_threads

    set_cpu_threads(threads)


#: ``--data DIR`` or ``--train/--dev/--test`` files, read by :func:`load_splits`.
SPLIT_OPTIONS = (
    Option("data", "GUE-layout folder with train.csv, dev.csv, test.csv (header sequence,label)", type=str, path="dir"),
    Option("train", "training set: CSV (sequence,label) or FASTA with 'label=K' in headers", type=str, path="file"),
    Option("dev", "validation set, used for model selection only", type=str, path="file"),
    Option("test", "test set, evaluated once with the selected model", type=str, path="file"),
)


def load_splits(args: argparse.Namespace):
    """Splits from ``--data DIR`` (GUE layout) or ``--train/--dev/--test`` files."""
    from biostrata.data.dna.genome import Splits, read_gue_dir, read_labelled

    files = (args.train, args.dev, args.test)
    if args.data and any(files):
        raise InputError("give either --data DIR or --train/--dev/--test files, not both")
    if args.data:
        return read_gue_dir(args.data)
    if not all(files):
        raise InputError("give --data DIR (train.csv, dev.csv, test.csv) or all three of --train, --dev, --test")
    return Splits(*(read_labelled(f) for f in files))


def print_table(table, digits: int = 4, index: bool = False) -> None:
    """Print a pandas DataFrame with ``digits`` decimals."""
    print(table.to_string(index=index, float_format=lambda v: f"{v:.{digits}f}"))
