"""Representations of the same instances compared across strata: each representation is named
``<stratum>/<model>/<layer>`` and holds one row per instance (rows aligned by instance id).

- :func:`genome_layer_vectors`: a genome CNN's layers as one vector per sequence (positions pooled: the
  mean for Euclidean states, the Lorentz centroid for points, taken to the tangent space at the origin).
- :func:`delta_table`: relative Gromov delta ``2 delta / diam`` of every representation, under the
  Euclidean metric and, for hyperbolic ones, under their own Lorentz metric;
  :func:`calibration_table`: the same estimator on the calibration spaces (tree, plane, sphere, ...).
- linear CKA between every pair of representations: :func:`biostrata.analysis.cka.cka_matrix`.
- :func:`probe_summary`: a linear probe's cross-validated metrics, mean and spread over fold seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from biostrata.errors import InputError
from biostrata.geometry.lorentz import Lorentz

__all__ = ["genome_layer_vectors", "lorentz_points", "delta_table", "calibration_table", "probe_summary"]


@torch.inference_mode()
def genome_layer_vectors(
    model: torch.nn.Module,
    sequences: Sequence[str],
    layers: Sequence[int],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> tuple[dict[int, np.ndarray], dict[int, float | None]]:
    """``({layer: float64 [n, dim]}, {layer: curvature or None})`` of a genome CNN (``model.embed``) for
    ``sequences`` (cut or padded to ``model.length``). A block's ``(B, C, L)`` states are pooled over each
    sequence's own positions (not its padding, which would make the pool a function of length):
    Euclidean states by their mean; Lorentz points by their Lorentz centroid. Lorentz points are given as
    the space part of ``log_o`` (the tangent space at the origin), with the layer's curvature magnitude K
    so that they can be measured on the hyperboloid again (:func:`lorentz_points`)."""
    from biostrata.errors import NumericalError
    from biostrata.models.extract import dna_states
    from biostrata.models.layerwise import resolve_layers

    ids = resolve_layers(layers, model.num_layers)
    manifolds = {i: model.layer_manifold(i) for i in ids}
    parts: dict[int, list[np.ndarray]] = {i: [] for i in ids}
    for _, pooled in dna_states(model, sequences, ids, truncate=True, batch_size=batch_size, device=device):
        for i, v in pooled.items():
            if (m := manifolds[i]) is not None:
                v = m.logmap0_space(torch.as_tensor(v, device=m.curvature.device)[:, 1:], dim=1).cpu().numpy()
            parts[i].append(v.astype(np.float64))
    out = {i: np.concatenate(p) if p else np.zeros((0, 0)) for i, p in parts.items()}
    bad = [i for i, x in out.items() if not np.isfinite(x).all()]
    if bad:
        raise NumericalError(
            f"layer(s) {bad} of the genome CNN gave NaN or infinity; no representation is kept. Check the model "
            "file (its training should have stopped on NaN), or run on the CPU in float32"
        )
    return out, {i: None if m is None else float(m.curvature.detach()) for i, m in manifolds.items()}


def lorentz_points(tangent: np.ndarray, curvature: float) -> np.ndarray:
    """Points ``[n, 1 + d]`` on the unit hyperboloid (curvature -1) whose distances are those of ``exp_o(v)``
    on the hyperboloid of curvature -K (``curvature`` = K, <x,x>_L = -1/K) times ``sqrt(K)``:
    x = exp_o(sqrt(K) v) at K = 1, i.e. x_s = sinh(r) v / |v|, x_0 = cosh(r), r = sqrt(K) |v| (in float64,
    by :meth:`~biostrata.geometry.lorentz.Lorentz.expmap0_point`). Relative delta, a ratio of distances, is
    the same on both."""
    v = np.asarray(tangent, dtype=np.float64) * np.sqrt(curvature)
    return Lorentz(1.0).expmap0_point(torch.from_numpy(v), dim=1).numpy()


def delta_table(
    reps: Mapping[str, np.ndarray],
    curvatures: Mapping[str, float | None] | None = None,
    *,
    samples: int = 400,
    repeats: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per representation and metric: ``name``, ``metric`` (``euclidean``; also ``lorentz`` for a
    representation with a curvature in ``curvatures``, its rows being tangent vectors at the origin),
    ``relative_delta`` and ``relative_delta_std`` (mean and spread over ``repeats`` samples of ``samples``
    points, one base point each; every representation sees the same samples) and ``n``."""
    from biostrata.analysis.layers import delta_per_layer

    curvatures = curvatures or {}
    n = {len(x) for x in reps.values()}
    if len(n) > 1:
        raise InputError(f"representations have different row counts {sorted(n)}; align them by instance id first")
    size = min(samples, next(iter(n), 0))
    rows = []
    for metric, layers in (("euclidean", dict(reps)),
                           ("lorentz", {k: lorentz_points(x, curvatures[k]) for k, x in reps.items() if curvatures.get(k)})):  # fmt: skip
        if layers:
            frame = delta_per_layer(layers, metric=metric, samples=size, repeats=repeats, seed=seed)
            rows.append(frame.rename(columns={"layer": "name"}).assign(metric=metric))
    if not rows:
        return pd.DataFrame(columns=["name", "metric", "relative_delta", "relative_delta_std", "n"])
    return pd.concat(rows, ignore_index=True)[["name", "metric", "relative_delta", "relative_delta_std", "n"]]


def calibration_table(samples: int = 400, repeats: int = 3, seed: int = 0) -> pd.DataFrame:
    """The estimator of :func:`delta_table` on each calibration space of
    :data:`biostrata.analysis.hyperbolicity.CALIBRATION` (2,000 points, ``samples`` at a time)."""
    from biostrata.analysis.hyperbolicity import CALIBRATION, calibration_distances
    from biostrata.geometry.delta import delta_sampled

    rows = []
    for space, description in CALIBRATION.items():
        d = calibration_distances(space, max(2000, samples), seed)
        res = delta_sampled(lambda idx, d=d: d[idx][:, idx], n=len(d), samples=samples, bases=1, repeats=repeats,
                            seed=seed, threads=1)  # fmt: skip
        rows.append({"space": space, "description": description, "relative_delta": res.relative_delta,
                     "relative_delta_std": res.relative_delta_std})  # fmt: skip
    return pd.DataFrame(rows)


def probe_summary(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None,
    *,
    folds: int = 5,
    seeds: Sequence[int] = (0, 1, 2),
    C: float = 1.0,
    metrics: Sequence[str] = ("auroc_macro", "f1_macro"),
) -> dict[str, float]:
    """A linear probe (:class:`~biostrata.analysis.probes.LinearProbe` with one ``C``; standardized
    features) in grouped, stratified ``folds``-fold cross-validation repeated over ``seeds``: for each
    metric, ``<m>`` the mean over seeds of the fold means, and ``<m>_sd`` their standard deviation over
    seeds (0 with one seed); ``n`` and ``classes``."""
    from biostrata.analysis.probes import LinearProbe, cross_validate

    res = cross_validate(LinearProbe(Cs=[C]), X, y, groups=groups, n_splits=folds, seeds=list(seeds))
    per_seed = res.folds.groupby("seed")[list(metrics)].mean()
    out: dict[str, float] = {"n": len(res.y), "classes": len(res.classes)}
    for m in metrics:
        out[m] = float(per_seed[m].mean())
        out[f"{m}_sd"] = float(per_seed[m].std(ddof=1)) if len(per_seed) > 1 else 0.0
    return out
