"""Tests of biostrata.analysis.representations: one reader of representation files, one array out of them."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from biostrata.analysis.representations import load_array, read_representations
from biostrata.data.clusters.corpus import DomainVocabulary
from biostrata.data.embedding_store import EmbeddingStore
from biostrata.errors import DataNotFoundError, InputError
from biostrata.models.domain_lm import DomainLM
from biostrata.models.init_table import FamilyTable


@pytest.fixture
def points():
    return np.random.default_rng(0).normal(size=(40, 3))


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
    FamilyTable(["PF00001", "PF00002"], torch.ones(2, 3), [1, 1]).save_pretrained(tmp_path / "f")
    assert read_representations(tmp_path / "f").ids == ["PF00001", "PF00002"]
    model = DomainLM(DomainVocabulary(["PF00001", "PF00002", "PF00003"]), d_embed=4, d_model=4, n_layers=1, r=1)
    model.save_pretrained(tmp_path / "m")
    model.save_sequence_models(tmp_path / "m.pt")
    for path in (tmp_path / "m", tmp_path / "m.pt"):  # a model folder, and BiGCARP's layout
        table = read_representations(path)
        assert table.ids == ["PF00001", "PF00002", "PF00003"] and table.layers["table"].shape == (3, 4)
        assert np.allclose(table.layers["table"], model.table.weight.detach().numpy()[-3:])
    with pytest.raises(DataNotFoundError):
        read_representations(tmp_path / "missing.npz")
    (tmp_path / "x.json").write_text("1")
    with pytest.raises(InputError, match="unsupported file type '.json'"):
        read_representations(tmp_path / "x.json")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["g/a"], f["b"] = x, x[:, :1]
    plain = read_representations(tmp_path / "plain.h5")
    assert plain.ids is None and sorted(plain.layers) == ["b", "g/a"] and np.array_equal(plain.layers["g/a"], x)


def test_load_array_formats(tmp_path, points):
    np.save(tmp_path / "p.npy", points)
    np.savez(tmp_path / "one.npz", points)
    np.savez(tmp_path / "two.npz", emb=points, other=points[:3])
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["group/emb"] = points
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"], f["b"] = points, points
    rows = ["id,x,y,z"] + [f"s{i}," + ",".join(map(repr, r.tolist())) for i, r in enumerate(points)]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "plain.tsv").write_text("\n".join("\t".join(map(repr, r.tolist())) for r in points) + "\n")
    for name, key in [
        ("p.npy", None),
        ("one.npz", None),
        ("two.npz", "emb"),
        ("p.h5", None),
        ("two.h5", "b"),
        ("p.csv", None),
        ("plain.tsv", None),
    ]:
        assert np.allclose(load_array(tmp_path / name, key), points, rtol=0, atol=1e-15), name
    with pytest.raises(InputError, match="key: .* holds 2 arrays \\(emb, other\\); choose one \\(e.g. key='emb'\\)"):
        load_array(tmp_path / "two.npz")
    with pytest.raises(InputError, match="no dataset named 'c'; it holds a, b"):
        load_array(tmp_path / "two.h5", "c")
    with pytest.raises(DataNotFoundError, match="no such file"):
        load_array(tmp_path / "missing.npy")
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(InputError, match="unsupported file type '.json'"):
        load_array(tmp_path / "x.json")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(InputError, match=":3: column 2: 'oops' is not a number"):
        load_array(tmp_path / "bad.csv")
    np.save(tmp_path / "flat.npy", points[:, 0])
    with pytest.raises(InputError, match="expected a 2-d array"):
        load_array(tmp_path / "flat.npy")


def test_load_array_reads_an_embedding_store(tmp_path, points):
    from biostrata.data.embedding_store import EmbeddingStore

    path = tmp_path / "store.h5"
    layered = np.stack([points, 2 * points], axis=1).astype(np.float32)  # [N, 2 layers, dim]
    with EmbeddingStore.create(path, model="test", layers=[0, 6], dim=3, poolings=("mean",)) as store:
        store.append([f"s{i}" for i in range(40)], np.full(40, 10), {"mean": layered})
    assert np.allclose(load_array(path), 2 * points, atol=1e-5)  # the last layer by default
    assert np.allclose(load_array(path, layer=0), points, atol=1e-6)
    with pytest.raises(InputError, match="layer 3 not stored"):
        load_array(path, layer=3)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    for name in ("e.npy", "e.npz", "e.pt", "e.h5"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(InputError, match=rf"{name}: empty file \(0 bytes\)"):
            read_representations(tmp_path / name)
    (tmp_path / "t.pt").write_text("text\n")
    with pytest.raises(InputError, match=r"t\.pt: not a PyTorch file .* expected a family table"):
        read_representations(tmp_path / "t.pt")
    (tmp_path / "t.npz").write_text("text\n")
    with pytest.raises(InputError, match=r"t\.npz: not a numpy \.npz archive"):
        read_representations(tmp_path / "t.npz")
    np.save(tmp_path / "none.npy", np.zeros((0, 3)))
    with pytest.raises(InputError, match="no rows"):
        read_representations(tmp_path / "none.npy")
    np.savez(tmp_path / "s.npz", names=np.array([["a"], ["b"]]))
    with pytest.raises(InputError, match="holds <U1 values, not real numbers"):
        read_representations(tmp_path / "s.npz").finite()
