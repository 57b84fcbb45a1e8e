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
