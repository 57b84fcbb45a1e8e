"""Tests of biostrata.analysis.layers: representation files, joins by id, delta per layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biostrata.analysis.layers import (
    Representations,
    compare_files,
    delta_per_layer,
    read_feature_blocks,
)
from biostrata.errors import InputError


def test_join_by_id_and_feature_blocks(tmp_path: Path) -> None:
    a = Representations({"x": np.arange(8.0).reshape(4, 2)}, ["a", "b", "c", "d"], "A")
    b = Representations({"y": np.arange(3.0)[:, None]}, ["d", "b", "z"], "B")
    left, right = a.align(b)
    assert left.ids == right.ids == ["b", "d"]
    assert left.layers["x"].tolist() == [[2, 3], [6, 7]] and right.layers["y"].tolist() == [[1], [0]]
    with pytest.raises(InputError, match="repeat"):
        Representations({"x": np.zeros((2, 1))}, ["a", "a"])
    np.savez(tmp_path / "a.npz", ids=np.array(a.ids), x=a.layers["x"], w=a.layers["x"] * 0)
    np.savez(tmp_path / "b.npz", ids=np.array(b.ids), y=b.layers["y"])
    ids, X, widths = read_feature_blocks([f"{tmp_path / 'a.npz'}:x", str(tmp_path / "b.npz")])
    assert ids == ["b", "d"] and widths == [2, 1] and X.tolist() == [[2, 3, 1], [6, 7, 0]]
    with pytest.raises(InputError, match="pick one"):
        read_feature_blocks([str(tmp_path / "a.npz")])
    table, knn = compare_files([str(tmp_path / "a.npz")], layers=["x"], knn=1)
    assert table.loc["x", "x"] == pytest.approx(1.0) and knn.loc["x", "x"] == 1.0


def test_delta_per_layer_tells_a_line_from_a_cloud() -> None:
    rng = np.random.default_rng(1)
    line = np.linspace(0, 1, 60)[:, None] * np.ones((1, 3))  # a path metric: a tree, delta 0
    cloud = rng.normal(size=(60, 3))
    frame = delta_per_layer({"line": line, "cloud": cloud}, samples=30, repeats=2, exact=True)
    assert list(frame["layer"]) == ["line", "cloud"]
    assert frame["relative_delta"].iloc[0] == pytest.approx(0.0, abs=1e-9)
    assert 0.05 < frame["relative_delta"].iloc[1] <= 1


def test_joins_are_reported_and_refused_when_unsound(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3))
    ids = [f"r{i}" for i in range(10)]
    np.savez(tmp_path / "a.npz", ids=np.array(ids), x=x, flat=np.zeros((10, 2)))
    np.savez(tmp_path / "b.npz", ids=np.array(ids[4:] + ["z"]), y=rng.normal(size=(7, 2)))
    np.save(tmp_path / "c.npy", x)
    a, b, c = (str(tmp_path / n) for n in ("a.npz", "b.npz", "c.npy"))
    notes: list[str] = []
    table, _ = compare_files([a, b], layers=["x"], report=notes.append)
    assert table.shape == (1, 1) and notes == [f"joined 6 rows by id: {a} lost 4 of 10, {b} lost 1 of 7"]
    np.savez(tmp_path / "b.npz", ids=np.array(ids[7:]), y=rng.normal(size=(3, 2)))
    with pytest.raises(InputError, match=r"joined 3 rows by id: .* lost 7 of 10, .* needs at least 4 shared rows"):
        compare_files([a, b], layers=["x"], debiased=True)
    with pytest.raises(
        InputError, match=r"^layers: .*a.npz: layer 'flat' is constant over the 10 rows compared .*; leave it out"
    ):
        compare_files([a])
    with pytest.raises(InputError, match=r"knn=10: must be between 1"):
        compare_files([a], layers=["x"], knn=10)
    with pytest.raises(InputError, match="has row ids and .* has none"):
        compare_files([a, c], layers=["x"])
    with pytest.raises(InputError, match="has row ids and .* has none"):
        read_feature_blocks([f"{a}:x", c])


def test_non_finite_features_name_file_and_layer(tmp_path: Path) -> None:
    x = np.zeros((4, 2))
    x[2, 1] = np.nan
    np.savez(tmp_path / "a.npz", ids=np.array(list("abcd")), x=x)
    with pytest.raises(InputError, match=r"a\.npz: layer 'x' has 1 NaN or infinite value\(s\) .* row 2, id 'c'"):
        read_feature_blocks([str(tmp_path / "a.npz")])
