"""Batches of a layer-wise encoder: how items are packed (:func:`plan_batches` within a token budget,
:func:`count_batches` by count), on which device and in which precision (:func:`check_options`), and
the forward pass of each batch (:func:`forward_batches`), and how a protein too long for a model is cut
(:func:`cut_segments`: truncated, or windows of :func:`window_starts`, whose states :func:`merge_windows`
joins). :mod:`biostrata.models.extract` runs its loops over these.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from biostrata.config import PRECISIONS as CONFIG_PRECISIONS
from biostrata.errors import ParameterError

__all__ = ["check_token_budget", "plan_batches", "count_batches", "default_device", "check_options", "forward_batches",
           "window_starts", "merge_windows", "cut_segments", "PRECISIONS", "DEFAULT_TOKEN_BUDGET"]  # fmt: skip


def check_token_budget(token_budget: int, special: int = 0) -> None:
    """Refuse a ``token_budget`` that holds no item: one token of its own and the ``special`` tokens each
    item gets around it (:class:`~biostrata.errors.ParameterError`)."""
    if token_budget < special + 1:
        room = f", one residue and the {special} special tokens" if special else ""
        raise ParameterError("token_budget", f"token_budget={token_budget}: must be at least {special + 1}{room}")


def plan_batches(lengths: Sequence[int], token_budget: int, special: int = 0) -> list[list[int]]:
    """Group consecutive items (in the given order; sort them by length first) so that
    ``(max length + special) * count <= token_budget``; an item too long for the budget goes alone."""
    check_token_budget(token_budget, special)
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
        raise ParameterError("batch_size", f"batch_size={batch_size}: must be at least 1")
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else ``cuda:$LOCAL_RANK`` when a GPU is present, else the CPU."""
    if device is None:
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ParameterError("device", f"device={str(device)!r}: not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", f"device={str(device)!r}: no GPU is available here; use cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ParameterError("device", f"device={str(device)!r}: no MPS device is available here; use cpu")
    return device


# The autocast of each precision an extraction runs in (by Lightning's name): none for float32, or bfloat16 /
# float16 over the float32 weights.
_AUTOCAST = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
#: The names of those precisions (config.PRECISIONS: the one vocabulary, which maps each name to Lightning's).
PRECISIONS = tuple(name for name, meaning in CONFIG_PRECISIONS.items() if meaning in _AUTOCAST)
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
    refusing options that cannot work, each named (:class:`~biostrata.errors.ParameterError`). ``precision`` None: fp16
    on a GPU, fp32 on the CPU; ``token_budget`` None: :data:`DEFAULT_TOKEN_BUDGET` of the device.
    ``max_residues`` None: not known yet (the model's); ``special``: the tokens each item gets around
    its own (ESM: 2)."""
    if long not in ("truncate", "window"):
        raise ParameterError("long", f"long={long!r}: use 'truncate' or 'window'")
    device = default_device(device)
    token_budget = DEFAULT_TOKEN_BUDGET.get(device.type, 4096) if token_budget is None else token_budget
    check_token_budget(token_budget, special)
    if long == "window" and max_residues is not None and not 0 <= overlap < max_residues:
        raise ParameterError(
            "overlap",
            f"overlap={overlap}: must be in [0, {max_residues}), shorter than the windows of max_residues={max_residues}",
        )
    return device, _precision(precision, device), token_budget


def _precision(precision: str | None, device: torch.device) -> str:
    """``precision`` checked for ``device``; None: fp16 on a GPU, fp32 on the CPU."""
    precision = ("fp16" if device.type == "cuda" else "fp32") if precision is None else precision
    if precision not in PRECISIONS:
        raise ParameterError("precision", f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if CONFIG_PRECISIONS[precision] == "16-mixed" and device.type != "cuda":
        raise ParameterError(
            "precision", f"precision={precision!r}: float16 needs a GPU, and the device is {device}; use bf16 or fp32"
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
    dtype = _AUTOCAST[CONFIG_PRECISIONS[precision]]
    for batch in batches:
        x = collate([items[i] for i in batch]).to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            yield list(batch), model.embed(x, layers)


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Starts of windows of ``window`` residues, every ``window - overlap``, the last ending at ``length``."""
    if not 0 <= overlap < window:
        raise ParameterError("overlap", f"overlap={overlap}: must be in [0, window={window})")
    if length <= window:
        return [0]
    starts = list(range(0, length - window, window - overlap))
    return starts + [length - window]


def merge_windows(parts: list[tuple[int, np.ndarray]], length: int) -> np.ndarray:
    """Per-residue states ``[n_layers, length, D]`` from windows ``(start, [n_layers, w, D])``: each
    residue from the window where it is farthest from an edge (cut at the middle of each overlap)."""
    out = np.empty((parts[0][1].shape[0], length, parts[0][1].shape[2]), dtype=np.float32)
    for k, (start, states) in enumerate(parts):
        end = start + states.shape[1]
        lo = start if k == 0 else (start + parts[k - 1][0] + parts[k - 1][1].shape[1]) // 2
        hi = end if k == len(parts) - 1 else (parts[k + 1][0] + end) // 2
        out[:, lo:hi] = states[:, lo - start : hi - start]
    return out


def cut_segments(sequences: Sequence[str], order: Sequence[int], limit: int | None, window: int | None,
              overlap: int) -> list[tuple[int, int, int]]:  # fmt: skip
    """``(sequence, start, end)`` pieces to embed: a whole protein, its first ``limit`` residues, or windows."""
    segments = []
    for i in order:
        n = len(sequences[i])
        if limit is None or n <= limit:
            segments.append((i, 0, n))
        elif window is None:
            segments.append((i, 0, limit))
        else:
            segments += [(i, s, s + window) for s in window_starts(n, window, overlap)]
    return segments
