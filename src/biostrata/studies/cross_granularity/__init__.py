"""The cross-granularity study end to end: protein LM -> family vectors -> domain LM in three arms ->
CKA, neighbourhoods, delta and probes of every layer, and of the two models combined.

Steps (each writes its outputs under ``out`` and is skipped when they exist, so a killed run resumes):

1. ``protein/``: a small ESM-2 pre-trained by masked residues on the distinct per-domain protein
   segments of the domain table (``mibig_domains.tsv``).
2. ``proteins.h5``, ``families/``: its last-layer residue-mean embedding of every segment, and the
   mean per Pfam family (the protein-level "table").
3. ``arms/<arm>/``: the domain LM (BiGCARP's ByteNet) pre-trained on the BGC corpus in each arm
   (``random`` table; family vectors ``finetune``-d; family vectors ``frozen``), with weight
   snapshots at the start and after every epoch.
4. One pass of each final domain LM over the corpus: ``features/<arm>.npz`` (``ids`` and the per-BGC
   mean state of each layer ``L0``..``Ln``, a file ``biostrata probe`` and ``biostrata cka`` read;
   ``features/protein.npz`` likewise holds the per-BGC mean protein embedding), and
   ``features/<arm>.tokens.npz``: states at sampled tokens (Pfam-clan probe) and the domain states at
   the positions aligned with protein segments (by domain, k-th occurrence with k-th occurrence);
   ``analysis/<arm>.json``: layer x layer CKA over sampled tokens, and the CKA of the aligned states
   with the protein embeddings;
   ``analysis/checkpoints.csv``: over the snapshots, CKA of the table with its initialization and
   with the family vectors, and of the per-family mean last-layer state with the family vectors.
5. ``probes/product_class/<features>.json`` and ``probes/clan/<features>.json``: MIBiG product
   class (multi-label, MLP probe, iterative stratification grouped by identical domain lists,
   repeated k-fold) on protein-level, per-layer domain-level and combined features; Pfam clan
   (multi-class, linear probe, grouped by Pfam family) on token-level features.
6. ``cross_granularity.md`` (tables beside the published numbers), ``*.csv``, and the plots
   ``cka_checkpoints.png``, ``cka_layers.png``, ``probes.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.compat import moved
from biostrata.config import CrossGranularitySettings
from biostrata.errors import InputError
from biostrata.io import StepClock, atomic_write_npz, atomic_write_text, ensure
from biostrata.report.cross_granularity import plot_checkpoints, plot_layers, plot_probes, summary_markdown
from biostrata.studies.cross_granularity.passes import analyse_arm, checkpoint_curves, geometry, plan_analyses
from biostrata.studies.cross_granularity.probes import clan_probes, product_class_probes
from biostrata.studies.cross_granularity.steps import (
    family_table,
    load_inputs,
    pretrain_arm,
    protein_model,
    segment_vectors,
)
from biostrata.threads import cpu_threads

__all__ = ["CrossGranularitySettings", "run_cross_granularity"]

__getattr__ = moved(__name__, {"read_segments": "biostrata.data.clusters.proteins:read_domain_segments",
                               "PAPER": "biostrata.report.published:CROSS_GRANULARITY"})  # fmt: skip


def run_cross_granularity(out: str | Path, s: CrossGranularitySettings | None = None) -> dict[str, pd.DataFrame]:
    """Run (or resume) the study into ``out``; returns its tables (see module docstring)."""

    s = s or CrossGranularitySettings()
    # before any work, not after hours of training
    s.require_files(("corpus", "pfam", "classes", "domains"))
    out = Path(out)
    # every cached step depends on the settings; how the work runs (the operational ones) does not
    s.record(out / "settings.json")
    clock = StepClock(out / "timings.jsonl")
    with cpu_threads(s.threads):
        with clock("inputs"):
            data = load_inputs(s)
        with clock("protein LM"):
            plm = protein_model(out, s, data)
        with clock("protein embeddings"):
            store, table = family_table(out, s, data, plm)
        with clock("domain LM arms"):
            pretraining = {arm: pretrain_arm(out, s, data, arm, table) for arm in s.arms}
        with clock("corpus passes"):
            segvec = segment_vectors(store, data, plm.num_layers)
            bgcs = sorted(segvec)
            protein = {"ids": np.array(bgcs), "protein": np.stack([segvec[b].mean(0) for b in bgcs])}
            path = out / "features" / "protein.npz"
            ensure(path, lambda: atomic_write_npz(path, protein))
            plan = plan_analyses(s, data, segvec, set(table.families))
            if not plan.probe_ids:
                raise InputError(
                    "no BGC has product classes and a domain aligned with a protein segment; check the inputs"
                )
            passes = {arm: analyse_arm(out, s, data, plan, arm, segvec) for arm in s.arms}
        feats = {arm: f for arm, (f, _) in passes.items()}
        with clock("checkpoint CKA"):
            checkpoints = checkpoint_curves(out, s, data, plan, table)
        with clock("geometry"):
            shapes = geometry(out, s, plan, feats, segvec)
        with clock("product-class probes"):
            product = product_class_probes(out, s, data, plan, feats, segvec)
        with clock("clan probes"):
            clan = clan_probes(out, s, data, plan, feats, store, plm.num_layers)
    layer_cka = {
        arm: pd.DataFrame(r["layer_cka"], index=r["layers"], columns=r["layers"]) for arm, (_, r) in passes.items()
    }
    tables = {
        "pretraining": pretraining_table(pretraining),
        "checkpoints": checkpoints,
        "geometry": shapes,
        "product_class": product,
        "clan": clan,
        "protein_vs_layer": pd.DataFrame(
            {arm: r["protein_vs_layer_cka"] for arm, (_, r) in passes.items()},
            index=next(iter(passes.values()))[1]["layers"],
        ),
    }
    for arm, frame in layer_cka.items():
        tables[f"layer_cka_{arm}"] = frame
        atomic_write_text(out / f"layer_cka_{arm}.csv", frame.to_csv())
    plot_checkpoints(checkpoints, out / "cka_checkpoints.png")
    plot_layers(layer_cka, out / "cka_layers.png")
    plot_probes(product, out / "probes.png")
    counts = {"bgcs": len(data.corpus), "probe_bgcs": len(plan.probe_ids), "segments": len(data.records),
              "families_with_vectors": len(table.families), "cka_tokens": passes[s.arms[0]][1]["tokens"],
              "aligned_positions": passes[s.arms[0]][1]["aligned_positions"], "clan_tokens": len(plan.clan_labels)}  # fmt: skip
    atomic_write_text(out / "cross_granularity.md", summary_markdown(tables, s, counts))
    return tables


def pretraining_table(pretraining: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for arm, m in pretraining.items():
        rows.append({"arm": arm, "best_epoch": m["best"]["epoch"], "val_acc": m["best"]["val_acc"],
                     "val_ppl": m["best"]["val_ppl"], "initialized_rows": (m.get("init") or {}).get("initialized", 0),
                     "frozen_rows": m["frozen_rows"], "wall_s": m["wall_time_s"]})  # fmt: skip
    return pd.DataFrame(rows)
