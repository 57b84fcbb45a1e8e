"""Measure representations: :func:`delta` (how tree-like), :func:`cka` (how alike two sets of layers
are) and :func:`probe` (what labels a linear or MLP probe reads from them). Inputs in memory or in
files; results in memory, and with ``out=`` the files ``biostrata delta|cka|probe`` write.

Imports numpy, torch, pandas and scikit-learn only inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biostrata.errors import InputError, ParameterError, check_count, parameters_named

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["delta", "cka", "probe"]

PathLike = str | os.PathLike


def _is_path(x: object) -> bool:
    return isinstance(x, (str, os.PathLike))


def delta(
    x: Any = None,
    *,
    metric: str | None = None,
    curvature: float | None = None,
    method: str = "exact",
    base: int | Sequence[int] = (0,),
    samples: int = 1500,
    bases: int = 1,
    repeats: int = 10,
    histogram: int | None = None,
    histogram_bases: int | None = None,
    key: str | None = None,
    layer: int | None = None,
    calibrate: int | None = None,
    model: PathLike | None = None,
    data: PathLike | None = None,
    split: str = "test",
    points: int = 1000,
    kmer: int = 4,
    seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> dict | list[dict]:
    """Gromov delta-hyperbolicity of a distance matrix or of points (how tree-like they are), of
    reference spaces to read it against, or of a task's sequences as a trained genome CNN embeds them.

    For points ``x, y, z`` and a base point ``w``, with the Gromov product
    ``(x|y)_w = (d(x, w) + d(y, w) - d(x, y)) / 2``,

        delta = max_{w, x, y, z} min((x|z)_w, (z|y)_w) - (x|y)_w,

    and the relative delta ``2 delta / diameter`` lies in ``[0, 1]`` (0: a tree metric).

    Parameters
    ----------
    x : array_like of shape (n, n) or (n, d), or path
        A distance matrix (``metric="precomputed"``) or ``n >= 2`` points of dimension ``d`` (a numpy
        array or torch tensor), or a file holding one (``.npy``, ``.npz``, ``.h5`` embedding store,
        ``.csv``). Rows are read in the order of their sorted ids (a file's), points without ids in the
        order of their values, so that the same rows in any order give the same result (``witness`` and
        ``base`` number the rows as given); a distance matrix without ids is read as it is. Give exactly
        one of ``x``, ``calibrate``, or ``model`` with ``data``.
    metric : {"precomputed", "euclidean", "cosine", "lorentz", "poincare"}, optional
        ``precomputed``: ``x`` is a distance matrix; else the distance between rows of ``x``. Default: the
        points of an embedding store or of a model's token table under their own geometry (``euclidean``; a
        Lorentz domain LM's table: ``lorentz`` at its curvature), else ``precomputed`` for a square matrix and
        ``euclidean`` for any other. The result's ``metric`` and ``curvature`` say which was used.
    curvature : float, optional
        ``K > 0`` of the ``lorentz`` and ``poincare`` metrics (the space has curvature ``-K``); default 1, or
        the curvature of a Lorentz model's table. A Lorentz table is read as its hyperboloid points under
        ``lorentz`` (or the default), as its tangent vectors ``log_o(x)`` under any other metric.
    method : {"exact", "fixed", "sampled"}
        ``exact``: the maximum over all quadruples (worst case about ``n^4 / 8`` steps); ``fixed``: over
        the base point(s) ``base`` only; ``sampled``: ``repeats`` samples of ``samples`` points and
        ``bases`` base points each, giving a mean and a standard deviation.
    base, samples, bases, repeats : int
        The options of ``fixed`` and ``sampled``.
    histogram : int, optional
        Also the distribution of the relative delta over triples, in this many bins.
    histogram_bases : int, optional
        The histogram over this many random base points (default: every point).
    key, layer : optional
        With a file: the array of an ``.npz`` or HDF5 file; the pooling (``key``) and ``layer`` (default
        the last) of a biostrata embedding store. With ``model``: the model's layer to embed with
        (default -1, the head's features; 0 the input, i block i).
    calibrate : int, optional
        Instead of ``x``: the delta of ``calibrate`` points in each reference space (a random tree, the
        plane, R^128, the sphere, the hyperbolic plane; see ``analysis.hyperbolicity.CALIBRATION``).
    model, data : path, optional
        Instead of ``x``: a model of ``biostrata train`` (its run folder) and a task folder
        (GUE layout): the delta of ``points`` random sequences of its ``split`` as the model embeds them,
        and of two Euclidean baselines, their one-hot encoding and their ``kmer`` spectrum.
    split : {"train", "dev", "test"}
    points, kmer : int
        The options of ``model``.
    seed : int
        Seed of the samples (and of the points of ``model``).
    device, threads, progress
        Where the computation runs (default: a GPU when torch has one), CPU threads, a progress bar.

    An exact delta over more than :data:`EXACT_NOTICE` points warns first (``DeltaCostWarning``) with the
    time of one base point here and the bound it gives, since it can take minutes where ``sampled`` takes
    seconds.

    Returns
    -------
    dict or list of dict
        Of ``x``: ``metric``, ``curvature``, ``delta``, ``relative_delta``, ``diameter``, ``method``, ``n``, ``seconds``, ``witness``
        (the quadruple ``(w, z, x, y)`` attaining ``delta``), the standard deviations of ``sampled``, and
        with ``histogram`` a ``histogram`` dict (``edges`` of length ``bins + 1``, ``counts``, ``mean``,
        ``triples``). Of ``calibrate``: one such dict per space (with ``space``, ``description``); of
        ``model``: one per representation (with ``representation``, ``metric``, ``curvature``, ``dim``).
    """
    # before anything is imported or read: the functions that take these check them only after the points are
    # read or embedded (the model's points and kmer: before the model loads)
    if curvature is not None and not curvature > 0:
        raise ParameterError("curvature", f"curvature={curvature}: give K > 0 (the space has curvature -K)")
    for name, count in {"samples": samples, "bases": bases, "repeats": repeats, "histogram": histogram,
                        "histogram_bases": histogram_bases}.items():  # fmt: skip
        if count is not None:
            check_count(name, count)
    if calibrate is not None:
        check_count("calibrate", calibrate, 4, why="the four-point condition")
    modes = [x is not None, calibrate is not None, model is not None or data is not None]
    if sum(modes) != 1:
        raise InputError("give exactly one of: x, calibrate=N, or model=RUN with data=TASK_DIR")
    if modes[2] and not (model and data):
        raise InputError("model and data go together: a trained model and the task folder to embed")

    import numpy as np

    from biostrata.analysis import hyperbolicity as hyp
    from biostrata.analysis.representations import holds_points, lorentz_table, read_array, read_model
    from biostrata.geometry.delta import delta_distribution

    common = dict(device=device, threads=threads, seed=seed, progress=progress)
    options = dict(method=method, base=base, samples=samples, bases=bases, repeats=repeats, **common)
    if calibrate is not None:
        return hyp.calibrate(calibrate, **options)
    if metric is not None:
        hyp.check_metric(metric)
    if model is not None:
        return hyp.dataset_deltas(model, data, split=split, points=points, kmer=kmer, layer=-1 if layer is None else layer,
                                  **options)  # fmt: skip
    source, ids = str(x) if _is_path(x) else "x", None
    if _is_path(x):
        # a model file is read once: for its Lorentz table, else for its table of vectors (a model folder
        # that its config says is not Lorentz is read by read_array alone)
        model = read_model(x) if metric in (None, "lorentz") and Path(x).suffix.lower() == ".pt" else None
        table = lorentz_table(x, model) if metric in (None, "lorentz") else None
        if table is not None:  # a Lorentz domain LM: its token table's points on the hyperboloid
            points, ids, own = table
            if curvature is not None and curvature != own:
                raise InputError(
                    f"{source}: its table lies on the hyperboloid of curvature K = {own:g}, not {curvature:g}; "
                    "leave the curvature out"
                )
            x, metric, curvature = points, "lorentz", own
        else:
            reps = read_array(x, key, layer, model=model)
            x, ids = next(iter(reps.layers.values())), reps.ids
            metric = metric or ("euclidean" if holds_points(source) else None)
    metric = metric or ("precomputed" if np.ndim(x) == 2 and np.shape(x)[0] == np.shape(x)[1] else "euclidean")
    curvature = 1.0 if curvature is None else curvature
    x, order = hyp.rows_in_order(x, ids, metric)  # the same rows in any order, the same result
    if method == "fixed" and order is not None:  # base points number the rows as given
        at = np.argsort(order)
        options["base"] = [int(at[b]) if 0 <= b < len(at) else b for b in np.atleast_1d(base).tolist()]
    if np.ndim(x) and len(x) < 2:
        raise InputError(
            f"{source}: {len(x)} point{'' if len(x) == 1 else 's'}; the Gromov delta needs at least 2 (its relative "
            "delta, 2 delta / diameter, is 0/0 for one); give more points"
        )
    # the distance matrix, computed once for what needs all of it (sampled alone measures its samples only)
    distances = None if method == "sampled" and histogram is None else hyp.distances_of(x, metric, curvature)
    if method == "exact" and len(x) > EXACT_NOTICE:
        _warn_exact_cost(distances, device, threads)
    measured = (x, metric) if method == "sampled" else (distances, "precomputed")
    out = {"metric": metric, "curvature": curvature}
    out |= hyp.gromov_delta(measured[0], metric=measured[1], curvature=curvature, **options).to_dict()
    if order is not None:  # numbers of the rows as given, not as read
        for name in ("witness", "base_points"):
            out[name] = None if out.get(name) is None else [int(order[i]) for i in out[name]]
    if histogram is not None:
        out["histogram"] = delta_distribution(distances, bins=histogram, bases=histogram_bases, **common).to_dict()
    return out


#: Points past which an exact delta warns with its cost first (:func:`delta`).
EXACT_NOTICE = 1000


class DeltaCostWarning(UserWarning):
    """An exact delta that may take minutes."""


def _warn_exact_cost(distances: Any, device: str | None, threads: int | None) -> None:
    """Time the delta at one base point of the distance matrix (a quadratic pass over the pairs) and warn
    with the bound it gives: the exact maximum visits at most ``n - 1`` base points, each over fewer points
    than the last, and its pruning skips most of them, so the bound is loose."""
    import time
    import warnings

    from biostrata.geometry.delta import delta_fixed_base

    start = time.perf_counter()
    delta_fixed_base(distances, base=0, device=device, threads=threads)
    one = time.perf_counter() - start
    n = len(distances)
    bound = one * (n - 1) / 3  # base i sees the n - 1 - i points after it: the sum of their squares is ~ n^3 / 3
    warnings.warn(
        f"exact delta over {n} points: one base point took {one:.2g} s here, so at most about "
        f"{f'{bound:.0f} s' if bound < 90 else f'{bound / 60:.0f} min'} "
        f"(pruning usually skips most base points); method='sampled' estimates it in seconds",
        DeltaCostWarning,
        stacklevel=3,
    )


def _layers(x: Any, name: str) -> dict[str, Any]:
    """An in-memory representation as ``{layer name: [n, d] array}``: a mapping as it is, an array as
    one layer named ``name``."""
    if isinstance(x, Mapping):
        return {str(k): v for k, v in x.items()}
    if hasattr(x, "shape"):
        return {name: x}
    raise InputError(
        f"{name}: got {type(x).__name__}; give an array [examples, features], a dict of them by layer, or a file"
    )


def cka(
    a: Any,
    b: Any = None,
    *,
    layers: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    kernel: str = "linear",
    debiased: bool = False,
    sigma_frac: float = 1.0,
    batch_size: int = 4096,
    knn: int | None = None,
    against: PathLike | None = None,
    ref_layer: str | None = None,
    pooling: str = "mean",
    out: PathLike | None = None,
    report: Any = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Centered kernel alignment between the layers of one or two representations of the same examples.

    For Gram matrices ``K = k(A, A)`` and ``L = k(B, B)`` of the ``n`` rows,
    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` (biased or ``debiased`` HSIC; see
    :mod:`biostrata.analysis.cka`).

    Parameters
    ----------
    a, b : array of shape (n, d), dict of them by layer name, path, or sequence of paths
        In memory: the rows of ``a`` and ``b`` are the same examples in the same order. Files (``.npz``,
        ``.npy``, ``.h5`` embedding store, ``.pt`` family table or domain-LM checkpoint) are joined by
        example id. ``b`` None: the layer x layer matrix of ``a``. With ``against``, ``a`` may be a
        sequence of files (e.g. checkpoints' embedding tables).
    layers, layers_b : sequence of str, optional
        Layers of ``a`` and ``b`` to use (default: all).
    kernel : {"linear", "rbf"}
        ``rbf``: ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))``.
    sigma_frac : float
        The ``rbf`` bandwidth ``sigma`` as a fraction of the median pairwise distance.
    debiased : bool
        Unbiased HSIC (near 0 for independent features; needs 4 rows or more).
    batch_size : int
        Rows per minibatch of the linear CKA.
    knn : int, optional
        Also the mutual k-nearest-neighbour agreement of the same pairs of layers.
    against, ref_layer : path and str, optional
        Files only: one row per (input, layer) with its CKA against layer ``ref_layer`` of ``against``.
    pooling : {"mean", "bos"}
        The pooled output read from ``.h5`` stores.
    out : path, optional
        Write the table as CSV here (with ``knn``, the agreement as ``out`` with suffix ``.knn.csv``).
    report : callable, optional
        Files only: gets one line per join (rows joined, rows each input lost).

    Returns
    -------
    pandas.DataFrame or (pandas.DataFrame, pandas.DataFrame)
        The CKA matrix, layers of ``a`` x layers of ``b`` (with ``against``: columns ``input``,
        ``layer``, ``rows``, ``cka``); with ``knn``, the pair (CKA, mutual k-NN agreement).
    """
    from biostrata.analysis.layers import compare_files
    from biostrata.io import atomic_write_csv as write_csv

    options = dict(kernel=kernel, debiased=debiased, sigma_frac=sigma_frac, batch_size=batch_size)
    inputs = [a] if _is_path(a) or not isinstance(a, (list, tuple)) else list(a)
    inputs += [] if b is None else [b]
    if all(_is_path(x) for x in inputs):
        table, agreement = compare_files([str(x) for x in inputs], against=None if against is None else str(against),
                                         ref_layer=ref_layer, layers=layers, layers_b=layers_b, pooling=pooling,
                                         knn=knn, report=report, **options)  # fmt: skip
    elif any(_is_path(x) for x in inputs) or against is not None:
        raise InputError("a, b: give both in memory or both as files (against= takes files)")
    else:
        from biostrata.analysis.cka import cka_matrix
        from biostrata.analysis.neighbours import mutual_knn_matrix

        reps_a = _select(_layers(a, "a"), layers, "layers")
        reps_b = None if b is None else _select(_layers(b, "b"), layers_b, "layers_b")
        table = cka_matrix(reps_a, reps_b, **options)
        agreement = None if knn is None else mutual_knn_matrix(reps_a, reps_b, k=knn)
    if out is not None:
        matrix = against is None  # a matrix keeps its row labels; a curve has its own columns
        write_csv(out, table, index=matrix)
        if agreement is not None:
            write_csv(Path(out).with_suffix(".knn.csv"), agreement, index=matrix)
    return table if knn is None else (table, agreement)


def _select(reps: dict[str, Any], names: Sequence[str] | None, argument: str) -> dict[str, Any]:
    if names is None:
        return reps
    missing = [str(n) for n in names if str(n) not in reps]
    if missing:
        raise InputError(f"{argument}={list(names)}: no layer {missing[0]!r}; the layers are {list(reps)}")
    return {str(n): reps[str(n)] for n in names}


def probe(
    features: Any,
    labels: Any,
    *,
    groups: Sequence | None = None,
    probe: str = "linear",
    cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    hidden: Sequence[int] = (512, 256),
    one_vs_rest: bool = False,
    folds: int = 5,
    seeds: Sequence[int] = tuple(range(10)),
    bootstrap: int = 1000,
    all_layers: bool = False,
    fusion: str = "concat",
    id_column: str | None = None,
    label_column: str | None = None,
    group_column: str | None = None,
    rows_in_label_order: bool = False,
    threads: int = 1,
    progress: bool = False,
    out: PathLike | None = None,
    report: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-validate a probe of frozen features for labels: repeated stratified (grouped) k-fold.

    Parameters
    ----------
    features : array of shape (n, d), or sequence of ``FILE[:LAYER]`` specs
        In memory: row ``i`` is the example of label ``i``. Files (``.npz``, ``.npy``, ``.h5`` store,
        ``.pt``) are joined to the labels by id, several concatenated (or fused, ``fusion``).
    labels : array of shape (n,) or (n, C), or path
        In memory: one label per row (binary or multi-class), or ``C`` 0/1 columns (multi-label; a
        DataFrame names its classes). A path: a CSV whose first column (or ``id_column``) is the id, with
        ``label_column`` for one label per row, else every other column a 0/1 class.
    groups : array of shape (n,), optional
        In memory: groups that must not straddle train and test (files: ``group_column``).
    probe : {"linear", "mlp"}
        Logistic regression, or a multilayer perceptron (scikit-learn's, Adam, ReLU).
    cs : sequence of float
        Linear: the values of ``C`` among which inner cross-validation chooses.
    hidden : sequence of int
        MLP: hidden layer sizes.
    one_vs_rest : bool
        MLP, multi-label: one network per class.
    folds : int
        Folds per seed; every class needs at least ``folds`` examples (groups).
    seeds : sequence of int
        One repetition of the k-fold per seed, with new folds.
    bootstrap : int
        Bootstrap resamples of the interval of the pooled out-of-fold AUROC (0: none).
    all_layers, fusion, id_column, label_column, group_column, rows_in_label_order
        Files only: probe each layer of the one file separately; ``concat`` or ``projection`` (a learned
        gated projection) for two files; the label CSV's columns; features without ids in label order.
    threads : int
        CPU threads.
    progress : bool
        A progress bar per feature set.
    out : path, optional
        Folder to write ``summary.csv`` and ``folds.csv`` to.
    report : callable, optional
        Files only: gets one line per feature set saying how its rows were joined to the labels (rows joined,
        rows each side lost; or paired by position).

    Returns
    -------
    summary : pandas.DataFrame
        One row per feature set: ``auroc_macro``, ``mcc``, ``f1_macro`` (means over folds and seeds),
        their ``_sd``, ``auroc_macro_oof`` with its bootstrap interval ``_lo`` / ``_hi``, per-class AUROC.
    folds : pandas.DataFrame
        One row per (seed, fold) with its metrics.
    """
    from biostrata.analysis.probes import LinearProbe, MLPProbe
    from biostrata.io import atomic_write_csv as write_csv

    if probe not in ("linear", "mlp"):
        raise ParameterError("probe", f"probe={probe!r}: choose 'linear' or 'mlp'")
    with parameters_named(_PROBE_PARAMETERS):  # the estimators' and cross-validation's names for ours
        estimator = LinearProbe(Cs=tuple(cs)) if probe == "linear" else MLPProbe(tuple(hidden), one_vs_rest=one_vs_rest)
        cv = dict(n_splits=folds, seeds=list(seeds), threads=threads, progress=progress)
        specs = [features] if _is_path(features) else features
        if _is_path(labels) and isinstance(specs, (list, tuple)) and all(_is_path(s) for s in specs):
            from biostrata.analysis.probe_files import probe_files

            summary, per_fold = probe_files([str(s) for s in specs], str(labels), estimator, all_layers=all_layers,
                                            fusion=fusion, id_column=id_column, label_column=label_column,
                                            group_column=group_column, n_boot=bootstrap,
                                            rows_in_label_order=rows_in_label_order, report=report, **cv)  # fmt: skip
        elif _is_path(labels) or _is_path(features):
            raise InputError("features, labels: give both in memory or both as files")
        else:
            summary, per_fold = _probe_arrays(estimator, features, labels, groups, bootstrap, **cv)
    if out is not None:
        write_csv(Path(out) / "summary.csv", summary)
        write_csv(Path(out) / "folds.csv", per_fold)
    return summary, per_fold


#: probe's parameters as the estimators and cross-validation name them, for their errors.
_PROBE_PARAMETERS = {"n_splits": "folds", "n_boot": "bootstrap", "Cs": "cs", "hidden_layer_sizes": "hidden"}


def _probe_arrays(estimator: Any, features: Any, labels: Any, groups: Any, n_boot: int, *, n_splits: int,
                  seeds: list[int], threads: int, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """:func:`probe` of in-memory features and labels."""
    import numpy as np
    import pandas as pd

    from biostrata.analysis.probes import check_cv_options, cross_validate
    from biostrata.threads import cpu_threads

    check_cv_options(n_splits, seeds, n_boot)
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"features: expected an array [examples, features], got shape {X.shape}")
    if not np.isfinite(X).all():
        raise InputError(f"features: row {int(np.flatnonzero(~np.isfinite(X).all(1))[0])} holds NaN or infinity")
    names = [str(c) for c in labels.columns] if isinstance(labels, pd.DataFrame) else None
    y = np.asarray(labels)
    if len(y) != len(X):
        raise InputError(f"labels: {len(y)} labels for the {len(X)} rows of features; give one per row")
    with cpu_threads(threads):
        res = cross_validate(estimator, X, y, None if groups is None else np.asarray(groups), n_splits, seeds,
                             class_names=names, progress=progress, desc="features")  # fmt: skip
    summary = pd.DataFrame([{"features": "features", **res.summary(n_boot=n_boot)}])
    return summary, res.folds.assign(features="features")
