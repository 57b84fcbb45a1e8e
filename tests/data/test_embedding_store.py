"""Tests of biostrata.data.embedding_store: layout, reads by id, partial batches, merging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biostrata.data.embedding_store import EmbeddingStore, merge_stores
from biostrata.errors import DataNotFoundError, InputError


def _rows(start: int, n: int) -> np.ndarray:
    return np.arange(start * 6, (start + n) * 6, dtype=np.float32).reshape(n, 2, 3)


def test_write_read_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    with EmbeddingStore.create(path, "m", [0, -1], 3, ["mean", "per_token"]) as store:
        store.append(["x", "y"], [2, 1], {"mean": _rows(0, 2)}, [np.ones((2, 2, 3)), np.zeros((2, 1, 3))])
        store.append(["z"], [4], {"mean": _rows(2, 1)}, [np.full((2, 4, 3), 7.0)])
        with pytest.raises(InputError, match="already stored"):
            store.append(["x"], [1], {"mean": _rows(0, 1)}, [np.ones((2, 1, 3))])
    with EmbeddingStore(path) as store:
        assert store.ids == ["x", "y", "z"] and "y" in store and store.layers == [0, -1]
        np.testing.assert_array_equal(store.get("y"), _rows(1, 1)[0])
        np.testing.assert_array_equal(store.array(layer=-1, ids=["z", "x"]), _rows(0, 3)[[2, 0], 1])
        np.testing.assert_array_equal(store.array(ids=["y", "x", "y"]), _rows(0, 3)[[1, 0, 1]])
        assert store.per_token("z", layer=0).shape == (4, 3) and store.length("z") == 4
        with pytest.raises(InputError, match="pooling 'bos' not stored; pooled outputs stored: mean$"):
            store.get("x", "bos")
        with pytest.raises(InputError, match=r"per_token outputs are one \[length, dim\] array per item, not one row"):
            store.array("per_token")  # stored, but not as rows: the message must not say it is missing
        with pytest.raises(InputError, match="no embedding for id 'w'"):
            store.get("w")
    with pytest.raises(DataNotFoundError):
        EmbeddingStore(tmp_path / "none.h5")


def test_partial_batch_is_discarded_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    store = EmbeddingStore.create(path, "m", [1, 2], 3, ["mean", "per_token"])
    store.append(["a"], [1], {"mean": _rows(0, 1)}, [np.ones((2, 1, 3))])
    # a job killed inside append: data rows and a per-token entry written, ids not yet
    store.file["mean"].resize(3, axis=0)
    store.file["per_token"].create_dataset("1", data=np.ones((2, 5, 3)))
    store.close()
    with EmbeddingStore.create(path, "m", [1, 2], 3, ["mean", "per_token"]) as again:
        assert len(again) == 1 and again.file["mean"].shape[0] == 1 and list(again.file["per_token"]) == ["0"]
        again.append(["b"], [2], {"mean": _rows(1, 1)}, [np.zeros((2, 2, 3))])
        np.testing.assert_array_equal(again.array(), _rows(0, 2))


def test_merge(tmp_path: Path) -> None:
    for k, ids in enumerate([["a", "b"], ["c"]]):
        with EmbeddingStore.create(tmp_path / f"p{k}.h5", "m", [0, 1], 3, ["mean", "bos"]) as s:
            s.append(ids, [1] * len(ids), {"mean": _rows(2 * k, len(ids)), "bos": -_rows(2 * k, len(ids))})
    out = merge_stores([tmp_path / "p0.h5", tmp_path / "p1.h5"], tmp_path / "all.h5")
    with EmbeddingStore(out) as s:
        assert s.ids == ["a", "b", "c"]
        np.testing.assert_array_equal(s.array("bos"), -_rows(0, 3))
    with EmbeddingStore.create(tmp_path / "q.h5", "other", [0, 1], 3, ["mean", "bos"]):
        pass
    with pytest.raises(InputError, match="cannot merge"):
        merge_stores([tmp_path / "p0.h5", tmp_path / "q.h5"], tmp_path / "bad.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.h5", "p0.h5", "p1.h5", "q.h5"]  # nothing half-written
    with pytest.raises(InputError, match="exists"):
        merge_stores([tmp_path / "p0.h5"], out)


def test_repeated_layers_or_poolings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"poolings=\['mean', 'mean'\]: choose from"):
        EmbeddingStore.create(tmp_path / "a.h5", "m", [0], 3, ["mean", "mean"])
    with pytest.raises(InputError, match=r"layers=\[1, 1\]: a layer repeats"):
        EmbeddingStore.create(tmp_path / "a.h5", "m", [1, 1], 3)
    assert not (tmp_path / "a.h5").exists()
