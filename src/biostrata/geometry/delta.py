"""Gromov delta-hyperbolicity of a finite metric space: exact, fixed-base, sampled, distribution.

Conventions. For a base point ``p`` the Gromov product is

    (x|y)_p = (d(x, p) + d(y, p) - d(x, y)) / 2,

and ``delta_p = max_{x,y,z} [min((x|z)_p, (z|y)_p) - (x|y)_p]``; the exact delta is
``delta = max_p delta_p``. For the quadruple ``{x, y, z, w = p}`` the bracket equals
``(d(x,y) + d(z,w) - max(d(x,z) + d(y,w), d(x,w) + d(y,z))) / 2``, so ``delta`` is the four-point
value: the largest, over all quadruples, of half the gap between the largest and the second largest
of the three sums ``d(x,y)+d(z,w)``, ``d(x,z)+d(y,w)``, ``d(x,w)+d(y,z)``. Trees have ``delta = 0``;
one base point gives ``delta / 2 <= delta_p <= delta`` (Gromov), the estimate of Khrulkov et al.
(2020). The relative delta is ``2 delta / diam``, in ``[0, 1]`` (``0`` when ``diam = 0``).

How it is computed, in ``O(n^2)`` memory, never with ``n^3`` values at once. For a base ``p`` and
``G = ((x|y)_p)``, ``delta_p = max_{x<y} [(G (max,min) G)[x, y] - G[x, y]]``: a (max, min) matrix
product (:func:`pair_reduce`, blocks of rows times chunks of ``z``, upper triangle only). It runs
on int16 codes of ``G`` (a monotone map commutes with max and min, so the product of the codes is
the code of the product, to within one code step), and only the pairs the codes cannot rule out are
evaluated in float64, so results are float64-exact. Near-ties everywhere (trees: every pair ties at
0) are cut by a second bound, the max-min closure of ``G`` (:func:`maxmin_closure`), and what
remains is evaluated in float64. The exact delta takes each quadruple once, at its member that
comes first in an order of increasing eccentricity, and skips what cannot beat the best value
found so far: pairs ``{p, z}`` with ``d(p, z) <= 2 best``, products ``(x|z)_p`` outside
``(best, d(p, z) - best)``, pairs ``x, y`` with ``min(max_z (x|z)_p, max_z (y|z)_p) - (x|y)_p <= best``
(the first two need the triangle inequality, which is checked first). The worst case is ``n^4 / 8``
(max, min) steps, for data whose quadruples nearly all come close to ``delta`` (points spread over
hyperbolic space); points in many dimensions, clusters, the plane and trees prune to a small
fraction. CPU work runs on ``threads`` single-threaded workers (robust on shared machines); on a
GPU the blocks are large and run as single kernels.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch

from biostrata.errors import InputError, ParameterError, check_count
from biostrata.threads import cpu_threads

DistanceLike = np.ndarray | torch.Tensor
DeviceLike = str | torch.device | None  # None: CUDA when torch has a GPU, else CPU
_TOL = 1e-7  # tolerance, relative to the largest distance, for symmetry, diagonal and triangle checks


# -- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeltaResult:
    """One delta estimate. ``witness`` is a quadruple ``(w, z, x, y)`` attaining ``delta``, with
    ``d(x,y) + d(z,w)`` the largest of its three sums (``None`` when ``delta`` is 0 by degeneracy).
    For ``sampled``, ``delta`` and ``relative_delta`` are means over repeats (each relative to its
    sample's diameter) with standard deviations, and ``diameter`` is the mean sample diameter."""

    delta: float
    relative_delta: float
    diameter: float
    method: str
    n: int
    seconds: float
    delta_std: float | None = None
    relative_delta_std: float | None = None
    witness: tuple[int, int, int, int] | None = None
    base_points: tuple[int, ...] | None = None
    samples: int | None = None
    repeats: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        out = asdict(self)
        for key in ("witness", "base_points"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out


@dataclass(frozen=True)
class DeltaHistogram:
    """Histogram of ``2 delta_p(x, y) / diam`` over triples ``(p, x, y)`` of distinct points,
    ``x < y``, ``p`` among ``base_points``; ``delta_p(x, y) = max_z min((x|z)_p, (z|y)_p) - (x|y)_p``.
    ``edges`` has ``bins + 1`` entries on ``[0, 1]``; ``mean`` is over all triples."""

    edges: np.ndarray
    counts: np.ndarray
    mean: float
    base_points: tuple[int, ...]
    n: int

    def to_dict(self) -> dict:
        return {
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "mean": self.mean,
            "base_points": len(self.base_points),
            "triples": int(self.counts.sum()),
            "n": self.n,
        }


# -- input checks --------------------------------------------------------------------------------
def check_distance_matrix(d: DistanceLike, *, name: str = "distance matrix") -> torch.Tensor:
    """``d`` as a float64 CPU tensor after checks that name the first bad entry ``(i, j)``.

    Errors: not square, non-finite, negative, asymmetric or a non-zero diagonal beyond
    ``1e-7 * max(d)``. Entries within that tolerance are symmetrized and the diagonal set to 0.
    """
    t = d.detach() if isinstance(d, torch.Tensor) else torch.as_tensor(np.asarray(d))
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] == 0:
        raise InputError(
            f"{name}: expected a non-empty square (n, n) matrix, got shape {tuple(t.shape)}; "
            "for points pass a metric (euclidean, cosine, lorentz, poincare)"
        )
    if t.dtype.is_complex or t.dtype == torch.bool:
        raise InputError(f"{name}: expected real numbers, got dtype {t.dtype}")
    t = t.to("cpu", torch.float64)

    def first(mask: torch.Tensor) -> tuple[int, int] | None:
        hit = torch.nonzero(mask)
        return None if len(hit) == 0 else (int(hit[0, 0]), int(hit[0, 1]))

    if (ij := first(~torch.isfinite(t))) is not None:
        raise InputError(f"{name}: entry ({ij[0]}, {ij[1]}) is {t[ij].item()}; distances must be finite")
    if (ij := first(t < 0)) is not None:
        raise InputError(f"{name}: entry ({ij[0]}, {ij[1]}) is {t[ij].item()}; distances must be >= 0")
    tol = _TOL * max(t.max().item(), 1e-300)
    diag = torch.diagonal(t)
    if (i := first((diag.abs() > tol)[:, None])) is not None:
        raise InputError(f"{name}: diagonal entry ({i[0]}, {i[0]}) is {diag[i[0]].item()}; d(x, x) must be 0")
    if (ij := first((t - t.T).abs() > tol)) is not None:
        i, j = ij
        raise InputError(
            f"{name}: not symmetric: entry ({i}, {j}) is {t[i, j].item()} but ({j}, {i}) is {t[j, i].item()}"
        )
    t = (t + t.T) / 2.0
    t.fill_diagonal_(0.0)
    return t.contiguous()


def resolve_device(device: DeviceLike) -> torch.device:
    """``device``, or CUDA when torch has a GPU and CPU otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ParameterError("device", f"device={device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", f"device={device!r}: this torch has no CUDA GPU; use device='cpu'")
    return dev


@contextmanager
def _workers(threads: int | None, device: torch.device) -> Iterator[Executor | None]:
    """A pool of single-threaded torch workers on CPU (``None``: run inline); nothing on a GPU."""
    if device.type != "cpu":
        yield None
        return
    if threads is not None:
        check_count("threads", threads)
    n = torch.get_num_threads() if threads is None else int(threads)
    with cpu_threads(1):  # the workers run side by side, each on one thread
        if n == 1:
            yield None
        else:
            with ThreadPoolExecutor(n) as pool:
                yield pool


# -- the blocked kernel --------------------------------------------------------------------------
_OPS = {"maxmin": (torch.minimum, torch.amax, torch.maximum), "minplus": (torch.add, torch.amin, torch.minimum)}


def _lowest(dtype: torch.dtype, op: str) -> float | int:
    """The identity of the reduction: -inf (max) or +inf (min), or the integer type's extreme."""
    if dtype.is_floating_point:
        return -math.inf if op == "maxmin" else math.inf
    info = torch.iinfo(dtype)
    return info.min if op == "maxmin" else info.max


def pair_reduce(
    a: torch.Tensor,
    op: str = "maxmin",
    executor: Executor | None = None,
    *,
    block_rows: int | None = None,
    budget: int | None = None,
) -> torch.Tensor:
    """``P[c, d] = max_z min(a[c, z], a[d, z])`` (``op="maxmin"``) or ``min_z (a[c, z] + a[d, z])``
    (``"minplus"``) for ``c <= d``; entries below the diagonal are left unspecified.

    Blocks of ``block_rows`` rows times chunks of ``z`` keep the temporary near ``budget`` values
    (defaults: 64 and 2^20 on CPU, 1024 and 2^26 on a GPU); row blocks are spread over ``executor``
    when given. For ``a = G[:, Z]`` with ``G`` symmetric this is the (max, min) product
    ``(G ⊗ G)[c, d]`` restricted to ``z`` in ``Z``.
    """
    combine, reduce, accumulate = _OPS[op]
    init = _lowest(a.dtype, op)
    k, m = a.shape
    out = torch.full((k, k), init, dtype=a.dtype, device=a.device)
    if k == 0 or m == 0:
        return out
    at = a.T.contiguous()  # (m, k): the column of each z is contiguous
    gpu = a.device.type != "cpu"
    rows = block_rows or (1024 if gpu else 64)
    budget = budget or (2**26 if gpu else 2**20)

    def block(i: int) -> None:
        h, w = min(rows, k - i), k - i
        zc = max(1, min(m, budget // (h * w)))
        tile = torch.full((h, w), init, dtype=a.dtype, device=a.device)
        buf = torch.empty((zc, h, w), dtype=a.dtype, device=a.device)
        red = torch.empty((h, w), dtype=a.dtype, device=a.device)
        for s in range(0, m, zc):
            e = min(m, s + zc)
            t = buf[: e - s]
            combine(at[s:e, i : i + h, None], at[s:e, None, i:], out=t)
            reduce(t, 0, out=red)
            accumulate(tile, red, out=tile)
        out[i : i + h, i:] = tile

    starts = range(0, k, rows)
    if executor is None:
        for i in starts:
            block(i)
    else:
        for f in [executor.submit(block, i) for i in starts]:
            f.result()
    return out


def _strict_upper(k: int, device: torch.device) -> torch.Tensor:
    return torch.ones((k, k), dtype=torch.bool, device=device).triu_(1)


def triangle_slack(d: torch.Tensor, executor: Executor | None = None) -> float:
    """``max(0, max_{x,y,z} d(x, y) - d(x, z) - d(z, y))``; an InputError names a failing triple
    when it exceeds ``1e-7 * max(d)`` (Gromov delta is defined for metric spaces)."""
    n = d.shape[0]
    short = pair_reduce(d, "minplus", executor)
    gap = torch.where(_strict_upper(n, d.device), d - short, torch.zeros((), dtype=d.dtype, device=d.device))
    worst = float(gap.max()) if n > 1 else 0.0
    if worst > _TOL * float(d.max()):
        flat = int(torch.argmax(gap))
        x, y = divmod(flat, n)
        z = int(torch.argmin(d[x] + d[y]))
        raise InputError(
            f"not a metric: d({x}, {y}) = {d[x, y].item():.10g} > d({x}, {z}) + d({z}, {y}) = "
            f"{(d[x, z] + d[z, y]).item():.10g}; Gromov delta needs the triangle inequality "
            "(for cosine similarities use the angular metric, for squared distances take the square root)"
        )
    return max(worst, 0.0)


# -- one base point ------------------------------------------------------------------------------
Index = torch.Tensor | slice


def _pick(x: torch.Tensor, idx: Index, dim: int) -> torch.Tensor:
    return x[(slice(None),) * dim + (idx,)] if isinstance(idx, slice) else x.index_select(dim, idx)


def gromov_products(d: torch.Tensor, base: int, rows: Index, cols: Index | None = None) -> torch.Tensor:
    """``(x|y)_p = (d(x, p) + d(y, p) - d(x, y)) / 2`` for ``x`` in ``rows``, ``y`` in ``cols``
    (``rows`` when omitted); indices are a LongTensor or a slice."""
    cols = rows if cols is None else cols
    dp = d[base]
    out = torch.add(_pick(dp, rows, 0)[:, None], _pick(dp, cols, 0)[None, :])
    return out.sub_(_pick(_pick(d, rows, 0), cols, 1)).mul_(0.5)


_LEVELS = 32766  # int16 codes 1.._LEVELS for finite values, 0 for -inf
_GRID_MAX = (_LEVELS - 1) // 4  # integer distances up to this give half-integer products, coded exactly


def _on_grid(d: torch.Tensor) -> bool:
    """True for integer distances (graphs), whose Gromov products the int16 codes hold exactly."""
    return bool(torch.equal(torch.round(d), d)) and float(d.max()) <= _GRID_MAX


def _quantize(a: torch.Tensor, lo: float, grid: bool) -> tuple[torch.Tensor, float, float, bool]:
    """Monotone int16 codes ``floor((a - lo) / step) + 1`` of ``a >= lo``, ``0`` for ``-inf``;
    returns ``(codes, lo, step, exact)``.

    A non-decreasing map commutes with max and min, so the (max, min) product of the codes is the
    code of the product: ``lo + (code - 1) step <= value < lo + code step`` (up to float64 rounding,
    far below ``step / 100``). With ``grid`` (half-integer values) ``step = 1/2`` codes exactly.
    """
    hi = float(a.max())
    if grid:
        lo = math.floor(2 * lo) / 2
        grid = (hi - lo) * 2 <= _LEVELS - 1
    step = 0.5 if grid else max(hi - lo, 1e-300) / (_LEVELS - 1)
    codes = ((a - lo) / step).floor_().clamp_(-1, _LEVELS - 1).add_(1).to(torch.int16)
    return codes, lo, step, grid


def _eval_pairs(a: torch.Tensor, g: torch.Tensor, pairs: torch.Tensor) -> tuple[float, tuple[int, int]]:
    """The largest ``max_z min(a[x, z], a[y, z]) - g[x, y]`` over the rows ``(x, y)`` of ``pairs``."""
    value, where = -math.inf, (0, 0)
    chunk = max(1, 2**18 // max(a.shape[1], 1))  # gathered rows stay in cache
    for s in range(0, len(pairs), chunk):
        xs, ys = pairs[s : s + chunk, 0], pairs[s : s + chunk, 1]
        vals = torch.minimum(a.index_select(0, xs), a.index_select(0, ys)).amax(1) - g[xs, ys]
        j = int(torch.argmax(vals))
        if float(vals[j]) > value:
            value, where = float(vals[j]), (int(xs[j]), int(ys[j]))
    return value, where


def maxmin_closure(g: torch.Tensor) -> torch.Tensor:
    """``B[x, y]`` = the largest, over paths ``x = v_0, ..., v_L = y`` (``L >= 1``), of the smallest
    ``g[v_i, v_i+1]``, diagonal ``inf``: the merge heights of single linkage on ``-g`` (SciPy).

    Its entries are entries of ``g`` (no rounding), and ``B >= max_z min(g[x, z], g[z, y])``: with
    ``g`` the Gromov products at ``p``, ``B - g`` bounds ``delta_p`` pair by pair, and is 0 on trees.
    """
    from scipy.cluster.hierarchy import cophenet, linkage
    from scipy.spatial.distance import squareform

    w = g.detach().cpu().numpy()
    merges = linkage(squareform(-w, checks=False), method="single")
    heights = -merges[:, 2]  # non-increasing in g: merge order is monotone
    merges[:, 2] = np.arange(len(merges))  # cophenet then returns the merge index of each pair
    out = squareform(heights[cophenet(merges).astype(np.int64)])
    np.fill_diagonal(out, np.inf)
    return torch.from_numpy(out).to(g.device)


def _argmax2(v: torch.Tensor) -> tuple[float, tuple[int, int]]:
    flat = int(torch.argmax(v))
    return float(v.view(-1)[flat]), divmod(flat, v.shape[1])


def _base_delta(
    d: torch.Tensor,
    base: int,
    rows: Index,
    floor: float,
    slack: float | None = None,
    executor: Executor | None = None,
    upper: torch.Tensor | None = None,
    grid: bool = False,
    hints: dict | None = None,
) -> tuple[float, tuple[int, int, int, int]] | None:
    """``max`` over ``x < y`` and ``z`` in ``rows`` of ``min((x|z)_p, (z|y)_p) - (x|y)_p``, exact
    in float64, with its witness ``(p, z, x, y)``; ``None`` when it cannot exceed ``floor >= 0``.

    Only ``(x|z)_p`` with ``floor < (x|z)_p + s/2`` and ``floor < d(p, z) - (x|z)_p + s/2`` can
    take part in a value above ``floor`` (the value is at most ``(x|z)_p - (x|y)_p`` and, seen from
    ``z``, at most ``(x|p)_z - (x|y)_z``; ``s`` = ``slack`` bounds triangle-inequality defects), so
    the others are set to ``-inf`` (not when ``slack`` is ``None``: the metric was not checked).
    Pairs are then screened by ``min(m_x, m_y) - (x|y)_p <= floor`` with
    ``m_x = max_{z != x} (x|z)_p`` (``z`` in ``{x, y}`` gives 0); the rest are evaluated in
    float64 directly when few, else by the int16 blocked product (:func:`_quantize`) on the rows
    and columns still in play, and a float64 confirmation of the pairs it cannot rule out.
    On near-ties everywhere (tree-like data) the pairs are bounded by :func:`maxmin_closure`;
    ``hints["closure"]`` records whether that paid, so that the next base applies it first.
    ``upper``: a strict upper-triangular mask of at least ``len(rows)`` rows; ``grid``: integer
    distances (see :func:`_on_grid`).
    """
    g = full = gromov_products(d, base, rows)
    k = g.shape[0]
    if k < 2:
        return None
    upper = _strict_upper(k, d.device) if upper is None else upper[:k, :k]
    if floor > 0 and slack is not None:
        lo = floor - slack / 2
        half = _pick(d[base], rows, 0) * 0.5
        # outside (lo, d(p, z) - lo) means |(x|z)_p - d(p, z) / 2| >= d(p, z) / 2 - lo;
        # (x|x)_p = d(p, x) is outside, so no point is its own z below
        a = g.masked_fill((g - half).abs_() >= half - lo, -math.inf)
        top = a.amax(1)
    else:
        lo, a = float(g.min()), g
        top = g.clone().fill_diagonal_(-math.inf).amax(1)
    cand = torch.minimum(top[:, None], top[None, :]).sub_(floor) > g
    cand &= upper
    count = int(torch.count_nonzero(cand))
    if count == 0:
        return None
    if hints is not None and hints.get("closure") and 32 * count > k * k:  # tree-like so far
        cand &= maxmin_closure(g).sub_(g) > floor
        left = int(torch.count_nonzero(cand))
        hints["closure"] = 4 * left < count  # keep using it while it prunes
        if left == 0:
            return None
        count = left
    if 32 * count <= k * k:  # few pairs left: evaluate them in float64
        value, where = _eval_pairs(a, g, torch.nonzero(cand))
    else:  # screen the pairs with the int16 product, confirm the near-best in float64
        keep = torch.nonzero(cand.any(1) | cand.any(0)).flatten()
        if len(keep) < k:
            a, g, cand = a[keep], g[keep][:, keep], cand[keep][:, keep]
        cols = torch.nonzero(torch.isfinite(a).any(0)).flatten()
        az = a if len(cols) == a.shape[1] else a[:, cols]
        codes, lo, step, exact = _quantize(az, lo, grid)
        mq = pair_reduce(codes, "maxmin", executor)
        valid = cand & (mq > 0)
        mq = mq.double().mul_(step)
        if exact:  # exact codes: value = lo + (code - 1) / 2 - (x|y)_p
            value, where = _argmax2(mq.add_(lo - step).sub_(g).masked_fill_(~valid, -math.inf))
        else:  # value < hi and value >= hi - 1.02 step
            hi = mq.add_(lo + 0.01 * step).sub_(g).masked_fill_(~valid, -math.inf)
            near = torch.nonzero(hi > max(floor, float(hi.max()) - 1.02 * step))
            if len(near) == 0:
                return None
            if 32 * len(near) > max(len(g) ** 2, 8192):  # near-ties (tree-like data): a finer bound
                star = maxmin_closure(full)
                star = star if len(keep) == k else star[keep][:, keep]
                before = len(near)
                near = near[star[near[:, 0], near[:, 1]] - g[near[:, 0], near[:, 1]] > floor]
                if hints is not None:
                    hints["closure"] = 4 * len(near) < before  # try it first on the next base
                if len(near) == 0:
                    return None
            if 32 * len(near) <= max(len(g) ** 2, 8192):
                value, where = _eval_pairs(az, g, near)
            else:  # still many: every pair in float64
                value, where = _argmax2((pair_reduce(az, "maxmin", executor) - g).masked_fill_(~valid, -math.inf))
        where = (int(keep[where[0]]), int(keep[where[1]])) if len(keep) < k else where
    if value <= floor:
        return None
    x, y = where
    z = int(torch.argmax(torch.minimum(full[x], full[y])))  # the max over all z is the value (> 0)
    ids = torch.arange(d.shape[0], device=d.device)[rows] if isinstance(rows, slice) else rows
    return value, (int(base), int(ids[z]), int(ids[x]), int(ids[y]))


def _result(value: float, witness, diam: float, method: str, n: int, start: float, **extra) -> DeltaResult:
    value = max(value, 0.0)
    return DeltaResult(
        delta=value,
        relative_delta=2.0 * value / diam if diam > 0 else 0.0,
        diameter=diam,
        method=method,
        n=n,
        seconds=round(time.perf_counter() - start, 4),
        witness=witness if value > 0 else None,
        **extra,
    )


def _prepare(distances: DistanceLike, device: DeviceLike) -> tuple[torch.Tensor, float]:
    d = check_distance_matrix(distances).to(resolve_device(device))
    return d, float(d.max())


def _fixed(d: torch.Tensor, bases: Sequence[int], executor: Executor | None) -> tuple[float, tuple | None]:
    n = d.shape[0]
    best, witness = 0.0, None
    upper, grid = _strict_upper(n, d.device), _on_grid(d)
    for p in bases:  # the base itself has (p|y)_p = 0 and adds only values <= 0
        res = _base_delta(d, p, slice(0, n), best, executor=executor, upper=upper, grid=grid)
        if res is not None:
            best, witness = res
    return best, witness


def _check_bases(base: int | Sequence[int], n: int) -> tuple[int, ...]:
    bases = (base,) if isinstance(base, (int, np.integer)) else tuple(base)
    if not bases:
        raise ParameterError("base", "base: give at least one base point")
    for p in bases:
        if not isinstance(p, (int, np.integer)) or not 0 <= p < n:
            raise ParameterError("base", f"base point {p!r} is not an index in [0, {n})")
    return tuple(int(p) for p in bases)


# -- public methods ------------------------------------------------------------------------------
def delta_fixed_base(
    distances: DistanceLike,
    base: int | Sequence[int] = 0,
    *,
    device: DeviceLike = None,
    threads: int | None = None,
) -> DeltaResult:
    """``max_{p in base} delta_p`` for one base point or a set of them (``delta/2 <= . <= delta``)."""
    start = time.perf_counter()
    d, diam = _prepare(distances, device)
    n = d.shape[0]
    bases = _check_bases(base, n)
    with _workers(threads, d.device) as pool:
        value, witness = _fixed(d, bases, pool)
    return _result(value, witness, diam, "fixed", n, start, base_points=bases)


def delta_exact(
    distances: DistanceLike,
    *,
    device: DeviceLike = None,
    threads: int | None = None,
    progress: bool = False,
) -> DeltaResult:
    """The exact delta ``max_p delta_p`` (= the four-point delta over all quadruples), with a
    witness quadruple. ``device``: default CUDA when available; ``threads``: CPU worker threads
    (default ``torch.get_num_threads()``); ``progress``: a tqdm bar over base points. An
    InputError names the first bad entry, or a triple that breaks the triangle inequality."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    d, diam = _prepare(distances, device)
    n = d.shape[0]
    if n < 4 or diam == 0:
        return _result(0.0, None, diam, "exact", n, start)
    with _workers(threads, d.device) as pool:
        slack = triangle_slack(d, pool) + 8 * 2.0**-52 * diam  # plus float64 rounding of the bounds
        ecc = d.amax(1)
        # a first lower bound (>= delta / 2): the base point of largest eccentricity
        best, witness = _fixed(d, [int(torch.argmax(ecc))], pool)
        # each quadruple is taken at its member that comes first in this order, so the base in
        # position i sees only positions > i: a contiguous block of the reordered matrix
        order = torch.argsort(ecc, stable=True)
        dp = d[order][:, order]
        upper, grid = _strict_upper(n, d.device), _on_grid(d)
        lock = threading.Lock()
        state = {"best": best, "witness": witness}
        hints: dict = {}

        def run(i: int) -> None:
            floor = state["best"]
            if not bool((dp[i, i + 1 :] + slack > 2 * floor).any()):
                return  # every pair {p, z} is too short: value <= (d(p, z) + slack) / 2
            res = _base_delta(dp, i, slice(i + 1, n), floor, slack, upper=upper, grid=grid, hints=hints)
            if res is not None:
                with lock:
                    if res[0] > state["best"]:
                        state["best"], state["witness"] = res[0], tuple(int(order[j]) for j in res[1])

        bar = tqdm(total=n - 1, desc="exact delta", unit="base", disable=not progress)
        try:
            if pool is None:
                for i in range(n - 1):
                    run(i)
                    bar.update()
            else:
                futures = [pool.submit(run, i) for i in range(n - 1)]
                for f in futures:
                    f.result()
                    bar.update()
        finally:
            bar.close()
    return _result(state["best"], state["witness"], diam, "exact", n, start)


def delta_sampled(
    distances: DistanceLike | Callable[[np.ndarray], DistanceLike],
    *,
    n: int | None = None,
    samples: int = 1500,
    bases: int = 1,
    repeats: int = 10,
    seed: int = 0,
    device: DeviceLike = None,
    threads: int | None = None,
) -> DeltaResult:
    """Mean and standard deviation over ``repeats`` of ``max_{p in B} delta_p`` on ``samples``
    random points, ``B`` = ``bases`` random points among them (Khrulkov et al.: 1500 x 1 x 1).

    ``distances`` is an (n, n) matrix, or a function that returns the distance matrix of the points
    with the given indices (so the full matrix of a large point set is never built); then ``n`` is
    required. ``bases >= samples`` gives the exact delta of each sample.
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    if callable(distances):
        if n is None:
            raise InputError("delta_sampled: pass n, the number of points, with a distance function")
        fetch = distances
    else:
        full, _ = _prepare(distances, dev)
        n = full.shape[0]

        def fetch(idx: np.ndarray) -> torch.Tensor:
            t = torch.as_tensor(idx, device=full.device)
            return full[t][:, t]

    for name, v in (("samples", samples), ("bases", bases), ("repeats", repeats)):
        check_count(name, v)
    m = min(int(samples), n)
    rng = np.random.default_rng(seed)
    deltas, rels, diams = [], [], []
    with _workers(threads, dev) as pool:
        for _ in range(repeats):
            idx = np.sort(rng.choice(n, size=m, replace=False))
            sub = check_distance_matrix(fetch(idx), name="sampled distances").to(dev)
            diam = float(sub.max())
            if bases >= m:
                value = delta_exact(sub, device=dev, threads=1).delta
            else:
                value, _ = _fixed(sub, rng.choice(m, size=bases, replace=False).tolist(), pool)
            deltas.append(value)
            diams.append(diam)
            rels.append(2.0 * value / diam if diam > 0 else 0.0)

    def std(xs: list[float]) -> float | None:
        return float(np.std(xs, ddof=1)) if len(xs) > 1 else None

    return DeltaResult(
        delta=float(np.mean(deltas)),
        relative_delta=float(np.mean(rels)),
        diameter=float(np.mean(diams)),
        method="sampled",
        n=int(n),
        seconds=round(time.perf_counter() - start, 4),
        delta_std=std(deltas),
        relative_delta_std=std(rels),
        samples=m,
        repeats=int(repeats),
    )


def delta_distribution(
    distances: DistanceLike,
    *,
    bins: int = 50,
    bases: int | Sequence[int] | None = None,
    seed: int = 0,
    device: DeviceLike = None,
    threads: int | None = None,
    progress: bool = False,
) -> DeltaHistogram:
    """Histogram of ``2 delta_p(x, y) / diam`` over triples (see :class:`DeltaHistogram`).

    ``bases``: ``None`` for every point (``n^4 / 2`` steps), an int for that many random base
    points, or the indices of the base points. Values come from the int16 product, accurate to
    ``1e-4`` of the diameter: enough for bins, not for the maximum (use :func:`delta_exact`).
    """
    from tqdm.auto import tqdm

    check_count("bins", bins)
    if isinstance(bases, (int, np.integer)):
        check_count("bases", bases)
    d, diam = _prepare(distances, device)
    n = d.shape[0]
    if bases is None:
        chosen = tuple(range(n))
    elif isinstance(bases, (int, np.integer)):
        chosen = tuple(sorted(np.random.default_rng(seed).choice(n, size=min(int(bases), n), replace=False).tolist()))
    else:
        chosen = _check_bases(bases, n)
    counts = torch.zeros(bins, dtype=torch.int64, device=d.device)
    total = 0.0
    scale = 2.0 / diam if diam > 0 else 0.0
    upper = _strict_upper(n, d.device)
    with _workers(threads, d.device) as pool:
        for p in tqdm(chosen, desc="delta distribution", unit="base", disable=not progress):
            keep = upper.clone()
            keep[p, :] = False
            keep[:, p] = False
            g = gromov_products(d, p, slice(0, n))
            codes, lo, step, _ = _quantize(g, float(g.min()), False)
            mid = pair_reduce(codes, "maxmin", pool).double().mul_(step).add_(lo - step / 2)
            vals = mid.sub_(g)[keep].mul_(scale)  # the middle of each code's interval
            counts += torch.bincount((vals * bins).floor_().clamp_(0, bins - 1).long(), minlength=bins)
            total += float(vals.sum())
    c = counts.cpu().numpy()
    return DeltaHistogram(
        edges=np.linspace(0.0, 1.0, bins + 1),
        counts=c,
        mean=total / max(int(c.sum()), 1),
        base_points=chosen,
        n=n,
    )
