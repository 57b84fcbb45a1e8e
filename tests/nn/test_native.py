"""biostrata.nn.native: the switch, the fallback when the kernels cannot be built, loading them again in one
process, and ``passes_for``'s choice between the native and the torch passes."""

import os
import warnings

import pytest
import torch
import torch.utils.cpp_extension

from biostrata.errors import ParameterError
from biostrata.geometry.lorentz import Lorentz
from biostrata.nn import native
from biostrata.nn.lorentz import LorentzBatchNorm1d
from biostrata.nn.passes import NativePasses, TorchPasses, passes_for


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
        assert passes_for(torch.zeros(1, 1, 1)) is TorchPasses
        with pytest.raises(ParameterError, match="not built") as refused:
            passes_for(torch.zeros(1, 1, 1), native_kernels=True)
    assert refused.value.param == "native_kernels"


@pytest.mark.native_kernels
def test_loading_the_kernels_again_in_one_process_gives_the_same_operators(fresh):
    """A second load of the library already loaded (cache cleared) registers nothing twice."""
    first = fresh()
    assert first is not None
    native.kernels.cache_clear()
    again = native.kernels()
    assert again is first is torch.ops.biostrata
    squares, means = again.stats(torch.ones(2, 3, 4))
    assert torch.equal(squares, torch.full((2, 1, 4), 3.0)) and torch.equal(means, torch.ones(2, 3))


@pytest.mark.native_kernels
@pytest.mark.parametrize(
    "dtype, native_kernels, expected",
    [
        (torch.float32, None, NativePasses),
        (torch.float64, None, NativePasses),
        (torch.float32, True, NativePasses),
        (torch.float32, False, TorchPasses),
        (torch.float16, None, TorchPasses),  # the kernels take float32 and float64 only
        (torch.bfloat16, None, TorchPasses),
    ],
)
def test_passes_for_picks_the_native_passes_where_they_take_the_input(dtype, native_kernels, expected):
    assert passes_for(torch.zeros(2, 3, 4, dtype=dtype), native_kernels) is expected


@pytest.mark.native_kernels
def test_passes_for_refuses_native_kernels_true_for_an_input_they_do_not_take():
    with pytest.raises(ParameterError, match="got torch.float16 on cpu") as refused:
        passes_for(torch.zeros(2, 3, 4, dtype=torch.float16), native_kernels=True)
    assert refused.value.param == "native_kernels"


def test_passes_for_refuses_native_kernels_true_without_kernels(switched_off):
    with pytest.raises(ParameterError, match="native_kernels=True.*not built") as refused:
        passes_for(torch.zeros(2, 3, 4), native_kernels=True)
    assert refused.value.param == "native_kernels"
    assert passes_for(torch.zeros(2, 3, 4)) is TorchPasses  # None: torch's, without a word


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
