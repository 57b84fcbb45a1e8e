"""Tests of biostrata.analysis.cka: invariances, hand-computed values, debiasing, minibatch accumulation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ortho_group

from biostrata.analysis.cka import (
    LinearCKA,
    cka,
    cka_curve,
    cka_matrix,
    gram_linear,
    gram_rbf,
    hsic,
    is_constant,
    kernel_cka_matrix,
)
from biostrata.cli import main
from biostrata.errors import InputError


@pytest.fixture
def xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 4)) + 0.7 * rng.normal(size=(40, 4))
    return x, y


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_one_for_orthogonal_transform_and_isotropic_scaling(xy, kernel: str, debiased: bool) -> None:
    x, _ = xy
    q = ortho_group.rvs(6, random_state=1)
    assert cka(x, x @ q, kernel, debiased) == pytest.approx(1.0, abs=1e-9)
    assert cka(x, 3.7 * x, kernel, debiased) == pytest.approx(1.0, abs=1e-9)
    assert cka(x, -0.2 * x @ q + 5.0, kernel, debiased) == pytest.approx(1.0, abs=1e-9)


def test_hand_computed_values() -> None:
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [3.0], [2.0]])
    # centred x = (-1, 0, 1), y = (-1, 1, 0): HSIC_b = (x.y)^2 / (n - 1)^2 = 1/4; linear CKA = r^2 = 1/4
    assert hsic(gram_linear(x), gram_linear(y)) == pytest.approx(0.25)
    assert cka(x, y) == pytest.approx(0.25)
    # two orthogonal one-hot codes of a 2 + 2 split: K = L, so CKA = 1, whatever the kernel
    codes = np.array([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    assert cka(codes, codes[:, ::-1]) == pytest.approx(1.0)
    # the RBF Gram matrix of two points at distance 2 with sigma 2: off-diagonal exp(-4 / 8)
    k = gram_rbf(np.array([[0.0, 0.0], [2.0, 0.0]]), sigma=2.0).numpy()
    assert k == pytest.approx(np.array([[1.0, np.exp(-0.5)], [np.exp(-0.5), 1.0]]))


def test_debiased_hsic_is_the_u_statistic() -> None:
    """Song et al. (2012): HSIC_u = 1/(n)_4 sum over distinct (i, j, q, r) of
    K_ij L_ij + K_ij L_qr - 2 K_ij L_iq."""
    rng = np.random.default_rng(2)
    n = 6
    k = gram_linear(rng.normal(size=(n, 3))).numpy()
    l = gram_rbf(rng.normal(size=(n, 2)), sigma=1.3).numpy()
    total = sum(k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
                for i, j, q, r in itertools.permutations(range(n), 4))  # fmt: skip
    assert hsic(k, l, debiased=True) == pytest.approx(total / (n * (n - 1) * (n - 2) * (n - 3)))


def test_debiased_near_zero_for_independent_wide_features() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(60, 3000)), rng.normal(size=(60, 3000))
    assert cka(x, y) > 0.9  # the biased estimate is fooled by p >> n
    assert abs(cka(x, y, debiased=True)) < 0.05


@pytest.mark.parametrize("debiased", [False, True])
def test_minibatch_accumulation_equals_full_computation(xy, debiased: bool) -> None:
    x, y = xy
    z = x[:, :2] ** 2 + 10.0  # far from centred: the accumulator must not depend on where batches cut
    full = LinearCKA([6, 4, 2]).update(x, y, z)
    batched = LinearCKA([6, 4, 2])
    for lo, hi in [(0, 1), (1, 8), (8, 9), (9, 40)]:
        batched.update(x[lo:hi], y[lo:hi], z[lo:hi])
    assert batched.n == 40
    np.testing.assert_allclose(batched.hsic_matrix(debiased), full.hsic_matrix(debiased), rtol=1e-10)
    grams = [gram_linear(a) for a in (x, y, z)]
    reference = np.array([[hsic(a, b, debiased) for b in grams] for a in grams])
    np.testing.assert_allclose(full.hsic_matrix(debiased), reference, rtol=1e-9)
    # the blocked Gram-matrix path agrees too, for any block size
    np.testing.assert_allclose(
        kernel_cka_matrix([x, y, z], "linear", debiased, block=7), full.matrix(debiased), rtol=1e-9
    )
    frame = cka_matrix({"x": x, "y": y, "z": z}, debiased=debiased, batch_size=9)
    np.testing.assert_allclose(frame.to_numpy(), full.matrix(debiased), rtol=1e-9)


def test_rbf_blocks_match_full_gram_matrices(xy) -> None:
    x, y = xy
    kx, ky = gram_rbf(x), gram_rbf(y)
    expected = hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))
    assert kernel_cka_matrix([x, y], "rbf", block=5)[0, 1] == pytest.approx(expected, rel=1e-10)


def test_matrices_within_and_across_models_and_curve(xy) -> None:
    x, y = xy
    within = cka_matrix({"a": x, "b": y})
    assert list(within.index) == ["a", "b"] and np.allclose(np.diag(within), 1.0)
    assert within.loc["a", "b"] == pytest.approx(within.loc["b", "a"])
    across = cka_matrix({"a": x}, {"p": y, "q": x})
    assert across.shape == (1, 2) and across.loc["a", "q"] == pytest.approx(1.0)
    assert across.loc["a", "p"] == pytest.approx(within.loc["a", "b"])
    curve = cka_curve([x, 2 * x, y], x)
    assert curve[:2] == pytest.approx([1.0, 1.0]) and curve[2] < 1
    with pytest.raises(InputError, match="different numbers of rows"):
        cka_matrix({"a": x, "b": y[:10]})
    with pytest.raises(InputError, match="at least 4 examples"):
        cka(x[:3], y[:3], debiased=True)
    with pytest.raises(InputError, match="kernel="):
        cka(x, y, kernel="cosine")
    assert np.isnan(cka(np.ones((5, 2)), x[:5]))  # a constant representation has no CKA


def test_heatmap_and_cli(tmp_path: Path, xy, capsys: pytest.CaptureFixture) -> None:
    x, y = xy
    ids = np.array([f"s{i}" for i in range(40)])
    np.savez(tmp_path / "a.npz", ids=ids, L0=x, L1=y)
    order = np.arange(40)[::-1]  # rows in another order: joined by id
    np.savez(tmp_path / "b.npz", ids=ids[order], table=x[order] @ ortho_group.rvs(6, random_state=0))
    assert main(["cka", str(tmp_path / "a.npz"), "--out", str(tmp_path / "m.csv"), "--heatmap", str(tmp_path / "m.png"),
                 "--knn", "5"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "linear CKA" in text and "mutual 5-NN agreement" in text
    assert (tmp_path / "m.png").stat().st_size > 1000 and (tmp_path / "m.knn.csv").is_file()
    assert (
        main(["cka", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--debiased", "--out", str(tmp_path / "x.csv")])
        == 0
    )
    cross = np.loadtxt(tmp_path / "x.csv", delimiter=",", skiprows=1, usecols=1)
    assert cross[0] == pytest.approx(1.0)  # L0 against its rotated copy, after the join by id
    assert (
        main(["cka", str(tmp_path / "a.npz"), "--against", str(tmp_path / "b.npz"), "--out", str(tmp_path / "c.csv")])
        == 0
    )
    curve = (tmp_path / "c.csv").read_text().splitlines()
    assert curve[0] == "input,layer,rows,cka" and len(curve) == 3
    assert main(["cka", str(tmp_path / "a.npz"), "--against", str(tmp_path / "a.npz")]) == 2
    assert "pick one" in capsys.readouterr().err


def test_undefined_cka_is_refused_not_nan(xy) -> None:
    """A constant layer, or too few rows for the estimator, raise instead of giving NaN."""
    x, y = xy
    with pytest.raises(InputError, match=r"representation 'c' is constant over the 40 rows .* CKA is undefined"):
        cka_matrix({"x": x, "c": np.ones((40, 3))})
    with pytest.raises(InputError, match=r"'c' \(reps_b\) is constant"):
        cka_matrix({"x": x}, {"c": np.zeros((40, 2))}, kernel="rbf")
    with pytest.raises(InputError, match="1 row"):
        cka_matrix({"x": x[:1]})
    with pytest.raises(InputError, match="debiased CKA needs at least 4"):
        cka_matrix({"x": x[:3], "y": y[:3]}, debiased=True)
    with pytest.raises(InputError, match=r"^batch_size=0: must be at least 1$"):
        cka_matrix({"x": x}, batch_size=0)
    assert is_constant(np.ones((9000, 2))) and not is_constant(np.eye(9000, 2))
