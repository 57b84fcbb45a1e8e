"""Probes on features and labels read from files: the ``biostrata probe`` command's library side.

Labels: a CSV with a header (see :func:`read_labels`). Features: representation files
(``FILE[:LAYER]``, see :func:`~biostrata.analysis.layers.read_feature_blocks`), joined to the labels
by id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from biostrata.analysis.probes import cross_validate
from biostrata.errors import DataNotFoundError, InputError, ParameterError

__all__ = ["read_labels", "probe_files"]


def read_labels(
    path: str, id_column: str | None = None, label_column: str | None = None, group_column: str | None = None
) -> tuple[list[str], np.ndarray, list[str], np.ndarray | None]:
    """Labels from a CSV with a header: ``(ids, y, class names, groups)``.

    The id is ``id_column`` (default: the first column). With ``label_column`` that column holds one
    label per row (binary or multi-class); otherwise every other column (but ``group_column``) is a
    0/1 class column (multi-label, e.g. ``mibig3_classes.csv``). ``group_column`` gives the groups
    that must not straddle a split (e.g. BGC or Pfam family)."""
    if not Path(path).is_file():
        raise DataNotFoundError(f"label file not found: {path}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(
            f"{path}: empty file; expected a CSV with a header (id,label,...) and one row per example"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable CSV ({err})") from None
    if table.empty:
        raise InputError(f"{path}: a header ({','.join(table.columns)}) but no rows; give one row per example")
    id_column = id_column or table.columns[0]
    for name, col in (("id_column", id_column), ("label_column", label_column), ("group_column", group_column)):
        if col is not None and col not in table.columns:
            raise ParameterError(name, f"{path}: no column {col!r} ({name}); columns are {list(table.columns)}")
    if table[id_column].duplicated().any():
        raise InputError(f"{path}: id {table[id_column][table[id_column].duplicated()].iloc[0]!r} appears twice")
    ids = table[id_column].tolist()
    groups = table[group_column].to_numpy() if group_column else None
    if label_column:
        y = table[label_column].to_numpy()
        empty = np.flatnonzero(y == "")
        if len(empty):
            raise InputError(f"{path}:{empty[0] + 2}: empty label in column {label_column!r}")
        return ids, y, sorted(set(y)), groups
    cols = [c for c in table.columns if c not in (id_column, group_column)]
    bad = [(c, i) for c in cols for i in np.flatnonzero(~table[c].isin(["0", "1"]))[:1]]
    if bad or not cols:
        where = f"{path}:{bad[0][1] + 2}: column {bad[0][0]!r} is not 0/1" if bad else f"{path}: no class columns"
        raise InputError(f"{where}; give label_column for a single label column, or 0/1 columns for multi-label")
    return ids, table[cols].to_numpy(dtype=np.int64), cols, groups


def probe_files(
    features: Sequence[str],
    labels: str,
    probe: BaseEstimator,
    *,
    all_layers: bool = False,
    fusion: str = "concat",
    id_column: str | None = None,
    label_column: str | None = None,
    group_column: str | None = None,
    n_splits: int = 5,
    seeds: Sequence[int] = (0,),
    n_boot: int = 1000,
    threads: int = 1,
    progress: bool = True,
    rows_in_label_order: bool = False,
    report: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-validate ``probe`` on features from files (``FILE[:LAYER]``, joined by id and concatenated;
    see :func:`~biostrata.analysis.layers.read_feature_blocks`) against the labels of
    :func:`read_labels`; rows are the ids present in both, in sorted order, so that the folds (drawn from
    that order with each seed) and every number do not depend on the order of any file's rows. Features
    without ids are refused unless ``rows_in_label_order`` says that their row ``i`` is the example of label
    row ``i`` (then the counts must agree); ``report``, if given, gets one line per feature set saying how its
    rows were joined to the labels. ``all_layers`` probes each layer of the one file separately; ``fusion="projection"``
    fuses two files with :class:`~biostrata.analysis.fusion.ProjectionFusion` instead. Returns
    (summary, per-fold) tables."""
    from biostrata.analysis.fusion import ProjectionFusion
    from biostrata.analysis.layers import read_feature_blocks, read_representations
    from biostrata.analysis.probes import check_cv_options
    from biostrata.threads import cpu_threads

    if fusion not in ("concat", "projection"):
        raise ParameterError("fusion", f"fusion={fusion!r}: choose 'concat' or 'projection'")
    check_cv_options(n_splits, seeds, n_boot)
    ids, y, names, groups = read_labels(labels, id_column, label_column, group_column)
    if all_layers:
        if len(features) != 1:
            raise ParameterError("all_layers", "all_layers takes one features file")
        specs = [[f"{features[0]}:{layer}"] for layer in read_representations(features[0]).layers]
    else:
        specs = [list(features)]
    index = {s: i for i, s in enumerate(ids)}
    summaries, folds = [], []
    with cpu_threads(threads):
        for spec in specs:
            name = " + ".join(spec)
            feat_ids, X, widths = read_feature_blocks(spec)
            if feat_ids is None:
                if not rows_in_label_order:
                    raise ParameterError(
                        "rows_in_label_order",
                        f"{name}: rows have no ids, so they cannot be joined to the ids of {labels}; save the "
                        "features with ids (an 'ids' array in an .npz, or an .h5 store), or give "
                        "rows_in_label_order=True if row i is the example of label row i",
                    )
                if len(X) != len(ids):
                    raise InputError(
                        f"{name}: {len(X)} rows for the {len(ids)} label rows of {labels}; with "
                        "rows_in_label_order there must be one feature row per label row"
                    )
                feat_rows = rows = np.argsort(np.asarray(ids), kind="stable")  # folds of sorted ids
                joined = f"{name}: {len(X)} rows paired with the label rows of {labels} by position"
            else:
                shared = [k for k, s in enumerate(feat_ids) if s in index]
                if not shared:
                    raise InputError(
                        f"{name}: none of its {len(feat_ids)} ids (e.g. {feat_ids[0]!r}) is among the {len(ids)} "
                        f"ids of {labels} (e.g. {ids[0]!r}); check the files, or the id column (id_column)"
                    )
                feat_rows, rows = np.array(shared), np.array([index[feat_ids[k]] for k in shared])
                joined = (
                    f"{name}: joined {len(shared)} rows by id with {labels}: the features lost "
                    f"{len(feat_ids) - len(shared)} of {len(feat_ids)}, the labels {len(ids) - len(shared)} of {len(ids)}"
                )
            if report is not None:
                report(joined)
            est = probe
            if fusion == "projection":
                if len(widths) != 2:
                    raise ParameterError("fusion", "fusion='projection' needs exactly two feature files")
                est = ProjectionFusion(split=widths[0])
            res = cross_validate(
                est, X[feat_rows], y[rows], None if groups is None else groups[rows], n_splits, seeds,
                class_names=None if label_column else names, progress=progress, desc=name,
            )  # fmt: skip
            summaries.append({"features": name, **res.summary(n_boot=n_boot)})
            folds.append(res.folds.assign(features=name))
    return pd.DataFrame(summaries), pd.concat(folds, ignore_index=True)
