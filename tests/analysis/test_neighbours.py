"""Tests of biostrata.analysis.neighbours: k-NN lists and their mutual agreement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from biostrata.analysis.neighbours import knn_indices, mutual_knn, mutual_knn_matrix
from biostrata.errors import InputError


def test_knn_indices_match_brute_force_and_break_ties_by_index() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(knn_indices(x, 5, block=7), np.argsort(d, axis=1, kind="stable")[:, :5])
    line = np.array([[0.0], [1.0], [2.0], [3.0]])  # point 1 is equally far from 0 and 2
    assert knn_indices(line, 1)[:, 0].tolist() == [1, 0, 1, 2]
    cos = knn_indices(np.array([[1.0, 0], [2.0, 0.1], [0, 1.0], [-1.0, 0]]), 1, metric="cosine")
    assert cos[:, 0].tolist() == [1, 0, 1, 2]


def test_agreement_is_one_under_similarities_and_chance_otherwise() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8))
    assert mutual_knn(x, 2.5 * x @ ortho_group.rvs(8, random_state=2) + 1.0, k=10) == 1.0
    chance = 10 / 199
    assert abs(mutual_knn(x, rng.normal(size=(200, 8)), k=10) - chance) < 0.03
    frame = mutual_knn_matrix({"a": x, "b": rng.normal(size=(200, 3))}, k=10)
    assert frame.loc["a", "a"] == 1.0 and frame.loc["a", "b"] == pytest.approx(frame.loc["b", "a"])
    with pytest.raises(InputError, match="k="):
        mutual_knn(x, x, k=200)
    with pytest.raises(InputError, match="same examples"):
        mutual_knn(x, x[:10])
