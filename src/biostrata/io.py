"""Atomic file writes (a killed run leaves either the old file or the new one, never half of one), the
cached steps of a study (each done once, its files kept; a killed run resumes at the first step without
them), and the wall and CPU time of a run's steps."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
P = TypeVar("P", Path, Sequence[Path])


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: once, at import, not on every write
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600; a result file gets the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_csv(path: str | Path, table: Any, index: bool = False) -> None:
    """Write a pandas DataFrame as CSV (with its index when ``index``), atomically."""
    atomic_write_text(Path(path), table.to_csv(index=index))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` of ``arrays`` (uncompressed), written atomically to ``path`` as it is named."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object, so numpy does not append ".npz" to the name
            np.savez(handle, **arrays)

    atomic_write(path, write)


def ensure(path: P, make: Callable[[], object]) -> P:
    """``path`` (one file or several), made by ``make()`` first unless every one of them is a file.

    The step is cached by its files: ``make`` writes them itself, each atomically, the one that marks the
    step finished last (a run folder's ``metrics.json``, an archive after its side files), so a step
    killed halfway is done again. A step's settings are checked once for the whole folder
    (:meth:`biostrata.settings.Settings.check_resume`), not per file."""
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    if not all(p.is_file() for p in paths):
        make()
    return path


def _read(path: Path) -> Any:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if path.suffix == ".csv":
        import pandas as pd

        return pd.read_csv(path)
    raise ValueError(f"{path}: no reader for {path.suffix!r} files; pass read=")


def _write(path: Path, result: Any) -> None:
    writers = {".json": atomic_write_json, ".npz": atomic_write_npz, ".csv": atomic_write_csv}
    if path.suffix not in writers:
        raise ValueError(f"{path}: no writer for {path.suffix!r} files; pass write=")
    writers[path.suffix](path, result)


def cached(
    path: Path,
    compute: Callable[[], T],
    read: Callable[[Path], T] = _read,
    write: Callable[[Path, T], None] = _write,
) -> T:
    """``compute()``'s result, kept in ``path``: read from it when it is a file, else computed, written
    atomically and returned as computed.

    By default the file kind follows the suffix: ``.json`` (a dict, keys sorted: :func:`atomic_write_json`),
    ``.npz`` (a dict of arrays: :func:`atomic_write_npz`) or ``.csv`` (a DataFrame without its index);
    ``read`` and ``write`` replace them (``write`` must write atomically)."""
    path = Path(path)
    if path.is_file():
        return read(path)
    result = compute()
    write(path, result)
    return result


class StepClock:
    """Wall and CPU seconds of each step of one invocation, as one JSON line per invocation appended to
    ``path`` and rewritten after every step (a resumed step that found its outputs takes about 0 s)::

        clock = StepClock(out / "timings.jsonl")
        with clock("inputs"):
            ...
    """

    def __init__(self, path: Path) -> None:
        self.path, self.steps = Path(path), {}
        self.before = self.path.read_text() if self.path.is_file() else ""
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.steps[name] = {
            "wall_s": round(time.perf_counter() - wall, 1),
            "cpu_s": round(time.process_time() - cpu, 1),
        }
        line = json.dumps({"started": self.started, "steps": self.steps})
        atomic_write_text(self.path, self.before + line + "\n")
