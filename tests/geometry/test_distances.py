import math

import numpy as np
import pytest
import torch

from biostrata.errors import InputError
from biostrata.geometry.distances import pairwise_distances
from biostrata.geometry.lorentz import Lorentz


def lift(space: np.ndarray, k: float) -> np.ndarray:
    """Points on <x,x>_L = -1/K over the given space parts."""
    return np.concatenate([np.sqrt(1 / k + (space**2).sum(1, keepdims=True)), space], 1)


def test_euclidean_and_cosine():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    d = pairwise_distances(x).numpy()
    assert np.allclose(d, np.linalg.norm(x[:, None] - x[None], axis=-1), atol=1e-12)
    assert np.all(np.diag(d) == 0) and np.array_equal(d, d.T)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    ang = pairwise_distances(x, metric="cosine").numpy()
    assert np.allclose(ang, np.arccos(np.clip(u @ u.T, -1, 1)), atol=1e-7)
    # the angle is a metric; it keeps digits where arccos would not
    assert (ang[:, :, None] <= ang[:, None, :] + ang[None, :, :].transpose(0, 2, 1) + 1e-12).all()
    close = np.array([[1.0, 0.0], [1.0, 1e-9]])
    assert pairwise_distances(close, metric="cosine")[0, 1].item() == pytest.approx(1e-9, rel=1e-6)
    y = rng.normal(size=(5, 4))
    assert pairwise_distances(x, y).shape == (30, 5)


@pytest.mark.parametrize("k", [0.5, 1.0, 3.0])
def test_lorentz_matches_the_arccosh_formula_and_geoopt(k):
    rng = np.random.default_rng(1)
    pts = lift(rng.normal(size=(25, 3)), k)
    d = pairwise_distances(pts, metric="lorentz", curvature=k).numpy()
    inner = -np.outer(pts[:, 0], pts[:, 0]) + pts[:, 1:] @ pts[:, 1:].T
    want = np.arccosh(np.clip(-k * inner, 1, None)) / math.sqrt(k)
    off = ~np.eye(25, dtype=bool)
    assert np.allclose(d[off], want[off], rtol=1e-9)
    geo = Lorentz(curvature=k)
    t = torch.as_tensor(pts)
    assert np.allclose(d[0], geo.dist(t[0:1], t).numpy(), rtol=1e-6, atol=1e-6)
    # close points keep their precision: ds^2 = |dx_s|^2 - dx_0^2 with dx_0 = (x_s . dx_s) / x_0
    p = lift(np.array([[0.3, -0.2, 0.1], [0.3, -0.2, 0.1 + 1e-8]]), k)
    want = 1e-8 * math.sqrt(1 - 0.1**2 / (1 / k + 0.14))
    assert pairwise_distances(p, metric="lorentz", curvature=k)[0, 1].item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("k", [0.5, 2.0])
def test_poincare_equals_lorentz_of_the_same_points(k):
    rng = np.random.default_rng(2)
    b = rng.uniform(-1, 1, size=(20, 2))
    b *= 0.95 / math.sqrt(k) / np.linalg.norm(b, axis=1, keepdims=True).max()
    r2 = k * (b**2).sum(1, keepdims=True)
    hyper = np.concatenate([(1 + r2) / (1 - r2) / math.sqrt(k), 2 * b / (1 - r2)], 1)  # ball -> hyperboloid
    dp = pairwise_distances(b, metric="poincare", curvature=k).numpy()
    dl = pairwise_distances(hyper, metric="lorentz", curvature=k).numpy()
    assert np.allclose(dp, dl, rtol=1e-8, atol=1e-10)
    sq = ((b[:, None] - b[None]) ** 2).sum(-1)
    want = np.arccosh(1 + 2 * k * sq / ((1 - r2) * (1 - r2.T))) / math.sqrt(k)
    assert np.allclose(dp, want, atol=1e-6)


def test_numpy_views_with_negative_strides_are_accepted():
    x = np.random.default_rng(0).normal(size=(5, 3))
    assert np.allclose(pairwise_distances(x[::-1]).numpy(), pairwise_distances(x[::-1].copy()).numpy())


def test_errors_name_the_row():
    good = lift(np.zeros((3, 2)), 1.0)
    bad = good.copy()
    bad[1, 0] = 5.0
    with pytest.raises(InputError, match="row 1 is not on the upper hyperboloid"):
        pairwise_distances(bad, metric="lorentz")
    with pytest.raises(InputError, match="row 0 is not on the upper hyperboloid"):
        pairwise_distances(-good, metric="lorentz")
    with pytest.raises(InputError, match="row 2 lies outside the Poincare ball"):
        pairwise_distances(np.array([[0.1, 0], [0, 0.2], [0.9, 0.9]]), metric="poincare")
    with pytest.raises(InputError, match="row 1 is the zero vector"):
        pairwise_distances(np.array([[1.0, 0], [0, 0]]), metric="cosine")
    with pytest.raises(InputError, match="row 2, column 1 is nan"):
        pairwise_distances(np.array([[1.0, 0], [0, 1], [0, np.nan]]))
    with pytest.raises(InputError, match="unknown metric 'manhattan'"):
        pairwise_distances(good, metric="manhattan")
    with pytest.raises(InputError, match=r"^curvature=-1\.0: must be a finite number > 0"):
        pairwise_distances(good, metric="lorentz", curvature=-1.0)
    with pytest.raises(InputError, match="2-d array"):
        pairwise_distances(np.zeros(3))


def test_gram_forms_agree_with_the_exact_distances_and_stay_finite_at_equal_points():
    from biostrata.geometry.distances import euclidean_gram_distances, lorentz_gram_distances

    torch.manual_seed(0)
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    assert torch.allclose(euclidean_gram_distances(x, y), pairwise_distances(x, y), rtol=1e-12)
    # batched on the left, as the heads call them: [..., d] x [m, d] -> [..., m]
    assert torch.equal(euclidean_gram_distances(x.view(7, 1, 5), y)[:, 0], euclidean_gram_distances(x, y))
    m = Lorentz(0.5)
    px, py = m.lift(x, dim=-1).double(), m.lift(y, dim=-1).double()
    exact = pairwise_distances(px, py, metric="lorentz", curvature=0.5)
    assert torch.allclose(lorentz_gram_distances(px, py, m.kk.double()), exact, rtol=1e-9)
    assert torch.equal(m.gram_distances(px, py), lorentz_gram_distances(px, py, m.kk))
    # equal points: the floors keep sqrt and arccosh inside their domains (distances ~ sqrt(eps), not 0)
    at = x[:2].clone().requires_grad_(True)
    flat, curved = euclidean_gram_distances(at, x[:2]), lorentz_gram_distances(m.lift(at, dim=-1), px[:2], m.kk)
    (flat.sum() + curved.sum()).backward()
    assert torch.isfinite(at.grad).all()
    assert euclidean_gram_distances(x[:1], x[:1]).item() < 1e-5 and lorentz_gram_distances(px[:1], px[:1], m.kk) < 1e-3
