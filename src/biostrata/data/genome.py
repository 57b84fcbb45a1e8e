"""Labelled DNA sequence sets and their files.

Formats read:
- CSV with header ``sequence,label`` (the GUE layout); labels are integers >= 0.
- FASTA whose header carries the label as ``label=K`` (``>seq1 label=1``) or as the last
  ``|``-separated field (``>seq1|1``).
- A GUE task folder: ``train.csv``, ``dev.csv``, ``test.csv``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biostrata.data.alphabet import encode
from biostrata.errors import DataNotFoundError, InputError

SPLITS = ("train", "dev", "test")


@dataclass
class SequenceSet:
    """Sequences with integer labels; ``source`` names the file, ``lines`` each sequence's line in it."""

    sequences: list[str]
    labels: np.ndarray
    source: str = ""
    lines: list[int] | None = None

    def where(self, i: int) -> str:
        """Where sequence ``i`` came from, for error messages."""
        at = f"line {self.lines[i]}" if self.lines else f"sequence {i + 1}"
        return f"{self.source}, {at}" if self.source else at

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.sequences) != len(self.labels):
            raise InputError(f"{self.source}: {len(self.sequences)} sequences but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.sequences)


@dataclass
class Splits:
    """Train, validation (dev) and test sets of one task."""

    train: SequenceSet
    dev: SequenceSet
    test: SequenceSet

    def __iter__(self):
        return iter((self.train, self.dev, self.test))

    @property
    def num_classes(self) -> int:
        """Classes 0 .. C-1 with C - 1 the largest training label: the test split never shapes the
        model. A dev or test label outside them is an error (a model cannot predict it)."""
        n = int(self.train.labels.max(initial=0)) + 1
        for part in (self.dev, self.test):
            unseen = np.flatnonzero(part.labels >= n)
            if unseen.size:
                i = int(unseen[0])
                raise InputError(
                    f"{part.where(i)}: label {part.labels[i]} does not occur in the training split "
                    f"{self.train.source or ''} (labels 0..{n - 1}); every class must have training examples"
                )
        return n

    @property
    def max_length(self) -> int:
        """The longest train or dev sequence (the test split never shapes the model)."""
        return max(max((len(q) for q in s.sequences), default=0) for s in (self.train, self.dev))


def read_labelled(path: str | Path) -> SequenceSet:
    """Read a CSV (``sequence,label``) or a FASTA file with labels in the headers."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; expected a CSV with header 'sequence,label' or a FASTA file")
    if path.suffix.lower() in {".fa", ".fasta", ".fna", ".fas"}:
        seqs, labels, lines = _read_fasta(path)
    else:
        seqs, labels, lines = _read_csv(path)
    if not seqs:
        raise InputError(f"{path}: no sequences found")
    return SequenceSet(seqs, np.array(labels, dtype=np.int64), str(path), lines)


def _parse_label(text: str, where: str) -> int:
    try:
        label = int(text)
    except ValueError:
        raise InputError(f"{where}: label {text!r} is not an integer; labels must be 0, 1, ...") from None
    if label < 0:
        raise InputError(f"{where}: label {label} is negative; labels must be 0, 1, ...")
    return label


def _read_csv(path: Path) -> tuple[list[str], list[int], list[int]]:
    seqs: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["sequence", "label"]:
            raise InputError(f"{path}, line 1: expected the header 'sequence,label', found {header!r}")
        for lineno, row in enumerate(rows, start=2):
            if not row:
                continue
            where = f"{path}, line {lineno}"
            if len(row) < 2:
                raise InputError(f"{where}: expected 2 fields 'sequence,label', found {len(row)}")
            seq = row[0].strip()
            if not seq:
                raise InputError(f"{where}: empty sequence")
            seqs.append(seq)
            lines.append(lineno)
            labels.append(_parse_label(row[1].strip(), where))
    return seqs, labels, lines


_LABEL_IN_HEADER = re.compile(r"(?:^|\s)label=(\S+)")


def _read_fasta(path: Path) -> tuple[list[str], list[int], list[int]]:
    seqs: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    chunks: list[str] = []
    header_line = 0

    def close() -> None:
        if header_line and not chunks:
            raise InputError(f"{path}, line {header_line}: record has no sequence")
        if header_line:
            seqs.append("".join(chunks))
            lines.append(header_line + 1)

    with path.open() as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                close()
                chunks, header_line = [], lineno
                match = _LABEL_IN_HEADER.search(line[1:])
                if match:
                    text = match.group(1)
                elif "|" in line:
                    text = line.rsplit("|", 1)[1].strip()
                else:
                    raise InputError(
                        f"{path}, line {lineno}: no label in FASTA header; write it as '>id label=K' or '>id|K'"
                    )
                labels.append(_parse_label(text, f"{path}, line {lineno}"))
            elif not header_line:
                raise InputError(f"{path}, line {lineno}: sequence before the first '>' header")
            else:
                chunks.append(line)
    close()
    return seqs, labels, lines


def read_gue_dir(path: str | Path) -> Splits:
    """Read a GUE-layout task folder: ``train.csv``, ``dev.csv``, ``test.csv``."""
    path = Path(path)
    if not path.is_dir():
        raise DataNotFoundError(f"{path}: no such folder; expected a task folder with train.csv, dev.csv, test.csv")
    missing = [f"{s}.csv" for s in SPLITS if not (path / f"{s}.csv").is_file()]
    if missing:
        raise DataNotFoundError(
            f"{path}: missing {', '.join(missing)}; a GUE-layout folder has train.csv, dev.csv, test.csv"
        )
    return Splits(*(read_labelled(path / f"{s}.csv") for s in SPLITS))


class EncodedSequences:
    """A ``SequenceSet`` encoded once to (N, length) int8 indices (-1 = padding), a map-style
    dataset for ``torch.utils.data.DataLoader``.

    Items are ``(indices, label)``; the model one-hot encodes on its own device.
    """

    def __init__(self, data: SequenceSet, length: int, *, truncate: bool = False) -> None:
        import torch  # here, not at module level: reading sequence files needs no torch

        idx = np.empty((len(data), length), dtype=np.int8)
        for i, seq in enumerate(data.sequences):
            idx[i] = encode(seq, length, truncate=truncate, where=data.where(i))
        self.indices = torch.from_numpy(idx)
        self.labels = torch.from_numpy(data.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple:
        return self.indices[i], self.labels[i]
