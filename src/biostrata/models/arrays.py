"""Embeddings in memory: the loops of :mod:`biostrata.models.extract` (:func:`protein_states`,
:func:`cluster_states`, :func:`dna_states`) gathered into one array per layer, rows in input order.

Pooled outputs are ``float32 [n, D]`` per layer, the numbers an embedding store of
:func:`~biostrata.models.extract.extract_embeddings` or
:func:`~biostrata.models.extract.extract_cluster_embeddings` holds for the same items; ``per_token``
gives one ``[length, D]`` array per item instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from biostrata.data.clusters.corpus import Cluster
from biostrata.errors import InputError, ParameterError
from biostrata.models.extract import (
    Embedded,
    check_options,
    checked_layers,
    cluster_states,
    dna_states,
    length_order,
    protein_states,
)

__all__ = ["embed_proteins", "embed_clusters", "embed_dna", "Layers"]

#: Layer -> ``[n, D]`` array, or (``per_token``) one ``[length_i, D]`` array per item.
Layers = dict[int, np.ndarray | list[np.ndarray]]


def _check_pooling(pooling: str, allowed: Sequence[str], model: str) -> None:
    if pooling not in allowed:
        raise ParameterError("pooling", f"pooling={pooling!r}: {model} pools by {', '.join(allowed)}")


def _gather(n: int, layer_ids: Sequence[int], pooling: str, chunks: Iterable[list[Embedded]]) -> Layers:
    """One array per layer from the items of a loop (each item once, in any order)."""
    rows: list[np.ndarray | None] = [None] * n
    for chunk in chunks:
        for i, _, pooled, tokens in chunk:
            rows[i] = tokens if pooling == "per_token" else pooled[pooling]
    if pooling == "per_token":
        return {layer: [r[k] for r in rows] for k, layer in enumerate(layer_ids)}  # type: ignore[index]
    return {layer: np.stack([r[k] for r in rows]) for k, layer in enumerate(layer_ids)}  # type: ignore[index]


def embed_proteins(
    plm: torch.nn.Module,
    sequences: Sequence[str],
    layers: Sequence[int] = (-1,),
    pooling: str = "mean",
    *,
    token_budget: int | None = None,
    long: str = "truncate",
    overlap: int = 128,
    device: str | torch.device | None = None,
    precision: str | None = None,
    progress: bool = False,
) -> Layers:
    """Protein sequences through a protein LM: ``mean`` over the residues, ``bos`` (the ``<cls>`` state)
    or ``per_token``, packed, truncated or windowed as in
    :func:`~biostrata.models.extract.extract_embeddings`."""
    _check_pooling(pooling, ("mean", "bos", "per_token"), "a protein LM")
    device, precision, token_budget = check_options(token_budget, long, overlap, plm.max_residues, device, precision,
                                                    sum(plm.special_tokens))  # fmt: skip
    ids = checked_layers(plm, layers)
    chunks = protein_states(plm, sequences, length_order(plm, sequences), ids, token_budget=token_budget, long=long,
                            overlap=overlap, per_token=pooling == "per_token", device=device, precision=precision,
                            progress=progress)  # fmt: skip
    return _gather(len(sequences), ids, pooling, chunks)


def embed_clusters(
    model: torch.nn.Module,
    clusters: Sequence[Cluster],
    layers: Sequence[int] = (-1,),
    pooling: str = "mean",
    *,
    token_budget: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Layers:
    """Gene clusters (domain sentences) through a domain LM: the ``mean`` over each cluster's domains, or
    every domain's states (``per_token``). A domain outside the vocabulary embeds as the unknown token."""
    _check_pooling(pooling, ("mean", "per_token"), "a domain LM (no BOS token)")
    device, _, token_budget = check_options(token_budget, device=device, special=sum(model.special_tokens))
    empty = [k for k, c in enumerate(clusters) if not len(c.domains)]
    if empty:
        raise InputError(f"inputs[{empty[0]}] ({clusters[empty[0]].id}): a cluster without domains; leave it out")
    ids = checked_layers(model, layers)
    encoded = [model.vocab.encode(c) for c in clusters]
    chunks = cluster_states(model, encoded, ids, token_budget=token_budget, device=device, progress=progress)
    return _gather(len(clusters), ids, pooling, chunks)


def embed_dna(
    model: torch.nn.Module,
    sequences: Sequence[str],
    layers: Sequence[int] = (-1,),
    pooling: str = "mean",
    *,
    truncate: bool = False,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Layers:
    """DNA sequences through a genome CNN (pooled as :func:`~biostrata.models.extract.dna_states` says);
    ``per_token`` gives one ``[length, C]`` array per sequence, its own positions (cut at the model's
    length), and for the head's features their one row ``[hidden]``."""
    ids = checked_layers(model, layers)
    out: dict[int, list[np.ndarray]] = {layer: [] for layer in ids}
    for batch, states in dna_states(model, sequences, ids, pooling=pooling, truncate=truncate,
                                    batch_size=batch_size, device=device, progress=progress):  # fmt: skip
        for layer, x in states.items():
            if pooling == "per_token":
                own = [max(1, min(len(sequences[j]), model.length)) for j in batch]
                out[layer] += [row[:n] if row.ndim == 2 else row for row, n in zip(x, own)]
            else:
                out[layer].append(x)
    if pooling == "per_token":
        return out
    return {layer: np.concatenate(parts) for layer, parts in out.items()}
