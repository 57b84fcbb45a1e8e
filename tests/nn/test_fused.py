import pytest
import torch

from biostrata.geometry.lorentz import Lorentz, lift
from biostrata.models import build_model
from biostrata.nn.fused import boost_rescale
from biostrata.nn.lorentz import LorentzBatchNorm1d, LorentzConv1d

#: the fused paths' full-size passes in torch operations and in biostrata's C++ kernels (nn.native)
PASSES = [pytest.param(False, id="torch-passes"), pytest.param(True, id="native", marks=pytest.mark.native_kernels)]
# the same checks on the GPU where there is one (benchmarks/device_check.sh selects them with -k cuda)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


def _inputs(dtype, seed=0, shape=(3, 4, 5)):
    """s, mu_s, beta_s, gamma and a learnable manifold of k = 0.7, all of ``dtype``: gradcheck perturbs
    ``manifold.k`` in place, so the kernels see each perturbed value through the manifold."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.randn(*shape, generator=g, dtype=dtype) * 0.8 + 0.3).requires_grad_()
    mu_s = (torch.randn(shape[1], generator=g, dtype=dtype) * 0.5).requires_grad_()
    beta_s = (torch.randn(shape[1], generator=g, dtype=dtype) * 0.7).requires_grad_()
    manifold = Lorentz(1 / 0.7, learnable=True).to(dtype)
    gamma = torch.tensor(1.3, dtype=dtype, requires_grad=True)
    return s, mu_s, beta_s, manifold, gamma


@pytest.mark.parametrize("native", PASSES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_hand_written_backward_passes_gradcheck_float64(mode, native):
    """Train: mu is the batch's nested centroid and the spread the batch's; eval: both given."""
    s, mu_s, beta_s, m, gamma = _inputs(torch.float64)
    spread = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)

    def fn(s, beta_s, k, gamma, *given):
        mu, spread = given if given else (None, None)
        return boost_rescale(s, mu, beta_s, m, gamma, spread, 1e-5, 5.0, native_kernels=native)[0]

    args = (s, beta_s, m.k, gamma) + ((mu_s, spread) if mode == "eval" else ())
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("native", PASSES)
def test_clipped_radius_gradcheck_float64(native):
    """With gamma large, r hits the clip for some positions: the clamp's zero gradient is kept."""
    s, mu_s, beta_s, m, gamma = _inputs(torch.float64, seed=1)
    gamma = torch.tensor(40.0, dtype=torch.float64, requires_grad=True)

    def fn(s, beta_s, k, gamma):
        return boost_rescale(s, None, beta_s, m, gamma, None, 1e-5, 2.0, native_kernels=native)[0]

    assert torch.autograd.gradcheck(fn, (s, beta_s, m.k, gamma), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("device", [pytest.param("cpu-native", marks=pytest.mark.native_kernels), *DEVICES])
@pytest.mark.parametrize("training", [True, False])
def test_fused_equals_autograd_in_float32_layer(training, device):
    """The whole layer, output and every gradient, at the model's size (batch 100, 31 channels); on the CPU
    with the passes in torch operations and in the C++ kernels."""
    torch.manual_seed(0)
    native, device = device.endswith("-native"), device.removesuffix("-native")
    m = Lorentz(0.8, learnable=True)  # on the CPU until the layers that share it are built, then moved with them
    layers = [LorentzBatchNorm1d(31, m, fused=True, native_kernels=native), LorentzBatchNorm1d(31, m, fused=False)]
    with torch.no_grad():
        for bn in layers:
            bn.to(device)
            bn.beta.copy_(lift(torch.linspace(-0.5, 0.5, 31, device=device), m.kk, dim=0))
            bn.gamma.fill_(1.4)
            bn.running_mean[1:] = torch.linspace(0.2, -0.3, 31)
            bn.running_var.fill_(1.7)
    s0 = (torch.randn(100, 31, 300) * torch.linspace(0.2, 3, 100).view(-1, 1, 1) + 0.5).to(device)
    grads = []
    for bn in layers:
        bn.train(training)
        s = s0.clone().requires_grad_()
        out = bn.space(s)
        (out * torch.cos(s0)).sum().backward()  # a loss whose gradient varies by position
        grads.append((out.detach(), s.grad, bn.beta.grad, bn.gamma.grad, m.k.grad.clone()))
        m.k.grad = None
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max())), (a - b).abs().max()
    if training:
        assert torch.allclose(layers[0].running_mean, layers[1].running_mean, atol=1e-6)
        assert torch.allclose(layers[0].running_var, layers[1].running_var, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bf16", [False, True])
def test_fused_model_trains_like_the_autograd_one(bf16, device):
    """Ten Riemannian Adam steps of hcnn-s with fused and with autograd batch norms stay together, in float32
    and under bf16 autocast (bf16 convolutions, the hyperbolic maths in float32: the two paths round the
    same bf16 inputs, and their float32 outputs, rounded to bf16 for the next convolution, may differ by an
    ulp of bf16 now and then)."""
    from biostrata.config import TrainConfig
    from biostrata.data.dna.alphabet import one_hot
    from biostrata.train.module import parameter_groups
    from biostrata.train.optim import RiemannianAdam

    losses = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = build_model("hcnn-s", 40, 2, channels=8, hidden=16).to(device)
        for mod in model.modules():
            if isinstance(mod, LorentzBatchNorm1d):
                mod.fused = fused
        opt = RiemannianAdam(parameter_groups(model, TrainConfig(lr=1e-3)), stabilize=1)
        g = torch.Generator().manual_seed(1)
        x, y = one_hot(torch.randint(0, 4, (32, 40), generator=g)), torch.randint(0, 2, (32,), generator=g)
        x, y = x.to(device), y.to(device)
        run = []
        for _ in range(10):
            opt.zero_grad()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    assert all(torch.isfinite(torch.tensor(run)).all() for run in losses)
    assert losses[0] == pytest.approx(losses[1], rel=1e-2 if bf16 else 1e-4)


def test_conv_time_term_gradcheck_and_equals_autograd():
    from biostrata.nn.fused import add_time_term

    g = torch.Generator().manual_seed(3)
    y, w, t = (
        torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        for shape in ((3, 4, 6), (4, 1), (3, 1, 6))
    )
    # the in-place add needs a non-leaf y, as a convolution's output is
    assert torch.autograd.gradcheck(lambda y, w, t: add_time_term(y * 1.0, w, t), (y, w, t))
    m = Lorentz(0.6, learnable=True)
    conv = LorentzConv1d(31, 31, 9, m, padding=4)
    s0 = torch.randn(20, 31, 100)
    results = []
    for fused in (True, False):
        conv.fused = fused
        conv.zero_grad(), setattr(m.k, "grad", None)
        s = s0.clone().requires_grad_()
        out = conv.space(s)
        (out * torch.sin(s0)).sum().backward()
        results.append((out.detach(), s.grad, conv.conv.weight.grad, conv.time_weight.grad, m.k.grad.clone()))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def _place_at(s: torch.Tensor, mu_s: torch.Tensor, offsets: tuple[float, ...]) -> torch.Tensor:
    """A copy of s (B, C, L) whose positions 0, 1, ... of every sequence lie at mu_s + offsets[i] along one
    fixed unit direction."""
    s = s.detach().clone()
    direction = torch.linspace(-1, 1, s.shape[1], dtype=s.dtype)
    for i, offset in enumerate(offsets):
        s[:, :, i] = mu_s.detach() + offset * direction / direction.norm()
    return s


def _at_batch_centroid(s, m, beta_s, gamma, offsets, rounds=6):
    """s with positions placed around the batch's own centroid: placing them moves the centroid a little,
    so place and recompute until it stays (each round shrinks the move by about len(offsets) / L)."""
    for _ in range(rounds):
        with torch.no_grad():
            mu = boost_rescale(s, None, beta_s, m, gamma, None, 1e-5, 10.0, fused=False)[2]
        s = _place_at(s, mu, offsets)
    return s


NEAR = (0.0, 1e-6, 1e-4, 1e-2)  # distances of placed points from the centroid, in space-part units


@pytest.mark.parametrize("native", PASSES)
@pytest.mark.parametrize("training", [True, False])
def test_points_at_and_near_the_centroid_float32(training, native):
    """Positions at mu and 1e-6 to 1e-2 from it: the fused path in float32 equals the autograd path within 1e-5
    (relative to the largest value), outputs and every gradient. Eval mode (mu given): both also within 1e-5
    of float64 on the same inputs. Train mode: mu is computed, and its float32 rounding (~1e-7 |mu|) turns
    the direction of y = x - mu at 1e-4 from it by ~1e-3; only the output is held to float64 there. The C++
    kernels sum |s|^2 and the positional means in another order than torch, so their mu differs from the
    autograd path's by an ulp, and that turn differs too: in train mode their gradient of s is held to be as
    close to float64 as the autograd path's is (within twice its distance), the rest to 1e-5."""
    g = torch.Generator().manual_seed(4)
    s0 = torch.randn(20, 31, 50, generator=g, dtype=torch.float64) * 0.7 + 0.4
    beta0 = torch.linspace(-0.4, 0.3, 31, dtype=torch.float64)
    mu0 = torch.linspace(0.5, -0.2, 31, dtype=torch.float64)
    m64 = Lorentz(1 / 0.8).to(torch.float64)
    gamma0 = torch.tensor(1.4, dtype=torch.float64)
    s0 = _at_batch_centroid(s0, m64, beta0, gamma0, NEAR) if training else _place_at(s0, mu0, NEAR)
    # float64 runs on the float32 inputs, so the comparison measures the arithmetic, not the inputs' rounding
    s0, beta0, mu0, gamma0 = (x.float().double() for x in (s0, beta0, mu0, gamma0))
    weight = torch.cos(s0)  # a loss whose gradient varies by position
    results = {}
    for name, dtype, fused in (("float64", torch.float64, False), ("fused", torch.float32, True),
                               ("autograd", torch.float32, False)):  # fmt: skip
        m = Lorentz(1 / 0.8, learnable=True).to(dtype)
        s, beta, gamma = (x.detach().to(dtype).requires_grad_() for x in (s0, beta0, gamma0))
        mu = None if training else mu0.detach().to(dtype).requires_grad_()
        spread = None if training else torch.tensor(1.1, dtype=dtype)
        out = boost_rescale(s, mu, beta, m, gamma, spread, 1e-5, 10.0, fused, native_kernels=native and fused)[0]
        (out * weight.to(dtype)).sum().backward()
        results[name] = [out.detach(), s.grad, beta.grad, gamma.grad, m.k.grad] + ([] if training else [mu.grad])

    def close(a, b):
        return torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-5 * float(b.abs().max()))

    if training and native:  # s.grad (index 1): as close to float64 as the autograd path
        distance = [(results[n][1].double() - results["float64"][1]).abs().max() for n in ("fused", "autograd")]
        assert distance[0] <= 2 * distance[1], distance
        del results["fused"][1], results["autograd"][1], results["float64"][1]
    assert all(close(a, b) for a, b in zip(results["fused"], results["autograd"]))
    for name in ("fused", "autograd"):
        pairs = zip(results[name], results["float64"])
        assert all(close(a, b) for a, b in (list(pairs)[:1] if training else pairs)), name


@pytest.mark.parametrize("native", PASSES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradcheck_at_and_near_the_centroid_float64(mode, native):
    """gradcheck with positions at the centroid (eval: mu given; f and g are smooth in |y|^2 there) and near
    it (train: |y| itself, in the batch's spread, has no derivative at y = 0, so only near)."""
    s, mu_s, beta_s, m, gamma = _inputs(torch.float64, shape=(3, 4, 8))
    spread = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    if mode == "train":
        s = _at_batch_centroid(s, m, beta_s, gamma, (1e-3, 1e-2)).requires_grad_()
    else:
        s = _place_at(s, mu_s, (0.0, 1e-5, 1e-3)).requires_grad_()

    def fn(s, beta_s, k, gamma, *given):
        mu, spread = given if given else (None, None)
        return boost_rescale(s, mu, beta_s, m, gamma, spread, 1e-5, 5.0, native_kernels=native)[0]

    args = (s, beta_s, m.k, gamma) + ((mu_s, spread) if mode == "eval" else ())
    assert torch.autograd.gradcheck(fn, args, eps=1e-7, atol=1e-6)
