"""Tests of biostrata.io: atomic writes and step timings."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from biostrata.io import StepClock, atomic_write, atomic_write_npz, cached, ensure


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


def test_cached_computes_once_and_reads_every_kind_back(tmp_path: Path) -> None:
    import pandas as pd

    calls = []

    def once(result):
        def compute():
            calls.append(1)
            return result

        return compute

    values = {
        "a.json": {"b": 1, "a": [1.5, None]},
        "a.npz": {"x": np.arange(3.0)},
        "a.csv": pd.DataFrame({"x": [1, 2], "y": ["u", "v"]}),
    }
    for name, value in values.items():
        first = cached(tmp_path / name, once(value))
        again = cached(tmp_path / name, once(None))
        assert first is value
        if name.endswith(".json"):
            assert again == value
            assert (tmp_path / name).read_text() == json.dumps(value, indent=2, sort_keys=True) + "\n"
        elif name.endswith(".npz"):
            np.testing.assert_array_equal(again["x"], value["x"])
        else:
            pd.testing.assert_frame_equal(again, value)
    assert len(calls) == 3


def test_cached_with_own_reader_and_writer_and_a_failed_step(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    with pytest.raises(ValueError, match="no writer"):
        cached(path, lambda: "x")
    with pytest.raises(RuntimeError):
        cached(path, lambda: (_ for _ in ()).throw(RuntimeError("killed")), Path.read_text, Path.write_text)
    assert not path.exists()  # a failed step leaves nothing: it runs again
    assert cached(path, lambda: "x", Path.read_text, Path.write_text) == "x"
    assert cached(path, lambda: "y", Path.read_text, Path.write_text) == "x"


def test_ensure_makes_missing_files_only(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    made = []
    assert ensure(a, lambda: made.append(a.write_text("1"))) == a
    assert ensure(a, lambda: made.append("again")) == a
    assert len(made) == 1
    ensure((a, b), lambda: made.append(b.write_text("2")))  # one of them missing: the step runs
    ensure([a, b], lambda: made.append("again"))
    assert len(made) == 2
