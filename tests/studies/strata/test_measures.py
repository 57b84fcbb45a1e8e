"""Tests of biostrata.studies.strata.measures: representations compared across strata."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from biostrata.errors import InputError
from biostrata.studies.strata.measures import (
    calibration_table,
    delta_table,
    genome_layer_vectors,
    lorentz_points,
    probe_summary,
)


def test_lorentz_points_lie_on_the_unit_hyperboloid_and_scale_distances() -> None:
    rng = np.random.default_rng(0)
    v, K = rng.standard_normal((20, 3)), 2.5
    k = 1 / K  # the hyperboloid <x,x>_L = -k of curvature -K
    x = lorentz_points(v, K)
    np.testing.assert_allclose(-(x[:, 0] ** 2) + (x[:, 1:] ** 2).sum(1), -1.0, rtol=1e-10)
    # exp_o(v) is |v| from the origin on the curvature -K hyperboloid; here that distance times sqrt(K)
    np.testing.assert_allclose(np.arccosh(x[:, 0]), np.linalg.norm(v, axis=1) * np.sqrt(K), rtol=1e-10)

    def point(u: np.ndarray) -> np.ndarray:  # exp_o(u) on <x,x>_L = -k: x_s = sqrt(k) sinh(|u|/sqrt(k)) u/|u|
        r = np.linalg.norm(u) / np.sqrt(k)
        return np.concatenate([[np.sqrt(k) * np.cosh(r)], np.sqrt(k) * np.sinh(r) * u / np.linalg.norm(u)])

    a, b = point(v[0]), point(v[1])
    d_k = np.sqrt(k) * np.arccosh((a[0] * b[0] - a[1:] @ b[1:]) / k)  # geodesic distance at curvature -K
    d_1 = np.arccosh(x[0, 0] * x[1, 0] - x[0, 1:] @ x[1, 1:])
    assert d_1 == pytest.approx(d_k * np.sqrt(K), rel=1e-9)
    assert np.isfinite(lorentz_points(np.zeros((2, 3)), 1.0)).all()


def test_lorentz_points_are_those_of_the_numpy_formula_they_replace() -> None:
    """exp_o is now geometry's (torch, float64): the points of the NumPy formula written here before, to
    float64 rounding (NumPy's and torch's sinh and sums round differently in the last bit)."""

    def before(tangent: np.ndarray, curvature: float) -> np.ndarray:
        v = np.asarray(tangent, dtype=np.float64) * np.sqrt(curvature)
        r = np.linalg.norm(v, axis=1, keepdims=True)
        scale = np.sinh(r) / np.maximum(r, 1e-300)
        return np.concatenate([np.cosh(r), v * np.where(r > 0, scale, 1.0)], axis=1)

    rng = np.random.default_rng(3)
    for curvature in (0.37, 1.0, 2.5):
        for scale in (0.0, 1e-9, 1e-3, 0.5, 3.0, 10.0):
            v = rng.standard_normal((200, 7)) * scale
            x = lorentz_points(v, curvature)
            assert x.dtype == np.float64
            np.testing.assert_allclose(x, before(v, curvature), rtol=1e-13, atol=0)


def test_delta_table_measures_hyperbolic_rows_on_the_hyperboloid_too() -> None:
    rng = np.random.default_rng(1)
    reps = {"a/x/0": rng.standard_normal((60, 4)), "a/y/1": rng.standard_normal((60, 2))}
    table = delta_table(reps, {"a/y/1": 1.0}, samples=30, repeats=2, seed=0)
    assert list(table["name"]) == ["a/x/0", "a/y/1", "a/y/1"]
    assert list(table["metric"]) == ["euclidean", "euclidean", "lorentz"]
    assert ((table["relative_delta"] >= 0) & (table["relative_delta"] <= 1)).all()
    again = delta_table(reps, {"a/y/1": 1.0}, samples=30, repeats=2, seed=0)
    pd.testing.assert_frame_equal(table, again)
    with pytest.raises(InputError, match="row counts"):
        delta_table({"a": np.zeros((5, 2)), "b": np.zeros((6, 2))})


def test_calibration_table_orders_tree_below_plane() -> None:
    cal = calibration_table(samples=60, repeats=2, seed=0).set_index("space")
    assert cal.loc["tree", "relative_delta"] == pytest.approx(0.0, abs=1e-9)
    assert cal.loc["euclidean-2d", "relative_delta"] > 0.1


def test_cka_matrix_of_the_strata_is_symmetric_with_unit_diagonal_and_known_values() -> None:
    from biostrata.analysis.cka import cka_matrix

    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 5))
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    table = cka_matrix({"x": x, "rotated": 3 * x @ q, "other": rng.standard_normal((50, 3))}, batch_size=16)
    np.testing.assert_allclose(np.diag(table), 1.0, atol=1e-10)
    np.testing.assert_allclose(table.to_numpy(), table.to_numpy().T, atol=1e-12)
    assert table.loc["x", "rotated"] == pytest.approx(1.0, abs=1e-10)  # CKA ignores rotation and scale
    # against the formula ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on centred columns
    y = table.columns[2]
    xc, yc = x - x.mean(0), (lambda a: a - a.mean(0))(np.asarray(rng.standard_normal((50, 3))))
    assert y == "other" and 0 <= table.loc["x", "other"] < 0.5
    ref = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    got = cka_matrix({"x": x, "y": yc}).loc["x", "y"]
    assert got == pytest.approx(ref, rel=1e-9)


def test_probe_summary_separates_informative_from_noise_features() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat(["a", "b", "c"], 40)
    groups = np.arange(120) % 20
    good = np.eye(3)[np.unique(y, return_inverse=True)[1]] * 3 + rng.standard_normal((120, 3))
    noise = rng.standard_normal((120, 3))
    s_good = probe_summary(good, y, groups, folds=4, seeds=(0, 1))
    s_noise = probe_summary(noise, y, groups, folds=4, seeds=(0, 1))
    assert s_good["auroc_macro"] > 0.9 > s_noise["auroc_macro"] + 0.2
    assert s_good["n"] == 120 and s_good["classes"] == 3 and s_good["auroc_macro_sd"] >= 0
    assert probe_summary(good, y, groups, folds=4, seeds=(0,))["auroc_macro_sd"] == 0.0


def test_group_means_per_key_in_the_order_asked() -> None:
    from biostrata.studies.strata.compare import group_means

    keys, means = ["a", "b"], group_means(np.array([[1.0, 0], [3, 2], [5, 5]]), ["b", "a", "b"], ["a", "b"])
    assert keys == ["a", "b"] and means.tolist() == [[3, 2], [3, 2.5]]


@pytest.mark.parametrize("name", ["cnn", "hcnn-s"])
def test_genome_layer_vectors_pool_each_sequences_own_positions(name: str) -> None:
    from biostrata.data.dna.alphabet import encode_batch
    from biostrata.models.genome_cnn import build_model

    torch.manual_seed(0)
    model = build_model(name, 20, 3, channels=6, hidden=8).eval()
    seqs = ["ACGTACGTAC", "TTTTGGGGCCCCAAAATTTTGGGG", "ACGN"]  # 10, 24 (cut to 20) and 4 positions
    layers, curv = genome_layer_vectors(model, seqs, [1, 2, 3, 4], device="cpu")
    assert sorted(layers) == [1, 2, 3, 4]
    width = 6 if name == "cnn" else 5  # Lorentz channels count the time coordinate
    assert [layers[i].shape for i in (1, 4)] == [(3, width), (3, 8 if name == "cnn" else 7)]
    assert all(np.isfinite(x).all() for x in layers.values())
    with torch.no_grad():
        states = model.embed(encode_batch(seqs, 20, truncate=True), [2])[2].double().numpy()
    own = [10, 20, 4]
    if name == "cnn":
        assert set(curv.values()) == {None}
        expected = np.stack([states[j, :, : own[j]].mean(1) for j in range(3)])
    else:
        K = curv[2]
        k = 1 / K
        assert K == pytest.approx(1.0)
        expected = []
        for j in range(3):  # Lorentz centroid of the own positions, then log_o, from the formulas
            m = states[j, :, : own[j]].mean(1)
            mm = -(m[0] ** 2) + m[1:] @ m[1:]
            c = np.sqrt(k) * m / np.sqrt(abs(mm))
            r = np.linalg.norm(c[1:])
            expected.append(np.sqrt(k) * np.arcsinh(r / np.sqrt(k)) * c[1:] / r)
        expected = np.stack(expected)
        # the rows are tangent vectors of points on the hyperboloid: mapped back, they lie on it
        x = lorentz_points(layers[4], curv[4])
        np.testing.assert_allclose(-(x[:, 0] ** 2) + (x[:, 1:] ** 2).sum(1), -1.0, rtol=1e-8)
    np.testing.assert_allclose(layers[2], expected, rtol=1e-5, atol=1e-6)
