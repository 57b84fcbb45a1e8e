"""The front door: ``import biostrata`` is fast and loads nothing heavy; each public function resolves
lazily, is documented, and gives in memory what its command writes."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from unittest.mock import ANY

import numpy as np
import pandas as pd
import pytest

import biostrata
from biostrata.cli import main
from biostrata.errors import InputError

HEAVY = ("torch", "lightning", "sklearn", "pandas", "scipy", "h5py")


def test_import_loads_nothing_heavy() -> None:
    code = f"import sys, biostrata; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []


def test_dir_lists_the_front_door() -> None:
    assert set(biostrata.__all__) <= set(dir(biostrata))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        biostrata.nothing  # noqa: B018


def documented_parameters(doc: str) -> set[str]:
    """The names a numpy-style docstring documents under Parameters (``a, b : type`` names two)."""
    section = doc.split("Parameters\n----------\n", 1)[1].split("\n\n")[0]
    heads = [line.split(" : ")[0] for line in section.split("\n") if line and not line.startswith(" ")]
    return {name.strip().lstrip("*") for head in heads for name in head.split(",")}


@pytest.mark.parametrize("name", biostrata.__all__)
def test_each_name_is_a_documented_function(name: str) -> None:
    function = getattr(biostrata, name)
    assert callable(function)
    doc = inspect.getdoc(function) or ""
    assert "Parameters\n----------" in doc and "Returns\n-------" in doc, name
    parameters = set(inspect.signature(function).parameters)
    assert parameters <= documented_parameters(doc), f"{name}: {parameters - documented_parameters(doc)}"


def test_train_is_the_package_and_the_function() -> None:
    import biostrata.train.run as run  # binds biostrata.train to the subpackage, which stays callable

    assert biostrata.train.run is run and callable(biostrata.train)
    assert "out" in inspect.signature(biostrata.train).parameters
    assert biostrata.train.__package_doc__.startswith("Training")


def _points(n: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3))


def test_delta_in_memory_equals_the_command(tmp_path, capsys) -> None:
    x = _points()
    np.save(tmp_path / "x.npy", x)
    got = biostrata.delta(x, metric="euclidean", histogram=4)
    assert main(["delta", str(tmp_path / "x.npy"), "--metric", "euclidean", "--histogram", "4", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for key in ("delta", "relative_delta", "diameter", "witness", "histogram"):
        assert got[key] == printed[key], key
    assert biostrata.delta(str(tmp_path / "x.npy"), metric="euclidean")["delta"] == got["delta"]
    sampled = dict(metric="euclidean", method="sampled", samples=6, repeats=3)
    assert biostrata.delta(x[::-1], **sampled) == biostrata.delta(x, **sampled) | {"seconds": ANY}  # any row order
    with pytest.raises(InputError, match="curvature=0"):
        biostrata.delta(x, metric="lorentz", curvature=0)


def test_cka_in_memory_and_files(tmp_path) -> None:
    a, b = _points(20, 1), _points(20, 2)
    table = biostrata.cka({"x": a, "y": b})
    assert table.loc["x", "x"] == pytest.approx(1.0) and table.loc["x", "y"] == table.loc["y", "x"]
    cross = biostrata.cka(a, b)
    assert cross.iloc[0, 0] == pytest.approx(table.loc["x", "y"])
    ids = np.array([f"s{i}" for i in range(20)])
    np.savez(tmp_path / "a.npz", x=a, y=b, ids=ids)
    from_files, knn = biostrata.cka(tmp_path / "a.npz", knn=3, out=tmp_path / "cka.csv")
    np.testing.assert_allclose(from_files.to_numpy(), table.to_numpy())
    assert (tmp_path / "cka.csv").is_file() and (tmp_path / "cka.knn.csv").is_file()
    assert knn.shape == (2, 2)
    with pytest.raises(InputError, match="layers=\\['z'\\]: no layer 'z'"):
        biostrata.cka({"x": a}, layers=["z"])
    with pytest.raises(InputError, match="both in memory or both as files"):
        biostrata.cka(a, tmp_path / "a.npz")


def test_probe_in_memory_equals_files(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 15)
    X = rng.standard_normal((30, 4)) + y[:, None]
    ids = [f"s{i:02d}" for i in range(30)]  # files are read in the order of their sorted ids: this one
    summary, folds = biostrata.probe(X, y, cs=(1.0,), folds=3, seeds=(0, 1), bootstrap=0)
    assert len(folds) == 6 and summary.loc[0, "auroc_macro"] > 0.7
    np.savez(tmp_path / "f.npz", x=X, ids=np.array(ids))
    pd.DataFrame({"id": ids, "label": y}).to_csv(tmp_path / "labels.csv", index=False)
    from_files, _ = biostrata.probe(str(tmp_path / "f.npz"), str(tmp_path / "labels.csv"), label_column="label",
                                    cs=(1.0,), folds=3, seeds=(0, 1), bootstrap=0, out=tmp_path / "out")  # fmt: skip
    assert from_files.loc[0, "auroc_macro"] == pytest.approx(summary.loc[0, "auroc_macro"])
    assert (tmp_path / "out" / "summary.csv").is_file()
    with pytest.raises(InputError, match="probe='svm'"):
        biostrata.probe(X, y, probe="svm")
    with pytest.raises(InputError, match="labels: 29 labels for the 30 rows"):
        biostrata.probe(X, y[:-1])


def test_simulate_in_memory_and_files(tmp_path) -> None:
    data = biostrata.simulate(n_leaves=20, length=12, seed=3, out=tmp_path / "sim")
    again = biostrata.simulate(n_leaves=20, length=12, seed=3)
    assert data.sequences == again.sequences and len(data.sequences) == 20
    train = pd.read_csv(tmp_path / "sim" / "train.csv")
    assert train["sequence"].tolist() == [data.sequences[i] for i in data.rows["train"]]
    with pytest.raises(InputError, match="simulate\\(leaves=...\\): no such option"):
        biostrata.simulate(leaves=20)


def test_train_returns_the_metrics_it_writes(tmp_path) -> None:
    data = biostrata.simulate(n_leaves=60, length=16, fractions=(0.6, 0.2, 0.2), n_clades=8).to_splits()
    tiny = dict(channels=4, hidden=8, blocks=1, kernel_size=3, epochs=1, progress=False, model="cnn")
    metrics = biostrata.train(data, out=tmp_path / "run", **tiny)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_mcc"] == metrics["test_mcc"]
    with pytest.raises(InputError, match="unknown key"):
        biostrata.train(data, out=tmp_path / "bad", chanels=4)
    with pytest.raises(InputError, match="data: got int"):
        biostrata.train(3, out=tmp_path / "bad")


def test_commands_read_their_defaults_from_the_functions() -> None:
    import inspect

    from biostrata.cli import build_parser

    def default(function, name):
        return inspect.signature(function).parameters[name].default

    parse = build_parser().parse_args
    cases = {
        ("delta", "x.npy"): (biostrata.delta, ("metric", "curvature", "method", "samples", "bases", "repeats", "split",
                                               "points", "kmer", "seed")),
        ("cka", "a.npz"): (biostrata.cka, ("kernel", "sigma_frac", "batch_size", "pooling")),
        ("probe", "--features", "f.npz", "--labels", "l.csv"): (
            biostrata.probe, ("probe", "fusion", "folds", "bootstrap", "threads")),
        ("train",): (biostrata.train, ("out",)),
    }  # fmt: skip
    for argv, (function, names) in cases.items():
        args = parse(list(argv))
        for name in names:
            assert getattr(args, name) == default(function, name), (argv[0], name)
    assert parse(["delta", "x.npy"]).base == list(default(biostrata.delta, "base"))
    args = parse(["probe", "--features", "f.npz", "--labels", "l.csv"])
    assert (args.cs, args.hidden, args.seeds) == tuple(
        list(default(biostrata.probe, n)) for n in ("cs", "hidden", "seeds")
    )
    # pretrain reads the corpus reader's defaults and formats from its source (its module loads torch)
    from biostrata.data.clusters.corpus import CORPUS_FORMATS, read_clusters

    args = parse(["pretrain", "--corpus", "c.txt", "--out", "o"])
    assert (args.format, args.strict) == (default(read_clusters, "fmt"), default(read_clusters, "strict"))
    formats = next(a for a in build_parser()._subparsers._group_actions[0].choices["pretrain"]._actions
                   if a.dest == "format").choices  # fmt: skip
    assert tuple(formats) == CORPUS_FORMATS
