"""How hyperbolic (tree-like) is a dataset: Gromov delta of distance matrices, point sets, files,
model embeddings, and of calibration spaces to read a value against.

Inputs are a distance matrix (``metric="precomputed"``) or points with a metric of
:mod:`biostrata.geometry.distances` (``euclidean``, ``cosine`` = angle, ``lorentz`` and ``poincare``
with a curvature ``K``, curvature ``-K``), in memory (NumPy arrays, torch tensors) or in a file read
by :func:`biostrata.analysis.representations.load_array`.

The methods are those of :mod:`biostrata.geometry.delta`: ``exact``, ``fixed`` (base points) and
``sampled`` (which, on points, only ever builds the distances of each sample); for the distribution
over triples pass :func:`distances_of` to :func:`biostrata.geometry.delta.delta_distribution`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from biostrata.compat import moved
from biostrata.errors import InputError, ParameterError, check_count
from biostrata.geometry.delta import DeltaResult, delta_exact, delta_fixed_base, delta_sampled
from biostrata.geometry.distances import METRICS, as_points, pairwise_distances
from biostrata.geometry.lorentz import Lorentz

__getattr__ = moved(__name__, {"load_array": "biostrata.analysis.representations"})

METHODS = ("exact", "fixed", "sampled")
INPUT_METRICS = ("precomputed",) + METRICS


# -- one dataset ---------------------------------------------------------------------------------
def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ParameterError("method", f"method={method!r}: unknown; choose one of {', '.join(METHODS)}")


def check_metric(metric: str) -> None:
    if metric not in INPUT_METRICS:
        raise ParameterError("metric", f"metric={metric!r}: unknown; choose one of {', '.join(INPUT_METRICS)}")


def distances_of(data: np.ndarray | torch.Tensor, metric: str = "precomputed", curvature: float = 1.0) -> torch.Tensor:
    """The distance matrix of ``data``: itself for ``precomputed``, else of its rows as points."""
    check_metric(metric)
    if metric == "precomputed":
        shape = tuple(data.shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise InputError(
                f"a distance matrix is square, but this array has shape {shape}; for points pass a metric "
                f"({', '.join(METRICS)})"
            )
        return torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data.detach())
    return pairwise_distances(data, metric=metric, curvature=curvature)


def gromov_delta(
    data: np.ndarray | torch.Tensor,
    *,
    metric: str = "precomputed",
    curvature: float = 1.0,
    method: str = "exact",
    base: int | Sequence[int] = 0,
    samples: int = 1500,
    bases: int = 1,
    repeats: int = 10,
    seed: int = 0,
    device: str | torch.device | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> DeltaResult:
    """Gromov delta of a distance matrix or of points under ``metric``, by ``method``:
    ``exact``, ``fixed`` (base point(s) ``base``) or ``sampled`` (``samples`` points x ``bases``
    base points x ``repeats``, seeded by ``seed``)."""
    _check_method(method)
    check_metric(metric)
    if method == "sampled":
        if metric == "precomputed":
            source, n = distances_of(data), None
        else:  # only the sampled points' distances are computed
            points = as_points(data)

            def source(idx: np.ndarray) -> torch.Tensor:
                return pairwise_distances(points[torch.as_tensor(idx)], metric=metric, curvature=curvature)

            n = len(points)
        return delta_sampled(
            source,
            n=n,
            samples=samples,
            bases=bases,
            repeats=repeats,
            seed=seed,
            device=device,
            threads=threads,
        )
    d = distances_of(data, metric, curvature)
    if method == "fixed":
        return delta_fixed_base(d, base, device=device, threads=threads)
    return delta_exact(d, device=device, threads=threads, progress=progress)


def rows_in_order(
    x: np.ndarray | torch.Tensor, ids: Sequence[str] | None = None, metric: str = "precomputed"
) -> tuple[np.ndarray | torch.Tensor, np.ndarray | None]:
    """``x`` with its rows in one order whatever the order given, and that order (row ``i`` is row
    ``order[i]`` of ``x``): sorted ``ids``; without ids, points sorted by their values (equal rows are
    equal points); a distance matrix without ids as it is (its rows and columns permuted together). The
    delta's samples and witness then do not depend on the order of the rows. ``order`` is None (``x`` as
    it is) when ``x`` is not 2-d."""
    x = x if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 2:
        return x, None
    if ids is not None:
        order = np.argsort(np.asarray(ids), kind="stable")
    elif metric != "precomputed" and x.shape[1]:  # rows as byte strings
        rows = np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
        order = np.argsort(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel(), kind="stable")
    else:
        return x, np.arange(len(x))
    take = torch.as_tensor(order, device=x.device) if isinstance(x, torch.Tensor) else order
    if metric != "precomputed":
        return x[take], order
    return (x[take][:, take] if x.shape[0] == x.shape[1] else x), order


# -- calibration ---------------------------------------------------------------------------------
CALIBRATION = {
    "tree": "path metric of a random tree (each node joins a uniform earlier node; edge lengths U(0.1, 1))",
    "euclidean-2d": "uniform in the unit square",
    "euclidean-128d": "standard normal in R^128",
    "sphere": "uniform on the unit sphere S^2, great-circle distance",
    "hyperbolic-2d": "wrapped normal on H^2 (curvature -1): exp map at the origin of N(0, 2^2 I)",
}


def tree_metric(n: int, rng: np.random.Generator) -> np.ndarray:
    """Path metric of a random recursive tree on ``n`` nodes with edge lengths ``U(0.1, 1)``."""
    parent = np.concatenate([[0], [rng.integers(0, i) for i in range(1, n)]]).astype(np.int64)
    length = rng.uniform(0.1, 1.0, n)
    d = np.zeros((n, n))
    for i in range(1, n):  # d(i, j) = d(parent(i), j) + w_i for every earlier j
        d[i, :i] = d[parent[i], :i] + length[i]
        d[:i, i] = d[i, :i]
    return d


def calibration_distances(space: str, n: int, seed: int = 0) -> torch.Tensor:
    """Distances of ``n`` random points of a calibration ``space`` (keys of ``CALIBRATION``)."""
    if space not in CALIBRATION:
        raise InputError(f"unknown calibration space {space!r}; choose one of {', '.join(CALIBRATION)}")
    check_count("n", n, 4, why="the four-point condition")
    rng = np.random.default_rng([seed, list(CALIBRATION).index(space)])
    if space == "tree":
        return torch.from_numpy(tree_metric(n, rng))
    if space == "euclidean-2d":
        return pairwise_distances(rng.random((n, 2)))
    if space == "euclidean-128d":
        return pairwise_distances(rng.standard_normal((n, 128)))
    if space == "sphere":
        return pairwise_distances(rng.standard_normal((n, 3)), metric="cosine")
    points = Lorentz(1.0).expmap0_point(torch.from_numpy(2.0 * rng.standard_normal((n, 2))), dim=1)
    return pairwise_distances(points, metric="lorentz", curvature=1.0)


def calibrate(
    n: int,
    *,
    method: str = "exact",
    seed: int = 0,
    progress: bool = False,
    **kwargs,
) -> list[dict]:
    """Delta at size ``n`` in each calibration space: one record per space with ``space``,
    ``description`` and the fields of :class:`DeltaResult` (``kwargs`` go to :func:`gromov_delta`)."""
    from tqdm.auto import tqdm

    rows = []
    for space in tqdm(CALIBRATION, desc="calibration", unit="space", disable=not progress):
        res = gromov_delta(calibration_distances(space, n, seed), method=method, seed=seed, **kwargs)
        rows.append({"space": space, "description": CALIBRATION[space], **res.to_dict()})
    return rows


# -- a dataset through a trained model -----------------------------------------------------------
def kmer_spectrum(sequences: Sequence[str], k: int = 4) -> np.ndarray:
    """(N, 4^k) k-mer frequencies over ACGT of each sequence (k-mers with N or padding skipped;
    a sequence with none gets a zero row)."""
    from biostrata.data.dna.alphabet import ALPHABET, encode

    check_count("k", k, 1, 8, why="the k-mer size; 4^k features per sequence")
    n_sym = len(ALPHABET) - 1  # A, C, G, T; N has the last index
    out = np.zeros((len(sequences), n_sym**k))
    for row, seq in enumerate(sequences):
        idx = encode(seq, len(seq), where=f"sequence {row + 1}")
        if len(idx) < k:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(idx, k)
        ok = (windows < n_sym).all(1)
        codes = windows[ok] @ (n_sym ** np.arange(k - 1, -1, -1))
        counts = np.bincount(codes, minlength=n_sym**k)
        out[row] = counts / max(counts.sum(), 1)
    return out


def model_embeddings(
    model: torch.nn.Module,
    sequences: Sequence[str],
    *,
    layer: int = -1,
    truncate: bool = False,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, str, float]:
    """Layer ``layer`` of a genome CNN (``model.embed``) for ``sequences``, one float64 row per
    sequence, with the matching metric and curvature: ``euclidean``, or ``lorentz`` at that layer's
    curvature for a hyperbolic model. The last layer (-1, the default) is the head's features; a
    block's (B, C, L) output becomes one row per sequence by concatenating its positions (Lorentz
    direct concatenation for points: the space parts, time recomputed). The model runs on ``device``
    (default: a GPU when present, else the CPU), and is moved there."""
    from biostrata.models.extract import dna_states

    manifold = model.layer_manifold(layer)
    parts = [
        next(iter(states.values())).astype(np.float64)
        for _, states in dna_states(
            model, sequences, [layer], pooling="flatten", truncate=truncate, batch_size=batch_size, device=device
        )  # fmt: skip
    ]
    emb = np.concatenate(parts) if parts else np.zeros((0, 0))
    if not np.isfinite(emb).all():
        from biostrata.errors import NumericalError

        raise NumericalError("the model's embeddings contain NaN or infinity; no delta is reported")
    if manifold is None:
        return emb, "euclidean", 1.0
    return emb, "lorentz", float(manifold.curvature.detach())


def embedding_delta(
    run_dir: str | Path,
    sequences: Sequence[str],
    n_points: int,
    seed: int,
    device: str | torch.device | None = None,
) -> dict:
    """Exact Gromov delta of a trained model's embeddings of (a random sample of) ``sequences``,
    under the model's own metric: Euclidean, or Lorentz at the head's learned curvature; both the
    embedding and the delta on ``device`` (default: a GPU when present, else the CPU)."""
    from biostrata.models.genome_cnn import load_model

    model, _ = load_model(run_dir)
    pick = np.random.default_rng(seed).choice(len(sequences), size=min(n_points, len(sequences)), replace=False)
    emb, metric, curvature = model_embeddings(model, [sequences[i] for i in pick], device=device)
    return gromov_delta(emb, metric=metric, curvature=curvature, device=device).to_dict()


def dataset_deltas(
    checkpoint: str | Path,
    task_dir: str | Path,
    *,
    split: str = "test",
    points: int = 1000,
    kmer: int = 4,
    layer: int = -1,
    method: str = "exact",
    seed: int = 0,
    progress: bool = False,
    device: str | torch.device | None = None,
    **kwargs,
) -> list[dict]:
    """Delta of ``points`` random sequences of a task's ``split`` (GUE layout: train/dev/test.csv; drawn
    with ``seed`` from its sequences in sorted order, so that the order of the file's rows changes nothing)
    as embedded by a trained model (``biostrata train`` output) at ``layer`` (default -1: the head's
    features; see :func:`model_embeddings`), and of two baselines of the same sequences: the flattened
    one-hot encoding and the ``kmer`` spectrum, both Euclidean.

    One record per representation: ``representation``, ``metric``, ``curvature``, ``dim`` and the
    fields of :class:`DeltaResult`. ``device`` (default: a GPU when present, else the CPU) runs both
    the model and the delta; ``kwargs`` go to :func:`gromov_delta`.
    """
    from biostrata.data.dna.alphabet import encode_batch
    from biostrata.data.dna.genome import read_gue_dir
    from biostrata.models.genome_cnn import load_model

    _check_method(method)
    if split not in ("train", "dev", "test"):
        raise ParameterError("split", f"split={split!r}: use train, dev or test")
    check_count("points", points, 4, why="the four-point condition")  # these two before the model loads
    check_count("kmer", kmer, 1, 8, why="the k-mer size; 4^k features per sequence")
    model, saved = load_model(checkpoint)
    truncate = bool(saved.get("training", {}).get("truncate", False))
    data = getattr(read_gue_dir(task_dir), split)
    longest = max(range(len(data)), key=lambda i: len(data.sequences[i]))
    if not truncate and len(data.sequences[longest]) > model.length:
        raise InputError(
            f"{data.where(longest)}: a sequence of {len(data.sequences[longest])} bp, but the model in {checkpoint} "
            f"takes sequences of at most {model.length} bp; give the task folder the model was trained on"
        )
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(data), size=min(points, len(data)), replace=False))
    rows = sorted(range(len(data)), key=lambda i: (data.sequences[i], int(data.labels[i])))  # any file order
    seqs = [data.sequences[rows[i]] for i in pick]
    emb, metric, curvature = model_embeddings(model, seqs, layer=layer, truncate=truncate, device=device)
    onehot = encode_batch(seqs, model.length, truncate=truncate).flatten(1).double().numpy()
    reps = [
        (f"model:{model.architecture['name']}" + ("" if layer == -1 else f" layer {layer}"), emb, metric, curvature),
        ("one-hot", onehot, "euclidean", 1.0),
        (f"{kmer}-mer spectrum", kmer_spectrum(seqs, kmer), "euclidean", 1.0),
    ]
    rows = []
    for name, x, m, k in reps:
        start = time.perf_counter()
        res = gromov_delta(x, metric=m, curvature=k, method=method, seed=seed, progress=progress, device=device,
                           **kwargs)  # fmt: skip
        rows.append(
            {
                "representation": name,
                "metric": m,
                "curvature": k if m == "lorentz" else None,
                "dim": int(x.shape[1]),
                **res.to_dict(),
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
    return rows


def format_rows(rows: Sequence[dict], first: str) -> str:
    """A plain-text table of delta records, led by the column ``first``."""
    cols = [first, "n", "method", "delta", "relative_delta", "diameter", "seconds"]

    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else str(v)
        return "" if v is None else str(v)

    if any("metric" in r for r in rows):  # the geometry measured in (a default may have chosen it)
        cols.insert(1, "metric")
    rel_sd = [r.get("relative_delta_std") for r in rows]
    if any(v is not None for v in rel_sd):
        cols.insert(5, "relative_delta_std")
    table = [cols] + [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table)
