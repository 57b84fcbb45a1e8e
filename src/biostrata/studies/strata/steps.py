"""The model steps of the strata study: its inputs, and the representations of the study's instances at
the nucleotide, amino-acid and domain strata (each step skipped when its files exist).

Representation files ``reps/<stratum>.<model>.npz`` hold ``ids`` (instance ids, the study's order) and one
``L<layer>`` float32 array ``[instances, dim]`` per layer, so that ``biostrata cka``, ``probe`` and ``delta``
read them; ``reps/<stratum>.<model>.json`` gives, for each hyperbolic layer, the magnitude K of the
curvature -K of the hyperboloid whose tangent space at the origin its rows are in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.config import DOMAIN_VARIANTS, StrataSettings, TrainConfig
from biostrata.errors import InputError
from biostrata.io import atomic_write_json, atomic_write_npz, cached, ensure
from biostrata.studies import device_of


@dataclass
class Inputs:
    """The study's inputs. ``instances``: every domain instance (:func:`~biostrata.data.clusters.domains.read_instances`);
    ``study``: those seen at every stratum (a corpus token, a checked reading frame), in a fixed order;
    ``split_of``: cluster id -> train/valid/test; ``group_of``: cluster id -> its split group (identical
    domain lists, or a shared DNA or protein sequence); ``classes``: product classes (multi-hot, by cluster
    id; None without a class table); ``probe_families``: the families of the clan probe, never seen by a CNN.
    ``pfam`` is None without a clans table."""

    pfam: object
    corpus: object
    instances: pd.DataFrame
    study: pd.DataFrame
    split_of: dict[str, str]
    group_of: dict[str, str]
    classes: pd.DataFrame | None
    probe_families: list[str]


#: Why the parts that need Pfam clans are skipped when no clans table is given.
NO_CLANS = "no Pfam clans table (pfam; an annotation made with one records it)"


def load_inputs(s: StrataSettings) -> Inputs:
    from biostrata.data.clusters.corpus import read_classes, read_clusters
    from biostrata.data.clusters.domains import cluster_groups, deal_groups, probe_families, read_instances
    from biostrata.data.clusters.pfam import PfamTable
    from biostrata.data.clusters.proteins import CHECKED_FRAMES

    pfam = PfamTable.read(s.pfam) if s.pfam else None
    corpus = read_clusters(s.corpus, pfam)
    instances = read_instances(s.domains, corpus, pfam)
    group_of = cluster_groups(corpus, sorted(instances["bgc_id"].unique()), instances)
    study = instances[(instances["token_position"] >= 0) & (instances["frame_evidence"].isin(CHECKED_FRAMES))]
    if not len(study):
        raise InputError(
            f"{s.domains}: no domain has both a token in the corpus {s.corpus} and a checked reading frame "
            "(frame_evidence hmm or unique); the strata need each domain's DNA: annotate genomes (GenBank or "
            "nucleotide FASTA), not proteins, and give the clusters file of the same annotation"
        )
    held = probe_families(study, max(s.clan_min_families, s.folds), s.probe_share, s.seed)
    return Inputs(pfam, corpus, instances, study.reset_index(drop=True), deal_groups(group_of, s.split, s.seed),
                  group_of, read_classes(s.classes) if s.classes else None, held)  # fmt: skip


# Outside Lightning the models run on device_of(s.accelerator). Inside Lightning the study trains on one device
# (devices=1): its models train one after another, and devices="auto" would start one process per GPU (DDP) for each.


def write_reps(path: Path, ids: list[str], layers: dict[int, np.ndarray], curvature: dict[int, float | None]) -> None:
    """``path`` (``.npz``: ``ids`` and ``L<layer>``, the format :mod:`biostrata.analysis.representations`
    reads) and, first, its curvatures beside it (``.json``: ``{"curvature": {layer: K}}``, hyperbolic
    layers only): the archive, written last, marks a finished file."""
    hyperbolic = {str(i): float(k) for i, k in sorted(curvature.items()) if k is not None}
    atomic_write_json(path.with_suffix(".json"), {"curvature": hyperbolic})
    arrays = {"ids": np.array(ids, dtype=str)} | {
        f"L{i}": np.asarray(layers[i], dtype=np.float32) for i in sorted(layers)
    }
    atomic_write_npz(path, arrays)


def table_curvature(config: dict) -> dict[int, float]:
    """``{0: K}`` for a lorentz domain LM (its layer 0, the tangent vectors of its table's points), else ``{}``."""
    return {0: float(config.get("curvature", 1.0))} if config.get("geometry") == "lorentz" else {}


# -------------------------------------------------------------------------------------------- nucleotide
def kmer_reps(out: Path, s: StrataSettings, data: Inputs) -> Path:
    from biostrata.analysis.hyperbolicity import kmer_spectrum

    path = out / "reps" / "nucleotide.kmer.npz"
    dna = list(data.study["dna"])  # "layer" k: the spectrum of k-mers
    return ensure(path, lambda: write_reps(path, list(data.study["instance_id"]),
                                           {k: kmer_spectrum(dna, k) for k in s.kmers}, {}))  # fmt: skip


def cnn_config(s: StrataSettings, model: str) -> TrainConfig:
    """A genome CNN of Khan et al. that tells the Pfam clan from a domain's DNA (the study's sizes)."""
    return TrainConfig(model=model, length=s.dna_length, truncate=True, epochs=s.cnn_epochs, batch_size=100,
                       lr=s.cnn_lr, hidden=s.cnn_hidden, milestones=[], seed=s.seed, progress=s.progress,
                       accelerator=s.accelerator)  # fmt: skip


def cnn_reps(out: Path, s: StrataSettings, data: Inputs, model_name: str, clans: list[str]) -> tuple[Path, dict]:
    from biostrata.data.clusters.domains import clan_dna_splits
    from biostrata.studies.strata.measures import genome_layer_vectors
    from biostrata.train.run import load_run, train

    run = out / "nucleotide" / model_name

    def fit() -> None:
        splits = clan_dna_splits(data.instances, data.split_of, clans, s.domains, exclude=data.probe_families)
        train(cnn_config(s, model_name), splits, run)

    def represent() -> None:
        model, _ = load_run(run)
        layers, curvature = genome_layer_vectors(model, list(data.study["dna"]), range(1, model.num_layers + 1),
                                                 device=device_of(s.accelerator))  # fmt: skip
        write_reps(path, list(data.study["instance_id"]), layers, curvature)

    metrics = json.loads(ensure(run / "metrics.json", fit).read_text())
    path = out / "reps" / f"nucleotide.{model_name}.npz"
    return ensure(path, represent), metrics


# -------------------------------------------------------------------------------------------- amino acid
def protein_reps(out: Path, s: StrataSettings, data: Inputs) -> tuple[Path, dict]:
    """A protein LM (given, or a small ESM-2 trained on the checked segments of the training clusters, its
    best epoch chosen on those of the validation clusters) and the residue mean of each layer for every
    study instance."""
    from biostrata.data.clusters.proteins import CHECKED_FRAMES, ProteinRecord
    from biostrata.models.extract import check_options, token_states
    from biostrata.models.protein_lm import load_protein_lm, small_protein_lm
    from biostrata.train.pretrain import pretrain_protein_lm

    run = out / "protein"

    def fit() -> None:
        checked = data.instances[data.instances["frame_evidence"].isin(CHECKED_FRAMES)]
        split = checked["bgc_id"].map(data.split_of)
        records = {name: [ProteinRecord(f"{f}|{k}", p, f) for k, (f, p) in
                          enumerate(sorted(set(zip(part["family"], part["protein"]))))]
                   for name, part in (("train", checked[split == "train"]), ("valid", checked[split == "valid"]))}  # fmt: skip
        plm = small_protein_lm(s.protein_layers, s.protein_dim, s.protein_heads, seed=s.seed)
        pretrain_protein_lm(plm, records["train"], run, valid=records["valid"], epochs=s.protein_epochs,
                            max_length=s.protein_max_length, batch_size=s.batch_size, lr=s.lr, seed=s.seed,
                            accelerator=s.accelerator, devices=1, progress=s.progress)  # fmt: skip

    def represent() -> None:
        sequences = sorted(set(data.study["protein"]))
        layers = list(range(plm.num_layers + 1))
        device, _, budget = check_options(None, device=device_of(s.accelerator), special=sum(plm.special_tokens))
        rows: dict[int, list] = {i: [None] * len(sequences) for i in layers}
        for k, states in token_states(plm, sequences, layers, token_budget=budget, device=device):
            for i in layers:
                rows[i][k] = states[i].mean(0)
        index = {q: k for k, q in enumerate(sequences)}
        pick = [index[q] for q in data.study["protein"]]
        means = {i: np.stack(rows[i])[pick] for i in layers}
        write_reps(path, list(data.study["instance_id"]), means, {})

    if s.protein_model:
        plm, metrics = load_protein_lm(s.protein_model), {"model": s.protein_model}
    else:
        metrics = json.loads(ensure(run / "metrics.json", fit).read_text())
        plm = load_protein_lm(run)
    path = out / "reps" / "protein.esm.npz"
    return ensure(path, represent), metrics


# -------------------------------------------------------------------------------------------- domain
def run_name(variant: str, width: int, seed: int) -> str:
    return f"{variant}-w{width}-s{seed}"


def domain_corpora(data: Inputs) -> tuple:
    """The corpus clusters that train (split ``train``/``valid``, as ``split`` marks them) and the held-out
    ``test`` clusters (never seen by a domain LM, its vocabulary included)."""
    from dataclasses import replace

    from biostrata.data.clusters.corpus import ClusterCorpus

    marked = [replace(c, split=data.split_of.get(c.id, "train")) for c in data.corpus]
    fit = ClusterCorpus([c for c in marked if c.split != "test"], data.corpus.source)
    test = ClusterCorpus([c for c in marked if c.split == "test"], data.corpus.source)
    return fit, test


def domain_run(out: Path, s: StrataSettings, data: Inputs, variant: str, width: int, seed: int) -> Path:
    """Pre-train one domain LM (masked LM, best epoch on the validation clusters), evaluate it once on the
    test clusters (``test.json``), and keep the states of every layer at the study instances and their
    clusters' means (``states.npz``: ``ids``, ``clusters``, ``I<layer>`` instance rows, ``C<layer>``
    cluster rows). Returns the run folder."""
    import torch

    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.extract import check_options, token_states
    from biostrata.provenance import code_version
    from biostrata.train.masked_lm import evaluate_masked_lm
    from biostrata.train.pretrain import domain_masking_scheme, pretrain_domain_lm

    run = out / "domain" / run_name(variant, width, seed)
    model_options = dict(DOMAIN_VARIANTS[variant])
    if model_options["geometry"] == "lorentz":
        model_options["curvature"] = s.curvature
    ensure(run / "metrics.json", lambda: pretrain_domain_lm(
        domain_corpora(data)[0], run, preset="small", pfam=data.pfam, epochs=s.domain_epochs, batch_size=s.batch_size,
        lr=s.lr, seed=seed, accelerator=s.accelerator, devices=1, progress=s.progress, d_embed=width, d_model=width,
        n_layers=s.domain_layers, **model_options))  # fmt: skip
    model = DomainLM.from_pretrained(run)
    device, _, budget = check_options(None, device=device_of(s.accelerator), special=sum(model.special_tokens))

    def test() -> dict:
        encoded = [model.vocab.encode(c) for c in domain_corpora(data)[1] if len(c)]
        result = evaluate_masked_lm(model, encoded, domain_masking_scheme(model.vocab), batch_size=s.batch_size,
                                    seed=s.seed, device=device)  # fmt: skip
        return result | {"clusters": len(encoded), "code_version": code_version()}

    def states() -> None:
        study = data.study
        clusters = {c.id: c for c in data.corpus}
        wanted = sorted(set(study["bgc_id"]))
        encoded = [model.vocab.encode(clusters[b]) for b in wanted]
        layers = list(range(model.num_layers + 1))
        where = {b: k for k, b in enumerate(wanted)}
        per_cluster: dict[int, dict[int, np.ndarray]] = {}
        with torch.inference_mode():
            for k, states in token_states(model, encoded, layers, token_budget=budget, device=device):
                per_cluster[k] = states
        arrays = {"ids": np.array(list(study["instance_id"]), dtype=str), "clusters": np.array(wanted, dtype=str)}
        rows = [where[b] for b in study["bgc_id"]]
        positions = study["token_position"].to_numpy()
        for i in layers:
            arrays[f"I{i}"] = np.stack([per_cluster[r][i][p] for r, p in zip(rows, positions)]).astype(np.float32)
            arrays[f"C{i}"] = np.stack([per_cluster[k][i].mean(0) for k in range(len(wanted))]).astype(np.float32)
        atomic_write_npz(run / "states.npz", arrays)

    cached(run / "test.json", test)
    ensure(run / "states.npz", states)
    return run


def domain_reps(out: Path, s: StrataSettings, data: Inputs, variant: str) -> tuple[Path, Path]:
    """The domain and cluster strata of one domain LM variant: the seed-``domain_seeds[0]`` model at
    ``width``, its states at each instance (domain) and its mean over each instance's cluster (cluster)."""
    run = domain_run(out, s, data, variant, s.width, s.domain_seeds[0])
    config = json.loads((run / "metrics.json").read_text())["config"]
    paths = out / "reps" / f"domain.{variant}.npz", out / "reps" / f"cluster.{variant}.npz"

    def write() -> None:
        with np.load(run / "states.npz") as z:
            layers = sorted(int(k[1:]) for k in z.files if k.startswith("I"))
            ids = list(z["ids"])
            write_reps(paths[0], ids, {i: z[f"I{i}"] for i in layers}, table_curvature(config))
            row = {b: k for k, b in enumerate(z["clusters"])}
            pick = [row[b] for b in data.study["bgc_id"]]
            write_reps(paths[1], ids, {i: z[f"C{i}"][pick] for i in layers}, {})

    return ensure(paths, write)
