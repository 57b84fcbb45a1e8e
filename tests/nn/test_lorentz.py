import math

import pytest
import torch

from biostrata.errors import InputError
from biostrata.geometry.lorentz import Lorentz, lift, minkowski_inner
from biostrata.nn.lorentz import (
    MAX_CENTRE_RADIUS,
    MAX_RADIUS,
    REFERENCE_RADIUS_CLIP,
    LorentzBatchNorm1d,
    LorentzConv1d,
    LorentzLinear,
    LorentzMLR,
    LorentzReLU,
    lorentz_flatten,
    lorentz_mean,
    lorentz_residual,
)


def on_hyperboloid_error(x: torch.Tensor, manifold: Lorentz, dim: int = 1) -> float:
    """max |<x,x>_L + k| / k, computed in float64 from the (float32) coordinates."""
    k = manifold.kk.detach().double()
    x = x.detach().double()
    return float(((minkowski_inner(x, x, dim=dim) + k) / k).abs().max())


def random_points(manifold: Lorentz, batch=64, channels=5, length=1000, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lift(torch.randn(batch, channels, length, generator=g), manifold.kk)


@pytest.mark.parametrize("curvature", [1.0, 0.3, 2.5])
def test_every_layer_output_is_on_the_hyperboloid_float32(curvature):
    m = Lorentz(curvature, learnable=True)
    x = random_points(m)
    assert x.dtype == torch.float32
    layers = {
        "conv": LorentzConv1d(5, 31, 9, m, padding=4),
        "bn": LorentzBatchNorm1d(5, m),
        "relu": LorentzReLU(m),
    }
    for name, layer in layers.items():
        y = layer(x)
        assert y.shape[0] == 64 and y.shape[2] == 1000, name
        assert on_hyperboloid_error(y, m) < 1e-4, name
    bn = layers["bn"]
    bn.eval()
    assert on_hyperboloid_error(bn(x), m) < 1e-4
    assert on_hyperboloid_error(lorentz_residual(x, layers["relu"](x), m), m) < 1e-4
    flat = lorentz_flatten(x[:, :, :20], m)
    assert flat.shape == (64, 1 + 5 * 20) and on_hyperboloid_error(flat, m) < 1e-4
    mean = lorentz_mean(x, m)
    assert mean.shape == (64, 6) and on_hyperboloid_error(mean, m) < 1e-4
    lin = LorentzLinear(5, 527, m)
    assert on_hyperboloid_error(lin(mean), m) < 1e-4


def test_gradients_are_finite_and_reach_the_curvature():
    m = Lorentz(1.0, learnable=True)
    x = random_points(m, batch=8, length=50)
    conv, bn, mlr = LorentzConv1d(5, 7, 9, m, padding=4), LorentzBatchNorm1d(7, m), LorentzMLR(7, 3, m)
    logits = mlr(lorentz_mean(LorentzReLU(m)(bn(conv(x))), m))
    logits.logsumexp(1).mean().backward()
    params = [m.k, *conv.parameters(), *bn.parameters(), *mlr.parameters()]
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert m.k.grad.abs() > 0


def test_direct_concatenation_conv_matches_explicit_unfold():
    """The conv equals: unfold windows, Lorentz direct concatenation, Lorentz linear map."""
    torch.manual_seed(0)
    m = Lorentz(1.7)
    k = m.kk
    x = random_points(m, batch=3, channels=4, length=12)
    conv = LorentzConv1d(4, 6, 3, m, padding=1)
    y = conv(x).double()
    # explicit: pad with the origin, concatenate each window's points
    origin = torch.zeros(3, 5, 1, dtype=torch.float64)
    origin[:, 0] = k.double().sqrt()
    xp = torch.cat([origin, x.double(), origin], 2)
    win = xp.unfold(2, 3, 1)  # (B, 5, L, 3)
    t = win[:, 0]  # (B, L, 3)
    t_cat = torch.sqrt((t**2).sum(-1) - 2 * k.double())  # sqrt(sum t_i^2 - (N-1) k)
    s_cat = win[:, 1:].permute(0, 2, 1, 3).reshape(3, 12, -1)  # channel-major, as conv weights
    w = conv.conv.weight.double().reshape(6, -1)
    out_s = s_cat @ w.T + conv.conv.bias.double() + t_cat.unsqueeze(-1) * conv.time_weight.double().view(1, 1, -1)
    assert torch.allclose(y[:, 1:].permute(0, 2, 1), out_s, atol=1e-5)
    assert torch.allclose(y[:, 0], torch.sqrt(k.double() + (out_s**2).sum(-1)), atol=1e-5)


def test_batch_norm_centres_and_rescales_then_differs_in_eval():
    torch.manual_seed(1)
    m = Lorentz(1.0)
    bn = LorentzBatchNorm1d(5, m, warm_start=False)
    x = lift(torch.randn(32, 5, 40) * 0.7 + 0.5, m.kk)
    y = bn(x).detach()
    # training output: centred near beta = origin (radial rescaling moves the centroid slightly),
    # mean distance to the centre exactly gamma = 1
    c = lorentz_mean(y.permute(1, 0, 2).reshape(1, 6, -1), m)[0]
    assert torch.allclose(c[1:], torch.zeros(5), atol=2e-2)
    x_c = lorentz_mean(x.permute(1, 0, 2).reshape(1, 6, -1), m)[0]
    assert x_c[1:].abs().min() > 0.2  # the input was not centred
    dist = torch.asinh(y[:, 1:].norm(dim=1) / m.kk.sqrt()) * m.kk.sqrt()
    assert float(dist.mean()) == pytest.approx(1.0, rel=1e-4)
    # running statistics moved towards the batch's, and eval mode uses them
    assert not torch.allclose(bn.running_mean[1:], torch.zeros(5))
    assert bn.running_mean[0] == 0  # a tangent vector at the origin
    bn.eval()
    assert not torch.allclose(bn(x), y, atol=1e-3)
    # with momentum 1 the running stats equal the batch stats, so eval reproduces train
    bn1 = LorentzBatchNorm1d(5, m, momentum=1.0, eps=0.0)
    y1 = bn1(x)
    bn1.eval()
    assert torch.allclose(bn1(x), y1, atol=1e-4)


def test_batch_norm_warm_start_uses_the_first_batch_then_averages():
    """warm_start: the first batch replaces the initial statistics (eval then reproduces train on it);
    batch n is averaged in with momentum max(m, 1/n). The reference keeps momentum m from (origin, 1)."""
    torch.manual_seed(3)
    m = Lorentz(0.7)
    xs = [lift(torch.randn(16, 4, 20) * 0.5 + 0.3 * i, m.kk) for i in range(3)]
    warm, cold = LorentzBatchNorm1d(4, m), LorentzBatchNorm1d(4, m, warm_start=False)
    y_warm, y_cold = warm(xs[0]), cold(xs[0])
    assert torch.allclose(y_warm, y_cold)  # training outputs do not depend on it
    warm.eval(), cold.eval()
    assert torch.allclose(warm(xs[0]), y_warm, atol=1e-4)
    assert not torch.allclose(cold(xs[0]), y_cold, atol=1e-2)
    # the running spread after three batches is their plain average (momenta 1, 1/2, 1/3)
    warm = LorentzBatchNorm1d(4, m, momentum=0.1)
    spreads = []
    for x in xs:
        warm(x)
        spreads.append(float(warm.running_var) if not spreads else None)
    ref = [reference_batch_norm(x.double(), warm.beta.detach().double(), 1.0, float(m.k))[1] for x in xs]
    assert float(warm.running_var) == pytest.approx(sum(ref) / 3, rel=1e-4)


def _centroid64(x: torch.Tensor, manifold, w: torch.Tensor | None = None) -> torch.Tensor:
    """Lorentz centroid over dim -2 (channel last), from the formula sqrt(k) m / sqrt(|<m, m>_L|)."""
    avg = x.mean(-2) if w is None else (w.unsqueeze(-1) * x).sum(-2)
    return manifold.k.sqrt() * avg / manifold.inner(avg, avg, keepdim=True).abs().sqrt()


def reference_batch_norm(x, beta, gamma, k, eps=1e-5, running=None):
    """The reference Lorentz batch norm (HyperbolicCV's LorentzBatchNorm, used by HGE), written from
    its formulas with geoopt's own log / exp / transport, float64, channel first in and out.
    Train mode (``running`` None): returns (output, spread s, batch centroid mu). Eval mode:
    ``running`` = (running_mean as a tangent vector at the origin, running_var)."""
    import geoopt

    man = geoopt.Lorentz(k=torch.tensor(k, dtype=torch.float64))
    pts = x.permute(0, 2, 1) if x.dim() == 3 else x  # (B, L, 1 + C) or (B, 1 + C)
    if running is None:
        mu = _centroid64(pts, man)
        if pts.dim() == 3:
            mu = _centroid64(mu, man)  # centroid of the B per-sequence centroids
    else:
        mu = man.expmap0(running[0])
    v = man.transp0back(mu, man.logmap(mu, pts))
    s = v.norm(dim=-1).mean() if running is None else running[1]
    v = v * (gamma / (s + eps))
    out = man.expmap(beta, man.transp0(beta, v))
    out = out.permute(0, 2, 1) if x.dim() == 3 else out
    return out, float(s), mu


@pytest.mark.parametrize("k", [1.0, 0.25, 4.0])  # exact in float32, as k is stored
@pytest.mark.parametrize("shape", [(4, 5), (6, 3, 7)])
def test_batch_norm_equals_the_reference_in_float64(k, shape):
    """Train mode, the running statistics it leaves, and eval mode, against the reference formulas;
    a mixed batch (sequences of very different spread), so the nested centroid matters."""
    torch.manual_seed(4)
    m = Lorentz(1 / k)
    bn = LorentzBatchNorm1d(shape[1], m, warm_start=False).double()
    with torch.no_grad():
        bn.gamma.fill_(0.8)
        beta_s = torch.randn(shape[1], dtype=torch.float64) * 0.6
        bn.beta.copy_(lift(beta_s, torch.tensor(k, dtype=torch.float64), dim=0))
    scale = torch.linspace(0.1, 2.0, shape[0], dtype=torch.float64).view(-1, *([1] * (len(shape) - 1)))
    s = torch.randn(*shape, dtype=torch.float64) * scale + 0.4 * scale
    x = lift(s, torch.tensor(k, dtype=torch.float64))
    beta = bn.beta.detach()
    ref, spread, mu = reference_batch_norm(x, beta, 0.8, k)
    out = bn(x)
    assert torch.allclose(out, ref, atol=1e-12, rtol=1e-10)
    # running statistics after one batch (momentum 0.1, from the origin and 1)
    import geoopt

    man = geoopt.Lorentz(k=torch.tensor(k, dtype=torch.float64))
    origin = man.origin(shape[1] + 1, dtype=torch.float64)
    w = torch.tensor([0.9, 0.1], dtype=torch.float64)
    run_mean = man.logmap0(_centroid64(torch.stack([origin, mu]), man, w))
    assert torch.allclose(bn.running_mean, run_mean, atol=1e-12)
    assert float(bn.running_var) == pytest.approx(0.9 + 0.1 * spread, rel=1e-12)
    bn.eval()
    ref_eval, _, _ = reference_batch_norm(x, beta, 0.8, k, running=(run_mean, 0.9 + 0.1 * spread))
    assert torch.allclose(bn(x), ref_eval, atol=1e-12, rtol=1e-10)


def test_batch_norm_nested_centroid_differs_from_the_flat_one():
    """The check above would pass with one centroid of all B L points if the batch were not mixed."""
    import geoopt

    k = 1.0
    man = geoopt.Lorentz(k=torch.tensor(k, dtype=torch.float64))
    torch.manual_seed(5)
    s = torch.cat([torch.randn(1, 3, 10) * 0.1, torch.randn(1, 3, 10) * 3 + 2]).double()
    pts = lift(s, torch.tensor(k, dtype=torch.float64)).permute(0, 2, 1)
    nested = _centroid64(_centroid64(pts, man), man)
    flat = _centroid64(pts.reshape(1, -1, 4), man)[0]
    assert (nested - flat).abs().max() > 0.05


def mlr_reference(x, z, a, k):
    """Bdeir et al. (2024), eq. of the Lorentz MLR, written out in float64."""
    sqrt_curv = 1 / math.sqrt(k)
    logits = torch.empty(x.shape[0], z.shape[0], dtype=torch.float64)
    for c in range(z.shape[0]):
        w_t = math.sinh(sqrt_curv * a[c]) * z[c].norm()
        w_s = math.cosh(sqrt_curv * a[c]) * z[c]
        beta = torch.sqrt(w_s.norm() ** 2 - w_t**2)
        alpha = -w_t * x[:, 0] + x[:, 1:] @ w_s
        logits[:, c] = torch.sign(alpha) * beta * math.sqrt(k) * torch.abs(torch.asinh(sqrt_curv * alpha / beta))
    return logits


@pytest.mark.parametrize("curvature", [1.0, 0.5, 3.0])
def test_mlr_logits_equal_float64_reference(curvature):
    torch.manual_seed(2)
    m = Lorentz(curvature)
    mlr = LorentzMLR(16, 4, m)
    with torch.no_grad():
        mlr.a.uniform_(-1, 1)
    x = lift(torch.randn(50, 16), m.kk)
    ref = mlr_reference(x.double(), mlr.z.detach().double(), mlr.a.detach().double().tolist(), float(m.k))
    assert torch.allclose(mlr(x).double(), ref, rtol=1e-4, atol=1e-5)


def test_manifold_rejects_non_positive_curvature():
    with pytest.raises(ValueError, match=r"^curvature=0\.0: must be > 0"):
        Lorentz(0.0)


@pytest.mark.parametrize("clip", [MAX_RADIUS - MAX_CENTRE_RADIUS, REFERENCE_RADIUS_CLIP])
def test_batch_norm_clips_the_radius_of_outliers_in_a_collapsed_batch(clip):
    """One outlier in an otherwise collapsed batch: the Frechet variance is tiny, the rescaling huge.
    The output radius is clipped (at the clip, beta at the origin), so coordinates stay near
    sinh(clip) instead of ~1e16 (which overflowed to NaN a few layers later in training), and gradients
    stay finite; the clip is counted."""
    m = Lorentz(1.0)
    s = torch.zeros(10, 8, 1000)
    s[0, :, 0] = 0.2
    bn1, conv = LorentzBatchNorm1d(8, m, max_radius=clip), LorentzConv1d(8, 8, 3, m, padding=1)
    bn2 = LorentzBatchNorm1d(8, m, max_radius=clip)
    first = bn1.space(s)
    assert first.abs().max() <= math.sinh(clip) * 1.001
    assert bn1.clip_counts("train") == (1, 10 * 1000) and bn1.clip_counts("train") == (0, 0)
    out = bn2.space(conv.space(first))
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in [*bn1.parameters(), *conv.parameters()] if p.requires_grad)


@pytest.mark.parametrize("curvature", [0.1, 4.0])
def test_batch_norm_starts_on_its_own_hyperboloid_and_trains(curvature):
    """beta starts at the origin (sqrt(k), 0, ...) of a hyperboloid of any curvature, the running mean
    at log_o(o) = 0. Starting beta at (1, 0, ...) off the K = 1 hyperboloid made Riemannian Adam's
    first step blow up (K = 0.1)."""
    from biostrata.train.optim import RiemannianAdam

    m = Lorentz(curvature)
    bn = LorentzBatchNorm1d(4, m)
    assert on_hyperboloid_error(bn.beta.detach()[None], m) < 1e-6
    assert not bn.running_mean.any()
    opt = RiemannianAdam([{"params": [bn.beta], "lr": 2e-2}, {"params": [bn.gamma], "lr": 1e-3}], stabilize=1)
    torch.manual_seed(0)
    for _ in range(20):
        loss = bn.space(torch.randn(16, 4, 30) + 1.0).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(bn.beta).all() and on_hyperboloid_error(bn.beta.detach()[None], m) < 1e-3


def test_batch_norm_centre_far_away_is_clipped():
    """A learned centre beta drifting far out (as seen in training) cannot push outputs past MAX_RADIUS
    under the stricter clip (r <= MAX_RADIUS - MAX_CENTRE_RADIUS)."""
    m = Lorentz(1.0)
    bn = LorentzBatchNorm1d(4, m, max_radius=MAX_RADIUS - MAX_CENTRE_RADIUS)
    with torch.no_grad():
        far = torch.tensor([0.0, 1e6, 0.0, 0.0, 0.0])
        far[0] = torch.sqrt(1 + far[1:].square().sum())
        bn.beta.copy_(far)
    out = bn.space(torch.randn(8, 4, 50))
    radius = torch.asinh(out.norm(dim=1))
    assert torch.isfinite(out).all() and radius.max() <= MAX_RADIUS + 1e-3
    # the clip is a no-op near the origin
    bn2 = LorentzBatchNorm1d(4, m)
    x = torch.randn(8, 4, 50) * 0.3
    assert torch.isfinite(bn2.space(x)).all()


@pytest.mark.parametrize("curvature", [0.5, 1.0, 2.0])
def test_lorentz_embedding_rows_are_on_the_hyperboloid_float64(curvature: float) -> None:
    from biostrata.nn.lorentz import LorentzEmbedding

    m = Lorentz(curvature)
    table = LorentzEmbedding(7, 4, m, padding_idx=0, init_std=2.0).double()
    idx = torch.tensor([[0, 3, 6], [1, 1, 2]])
    x = table(idx)
    k = 1.0 / curvature
    s = table.space.detach()[idx]
    assert x.shape == (2, 3, 5)
    assert torch.allclose(x[..., 1:], s) and torch.allclose(x[..., 0], torch.sqrt(k + (s**2).sum(-1)))
    assert torch.allclose(-(x[..., 0] ** 2) + (x[..., 1:] ** 2).sum(-1), torch.full((2, 3), -k, dtype=torch.float64))
    assert torch.equal(x[0, 0], torch.tensor([math.sqrt(k), 0, 0, 0, 0], dtype=torch.float64))  # padding: origin
    x.sum().backward()
    assert torch.equal(table.space.grad[0], torch.zeros(4, dtype=torch.float64))  # no gradient to padding


@pytest.mark.parametrize("curvature", [0.5, 1.0, 2.0])
def test_distance_logits_are_negative_geodesic_distances_float64(curvature: float) -> None:
    import geoopt

    from biostrata.nn.lorentz import LorentzDistanceLogits

    torch.manual_seed(0)
    m = Lorentz(curvature)
    head = LorentzDistanceLogits(3, 5, m, tau=0.7, init_std=1.0).double()
    with torch.no_grad():
        head.bias.copy_(torch.randn(5, dtype=torch.float64))
    space = torch.randn(4, 3, dtype=torch.float64) * 2
    k = 1.0 / curvature
    x = torch.cat([torch.sqrt(k + (space**2).sum(-1, keepdim=True)), space], -1)
    ps = head.prototypes.space.detach()
    p = torch.cat([torch.sqrt(k + (ps**2).sum(-1, keepdim=True)), ps], -1)
    # d(x, p) = sqrt(k) arccosh(-<x, p>_L / k), written out, and geoopt's own distance
    inner = -x[:, None, 0] * p[None, :, 0] + (x[:, None, 1:] * p[None, :, 1:]).sum(-1)
    tau = float(head.tau)  # 0.7 in float32, a buffer saved with the state dict
    assert tau == pytest.approx(0.7) and "tau" in head.state_dict()
    expected = -math.sqrt(k) * torch.acosh(-inner / k) / tau + head.bias.detach()
    reference = -geoopt.Lorentz(k=k).dist(x[:, None, :], p[None, :, :]) / tau + head.bias.detach()
    got = head(x)
    assert torch.allclose(got, expected, atol=1e-10) and torch.allclose(got, reference, atol=1e-8)
    # a point at a prototype: distance 0 (the clamp keeps arccosh finite), gradients finite
    at = p[2:3].clone().requires_grad_(True)
    out = head(at)
    assert float(out[0, 2].detach()) == pytest.approx(float(head.bias[2].detach()), abs=1e-3)
    out.sum().backward()
    assert torch.isfinite(at.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_distance_logits_and_gradients_are_those_of_the_inline_form(dtype) -> None:
    """The logits now come from geometry (``manifold.gram_distances``): the same numbers, to the bit, as the
    formula the layer had written inline, and the same gradients, the learnable curvature's included."""
    from biostrata.nn.lorentz import LorentzDistanceLogits

    torch.manual_seed(0)
    m = Lorentz(0.7, learnable=True)
    head = LorentzDistanceLogits(3, 5, m, tau=0.7, init_std=1.0).to(dtype)
    with torch.no_grad():
        head.bias.copy_(torch.randn(5))
    x = m.lift(torch.randn(2, 4, 3, dtype=dtype), dim=-1)

    def before(head, x):  # the forward of earlier releases
        k = head.manifold.kk
        p = head.manifold.lift(head.prototypes.space, dim=-1)
        inner = x[..., 1:] @ p[:, 1:].T - x[..., :1] * p[:, 0]
        ratio = (-inner / k).clamp_min(1 + 1e-7)
        return -torch.sqrt(k) * torch.acosh(ratio) / head.tau + head.bias

    got, ref = head(x), before(head, x)
    assert got.dtype == dtype and torch.equal(got, ref)
    params = [m.k, *head.parameters()]
    grads = [torch.autograd.grad(out.square().sum(), params, retain_graph=True) for out in (got, ref)]
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


@pytest.mark.parametrize("curvature", [0.5, 2.0])
def test_tangent_embedding_reads_log_map_freezes_rows_and_writes_tangents(curvature: float) -> None:
    from biostrata.nn.lorentz import LorentzTangentEmbedding

    torch.manual_seed(0)
    m = Lorentz(curvature)
    table = LorentzTangentEmbedding(6, 3, m, padding_idx=0, init_std=2.0).double()
    k = float(m.k)
    idx = torch.tensor([[0, 1, 2], [5, 5, 3]])
    x = table.points(idx)
    assert torch.allclose(-(x[..., 0] ** 2) + (x[..., 1:] ** 2).sum(-1), torch.full((2, 3), -k, dtype=torch.float64))
    # log_o(x) = sqrt(k) arccosh(x_0 / sqrt(k)) x_s / |x_s|, written out; the padding row is the origin
    xs = x[..., 1:].detach()
    expected = math.sqrt(k) * torch.acosh(x[..., :1].detach() / math.sqrt(k)) * xs / xs.norm(dim=-1, keepdim=True)
    expected[0, 0] = 0.0
    assert torch.allclose(table(idx), expected, atol=1e-12) and torch.equal(table(idx)[0, 0], torch.zeros(3).double())
    assert torch.allclose(table.weight[idx], table(idx)) and table.points().shape == (6, 4)
    table.frozen[[2, 5]] = True
    table(idx).sum().backward()
    grad = table.space.grad
    assert grad[[0, 2, 5]].abs().sum() == 0 and grad[1].abs().sum() > 0 and grad[3].abs().sum() > 0
    # rows written as tangent vectors read back as those vectors
    v = torch.tensor([[0.3, -2.0, 1.0], [4.0, 0.0, 0.5]], dtype=torch.float64)
    table.write_rows_(torch.tensor([1, 4]), v)
    assert torch.allclose(table(torch.tensor([1, 4])), v, atol=1e-12)
    small = LorentzTangentEmbedding(3, 2, Lorentz(curvature))
    with pytest.raises(InputError, match=r"vectors: a row lies at radius .* too far out for a torch.float32"):
        small.write_rows_(torch.tensor([0]), torch.tensor([[200.0, 0.0]]))


def test_distance_head_starts_near_the_origin_and_clips() -> None:
    from biostrata.nn.lorentz import HEAD_MAX_RADIUS, LorentzDistanceHead

    torch.manual_seed(0)
    m = Lorentz(2.0)
    head = LorentzDistanceHead(64, 500, m)
    h = torch.nn.functional.layer_norm(torch.randn(4000, 64) * 3 + 1, (64,))  # what the last LayerNorm gives
    with torch.no_grad():
        y = head.points(h)
    sk = math.sqrt(float(m.k))
    radius = torch.acosh(y[:, 0].double() / sk)
    assert 0.3 < float(radius.mean()) < 0.7  # init_radius 0.5 (in units of sqrt(k))
    p = head.logits.prototypes.space.detach()
    assert 0.7 < float(torch.asinh(p.norm(dim=-1) / sk).mean()) < 1.0  # asinh(1) ~ 0.88
    logits = head(h)
    assert logits.shape == (4000, 500) and float(logits.detach().std()) < 1.0  # loss starts near log V
    with torch.no_grad():
        head.linear.weight.mul_(1e3)
        far = torch.acosh(head.points(h)[:, 0].double() / sk)
    assert float(far.max()) == pytest.approx(HEAD_MAX_RADIUS, abs=1e-3) and torch.isfinite(head(h)).all()


def _capped_expmap(man, x, u, cap):
    """exp_x(u) = cosh(theta) x + sqrt(k) sinh(theta) u / |u|_L with theta = min(|u|_L / sqrt(k), cap): the
    exponential map of the reference's fork of geoopt (EXP_MAX_NORM = cap), written from the formula."""
    n = man.inner(u, u, keepdim=True).clamp_min(1e-30).sqrt()
    theta = (n / man.k.sqrt()).clamp_max(cap)
    return torch.cosh(theta) * x + man.k.sqrt() * torch.sinh(theta) * u / n


@pytest.mark.parametrize("gamma", [0.5, 1.0, 1.5, 2.5, 4.0])
@pytest.mark.parametrize("k", [1.0, 0.25])
def test_batch_norm_radius_clip_equals_the_capped_formula_float64(gamma, k):
    """Train mode with gamma up to 4, against the reference's formulas with its exponential map capped:
    at 10 (REFERENCE_RADIUS_CLIP, the default) and at 5 (the stricter option). Rescaled radii reach
    past 5 from gamma 2.5 on and past 10 at gamma 4, so both caps act and the two settings differ."""
    import geoopt

    torch.manual_seed(7)
    shape = (6, 4, 40)
    s = torch.randn(*shape, dtype=torch.float64) * torch.tensor(
        [0.02, 0.05, 0.1, 0.2, 0.5, 3.0], dtype=torch.float64
    ).view(-1, 1, 1)
    kt = torch.tensor(k, dtype=torch.float64)
    x = lift(s, kt)
    man = geoopt.Lorentz(k=kt)
    beta = lift(torch.randn(shape[1], dtype=torch.float64) * 0.5, kt, dim=0)
    pts = x.permute(0, 2, 1)
    mu = _centroid64(_centroid64(pts, man), man)
    v = man.transp0back(mu, man.logmap(mu, pts))
    radius = v.norm(dim=-1) / (v.norm(dim=-1).mean() * kt.sqrt())  # r / gamma: |u|_L / sqrt(k) at gamma 1
    outs = {}
    for cap in (MAX_RADIUS - MAX_CENTRE_RADIUS, REFERENCE_RADIUS_CLIP):
        bn = LorentzBatchNorm1d(shape[1], Lorentz(1 / k), warm_start=False, max_radius=cap).double()
        with torch.no_grad():
            bn.gamma.fill_(gamma)
            bn.beta.copy_(beta)
        u = man.transp0(beta, v * (gamma / (v.norm(dim=-1).mean() + 1e-5)))
        ref = _capped_expmap(man, beta, u, cap).permute(0, 2, 1)
        outs[cap] = bn(x)
        assert torch.allclose(outs[cap], ref, atol=1e-9, rtol=1e-10)
        clipped, seen = bn.clip_counts("train")
        assert seen == shape[0] * shape[2] and clipped == int((gamma * radius > cap).sum())
    assert (gamma * radius.max() > 5) == (not torch.allclose(outs[5.0], outs[10.0]))
    if gamma == 4.0:
        assert (gamma * radius > REFERENCE_RADIUS_CLIP).any()


def test_batch_norm_default_is_the_reference_cap():
    """The default clip is the reference's; with a centre far out, outputs stay finite, within the clip
    plus beta's radius clip (15) of the origin, and gradients too."""
    m = Lorentz(1.0)
    bn = LorentzBatchNorm1d(4, m)
    assert bn.max_radius == REFERENCE_RADIUS_CLIP
    with torch.no_grad():
        bn.beta.copy_(lift(torch.tensor([1e6, 0.0, 0.0, 0.0]), torch.tensor(1.0), dim=0))
    s = torch.zeros(8, 4, 50)
    s[0, :, 0] = 0.3  # one outlier in a collapsed batch: its rescaled radius hits the clip
    out = bn.space(s)
    radius = torch.asinh(out.norm(dim=1))
    assert torch.isfinite(out).all() and radius.max() <= REFERENCE_RADIUS_CLIP + MAX_CENTRE_RADIUS + 1e-3
    assert radius.max() > MAX_RADIUS  # further out than the stricter clip allows
    out.square().mean().backward()
    assert torch.isfinite(bn.beta.grad).all() and torch.isfinite(bn.gamma.grad)
    with pytest.raises(InputError, match=r"^max_radius=0: must be > 0"):
        LorentzBatchNorm1d(3, Lorentz(1.0), max_radius=0)


@pytest.mark.parametrize("k", [1.0, 0.5])
def test_curvature_gradient_differs_from_the_reference_by_the_centre_time_term_float64(k):
    """biostrata keeps a batch norm's centre beta on the manifold as k moves (beta_0 = sqrt(k + |beta_s|^2)
    is recomputed); the reference stores beta_0. Outputs agree; the gradient of k differs by exactly
    dL/d(beta_0) / (2 beta_0), the chain-rule term of the recomputed time coordinate."""
    import geoopt

    torch.manual_seed(3)
    shape = (5, 4, 12)
    s = torch.randn(*shape, dtype=torch.float64) * 0.7
    beta_s = torch.randn(shape[1], dtype=torch.float64) * 0.4
    w = torch.randn(*shape, dtype=torch.float64)
    gamma = 1.3

    # the reference: k a leaf, beta_0 a stored number (a leaf of its own)
    man = geoopt.Lorentz(k=torch.tensor(k, dtype=torch.float64), learnable=True)
    k_ref = man.k  # a leaf: geoopt's maps read the manifold's k
    beta0_ref = torch.sqrt(k + beta_s.square().sum()).clone().requires_grad_()
    pts = lift(s, k_ref).permute(0, 2, 1)
    mu = _centroid64(_centroid64(pts, man), man)
    v = man.transp0back(mu, man.logmap(mu, pts))
    beta = torch.cat([beta0_ref.view(1), beta_s])
    u = man.transp0(beta, v * (gamma / (v.norm(dim=-1).mean() + 1e-5)))
    ref = man.expmap(beta, u).permute(0, 2, 1)
    loss_ref = (ref[:, 1:] * w).sum()
    d_k_ref, d_beta0 = torch.autograd.grad(loss_ref, [k_ref, beta0_ref])

    # biostrata: the manifold's k is the parameter, beta_0 follows it
    m = Lorentz(1 / k, learnable=True).double()
    bn = LorentzBatchNorm1d(shape[1], m, warm_start=False).double()
    with torch.no_grad():
        bn.gamma.fill_(gamma)
        bn.beta.copy_(lift(beta_s, torch.tensor(k, dtype=torch.float64), dim=0))
    out = bn.space(s)
    assert torch.allclose(out, ref[:, 1:].detach(), atol=1e-10)
    (d_k,) = torch.autograd.grad((out * w).sum(), [m.k])
    term = d_beta0 / (2 * beta0_ref.detach())
    assert float(d_k) == pytest.approx(float(d_k_ref + term), rel=1e-8, abs=1e-10)
    assert abs(float(term)) > 1e-3 * abs(float(d_k_ref))  # the difference is real, not rounding
