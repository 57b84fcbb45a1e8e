"""biostrata.nn.native: the switch, the fallback when the kernels cannot be built, loading them again in one
process, ``chosen``'s choice between the kernels and torch operations, and the operators themselves: their
results against the torch path's at odd shapes, at any thread count, from non-contiguous inputs, and their
messages for bad input. (tests/nn/test_fused.py holds both paths to the autograd one and to gradcheck.)"""

import math
import os
import re
import warnings

import pytest
import torch
import torch.utils.cpp_extension

from biostrata.errors import ParameterError
from biostrata.geometry.lorentz import Lorentz
from biostrata.nn import native
from biostrata.nn.fused import boost_rescale, conv_time_term
from biostrata.nn.lorentz import LorentzBatchNorm1d, LorentzConv1d


@pytest.fixture
def fresh():
    """``native.kernels`` with its cache cleared before the test and again after it, so that the next caller
    loads the real kernels (what the test made of them, None say, is not kept)."""
    native.kernels.cache_clear()
    yield native.kernels
    native.kernels.cache_clear()


@pytest.fixture
def switched_off(monkeypatch, fresh):
    monkeypatch.setenv(native.SWITCH, "0")
    return fresh


def _no_build(*args, **kwargs):
    raise AssertionError(f"torch.utils.cpp_extension.load was called with {native.SWITCH}=0")


def test_switched_off_there_are_no_kernels_and_no_build(switched_off, monkeypatch):
    monkeypatch.setattr(torch.utils.cpp_extension, "load", _no_build)
    assert switched_off() is None
    assert not native.usable(torch.zeros(1, 1, 1))


def test_a_failed_build_warns_and_gives_no_kernels(fresh, monkeypatch):
    def load(*args, **kwargs):
        raise OSError("no compiler")

    monkeypatch.delenv(native.SWITCH, raising=False)
    monkeypatch.setattr(torch.utils.cpp_extension, "load", load)
    with pytest.warns(RuntimeWarning) as warned:
        assert fresh() is None
    message = str(warned[0].message)
    assert "boost.cpp" in message and "no compiler" in message and f"{native.SWITCH}=0" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: the failure is kept, and later calls say nothing
        assert not native.chosen(torch.zeros(1, 1, 1))
        with pytest.raises(ParameterError, match="not built") as refused:
            native.chosen(torch.zeros(1, 1, 1), native_kernels=True)
    assert refused.value.param == "native_kernels"


@pytest.mark.native_kernels
def test_loading_the_kernels_again_in_one_process_gives_the_same_operators(fresh):
    """A second load of the library already loaded (cache cleared) registers nothing twice."""
    first = fresh()
    assert first is not None
    native.kernels.cache_clear()
    again = native.kernels()
    assert again is first is torch.ops.biostrata
    t, means = again.stats(torch.ones(2, 3, 4), torch.tensor(1.0))
    assert torch.equal(t, torch.full((2, 1, 4), 2.0))  # sqrt(k + |s|^2) = sqrt(1 + 3)
    assert torch.equal(means, torch.tensor([[1.0, 1.0, 1.0, 2.0]] * 2, dtype=torch.float64))  # of s, then of t


@pytest.mark.native_kernels
@pytest.mark.parametrize(
    "dtype, native_kernels, expected",
    [
        (torch.float32, None, True),
        (torch.float64, None, True),
        (torch.float32, True, True),
        (torch.float32, False, False),
        (torch.float16, None, False),  # the kernels take float32 and float64 only
        (torch.bfloat16, None, False),
    ],
)
def test_chosen_picks_the_kernels_where_they_take_the_input(dtype, native_kernels, expected):
    assert native.chosen(torch.zeros(2, 3, 4, dtype=dtype), native_kernels) is expected


@pytest.mark.native_kernels
def test_chosen_refuses_native_kernels_true_for_an_input_they_do_not_take():
    with pytest.raises(ParameterError, match="got torch.float16 on cpu") as refused:
        native.chosen(torch.zeros(2, 3, 4, dtype=torch.float16), native_kernels=True)
    assert refused.value.param == "native_kernels"


def test_chosen_refuses_native_kernels_true_without_kernels(switched_off):
    with pytest.raises(ParameterError, match="native_kernels=True.*not built") as refused:
        native.chosen(torch.zeros(2, 3, 4), native_kernels=True)
    assert refused.value.param == "native_kernels"
    assert not native.chosen(torch.zeros(2, 3, 4))  # None: torch's, without a word


@pytest.mark.native_kernels
def test_the_layer_gives_the_same_output_and_gradient_with_native_and_torch_passes():
    """Train mode, float32, batch 8 of length 40: the batch's centroid and spread, then the map."""
    s0 = torch.randn(8, 31, 40, generator=torch.Generator().manual_seed(0)) * 0.7 + 0.2
    results = []
    for native_kernels in (False, True):
        bn = LorentzBatchNorm1d(31, Lorentz(1.0), native_kernels=native_kernels).train()
        s = s0.clone().requires_grad_()
        out = bn.space(s)
        (out * torch.cos(s0)).sum().backward()
        results.append((out.detach(), s.grad, bn.running_mean.clone()))
    for torch_passes, native_passes in zip(*results):
        scale = float(torch_passes.abs().max())
        assert scale > 0 and float((native_passes - torch_passes).abs().max()) <= 1e-5 * scale


def test_a_machine_without_a_compiler_trains_on_torch_operations_after_one_warning(tmp_path):
    """A real failed build, in a fresh process: the compiler named by CXX does not exist and the extension
    folder is empty, so torch's builder fails. The warning says so once, names the compiler's complaint, and
    a training step of a batch norm still runs (on the torch passes)."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from biostrata.geometry.lorentz import Lorentz\n"
        "from biostrata.nn.lorentz import LorentzBatchNorm1d\n"
        "bn = LorentzBatchNorm1d(7, Lorentz(1.0))\n"
        "for _ in range(2):\n"
        "    s = torch.randn(4, 7, 9, requires_grad=True)\n"
        "    bn.space(s).sum().backward()\n"
        "print('finite', bool(torch.isfinite(s.grad).all()))\n"
    )
    env = dict(os.environ, CXX=str(tmp_path / "no-such-g++"), TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    env.pop(native.SWITCH, None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["finite", "True"]
    warned = [line for line in done.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(warned) == 1, done.stderr
    assert "could not be built" in warned[0] and "no-such-g++" in warned[0] and native.SWITCH in warned[0]
    assert " -o " not in warned[0]  # the complaint, not the build command


@pytest.mark.native_kernels
@pytest.mark.parametrize("shape", [(1, 5, 1), (2, 3, 1), (1, 31, 17), (3, 2, 9)], ids=str)
@pytest.mark.parametrize("training", [True, False])
def test_the_layer_at_odd_shapes_in_float64_equals_the_torch_passes(shape, training):
    """One position, one sequence, lengths off the vector width: the native kernels' tails and edges give the
    torch passes' output and gradients (of the input, beta, gamma and the curvature) to float64 rounding. In
    train mode a batch of one point is its own centroid, at the floor of |y|^2, where the gradient of s is
    rounding noise of ~1e-11 in both paths: hence the absolute floor of 1e-9."""
    results = []
    for native_kernels in (True, False):
        torch.manual_seed(0)
        m = Lorentz(1.3, learnable=True).double()
        bn = LorentzBatchNorm1d(shape[1], m, native_kernels=native_kernels).double()
        with torch.no_grad():
            bn.beta.copy_(m.lift(torch.linspace(-0.3, 0.4, shape[1], dtype=torch.float64), dim=0))
            bn.running_mean[1:] = torch.linspace(0.2, -0.1, shape[1])
        bn.train(training)
        s = (torch.randn(*shape, dtype=torch.float64) * 0.7 + 0.2).requires_grad_()
        out = bn.space(s)
        (out * torch.cos(s.detach())).sum().backward()
        results.append([out.detach(), s.grad, bn.beta.grad, bn.gamma.grad, m.k.grad])
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-9), (a - b).abs().max()


def test_a_lock_left_by_a_killed_build_is_removed_and_a_live_one_waited_for(tmp_path, monkeypatch):
    """torch's builder waits without end while a build's lock file exists: an old lock (a killed build) is
    removed with a warning; a fresh one (a build under way) is waited for until it goes."""
    import threading
    import time

    import torch.utils.cpp_extension as ext

    monkeypatch.setattr(ext, "_get_build_directory", lambda name, verbose: str(tmp_path / name))
    lock = tmp_path / "b" / "lock"
    lock.parent.mkdir()
    lock.touch()
    old = time.time() - native.STALE_LOCK_S - 60
    os.utime(lock, (old, old))
    with pytest.warns(UserWarning, match="by a build that did not finish; removed"):
        native._clear_stale_lock("b")
    assert not lock.exists()
    lock.touch()  # a live build, which finishes half a second later
    threading.Timer(0.5, lock.unlink).start()
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        native._clear_stale_lock("b")
    assert not lock.exists() and time.monotonic() - start >= 0.4


def _run(s0, g, training, native_kernels=True, dtype=torch.float32):
    """boost_rescale forwards and backwards: [out, spread, mu, clipped, and the gradients of s, beta, gamma, k
    (and in eval mode of mu and the spread)]."""
    m = Lorentz(1 / 0.8, learnable=True).to(dtype)
    s = s0.detach().to(dtype).requires_grad_()
    n = s.shape[1]
    beta = torch.linspace(-0.4, 0.3, n, dtype=dtype).requires_grad_()
    gamma = torch.tensor(1.4, dtype=dtype, requires_grad=True)
    mu = None if training else torch.linspace(0.5, -0.2, n, dtype=dtype).requires_grad_()
    spread = None if training else torch.tensor(1.1, dtype=dtype, requires_grad=True)
    out, *rest = boost_rescale(s, mu, beta, m, gamma, spread, 1e-5, 3.0, native_kernels=native_kernels)
    out.backward(g.to(dtype))
    grads = [s.grad, beta.grad, gamma.grad, m.k.grad] + ([] if training else [mu.grad, spread.grad])
    return [out.detach(), *rest, *grads]


#: the model's size (batch 100, 31 space channels, length 300) and shapes off the vector width (8)
MODEL, ODD = (100, 31, 300), (3, 6, 13)


def _data(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.8 + 0.3
    return s, torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.native_kernels
@pytest.mark.parametrize("training", [True, False])
def test_results_do_not_depend_on_the_thread_count(training):
    s, g = _data(MODEL)
    results = []
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(_run(s, g, training))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.native_kernels
@pytest.mark.parametrize("training", [True, False])
def test_non_contiguous_inputs_give_the_results_of_contiguous_ones(training):
    """s and the output's gradient as transposed copies (position l no longer fastest) and as slices."""
    s, g = _data(ODD)

    def transposed(t):
        return t.transpose(0, -1).contiguous().transpose(0, -1)

    def sliced(t):
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]

    expected = _run(s, g, training)
    for view in (transposed, sliced):
        assert not view(s).is_contiguous()
        assert all(torch.equal(a, b) for a, b in zip(_run(view(s), view(g), training), expected))


@pytest.mark.native_kernels
@pytest.mark.parametrize("shape", [MODEL, ODD], ids=["model", "odd"])
@pytest.mark.parametrize("training", [True, False])
def test_the_operators_are_as_accurate_as_the_torch_path_in_float32(shape, training):
    """Every output and gradient in float32 within 1e-5 (relative to its largest value) of the float64 result,
    or no further from it than twice the torch path's float32 result is: the gradient of k, a sum of terms
    that cancel, is 1e-5 off in both at the odd shape."""
    s, g = _data(shape)
    exact = _run(s, g, training, native_kernels=False, dtype=torch.float64)
    torch_path = _run(s, g, training, native_kernels=False)
    for a, b, x in zip(_run(s, g, training), torch_path, exact):
        assert a.shape == b.shape and a.dtype == b.dtype
        error, torch_error = (float((v.double() - x).abs().max()) for v in (a, b))
        assert error <= max(1e-5 * float(x.abs().max()), 2 * torch_error), (error, torch_error)


@pytest.mark.native_kernels
def test_stats_of_a_constant_are_its_time_coordinates_and_means():
    """s = 2 everywhere, k = 0.5: t = sqrt(0.5 + 4 C) at every position, means 2 and t."""
    C = 31
    t, m = native.kernels().stats(torch.full((100, C, 300), 2.0), torch.tensor(0.5))
    expected = math.sqrt(0.5 + 4 * C)
    assert torch.allclose(t, torch.full((100, 1, 300), expected))
    assert torch.allclose(m[:, :C], torch.full((100, C), 2.0, dtype=torch.float64))
    assert torch.allclose(m[:, C], torch.full((100,), expected, dtype=torch.float64), rtol=1e-6)


def _bad_calls():
    ops = native.kernels
    B, C, L = 2, 3, 5
    s, k, beta = torch.randn(B, C, L), torch.tensor(1.0), torch.randn(C)
    t, m = torch.ones(B, 1, L), torch.ones(B, C + 1, dtype=torch.float64)

    def forward():
        P, W, W64, sc, cd = ops().centre(s, m, t, None, beta, k)
        return P, W, sc

    calls = {
        "stats of a 2-D tensor": (lambda: ops().stats(s[0], k), "s must be (B, C, L)"),
        "stats of float16": (lambda: ops().stats(s.half(), k), "s must be float32 or float64"),
        "stats of integers": (lambda: ops().stats(s.long(), k), "s must be float32 or float64"),
        "stats with two curvatures": (lambda: ops().stats(s, torch.ones(2)), "k must be a single value"),
        "centre with neither m nor mu": (lambda: ops().centre(s, None, None, None, beta, k), "give either m"),
        "centre with m and no t": (lambda: ops().centre(s, m, None, None, beta, k), "give t with m"),
        "centre with beta of C + 1": (lambda: ops().centre(s, m, t, None, torch.randn(C + 1), k), "beta must be (C,)"),
        "centre with mu of C + 1": (
            lambda: ops().centre(s, None, None, torch.randn(C + 1), beta, k),
            "mu must be (C,)",
        ),
        "centre with t (B, 1, L + 1)": (
            lambda: ops().centre(s, m, torch.ones(B, 1, L + 1), None, beta, k),
            "t must be (B, 1, L)",
        ),
        "centre with t of float64": (lambda: ops().centre(s, m, t.double(), None, beta, k), "t must be Float"),
        "centre with means of float32": (
            lambda: ops().centre(s, m.float(), t, None, beta, k),
            "m must be a contiguous float64",
        ),
        "rescale with P (B, 8, L)": (
            lambda: ops().rescale(s, forward()[1], torch.ones(B, 8, L), forward()[2], k, None, 1e-5, 5.0),
            "P must be (B, 9, L)",
        ),
        "rescale with 3 scalars": (
            lambda: ops().rescale(
                s, forward()[1], forward()[0], torch.ones(3, dtype=torch.float64), k, None, 1e-5, 5.0
            ),
            "sc must be a contiguous float64 tensor of",
        ),
        "grad_sums with G of another shape": (
            lambda: ops().grad_sums(s[:1], s, forward()[1], torch.ones(B, 6, L), torch.ones(B, 4, L)),
            "G must have the shape of s",
        ),
        "grad_sums with R (B, 3, L)": (
            lambda: ops().grad_sums(s, s, forward()[1], torch.ones(B, 6, L), torch.ones(B, 3, L)),
            "R must be (B, 4, L)",
        ),
    }
    return [pytest.param(fn, message, id=name) for name, (fn, message) in calls.items()]


@pytest.mark.native_kernels
@pytest.mark.parametrize("call, message", _bad_calls())
def test_bad_input_is_refused_with_a_message(call, message):
    with pytest.raises(RuntimeError, match=re.escape(message)):
        call()


#: (kernel size, padding, length): the model's (9, 4), no padding (a shorter output), a 1-wide kernel, a
#: sequence shorter than the kernel
CONV_SHAPES = [(9, 4, 13), (3, 0, 7), (1, 0, 5), (5, 2, 3)]


def _time_term(s0, y0, w0, g, kernel_size, padding, native_kernels=True, dtype=torch.float64):
    """conv_time_term forwards and backwards: [out, and the gradients of s, w, y and k]."""
    m = Lorentz(1 / 0.7, learnable=True).to(dtype)
    s, w, y = (x.detach().to(dtype).requires_grad_() for x in (s0, w0, y0))
    out = conv_time_term(y * 1.0, w, s, m, kernel_size, padding, native_kernels=native_kernels)
    out.backward(g.to(dtype))
    return [out.detach(), s.grad, w.grad, y.grad, m.k.grad]


def _conv_data(kernel_size, padding, length, batch=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out_length = length + 2 * padding - kernel_size + 1

    def randn(*size):
        return torch.randn(*size, generator=gen, dtype=torch.float64)

    return randn(batch, 5, length), randn(batch, 4, out_length), randn(4, 1), randn(batch, 4, out_length)


@pytest.mark.native_kernels
@pytest.mark.parametrize("kernel_size, padding, length", CONV_SHAPES, ids=str)
def test_the_time_term_equals_the_torch_path_in_float64(kernel_size, padding, length):
    data = _conv_data(kernel_size, padding, length)
    expected = _time_term(*data, kernel_size, padding, native_kernels=False)
    for a, b in zip(_time_term(*data, kernel_size, padding), expected):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), (a - b).abs().max()


@pytest.mark.native_kernels
def test_the_time_term_gradcheck_float64():
    m = Lorentz(1 / 0.7, learnable=True).double()
    s, y, w, _ = (x.requires_grad_() for x in _conv_data(3, 1, 8, batch=2))
    fn = lambda y, w, s, k: conv_time_term(y * 1.0, w, s, m, 3, 1, native_kernels=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (y, w, s, m.k))


@pytest.mark.native_kernels
def test_the_time_term_does_not_depend_on_the_thread_count_or_the_layout():
    """The model's size (batch 100, 31 channels, length 300, kernel 9) in float32: 1 and 2 threads, and s as a
    transposed copy, give the same bits."""
    gen = torch.Generator().manual_seed(0)
    s, y, g = (torch.randn(100, 31, 300, generator=gen) for _ in range(3))
    w = torch.randn(31, 1, generator=gen)
    results = []
    before = torch.get_num_threads()
    try:
        for n, view in ((1, s), (2, s), (2, s.transpose(0, 2).contiguous().transpose(0, 2))):
            torch.set_num_threads(n)
            results.append(_time_term(view, y, w, g, 9, 4, dtype=torch.float32))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(results[0], results[1]))
    assert all(torch.equal(a, b) for a, b in zip(results[0], results[2]))


@pytest.mark.native_kernels
@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(((2, 4, 6), (4,), (2, 3, 5), 3, 1), "y must be (B, O, L + 2 P - K + 1)", id="y too long"),
        pytest.param(((2, 4, 5), (3,), (2, 3, 5), 3, 1), "w must hold one weight per output channel", id="w"),
        pytest.param(((2, 4, 5), (4,), (2, 3, 5), 0, 1), "kernel_size must be >= 1", id="kernel size 0"),
        pytest.param(((2, 4, 5), (4,), (3, 5), 3, 1), "s and y must be (B, C, L)", id="s 2-D"),
    ],
)
def test_the_time_term_refuses_bad_input_with_a_message(args, message):
    y, w, s, kernel_size, padding = args
    with pytest.raises(RuntimeError, match=re.escape(message)):
        native.kernels().time_term(
            torch.zeros(y), torch.zeros(w), torch.zeros(s), torch.tensor(1.0), kernel_size, padding
        )


@pytest.mark.native_kernels
def test_a_bfloat16_input_takes_the_time_term_kernels_on_its_float32_copy():
    """Under bf16 autocast the hyperbolic maths runs in float32 (nn.fused._apply): the kernels are chosen for
    that copy, so native_kernels=True is not refused for a bf16 input, and the result is the torch path's."""
    m = Lorentz(1.0)
    s0 = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0)).bfloat16()
    results = []
    for native_kernels in (True, False):
        torch.manual_seed(0)  # the same weights for both
        conv = LorentzConv1d(3, 4, 3, m, padding=1, native_kernels=native_kernels)
        s = s0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv.space(s)
        y.sum().backward()
        results.append((y.detach(), s.grad))
    assert results[0][0].dtype == torch.float32 and results[0][1].dtype == torch.bfloat16
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    assert torch.allclose(results[0][1].float(), results[1][1].float(), rtol=1e-2, atol=1e-2)
