"""The strata study: the same domain instances (of MIBiG, or of a user's ``biostrata annotate`` output) seen
as DNA, protein segment, domain token in its cluster, and cluster; representations of each stratum layer by
layer, in Euclidean and hyperbolic geometry, compared by Gromov delta, CKA and probes.

Instances (:func:`biostrata.data.clusters.domains.read_instances`) are keyed by id; the study keeps those seen at
every stratum (a token of the corpus, a reading frame checked by the HMM or unique). Without a Pfam clans
table (or with fewer than two clans to learn) the clan-trained CNNs and the clan probe are skipped, without
product classes (an annotation has none) the product-class probe; ``skipped.csv`` (and ``strata.md``) says
what was left out and why. One split of the
clusters (train / valid / test, identical domain lists together) serves every model. Steps, each skipped
when its files exist (a killed run resumes; ``settings.json`` must match):

1. nucleotide: k-mer spectra (``layer`` = k), and the genome CNNs of Khan et al. (Euclidean and Lorentz)
   trained to tell the Pfam clan from the domain's DNA (``nucleotide/<model>/``; classes: the most
   frequent clans of the training clusters; the clan probe's families left out), their layers pooled
   over each sequence's own positions;
2. amino acid: a protein LM (given, or a small ESM-2 trained on the training clusters' segments, best
   epoch on the validation clusters'), residue means of every layer;
3. domain: the domain LM (BiGCARP's ByteNet) in each of ``domain_variants`` (``euclidean``; ``lorentz``:
   token table on the hyperboloid and distance logits; ``euclidean-distance``: the flat control of the
   lorentz head) at every width and seed, best epoch on the validation clusters, masked-token
   accuracy and perplexity on the test clusters (once); states at each instance (``domain``) and their
   cluster means (``cluster``) from the seed-0 models at ``width``;
4. analyses: relative Gromov delta of every representation with calibration spaces (``delta.csv``), linear
   CKA between all of them on the same instances (``cka.csv``), clan probe per instance (families held out
   from the CNNs, folds grouped by family) and product-class probe per cluster (``probes.csv``), the width comparison
   (``widths.csv``), and pictures (``delta.png``, ``cka.png``, ``widths.png``, ``umap_<variant>.png``);
5. ``strata.md``: every number with the settings and code version.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from biostrata.config import StrataSettings
from biostrata.errors import InputError
from biostrata.io import StepClock, atomic_write_json, atomic_write_text
from biostrata.studies.strata.compare import family_means, plan_analyses, probes, read_reps, widths
from biostrata.studies.strata.steps import (
    NO_CLANS,
    cnn_reps,
    domain_reps,
    domain_run,
    kmer_reps,
    load_inputs,
    protein_reps,
)
from biostrata.threads import cpu_threads

__all__ = ["StrataSettings", "run_strata"]


def run_strata(out: str | Path, s: StrataSettings | None = None) -> dict[str, pd.DataFrame]:
    """Run (or resume) the study into ``out``; returns its tables (see module docstring)."""
    from biostrata.analysis.cka import cka_matrix
    from biostrata.data.clusters.domains import clan_classes, clan_dna_splits
    from biostrata.provenance import code_version
    from biostrata.report.strata import plot_delta, plot_strata_cka, plot_umap, plot_widths, summary_markdown
    from biostrata.studies.strata.measures import calibration_table, delta_table
    from biostrata.train.run import check_splits

    s = s or StrataSettings()
    # before any work, not after an hour of training (no clans table or class table: parts are skipped)
    s.require_files(("domains", "corpus", *(k for k in ("pfam", "classes") if getattr(s, k))))
    out = Path(out)
    s.record(out / "settings.json")
    clock = StepClock(out / "timings.jsonl")
    facts: dict = {"code_version": code_version()}
    with cpu_threads(s.threads):
        with clock("inputs"):
            data = load_inputs(s)
            clans = clan_classes(data.instances, data.split_of, s.clan_min_count, s.clan_classes, data.probe_families)
        skipped = {part: "asked (skip)" for part in s.skip}
        if "cnn" not in skipped:  # the CNNs need two clan classes or more in every split
            try:
                check_splits(clan_dna_splits(data.instances, data.split_of, clans, s.domains, data.probe_families))
            except InputError as err:
                skipped["cnn"] = NO_CLANS if data.pfam is None else (
                    f"{err} (the classes: the clans with clan_min_count={s.clan_min_count} training instances, "
                    "the clan probe's families left out); lower it or give more data")  # fmt: skip
        paths = []
        with clock("nucleotide"):
            if "kmer" not in s.skip:
                paths.append(kmer_reps(out, s, data))
            if "cnn" not in skipped:
                for model in s.cnn_models:
                    path, metrics = cnn_reps(out, s, data, model, clans)
                    paths.append(path)
                    facts[f"cnn_{model}"] = {k: metrics[k] for k in ("dev_mcc", "test_mcc", "test_accuracy",
                                                                     "best_epoch", "params", "num_classes")}  # fmt: skip
        with clock("amino acid"):
            if "protein" not in s.skip:
                path, metrics = protein_reps(out, s, data)
                paths.append(path)
                facts["protein"] = {k: metrics[k] for k in ("best", "params") if k in metrics}
        with clock("domain LMs"):
            for variant in s.domain_variants:
                for width in s.widths if "widths" not in s.skip else [s.width]:
                    for seed in s.domain_seeds if "widths" not in s.skip else s.domain_seeds[:1]:
                        domain_run(out, s, data, variant, width, seed)
            for variant in s.domain_variants:
                paths.extend(domain_reps(out, s, data, variant))
        ids = list(data.study["instance_id"])
        reps = read_reps(paths, ids)
        plan = plan_analyses(s, data)
        skipped |= plan.skipped
        with clock("delta"):
            sample = {k: x[plan.sample] for k, x in reps.arrays.items()}
            deltas = delta_table(sample, reps.curvatures, samples=s.delta_samples, repeats=s.delta_repeats, seed=s.seed)
            calibration = calibration_table(s.delta_samples, s.delta_repeats, s.seed)
        with clock("cka"):
            cka = cka_matrix(sample)
        with clock("probes"):
            probe_table = probes(out, s, data, plan, reps)
        with clock("widths"):
            width_table = widths(out, s, data, plan) if "widths" not in s.skip else pd.DataFrame()
        with clock("pictures"):
            plot_delta(_delta_frame(deltas, reps.curvatures), out / "delta.png",
                       dict(zip(calibration["space"], calibration["relative_delta"])))  # fmt: skip
            plot_strata_cka(cka, out / "cka.png")
            if len(width_table):
                plot_widths(width_table, out / "widths.png")
            for variant in s.domain_variants:
                name = f"domain/{variant}/{s.domain_layers}"
                vectors, colourings = family_means(data, reps, name)
                plot_umap(vectors, colourings, out / f"umap_{variant}.png", seed=s.seed, n_neighbors=s.umap_neighbors,
                          title=f"domain LM ({variant}, width {s.width}), last layer, mean per Pfam family")  # fmt: skip
    facts |= {"instances": len(data.instances), "study_instances": len(data.study), "clusters": data.study["bgc_id"].nunique(),
              "splits": {k: int(v) for k, v in data.study["bgc_id"].map(data.split_of).value_counts().items()},
              "clan_classes": len(clans), "clan_probe_rows": len(plan.clan_rows), "clan_probe_clans": len(set(plan.clan_labels)),
              "clan_probe_families": len(set(plan.clan_groups)), "held_out_families": len(data.probe_families), "product_clusters": len(plan.clusters),
              "sample": len(plan.sample)}  # fmt: skip
    tables = {"delta": deltas, "calibration": calibration, "cka": cka, "probes": probe_table, "widths": width_table,
              "skipped": pd.DataFrame(list(skipped.items()), columns=["part", "reason"])}  # fmt: skip
    for key, frame in tables.items():
        atomic_write_text(out / f"{key}.csv", frame.to_csv(index=key == "cka"))
    atomic_write_json(out / "facts.json", facts)
    atomic_write_text(out / "strata.md", summary_markdown(tables, s, facts))
    return tables


def _delta_frame(deltas: pd.DataFrame, curvatures: dict[str, float]) -> pd.DataFrame:
    """The delta table in the plot's terms: stratum, model (``+lorentz`` when measured on the hyperboloid), layer,
    and ``hyperbolic``: whether a representation of the model, in any stratum, has a curvature (its layer's
    ``layer_manifold``, or a lorentz domain LM's table), keyed ``stratum/model/layer``."""
    parts = deltas["name"].str.split("/", expand=True)
    hyperbolic = {name.split("/")[1] for name in curvatures}
    return pd.DataFrame({"stratum": parts[0], "model": parts[1] + deltas["metric"].map({"euclidean": "", "lorentz": " (lorentz metric)"}),
                         "layer": parts[2].astype(int), "relative_delta": deltas["relative_delta"],
                         "relative_delta_std": deltas["relative_delta_std"], "hyperbolic": parts[1].isin(hyperbolic)})  # fmt: skip
