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
  optionally under float16 autocast; :func:`token_states` yields each item's own positions;
- :func:`extract_embeddings` streams a protein LM's pooled (and per-residue) states into an HDF5
  :class:`~biostrata.data.embedding_store.EmbeddingStore`, with windows for long proteins, resume
  and rank sharding (details in its docstring).

Poolings: ``mean`` over the item's own positions (specials and padding excluded), ``bos`` (the first
special token's state) and ``per_token``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from biostrata.data.embedding_store import EmbeddingStore
from biostrata.data.proteins import ProteinRecord
from biostrata.errors import InputError
from biostrata.models.layerwise import masked_mean

__all__ = [
    "plan_batches",
    "count_batches",
    "default_device",
    "check_options",
    "forward_batches",
    "token_states",
    "embed_batch",
    "window_starts",
    "shard_path",
    "extract_embeddings",
    "extract_cluster_embeddings",
]


def plan_batches(lengths: Sequence[int], token_budget: int, special: int = 0) -> list[list[int]]:
    """Group consecutive items (in the given order; sort them by length first) so that
    ``(max length + special) * count <= token_budget``; an item too long for the budget goes alone."""
    if token_budget < special + 1:
        raise InputError(f"token_budget={token_budget}: must be at least {special + 1}")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        if current and (max(longest, n) + special) * (len(current) + 1) > token_budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


def count_batches(n: int, batch_size: int) -> list[list[int]]:
    """``[0..b), [b..2b), ...`` over ``n`` items."""
    if batch_size < 1:
        raise InputError(f"batch_size={batch_size}: must be at least 1")
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else ``cuda:$LOCAL_RANK`` when a GPU is present, else the CPU."""
    if device is None:
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise InputError(f"device={str(device)!r} (--device): not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={str(device)!r} (--device): no GPU is available here; use cpu")
    return device


#: Numeric precisions of an extraction: float32, or float32 weights under bfloat16 / float16 autocast.
PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Token budget by device type when none is given: on 2 CPU threads 1,024 padded tokens a batch beat 4,096
#: (docs/benchmarks.md); a GPU wants large batches (not measured here).
DEFAULT_TOKEN_BUDGET = {"cpu": 1024, "cuda": 16384}


def check_options(
    token_budget: int | None,
    long: str = "truncate",
    overlap: int = 128,
    max_residues: int | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
    special: int = 2,
) -> tuple[torch.device, str, int]:
    """The device, precision and token budget of an extraction (see :func:`extract_embeddings`), after
    refusing options that cannot work, each named (CLI option in parentheses). ``precision`` None: fp16
    on a GPU, fp32 on the CPU; ``token_budget`` None: :data:`DEFAULT_TOKEN_BUDGET` of the device.
    ``max_residues`` None: not known yet (the model's); ``special``: the tokens each item gets around
    its own (ESM: 2)."""
    if long not in ("truncate", "window"):
        raise InputError(f"long={long!r} (--long): use 'truncate' or 'window'")
    device = default_device(device)
    token_budget = DEFAULT_TOKEN_BUDGET.get(device.type, 4096) if token_budget is None else token_budget
    if token_budget < special + 1:
        raise InputError(
            f"token_budget={token_budget} (--token-budget): must be at least {special + 1}, one residue and the "
            f"{special} special tokens"
        )
    if long == "window" and max_residues is not None and not 0 <= overlap < max_residues:
        raise InputError(
            f"overlap={overlap} (--overlap): must be in [0, {max_residues}), shorter than the windows of "
            f"max_residues={max_residues} (--max-residues)"
        )
    return device, _precision(precision, device), token_budget


def _precision(precision: str | None, device: torch.device) -> str:
    """``precision`` checked for ``device``; None: fp16 on a GPU, fp32 on the CPU."""
    precision = ("fp16" if device.type == "cuda" else "fp32") if precision is None else precision
    if precision not in PRECISIONS:
        raise InputError(f"precision={precision!r} (--precision): choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise InputError(
            f"precision='fp16' (--precision): float16 needs a GPU, and the device is {device}; use bf16 or fp32"
        )
    return precision


@torch.inference_mode()
def forward_batches(
    model: torch.nn.Module,
    items: Sequence,
    layers: Sequence[int],
    batches: Sequence[Sequence[int]],
    *,
    collate: Callable[[list], torch.Tensor] | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
) -> Iterator[tuple[list[int], dict[int, torch.Tensor]]]:
    """For each batch: its item indices and ``model.embed(collate(items of the batch), layers)`` (on
    ``device``; with ``precision`` bf16 or fp16 under autocast: matrix products in that precision,
    normalizations in float32, the weights as they are). ``collate`` defaults to ``model.tokenize``.
    The model is put in eval mode on ``device``."""
    device = default_device(device)
    precision = _precision(precision, device)
    collate = collate or model.tokenize
    model.to(device).eval()
    dtype = _AUTOCAST[precision]
    for batch in batches:
        x = collate([items[i] for i in batch]).to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            yield list(batch), model.embed(x, layers)


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


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Starts of windows of ``window`` residues, every ``window - overlap``, the last ending at ``length``."""
    if not 0 <= overlap < window:
        raise InputError(f"overlap={overlap} must be in [0, window={window})")
    if length <= window:
        return [0]
    starts = list(range(0, length - window, window - overlap))
    return starts + [length - window]


def _merge_windows(parts: list[tuple[int, np.ndarray]], length: int) -> np.ndarray:
    """Per-residue states ``[n_layers, length, D]`` from windows ``(start, [n_layers, w, D])``: each
    residue from the window where it is farthest from an edge (cut at the middle of each overlap)."""
    out = np.empty((parts[0][1].shape[0], length, parts[0][1].shape[2]), dtype=np.float32)
    for k, (start, states) in enumerate(parts):
        end = start + states.shape[1]
        lo = start if k == 0 else (start + parts[k - 1][0] + parts[k - 1][1].shape[1]) // 2
        hi = end if k == len(parts) - 1 else (parts[k + 1][0] + end) // 2
        out[:, lo:hi] = states[:, lo - start : hi - start]
    return out


def _dist_env(rank: int | None, world_size: int | None) -> tuple[int, int]:
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise InputError(f"rank={rank} must be in [0, world_size={world_size})")
    return rank, world_size


def shard_path(out: str | Path, rank: int, world_size: int) -> Path:
    """``out`` itself for one process, else ``<stem>.rank<r>-of-<w><suffix>``."""
    out = Path(out)
    return out if world_size == 1 else out.with_name(f"{out.stem}.rank{rank}-of-{world_size}{out.suffix}")


def _segments(records: Sequence[ProteinRecord], order: list[int], limit: int | None, window: int | None,
              overlap: int) -> list[tuple[int, int, int]]:  # fmt: skip
    """``(record, start, end)`` pieces to embed: a whole protein, its first ``limit`` residues, or windows."""
    segments = []
    for i in order:
        n = len(records[i].sequence)
        if limit is None or n <= limit:
            segments.append((i, 0, n))
        elif window is None:
            segments.append((i, 0, limit))
        else:
            segments += [(i, s, s + window) for s in window_starts(n, window, overlap)]
    return segments


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
    the store batch by batch; ids already in it are skipped, so a killed job resumes. With
    ``world_size > 1`` (e.g. under ``torchrun``) rank ``r`` embeds every ``world_size``-th protein in
    length order into its own store ``<out>.rank<r>-of-<w>.h5``;
    :func:`~biostrata.data.embedding_store.merge_stores` joins them.

    ``device`` defaults to ``cuda:$LOCAL_RANK`` when a GPU is present, else the CPU (the model is moved
    there); ``token_budget`` to 1,024 tokens on the CPU and 16,384 on a GPU. ``precision``: ``fp32``,
    ``bf16`` or ``fp16`` (autocast; the weights stay as they are), by default fp16 on a GPU and fp32 on
    the CPU, where fp16 is refused. ``half`` is its old name (True: fp16, False: fp32).
    """
    from tqdm.auto import tqdm

    if half is not None:
        warnings.warn(
            "extract_embeddings(half=...) is now precision='fp16' or 'fp32'", DeprecationWarning, stacklevel=2
        )
        precision = "fp16" if half else "fp32"
    limit = plm.max_residues
    device, precision, token_budget = check_options(token_budget, long, overlap, limit, device, precision,
                                                    sum(plm.special_tokens))  # fmt: skip
    rank, world_size = _dist_env(rank, world_size)
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise InputError(f"sequence id {r.id!r} repeats; ids must be unique for the embedding store")
        seen.add(r.id)
    try:
        layer_ids = plm.layer_index(layers)
    except InputError as err:
        raise InputError(f"layers={list(layers)} (--layers): {err}") from None
    if len(set(layer_ids)) != len(layer_ids):
        twice = next(i for k, i in enumerate(layer_ids) if i in layer_ids[:k])
        raise InputError(f"layers={list(layers)} (--layers): layer {twice} is named twice; give each layer once")
    store = EmbeddingStore.create(
        shard_path(out, rank, world_size), plm.name, layer_ids, plm.embed_dim, poolings, dtype
    )
    # Length order; windowed proteins sort as their window length and keep their windows together.
    key = [min(len(r.sequence), limit) if limit else len(r.sequence) for r in records]
    order = sorted(range(len(records)), key=lambda i: key[i])[rank::world_size]
    todo = [i for i in order if records[i].id not in store]
    segments = _segments(records, todo, limit, limit if long == "window" else None, overlap)
    n_windows: dict[int, int] = {}  # proteins cut into more than one window
    for i, _, _ in segments:
        n_windows[i] = n_windows.get(i, 0) + 1
    n_windows = {i: k for i, k in n_windows.items() if k > 1}
    pieces = [records[i].sequence[s:e] for i, s, e in segments]
    batches = plan_batches([len(p) for p in pieces], token_budget, sum(plm.special_tokens))
    keep_tokens = "per_token" in poolings
    pending: dict[int, list] = {}
    bar = tqdm(total=sum(map(len, pieces)), unit="res", disable=not progress, desc=f"embed r{rank}")
    try:
        for batch, reps in forward_batches(plm, pieces, layer_ids, batches, device=device, precision=precision):
            states, means = _pooled(plm, reps, layer_ids, [len(pieces[j]) for j in batch])
            done: list[tuple[int, int, dict[str, np.ndarray], np.ndarray | None]] = []
            for b, j in enumerate(batch):
                i, s, e = segments[j]
                bos = states[b, :, 0].cpu().numpy()
                if i not in n_windows:
                    own = states[b, :, 1 : e - s + 1].cpu().numpy() if keep_tokens else None
                    done.append((i, e - s, {"mean": means[b].cpu().numpy(), "bos": bos}, own))
                    continue
                pending.setdefault(i, []).append((s, states[b, :, 1 : e - s + 1].cpu().numpy(), bos))
                if len(pending[i]) == n_windows[i]:
                    parts = sorted(pending.pop(i), key=lambda p: p[0])
                    merged = _merge_windows([(p[0], p[1]) for p in parts], len(records[i].sequence))
                    pooled = {"mean": merged.mean(1), "bos": np.mean([p[2] for p in parts], axis=0)}
                    done.append((i, merged.shape[1], pooled, merged if keep_tokens else None))
            if done:
                store.append(
                    [records[i].id for i, *_ in done],
                    [n for _, n, _, _ in done],
                    {p: np.stack([d[2][p] for d in done]) for p in poolings if p != "per_token"},
                    [d[3] for d in done] if keep_tokens else None,
                )
            bar.update(sum(len(pieces[j]) for j in batch))
    finally:
        bar.close()
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
    from tqdm.auto import tqdm

    device, _, token_budget = check_options(token_budget, device=device, special=sum(model.special_tokens))
    if "bos" in poolings:
        raise InputError("poolings: a domain LM has no BOS token; use mean and/or per_token")
    layer_ids = model.layer_index(layers)
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
    pending: list[tuple[str, int, dict[int, np.ndarray]]] = []

    def flush() -> None:
        if pending:
            stacked = [np.stack([states[i] for i in layer_ids]).astype(np.float32) for _, _, states in pending]
            pooled = {"mean": np.stack([s.mean(1) for s in stacked])} if "mean" in poolings else {}
            store.append([p[0] for p in pending], [p[1] for p in pending], pooled,
                         stacked if "per_token" in poolings else None)  # fmt: skip
            pending.clear()

    try:
        states_of = token_states(model, encoded, layer_ids, token_budget=token_budget, device=device)
        for i, states in tqdm(states_of, total=len(todo), unit="cluster", disable=not progress, desc="embed"):
            pending.append((todo[i].id, len(encoded[i]), states))
            if len(pending) >= 256:
                flush()
        flush()
    finally:
        store.close()
    return {"path": str(store.path), "clusters": len(clusters), "embedded": len(todo), "domains": len(domains),
            "unknown_domains": len(unknown), "unknown_families": len(set(unknown))}  # fmt: skip
