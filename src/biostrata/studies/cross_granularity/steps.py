"""Steps 1-3 of the cross-granularity study: its inputs, the protein LM, the family vectors and the
domain LM of each arm (each skipped when its outputs exist)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.config import CrossGranularitySettings
from biostrata.io import ensure
from biostrata.studies import device_of


@dataclass
class Inputs:
    """The study's inputs: Pfam clans, the BGC corpus, the distinct protein segments, each BGC's domain
    hits in order, and the product classes."""

    pfam: object
    corpus: object
    records: list
    segments: dict[str, list[tuple[str, str]]]
    classes: pd.DataFrame


def load_inputs(s: CrossGranularitySettings) -> Inputs:
    from biostrata.data.clusters.corpus import read_classes, read_clusters
    from biostrata.data.clusters.pfam import PfamTable
    from biostrata.data.clusters.proteins import read_domain_proteins, read_domain_segments

    pfam = PfamTable.read(s.pfam)
    return Inputs(pfam, read_clusters(s.corpus, pfam), read_domain_proteins(s.domains),
                   read_domain_segments(s.domains), read_classes(s.classes))  # fmt: skip


def _training(s: CrossGranularitySettings) -> dict:
    """The pre-training options both models share."""
    return {
        "batch_size": s.batch_size,
        "lr": s.lr,
        "seed": s.seed,
        "accelerator": s.accelerator,
        "progress": s.progress,
    }


def protein_model(out: Path, s: CrossGranularitySettings, data: Inputs):
    from biostrata.models.protein_lm import load_protein_lm, small_protein_lm
    from biostrata.train.pretrain import pretrain_protein_lm

    if s.protein_model:  # a published ESM: no pre-training here
        return load_protein_lm(s.protein_model)
    run = out / "protein"

    def fit() -> None:
        plm = small_protein_lm(s.protein_layers, s.protein_dim, s.protein_heads, seed=s.seed)
        pretrain_protein_lm(plm, data.records, run, epochs=s.protein_epochs, max_length=s.protein_max_length,
                            **_training(s))  # fmt: skip

    return load_protein_lm(ensure(run / "metrics.json", fit).parent)


def family_table(out: Path, s: CrossGranularitySettings, data: Inputs, plm) -> tuple:
    from biostrata.data.clusters.proteins import family_members
    from biostrata.models.extract import extract_embeddings
    from biostrata.models.init_table import FamilyTable, family_table_from_store

    store, fam = out / "proteins.h5", out / "families"

    def make() -> None:
        extract_embeddings(
            plm,
            data.records,
            store,
            layers=[-1],
            device=device_of(s.accelerator),
            precision="fp32",
            progress=s.progress,
        )
        family_table_from_store(store, family_members(data.records), plm.num_layers).save_pretrained(fam)

    ensure(fam / "config.json", make)
    return store, FamilyTable.from_pretrained(fam)


def pretrain_arm(out: Path, s: CrossGranularitySettings, data: Inputs, arm: str, table) -> dict:
    from biostrata.train.pretrain import pretrain_domain_lm

    run = out / "arms" / arm
    return json.loads(ensure(run / "metrics.json", lambda: pretrain_domain_lm(
        data.corpus, run, preset=s.preset, arm=arm, family_table=None if arm == "random" else table, pfam=data.pfam,
        epochs=s.domain_epochs, snapshots=True, **_training(s), **{**s.domain_sizes, "d_embed": table.dim},
    )).read_text())  # fmt: skip


def segment_vectors(store: Path, data: Inputs, layer: int) -> dict[str, np.ndarray]:
    """BGC -> ``[segments, dim]`` protein embeddings of its domain hits, in :func:`~biostrata.data.clusters.proteins.read_domain_segments` order
    (a segment is embedded once, by its (family, sequence), however often it occurs)."""
    from biostrata.data.embedding_store import EmbeddingStore

    with EmbeddingStore(store) as st:
        vectors = st.array("mean", layer).astype(np.float64)
        row = {sid: i for i, sid in enumerate(st.ids)}
    rid = {(r.family, r.sequence): row[r.id] for r in data.records if r.id in row}
    return {bgc: vectors[[rid[h] for h in hits]] for bgc, hits in data.segments.items() if all(h in rid for h in hits)}
