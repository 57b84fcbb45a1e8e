"""The cross-granularity study end to end: protein LM -> family vectors -> domain LM in three arms ->
CKA, neighbourhoods, delta and probes of every layer, and of the two models combined.

Steps (each writes its outputs under ``out`` and is skipped when they exist, so a killed run resumes):

1. ``protein/``: a small ESM-2 pre-trained by masked residues on the distinct per-domain protein
   segments of the domain table (``mibig_domains.tsv``).
2. ``proteins.h5``, ``families.pt``: its last-layer residue-mean embedding of every segment, and the
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

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from biostrata.analysis.cka import LinearCKA, cka, plot_cka_heatmap
from biostrata.analysis.fusion import ProjectionFusion, align_domains
from biostrata.analysis.probes import LinearProbe, MLPProbe, cross_validate
from biostrata.config import CrossGranularitySettings
from biostrata.errors import InputError
from biostrata.io import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["CrossGranularitySettings", "run_cross_granularity", "PAPER", "read_segments"]

#: The published numbers (Xiao, Breitling, Takano, Alvarez, BIBM 2025; ANCHORS section 4).
PAPER = {
    "table_vs_init_finetune": 0.954,
    "last_vs_protein_start": 0.16,
    "last_vs_protein_peak": 0.35,
    "last_vs_protein_end_finetune": 0.285,
    "last_vs_protein_end_random": 0.311,
    "layer0_layer1_finetune": 0.645,
    "layer0_layer1_random": 0.872,
    "auroc_protein": 0.900,
    "auroc_domain": "0.901-0.908",
    "auroc_combined": 0.911,
}


# -------------------------------------------------------------------------------------------------
# inputs
# -------------------------------------------------------------------------------------------------


def read_segments(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """BGC id -> its domain hits ``(Pfam accession, protein segment)`` from a domain table, ordered by
    gene and start; rows repeating the same hit (gene, protein, coordinates, family) count once."""
    from biostrata.data.proteins import _TSV_COLUMNS

    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in _TSV_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}:1: missing column(s) {missing}; header is {list(table.columns)}")
    table["family"] = table["pfam_id"].str.strip().str.split(".").str[0]
    table["segment"] = table["protein_sequence"].str.strip().str.upper().str.rstrip("*")
    for col in ("dna_start", "dna_end"):
        number = pd.to_numeric(table[col], errors="coerce")
        if number.isna().any():
            raise InputError(f"{path}:{int(np.flatnonzero(number.isna())[0]) + 2}: {col} must be an integer")
        table[col] = number.astype(np.int64)
    hit = ["bgc_id", "gene_id", "protein_accession", "dna_start", "dna_end", "family"]
    table = table.drop_duplicates(hit).sort_values(
        ["bgc_id", "gene_id", "dna_start", "dna_end", "family"], kind="stable"
    )
    return {bgc: list(zip(part["family"], part["segment"])) for bgc, part in table.groupby("bgc_id", sort=False)}


@dataclass
class _Inputs:
    pfam: object
    corpus: object
    records: list
    segments: dict[str, list[tuple[str, str]]]
    classes: pd.DataFrame


def _load(s: CrossGranularitySettings) -> _Inputs:
    from biostrata.data.clusters import PfamTable, read_classes, read_clusters
    from biostrata.data.proteins import read_domain_proteins

    pfam = PfamTable.read(s.pfam)
    return _Inputs(pfam, read_clusters(s.corpus, pfam), read_domain_proteins(s.domains), read_segments(s.domains),
                   read_classes(s.classes))  # fmt: skip


# -------------------------------------------------------------------------------------------------
# steps 1-3: models
# -------------------------------------------------------------------------------------------------


def _protein_model(out: Path, s: CrossGranularitySettings, data: _Inputs):
    from biostrata.models.protein_lm import load_protein_lm, small_protein_lm
    from biostrata.train.pretrain import pretrain_protein_lm

    run = out / "protein"
    if not (run / "metrics.json").is_file():
        plm = small_protein_lm(s.protein_layers, s.protein_dim, s.protein_heads, seed=s.seed)
        pretrain_protein_lm(
            plm,
            data.records,
            run,
            epochs=s.protein_epochs,
            batch_size=s.batch_size,
            lr=s.lr,
            seed=s.seed,
            max_length=s.protein_max_length,
            accelerator="cpu",
            progress=s.progress,
        )
    return load_protein_lm(run / "model.pt")


def _family_table(out: Path, s: CrossGranularitySettings, data: _Inputs, plm) -> tuple:
    from biostrata.data.proteins import family_members
    from biostrata.models.init_table import FamilyTable, family_table_from_store
    from biostrata.models.protein_lm import extract_embeddings

    store, fam = out / "proteins.h5", out / "families.pt"
    if not fam.is_file():
        extract_embeddings(plm, data.records, store, layers=[-1], device="cpu", progress=s.progress)
        family_table_from_store(store, family_members(data.records), plm.num_layers).save(fam)
    return store, FamilyTable.load(fam)


def _arm(out: Path, s: CrossGranularitySettings, data: _Inputs, arm: str, table) -> dict:
    from biostrata.train.pretrain import pretrain_domain_lm

    run = out / "arms" / arm
    if not (run / "metrics.json").is_file():
        pretrain_domain_lm(
            data.corpus,
            run,
            preset=s.preset,
            arm=arm,
            family_table=None if arm == "random" else table,
            pfam=data.pfam,
            epochs=s.domain_epochs,
            batch_size=s.batch_size,
            lr=s.lr,
            seed=s.seed,
            accelerator="cpu",
            progress=s.progress,
            snapshots=True,
            **{**s.domain_sizes, "d_embed": table.dim},
        )
    return json.loads((run / "metrics.json").read_text())


# -------------------------------------------------------------------------------------------------
# step 4: passes over the corpus
# -------------------------------------------------------------------------------------------------


def _batches(lengths: Sequence[int], max_tokens: int = 8192) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out, cur = [], []
    for i in order:
        if cur and lengths[i] * (len(cur) + 1) > max_tokens:
            out.append(cur)
            cur = []
        cur.append(i)
    return out + ([cur] if cur else [])


@torch.inference_mode()
def _states(
    model, encoded: Sequence[torch.Tensor], layers: Sequence[int]
) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
    """Yield ``(cluster index, {layer: [length, dim]})`` for every cluster, batched by length."""
    for batch in _batches([len(t) for t in encoded]):
        width = max(len(encoded[i]) for i in batch)
        tokens = torch.full((len(batch), width), model.vocab.pad_idx, dtype=torch.long)
        for r, i in enumerate(batch):
            tokens[r, : len(encoded[i])] = encoded[i]
        reps = model.embed(tokens, layers)
        for r, i in enumerate(batch):
            yield i, {layer: reps[layer][r, : len(encoded[i])].double().numpy() for layer in reps}


@dataclass
class _Plan:
    """Which clusters and tokens each analysis uses (the same in every arm)."""

    probe_ids: list[str]  # BGCs with classes and at least one domain aligned with a protein segment
    pairs: dict[str, np.ndarray]  # BGC -> aligned (domain position, segment index) pairs
    cka_tokens: dict[int, np.ndarray]  # cluster index -> sampled positions (layer x layer CKA)
    clan_tokens: dict[int, np.ndarray]  # cluster index -> sampled positions (clan probe)
    clan_labels: list[tuple[str, str]]  # (family, clan) of each clan token, in pass order
    checkpoint_clusters: list[int]


def _plan(s: CrossGranularitySettings, data: _Inputs, segvec: dict[str, np.ndarray], families: set[str]) -> _Plan:
    """``families``: those with a protein-level vector; the clan probe keeps to them, so that the
    protein-level and every domain-level clan probe see the same families."""
    # one generator per sample, so that changing one sample's size leaves the others as they were
    rng_tokens, rng_clan, rng_checkpoints = (np.random.default_rng([s.seed, k]) for k in range(3))
    corpus = list(data.corpus)
    pairs = {}
    for c in corpus:
        if c.id in data.classes.index and c.id in segvec:
            p = align_domains(list(c.domains), [f for f, _ in data.segments[c.id]], "occurrence")
            if len(p):
                pairs[c.id] = p
    probe_ids = [c.id for c in corpus if c.id in pairs]
    # tokens for the layer x layer CKA: a uniform sample of all domain positions
    offsets = np.cumsum([0] + [len(c) for c in corpus])
    pick = np.sort(rng_tokens.choice(offsets[-1], size=min(s.cka_tokens, offsets[-1]), replace=False))
    owner = np.searchsorted(offsets, pick, side="right") - 1
    cka_tokens = {int(i): pick[owner == i] - offsets[i] for i in np.unique(owner)}
    # tokens for the clan probe: up to k occurrences of each family (with a protein vector) of a clan
    # with enough such families
    where: dict[str, list[tuple[int, int]]] = {}
    for i, c in enumerate(corpus):
        for j, d in enumerate(c.domains):
            if d in families and data.pfam.clan(d):
                where.setdefault(d, []).append((i, j))
    per_clan: dict[str, int] = {}
    for d in where:
        per_clan[data.pfam.clan(d)] = per_clan.get(data.pfam.clan(d), 0) + 1
    chosen: dict[int, list[int]] = {}
    for d in sorted(where):
        if per_clan[data.pfam.clan(d)] < s.clan_min_families:
            continue
        occ = where[d]
        for k in rng_clan.choice(len(occ), size=min(s.clan_tokens_per_family, len(occ)), replace=False):
            chosen.setdefault(occ[k][0], []).append(occ[k][1])
    clan_tokens = {i: np.array(sorted(v)) for i, v in chosen.items()}
    # pass order is by cluster index then position (features are gathered in that order below)
    clan_labels = [(corpus[i].domains[j], data.pfam.clan(corpus[i].domains[j])) for i in sorted(clan_tokens)
                   for j in clan_tokens[i]]  # fmt: skip
    n_ck = len(corpus) if s.checkpoint_clusters is None else min(s.checkpoint_clusters, len(corpus))
    ck = sorted(rng_checkpoints.choice(len(corpus), size=n_ck, replace=False).tolist())
    return _Plan(probe_ids, pairs, cka_tokens, clan_tokens, clan_labels, ck)


def _segment_vectors(store: Path, data: _Inputs, layer: int) -> dict[str, np.ndarray]:
    """BGC -> ``[segments, dim]`` protein embeddings of its domain hits, in :func:`read_segments` order
    (a segment is embedded once, by its (family, sequence), however often it occurs)."""
    from biostrata.data.embedding_store import EmbeddingStore

    with EmbeddingStore(store) as st:
        vectors = st.array("mean", layer).astype(np.float64)
        row = {sid: i for i, sid in enumerate(st.ids)}
    rid = {(r.family, r.sequence): row[r.id] for r in data.records if r.id in row}
    return {bgc: vectors[[rid[h] for h in hits]] for bgc, hits in data.segments.items() if all(h in rid for h in hits)}


def _analyse_arm(out: Path, s: CrossGranularitySettings, data: _Inputs, plan: _Plan, arm: str,
                 segvec: dict[str, np.ndarray]) -> tuple[dict, dict]:  # fmt: skip
    """One pass of the final domain LM: pooled features, token features, layer CKA (see module doc)."""
    from biostrata.models.domain_lm import DomainLM

    feat_file, token_file = out / "features" / f"{arm}.npz", out / "features" / f"{arm}.tokens.npz"
    result_file = out / "analysis" / f"{arm}.json"
    if feat_file.is_file() and token_file.is_file() and result_file.is_file():
        with np.load(feat_file, allow_pickle=False) as f, np.load(token_file, allow_pickle=False) as t:
            features = {("ids" if k == "ids" else f"pooled_{k}"): f[k] for k in f.files}
            features.update({k: t[k] for k in t.files})
        return features, json.loads(result_file.read_text())
    model = DomainLM.load(out / "arms" / arm / "model.pt").eval()
    corpus = list(data.corpus)
    layers = list(range(model.num_layers + 1))
    encoded = [model.vocab.encode(c) for c in corpus]
    pooled = {layer: np.zeros((len(corpus), model.config["d_embed" if layer == 0 else "d_model"])) for layer in layers}
    clan = {layer: {} for layer in layers}
    probe_row = {b: k for k, b in enumerate(plan.probe_ids)}
    aligned_domain = {layer: np.zeros((len(plan.probe_ids), pooled[layer].shape[1])) for layer in layers}
    layer_cka = LinearCKA([pooled[layer].shape[1] for layer in layers])
    pdim = next(iter(segvec.values())).shape[1]
    cross_cka = LinearCKA([pdim] + [pooled[layer].shape[1] for layer in layers])
    for i, states in tqdm(
        _states(model, encoded, layers), total=len(corpus), desc=f"{arm}: pass", disable=not s.progress
    ):
        for layer in layers:
            pooled[layer][i] = states[layer].mean(0)
        if i in plan.cka_tokens:
            layer_cka.update(*[states[layer][plan.cka_tokens[i]] for layer in layers])
        if i in plan.clan_tokens:
            for layer in layers:
                clan[layer][i] = states[layer][plan.clan_tokens[i]]
        bgc = corpus[i].id
        if bgc in probe_row:
            p = plan.pairs[bgc]
            for layer in layers:
                aligned_domain[layer][probe_row[bgc]] = states[layer][p[:, 0]].mean(0)
            cross_cka.update(segvec[bgc][p[:, 1]], *[states[layer][p[:, 0]] for layer in layers])
    features = {f"pooled_L{layer}": pooled[layer] for layer in layers}
    features.update({f"aligned_L{layer}": aligned_domain[layer] for layer in layers})
    features.update({f"clan_L{layer}": np.concatenate([clan[layer][i] for i in sorted(clan[layer])]) if clan[layer]
                     else np.zeros((0, pooled[layer].shape[1])) for layer in layers})  # fmt: skip
    features["ids"] = np.array([c.id for c in corpus])
    names = [f"L{layer}" for layer in layers]
    debiased = layer_cka.n >= 4
    result = {
        "layers": names,
        "layer_cka": layer_cka.matrix().tolist(),
        "layer_cka_debiased": layer_cka.matrix(True).tolist() if debiased else None,
        "tokens": layer_cka.n,
        "protein_vs_layer_cka": cross_cka.matrix()[0, 1:].tolist(),
        "aligned_positions": cross_cka.n,
    }
    # per-BGC means (ids + one array per layer: a file `biostrata probe` and `biostrata cka` read), and the rest
    per_bgc = {k.removeprefix("pooled_"): v for k, v in features.items() if k == "ids" or k.startswith("pooled_")}
    tokens = {k: v for k, v in features.items() if k != "ids" and not k.startswith("pooled_")}
    atomic_write(feat_file, lambda tmp: _save_npz(tmp, per_bgc))
    atomic_write(token_file, lambda tmp: _save_npz(tmp, tokens))
    atomic_write_json(result_file, result)
    return features, result


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # a file object, so numpy does not append ".npz" to the name
        np.savez(handle, **arrays)


@torch.inference_mode()
def _checkpoint_curves(out: Path, s: CrossGranularitySettings, data: _Inputs, plan: _Plan, table) -> pd.DataFrame:
    """Per arm and epoch: CKA(table, table at epoch 0), CKA(table, family vectors) over the families
    with vectors, and CKA(per-family mean last-layer state, family vectors) over those seen in the
    sampled clusters."""
    from biostrata.models.domain_lm import DomainLM

    path = out / "analysis" / "checkpoints.csv"
    if path.is_file():
        return pd.read_csv(path)
    corpus = [data.corpus[i] for i in plan.checkpoint_clusters]
    rows = []
    for arm in s.arms:
        snaps = sorted((out / "arms" / arm / "snapshots").glob("epoch_*.pt"))
        if not snaps:
            raise InputError(
                f"{out / 'arms' / arm}: no snapshots; delete the folder and rerun to pre-train with snapshots"
            )
        init = encoded = None
        for snap in tqdm(snaps, desc=f"{arm}: checkpoints", disable=not s.progress):
            model = DomainLM.load(snap).eval()
            vocab = model.vocab
            encoded = encoded or [vocab.encode(c) for c in corpus]
            keep = [k for k, f in enumerate(table.families) if f in vocab]
            rows_idx = torch.tensor([vocab.index(table.families[k]) for k in keep])
            vectors = table.vectors.double().numpy()[keep]
            weights = model.table.weight.detach().double()[rows_idx].numpy()
            init = weights if init is None else init
            sums = torch.zeros(len(vocab), model.config["d_model"], dtype=torch.float64)
            counts = torch.zeros(len(vocab), dtype=torch.float64)
            for i, states in _states(model, encoded, [-1]):
                last = torch.as_tensor(next(iter(states.values())))
                sums.index_add_(0, encoded[i], last)
                counts.index_add_(0, encoded[i], torch.ones(len(encoded[i]), dtype=torch.float64))
            seen = counts[rows_idx] > 0
            means = (sums[rows_idx][seen] / counts[rows_idx][seen, None]).numpy()
            rows.append({
                "arm": arm, "epoch": int(snap.stem.split("_")[1]), "families": len(keep),
                "table_vs_init": cka(weights, init), "table_vs_protein": cka(weights, vectors),
                "last_vs_protein": cka(means, vectors[seen.numpy()]), "families_seen": int(seen.sum()),
            })  # fmt: skip
    frame = pd.DataFrame(rows)
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


# -------------------------------------------------------------------------------------------------
# step 5: probes
# -------------------------------------------------------------------------------------------------


def _probe(path: Path, estimator, X: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str] | None,
           s: CrossGranularitySettings, meta: dict, seeds: Sequence[int]) -> dict:  # fmt: skip
    """Cross-validate one feature set (skipped when ``path`` exists); per-fold rows go beside it."""
    if path.is_file():
        return json.loads(path.read_text())
    res = cross_validate(estimator, X, y, groups, s.folds, seeds, names, desc=meta["features"], progress=s.progress)
    summary = {**meta, **res.summary(n_boot=s.n_boot), "dim": int(X.shape[1])}
    atomic_write_text(path.with_suffix(".folds.csv"), res.folds.assign(features=meta["features"]).to_csv(index=False))
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")  # key order kept: the table's column order
    return summary


def _product_class_probes(out: Path, s: CrossGranularitySettings, data: _Inputs, plan: _Plan,
                          feats: dict[str, dict], segvec: dict[str, np.ndarray]) -> pd.DataFrame:  # fmt: skip
    corpus = {c.id: c for c in data.corpus}
    ids = plan.probe_ids
    y = data.classes.loc[ids].to_numpy(dtype=np.int64)
    names = list(data.classes.columns)
    keep = y.sum(0) >= s.folds  # a class needs a positive in every test fold
    y, names = y[:, keep], [n for n, k in zip(names, keep) if k]
    _, groups = np.unique([" ".join(corpus[b].domains) for b in ids], return_inverse=True)
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
        summary = _probe(out / "probes" / "product_class" / f"{name.replace('/', '_')}.json", est, X, y, groups,
                         names, s, meta, s.seeds)  # fmt: skip
        results.append({**summary, "layer": layer})
    frame = pd.DataFrame(results)
    atomic_write_text(out / "product_class.csv", frame.to_csv(index=False))
    return frame


def _clan_probes(out: Path, s: CrossGranularitySettings, data: _Inputs, plan: _Plan, feats: dict[str, dict],
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
        results.append(_probe(out / "probes" / "clan" / f"{name.replace('/', '_')}.json", probe, X[ok], yc[ok],
                              groups[ok], None, s, meta, s.clan_seeds))  # fmt: skip
    frame = pd.DataFrame(results)
    atomic_write_text(out / "clan.csv", frame.to_csv(index=False))
    return frame


# -------------------------------------------------------------------------------------------------
# neighbourhoods and delta of the BGC-level features
# -------------------------------------------------------------------------------------------------


def _geometry(out: Path, s: CrossGranularitySettings, plan: _Plan, feats: dict[str, dict],
              segvec: dict[str, np.ndarray]) -> pd.DataFrame:  # fmt: skip
    """Per arm and layer, on the probe BGCs: mutual k-NN agreement with the protein-level features,
    linear CKA with them, and the relative Gromov delta of the layer's BGC features."""
    from biostrata.analysis.layers import delta_per_layer
    from biostrata.analysis.neighbours import mutual_knn

    path = out / "analysis" / "geometry.csv"
    if path.is_file():
        return pd.read_csv(path)
    protein = np.stack([segvec[b].mean(0) for b in plan.probe_ids])
    samples = min(s.delta_samples, len(protein))
    delta = lambda layers: delta_per_layer(layers, samples=samples, repeats=s.delta_repeats, seed=s.seed)  # noqa: E731
    rows = [{"arm": "-", "layer": "protein", "knn_with_protein": 1.0, "cka_with_protein": 1.0,
             "relative_delta": float(delta({"protein": protein})["relative_delta"][0])}]  # fmt: skip
    k = min(s.knn, len(protein) - 1)
    for arm, f in feats.items():
        row_of = {b: i for i, b in enumerate(f["ids"])}
        take = np.array([row_of[b] for b in plan.probe_ids])
        layers = {key[len("pooled_") :]: f[key][take] for key in f if key.startswith("pooled_L")}
        deltas = delta(layers).set_index("layer")["relative_delta"]
        for name, x in tqdm(layers.items(), desc=f"{arm}: geometry", disable=not s.progress):
            rows.append({"arm": arm, "layer": name, "knn_with_protein": mutual_knn(protein, x, k),
                         "cka_with_protein": cka(protein, x), "relative_delta": float(deltas[name])})  # fmt: skip
    frame = pd.DataFrame(rows)
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


# -------------------------------------------------------------------------------------------------
# the whole study
# -------------------------------------------------------------------------------------------------


def run_cross_granularity(out: str | Path, s: CrossGranularitySettings | None = None) -> dict[str, pd.DataFrame]:
    """Run (or resume) the study into ``out``; returns its tables (see module docstring)."""
    from threadpoolctl import threadpool_limits

    s = s or CrossGranularitySettings()
    unknown = set(s.arms) - {"random", "finetune", "frozen"}
    if unknown or not s.arms:
        raise InputError(f"arms={s.arms}: choose from random, finetune, frozen")
    out = Path(out)
    atomic_write_json(out / "settings.json", asdict(s))
    torch.set_num_threads(s.threads)
    clock = _Clock(out / "timings.jsonl")
    with threadpool_limits(s.threads):
        with clock("inputs"):
            data = _load(s)
        with clock("protein LM"):
            plm = _protein_model(out, s, data)
        with clock("protein embeddings"):
            store, table = _family_table(out, s, data, plm)
        with clock("domain LM arms"):
            pretraining = {arm: _arm(out, s, data, arm, table) for arm in s.arms}
        with clock("corpus passes"):
            segvec = _segment_vectors(store, data, plm.num_layers)
            bgcs = sorted(segvec)
            protein = {"ids": np.array(bgcs), "protein": np.stack([segvec[b].mean(0) for b in bgcs])}
            if not (out / "features" / "protein.npz").is_file():
                atomic_write(out / "features" / "protein.npz", lambda tmp: _save_npz(tmp, protein))
            plan = _plan(s, data, segvec, set(table.families))
            if not plan.probe_ids:
                raise InputError(
                    "no BGC has product classes and a domain aligned with a protein segment; check the inputs"
                )
            passes = {arm: _analyse_arm(out, s, data, plan, arm, segvec) for arm in s.arms}
        feats = {arm: f for arm, (f, _) in passes.items()}
        with clock("checkpoint CKA"):
            checkpoints = _checkpoint_curves(out, s, data, plan, table)
        with clock("geometry"):
            geometry = _geometry(out, s, plan, feats, segvec)
        with clock("product-class probes"):
            product = _product_class_probes(out, s, data, plan, feats, segvec)
        with clock("clan probes"):
            clan = _clan_probes(out, s, data, plan, feats, store, plm.num_layers)
    layer_cka = {
        arm: pd.DataFrame(r["layer_cka"], index=r["layers"], columns=r["layers"]) for arm, (_, r) in passes.items()
    }
    tables = {
        "pretraining": _pretraining_table(pretraining),
        "checkpoints": checkpoints,
        "geometry": geometry,
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
    atomic_write(out / "cka_checkpoints.png", lambda tmp: _plot_checkpoints(checkpoints, tmp))
    atomic_write(out / "cka_layers.png", lambda tmp: _plot_layers(layer_cka, tmp))
    atomic_write(out / "probes.png", lambda tmp: _plot_probes(product, tmp))
    counts = {"bgcs": len(data.corpus), "probe_bgcs": len(plan.probe_ids), "segments": len(data.records),
              "families_with_vectors": len(table.families), "cka_tokens": passes[s.arms[0]][1]["tokens"],
              "aligned_positions": passes[s.arms[0]][1]["aligned_positions"], "clan_tokens": len(plan.clan_labels)}  # fmt: skip
    atomic_write_text(out / "cross_granularity.md", summary_markdown(tables, s, counts))
    return tables


class _Clock:
    """Wall and CPU seconds of each step of one invocation: one JSON line per invocation, rewritten
    after every step (a resumed step that found its outputs takes about 0 s)."""

    def __init__(self, path: Path) -> None:
        self.path, self.steps = path, {}
        self.before = path.read_text() if path.is_file() else ""
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.steps[name] = {
            "wall_s": round(time.perf_counter() - wall, 1),
            "cpu_s": round(time.process_time() - cpu, 1),
        }
        line = json.dumps({"started": self.started, "steps": self.steps})
        atomic_write_text(self.path, self.before + line + "\n")


def _pretraining_table(pretraining: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for arm, m in pretraining.items():
        rows.append({"arm": arm, "best_epoch": m["best"]["epoch"], "val_acc": m["best"]["val_acc"],
                     "val_ppl": m["best"]["val_ppl"], "initialized_rows": (m.get("init") or {}).get("initialized", 0),
                     "frozen_rows": m["frozen_rows"], "wall_s": m["wall_time_s"]})  # fmt: skip
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------------------
# report
# -------------------------------------------------------------------------------------------------


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, (float, np.floating)) and np.isfinite(v) else str(v)


def summary_markdown(tables: dict[str, pd.DataFrame], s: CrossGranularitySettings, counts: dict) -> str:
    """The study's tables as Markdown, each beside the published numbers where there are some."""
    ck = tables["checkpoints"]
    lines = [
        "# Cross-granularity study: results",
        "",
        f"{counts['bgcs']} BGCs; {counts['segments']} distinct protein segments; {counts['families_with_vectors']} "
        f"families with protein-level vectors; product-class probes on {counts['probe_bgcs']} BGCs; "
        f"{counts['cka_tokens']} sampled tokens for layer x layer CKA; {counts['aligned_positions']} domain "
        f"positions aligned with protein segments; {counts['clan_tokens']} tokens for the clan probe. Settings: "
        f"protein LM {s.protein_layers} layers x {s.protein_dim}, {s.protein_epochs} epoch(s); domain LM preset "
        f"{s.preset}, {s.domain_epochs} epochs; probes {s.folds}-fold x seeds {s.seeds} (clan probe: seeds "
        f"{s.clan_seeds}), bootstrap {s.n_boot}.",
        "",
        "## Pre-training (validation masked-token accuracy and perplexity, best epoch)",
        "",
        tables["pretraining"].to_markdown(index=False, floatfmt=".3f"),
        "",
        "## Embedding table and last layer over training (linear CKA)",
        "",
        "`table_vs_init`: table rows of the families with protein vectors against the same rows at epoch 0; "
        "`table_vs_protein`: against the family vectors; `last_vs_protein`: per-family mean last-layer state "
        "against the family vectors.",
        "",
    ]
    wide = ck.pivot_table(index="epoch", columns="arm", values=["table_vs_init", "last_vs_protein"])
    wide.columns = [f"{a}:{b}" for a, b in wide.columns]
    wide.index = [str(int(e)) for e in wide.index]
    lines += [wide.rename_axis("epoch").reset_index().to_markdown(index=False, floatfmt=".3f"), ""]
    end = ck[ck["epoch"] == ck["epoch"].max()].set_index("arm")
    start = ck[ck["epoch"] == 0].set_index("arm")
    peak = ck[ck["epoch"] > 0].groupby("arm")["last_vs_protein"].max()  # during training
    ref = [
        ("CKA(table, its initialization), end, fine-tuned", PAPER["table_vs_init_finetune"],
         end["table_vs_init"].get("finetune")),
        ("CKA(protein table, last layer), start, fine-tuned", PAPER["last_vs_protein_start"],
         start["last_vs_protein"].get("finetune")),
        ("CKA(protein table, last layer), peak in training, fine-tuned", PAPER["last_vs_protein_peak"], peak.get("finetune")),
        ("CKA(protein table, last layer), end, fine-tuned", PAPER["last_vs_protein_end_finetune"],
         end["last_vs_protein"].get("finetune")),
        ("CKA(protein table, last layer), end, random", PAPER["last_vs_protein_end_random"],
         end["last_vs_protein"].get("random")),
    ]  # fmt: skip
    for arm in ("finetune", "random"):
        key = f"layer_cka_{arm}"
        if key in tables:
            ref.append((f"CKA(layer 0, layer 1), {arm}", PAPER[f"layer0_layer1_{arm}"], tables[key].iloc[0, 1]))
    lines += [
        "## Beside the published numbers",
        "",
        "| quantity | paper (ESM-1b / BiGCARP) | here |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {q} | {_fmt(p)} | {_fmt(h) if h is not None else 'n/a'} |" for q, p, h in ref]
    pc = tables["product_class"].set_index("features")
    lines += [
        f"| product class macro AUROC, protein level | {_fmt(PAPER['auroc_protein'])} | "
        f"{_fmt(pc.loc['protein', 'auroc_macro'])} |"
    ]
    for arm in s.arms:
        last = pc[(pc["arm"] == arm) & (pc["kind"] == "domain")].sort_values("layer").iloc[-1]
        lines.append(
            f"| product class macro AUROC, domain level ({arm}, last layer) | {PAPER['auroc_domain']} | "
            f"{_fmt(last['auroc_macro'])} |"
        )
        lines.append(
            f"| product class macro AUROC, combined ({arm}, aligned concat) | {_fmt(PAPER['auroc_combined'])} | "
            f"{_fmt(pc.loc[f'combined/{arm}', 'auroc_macro'])} |"
        )
    lines.append("")
    for arm in s.arms:
        lines += [
            f"## Layer x layer linear CKA ({arm})",
            "",
            tables[f"layer_cka_{arm}"].to_markdown(floatfmt=".2f"),
            "",
        ]
    lines += ["## CKA between the protein embedding of a domain and the domain LM state at its position", "",
              tables["protein_vs_layer"].to_markdown(floatfmt=".3f"), ""]  # fmt: skip
    cols = ["features", "probe", "dim", "auroc_macro", "auroc_macro_sd", "auroc_macro_oof", "auroc_macro_lo", "auroc_macro_hi",
            "mcc", "f1_macro"]  # fmt: skip
    cols += [c for c in tables["product_class"].columns if c.startswith("auroc[")]
    lines += ["## Product class (MIBiG 3.0, multi-label)", "",
              "Macro AUROC: mean and sd over folds x seeds; `_oof` of the pooled out-of-fold predictions, with its 95% "
              "bootstrap interval (`_lo`, `_hi`; BGCs with identical domain lists resampled together); MCC and macro F1 "
              "at threshold 0.5; per-class AUROC.", "",
              tables["product_class"][cols].to_markdown(index=False, floatfmt=".3f"), ""]  # fmt: skip
    cols = ["features", "clans", "families", "auroc_macro", "auroc_macro_sd", "auroc_macro_oof", "auroc_macro_lo",
            "auroc_macro_hi", "mcc", "f1_macro"]  # fmt: skip
    lines += ["## Pfam clan from token-level features (multi-class, linear probe, folds grouped by Pfam family)", "",
              tables["clan"][cols].to_markdown(index=False, floatfmt=".3f"), ""]  # fmt: skip
    lines += ["## BGC-level geometry: mutual k-NN and CKA with the protein-level features, relative delta", "",
              tables["geometry"].to_markdown(index=False, floatfmt=".3f"), ""]  # fmt: skip
    return "\n".join(lines)


def _plot_checkpoints(ck: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {"random": "#4C72B0", "finetune": "#C44E52", "frozen": "#55A868"}
    for arm, part in ck.groupby("arm", sort=False):
        axes[0].plot(part["epoch"], part["table_vs_init"], "o-", color=colors.get(arm), label=arm)
        axes[1].plot(part["epoch"], part["last_vs_protein"], "o-", color=colors.get(arm), label=arm)
    axes[0].axhline(PAPER["table_vs_init_finetune"], ls=":", color="grey", label="paper, ESM init (end)")
    axes[1].axhline(PAPER["last_vs_protein_end_finetune"], ls=":", color="#C44E52", label="paper, ESM init (end)")
    axes[1].axhline(PAPER["last_vs_protein_end_random"], ls=":", color="#4C72B0", label="paper, random (end)")
    axes[0].set_title("CKA(table, table at epoch 0)", fontsize=10)
    axes[0].set_ylim(min(0.9, float(ck["table_vs_init"].min()) - 0.01), 1.005)
    axes[1].set_title("CKA(per-family last layer, protein family vectors)", fontsize=10)
    axes[1].set_ylim(0, 1.05)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def _plot_layers(layer_cka: dict[str, pd.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(arm, frame, False) for arm, frame in layer_cka.items()]
    if "random" in layer_cka:
        panels += [
            (f"{arm} - random", frame - layer_cka["random"], True)
            for arm, frame in layer_cka.items()
            if arm != "random"
        ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (title, frame, diverging) in zip(axes[0], panels):
        plot_cka_heatmap(frame, title=title, ax=ax, diverging=diverging)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def _plot_probes(product: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"random": "#4C72B0", "finetune": "#C44E52", "frozen": "#55A868"}
    domain = product[product["kind"] == "domain"]
    for arm, part in domain.groupby("arm", sort=False):
        part = part.sort_values("layer")
        ax.errorbar(
            part["layer"],
            part["auroc_macro"],
            yerr=part["auroc_macro_sd"],
            fmt="o-",
            capsize=2,
            color=colors.get(arm),
            label=f"domain LM, {arm}",
        )
        comb = product[(product["features"] == f"combined/{arm}")]
        if len(comb):
            ax.axhline(
                float(comb["auroc_macro"].iloc[0]),
                ls="--",
                color=colors.get(arm),
                lw=1,
                label=f"protein + domain (last), {arm}",
            )
    prot = product[product["features"] == "protein"]
    if len(prot):
        ax.axhline(float(prot["auroc_macro"].iloc[0]), ls="-", color="black", lw=1, label="protein LM")
    ax.axhline(PAPER["auroc_combined"], ls=":", color="grey", lw=1, label="paper: ESM + BiGCARP")
    ax.set_xlabel("domain LM layer (0 = embedding table)")
    ax.set_ylabel("product class macro AUROC")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)
