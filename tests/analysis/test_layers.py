"""Tests of biostrata.analysis.layers: representation files, joins by id, delta per layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from biostrata.analysis.layers import (
    Representations,
    compare_files,
    delta_per_layer,
    read_feature_blocks,
    read_representations,
)
from biostrata.data.clusters import DomainVocabulary
from biostrata.data.embedding_store import EmbeddingStore
from biostrata.errors import DataNotFoundError, InputError
from biostrata.models.domain_lm import DomainLM
from biostrata.models.init_table import FamilyTable


def test_read_every_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    np.savez(tmp_path / "a.npz", ids=np.array(list("abcde")), L0=x, L1=x[:, :2])
    reps = read_representations(tmp_path / "a.npz")
    assert reps.ids == list("abcde") and list(reps.layers) == ["L0", "L1"] and reps.layers["L1"].shape == (5, 2)
    np.save(tmp_path / "s.npy", np.stack([x, 2 * x], 1))
    assert list(read_representations(tmp_path / "s.npy").layers) == ["0", "1"]
    with EmbeddingStore.create(tmp_path / "e.h5", "m", [0, 4], 3) as store:
        store.append(["p", "q"], [7, 9], {"mean": np.stack([np.stack([x[0], x[1]]), np.stack([x[2], x[3]])])})
    h5 = read_representations(tmp_path / "e.h5")
    assert h5.ids == ["p", "q"] and list(h5.layers) == ["0", "4"] and np.allclose(h5.layers["4"][1], x[3])
    FamilyTable(["PF00001", "PF00002"], torch.ones(2, 3), [1, 1]).save(tmp_path / "f.pt")
    assert read_representations(tmp_path / "f.pt").ids == ["PF00001", "PF00002"]
    model = DomainLM(DomainVocabulary(["PF00001", "PF00002", "PF00003"]), d_embed=4, d_model=4, n_layers=1, r=1)
    model.save(tmp_path / "m.pt")
    table = read_representations(tmp_path / "m.pt")
    assert table.ids == ["PF00001", "PF00002", "PF00003"] and table.layers["table"].shape == (3, 4)
    assert np.allclose(table.layers["table"], model.table.weight.detach().numpy()[-3:])
    with pytest.raises(DataNotFoundError):
        read_representations(tmp_path / "missing.npz")
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(InputError, match="unknown representation format"):
        read_representations(tmp_path / "x.txt")


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
