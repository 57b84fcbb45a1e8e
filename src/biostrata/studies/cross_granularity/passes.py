"""Step 4 of the cross-granularity study: which clusters and tokens each analysis uses, one pass of
every domain LM over the corpus (pooled and token features, layer CKA), CKA over the training
snapshots, and the geometry of the BGC-level features."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from biostrata.analysis.cka import LinearCKA, cka
from biostrata.analysis.fusion import align_domains
from biostrata.config import CrossGranularitySettings
from biostrata.errors import InputError
from biostrata.io import atomic_write_json, atomic_write_npz, cached, ensure
from biostrata.models.extract import token_states
from biostrata.studies import device_of
from biostrata.studies.cross_granularity.steps import Inputs


@dataclass
class Plan:
    """Which clusters and tokens each analysis uses (the same in every arm)."""

    probe_ids: list[str]  # BGCs with classes and at least one domain aligned with a protein segment
    pairs: dict[str, np.ndarray]  # BGC -> aligned (domain position, segment index) pairs
    cka_tokens: dict[int, np.ndarray]  # cluster index -> sampled positions (layer x layer CKA)
    clan_tokens: dict[int, np.ndarray]  # cluster index -> sampled positions (clan probe)
    clan_labels: list[tuple[str, str]]  # (family, clan) of each clan token, in pass order
    checkpoint_clusters: list[int]


def plan_analyses(s: CrossGranularitySettings, data: Inputs, segvec: dict[str, np.ndarray], families: set[str]) -> Plan:
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
    return Plan(probe_ids, pairs, cka_tokens, clan_tokens, clan_labels, ck)


def analyse_arm(out: Path, s: CrossGranularitySettings, data: Inputs, plan: Plan, arm: str,
                 segvec: dict[str, np.ndarray]) -> tuple[dict, dict]:  # fmt: skip
    """One pass of the final domain LM: pooled features, token features, layer CKA (see module doc)."""
    from biostrata.models.domain_lm import DomainLM

    feat_file, token_file = out / "features" / f"{arm}.npz", out / "features" / f"{arm}.tokens.npz"
    result_file = out / "analysis" / f"{arm}.json"

    def run_pass() -> None:  # the result, written last, marks a finished pass
        model = DomainLM.from_pretrained(out / "arms" / arm)
        corpus = list(data.corpus)
        layers = list(range(model.num_layers + 1))
        encoded = [model.vocab.encode(c) for c in corpus]
        states_of = token_states(model, encoded, layers, device=device_of(s.accelerator))
        pooled = {
            layer: np.zeros((len(corpus), model.config["d_embed" if layer == 0 else "d_model"])) for layer in layers
        }
        clan = {layer: {} for layer in layers}
        probe_row = {b: k for k, b in enumerate(plan.probe_ids)}
        aligned_domain = {layer: np.zeros((len(plan.probe_ids), pooled[layer].shape[1])) for layer in layers}
        layer_cka = LinearCKA([pooled[layer].shape[1] for layer in layers])
        pdim = next(iter(segvec.values())).shape[1]
        cross_cka = LinearCKA([pdim] + [pooled[layer].shape[1] for layer in layers])
        for i, states in tqdm(states_of, total=len(corpus), desc=f"{arm}: pass", disable=not s.progress):
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
        atomic_write_npz(feat_file, per_bgc)
        atomic_write_npz(token_file, tokens)
        atomic_write_json(result_file, result)

    ensure((feat_file, token_file, result_file), run_pass)
    with np.load(feat_file, allow_pickle=False) as f, np.load(token_file, allow_pickle=False) as t:
        features = {("ids" if k == "ids" else f"pooled_{k}"): f[k] for k in f.files}
        features.update({k: t[k] for k in t.files})
    return features, json.loads(result_file.read_text())


def checkpoint_curves(out: Path, s: CrossGranularitySettings, data: Inputs, plan: Plan, table) -> pd.DataFrame:
    """Per arm and epoch: CKA(table, table at epoch 0), CKA(table, family vectors) over the families
    with vectors, and CKA(per-family mean last-layer state, family vectors) over those seen in the
    sampled clusters."""
    return cached(out / "analysis" / "checkpoints.csv", lambda: _checkpoint_curves(out, s, data, plan, table))


@torch.inference_mode()
def _checkpoint_curves(out: Path, s: CrossGranularitySettings, data: Inputs, plan: Plan, table) -> pd.DataFrame:
    from biostrata.models.domain_lm import DomainLM

    corpus = [data.corpus[i] for i in plan.checkpoint_clusters]
    rows = []
    for arm in s.arms:
        snaps = sorted(p for p in (out / "arms" / arm / "snapshots").glob("epoch_*") if p.is_dir())
        if not snaps:
            raise InputError(
                f"{out / 'arms' / arm}: no snapshots; delete the folder and rerun to pre-train with snapshots"
            )
        init = encoded = None
        for snap in tqdm(snaps, desc=f"{arm}: checkpoints", disable=not s.progress):
            model = DomainLM.from_pretrained(snap)
            vocab = model.vocab
            encoded = encoded or [vocab.encode(c) for c in corpus]
            keep = [k for k, f in enumerate(table.families) if f in vocab]
            rows_idx = torch.tensor([vocab.index(table.families[k]) for k in keep])
            vectors = table.vectors.double().numpy()[keep]
            weights = model.table.weight.detach().double()[rows_idx].numpy()
            init = weights if init is None else init
            sums = torch.zeros(len(vocab), model.config["d_model"], dtype=torch.float64)
            counts = torch.zeros(len(vocab), dtype=torch.float64)
            for i, states in token_states(model, encoded, [-1], device=device_of(s.accelerator)):
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
    return pd.DataFrame(rows)


def geometry(out: Path, s: CrossGranularitySettings, plan: Plan, feats: dict[str, dict],
              segvec: dict[str, np.ndarray]) -> pd.DataFrame:  # fmt: skip
    """Per arm and layer, on the probe BGCs: mutual k-NN agreement with the protein-level features,
    linear CKA with them, and the relative Gromov delta of the layer's BGC features."""
    return cached(out / "analysis" / "geometry.csv", lambda: _geometry(s, plan, feats, segvec))


def _geometry(s: CrossGranularitySettings, plan: Plan, feats: dict[str, dict],
              segvec: dict[str, np.ndarray]) -> pd.DataFrame:  # fmt: skip
    from biostrata.analysis.layers import geometry_against

    protein = np.stack([segvec[b].mean(0) for b in plan.probe_ids])
    geometry = lambda layers: geometry_against(protein, layers, s.knn, s.delta_samples, s.delta_repeats, s.seed)  # noqa: E731
    frames = [geometry({"protein": protein}).assign(arm="-")]
    for arm, f in tqdm(feats.items(), desc="geometry", disable=not s.progress):
        row_of = {b: i for i, b in enumerate(f["ids"])}
        take = np.array([row_of[b] for b in plan.probe_ids])
        frames.append(
            geometry({key[len("pooled_") :]: f[key][take] for key in f if key.startswith("pooled_L")}).assign(arm=arm)
        )
    frame = pd.concat(frames, ignore_index=True).rename(
        columns={"knn_with_reference": "knn_with_protein", "cka_with_reference": "cka_with_protein"}
    )
    return frame[["arm", "layer", "knn_with_protein", "cka_with_protein", "relative_delta"]]
