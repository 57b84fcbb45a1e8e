"""Layer-wise representations compared: files read by :mod:`biostrata.analysis.representations` (one
reader for every format), joined by example id, and measured layer by layer.

:func:`read_feature_blocks` joins ``FILE[:LAYER]`` blocks by id for probes; :func:`compare_files` gives
the CKA (and mutual k-NN) of files' layers; :func:`delta_per_layer` the Gromov delta
(:mod:`biostrata.geometry.delta`) of each layer's point cloud, on the same sampled examples for every
layer; :func:`geometry_against` all three of one set of layers against a reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.analysis.representations import Representations, read_representations
from biostrata.errors import InputError, ParameterError

__all__ = ["Representations", "read_representations", "read_feature_blocks", "compare_files", "delta_per_layer",
           "geometry_against"]  # fmt: skip


def read_feature_blocks(specs: Sequence[str], pooling: str = "mean") -> tuple[list[str] | None, np.ndarray, list[int]]:
    """Features from ``FILE[:LAYER]`` specs, joined by id and concatenated column-wise (never truncated):
    ``(ids, X [n, sum of widths], widths)``. A file with one layer needs no ``:LAYER``; rows are the ids
    shared by all files, in sorted order (files without ids must have the same rows, paired by position; a
    file with ids never joins one without). NaN or infinite features are refused, naming the file and layer."""
    blocks: list[Representations] = []
    for spec in specs:
        path, _, layer = spec.rpartition(":") if ":" in Path(spec).name else (spec, "", "")
        reps = read_representations(path, pooling)
        if not layer:
            if len(reps.layers) != 1:
                raise InputError(f"{path} has layers {list(reps.layers)}; pick one as {path}:LAYER")
            layer = next(iter(reps.layers))
        blocks.append(reps.select([layer]).finite())
    if not blocks:
        raise InputError("give at least one feature file")
    first = blocks[0].sorted()
    for other in blocks[1:]:
        first, _ = first.align(other)
    aligned = [first] + [b.rows(first.ids) if first.ids is not None else b for b in blocks[1:]]
    arrays = [np.asarray(next(iter(b.layers.values())), dtype=np.float64) for b in aligned]
    return first.ids, np.concatenate(arrays, 1), [a.shape[1] for a in arrays]


def compare_files(
    inputs: Sequence[str],
    against: str | None = None,
    ref_layer: str | None = None,
    layers: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    pooling: str = "mean",
    knn: int | None = None,
    report: Callable[[str], None] | None = None,
    **cka_options: object,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """CKA (and, with ``knn``, mutual k-NN agreement) of representation files, rows joined by id, in
    sorted order (the order of a file's rows changes nothing).

    One input: its layer x layer matrix; two: layers of the first x layers of the second; with
    ``against``: one row per (input, layer) with its CKA against the reference's one layer (e.g. a
    curve over checkpoints). ``cka_options`` go to :func:`~biostrata.analysis.cka.cka_matrix`.
    ``report``, if given, gets one line per join: the rows joined and the rows each input lost.
    Refused, naming the file and layer: NaN or infinite values, a layer constant over the rows
    compared (its CKA is undefined), fewer rows than the estimator needs (2; 4 debiased), and
    ``knn`` outside ``1 .. rows - 1``."""
    from biostrata.analysis.cka import cka_matrix
    from biostrata.analysis.neighbours import mutual_knn_matrix

    need = 4 if cka_options.get("debiased") else 2
    reps = [read_representations(f, pooling) for f in inputs]
    if against is None:
        if len(reps) > 2:
            raise InputError("give one or two inputs (or a reference, `against`, for a curve over many)")
        a = reps[0].select(layers).finite().sorted()
        b = reps[1].select(layers_b).finite() if len(reps) == 2 else None
        if b is not None:
            a, b = _join(a, b, need, report)
        _check_comparable(a, "layers", need, knn)
        if b is not None:
            _check_comparable(b, "layers_b", need, knn)
        other = None if b is None else b.layers
        table = cka_matrix(a.layers, other, **cka_options)  # type: ignore[arg-type]
        return table, (mutual_knn_matrix(a.layers, other, k=knn) if knn is not None else None)
    ref = read_representations(against, pooling).select([ref_layer] if ref_layer else None).finite()
    if len(ref.layers) != 1:
        raise InputError(f"{against} has layers {list(ref.layers)}; pick one (ref_layer)")
    rows, knn_rows = [], []
    for path, r in zip(inputs, reps):
        a, b = _join(r.select(layers).finite(), ref, need, report)
        _check_comparable(a, "layers", need, knn)
        _check_comparable(b, "ref_layer", need, knn)
        m = cka_matrix(a.layers, b.layers, **cka_options)  # type: ignore[arg-type]
        rows += [{"input": path, "layer": name, "rows": len(a), "cka": float(m.loc[name].iloc[0])} for name in m.index]
        if knn is not None:
            k = mutual_knn_matrix(a.layers, b.layers, k=knn)
            knn_rows += [
                {"input": path, "layer": name, "rows": len(a), "knn": float(k.loc[name].iloc[0])} for name in k.index
            ]
    return pd.DataFrame(rows), (pd.DataFrame(knn_rows) if knn is not None else None)


def _join(
    a: Representations, b: Representations, need: int, report: Callable[[str], None] | None
) -> tuple[Representations, Representations]:
    """``a`` and ``b`` on their shared rows (:meth:`Representations.align`), said in one line to ``report``;
    fewer than ``need`` shared rows are refused with the counts."""
    left, right = a.align(b)
    if a.ids is None:
        note = f"{a.source} and {b.source}: {len(left)} rows paired by position (no ids)"
    else:
        note = (
            f"joined {len(left)} rows by id: {a.source} lost {len(a) - len(left)} of {len(a)}, "
            f"{b.source} lost {len(b) - len(right)} of {len(b)}"
        )
    if len(left) < need:
        raise InputError(f"{note}; the CKA needs at least {need} shared rows{' (debiased)' if need > 2 else ''}")
    if report is not None:
        report(note)
    return left, right


def _check_comparable(r: Representations, param: str, need: int, knn: int | None) -> None:
    """Refuse fewer than ``need`` rows, a constant layer (CKA undefined; ``param`` picks the layers) and ``knn``
    outside 1..rows-1."""
    from biostrata.analysis.cka import is_constant

    n = len(r)
    if n < need:
        raise InputError(f"{r.source}: {n} row(s); the CKA needs at least {need}{' (debiased)' if need > 2 else ''}")
    for name, x in r.layers.items():
        if is_constant(x):
            raise ParameterError(
                param,
                f"{param}: {r.source}: layer {name!r} is constant over the {n} rows compared (every row the same), so its "
                "CKA is undefined; leave it out",
            )
    if knn is not None and not 1 <= knn < n:
        raise ParameterError("knn", f"knn={knn}: must be between 1 and the number of rows compared minus 1 ({n - 1})")


def delta_per_layer(
    layers: Mapping[str, np.ndarray],
    metric: str = "euclidean",
    samples: int = 500,
    repeats: int = 3,
    exact: bool = False,
    seed: int = 0,
    threads: int | None = 1,
) -> pd.DataFrame:
    """Gromov delta of each layer's points: one row per layer with ``delta``, ``relative_delta``
    (``2 delta / diam``), ``diameter`` (means over ``repeats`` samples of ``samples`` points; every
    layer sees the same samples). By default one random base point per sample (Khrulkov et al.;
    between ``delta / 2`` and ``delta``); ``exact=True`` takes every base point (slow beyond ~1000)."""
    from biostrata.geometry.delta import delta_sampled
    from biostrata.geometry.distances import pairwise_distances

    rows = []
    for name, x in layers.items():
        x = np.asarray(x)
        if x.ndim != 2:
            raise InputError(f"layer {name!r}: expected [examples, features], got shape {x.shape}")
        res = delta_sampled(
            lambda idx, x=x: pairwise_distances(x[idx], metric=metric),
            n=len(x),
            samples=samples,
            bases=samples if exact else 1,
            repeats=repeats,
            seed=seed,
            threads=threads,
        )
        rows.append({"layer": name, "n": len(x), "samples": res.samples, "delta": res.delta,
                     "relative_delta": res.relative_delta, "relative_delta_std": res.relative_delta_std,
                     "diameter": res.diameter})  # fmt: skip
    return pd.DataFrame(rows)


def geometry_against(
    reference: np.ndarray, layers: Mapping[str, np.ndarray], k: int = 10, samples: int = 500, repeats: int = 3,
    seed: int = 0,
) -> pd.DataFrame:  # fmt: skip
    """Per layer (rows aligned with ``reference``): mutual k-NN agreement with ``reference``
    (``knn_with_reference``), linear CKA with it (``cka_with_reference``) and the layer's own
    relative Gromov delta (:func:`delta_per_layer`, the same samples for every layer). ``k`` and
    ``samples`` are capped by the number of rows."""
    from biostrata.analysis.cka import cka
    from biostrata.analysis.neighbours import mutual_knn

    n = len(reference)
    deltas = delta_per_layer(layers, samples=min(samples, n), repeats=repeats, seed=seed).set_index("layer")
    k = min(k, n - 1)
    return pd.DataFrame([{"layer": name, "knn_with_reference": mutual_knn(reference, x, k),
                          "cka_with_reference": cka(reference, x), "relative_delta": float(deltas.loc[name, "relative_delta"])}
                         for name, x in layers.items()])  # fmt: skip
