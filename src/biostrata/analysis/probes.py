"""Probe tasks: how much a frozen representation says about a label, with sound cross-validation.

Probes follow the scikit-learn estimator API (``fit(X, y[, groups])``, ``predict_proba``,
``predict``; features are standardized inside, with statistics from the training rows only):

- :class:`LinearProbe`: logistic regression (one-vs-rest for multi-label, multinomial otherwise),
  its inverse regularization ``C`` chosen among ``Cs`` by an inner cross-validation on the training
  rows (same splitter, same groups) maximizing macro AUROC;
- :class:`MLPProbe`: a multilayer perceptron (default MLP(512, 256) one-vs-rest, as in the
  cross-granularity study), early-stopped on a validation part of the training rows.

Labels and splits (tasks, stratified and grouped k-fold): :mod:`biostrata.analysis.splits`.

Metrics per test fold (:func:`probe_metrics`): macro and per-class AUROC (classes without both
outcomes in the fold are left out of the mean), Matthews correlation (multi-label: the mean over
classes at threshold 0.5; multi-class: on the arg-max) and macro F1. :func:`cross_validate`
repeats k-fold over seeds; :meth:`ProbeResult.summary` reports the mean and standard deviation
over all folds and seeds and a bootstrap confidence interval of the metric of the out-of-fold
predictions (resampling examples, or whole groups when there are groups).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from biostrata.analysis.splits import TASKS, encode_labels, label_indicator, make_splits, task_of
from biostrata.compat import moved
from biostrata.errors import InputError, ParameterError

__all__ = ["auroc", "probe_metrics", "ProbeBase", "LinearProbe", "MLPProbe", "ProbeResult", "cross_validate",
           "check_cv_options", "bootstrap_ci"]  # fmt: skip

# -------------------------------------------------------------------------------------------------
# metrics
# -------------------------------------------------------------------------------------------------


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of 0/1 ``y`` by ``score`` (Mann-Whitney, ties counted half); NaN when
    ``y`` has only one value."""
    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _mcc(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(y, pred))


def probe_metrics(
    y: np.ndarray, scores: np.ndarray, task: str, classes: Sequence[str], only: Sequence[str] | None = None
) -> dict[str, float]:
    """``auroc_macro``, ``auroc[<class>]``, ``mcc`` and ``f1_macro`` of scores ``[n, C]`` (class
    probabilities; for ``binary`` column 1 is the positive class) against label codes or a 0/1 matrix.
    ``only`` limits the work to some of ``auroc_macro``, ``mcc``, ``f1_macro``."""
    from sklearn.metrics import f1_score

    if task not in TASKS:
        raise ParameterError("task", f"task={task!r}: choose one of {TASKS}")
    want = set(only) if only is not None else {"auroc_macro", "mcc", "f1_macro"}
    y = np.asarray(y)
    out: dict[str, float] = {}
    if task == "binary":
        pred = (scores[:, 1] >= 0.5).astype(np.int64)
        if "auroc_macro" in want:
            out["auroc_macro"] = auroc(y, scores[:, 1])
    else:
        onehot = label_indicator(y, len(classes))
        if "auroc_macro" in want:
            per_class = [auroc(onehot[:, c], scores[:, c]) for c in range(len(classes))]
            out["auroc_macro"] = float(np.nanmean(per_class)) if not np.isnan(per_class).all() else float("nan")
            if only is None:
                out.update({f"auroc[{name}]": v for name, v in zip(classes, per_class)})
        pred = (scores >= 0.5).astype(np.int64) if task == "multilabel" else scores.argmax(1)
    if "mcc" in want:
        if task == "multilabel":
            out["mcc"] = float(np.mean([_mcc(y[:, c], pred[:, c]) for c in range(y.shape[1])]))
        else:
            out["mcc"] = _mcc(y, pred)
    if "f1_macro" in want:
        labels = None if task != "multiclass" else np.unique(y)
        out["f1_macro"] = float(f1_score(y, pred, labels=labels, average="macro", zero_division=0))
    return out


# -------------------------------------------------------------------------------------------------
# probes
# -------------------------------------------------------------------------------------------------


def _proba(model: object, X: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """Class probabilities ``[n, C]`` with a column for every class, also those a training fold lacked."""
    p = np.asarray(model.predict_proba(X), dtype=np.float64)  # type: ignore[attr-defined]
    if task == "multilabel":
        return p
    out = np.zeros((len(X), n_classes))
    out[:, np.asarray(model.classes_, dtype=np.int64)] = p  # type: ignore[attr-defined]
    return out


class ProbeBase(ClassifierMixin, BaseEstimator):
    """Shared plumbing of the probes: label encoding, standardization (``self.standardize``), and
    probabilities for every class. A subclass gives ``_network(task, **params)``: an unfitted
    scikit-learn classifier for the (standardized) features."""

    def _network(self, task: str, **params: object) -> object:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> ProbeBase:
        """Fit on ``X [n, d]`` and labels (a vector, or a 0/1 matrix for multi-label)."""
        X, codes = self._prepare(X, y)
        self.model_ = _fit_quiet(self._pipeline(self.task_), X, codes)
        return self

    def _pipeline(self, task: str, **params: object) -> object:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        net = self._network(task, **params)
        return make_pipeline(StandardScaler(), net) if self.standardize else net

    def _prepare(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) != len(y):
            raise InputError(
                f"X must be [examples, features] with one row per label; got {X.shape} for {len(y)} labels"
            )
        if not np.isfinite(X).all():
            raise InputError(f"X: row {int(np.flatnonzero(~np.isfinite(X).all(1))[0])} has a non-finite value")
        y = np.asarray(y)
        self.task_ = task_of(y)
        if self.task_ == "multilabel":
            codes, self.classes_ = y.astype(np.int64), np.arange(y.shape[1])
        else:
            self.classes_, codes = np.unique(y.ravel(), return_inverse=True)
        self.n_classes_ = len(self.classes_)
        return X, codes

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``[n, C]``: per-class probabilities (multi-label: of each class being present)."""
        return _proba(self.model_, np.asarray(X, dtype=np.float64), self.task_, self.n_classes_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        p = self.predict_proba(X)
        if self.task_ == "multilabel":
            return (p >= 0.5).astype(np.int64)
        return self.classes_[p.argmax(1)]


class LinearProbe(ProbeBase):
    """Logistic regression with ``C`` chosen by inner cross-validation (see module docstring)."""

    def __init__(
        self,
        Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
        inner_splits: int = 3,
        max_iter: int = 1000,
        standardize: bool = True,
        random_state: int = 0,
    ) -> None:
        self.Cs, self.inner_splits, self.max_iter = Cs, inner_splits, max_iter
        self.standardize, self.random_state = standardize, random_state

    def _network(self, task: str, C: float = 1.0) -> object:
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        lr = LogisticRegression(C=C, max_iter=self.max_iter)
        return OneVsRestClassifier(lr) if task == "multilabel" else lr

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> LinearProbe:
        X, codes = self._prepare(X, y)
        if not len(self.Cs) or min(self.Cs) <= 0:
            raise ParameterError("Cs", f"Cs={list(self.Cs)}: give one or more values of C, each > 0")
        scores = {}
        if len(self.Cs) > 1:
            if len(X) < self.inner_splits:
                raise ParameterError(
                    "Cs",
                    f"{len(X)} training rows cannot fill the {self.inner_splits} inner folds that choose C; "
                    "give one C (Cs) or more examples",
                )
            splits = make_splits(codes, self.inner_splits, self.random_state, groups)
            for C in self.Cs:
                values = []
                for tr, te in splits:
                    model = _fit_quiet(self._pipeline(self.task_, C=C), X[tr], codes[tr])
                    p = _proba(model, X[te], self.task_, self.n_classes_)
                    values.append(
                        probe_metrics(codes[te], p, self.task_, list(self.classes_), ["auroc_macro"])["auroc_macro"]
                    )
                scores[float(C)] = float(np.nanmean(values))
            # the strongest regularization among the best (ties within 1e-9)
            best = max(scores.values())
            self.C_ = min(c for c, v in scores.items() if v >= best - 1e-9)
        else:
            self.C_ = float(self.Cs[0])
        self.inner_scores_ = scores
        self.model_ = _fit_quiet(self._pipeline(self.task_, C=self.C_), X, codes)
        return self


class MLPProbe(ProbeBase):
    """Multilayer perceptron probe (scikit-learn ``MLPClassifier``, Adam, ReLU), one network per class
    when ``one_vs_rest`` (multi-label only) else one network with a sigmoid/softmax output per class.
    With ``early_stopping`` training stops when the accuracy on 10% of the training rows has not
    improved for 10 epochs (scikit-learn's rule; with a few dozen rows turn it off)."""

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (512, 256),
        alpha: float = 1e-4,
        max_iter: int = 200,
        early_stopping: bool = True,
        one_vs_rest: bool = True,
        standardize: bool = True,
        random_state: int = 0,
    ) -> None:
        self.hidden_layer_sizes, self.alpha, self.max_iter = hidden_layer_sizes, alpha, max_iter
        self.early_stopping, self.one_vs_rest = early_stopping, one_vs_rest
        self.standardize, self.random_state = standardize, random_state

    def _network(self, task: str) -> object:
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.neural_network import MLPClassifier

        if not len(self.hidden_layer_sizes) or min(self.hidden_layer_sizes) < 1:
            raise ParameterError(
                "hidden_layer_sizes",
                f"hidden_layer_sizes={list(self.hidden_layer_sizes)}: give one or more layer widths, each at least 1",
            )
        mlp = MLPClassifier(
            tuple(self.hidden_layer_sizes),
            alpha=self.alpha,
            max_iter=self.max_iter,
            early_stopping=self.early_stopping,
            random_state=self.random_state,
        )
        return OneVsRestClassifier(mlp) if task == "multilabel" and self.one_vs_rest else mlp


def _fit_quiet(model: object, X: np.ndarray, y: np.ndarray) -> object:
    """Fit, without scikit-learn's convergence and constant-label chatter (the fit is still used)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
        return model.fit(X, y)  # type: ignore[attr-defined]


# -------------------------------------------------------------------------------------------------
# repeated cross-validation
# -------------------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """Per-fold metrics (``folds``: one row per seed and fold) and out-of-fold class probabilities
    (``oof[seed]`` ``[n, C]``) of a repeated k-fold cross-validation."""

    folds: pd.DataFrame
    oof: dict[int, np.ndarray]
    y: np.ndarray
    task: str
    classes: list[str]
    groups: np.ndarray | None = None

    def summary(
        self,
        metrics: Sequence[str] = ("auroc_macro", "mcc", "f1_macro"),
        n_boot: int = 1000,
        level: float = 0.95,
        seed: int = 0,
        ci: Sequence[str] = ("auroc_macro",),
    ) -> dict[str, float]:
        """For each metric: ``<m>`` (mean over folds and seeds) and ``<m>_sd`` (their standard
        deviation); for the metrics in ``ci``, ``<m>_oof``: the metric of the pooled out-of-fold
        predictions (mean over seeds) and ``<m>_lo`` / ``<m>_hi``: its bootstrap interval (``n_boot = 0``
        skips both); plus per-class AUROC means."""
        out: dict[str, float] = {"folds": int(self.folds["fold"].nunique()), "seeds": len(self.oof), "n": len(self.y)}
        for m in metrics:
            out[m] = float(self.folds[m].mean())
            out[f"{m}_sd"] = float(self.folds[m].std(ddof=1)) if len(self.folds) > 1 else float("nan")
            if n_boot and m in ci:
                pooled = [probe_metrics(self.y, p, self.task, self.classes, [m])[m] for p in self.oof.values()]
                out[f"{m}_oof"] = float(np.nanmean(pooled))
                lo, hi = bootstrap_ci(
                    self.y, list(self.oof.values()), self.task, self.classes, m, self.groups, n_boot, level, seed
                )
                out[f"{m}_lo"], out[f"{m}_hi"] = lo, hi
        for c in self.classes:
            key = f"auroc[{c}]"
            if key in self.folds:
                out[key] = float(self.folds[key].mean())
        return out


def cross_validate(
    estimator: BaseEstimator,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    n_splits: int = 5,
    seeds: Sequence[int] = (0,),
    class_names: Sequence[str] | None = None,
    progress: bool = False,
    desc: str = "probe",
) -> ProbeResult:
    """Repeated stratified (grouped) k-fold: for each seed, new folds (:func:`make_splits`) and a fresh
    clone of ``estimator`` with ``random_state = seed`` per fold (``groups`` reach ``fit`` when it takes
    them, e.g. for :class:`LinearProbe`'s inner splits). Same seeds, same numbers."""
    from tqdm.auto import tqdm

    check_cv_options(n_splits, seeds)
    X = np.asarray(X, dtype=np.float64)
    codes, names, task = encode_labels(y)
    if len(X) != len(codes):
        raise InputError(f"X has {len(X)} rows but there are {len(codes)} labels")
    if class_names is not None:
        if len(class_names) != len(names):
            raise InputError(f"class_names has {len(class_names)} names for {len(names)} classes")
        names = [str(c) for c in class_names]
    groups = None if groups is None else np.asarray(groups)
    if groups is not None and len(groups) != len(codes):
        raise InputError(f"groups has {len(groups)} entries for {len(codes)} examples")
    _check_class_sizes(codes, task, names, n_splits, groups)
    takes_groups = "groups" in inspect.signature(estimator.fit).parameters
    rows, oof = [], {}
    plan = [(s, k, tr, te) for s in seeds for k, (tr, te) in enumerate(make_splits(codes, n_splits, s, groups))]
    for seed, k, tr, te in tqdm(plan, desc=desc, disable=not progress, leave=False):
        model = clone(estimator)
        if "random_state" in model.get_params():
            model.set_params(random_state=seed)
        kwargs = {"groups": groups[tr]} if takes_groups and groups is not None else {}
        model.fit(X[tr], codes[tr], **kwargs)
        p = _proba(model, X[te], task, len(names))
        oof.setdefault(seed, np.full((len(X), len(names)), np.nan))[te] = p
        row = {"seed": seed, "fold": k, "n_train": len(tr), "n_test": len(te)}
        if hasattr(model, "C_"):
            row["C"] = model.C_
        rows.append({**row, **probe_metrics(codes[te], p, task, names)})
    return ProbeResult(pd.DataFrame(rows), oof, codes, task, names, groups)


def check_cv_options(n_splits: int = 5, seeds: Sequence[int] = (0,), n_boot: int = 0) -> None:
    """Refuse cross-validation options that cannot give a sound number: fewer than 2 folds, no seed or a
    repeated one (it would count the same folds twice), a negative number of bootstrap resamples."""
    if n_splits < 2:
        raise ParameterError("n_splits", f"n_splits={n_splits}: cross-validation needs at least 2 folds")
    if not len(seeds):
        raise ParameterError("seeds", "seeds=[]: give at least one seed")
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ParameterError(
            "seeds",
            f"seeds={list(seeds)}: {repeated[0]} is given twice; a repeated seed repeats the same folds and would "
            "count them twice",
        )
    if n_boot < 0:
        raise ParameterError("n_boot", f"n_boot={n_boot}: must be >= 0 (0: no interval)")


def _check_class_sizes(
    codes: np.ndarray, task: str, names: Sequence[str], n_splits: int, groups: np.ndarray | None
) -> None:
    """Every class must be able to reach every test fold: at least ``n_splits`` examples (with groups:
    groups) with it and, multi-label, as many without it. Otherwise some folds test without it and
    their AUROC, MCC and F1 silently leave it out or score it 0."""
    unit = "group(s)" if groups is not None else "example(s)"
    units = len(np.unique(groups)) if groups is not None else len(codes)
    if n_splits > units:
        raise ParameterError("n_splits", f"n_splits={n_splits}: more folds than the {units} {unit}")
    onehot = label_indicator(codes, len(names))
    outcomes = (1, 0) if task == "multilabel" else (1,)
    for c, name in enumerate(names):
        for outcome in outcomes:
            rows = onehot[:, c] == outcome
            count = len(np.unique(groups[rows])) if groups is not None else int(rows.sum())
            if count >= n_splits:
                continue
            verb = ("is in" if groups is not None else "has") if outcome else "is absent from only"
            where = f"{verb} {count} {unit}"
            fix = f"use at most {count} folds, or leave the class out" if count >= 2 else "leave the class out"
            raise ParameterError(
                "n_splits",
                f"n_splits: class {name!r} {where}, fewer than the {n_splits} folds: some test folds would lack "
                f"it; {fix}",
            )


def bootstrap_ci(
    y: np.ndarray,
    scores: Sequence[np.ndarray],
    task: str,
    classes: Sequence[str],
    metric: str = "auroc_macro",
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of ``metric`` of out-of-fold ``scores`` (one array per seed, averaged over
    seeds in every resample), resampling examples with replacement, or whole groups when given."""
    if not 0 < level < 1:
        raise ParameterError("level", f"level={level}: must be in (0, 1)")
    check_cv_options(n_boot=n_boot)
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(len(y))]
    else:
        _, inverse = np.unique(groups, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        vals = [probe_metrics(y[idx], s[idx], task, classes, [metric])[metric] for s in scores]
        values.append(float(np.nanmean(vals)) if not np.isnan(vals).all() else float("nan"))
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


__getattr__ = moved(
    __name__,
    {"read_labels": "biostrata.analysis.probe_files", "probe_files": "biostrata.analysis.probe_files"},
)  # the old names work, with a warning, for one release
