"""Labels and cross-validation splits of probe tasks.

Tasks (:func:`task_of`): ``binary`` and ``multiclass`` (a label per example: ints or strings), and
``multilabel`` (a 0/1 matrix ``[n, C]``, e.g. MIBiG product classes).

Splits (:func:`make_splits`): ``k`` folds, stratified. Multi-label folds use iterative
stratification (Sechidis, Tsoumakas, Vlahavas 2011, :func:`iterative_stratification`): the label
with the fewest unassigned examples is dealt first, each example to the fold that most lacks that
label (ties: the fold that most lacks examples, then at random). With ``groups`` (e.g. BGC, Pfam
family) whole groups are dealt as units (their label counts summed), so no group is ever in both a
training and a test fold; single-label tasks then use scikit-learn's ``StratifiedGroupKFold``.
"""

from __future__ import annotations

import warnings

import numpy as np

from biostrata.errors import InputError, ParameterError

__all__ = ["TASKS", "task_of", "encode_labels", "iterative_stratification", "MultilabelStratifiedKFold", "make_splits"]

TASKS = ("binary", "multiclass", "multilabel")


# -------------------------------------------------------------------------------------------------
# labels
# -------------------------------------------------------------------------------------------------


def task_of(y: np.ndarray) -> str:
    """``multilabel`` for a 0/1 matrix with more than one column, else ``binary`` or ``multiclass``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        if not np.isin(y, (0, 1)).all():
            raise InputError("a multi-label target must be a 0/1 matrix [examples, classes]")
        return "multilabel"
    if y.ndim > 2:
        raise InputError(f"labels must be a vector or a 0/1 matrix, got shape {y.shape}")
    n = len(np.unique(y.ravel()))
    if n < 2:
        raise InputError(f"labels have {n} distinct value(s); a probe needs at least 2 classes")
    return "binary" if n == 2 else "multiclass"


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, list[str], str]:
    """``(codes, class names, task)``: multi-label stays a 0/1 ``int64`` matrix (classes named by
    column index), single labels become codes ``0..C-1`` in sorted order of the labels."""
    y = np.asarray(y)
    task = task_of(y)
    if task == "multilabel":
        return y.astype(np.int64), [str(i) for i in range(y.shape[1])], task
    names, codes = np.unique(y.ravel(), return_inverse=True)
    return codes.astype(np.int64), [str(v) for v in names], task


def label_indicator(y: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot rows of label codes (multi-label matrices pass through)."""
    if y.ndim == 2:
        return y
    out = np.zeros((len(y), n_classes), dtype=np.int64)
    out[np.arange(len(y)), y] = 1
    return out


# -------------------------------------------------------------------------------------------------
# splits
# -------------------------------------------------------------------------------------------------


def iterative_stratification(
    y: np.ndarray, n_splits: int = 5, seed: int = 0, groups: np.ndarray | None = None
) -> np.ndarray:
    """Fold (``0..n_splits-1``) of each row of a 0/1 matrix ``y [n, C]`` by iterative stratification
    (see the module docstring); with ``groups`` every group's rows share a fold."""
    y = np.asarray(y)
    if y.ndim != 2 or not np.isin(y, (0, 1)).all():
        raise InputError(f"iterative_stratification needs a 0/1 label matrix [n, classes], got shape {y.shape}")
    n = len(y)
    if groups is None:
        unit_of = np.arange(n)
    else:
        groups = np.asarray(groups)
        if len(groups) != n:
            raise InputError(f"groups has {len(groups)} entries for {n} rows")
        _, unit_of = np.unique(groups, return_inverse=True)
    n_units = int(unit_of.max()) + 1 if n else 0
    if not 2 <= n_splits <= n_units:
        unit = "groups" if groups is not None else "rows"
        raise ParameterError(
            "n_splits", f"n_splits={n_splits}: needs 2 <= n_splits <= {n_units} (the number of {unit})"
        )
    counts = np.zeros((n_units, y.shape[1]), dtype=np.float64)  # label counts per unit
    np.add.at(counts, unit_of, y)
    sizes = np.bincount(unit_of, minlength=n_units).astype(np.float64)
    rng = np.random.default_rng(seed)
    want_labels = np.tile(counts.sum(0) / n_splits, (n_splits, 1))  # [folds, C]
    want_size = np.full(n_splits, n / n_splits)
    fold_of_unit = np.full(n_units, -1, dtype=np.int64)
    remaining = counts.copy()  # label counts of the units not yet dealt
    left = np.ones(n_units, dtype=bool)

    def deal(unit: int, label: int | None) -> None:
        if label is None:
            score = np.stack([want_size, rng.random(n_splits)], 1)
        else:
            score = np.stack([want_labels[:, label], want_size, rng.random(n_splits)], 1)
        best = np.lexsort(score.T[::-1])[-1]  # largest by the first column, ties by the next
        fold_of_unit[unit] = best
        want_labels[best] -= counts[unit]
        want_size[best] -= sizes[unit]
        remaining[unit] = 0
        left[unit] = False

    while True:
        per_label = (remaining > 0).sum(0)
        if not per_label.any():
            break
        label = int(np.argmin(np.where(per_label > 0, per_label, np.iinfo(np.int64).max)))
        units = np.flatnonzero(remaining[:, label] > 0)
        for unit in rng.permutation(units):
            deal(int(unit), label)
    for unit in rng.permutation(np.flatnonzero(left)):
        deal(int(unit), None)
    return fold_of_unit[unit_of]


class MultilabelStratifiedKFold:
    """scikit-learn splitter: ``split(X, y, groups)`` yields ``(train, test)`` index arrays of the
    folds of :func:`iterative_stratification` (reshuffled by ``random_state``)."""

    def __init__(self, n_splits: int = 5, random_state: int = 0) -> None:
        self.n_splits, self.random_state = n_splits, random_state

    def get_n_splits(self, X: object = None, y: object = None, groups: object = None) -> int:
        return self.n_splits

    def split(self, X: object, y: np.ndarray, groups: np.ndarray | None = None):
        folds = iterative_stratification(y, self.n_splits, self.random_state, groups)
        for k in range(self.n_splits):
            yield np.flatnonzero(folds != k), np.flatnonzero(folds == k)


def make_splits(
    y: np.ndarray, n_splits: int = 5, seed: int = 0, groups: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``(train, test)`` folds for any task; grouped when ``groups`` is given."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    if groups is not None and len(groups) != len(y):
        raise InputError(f"groups has {len(groups)} entries for {len(y)} examples")
    if not 2 <= n_splits <= len(y):
        raise ParameterError(
            "n_splits", f"n_splits={n_splits}: needs 2 <= n_splits <= {len(y)} (the number of examples)"
        )
    if task_of(y) == "multilabel":
        splitter = MultilabelStratifiedKFold(n_splits, seed)
    elif groups is None:
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    else:
        if len(np.unique(groups)) < n_splits:
            raise InputError(f"{len(np.unique(groups))} groups cannot fill {n_splits} folds; use fewer folds")
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y.ravel() if y.ndim == 1 else y, groups)]
