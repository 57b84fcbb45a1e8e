import math

import geoopt
import pytest
import torch

from biostrata.geometry.lorentz import change_curvature_space, expmap0_space, lift, logmap0_space


def f64(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


@pytest.mark.parametrize("k", [1.0, 0.3, 2.5])
def test_maps_at_the_origin_equal_geoopt_float64(k):
    man = geoopt.Lorentz(k=f64(k))
    torch.manual_seed(0)
    v_s = torch.randn(7, 4, dtype=torch.float64) * 1.5
    v = torch.cat([torch.zeros(7, 1, dtype=torch.float64), v_s], 1)
    x = man.expmap0(v)
    assert torch.allclose(expmap0_space(v_s, f64(k), dim=1), x[:, 1:], atol=1e-12)
    assert torch.allclose(logmap0_space(x[:, 1:], f64(k), dim=1), man.logmap0(x)[:, 1:], atol=1e-10)
    assert torch.allclose(
        expmap0_space(torch.zeros(4, dtype=torch.float64), f64(k)), torch.zeros(4, dtype=torch.float64)
    )


@pytest.mark.parametrize("k_from, k_to", [(1.0, 0.5), (0.2, 3.0), (2.0, 2.0)])
def test_change_of_curvature_is_exp0_of_log0_float64(k_from, k_to):
    """hcnn-m hands a block's output to the next curvature as exp_o^{k_to}(log_o^{k_from}(x))."""
    src, dst = geoopt.Lorentz(k=f64(k_from)), geoopt.Lorentz(k=f64(k_to))
    torch.manual_seed(1)
    s = torch.randn(3, 5, 8, dtype=torch.float64) * 2  # (B, C, L) space parts, channel first
    x = lift(s, f64(k_from)).permute(0, 2, 1)
    expected = dst.expmap0(src.logmap0(x)).permute(0, 2, 1)[:, 1:]
    out = change_curvature_space(s, f64(k_from), f64(k_to))
    assert torch.allclose(out, expected, atol=1e-10, rtol=1e-10)
    if k_from == k_to:
        assert torch.allclose(out, s, atol=1e-12)


def test_manifold_methods_use_its_own_curvature():
    """The operations as methods of the manifold (geoopt style): the k-explicit maths at its k."""
    from biostrata.geometry.lorentz import Lorentz, minkowski_inner

    m, other = Lorentz(0.5), Lorentz(2.0)  # k = 2 and k = 0.5
    torch.manual_seed(2)
    s = torch.randn(4, 3, 6) * 3
    x = m.lift(s)
    assert torch.allclose(minkowski_inner(x, x), torch.full((4, 6), -2.0), atol=1e-4)
    assert torch.equal(m.time(s), x[:, :1])
    moved = m.carry(s, to=other)
    assert torch.allclose(moved, change_curvature_space(s, m.kk, other.kk))
    assert m.carry(s, to=m) is s
    assert torch.allclose(m.logmap0_space(m.expmap0_space(s[0], dim=0), dim=0), s[0], atol=1e-4)
    clipped = m.clip_radius(s, 1.0)  # radius 1 in units of sqrt(k): |x_s| <= sqrt(2) sinh(1)
    norms = clipped.norm(dim=1)
    assert norms.max() <= math.sqrt(2) * math.sinh(1) * (1 + 1e-6)
    small = s.norm(dim=1, keepdim=True) < math.sqrt(2) * math.sinh(1)
    assert torch.allclose(torch.where(small, clipped, 0), torch.where(small, s, 0))  # inside: unchanged
    c = m.centroid(x, (2,))
    assert c.shape == (4, 4) and torch.allclose(minkowski_inner(c, c), torch.full((4,), -2.0), atol=1e-4)
