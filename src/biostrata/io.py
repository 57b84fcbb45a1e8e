"""Atomic file writes (a killed run leaves either the old file or the new one, never half of one), and
the wall and CPU time of a run's steps."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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
