import itertools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from biostrata.errors import InputError
from biostrata.geometry.delta import (
    check_distance_matrix,
    delta_distribution,
    delta_exact,
    delta_fixed_base,
    delta_sampled,
    maxmin_closure,
    pair_reduce,
    triangle_slack,
)


# -- references ----------------------------------------------------------------------------------
def four_point(d: np.ndarray) -> float:
    """Brute force: max over all quadruples of half the gap between the two largest pair sums."""
    n = len(d)
    if n < 4:
        return 0.0
    a, b, c, e = np.array(list(itertools.combinations(range(n), 4))).T
    s = np.sort(np.stack([d[a, b] + d[c, e], d[a, c] + d[b, e], d[a, e] + d[b, c]]), axis=0)
    return float(((s[2] - s[1]) / 2).max())


def plain_delta_p(d: np.ndarray, p: int) -> float:
    """Gromov-product definition at base p with the n^3 array materialized."""
    g = (d[p][:, None] + d[p][None, :] - d) / 2
    return float((np.minimum(g[:, :, None], g[None, :, :]).max(1) - g).max())


def closure(w: np.ndarray) -> np.ndarray:
    """Shortest-path metric of a complete graph with symmetric weights w (every metric is one)."""
    d = np.minimum(w, w.T).astype(np.float64)
    np.fill_diagonal(d, 0)
    for k in range(len(d)):
        d = np.minimum(d, d[:, k : k + 1] + d[k : k + 1, :])
    return d


def euclid(x: np.ndarray) -> np.ndarray:
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


def tree_metric(n: int, rng: np.random.Generator, integer: bool = False) -> np.ndarray:
    parent = [0] + [int(rng.integers(0, i)) for i in range(1, n)]
    w = rng.integers(1, 10, n).astype(float) if integer else rng.uniform(0.01, 3.0, n)
    d = np.zeros((n, n))
    for i in range(1, n):
        d[i, :i] = d[parent[i], :i] + w[i]
        d[:i, i] = d[i, :i]
    return d


def random_metric(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "euclidean":
        return euclid(rng.normal(size=(n, int(rng.integers(1, 6)))))
    if kind == "uniform":  # every d in [1, 2] is a metric
        d = np.triu(rng.uniform(1, 2, (n, n)), 1)
        return d + d.T
    if kind == "closure":
        return closure(rng.exponential(size=(n, n)))
    if kind == "graph":  # integer shortest paths: the exactly coded int16 path
        return closure(rng.integers(1, 6, (n, n)).astype(float))
    if kind == "clustered":
        centres = 4 * rng.normal(size=(3, 8))
        return euclid(centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 8)))
    raise KeyError(kind)


KINDS = ["euclidean", "uniform", "closure", "graph", "clustered"]


# -- exact ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_exact_equals_four_point_brute_force(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    for n in (4, 5, 9, 17, 40):
        d = random_metric(kind, n, rng)
        want = four_point(d)
        for threads in (1, 2):
            got = delta_exact(d, threads=threads)
            assert got.delta == pytest.approx(want, abs=1e-9)
        assert got.method == "exact" and got.n == n and got.diameter == pytest.approx(d.max())
        assert got.relative_delta == pytest.approx(2 * want / d.max(), abs=1e-9)


def test_witness_attains_delta():
    d = random_metric("euclidean", 30, np.random.default_rng(3))
    res = delta_exact(d)
    w, z, x, y = res.witness
    assert len({w, z, x, y}) == 4
    sums = sorted([d[x, y] + d[z, w], d[x, z] + d[y, w], d[x, w] + d[y, z]])
    assert (sums[2] - sums[1]) / 2 == pytest.approx(res.delta, abs=1e-12)
    assert d[x, y] + d[z, w] == pytest.approx(sums[2])


def test_exact_is_zero_on_trees():
    rng = np.random.default_rng(4)
    for n in (5, 20, 60):
        for integer in (False, True):
            d = tree_metric(n, rng, integer)
            res = delta_exact(d)
            assert 0 <= res.delta <= 1e-9 and res.relative_delta <= 1e-9
            assert delta_fixed_base(d, n - 1).delta <= 1e-9


def test_exact_on_nearly_trees():
    """A tree plus one shortcut: ties everywhere but a few quadruples (the closure-bound path)."""
    rng = np.random.default_rng(6)
    for n in (40, 45):
        w = np.full((n, n), np.inf)
        for i in range(1, n):
            j = int(rng.integers(0, i))
            w[i, j] = w[j, i] = rng.uniform(0.5, 2.0)
        w[0, n - 1] = w[n - 1, 0] = 0.7
        d = closure(w)
        assert delta_exact(d).delta == pytest.approx(four_point(d), abs=1e-9)


def test_permutation_and_scaling():
    rng = np.random.default_rng(5)
    d = random_metric("closure", 35, rng)
    base = delta_exact(d).delta
    perm = rng.permutation(35)
    assert delta_exact(d[np.ix_(perm, perm)]).delta == pytest.approx(base, rel=1e-12)
    for c in (1e-3, 7.5, 1e4):
        scaled = delta_exact(c * d)
        assert scaled.delta == pytest.approx(c * base, rel=1e-12)
        assert scaled.relative_delta == pytest.approx(delta_exact(d).relative_delta, rel=1e-12)


def test_known_values():
    # four points of a square with side 1 and diagonals sqrt 2: (2 sqrt 2 - 2) / 2
    square = euclid(np.array([[0.0, 0], [1, 0], [1, 1], [0, 1]]))
    assert delta_exact(square).delta == pytest.approx(math.sqrt(2) - 1)
    # the 4-cycle graph: sums 2+2, 1+1, 1+1 -> delta 1
    c4 = np.array([[0, 1, 2, 1], [1, 0, 1, 2], [2, 1, 0, 1], [1, 2, 1, 0]], dtype=float)
    res = delta_exact(c4)
    assert res.delta == 1.0 and res.relative_delta == 1.0
    # fewer than four points, or all at one place: 0
    assert delta_exact(euclid(np.eye(3))).delta == 0.0
    same = delta_exact(np.zeros((6, 6)))
    assert same.delta == 0.0 and same.relative_delta == 0.0 and same.witness is None


@settings(max_examples=60, deadline=None)
@given(st.integers(4, 9).flatmap(lambda n: st.lists(st.floats(0.05, 10.0), min_size=n * n, max_size=n * n)))
def test_property_arbitrary_small_metrics(weights):
    n = math.isqrt(len(weights))
    d = closure(np.array(weights).reshape(n, n))
    want = four_point(d)
    assert delta_exact(d).delta == pytest.approx(want, abs=1e-9)
    fixed = [delta_fixed_base(d, p).delta for p in range(n)]
    assert max(fixed) == pytest.approx(want, abs=1e-9)  # exact = max over base points
    assert all(want / 2 - 1e-9 <= f <= want + 1e-9 for f in fixed)  # Gromov: delta/2 <= delta_p <= delta
    assert delta_fixed_base(d, list(range(n))).delta == pytest.approx(want, abs=1e-9)
    perm = np.random.default_rng(n).permutation(n)
    assert delta_exact(d[np.ix_(perm, perm)]).delta == pytest.approx(want, abs=1e-9)
    assert delta_exact(3.0 * d).delta == pytest.approx(3.0 * want, abs=1e-8)


# -- fixed base ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_fixed_base_equals_materialized_definition(kind):
    d = random_metric(kind, 45, np.random.default_rng(10 + KINDS.index(kind)))
    for p in (0, 7, 44):
        res = delta_fixed_base(d, p)
        assert res.delta == pytest.approx(plain_delta_p(d, p), abs=1e-12)
        assert res.method == "fixed" and res.base_points == (p,)
    several = delta_fixed_base(d, [3, 9, 20])
    assert several.delta == pytest.approx(max(plain_delta_p(d, p) for p in (3, 9, 20)), abs=1e-12)


def test_fixed_base_threads_agree():
    d = random_metric("euclidean", 150, np.random.default_rng(11))
    one = delta_fixed_base(d, 5, threads=1)
    two = delta_fixed_base(d, 5, threads=2)
    assert one.delta == two.delta == pytest.approx(plain_delta_p(d, 5), abs=1e-12)


def test_threads_setting_is_restored():
    before = torch.get_num_threads()
    delta_exact(random_metric("uniform", 12, np.random.default_rng(0)), threads=2)
    assert torch.get_num_threads() == before


# -- sampled -------------------------------------------------------------------------------------
def test_sampled_all_points_all_bases_is_exact():
    d = random_metric("closure", 25, np.random.default_rng(12))
    res = delta_sampled(d, samples=100, bases=100, repeats=3)
    assert res.delta == pytest.approx(four_point(d), abs=1e-9)
    assert res.delta_std == pytest.approx(0.0, abs=1e-12) and res.samples == 25 and res.repeats == 3


def test_sampled_mean_sd_seed_and_distance_function():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(200, 3))
    d = euclid(x)
    a = delta_sampled(d, samples=40, bases=2, repeats=6, seed=1)
    b = delta_sampled(d, samples=40, bases=2, repeats=6, seed=1)
    c = delta_sampled(lambda idx: euclid(x[idx]), n=200, samples=40, bases=2, repeats=6, seed=1)
    assert a == b.__class__(**{**b.__dict__, "seconds": a.seconds})
    assert c.delta == pytest.approx(a.delta) and c.delta_std == pytest.approx(a.delta_std)
    assert a.delta_std > 0 and a.relative_delta_std > 0 and a.method == "sampled"
    # one repeat by hand: the same subsets and base points
    gen = np.random.default_rng(1)
    vals = []
    for _ in range(6):
        idx = np.sort(gen.choice(200, size=40, replace=False))
        sub = d[np.ix_(idx, idx)]
        vals.append(max(plain_delta_p(sub, int(p)) for p in gen.choice(40, size=2, replace=False)))
    assert a.delta == pytest.approx(np.mean(vals), abs=1e-12)
    assert a.delta_std == pytest.approx(np.std(vals, ddof=1), abs=1e-12)
    assert delta_sampled(d, samples=40, repeats=1).delta_std is None
    with pytest.raises(InputError, match="pass n"):
        delta_sampled(lambda idx: euclid(x[idx]), samples=10)
    with pytest.raises(InputError, match=r"^repeats=0: give a whole number, 1 or more"):
        delta_sampled(d, repeats=0)


# -- distribution --------------------------------------------------------------------------------
def test_distribution_matches_brute_force_histogram():
    d = random_metric("euclidean", 30, np.random.default_rng(14))
    bases = [0, 4, 17]
    bins = 20
    h = delta_distribution(d, bins=bins, bases=bases)
    ref = []
    for p in bases:
        keep = np.arange(30) != p
        g = ((d[p][:, None] + d[p][None, :] - d) / 2)[np.ix_(keep, keep)]
        v = np.minimum(g[:, :, None], g[None, :, :]).max(1) - g
        ref.append(2 * v[np.triu_indices(29, 1)] / d.max())
    ref = np.concatenate(ref)
    want = np.bincount(np.clip((ref * bins).astype(int), 0, bins - 1), minlength=bins)
    assert h.counts.sum() == want.sum() == 3 * 29 * 28 // 2
    near_edge = (np.abs(ref * bins - np.round(ref * bins)) < 1e-2).sum()
    assert np.abs(h.counts - want).sum() <= 2 * near_edge
    assert h.mean == pytest.approx(ref.mean(), abs=1e-4)
    assert h.base_points == tuple(bases) and len(h.edges) == bins + 1
    out = h.to_dict()
    assert out["triples"] == want.sum() and out["base_points"] == 3


def test_distribution_of_all_bases_and_random_bases():
    d = tree_metric(12, np.random.default_rng(15))
    h = delta_distribution(d, bins=4)
    assert h.counts.sum() == 12 * 11 * 10 // 2 and h.counts[0] == h.counts.sum()  # a tree: all 0
    r = delta_distribution(d, bins=4, bases=5, seed=3)
    assert len(r.base_points) == 5 and r.base_points == delta_distribution(d, bins=4, bases=5, seed=3).base_points


# -- the kernel ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int16])
@pytest.mark.parametrize("blocks", [{}, {"block_rows": 1024, "budget": 2**26}, {"block_rows": 7, "budget": 50}])
def test_pair_reduce_matches_naive(dtype, blocks):
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(70, 33, generator=g) * 1000).to(dtype)
    iu = torch.triu_indices(70, 70)
    want = torch.minimum(a[:, None, :], a[None, :, :]).amax(-1)
    got = pair_reduce(a, "maxmin", **blocks)
    assert torch.equal(got[iu[0], iu[1]], want[iu[0], iu[1]])
    if dtype.is_floating_point:
        want = (a[:, None, :] + a[None, :, :]).amin(-1)
        with ThreadPoolExecutor(2) as pool:
            got = pair_reduce(a, "minplus", pool, **blocks)
        assert torch.equal(got[iu[0], iu[1]], want[iu[0], iu[1]])


@pytest.mark.parametrize("ties", [False, True])
def test_maxmin_closure_is_the_bottleneck_of_all_paths(ties):
    rng = np.random.default_rng(20)
    x = rng.random((45, 45)) - 0.5
    g = np.round(4 * x) if ties else x
    g = (g + g.T) / 2
    want = g.copy()
    np.fill_diagonal(want, -np.inf)
    for _ in range(7):  # paths of up to 2^7 edges
        want = np.maximum(want, np.minimum(want[:, :, None], want[None, :, :]).max(1))
    got = maxmin_closure(torch.as_tensor(g)).numpy()
    off = ~np.eye(45, dtype=bool)
    assert np.array_equal(got[off], want[off]) and np.isin(got[off], g).all() and np.isinf(np.diag(got)).all()
    # on a tree's Gromov products the closure adds nothing: M* = G
    d = tree_metric(30, rng)
    gp = (d[0][:, None] + d[0][None, :] - d) / 2
    assert np.allclose(maxmin_closure(torch.as_tensor(gp)).numpy()[off[:30, :30]], gp[off[:30, :30]], atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA GPU here")
def test_gpu_agrees_with_cpu():
    d = random_metric("clustered", 120, np.random.default_rng(16))
    assert delta_exact(d, device="cuda").delta == pytest.approx(delta_exact(d, device="cpu").delta, abs=1e-12)
    assert delta_fixed_base(d, 3, device="cuda").delta == pytest.approx(plain_delta_p(d, 3), abs=1e-12)


# -- input checks --------------------------------------------------------------------------------
def test_bad_matrices_name_the_entry():
    good = random_metric("uniform", 6, np.random.default_rng(17))
    cases = {
        "entry \\(2, 3\\) is nan": (2, 3, np.nan),
        "entry \\(1, 4\\) is -0.5; distances must be >= 0": (1, 4, -0.5),
        "diagonal entry \\(5, 5\\) is 0.25": (5, 5, 0.25),
        "not symmetric: entry \\(0, 2\\)": (0, 2, 9.0),
        "entry \\(3, 1\\) is inf": (3, 1, np.inf),
    }
    for msg, (i, j, v) in cases.items():
        bad = good.copy()
        bad[i, j] = v
        with pytest.raises(InputError, match=msg):
            delta_exact(bad)
    with pytest.raises(InputError, match="square"):
        delta_exact(np.ones((3, 4)))
    with pytest.raises(InputError, match="square"):
        check_distance_matrix(np.ones(5))
    tiny = good.copy()
    tiny[0, 1] += 1e-12  # within tolerance: symmetrized
    assert torch.equal(check_distance_matrix(tiny), check_distance_matrix(tiny).T)


def test_triangle_inequality_is_checked_by_exact():
    d = np.array([[0, 1, 5, 1], [1, 0, 1, 1], [5, 1, 0, 1], [1, 1, 1, 0]], dtype=float)
    with pytest.raises(InputError, match=r"not a metric: d\(0, 2\) = 5 > d\(0, 1\) \+ d\(1, 2\) = 2"):
        delta_exact(d)
    assert 0.0 <= triangle_slack(torch.as_tensor(random_metric("closure", 10, np.random.default_rng(0)))) < 1e-12


def test_bad_arguments():
    d = random_metric("uniform", 6, np.random.default_rng(18))
    with pytest.raises(InputError, match="base point 6 is not an index"):
        delta_fixed_base(d, 6)
    with pytest.raises(InputError, match="at least one base point"):
        delta_fixed_base(d, [])
    with pytest.raises(InputError, match=r"^threads=0: give a whole number, 1 or more"):
        delta_exact(d, threads=0)
    with pytest.raises(InputError, match=r"^bins=0: give a whole number, 1 or more"):
        delta_distribution(d, bins=0)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            delta_exact(d, device="cuda")


def test_result_to_dict_is_json_ready():
    import json

    res = delta_exact(random_metric("euclidean", 10, np.random.default_rng(19)))
    out = json.loads(json.dumps(res.to_dict()))
    for key in ("delta", "relative_delta", "diameter", "method", "n"):
        assert key in out
    assert out["witness"] == list(res.witness)
