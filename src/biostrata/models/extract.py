"""Run any layer-wise encoder over a corpus: batches, one forward pass per batch, pooled or per-item states.

Every encoder (genome CNNs, domain LM, protein LM) has ``num_layers`` and ``embed(x, layers) -> dict``
(:mod:`biostrata.models.layerwise`). The language models also have ``tokenize(items) -> [B, T]``
(right-padded) and ``special_tokens = (before, after)``: how many tokens each item gets around its
own (ESM: ``<cls>`` and ``<eos>``, (1, 1); the domain LM: (0, 0)). This module is the one place that
runs them over many items:

- :func:`plan_batches` packs items, in the order given, into batches whose padded size
  ``(longest + special) * count`` stays within a token budget (sort by length first and little compute
  goes to padding); :func:`count_batches` cuts fixed-size batches (the genome CNNs' fixed length);
- :func:`forward_batches` yields ``(batch indices, {layer: states})`` for each batch, on the device,
  optionally under float16 autocast (these three live in :mod:`biostrata.models.batching`);
- the loops, one per kind of model, yield arrays: :func:`protein_states` (packed proteins, windows for
  long ones), :func:`cluster_states` (domain sentences; :func:`token_states` yields each item's own
  positions) and :func:`dna_states` (genome CNNs);
- their consumers: :func:`extract_embeddings` and :func:`extract_cluster_embeddings` stream them into
  an HDF5 :class:`~biostrata.data.embedding_store.EmbeddingStore` (resume, rank sharding; details in
  their docstrings), :mod:`biostrata.models.arrays` gathers them in memory.

Poolings: ``mean`` over the item's own positions (specials and padding excluded), ``bos`` (the first
special token's state) and ``per_token``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from biostrata.data.clusters.proteins import ProteinRecord
from biostrata.data.embedding_store import EmbeddingStore
from biostrata.errors import InputError, ParameterError
from biostrata.models.batching import (
    DEFAULT_TOKEN_BUDGET,
    PRECISIONS,
    check_options,
    count_batches,
    cut_segments,
    default_device,
    forward_batches,
    merge_windows,
    plan_batches,
    window_starts,
)
from biostrata.models.layerwise import masked_mean, resolve_layers

__all__ = [
    "DEFAULT_TOKEN_BUDGET",
    "PRECISIONS",
    "plan_batches",
    "count_batches",
    "default_device",
    "check_options",
    "forward_batches",
    "token_states",
    "embed_batch",
    "window_starts",
    "shard_path",
    "checked_layers",
    "length_order",
    "protein_states",
    "cluster_states",
    "dna_states",
    "extract_embeddings",
    "extract_cluster_embeddings",
    "extract_dna_embeddings",
]


def token_states(
    model: torch.nn.Module,
    items: Sequence,
    layers: Sequence[int],
    *,
    token_budget: int = 8192,
    device: str | torch.device | None = None,
) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
    """``(item index, {layer: float64 [length, dim]})`` for every item of a language model, the states at
    the item's own positions (specials and padding dropped), batched by length within ``token_budget``."""
    before, after = model.special_tokens
    lengths = [len(x) for x in items]
    order = sorted(range(len(items)), key=lambda i: lengths[i])
    batches = [[order[j] for j in b] for b in plan_batches([lengths[i] for i in order], token_budget, before + after)]
    for batch, reps in forward_batches(model, items, layers, batches, device=device):
        for r, i in enumerate(batch):
            yield i, {layer: reps[layer][r, before : before + lengths[i]].double().cpu().numpy() for layer in reps}


def _pooled(model: torch.nn.Module, reps: dict[int, torch.Tensor], layers: Sequence[int],
            lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """States ``[B, n_layers, T, D]`` (float32) of ``layers`` and their means over each item's own positions."""
    before, _ = model.special_tokens
    states = torch.stack([reps[layer] for layer in model.layer_index(layers)], 1).float()
    position = torch.arange(states.shape[2], device=states.device)
    own = (position >= before) & (position < before + torch.tensor(lengths, device=states.device)[:, None])
    return states, masked_mean(states, own[:, None, :])


def embed_batch(
    model: torch.nn.Module, items: Sequence, layers: Sequence[int], device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One padded forward pass of a language model: states ``[B, n_layers, T, D]`` (float32; the item's
    own positions start after ``special_tokens[0]``) and their means over those positions ``[B, n_layers, D]``."""
    reps = model.embed(model.tokenize(items).to(device), layers)
    return _pooled(model, reps, layers, [len(x) for x in items])


def dna_states(
    model: torch.nn.Module,
    sequences: Sequence[str],
    layer_ids: Sequence[int],
    *,
    pooling: str = "mean",
    truncate: bool = False,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Iterator[tuple[list[int], dict[int, np.ndarray]]]:
    """The one loop over a genome CNN: for each batch of ``batch_size`` sequences (one-hot, the model's
    fixed length; ``truncate`` cuts longer ones), its indices and ``{layer: float32 array}``.

    A block's states ``(B, C, L)`` are pooled over positions: ``mean`` gives ``(B, C)`` over each
    sequence's own positions (not its padding, which would make the pool a function of length; an empty
    sequence pools its first position), the mean of a Euclidean layer and the Lorentz centroid of a
    hyperbolic one (a point, time first); ``flatten`` concatenates all ``L`` positions, ``(B, C * L)``
    (for points: the space parts, time recomputed, the Lorentz direct concatenation); ``per_token`` keeps
    them, ``(B, L, C)``. The last layer, the head's features ``(B, hidden)``, is a row per sequence already.
    """
    from tqdm.auto import tqdm

    from biostrata.data.dna.alphabet import encode_batch

    if pooling not in DNA_POOLINGS:
        raise ParameterError("pooling", f"pooling={pooling!r}: a genome CNN pools by {', '.join(DNA_POOLINGS)}")
    batches = count_batches(len(sequences), batch_size)
    collate = lambda seqs: encode_batch(seqs, model.length, truncate=truncate)  # noqa: E731
    with torch.inference_mode(), tqdm(total=len(sequences), unit="seq", disable=not progress, desc="embed") as bar:
        for batch, reps in forward_batches(model, sequences, layer_ids, batches, collate=collate, device=device):
            out = {}
            for layer, states in reps.items():
                manifold, states = model.layer_manifold(layer), states.float()
                if states.dim() == 3 and pooling == "mean":
                    n = [max(1, min(len(sequences[j]), states.shape[2])) for j in batch]
                    n = torch.tensor(n, device=states.device)
                    own = (torch.arange(states.shape[2], device=states.device) < n[:, None]).unsqueeze(1)
                    # the Lorentz centroid sqrt(k) m / sqrt(|<m,m>_L|) does not change when m is scaled, so the
                    # mean over all positions of the masked points gives the centroid of the own positions
                    masked = states * own
                    states = masked.sum(2) / n[:, None] if manifold is None else manifold.centroid(masked, (2,))
                elif states.dim() == 3 and pooling == "flatten":
                    states = states.flatten(1) if manifold is None else manifold.lift(states[:, 1:].flatten(1))
                elif states.dim() == 3:
                    states = states.transpose(1, 2)
                out[layer] = states.cpu().numpy()
            bar.update(len(batch))
            yield batch, out


#: How :func:`dna_states` pools a genome CNN's positions.
DNA_POOLINGS = ("mean", "flatten", "per_token")


def _dist_env(rank: int | None, world_size: int | None) -> tuple[int, int]:
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ParameterError("rank", f"rank={rank}: must be in [0, world_size={world_size})")
    return rank, world_size


def shard_path(out: str | Path, rank: int, world_size: int) -> Path:
    """``out`` itself for one process, else ``<stem>.rank<r>-of-<w><suffix>``."""
    out = Path(out)
    return out if world_size == 1 else out.with_name(f"{out.stem}.rank{rank}-of-{world_size}{out.suffix}")


#: One embedded item: ``(index, length, {pooling: [n_layers, D]}, per-position states [n_layers, length, D] or None)``.
Embedded = tuple[int, int, dict[str, np.ndarray], np.ndarray | None]


def checked_layers(model: torch.nn.Module, layers: Sequence[int]) -> list[int]:
    """``layers`` as the model's indices 0..num_layers, each once (``InputError`` naming ``layers``)."""
    try:
        ids = resolve_layers(layers, model.num_layers)
    except InputError as err:
        raise ParameterError("layers", f"layers={list(layers)}: {err}") from None
    if len(set(ids)) != len(ids):
        twice = next(i for k, i in enumerate(ids) if i in ids[:k])
        raise ParameterError("layers", f"layers={list(layers)}: layer {twice} is named twice; give each layer once")
    return ids


def length_order(plm: torch.nn.Module, sequences: Sequence[str]) -> list[int]:
    """Indices of ``sequences`` by length (a windowed protein sorts as its window length): the order of
    :func:`protein_states`, which keeps a protein's windows together."""
    limit = plm.max_residues
    key = [min(len(s), limit) if limit else len(s) for s in sequences]
    return sorted(range(len(sequences)), key=lambda i: key[i])


@torch.inference_mode()
def protein_states(
    plm: torch.nn.Module,
    sequences: Sequence[str],
    order: Sequence[int],
    layer_ids: Sequence[int],
    *,
    token_budget: int,
    long: str = "truncate",
    overlap: int = 128,
    per_token: bool = False,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    progress: bool = False,
    desc: str = "embed",
) -> Iterator[list[Embedded]]:
    """The one loop over a protein LM: for each packed batch, the proteins it finishes (see
    :data:`Embedded`; float32, pooled ``mean`` and ``bos``, per-residue states when ``per_token``).

    ``order``: the indices of ``sequences`` to embed, in this order (e.g. :func:`length_order`);
    ``layer_ids`` from :func:`checked_layers`; ``device``, ``precision`` and ``token_budget`` as
    :func:`check_options` gives them. Long proteins are truncated or windowed as
    :func:`extract_embeddings` describes; a windowed protein is finished by the batch of its last window.
    """
    from tqdm.auto import tqdm

    limit = plm.max_residues
    segments = cut_segments(sequences, order, limit, limit if long == "window" else None, overlap)
    n_windows: dict[int, int] = {}  # proteins cut into more than one window
    for i, _, _ in segments:
        n_windows[i] = n_windows.get(i, 0) + 1
    n_windows = {i: k for i, k in n_windows.items() if k > 1}
    pieces = [sequences[i][s:e] for i, s, e in segments]
    batches = plan_batches([len(p) for p in pieces], token_budget, sum(plm.special_tokens))
    pending: dict[int, list] = {}
    with tqdm(total=sum(map(len, pieces)), unit="res", disable=not progress, desc=desc) as bar:
        for batch, reps in forward_batches(plm, pieces, layer_ids, batches, device=device, precision=precision):
            states, means = _pooled(plm, reps, layer_ids, [len(pieces[j]) for j in batch])
            done: list[Embedded] = []
            for b, j in enumerate(batch):
                i, s, e = segments[j]
                bos = states[b, :, 0].cpu().numpy()
                if i not in n_windows:
                    own = states[b, :, 1 : e - s + 1].cpu().numpy() if per_token else None
                    done.append((i, e - s, {"mean": means[b].cpu().numpy(), "bos": bos}, own))
                    continue
                pending.setdefault(i, []).append((s, states[b, :, 1 : e - s + 1].cpu().numpy(), bos))
                if len(pending[i]) == n_windows[i]:
                    parts = sorted(pending.pop(i), key=lambda p: p[0])
                    merged = merge_windows([(p[0], p[1]) for p in parts], len(sequences[i]))
                    pooled = {"mean": merged.mean(1), "bos": np.mean([p[2] for p in parts], axis=0)}
                    done.append((i, merged.shape[1], pooled, merged if per_token else None))
            bar.update(sum(len(pieces[j]) for j in batch))
            if done:
                yield done


@torch.inference_mode()
def extract_embeddings(
    plm: torch.nn.Module,
    records: Sequence[ProteinRecord],
    out: str | Path,
    layers: Sequence[int] = (-1,),
    poolings: Sequence[str] = ("mean",),
    token_budget: int | None = None,
    long: str = "truncate",
    overlap: int = 128,
    device: str | torch.device | None = None,
    precision: str | None = None,
    half: bool | None = None,
    dtype: str = "float32",
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
) -> Path:
    """Embed ``records`` with a protein LM into an HDF5 store; returns the store's path.

    Proteins are sorted by length and packed within ``token_budget`` (:func:`plan_batches`). Those
    longer than ``plm.max_residues`` are either truncated to their first ``max_residues`` residues
    (``long="truncate"``), or covered by windows of ``max_residues`` residues that start every
    ``max_residues - overlap`` residues, the last one ending at the protein's end (``long="window"``);
    each residue then takes its states from the window in which it is farthest from an edge, ``mean``
    pools the merged residues and ``bos`` is the mean of the windows' BOS states. Outputs stream into
    the store batch by batch (the store is one consumer of :func:`protein_states`); ids already in it
    are skipped, so a killed job resumes. With ``world_size > 1`` (e.g. under ``torchrun``) rank ``r``
    embeds every ``world_size``-th protein in length order into its own store
    ``<out>.rank<r>-of-<w>.h5``; :func:`~biostrata.data.embedding_store.merge_stores` joins them.

    ``device`` defaults to ``cuda:$LOCAL_RANK`` when a GPU is present, else the CPU (the model is moved
    there); ``token_budget`` to 1,024 tokens on the CPU and 16,384 on a GPU. ``precision``: ``fp32``,
    ``bf16`` or ``fp16`` (autocast; the weights stay as they are), by default fp16 on a GPU and fp32 on
    the CPU, where fp16 is refused. ``half`` is its old name (True: fp16, False: fp32).
    """
    if half is not None:
        warnings.warn(
            "extract_embeddings(half=...) is now precision='fp16' or 'fp32'", DeprecationWarning, stacklevel=2
        )
        precision = "fp16" if half else "fp32"
    device, precision, token_budget = check_options(token_budget, long, overlap, plm.max_residues, device, precision,
                                                    sum(plm.special_tokens))  # fmt: skip
    rank, world_size = _dist_env(rank, world_size)
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise InputError(f"sequence id {r.id!r} repeats; ids must be unique for the embedding store")
        seen.add(r.id)
    layer_ids = checked_layers(plm, layers)
    store = EmbeddingStore.create(
        shard_path(out, rank, world_size), plm.name, layer_ids, plm.embed_dim, poolings, dtype
    )
    sequences = [r.sequence for r in records]
    todo = [i for i in length_order(plm, sequences)[rank::world_size] if records[i].id not in store]
    keep_tokens = "per_token" in poolings
    try:
        for done in protein_states(plm, sequences, todo, layer_ids, token_budget=token_budget, long=long, overlap=overlap,
                                   per_token=keep_tokens, device=device, precision=precision, progress=progress,
                                   desc=f"embed (rank {rank} of {world_size})" if world_size > 1 else "embed"):  # fmt: skip
            store.append(
                [records[i].id for i, *_ in done],
                [n for _, n, _, _ in done],
                {p: np.stack([d[2][p] for d in done]) for p in poolings if p != "per_token"},
                [d[3] for d in done] if keep_tokens else None,
            )
    finally:
        store.close()
    return store.path


def extract_cluster_embeddings(
    model: torch.nn.Module,
    clusters: Sequence,
    out: str | Path,
    layers: Sequence[int] = (-1,),
    poolings: Sequence[str] = ("mean",),
    token_budget: int | None = None,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    progress: bool = True,
) -> dict:
    """Embed gene clusters (domain sentences) with a domain LM into an HDF5 store keyed by cluster id:
    ``mean`` over a cluster's domains per layer, and with ``per_token`` the state of every domain.
    Clusters already in the store are skipped (resume). Domains outside the model's vocabulary embed
    as its unknown token; they are counted, not dropped. The layers must share one width (layer 0,
    the token table, is ``d_embed`` wide, the blocks ``d_model``). Clusters are packed by length
    within ``token_budget`` (default: :data:`DEFAULT_TOKEN_BUDGET` of the device); ``dtype`` is the
    stored precision (float32 or float16). Returns the counts and the path."""
    device, _, token_budget = check_options(token_budget, device=device, special=sum(model.special_tokens))
    if "bos" in poolings:
        raise InputError("poolings: a domain LM has no BOS token; use mean and/or per_token")
    layer_ids = checked_layers(model, layers)
    widths = {model.config["d_embed"] if i == 0 else model.config["d_model"] for i in layer_ids}
    if len(widths) > 1:
        raise InputError(
            f"layers {layer_ids}: layer 0 (the token table, {model.config['d_embed']} wide) and the blocks "
            f"({model.config['d_model']} wide) differ in width; embed layer 0 into a store of its own"
        )
    ids = [c.id for c in clusters]
    if len(set(ids)) != len(ids):
        raise InputError("cluster ids must be unique for the embedding store")
    vocab = model.vocab
    domains = [d for c in clusters for d in c.domains]
    unknown = [d for d in domains if d not in vocab]
    store = EmbeddingStore.create(out, getattr(model, "name", "domain LM"), layer_ids, widths.pop(), poolings, dtype)
    todo = [c for c in clusters if c.id not in store and len(c.domains)]
    encoded = [vocab.encode(c) for c in todo]
    try:
        for done in cluster_states(model, encoded, layer_ids, token_budget=token_budget, device=device,
                                   progress=progress):  # fmt: skip
            store.append([todo[i].id for i, *_ in done], [n for _, n, _, _ in done],
                         {"mean": np.stack([d[2]["mean"] for d in done])} if "mean" in poolings else {},
                         [d[3] for d in done] if "per_token" in poolings else None)  # fmt: skip
    finally:
        store.close()
    return {"path": str(store.path), "clusters": len(clusters), "embedded": len(todo), "domains": len(domains),
            "unknown_domains": len(unknown), "unknown_families": len(set(unknown))}  # fmt: skip


def cluster_states(
    model: torch.nn.Module,
    encoded: Sequence[torch.Tensor],
    layer_ids: Sequence[int],
    *,
    token_budget: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
    chunk: int = 256,
) -> Iterator[list[Embedded]]:
    """The one loop over a domain LM: gene clusters (token rows of ``vocab.encode``) packed by length
    (:func:`token_states`), given back ``chunk`` at a time as :data:`Embedded` items: the ``mean`` over the
    cluster's domains ``[n_layers, D]`` and every domain's states ``[n_layers, length, D]``, float32 (layers of
    other widths, as layer 0 when ``d_embed != d_model``: a list of ``[D_l]`` and of ``[length, D_l]``)."""
    from tqdm.auto import tqdm

    done: list[Embedded] = []
    states_of = token_states(model, encoded, layer_ids, token_budget=token_budget, device=device)
    for i, states in tqdm(states_of, total=len(encoded), unit="cluster", disable=not progress, desc="embed"):
        per_layer = [np.asarray(states[layer], dtype=np.float32) for layer in layer_ids]
        if len({x.shape[-1] for x in per_layer}) == 1:
            stacked = np.stack(per_layer)
            done.append((i, len(encoded[i]), {"mean": stacked.mean(1)}, stacked))
        else:  # one store holds one width and refuses these before the loop; in memory each layer keeps its own
            done.append((i, len(encoded[i]), {"mean": [x.mean(0) for x in per_layer]}, per_layer))
        if len(done) >= chunk:
            yield done
            done = []
    if done:
        yield done


def extract_dna_embeddings(
    model: torch.nn.Module,
    ids: Sequence[str],
    sequences: Sequence[str],
    out: str | Path,
    layers: Sequence[int] = (-1,),
    truncate: bool = False,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    progress: bool = True,
) -> dict:
    """Embed DNA sequences with a genome CNN into an HDF5 store keyed by ``ids``: each layer's ``mean``
    over positions (:func:`dna_states`; the head's features as they are). Sequences already in the store
    are skipped (resume). The layers must share one width (the one-hot input is 5 wide (6 as points),
    the blocks ``channels``, the head ``hidden``). Returns the counts and the path."""
    if len(set(ids)) != len(ids) or len(ids) != len(sequences):
        raise InputError(f"ids: {len(ids)} ids for {len(sequences)} sequences; give one unique id per sequence")
    layer_ids = checked_layers(model, layers)
    probe = {i: x.shape[-1] for i, x in next(dna_states(model, ["A"], layer_ids, device=device))[1].items()}
    if len(set(probe.values())) > 1:
        raise InputError(
            f"layers {layer_ids}: widths {list(probe.values())} differ; a store holds layers of one width, so "
            "embed them into stores of their own"
        )
    store = EmbeddingStore.create(out, model.architecture["name"], layer_ids, probe[layer_ids[0]], ["mean"], dtype)
    todo = [i for i, sid in enumerate(ids) if sid not in store]
    try:
        for batch, states in dna_states(model, [sequences[i] for i in todo], layer_ids, truncate=truncate,
                                        batch_size=batch_size, device=device, progress=progress):  # fmt: skip
            rows = [todo[b] for b in batch]
            store.append([ids[i] for i in rows], [min(len(sequences[i]), model.length) for i in rows],
                         {"mean": np.stack([states[layer] for layer in layer_ids], 1)})  # fmt: skip
    finally:
        store.close()
    return {"path": str(store.path), "sequences": len(ids), "embedded": len(todo), "layers": layer_ids}
