"""DNA alphabet and one-hot encoding.

Channels are A, C, G, T, N (in that order). Lowercase letters are accepted; the IUPAC ambiguity
codes R Y S W K M B D H V become N; U (RNA) is read as T. Any other character is an error that
names where it was found. Positions past the end of a sequence are padding: index -1, an all-zero
one-hot column (the origin once lifted onto the hyperboloid).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from biostrata.errors import InputError

if TYPE_CHECKING:  # torch is imported where a tensor is made: reading files needs no torch
    import torch

ALPHABET = "ACGTN"
PAD = -1
_IUPAC_AMBIGUOUS = "RYSWKMBDHV"

_LOOKUP = np.full(256, -2, dtype=np.int64)
for _i, _c in enumerate(ALPHABET):
    _LOOKUP[ord(_c)] = _LOOKUP[ord(_c.lower())] = _i
for _c in _IUPAC_AMBIGUOUS:
    _LOOKUP[ord(_c)] = _LOOKUP[ord(_c.lower())] = ALPHABET.index("N")
_LOOKUP[ord("U")] = _LOOKUP[ord("u")] = ALPHABET.index("T")


def encode(seq: str, length: int, *, truncate: bool = False, where: str = "") -> np.ndarray:
    """Indices into ``ALPHABET`` of shape (length,), right-padded with ``PAD``.

    ``where`` (e.g. ``"train.csv:12"``) is put in error messages.
    """
    at = f" ({where})" if where else ""
    if len(seq) > length:
        if not truncate:
            raise InputError(
                f"sequence of length {len(seq)} is longer than the model length {length}{at}; "
                "raise the length or truncate (cut sequences to the model length)"
            )
        seq = seq[:length]
    try:
        raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        pos = next(i for i, c in enumerate(seq) if ord(c) > 127)
        raise InputError(_bad_char_message(seq[pos], pos, at)) from None
    idx = _LOOKUP[raw]
    bad = np.flatnonzero(idx == -2)
    if bad.size:
        raise InputError(_bad_char_message(seq[bad[0]], int(bad[0]), at))
    out = np.full(length, PAD, dtype=np.int64)
    out[: idx.size] = idx
    return out


def _bad_char_message(char: str, pos: int, at: str) -> str:
    return (
        f"invalid character {char!r} at position {pos + 1}{at}; DNA sequences may contain "
        f"A, C, G, T, N (any case) and the IUPAC codes {_IUPAC_AMBIGUOUS} (read as N)"
    )


def one_hot(idx: torch.Tensor) -> torch.Tensor:
    """(B, L) long indices -> (B, 5, L) float one-hot; ``PAD`` positions become zero columns."""
    import torch

    out = torch.zeros(idx.shape[0], len(ALPHABET), idx.shape[1], dtype=torch.float32, device=idx.device)
    valid = idx >= 0
    out.scatter_(1, idx.clamp_min(0).unsqueeze(1), valid.unsqueeze(1).to(out.dtype))
    return out


def encode_batch(seqs: Sequence[str], length: int, *, truncate: bool = False) -> torch.Tensor:
    """One-hot (B, 5, length) tensor of a list of sequences."""
    import torch

    idx = np.stack([encode(s, length, truncate=truncate, where=f"sequence {i + 1}") for i, s in enumerate(seqs)])
    return one_hot(torch.from_numpy(idx))
