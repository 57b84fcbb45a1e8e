"""The two implementations of the batch norm's full-size passes (nn.passes) against each other: the C++
kernels (NativePasses) give the torch operations' results (TorchPasses) for every pass, at odd shapes and the
model's, from non-contiguous inputs, at any thread count, and refuse bad input with a message."""

import re

import pytest
import torch

from biostrata.nn.passes import NativePasses, TorchPasses

pytestmark = pytest.mark.native_kernels

#: (B, C, L): one position, a length that is not a multiple of the kernels' vector width (8), one sequence,
#: one channel, and the model's size (batch 100, 31 space channels, length 300)
SHAPES = {"L=1": (4, 5, 1), "L=13": (3, 6, 13), "B=1": (1, 7, 13), "C=1": (3, 1, 13), "model": (100, 31, 300)}
#: tolerance relative to the largest value of the torch passes' result
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


def _case(pass_name: str, g: bool = False, vectors: str = ""):
    """The call of one pass, as fused.py makes it, as fn(passes, inputs, center): ``center`` forms the centred
    input (x, shift) from (s, mu), each implementation's own by default."""
    if pass_name == "stats":
        return lambda P, d, center: P.stats(d["s"])
    if pass_name == "sums":
        return lambda P, d, center: P.sums(d["g"], d["rg"], *center(d["s"], d["mu"]), d["rx"])
    k = int(vectors[0])

    def pick(d):  # expanded: the forward's mb.expand(B, -1, -1), one (k, C) matrix for every sequence
        return d["w"].expand(d["s"].shape[0], -1, -1) if vectors.endswith("expanded") else d["vectors"][:, :k]

    return lambda P, d, center: P.combine(
        d["g"] if g else None, d["p"] if g else None, *center(d["s"], d["mu"]), d["q"], pick(d), d["rows"][:, :k]
    )


CASES = {
    "stats": _case("stats"),
    "sums": _case("sums"),
    **{
        f"combine{' with g' if g else ''}, {vectors}": _case("combine", g, vectors)
        for g in (False, True)
        for vectors in ("2 vectors expanded", "2 vectors", "3 vectors")
    },
}


@pytest.fixture
def threads():
    """Restores torch's thread count after the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _inputs(shape, dtype=torch.float64, seed=0) -> dict[str, torch.Tensor]:
    """Every tensor a pass takes, for activations of ``shape`` (B, C, L)."""
    B, C, L = shape
    gen = torch.Generator().manual_seed(seed)

    def randn(*size, scale=1.0, offset=0.0):
        return (torch.randn(*size, generator=gen, dtype=torch.float64) * scale + offset).to(dtype)

    return {
        "s": randn(B, C, L, scale=0.8, offset=0.3),
        "mu": randn(C, scale=0.5),
        "g": randn(B, C, L),
        "w": randn(2, C),
        "rg": randn(B, 3, L),
        "rx": randn(B, 3, L),
        "p": randn(B, 1, L),
        "q": randn(B, 1, L, offset=1.0),
        "vectors": randn(B, 3, C),
        "rows": randn(B, 3, L),
    }


def _non_contiguous(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same values in non-contiguous views: full-size tensors transposed, copied and transposed back
    (position l no longer fastest), or slices of a wider tensor; vectors as columns of a matrix."""

    def transposed(t):
        return t.transpose(0, -1).contiguous().transpose(0, -1)

    def sliced(t):  # every other element of a tensor twice as long in its last dimension
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]

    out = {name: (transposed if name in ("s", "g", "w", "q") else sliced)(t) for name, t in d.items()}
    assert not any(t.is_contiguous() for t in out.values() if t.numel() > 1)
    return out


def _as_list(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _assert_close(actual, expected, dtype) -> None:
    """Every result within TOLERANCE[dtype] of the largest value of the expected one, of the same shape."""
    actual, expected = _as_list(actual), _as_list(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype == dtype
        error, scale = float((a - e).abs().max()), float(e.abs().max())
        assert error <= TOLERANCE[dtype] * scale, (error, scale)


def _assert_identical(actual, expected) -> None:
    actual, expected = _as_list(actual), _as_list(expected)
    assert len(actual) == len(expected) and all(torch.equal(a, e) for a, e in zip(actual, expected))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("case", CASES.keys())
def test_native_passes_equal_torch_passes(case, shape, dtype):
    """Native on (s, shift=mu), centring on the fly; torch on x = s - mu, shift None."""
    d = _inputs(shape, dtype)
    fn = CASES[case]
    _assert_close(fn(NativePasses, d, NativePasses.center), fn(TorchPasses, d, TorchPasses.center), dtype)


@pytest.mark.parametrize("case", [c for c in CASES if c != "stats"])
def test_native_passes_take_an_input_centred_already(case):
    """shift None: the kernels take x as it is, as torch's passes do."""
    d = _inputs(SHAPES["L=13"])
    fn = CASES[case]
    _assert_close(fn(NativePasses, d, TorchPasses.center), fn(TorchPasses, d, TorchPasses.center), torch.float64)


def test_the_model_shape_stats_are_the_squared_norms_and_means():
    """Known values, not only agreement: s = 2 everywhere gives sum_c s^2 = 4 C and means 2."""
    s = torch.full((100, 31, 300), 2.0)
    squares, means = NativePasses.stats(s)
    assert torch.equal(squares, torch.full((100, 1, 300), 4.0 * 31)) and torch.equal(means, torch.full((100, 31), 2.0))


@pytest.mark.parametrize("case", CASES.keys())
def test_non_contiguous_inputs_give_the_results_of_contiguous_ones(case):
    d = _inputs(SHAPES["L=13"], torch.float32)
    views = _non_contiguous(d)
    fn = CASES[case]
    expected = fn(NativePasses, d, NativePasses.center)
    _assert_identical(fn(NativePasses, views, NativePasses.center), expected)
    _assert_close(fn(TorchPasses, views, TorchPasses.center), expected, torch.float32)


@pytest.mark.parametrize("case", CASES.keys())
def test_native_results_do_not_depend_on_the_thread_count(case, threads):
    d = _inputs(SHAPES["model"], torch.float32)
    fn = CASES[case]
    results = []
    for n in (1, 2):
        torch.set_num_threads(n)
        results.append(fn(NativePasses, d, NativePasses.center))
    _assert_identical(*results)


def _bad_calls():
    B, C, L = 2, 3, 5
    s, rows3, q = torch.randn(B, C, L), torch.randn(B, 3, L), torch.randn(B, 1, L)
    w, vectors, rows = torch.randn(2, C), torch.randn(B, 2, C), torch.randn(B, 2, L)
    six = torch.ones(6)
    calls = {
        "stats of a 2-D tensor": (lambda: NativePasses.stats(s[0]), "s must be (B, C, L)"),
        "stats of float16": (lambda: NativePasses.stats(s.half()), "s must be float32 or float64"),
        "stats of integers": (lambda: NativePasses.stats(s.long()), "s must be float32 or float64"),
        "centre with W (3, C)": (
            lambda: NativePasses.centre(s, None, torch.randn(3, C), None, six),
            "W must be (2, C)",
        ),
        "centre with t (B, 1, L + 1)": (
            lambda: NativePasses.centre(s, None, w, torch.randn(B, 1, L + 1), six),
            "t must be (B, 1, L)",
        ),
        "centre with 5 scalars": (lambda: NativePasses.centre(s, None, w, None, six[:5]), "expected 6 scalars"),
        "centre with shift of C + 1": (
            lambda: NativePasses.centre(s, torch.randn(C + 1), w, None, six),
            "shift must be",
        ),
        "centre with W of float64": (lambda: NativePasses.centre(s, None, w.double(), None, six), "W must be Float"),
        "rescale with P (B, 8, L)": (
            lambda: NativePasses.rescale(s, None, w, torch.randn(B, 8, L), torch.ones(3)),
            "P must be (B, 9, L)",
        ),
        "sums with rows (B, 2, L)": (lambda: NativePasses.sums(s, rows, s, None, rows), "rows must be (B, 3, L)"),
        "sums with g of another shape": (lambda: NativePasses.sums(s[:1], rows3, s, None, rows3), "g must have"),
        "combine with 4 vectors": (
            lambda: NativePasses.combine(None, None, s, None, q, torch.randn(B, 4, C), torch.randn(B, 4, L)),
            "V must be (B, 2 or 3, C)",
        ),
        "combine with vectors (B, C)": (
            lambda: NativePasses.combine(None, None, s, None, q, torch.randn(B, C), rows),
            "V must be (B, 2 or 3, C)",
        ),
        "combine with 3 rows for 2 vectors": (
            lambda: NativePasses.combine(None, None, s, None, q, vectors, rows3),
            "R must be (B, V, L)",
        ),
        "combine with q (B, 1, L + 1)": (
            lambda: NativePasses.combine(None, None, s, None, torch.randn(B, 1, L + 1), vectors, rows),
            "q must be (B, 1, L)",
        ),
        "combine with g and no p": (
            lambda: NativePasses.combine(s, None, s, None, q, vectors, rows),
            "p must be given with g",
        ),
        "combine with p (B, 1, L + 1)": (
            lambda: NativePasses.combine(s, torch.randn(B, 1, L + 1), s, None, q, vectors, rows),
            "p (B, 1, L)",
        ),
    }
    return [pytest.param(fn, message, id=name) for name, (fn, message) in calls.items()]


@pytest.mark.parametrize("call, message", _bad_calls())
def test_bad_input_is_refused_with_a_message(call, message):
    with pytest.raises(RuntimeError, match=re.escape(message)):
        call()
