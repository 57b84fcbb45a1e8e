import geoopt
import pytest
import torch
from geoopt import ManifoldParameter
from geoopt.optim import RiemannianAdam as GeooptRiemannianAdam

from biostrata.geometry.lorentz import Lorentz
from biostrata.train.optim import RiemannianAdam, lr_factor


def make_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = Lorentz(1.0, learnable=True)
    w = torch.nn.Parameter(torch.randn(7, 5, generator=g))
    point = torch.cat([torch.ones(1), torch.zeros(3)])
    beta = ManifoldParameter(point, manifold=m)
    return m, w, beta


def loss_fn(m, w, beta):
    x = torch.arange(35.0).view(7, 5) / 35
    return ((w - x) ** 2).sum() + (beta[1:] - torch.tensor([0.3, -0.2, 0.1])).pow(2).sum() + (m.k - 2.0) ** 2


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_same_trajectory_as_geoopt(weight_decay):
    runs = []
    for cls in (GeooptRiemannianAdam, RiemannianAdam):
        m, w, beta = make_params()
        opt = cls(
            [
                {"params": [w], "lr": 1e-2, "weight_decay": weight_decay},
                {"params": [beta], "lr": 2e-2, "weight_decay": 0.0},
                {"params": [m.k], "lr": 1e-3, "weight_decay": 0.0},
            ]
        )
        for _ in range(20):
            opt.zero_grad()
            loss_fn(m, w, beta).backward()
            opt.step()
        runs.append((w.detach().clone(), beta.detach().clone(), m.k.detach().clone()))
    for a, b in zip(*runs):
        assert torch.allclose(a, b, atol=1e-6)
    assert abs(float(runs[1][2]) - 1.0) > 0.01  # the curvature moved


def _stacking_case(dtype, seed=0):
    """Manifold parameters that stack (three centres on one manifold), that do not (one on another manifold, one
    of another shape), a Euclidean parameter in their group, and one centre that gets no gradient every other
    step; targets pull every centre away from the origin."""
    g = torch.Generator().manual_seed(seed)
    m1, m2 = Lorentz(1.0).to(dtype), Lorentz(0.5).to(dtype)

    def centre(m, n):
        return ManifoldParameter(m.lift(torch.randn(n, generator=g, dtype=dtype) * 0.3, dim=0), manifold=m)

    params = [centre(m1, 4), centre(m1, 4), centre(m1, 4), centre(m2, 4), centre(m1, 6)]
    euclidean = torch.nn.Parameter(torch.randn(4, generator=g, dtype=dtype))
    targets = [torch.randn(p.shape[0] - 1, generator=g, dtype=dtype) for p in params]

    def loss(step):
        total = (euclidean - 1).pow(2).sum()
        for i, (p, t) in enumerate(zip(params, targets)):
            if i != 1 or step % 2 == 0:  # the second centre: no gradient on odd steps
                total = total + (p[1:] - t).pow(2).sum()
        return total

    return params + [euclidean], loss


@pytest.mark.parametrize(
    "dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("stabilize", [None, 1, 3])
def test_stacked_manifold_steps_follow_geoopt(dtype, tolerance, stabilize):
    """The stacked update of parameters on one manifold gives geoopt's one-at-a-time update: parameters, and
    both moments, over 12 steps with weight decay."""
    runs = []
    for cls in (GeooptRiemannianAdam, RiemannianAdam):
        params, loss = _stacking_case(dtype)
        opt = cls([{"params": params, "lr": 5e-2, "weight_decay": 0.01}], stabilize=stabilize)
        for step in range(12):
            opt.zero_grad()
            loss(step).backward()
            opt.step()
        moments = [opt.state[p][name] for p in params for name in ("exp_avg", "exp_avg_sq")]
        runs.append([p.detach().clone() for p in params] + moments + [opt.state[params[1]]["step"]])
    *tensors, steps = zip(*runs)
    assert steps[0] == steps[1] == 6
    for a, b in tensors:
        assert torch.allclose(a, b, rtol=tolerance, atol=tolerance), (a - b).abs().max()
    assert all(
        float((p.detach() - q.detach()).abs().max()) > 0.01 for p, q in zip(runs[1][:5], _stacking_case(dtype)[0][:5])
    )


@pytest.mark.parametrize("order", [("p1", "k", "p2"), ("k", "p1", "p2"), ("p1", "p2", "k")], ids="-".join)
@pytest.mark.parametrize("stabilize", [1, 2])
def test_a_curvature_in_the_group_of_its_points_is_stepped_in_geoopts_order(order, stabilize):
    """geoopt steps a group's tensors in order: a centre listed after its manifold's learned curvature moves on
    the updated manifold, and stabilization projects with the new curvature after the whole group. (Without
    stabilization the centres leave the changing hyperboloid and geoopt's step diverges within 5 steps.)"""
    runs = []
    for cls in (GeooptRiemannianAdam, RiemannianAdam):
        g = torch.Generator().manual_seed(0)
        m = Lorentz(1.0, learnable=True).double()
        tensors = {
            "p1": ManifoldParameter(m.lift(torch.randn(4, generator=g, dtype=torch.float64) * 0.3, dim=0), manifold=m),
            "p2": ManifoldParameter(m.lift(torch.randn(4, generator=g, dtype=torch.float64) * 0.3, dim=0), manifold=m),
            "k": m.k,
        }
        opt = cls([{"params": [tensors[n] for n in order], "lr": 1e-3}], stabilize=stabilize)
        for _ in range(5):
            opt.zero_grad()
            loss = (tensors["p1"][1:] - 0.5).pow(2).sum() + (tensors["p2"][1:] + 0.4).pow(2).sum()
            (loss + (m.k - 1.5) ** 2).backward()
            opt.step()
        runs.append([tensors[n].detach().clone() for n in ("p1", "p2", "k")])
    assert all(torch.isfinite(t).all() for t in runs[0]) and abs(float(runs[0][2]) - 1.0) > 0.004
    for a, b in zip(*runs):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), (a - b).abs().max()


def test_state_dict_round_trip():
    m, w, beta = make_params()
    opt = RiemannianAdam([{"params": [w]}, {"params": [beta]}], lr=1e-2)
    loss_fn(m, w, beta).backward()
    opt.step()
    again = RiemannianAdam([{"params": [w]}, {"params": [beta]}], lr=1e-2)
    again.load_state_dict(opt.state_dict())
    assert torch.equal(again.state[w]["exp_avg"], opt.state[w]["exp_avg"])


def test_square_norm_of_tangent_vectors_is_never_negative():
    """float32 cancellation in <u,u>_L must not reach Adam's square root (NaN in training)."""
    m = Lorentz(1.0)
    x = torch.tensor([74.2062, 33.1831, 33.1830, 33.1830, 33.1830, 33.1830])
    u = torch.tensor([1000.0, 1000.0 - 1e-3, 0.0, 0.0, 0.0, 0.0])
    assert float(geoopt.Lorentz.component_inner(m, x, u)) < 0  # geoopt's raw float32 value
    assert float(m.component_inner(x, u)) >= 0
    beta = ManifoldParameter(x.clone(), manifold=m)
    opt = RiemannianAdam([beta], lr=2e-2)
    beta.grad = torch.tensor([-1000.0, 1000.0 - 1e-3, 0.0, 0.0, 0.0, 0.0])
    opt.step()
    assert torch.isfinite(beta).all()


def test_lr_factor_matches_multistep_lr_without_warmup():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    reference = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    for epoch in range(6):
        for batch in range(3):
            assert lr_factor(3 * epoch + batch, 3, 0, [4, 2], 0.1) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        reference.step()


def test_lr_factor_warms_up_linearly_then_decays():
    factors = [lr_factor(s, 3, 4, [2], 0.5) for s in range(8)]
    assert factors == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5, 0.5])
