"""The torch path's full-size passes (nn.passes) against their definitions, written out with einsum, and
known values."""

import pytest
import torch

from biostrata.nn import passes

B, C, L = 3, 5, 7


def _randn(*size, seed):
    return torch.randn(*size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_stats_of_a_constant_are_its_squared_norm_and_itself():
    squares, means = passes.stats(torch.full((B, C, L), 2.0))
    assert torch.equal(squares, torch.full((B, 1, L), 4.0 * C)) and torch.equal(means, torch.full((B, C), 2.0))


@pytest.mark.parametrize("with_g", [False, True])
def test_dots_are_the_channel_sums(with_g):
    x, g, w = _randn(B, C, L, seed=0), _randn(B, C, L, seed=1), _randn(2, C, seed=2)
    v = g if with_g else x
    first, second = passes.dots(g if with_g else None, x, w)
    assert torch.allclose(first, torch.einsum("bcl,bcl->bl", v, x).unsqueeze(1))
    assert torch.allclose(second, torch.einsum("ic,bcl->bil", w, v))


def test_sums_are_the_position_sums_of_both_terms():
    g, x, rg, rx = _randn(B, C, L, seed=0), _randn(B, C, L, seed=1), _randn(B, 3, L, seed=2), _randn(B, 3, L, seed=3)
    expected = torch.einsum("bil,bcl->ic", rg, g) + torch.einsum("bil,bcl->ic", rx, x)
    assert torch.allclose(passes.sums(g, rg, x, rx), expected)


@pytest.mark.parametrize("with_g", [False, True])
def test_combine_is_the_weighted_sum(with_g):
    g, x = _randn(B, C, L, seed=0), _randn(B, C, L, seed=1)
    p, q = _randn(B, 1, L, seed=2), _randn(B, 1, L, seed=3)
    vectors, rows = _randn(B, 3, C, seed=4), _randn(B, 3, L, seed=5)
    expected = q * x + torch.einsum("bic,bil->bcl", vectors, rows) + (p * g if with_g else 0)
    out = passes.combine(g if with_g else None, p if with_g else None, x, q, vectors, rows)
    assert torch.allclose(out, expected)
