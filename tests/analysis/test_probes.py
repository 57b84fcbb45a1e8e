"""Tests of biostrata.analysis.probes: splits, metrics, probes, repeated cross-validation, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef, roc_auc_score

from biostrata.analysis.probes import (
    LinearProbe,
    MLPProbe,
    auroc,
    bootstrap_ci,
    cross_validate,
    probe_metrics,
)
from biostrata.analysis.splits import iterative_stratification, make_splits, task_of
from biostrata.cli import main
from biostrata.errors import InputError


def multilabel(n: int = 300, seed: int = 0) -> np.ndarray:
    """Labels of unequal frequency (5% to 50%), correlated through a shared factor."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    p = np.array([0.05, 0.12, 0.3, 0.5])
    return (rng.random((n, 4)) < p * (1 + 0.5 * np.tanh(z))).astype(int)


def test_task_of() -> None:
    assert task_of(np.array([0, 1, 1])) == "binary"
    assert task_of(np.array(["a", "b", "c"])) == "multiclass"
    assert task_of(np.array([[0, 1], [1, 1]])) == "multilabel"
    with pytest.raises(InputError, match="at least 2 classes"):
        task_of(np.zeros(4))
    with pytest.raises(InputError, match="0/1 matrix"):
        task_of(np.array([[0, 2], [1, 1]]))


def test_multilabel_folds_keep_class_proportions() -> None:
    y = multilabel()
    folds = iterative_stratification(y, 5, seed=0)
    assert sorted(np.bincount(folds)) == sorted(np.bincount(folds, minlength=5)) and len(np.unique(folds)) == 5
    expected = y.sum(0) / 5
    counts = np.stack([y[folds == k].sum(0) for k in range(5)])
    assert np.abs(counts - expected).max() <= 1.5
    assert np.abs(np.bincount(folds) - len(y) / 5).max() <= 3
    # random folds of the same sizes stray much further for the rare labels
    rng = np.random.default_rng(0)
    spread = []
    for _ in range(20):
        rand = rng.permutation(folds)
        spread.append(np.abs(np.stack([y[rand == k].sum(0) for k in range(5)]) - expected).max())
    assert np.mean(spread) > 2.5


@pytest.mark.parametrize("kind", ["multilabel", "multiclass", "binary"])
def test_no_group_in_both_train_and_test(kind: str) -> None:
    rng = np.random.default_rng(1)
    y = {"multilabel": multilabel(240), "multiclass": rng.integers(0, 3, 240), "binary": rng.integers(0, 2, 240)}[kind]
    groups = rng.integers(0, 40, 240)
    splits = make_splits(y, 4, seed=3, groups=groups)
    assert len(splits) == 4
    seen = np.zeros(240, dtype=int)
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        seen[test] += 1
    assert (seen == 1).all()  # every example is tested exactly once
    if kind == "multilabel":  # grouped folds still balance the labels
        counts = np.stack([y[test].sum(0) for _, test in splits])
        assert (counts > 0).all()


def test_splits_need_enough_units() -> None:
    with pytest.raises(InputError, match="n_splits"):
        iterative_stratification(multilabel(20), 5, groups=np.arange(20) % 3)
    with pytest.raises(InputError, match="groups cannot fill"):
        make_splits(np.arange(20) % 2, 5, groups=np.arange(20) % 3)


def test_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    y, s = rng.integers(0, 2, 80), rng.random(80)
    s[:10] = 0.5  # ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(auroc(np.ones(5), rng.random(5)))
    ym = multilabel(100)
    sm = np.clip(ym * 0.4 + rng.random(ym.shape) * 0.6, 0, 1)
    m = probe_metrics(ym, sm, "multilabel", list("abcd"))
    assert m["auroc_macro"] == pytest.approx(roc_auc_score(ym, sm, average="macro"))
    assert m["auroc[b]"] == pytest.approx(roc_auc_score(ym[:, 1], sm[:, 1]))
    pred = (sm >= 0.5).astype(int)
    assert m["mcc"] == pytest.approx(np.mean([matthews_corrcoef(ym[:, c], pred[:, c]) for c in range(4)]))
    assert m["f1_macro"] == pytest.approx(f1_score(ym, pred, average="macro"))
    yc = np.array([0, 0, 1, 1, 2, 2])
    pc = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.8 + 0.1
    mc = probe_metrics(yc, pc, "multiclass", ["x", "y", "z"])
    assert mc["mcc"] == pytest.approx(matthews_corrcoef(yc, pc.argmax(1)))
    # a class missing from a test fold is left out of the macro AUROC
    assert np.isnan(probe_metrics(yc[:4], pc[:4], "multiclass", ["x", "y", "z"])["auroc[z]"])


def test_linear_probe_picks_c_by_inner_cross_validation() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 5))
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=150) > 0, "pos", "neg")
    probe = LinearProbe(Cs=(0.001, 1.0), inner_splits=3).fit(X, y)
    assert probe.C_ == 1.0 and set(probe.inner_scores_) == {0.001, 1.0}
    assert probe.score(X, y) > 0.9
    assert probe.predict_proba(X).shape == (150, 2) and list(probe.classes_) == ["neg", "pos"]
    with pytest.raises(InputError, match="one row per label"):
        probe.fit(X[:10], y)


def test_cross_validation_is_reproducible_and_grouped() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 6))
    y = np.stack([X[:, 0] > 0.3, X[:, 1] > 0, X[:, 2] + X[:, 0] > 0.5], 1).astype(int)
    groups = np.repeat(np.arange(40), 3)
    probe = MLPProbe(hidden_layer_sizes=(16,), max_iter=300, early_stopping=False)  # 90 rows: no room to hold out
    first = cross_validate(probe, X, y, groups, n_splits=4, seeds=[0, 1])
    again = cross_validate(probe, X, y, groups, n_splits=4, seeds=[0, 1])
    pd.testing.assert_frame_equal(first.folds, again.folds)
    assert len(first.folds) == 8 and first.folds["auroc_macro"].mean() > 0.8
    assert not np.isnan(first.oof[0]).any()  # every example predicted once per seed
    other = cross_validate(probe, X, y, groups, n_splits=4, seeds=[5])
    assert not np.array_equal(other.oof[5], first.oof[0])
    summary = first.summary(n_boot=50)
    assert (
        summary["auroc_macro_lo"] <= summary["auroc_macro"] + 0.05
        and summary["auroc_macro_lo"] < summary["auroc_macro_hi"]
    )
    assert summary["seeds"] == 2 and summary["folds"] == 4
    assert first.summary(n_boot=50) == summary  # the bootstrap is seeded too


def test_bootstrap_resamples_whole_groups() -> None:
    y = np.array([0, 1] * 20)
    scores = np.stack([1 - y, y], 1).astype(float)  # a perfect predictor
    assert bootstrap_ci(y, [scores], "binary", ["0", "1"], n_boot=30) == (1.0, 1.0)
    noisy = np.random.default_rng(0).random((40, 2))
    lo, hi = bootstrap_ci(y, [noisy], "binary", ["0", "1"], groups=np.arange(40) // 4, n_boot=200)
    assert 0 <= lo < hi <= 1


def test_cli_probe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(5)
    n = 90
    ids = np.array([f"B{i}" for i in range(n)])
    a, b = rng.normal(size=(n, 4)), rng.normal(size=(n, 3))
    y = np.stack([a[:, 0] > 0, b[:, 0] > 0], 1).astype(int)
    np.savez(tmp_path / "a.npz", ids=ids, L0=a, L1=rng.normal(size=(n, 2)))
    np.savez(tmp_path / "b.npz", ids=ids[::-1], table=b[::-1])  # another row order: joined by id
    rows = ["id,c1,c2,group"] + [f"{ids[i]},{y[i, 0]},{y[i, 1]},g{i // 3}" for i in range(n)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    common = ["--labels", str(tmp_path / "labels.csv"), "--group-column", "group", "--folds", "3", "--seeds", "0",
              "--bootstrap", "20"]  # fmt: skip
    assert main(["probe", "--features", f"{tmp_path / 'a.npz'}:L0", str(tmp_path / "b.npz"), *common,
                 "--out", str(tmp_path / "res")]) == 0  # fmt: skip
    summary = pd.read_csv(tmp_path / "res" / "summary.csv")
    assert summary["auroc_macro"].iloc[0] > 0.9 and summary["n"].iloc[0] == n
    assert len(pd.read_csv(tmp_path / "res" / "folds.csv")) == 3
    assert main(["probe", "--features", str(tmp_path / "a.npz"), "--all-layers", *common, "--probe", "mlp",
                 "--hidden", "8"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "a.npz:L0" in out and "a.npz:L1" in out
    assert main(["probe", "--features", str(tmp_path / "a.npz"), *common]) == 2
    assert "pick one as" in capsys.readouterr().err


def test_options_that_cannot_give_a_sound_number() -> None:
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = np.array(["a"] * 14 + ["b"] * 14 + ["c"] * 2)
    with pytest.raises(InputError, match=r"n_splits=1: cross-validation needs at least 2 folds"):
        cross_validate(LinearProbe(), X, y, n_splits=1)
    with pytest.raises(InputError, match=r"more folds than the 30 example"):
        cross_validate(LinearProbe(), X, y, n_splits=31)
    with pytest.raises(InputError, match=r"class 'c' has 2 example\(s\), fewer than the 3 folds"):
        cross_validate(LinearProbe(), X, y, n_splits=3)
    groups = np.arange(30) // 3  # c: rows 28, 29, one group
    with pytest.raises(InputError, match=r"n_splits: class 'c' is in 1 group\(s\), fewer than the 2 folds: "):
        cross_validate(LinearProbe(), X, y, groups, n_splits=2)
    labels = multilabel(30)
    labels[:, 0] = 1
    labels[:2, 0] = 0
    with pytest.raises(InputError, match=r"class '0' is absent from only 2 example\(s\)"):
        cross_validate(LinearProbe(), X, labels, n_splits=3, class_names=None)
    with pytest.raises(InputError, match=r"seeds=\[.*\]: 3 is given twice"):
        cross_validate(LinearProbe(), X, y[:28], n_splits=2, seeds=[3, 3])
    with pytest.raises(InputError, match=r"Cs=\[0.0, 1.0\]: give one or more values of C"):
        LinearProbe(Cs=(0.0, 1.0)).fit(X[:28], y[:28])
    with pytest.raises(InputError, match=r"hidden_layer_sizes=\[.*\]: give one or more layer widths"):
        MLPProbe(hidden_layer_sizes=(8, 0)).fit(X[:28], y[:28])
    with pytest.raises(InputError, match=r"4 training rows cannot fill the 5 inner folds"):
        LinearProbe(inner_splits=5).fit(X[:4], y[12:16])
    with pytest.raises(InputError, match=r"n_boot=-1: must be >= 0"):
        cross_validate(LinearProbe(Cs=(1.0,)), X[:28], y[:28], n_splits=2).summary(n_boot=-1)
    with pytest.raises(InputError, match="n_splits=9: needs 2 <= n_splits <= 8"):
        make_splits(np.arange(8) % 2, 9)
