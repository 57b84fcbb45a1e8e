"""Tests of biostrata.analysis.fusion: alignment by domain, pooling, learned-projection fusion."""

from __future__ import annotations

import numpy as np
import pytest

from biostrata.analysis.fusion import ProjectionFusion, align_domains, aligned_concat, concat_features, pool
from biostrata.analysis.probes import cross_validate
from biostrata.errors import InputError


def test_order_alignment_is_a_longest_common_subsequence() -> None:
    a, b = ["KS", "AT", "ACP", "KR", "ACP", "TE"], ["AT", "ACP", "DH", "ACP", "TE"]
    pairs = align_domains(a, b)
    assert pairs.tolist() == [[1, 0], [2, 1], [4, 3], [5, 4]]
    assert all(a[i] == b[j] for i, j in pairs)
    assert align_domains([], ["A"]).shape == (0, 2)
    assert align_domains(list("ABCBDAB"), list("BDCABA")).shape[0] == 4  # the textbook LCS length


def test_occurrence_alignment_pairs_kth_with_kth() -> None:
    a, b = ["A", "B", "A", "C", "A"], ["C", "A", "A", "B"]  # b sorted differently, one A fewer
    assert align_domains(a, b, "occurrence").tolist() == [[0, 1], [1, 3], [2, 2], [3, 0]]
    with pytest.raises(InputError, match="method="):
        align_domains(a, b, "truncate")


def test_aligned_concat_never_truncates() -> None:
    keys_a, keys_b = ["X", "A", "B"], ["A", "B"]  # model a sees one more domain, at the front
    fa, fb = np.arange(3.0)[:, None] * np.ones((1, 2)), 10 + np.arange(2.0)[:, None]
    both, pairs = aligned_concat(fa, keys_a, fb, keys_b)
    # truncation would pair X with A and A with B; alignment pairs A with A and B with B
    assert pairs.tolist() == [[1, 0], [2, 1]]
    assert both.tolist() == [[1.0, 1.0, 10.0], [2.0, 2.0, 11.0]]
    with pytest.raises(InputError, match="one row per key"):
        aligned_concat(fa, keys_a[:2], fb, keys_b)
    with pytest.raises(InputError, match="never truncate"):
        concat_features(fa, fb)


def test_pool_per_cluster() -> None:
    x = np.array([[1.0, 0], [3.0, 2], [5.0, 5], [0.0, 1]])
    ids, mean = pool(x, ["b2", "b2", "b1", "b2"])
    assert ids.tolist() == ["b2", "b1"] and mean.tolist() == [[4 / 3, 1.0], [5.0, 5.0]]
    _, top = pool(x, [1, 1, 0, 1], how="max")
    assert top.tolist() == [[3.0, 2.0], [5.0, 5.0]]


def test_projection_fusion_uses_both_models() -> None:
    rng = np.random.default_rng(0)
    n = 240
    xa, xb = rng.normal(size=(n, 6)), rng.normal(size=(n, 5))
    y = np.stack([(xa[:, 0] > 0), (xb[:, 0] > 0), (xa[:, 1] + xb[:, 1] > 0)], 1).astype(int)  # multi-label
    X = np.concatenate([xa, xb], 1)
    res = cross_validate(ProjectionFusion(split=6, epochs=200, lr=1e-2), X, y, n_splits=3, seeds=[0])
    per_class = res.summary(n_boot=0)
    assert per_class["auroc_macro"] > 0.85
    assert min(per_class[f"auroc[{c}]"] for c in range(3)) > 0.75  # each model's signal is used
    fitted = ProjectionFusion(split=6, dim=4, epochs=20).fit(X, y)
    assert fitted.transform(X[:7]).shape == (7, 4)
    assert fitted.predict_proba(X[:7]).shape == (7, 3)
    single = ProjectionFusion(split=6, epochs=20).fit(X, np.where(y[:, 0] == 1, "yes", "no"))
    assert set(single.predict(X)) <= {"yes", "no"}
    with pytest.raises(InputError, match="split="):
        ProjectionFusion(split=11).fit(X, y)
