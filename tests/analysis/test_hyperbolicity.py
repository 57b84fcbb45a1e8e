import json
import sys
import warnings

import numpy as np
import pytest
import torch

from biostrata.analysis.hyperbolicity import (
    CALIBRATION,
    calibrate,
    calibration_distances,
    dataset_deltas,
    distances_of,
    gromov_delta,
    kmer_spectrum,
    model_embeddings,
    tree_metric,
)
from biostrata.cli import main
from biostrata.errors import InputError
from biostrata.geometry.delta import delta_distribution, delta_exact
from biostrata.geometry.distances import pairwise_distances


@pytest.fixture
def points():
    return np.random.default_rng(0).normal(size=(40, 3))


# -- one dataset ---------------------------------------------------------------------------------
def test_points_and_precomputed_agree(points):
    d = pairwise_distances(points).numpy()
    for method in ("exact", "fixed"):
        a = gromov_delta(points, metric="euclidean", method=method)
        b = gromov_delta(d, method=method)
        assert a.delta == pytest.approx(b.delta, abs=1e-12) and a.method == method
    a = gromov_delta(points, metric="euclidean", method="sampled", samples=15, bases=2, repeats=4, seed=3)
    b = gromov_delta(d, method="sampled", samples=15, bases=2, repeats=4, seed=3)
    assert a.delta == pytest.approx(b.delta, abs=1e-12) and a.delta_std == pytest.approx(b.delta_std, abs=1e-12)
    h = delta_distribution(distances_of(points, "euclidean"), bins=8, bases=5)
    assert h.counts.sum() == 5 * 39 * 38 // 2
    with pytest.raises(InputError, match="shape \\(40, 3\\); for points pass a metric"):
        gromov_delta(points)
    with pytest.raises(InputError, match=r"^method='fast': unknown; choose one of exact, fixed, sampled"):
        gromov_delta(d, method="fast")


def test_sampled_on_points_builds_only_sample_distances(points, monkeypatch):
    import biostrata.analysis.hyperbolicity as hyp

    sizes = []
    real = hyp.pairwise_distances

    def spy(x, *args, **kwargs):
        sizes.append(len(x))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(hyp, "pairwise_distances", spy)
    gromov_delta(points, metric="euclidean", method="sampled", samples=12, repeats=3)
    assert sizes == [12, 12, 12]


# -- calibration ---------------------------------------------------------------------------------
def test_calibration_orders_the_spaces():
    rows = {r["space"]: r for r in calibrate(40)}
    assert set(rows) == set(CALIBRATION)
    assert rows["tree"]["relative_delta"] < 1e-9
    assert rows["sphere"]["relative_delta"] > 0.8  # spheres are far from trees
    assert 0.3 < rows["euclidean-2d"]["relative_delta"] < 0.8
    assert rows["hyperbolic-2d"]["relative_delta"] < rows["euclidean-2d"]["relative_delta"]
    for r in rows.values():
        assert r["n"] == 40 and r["method"] == "exact" and r["description"]
    again = calibration_distances("hyperbolic-2d", 40)
    assert delta_exact(again).delta == pytest.approx(rows["hyperbolic-2d"]["delta"])
    with pytest.raises(InputError, match="unknown calibration space"):
        calibration_distances("torus", 10)


def test_hyperbolic_calibration_points_are_those_of_the_numpy_formula_they_replace():
    """exp_o of the wrapped normal is now geometry's: the distances of the NumPy formula written here
    before, to float64 rounding."""
    n, seed = 60, 0
    rng = np.random.default_rng([seed, list(CALIBRATION).index("hyperbolic-2d")])
    v = 2.0 * rng.standard_normal((n, 2))
    r = np.linalg.norm(v, axis=1, keepdims=True)
    points = np.concatenate([np.cosh(r), np.sinh(r) * v / np.where(r > 0, r, 1.0)], axis=1)
    before = pairwise_distances(points, metric="lorentz", curvature=1.0)
    torch.testing.assert_close(calibration_distances("hyperbolic-2d", n, seed), before, rtol=1e-13, atol=1e-13)


def test_tree_metric_is_a_tree_path_metric():
    d = tree_metric(30, np.random.default_rng(1))
    assert np.allclose(d, d.T) and np.all(np.diag(d) == 0)
    assert delta_exact(d).delta < 1e-9


# -- a dataset through a model -------------------------------------------------------------------
def test_kmer_spectrum():
    spec = kmer_spectrum(["ACGTA", "AANAA", "A"], k=2)
    assert spec.shape == (3, 16)
    # ACGTA: AC, CG, GT, TA (indices A0 C1 G2 T3 -> 4a + b)
    assert np.flatnonzero(spec[0]).tolist() == [1, 6, 11, 12] and spec[0].sum() == pytest.approx(1)
    assert spec[1, 0] == 1.0  # AA twice; k-mers with N skipped
    assert spec[2].sum() == 0
    with pytest.raises(InputError, match="k-mer size"):
        kmer_spectrum(["ACGT"], k=0)


@pytest.mark.parametrize("model", ["cnn", "hcnn-s"])
def test_dataset_deltas_of_a_trained_model(tiny_task, tmp_path, model, tiny, capsys):
    from biostrata.config import TrainConfig
    from biostrata.data.dna.genome import read_gue_dir
    from biostrata.train.run import train

    train(TrainConfig(model=model, **{**tiny, "epochs": 1}), read_gue_dir(tiny_task), tmp_path / "run")
    rows = dataset_deltas(tmp_path / "run", tiny_task, points=20, kmer=2)
    assert [r["representation"] for r in rows] == [f"model:{model}", "one-hot", "2-mer spectrum"]
    assert rows[0]["metric"] == ("euclidean" if model == "cnn" else "lorentz")
    assert (rows[0]["curvature"] is None) == (model == "cnn")
    assert rows[0]["dim"] == 8 and rows[1]["dim"] == 5 * 20 and rows[2]["dim"] == 16
    for r in rows:
        assert r["n"] == 20 and 0 <= r["relative_delta"] <= 1 and r["method"] == "exact"
    # the CLI gives the same numbers
    capsys.readouterr()
    code = main(
        ["delta", "--model", str(tmp_path / "run"), "--data", str(tiny_task), "--points", "20", "--kmer", "2", "--json"]
    )
    assert code == 0
    cli = json.loads(capsys.readouterr().out)
    assert [r["delta"] for r in cli] == pytest.approx([r["delta"] for r in rows], abs=1e-9)
    # --layer picks the model's layer (it was ignored: the head's numbers came back for every layer)
    code = main(["delta", "--model", str(tmp_path / "run"), "--data", str(tiny_task), "--points", "20", "--kmer", "2",
                 "--layer", "1", "--json"])  # fmt: skip
    assert code == 0
    block = json.loads(capsys.readouterr().out)[0]
    assert block["representation"] == f"model:{model} layer 1" and block["dim"] == (
        20 * 6 if model == "cnn" else 20 * 5 + 1
    )  # Lorentz: time + space
    assert block["delta"] != pytest.approx(rows[0]["delta"], abs=1e-9)
    assert main(["delta", "--model", str(tmp_path / "run"), "--data", str(tiny_task), "--layer", "7"]) == 2
    assert "layer 7 does not exist" in capsys.readouterr().err


def test_the_model_runs_on_the_device_asked_for(tiny_task, tmp_path, monkeypatch, capsys):
    """device="cpu" (delta --device cpu) embeds on the CPU where a GPU is present too: its presence is faked
    here, so that a model sent to the GPU fails; the numbers are those of the CPU default."""
    import torch

    from biostrata.analysis.hyperbolicity import embedding_delta
    from biostrata.data.dna.genome import read_gue_dir
    from biostrata.models import build_model

    torch.manual_seed(0)
    build_model("hcnn-s", 20, 2, channels=6, hidden=8).save_pretrained(tmp_path / "run")
    seqs = read_gue_dir(tiny_task).test.sequences

    def numbers():
        rows = dataset_deltas(tmp_path / "run", tiny_task, points=12, kmer=2, device="cpu")
        one = embedding_delta(tmp_path / "run", seqs, 12, 0, "cpu")
        return [(r["delta"], r["relative_delta"]) for r in rows], (one["delta"], one["witness"])

    want = numbers()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert numbers() == want
    argv = ["delta", "--model", str(tmp_path / "run"), "--data", str(tiny_task), "--points", "12", "--kmer", "2"]
    assert main([*argv, "--device", "cpu", "--json"]) == 0
    assert [(r["delta"], r["relative_delta"]) for r in json.loads(capsys.readouterr().out)] == want[0]


# -- the command ---------------------------------------------------------------------------------
def test_cli_json_and_text(tmp_path, points, capsys):
    np.save(tmp_path / "p.npy", points)
    assert main(["delta", str(tmp_path / "p.npy"), "--metric", "euclidean", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = delta_exact(pairwise_distances(points))
    assert out["delta"] == pytest.approx(want.delta) and out["relative_delta"] == pytest.approx(want.relative_delta)
    assert out["diameter"] == pytest.approx(want.diameter) and out["method"] == "exact" and out["n"] == 40
    assert (
        main(
            [
                "delta",
                str(tmp_path / "p.npy"),
                "--metric",
                "euclidean",
                "--method",
                "fixed",
                "--base",
                "3",
                "5",
                "--histogram",
                "4",
                "--histogram-bases",
                "2",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "fixed" in text and "relative delta over 1482 triples (2 base points)" in text
    assert (
        main(["delta", "--calibrate", "12", "--method", "sampled", "--samples", "8", "--repeats", "2", "--json"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["space"] for r in rows] == list(CALIBRATION) and all(r["samples"] == 8 for r in rows)


def test_cli_errors(tmp_path, points, capsys):
    np.save(tmp_path / "p.npy", points)
    assert main(["delta", str(tmp_path / "p.npy"), "--calibrate", "10"]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert main(["delta", "--model", str(tmp_path / "p.npy")]) == 2
    assert "--model and --data go together" in capsys.readouterr().err
    assert main(["delta", "--model", "m.pt", "--data", str(tmp_path)]) == 2
    assert "--model m.pt: no such file or folder" in capsys.readouterr().err


def test_the_default_metric_follows_what_the_file_holds(tmp_path, points, capsys):
    """#23: points are measured as points without --metric: a non-square array and an embedding store
    (Euclidean), a square array stays a distance matrix; the metric used is in the result."""
    import biostrata
    from biostrata.data.embedding_store import EmbeddingStore

    np.save(tmp_path / "p.npy", points)
    assert main(["delta", str(tmp_path / "p.npy"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    want = biostrata.delta(points, metric="euclidean")
    assert printed["metric"] == "euclidean" and printed["delta"] == pytest.approx(want["delta"], abs=0)
    square = pairwise_distances(torch.as_tensor(points), metric="euclidean").numpy()
    assert biostrata.delta(square)["metric"] == "precomputed"
    assert biostrata.delta(square)["delta"] == pytest.approx(want["delta"], rel=1e-12)
    ids = [f"s{i}" for i in range(len(points))]
    with EmbeddingStore.create(tmp_path / "e.h5", "m", [0], points.shape[1]) as store:
        store.append(ids, [1] * len(ids), {"mean": points[:, None, :].astype(np.float32)})
    assert main(["delta", str(tmp_path / "e.h5")]) == 0
    assert "euclidean" in capsys.readouterr().out.splitlines()[1]  # the table's metric column


def test_a_lorentz_domain_lm_table_is_measured_on_its_hyperboloid(tmp_path, capsys):
    """#23: delta of a Lorentz domain LM (model folder or .pt) reads the table's points, at the model's
    curvature, not the tangent vectors that failed 'not on the upper hyperboloid'; another metric reads them."""
    import biostrata
    from biostrata.data.clusters.corpus import DomainVocabulary
    from biostrata.models.domain_lm import DomainLM

    torch.manual_seed(0)
    vocab = DomainVocabulary([f"PF{i:05d}" for i in range(1, 9)])
    model = DomainLM(vocab, d_embed=4, d_model=4, n_layers=1, r=1, geometry="lorentz", curvature=0.5).eval()
    model.save_pretrained(tmp_path / "lm")
    model.save_sequence_models(tmp_path / "lm.pt")
    points = model.table_points().detach().double()[vocab.domain_slice]
    want = biostrata.delta(points.numpy(), metric="lorentz", curvature=0.5)
    for path in (tmp_path / "lm", tmp_path / "lm.pt"):
        got = biostrata.delta(path)
        assert (got["metric"], got["curvature"], got["n"]) == ("lorentz", 0.5, 8)
        assert got["delta"] == pytest.approx(want["delta"], rel=1e-12)
        assert main(["delta", str(path), "--metric", "lorentz"]) == 0
        assert "lorentz" in capsys.readouterr().out
    tangent = biostrata.delta(tmp_path / "lm", metric="euclidean")
    flat = model.table.weight.detach().double()[vocab.domain_slice].numpy()
    assert tangent["delta"] == pytest.approx(biostrata.delta(flat, metric="euclidean")["delta"], rel=1e-12)
    with pytest.raises(InputError, match=r"lm: its table lies on the hyperboloid of curvature K = 0\.5, not 2"):
        biostrata.delta(tmp_path / "lm", curvature=2.0)


def test_delta_of_a_model_file_reads_it_once(tmp_path, monkeypatch):
    """A Euclidean domain LM's .pt: read once, for its table (not once to see it is not Lorentz, then again)."""
    import biostrata
    import biostrata.models.hub as hub
    from biostrata.data.clusters.corpus import DomainVocabulary
    from biostrata.models.domain_lm import DomainLM

    torch.manual_seed(0)
    model = DomainLM(DomainVocabulary([f"PF{i:05d}" for i in range(1, 9)]), d_embed=4, d_model=4, n_layers=1, r=1)
    model.save_sequence_models(tmp_path / "lm.pt")
    reads, load = [], hub.load_torch_file
    monkeypatch.setattr(hub, "load_torch_file", lambda *a, **k: reads.append(a[0]) or load(*a, **k))
    got = biostrata.delta(tmp_path / "lm.pt")
    flat = model.table.weight.detach().double()[model.vocab.domain_slice].numpy()
    assert got["metric"] == "euclidean" and got["delta"] == pytest.approx(biostrata.delta(flat)["delta"], rel=1e-12)
    assert len(reads) == 1


def test_a_long_exact_delta_warns_first_with_its_cost(tmp_path, points, capsys, monkeypatch):
    """#23: an exact delta past EXACT_NOTICE points warns before it starts, with a bound from one timed base
    point and the sampled method named; the command prints it as one line."""
    import biostrata
    import biostrata.api.analysis as api

    monkeypatch.setattr(api, "EXACT_NOTICE", 10)
    with pytest.warns(
        api.DeltaCostWarning, match=r"exact delta over 40 points: one base point took .* method='sampled'"
    ):
        biostrata.delta(points, metric="euclidean")
    np.save(tmp_path / "p.npy", points)

    def show(message, category, filename, lineno, file=None, line=None):  # Python's own, which pytest replaces
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.setattr(warnings, "showwarning", show)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["delta", str(tmp_path / "p.npy")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("biostrata: warning: exact delta over 40 points")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        biostrata.delta(points, metric="euclidean", method="sampled", samples=12, repeats=2)  # no warning


@pytest.mark.parametrize("name", ["cnn", "hcnn-m"])
def test_model_embeddings_of_any_layer(name):
    """Delta layer by layer: a block's (B, C, L) output becomes one row per sequence (positions
    concatenated; for points the Lorentz direct concatenation at that block's curvature)."""
    import torch

    from biostrata.geometry.lorentz import minkowski_inner
    from biostrata.models import build_model

    torch.manual_seed(0)
    model = build_model(name, 12, 2, channels=6, hidden=10)
    if name == "hcnn-m":
        with torch.no_grad():
            for m, k in zip(model.manifolds, (1.0, 2.0, 0.5, 1.5)):
                m.k.fill_(k)
    seqs = ["ACGTACGTAC", "GGGTTTAAAC", "ACACACACAC", "TTTTGGGGCC", "CATGCATGCA"]
    rows, metric, curvature = model_embeddings(model, seqs, layer=2)
    if name == "cnn":
        assert rows.shape == (5, 6 * 12) and metric == "euclidean"
    else:
        assert rows.shape == (5, 1 + 5 * 12) and metric == "lorentz"
        assert curvature == pytest.approx(1 / 2.0)  # block 2 is on manifold 1 (k = 2)
        x = torch.from_numpy(rows)
        assert torch.allclose(minkowski_inner(x, x), torch.full((5,), -2.0, dtype=torch.float64), atol=1e-4)
    last, _, _ = model_embeddings(model, seqs)
    assert last.shape == (5, 10)
    assert np.isfinite(gromov_delta(rows, metric=metric, curvature=curvature).relative_delta)
