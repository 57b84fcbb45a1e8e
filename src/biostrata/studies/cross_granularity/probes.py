"""Step 5 of the cross-granularity study: product-class probes (per BGC) and Pfam-clan probes (per
token), each feature set cross-validated once and its summary kept as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from biostrata.analysis.fusion import ProjectionFusion
from biostrata.analysis.probes import LinearProbe, MLPProbe, cross_validate
from biostrata.config import CrossGranularitySettings
from biostrata.io import atomic_write_csv, atomic_write_text, cached
from biostrata.studies.cross_granularity.passes import Plan
from biostrata.studies.cross_granularity.steps import Inputs


def cached_probe(path: Path, estimator, X: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str] | None,
           s: CrossGranularitySettings, meta: dict, seeds: Sequence[int]) -> dict:  # fmt: skip
    """Cross-validate one feature set (skipped when ``path`` exists); per-fold rows go beside it."""

    def compute() -> dict:
        res = cross_validate(estimator, X, y, groups, s.folds, seeds, names, desc=meta["features"], progress=s.progress)
        atomic_write_csv(path.with_suffix(".folds.csv"), res.folds.assign(features=meta["features"]))
        return {**meta, **res.summary(n_boot=s.n_boot), "dim": int(X.shape[1])}

    # key order kept: the table's column order
    return cached(path, compute, write=lambda p, summary: atomic_write_text(p, json.dumps(summary, indent=2) + "\n"))


def product_class_probes(out: Path, s: CrossGranularitySettings, data: Inputs, plan: Plan,
                          feats: dict[str, dict], segvec: dict[str, np.ndarray]) -> pd.DataFrame:  # fmt: skip
    corpus = {c.id: c for c in data.corpus}
    ids = plan.probe_ids
    y = data.classes.loc[ids].to_numpy(dtype=np.int64)
    names = list(data.classes.columns)
    _, groups = np.unique([" ".join(corpus[b].domains) for b in ids], return_inverse=True)
    # a class needs a group with it and one without it in every test fold (cross_validate refuses it otherwise)
    keep = np.array([min(len(np.unique(groups[y[:, c] == v])) for v in (0, 1)) >= s.folds for c in range(len(names))])
    y, names = y[:, keep], [n for n, k in zip(names, keep) if k]
    mlp = MLPProbe(tuple(s.mlp_hidden), one_vs_rest=s.one_vs_rest)
    protein = np.stack([segvec[b].mean(0) for b in ids])
    protein_aligned = np.stack([segvec[b][plan.pairs[b][:, 1]].mean(0) for b in ids])
    sets: list[tuple[str, str, str, np.ndarray, object]] = [("protein", "protein", "-", protein, mlp)]
    first = next(iter(feats.values()))
    row_of = {b: i for i, b in enumerate(first["ids"])}
    rows = np.array([row_of[b] for b in ids])
    n_layers = sum(1 for k in first if k.startswith("pooled_L"))
    for arm, f in feats.items():
        for layer in range(n_layers):
            sets.append((f"domain/{arm}/L{layer}", "domain", arm, f[f"pooled_L{layer}"][rows], mlp))
        last = f[f"aligned_L{n_layers - 1}"]
        both = np.concatenate([protein_aligned, last], 1)
        sets.append((f"combined/{arm}", "concat", arm, both, mlp))
        sets.append((f"fused/{arm}", "projection", arm, both, ProjectionFusion(split=protein_aligned.shape[1])))
    results = []
    for name, kind, arm, X, est in tqdm(sets, desc="product-class probes", disable=not s.progress):
        meta = {"features": name, "kind": kind, "arm": arm, "probe": type(est).__name__}
        layer = int(name.rsplit("L", 1)[1]) if kind == "domain" else None
        summary = cached_probe(out / "probes" / "product_class" / f"{name.replace('/', '_')}.json", est, X, y, groups,
                         names, s, meta, s.seeds)  # fmt: skip
        results.append({**summary, "layer": layer})
    frame = pd.DataFrame(results)
    atomic_write_text(out / "product_class.csv", frame.to_csv(index=False))
    return frame


def clan_probes(out: Path, s: CrossGranularitySettings, data: Inputs, plan: Plan, feats: dict[str, dict],
                 store: Path, protein_layer: int) -> pd.DataFrame:  # fmt: skip
    from biostrata.data.embedding_store import EmbeddingStore

    families = np.array([f for f, _ in plan.clan_labels])
    clans = np.array([c for _, c in plan.clan_labels])
    probe = LinearProbe(Cs=tuple(s.clan_Cs), inner_splits=3)
    sets = []
    first = next(iter(feats.values()))
    n_layers = sum(1 for k in first if k.startswith("clan_L"))
    for arm, f in feats.items():
        for layer in sorted({0, n_layers // 2, n_layers - 1}):
            sets.append((f"domain/{arm}/L{layer}", arm, layer, f[f"clan_L{layer}"], clans, families))
    # protein level: the same number of segments per family, of the same families
    rng = np.random.default_rng(s.seed)
    by_family: dict[str, list[str]] = {}
    for r in data.records:
        by_family.setdefault(r.family, []).append(r.id)
    fam_clan = dict(plan.clan_labels)
    pick = [
        (f, rid)
        for f in sorted(set(families) & set(by_family))
        for rid in rng.choice(by_family[f], size=min(s.clan_tokens_per_family, len(by_family[f])), replace=False)
    ]
    if pick:
        with EmbeddingStore(store) as st:
            x = st.array("mean", protein_layer, ids=[rid for _, rid in pick]).astype(np.float64)
        pf = np.array([f for f, _ in pick])
        sets.append(("protein", "-", None, x, np.array([fam_clan[f] for f in pf]), pf))
    results = []
    for name, arm, layer, X, yc, groups in tqdm(sets, desc="clan probes", disable=not s.progress):
        counts = pd.Series(groups).groupby(yc).nunique()
        ok = np.isin(yc, counts[counts >= s.folds].index)  # a clan needs a family in every fold
        meta = {
            "features": name,
            "arm": arm,
            "layer": layer,
            "probe": "LinearProbe",
            "clans": int(len(np.unique(yc[ok]))),
            "families": int(len(np.unique(groups[ok]))),
        }
        results.append(cached_probe(out / "probes" / "clan" / f"{name.replace('/', '_')}.json", probe, X[ok], yc[ok],
                              groups[ok], None, s, meta, s.clan_seeds))  # fmt: skip
    frame = pd.DataFrame(results)
    atomic_write_text(out / "clan.csv", frame.to_csv(index=False))
    return frame
