"""Protein language models (ESM via fair-esm) and fast layer-wise embedding extraction.

Conventions (fair-esm): a protein is tokenized as ``<cls> residues <eos>``; layer 0 is the token
embedding, layer ``i`` the output of transformer block ``i``, and the last layer is reported after
the final LayerNorm. Poolings: ``mean`` over residues (BOS, EOS and padding excluded), ``bos``
(the ``<cls>`` state) and ``per_token`` (one vector per residue).

Extraction sorts proteins by length and packs them into batches whose padded size
``(longest + 2) * count`` stays within a token budget, so little compute is spent on padding.
Proteins longer than ``max_residues`` are either truncated to their first ``max_residues``
residues, or covered by windows of ``max_residues`` residues that start every
``max_residues - overlap`` residues (the last one ends at the protein's end); each residue then takes
its states from the window in which it is farthest from an edge (cuts at the middle of each
overlap), ``mean`` pools the merged residues and ``bos`` is the mean of the windows' BOS states.
Outputs stream into an :class:`~biostrata.data.embedding_store.EmbeddingStore` batch by batch;
ids already in the store are skipped, so a killed job resumes. With ``world_size > 1`` (e.g.
under ``torchrun``) rank ``r`` embeds every ``world_size``-th protein in length order into its own
store ``<out>.rank<r>-of-<w>.h5``; :func:`~biostrata.data.embedding_store.merge_stores` joins them.
"""

from __future__ import annotations

import argparse
import os
import pickle
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from biostrata.data.embedding_store import EmbeddingStore
from biostrata.data.proteins import ProteinRecord
from biostrata.errors import DataNotFoundError, InputError
from biostrata.io import atomic_write
from biostrata.models.layerwise import masked_mean, resolve_layers

__all__ = [
    "ProteinLM",
    "load_protein_lm",
    "small_protein_lm",
    "plan_batches",
    "window_starts",
    "embed_batch",
    "extract_embeddings",
    "ESM_URL",
]

#: Where fair-esm publishes its weights (``<name>.pt``).
ESM_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/"


class ProteinLM(nn.Module):
    """A fair-esm model (ESM-1b, ESM-2, or a small ESM-2 trained here) with layer-wise outputs."""

    def __init__(self, model: nn.Module, alphabet: object, name: str = "", max_residues: int | None = 1022) -> None:
        super().__init__()
        self.model, self.alphabet, self.name = model, alphabet, name
        self.max_residues = max_residues
        lookup = np.full(256, alphabet.unk_idx, dtype=np.int64)
        for tok, idx in alphabet.tok_to_idx.items():
            if len(tok) == 1:
                lookup[ord(tok)] = idx
        self._lookup = lookup

    @property
    def num_layers(self) -> int:
        return int(self.model.num_layers)

    @property
    def embed_dim(self) -> int:
        return int(self.model.embed_dim if hasattr(self.model, "embed_dim") else self.model.args.embed_dim)

    def tokenize(self, seqs: Sequence[str]) -> torch.Tensor:
        """``<cls> seq <eos>`` rows, right-padded: ``[B, max_len + 2]`` (unknown letters -> ``<unk>``)."""
        a = self.alphabet
        out = torch.full((len(seqs), max((len(s) for s in seqs), default=0) + 2), a.padding_idx, dtype=torch.long)
        for i, s in enumerate(seqs):
            codes = np.frombuffer(s.upper().encode("ascii", "replace"), dtype=np.uint8)
            out[i, 0] = a.cls_idx
            out[i, 1 : len(s) + 1] = torch.from_numpy(self._lookup[codes])
            out[i, len(s) + 1] = a.eos_idx
        return out

    def layer_index(self, layers: Iterable[int]) -> list[int]:
        """Layers as indices in 0..num_layers (see :mod:`biostrata.models.layerwise`)."""
        return resolve_layers(layers, self.num_layers)

    def forward_layers(self, tokens: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """States ``[B, T, D]`` per layer (keys as given by :meth:`layer_index`)."""
        want = self.layer_index(layers)
        reps = self.model(tokens, repr_layers=want)["representations"]
        return {i: reps[i] for i in want}

    def masked_logits(self, src: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, 33]`` at the selected positions."""
        return self.model(src)["logits"][selected]

    def save(self, path: str | Path) -> None:
        """Write an ESM-2 model in fair-esm's checkpoint layout (``model`` + ``cfg``), atomically."""
        from esm.model.esm2 import ESM2

        if not isinstance(self.model, ESM2):
            raise InputError(f"only ESM-2 models can be saved here, not {type(self.model).__name__}")
        m = self.model
        cfg = argparse.Namespace(
            encoder_layers=m.num_layers,
            encoder_embed_dim=m.embed_dim,
            encoder_attention_heads=m.attention_heads,
            token_dropout=m.token_dropout,
        )
        data = {
            "model": {k: v.detach().cpu() for k, v in m.state_dict().items()},
            "cfg": {"model": cfg},
            "biostrata": {"name": self.name, "max_residues": self.max_residues},
        }
        atomic_write(Path(path), lambda tmp: torch.save(data, tmp))


def _torch_load(path: Path, trusted: bool) -> dict:
    """Load with ``weights_only`` (argparse.Namespace allowed); full unpickling only if ``trusted``."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trusted:
            reason = str(err).strip().splitlines()[-1][:200]
            raise InputError(
                f"{path}: this checkpoint needs full unpickling ({reason}). Official ESM files do; if you got "
                "the file from a trusted source pass trusted=True (CLI: --trust-checkpoint)."
            ) from None
    return torch.load(path, map_location="cpu", weights_only=False)


def load_protein_lm(name_or_path: str | Path, trusted: bool = False, max_residues: int | None = None) -> ProteinLM:
    """Load an ESM model from a local fair-esm ``.pt`` file or by hub name (e.g. ``esm2_t33_650M_UR50D``,
    ``esm1b_t33_650M_UR50S``) from ``$TORCH_HOME/hub/checkpoints``, downloading it if absent.

    Hub files come from fair-esm's own server and are unpickled in full; a local file must load with
    ``weights_only`` unless ``trusted``. ``max_residues`` defaults to the value saved with the model,
    else 1022 (ESM-1b's hard limit, and the length ESM-2 was trained on).
    """
    import esm

    path = Path(name_or_path)
    if path.is_dir():
        raise InputError(
            f"{path} is a folder; pass the fair-esm .pt file itself (its -contact-regression.pt sibling is optional)"
        )
    if not path.is_file():
        if path.suffix == ".pt" or os.sep in str(name_or_path):
            raise DataNotFoundError(f"ESM checkpoint not found: {path}")
        path, trusted = _hub_file(str(name_or_path)), True
    data = _torch_load(path, trusted)
    regression_path = path.with_name(path.stem + "-contact-regression.pt")
    regression = _torch_load(regression_path, trusted) if regression_path.is_file() else None
    arch = "esm2" if "cfg" in data else path.stem
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Regression weights not found")
            model, alphabet = esm.pretrained.load_model_and_alphabet_core(arch, data, regression)
    except (KeyError, AttributeError, RuntimeError, ValueError) as err:
        raise InputError(
            f"{path}: not a fair-esm checkpoint this version can read ({type(err).__name__}: {err})"
        ) from None
    saved = data.get("biostrata", {}) if isinstance(data.get("biostrata"), dict) else {}
    limit = max_residues if max_residues is not None else saved.get("max_residues", 1022)
    return ProteinLM(model.eval(), alphabet, saved.get("name") or path.stem, limit)


def _hub_file(name: str) -> Path:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pt"
    if cached.is_file():
        return cached
    url = f"{ESM_URL}{name}.pt"
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=False)
    except Exception as err:  # noqa: BLE001 - offline, HTTP errors, ...
        raise DataNotFoundError(
            f"ESM model {name!r} is not in {cached.parent} and could not be downloaded from {url} "
            f"({type(err).__name__}). Put {name}.pt there, or pass the path of the .pt file."
        ) from None
    return cached


def small_protein_lm(
    num_layers: int = 4, embed_dim: int = 64, attention_heads: int = 4, seed: int = 0, max_residues: int | None = 1022
) -> ProteinLM:
    """A randomly initialised ESM-2 of the given size (ESM-1b alphabet), e.g. to pre-train on a CPU."""
    from esm.data import Alphabet
    from esm.model.esm2 import ESM2

    if embed_dim % attention_heads:
        raise InputError(f"embed_dim={embed_dim} must be a multiple of attention_heads={attention_heads}")
    torch.manual_seed(seed)
    alphabet = Alphabet.from_architecture("ESM-1b")
    model = ESM2(num_layers=num_layers, embed_dim=embed_dim, attention_heads=attention_heads, alphabet=alphabet)
    return ProteinLM(model, alphabet, f"esm2_t{num_layers}_d{embed_dim}_small", max_residues)


# ------------------------------------------------------------------------------------------------
# Extraction
# ------------------------------------------------------------------------------------------------


def plan_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group consecutive items (already sorted by length, ascending) so that
    ``(max length + 2) * count <= token_budget``; an item too long for the budget goes alone."""
    if token_budget < 3:
        raise InputError(f"token_budget={token_budget}: must be at least 3")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        if current and (max(longest, n) + 2) * (len(current) + 1) > token_budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


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


def embed_batch(
    plm: ProteinLM, seqs: Sequence[str], layers: Sequence[int], device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One padded forward pass: states ``[B, n_layers, T, D]`` (float32; position 0 is BOS, residues
    at 1..n) and their residue means ``[B, n_layers, D]``."""
    tokens = plm.tokenize(seqs).to(device)
    reps = plm.forward_layers(tokens, layers)
    states = torch.stack([reps[layer] for layer in plm.layer_index(layers)], 1).float()
    lengths = torch.tensor([len(s) for s in seqs], device=device)
    position = torch.arange(states.shape[2], device=device)
    residues = (position >= 1) & (position <= lengths[:, None])  # [B, T]
    return states, masked_mean(states, residues[:, None, :])


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


@torch.inference_mode()
def extract_embeddings(
    plm: ProteinLM,
    records: Sequence[ProteinRecord],
    out: str | Path,
    layers: Sequence[int] = (-1,),
    poolings: Sequence[str] = ("mean",),
    token_budget: int = 4096,
    long: str = "truncate",
    overlap: int = 128,
    device: str | torch.device | None = None,
    half: bool | None = None,
    dtype: str = "float32",
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
) -> Path:
    """Embed ``records`` into an HDF5 store (see module docstring); returns the store's path.

    ``device`` defaults to ``cuda:$LOCAL_RANK`` when a GPU is present, else the CPU (the model is moved
    there). ``half`` defaults to True on a GPU (float16 autocast: matrix products in half precision,
    normalizations and pooling in float32; the weights stay as they are) and is refused on the CPU.
    """
    from tqdm.auto import tqdm

    if long not in ("truncate", "window"):
        raise InputError(f"long={long!r}: use 'truncate' or 'window'")
    rank, world_size = _dist_env(rank, world_size)
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    half = device.type == "cuda" if half is None else half
    if half and device.type != "cuda":
        raise InputError("half precision needs a GPU; leave half unset (or False) on the CPU")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise InputError("sequence ids must be unique for the embedding store")
    layer_ids = plm.layer_index(layers)
    store = EmbeddingStore.create(
        shard_path(out, rank, world_size), plm.name, layer_ids, plm.embed_dim, poolings, dtype
    )
    limit = plm.max_residues
    window = limit if long == "window" else None
    # Length order; windowed proteins sort as their window length and keep their windows together.
    key = [min(len(r.sequence), limit) if limit else len(r.sequence) for r in records]
    order = sorted(range(len(records)), key=lambda i: key[i])[rank::world_size]
    todo = [i for i in order if records[i].id not in store]
    segments: list[tuple[int, int, int]] = []  # (record, start, end)
    for i in todo:
        n = len(records[i].sequence)
        if limit is None or n <= limit:
            segments.append((i, 0, n))
        elif window is None:
            segments.append((i, 0, limit))
        else:
            segments += [(i, s, s + window) for s in window_starts(n, window, overlap)]
    n_windows: dict[int, int] = {}  # proteins cut into more than one window
    for i, _, _ in segments:
        n_windows[i] = n_windows.get(i, 0) + 1
    n_windows = {i: k for i, k in n_windows.items() if k > 1}
    plm.to(device).eval()
    pending: dict[int, list] = {}
    bar = tqdm(total=sum(e - s for _, s, e in segments), unit="res", disable=not progress, desc=f"embed r{rank}")
    try:
        for batch in plan_batches([e - s for _, s, e in segments], token_budget):
            segs = [segments[j] for j in batch]
            with torch.autocast(device.type, dtype=torch.float16, enabled=half):
                states, means = embed_batch(plm, [records[i].sequence[s:e] for i, s, e in segs], layer_ids, device)
            bos = states[:, :, 0]
            keep_tokens = "per_token" in poolings
            done: list[tuple[int, int, dict[str, np.ndarray], np.ndarray | None]] = []
            for b, (i, s, e) in enumerate(segs):
                if i not in n_windows:
                    per_tok = states[b, :, 1 : e - s + 1].cpu().numpy() if keep_tokens else None
                    done.append((i, e - s, {"mean": means[b].cpu().numpy(), "bos": bos[b].cpu().numpy()}, per_tok))
                    continue
                pending.setdefault(i, []).append((s, states[b, :, 1 : e - s + 1].cpu().numpy(), bos[b].cpu().numpy()))
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
            bar.update(sum(e - s for _, s, e in segs))
    finally:
        bar.close()
        store.close()
    return store.path
