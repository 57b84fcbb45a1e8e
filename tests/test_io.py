"""Tests of biostrata.io: atomic writes and step timings."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from biostrata.io import StepClock, atomic_write, atomic_write_npz


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_results_get_the_usual_permissions_not_0600(tmp_path: Path) -> None:
    umask = os.umask(0)  # the process's umask, read the only way there is
    os.umask(umask)
    atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("x"))
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == 0o666 & ~umask  # what open() would give; mkstemp alone gives 0600


def test_npz_keeps_its_name_and_arrays(tmp_path: Path) -> None:
    atomic_write_npz(tmp_path / "f.npz", {"ids": np.array(["a", "b"]), "L0": np.eye(2)})
    with np.load(tmp_path / "f.npz") as f:
        assert f["ids"].tolist() == ["a", "b"] and np.array_equal(f["L0"], np.eye(2))


def test_step_clock_appends_one_line_per_invocation(tmp_path: Path) -> None:
    path = tmp_path / "timings.jsonl"
    for _ in range(2):
        clock = StepClock(path)
        with clock("a"):
            pass
        with clock("b"):
            sum(range(1000))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2 and all(list(line["steps"]) == ["a", "b"] for line in lines)
    assert all(v["wall_s"] >= 0 and v["cpu_s"] >= 0 for line in lines for v in line["steps"].values())
