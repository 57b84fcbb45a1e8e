"""The analysis steps of the strata study: the representations read back and aligned by instance id, their
delta, CKA and probes, the width comparison of the domain LMs, and the per-family UMAP inputs. Probe
results are cached one file per representation (``probes/<task>/<name>.json``), so a killed run resumes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from biostrata.config import StrataSettings
from biostrata.errors import InputError
from biostrata.io import cached
from biostrata.studies.strata.steps import NO_CLANS, Inputs, run_name, table_curvature


@dataclass
class Reps:
    """Every representation (``stratum/model/layer`` -> ``[instances, dim]``, rows in the study's order) and
    the curvature of those whose rows are tangent vectors of a hyperboloid."""

    arrays: dict[str, np.ndarray]
    curvatures: dict[str, float]


def read_reps(paths: list[Path], ids: list[str]) -> Reps:
    """The representation files of :mod:`~biostrata.studies.strata.steps` through the one reader
    (:func:`~biostrata.analysis.representations.read_representations`), with their curvatures."""
    from biostrata.analysis.representations import read_representations

    arrays, curvatures = {}, {}
    for path in paths:
        stratum, model = path.name.removesuffix(".npz").split(".", 1)
        reps = read_representations(path)
        if reps.ids != ids:
            raise InputError(f"{path}: its rows are not the study's instances; delete it to rebuild it")
        curvature = json.loads(path.with_suffix(".json").read_text())["curvature"]
        for layer in sorted(int(key[1:]) for key in reps.layers):
            name = f"{stratum}/{model}/{layer}"
            arrays[name] = reps.layers[f"L{layer}"].astype(np.float64)
            if str(layer) in curvature:
                curvatures[name] = float(curvature[str(layer)])
    return Reps(arrays, curvatures)


@dataclass
class Plan:
    """Which rows each analysis uses (the same for every representation); ``skipped``: the probes left out
    (``clan probe``, ``product-class probe``) and why, their rows then empty."""

    sample: np.ndarray  # study rows for delta and CKA
    clan_rows: np.ndarray  # study rows of the clan probe (families no CNN saw)
    clan_labels: np.ndarray
    clan_groups: np.ndarray  # Pfam family: the probe must place unseen families in their clan
    clusters: list[str]  # clusters of the product-class probe
    product: np.ndarray  # [clusters, classes] 0/1
    product_groups: np.ndarray
    skipped: dict[str, str]


def plan_analyses(s: StrataSettings, data: Inputs) -> Plan:
    # one generator per sample, so that changing one sample's size leaves the other as it was
    rng_sample, rng_clan = (np.random.default_rng([s.seed, k]) for k in range(2))
    study = data.study
    n = len(study)
    sample = np.sort(rng_sample.choice(n, size=min(s.instances, n), replace=False))
    skipped = {}
    # clan probe: instances of the families held out from every model trained on clan labels
    held = study[study["family"].isin(data.probe_families)]
    rows = sample_per_group(held["family"], s.instances, rng_clan)
    if held["clan"].nunique() < 2:
        rows = rows[:0]
        skipped["clan probe"] = NO_CLANS if data.pfam is None else (
            f"fewer than two clans have {max(s.clan_min_families, s.folds)} families (clan_min_families, at least "
            "folds) among the study's instances; lower them or give more data")  # fmt: skip
    # product-class probe: the clusters with a class; folds are grouped by domain list, so a class needs a
    # group in every fold
    classes = data.classes if data.classes is not None else pd.DataFrame(index=pd.Index([], dtype=str))
    labelled = [b for b in sorted(set(study["bgc_id"])) if b in classes.index]
    product = classes.loc[labelled]
    groups = np.array([data.group_of[b] for b in labelled])
    spread = {c: len(set(groups[product[c].to_numpy() > 0])) for c in product.columns}
    product = product[[c for c, n in spread.items() if n >= s.folds]]
    keep = product.to_numpy().sum(1) > 0
    if product.shape[1] < 2:
        keep[:] = False
        skipped["product-class probe"] = (
            "no product classes (classes; an annotation has none)" if data.classes is None else
            f"fewer than two product classes occur in {s.folds} distinct clusters (folds); give more data")  # fmt: skip
    clusters = [b for b, k in zip(labelled, keep) if k]
    return Plan(sample, rows, study.loc[rows, "clan"].to_numpy(), study.loc[rows, "family"].to_numpy(), clusters,
                product.to_numpy()[keep].astype(np.int64), groups[keep], skipped)  # fmt: skip


def sample_per_group(groups: pd.Series, total: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted index labels of at most ``total`` rows of ``groups`` that keep every group: up to ``cap`` rows
    of each, the largest cap that fits (a uniform sample of rows could drop a whole family, and with it a
    clan from the grouped folds)."""
    sizes = groups.value_counts()
    cap = int(sizes.max()) if len(sizes) else 0
    while cap > 1 and int(np.minimum(sizes, cap).sum()) > total:
        cap -= 1
    picked = []
    for group in sorted(sizes.index):
        labels = groups.index[groups.to_numpy() == group].to_numpy()
        picked.append(labels if len(labels) <= cap else rng.choice(labels, size=cap, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=np.int64)


def group_means(x: np.ndarray, keys: Sequence[str], groups: Sequence[str]) -> np.ndarray:
    """Rows of ``x`` (one per study instance) averaged per key (e.g. cluster, family), in the order of
    ``groups``."""
    from biostrata.analysis.fusion import pool

    names, means = pool(x, np.asarray(keys, dtype=str))
    index = {b: k for k, b in enumerate(names)}
    return means[[index[b] for b in groups]]


def probes(out: Path, s: StrataSettings, data: Inputs, plan: Plan, reps: Reps) -> pd.DataFrame:
    """Clan probe (per instance) and product-class probe (per cluster, the instances' mean) of every
    representation: one row per representation, ``clan_*`` and ``product_*`` metrics with spread over seeds
    (none of a probe in ``plan.skipped``)."""
    from biostrata.studies.strata.measures import probe_summary

    options = dict(folds=s.folds, seeds=s.probe_seeds, C=s.probe_C)
    rows = []
    for name, x in tqdm(reps.arrays.items(), desc="probes", unit="rep", disable=not s.progress):
        file = name.replace("/", ".") + ".json"
        clan = cached(out / "probes" / "clan" / file,
                       lambda x=x: probe_summary(x[plan.clan_rows], plan.clan_labels, plan.clan_groups, **options)
                       ) if len(plan.clan_rows) else {}  # fmt: skip
        product = cached(out / "probes" / "product_class" / file,
                          lambda x=x: probe_summary(group_means(x, data.study["bgc_id"], plan.clusters), plan.product,
                                                    plan.product_groups, **options)) if plan.clusters else {}  # fmt: skip
        # keys sorted: a cached result (JSON, sorted) and a fresh one give the same columns
        rows.append({"name": name, **{f"clan_{k}": clan[k] for k in sorted(clan)},
                     **{f"product_{k}": product[k] for k in sorted(product)}})  # fmt: skip
    return pd.DataFrame(rows)


def widths(out: Path, s: StrataSettings, data: Inputs, plan: Plan) -> pd.DataFrame:
    """One row per domain LM of the width comparison (variant x width x seed, the variant in column
    ``geometry``; the same split, masks and
    seeds in both geometries): validation and test masked-token accuracy and perplexity, clan
    (``clan_probe``: macro AUROC; ``clan_probe_f1``) and product-class probes (macro AUROC) of the last
    layer, and the relative delta of each layer (``delta_L<i>``; ``_lorentz``: on the hyperboloid)."""
    from biostrata.studies.strata.measures import delta_table, probe_summary

    options = dict(folds=s.folds, seeds=s.probe_seeds, C=s.probe_C)
    rows = []
    for geometry in s.domain_variants:
        for width in s.widths:
            for seed in s.domain_seeds:
                run = out / "domain" / run_name(geometry, width, seed)

                def evaluate(run: Path = run) -> dict:
                    metrics = json.loads((run / "metrics.json").read_text())
                    with np.load(run / "states.npz") as z:
                        layers = sorted(int(k[1:]) for k in z.files if k.startswith("I"))
                        inst = {i: z[f"I{i}"].astype(np.float64) for i in layers}
                        pooled = z["C" + str(layers[-1])].astype(np.float64)
                        row = {b: k for k, b in enumerate(z["clusters"])}
                    last = inst[layers[-1]]
                    curv = {str(i): k for i, k in table_curvature(metrics["config"]).items()}
                    deltas = delta_table({str(i): inst[i][plan.sample] for i in layers}, curv,
                                         samples=s.delta_samples, repeats=s.delta_repeats, seed=s.seed)  # fmt: skip
                    result = {"params": metrics["params"], "best_epoch": metrics["best"]["epoch"],
                              "val_acc": metrics["best"]["val_acc"], "val_ppl": metrics["best"]["val_ppl"]}  # fmt: skip
                    if len(plan.clan_rows):
                        clan = probe_summary(last[plan.clan_rows], plan.clan_labels, plan.clan_groups, **options)
                        result |= {"clan_probe": clan["auroc_macro"], "clan_probe_f1": clan["f1_macro"]}
                    if plan.clusters:
                        product = probe_summary(pooled[[row[b] for b in plan.clusters]], plan.product,
                                                plan.product_groups, **options)  # fmt: skip
                        result["product_probe"] = product["auroc_macro"]
                    for r in deltas.itertuples():
                        key = f"delta_L{r.name}" + ("_lorentz" if r.metric == "lorentz" else "")
                        result[key] = r.relative_delta
                    return result

                test = json.loads((run / "test.json").read_text())
                result = cached(run / "evaluation.json", evaluate)
                rows.append({"geometry": geometry, "width": width, "seed": seed, "test_acc": test["acc"],
                             "test_ppl": test["ppl"], **{k: result[k] for k in sorted(result)}})  # fmt: skip
    return pd.DataFrame(rows)


def family_means(data: Inputs, reps: Reps, name: str) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Per-family mean of a representation over the study instances (families in sorted order), and each
    family's colourings: its Pfam clan, and (with product classes) the product class most frequent among the
    labelled clusters it occurs in (ties: the first class by name; none: "")."""
    study = data.study
    families = sorted(set(study["family"]))
    means = group_means(reps.arrays[name], study["family"], families)
    clans = study.groupby("family")["clan"].first()
    colourings = {"Pfam clan": [clans[f] for f in families]}
    if data.classes is not None:
        classes = data.classes[sorted(data.classes.columns)]
        votes = classes.reindex(study["bgc_id"]).fillna(0).groupby(study["family"].to_numpy()).sum()
        colourings["product class"] = [str(votes.loc[f].idxmax()) if f in votes.index and votes.loc[f].max() > 0
                                       else "" for f in families]  # fmt: skip
    return means, colourings
