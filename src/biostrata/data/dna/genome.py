"""Labelled DNA sequence sets and their files.

Formats read, each also gzip-compressed (``train.csv.gz``):
- CSV with a header naming a ``sequence`` (or ``seq``) column and a ``label`` column, in any order
  (GUE: ``sequence,label``; TEB: ``seq,label,biotype``); labels are integers >= 0. Other columns
  are kept as metadata (``SequenceSet.meta``), never as the label. Fields may be as long as a genome.
- FASTA (``.fa``, ``.fasta``, ``.fna``, ``.fas``) whose header carries the label as ``label=K``
  (``>seq1 label=1``) or as the last ``|``-separated field (``>seq1|1``).
- A task folder: ``train``, ``dev`` and ``test`` files in those formats (the GUE layout:
  ``train.csv``, ``dev.csv``, ``test.csv``).

Labels need not run 0..C-1: the classes of a model are the distinct training labels in order
(``Splits.labels``), so labels {0, 5} make a two-class model whose class 1 is label 5.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from biostrata.data.dna.alphabet import encode
from biostrata.data.fasta import parse_fasta
from biostrata.data.files import open_text, text_only
from biostrata.errors import DataNotFoundError, InputError

SPLITS = ("train", "dev", "test")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")
SEQUENCE_SUFFIXES = (".csv", *FASTA_SUFFIXES)  # each may be followed by .gz

#: Python's csv refuses fields over 131,072 characters; a genomic record can be longer.
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


@dataclass
class SequenceSet:
    """Sequences with integer labels; ``source`` names the file, ``lines`` each sequence's line in it,
    ``meta`` the file's other columns by name (one string per sequence; TEB's ``biotype``)."""

    sequences: list[str]
    labels: np.ndarray
    source: str = ""
    lines: list[int] | None = None
    meta: dict[str, list[str]] = field(default_factory=dict)

    def where(self, i: int) -> str:
        """Where sequence ``i`` came from, for error messages."""
        if self.lines:  # path:line, the one format of every reader's errors
            return f"{self.source}:{self.lines[i]}" if self.source else f"line {self.lines[i]}"
        return f"{self.source}: sequence {i + 1}" if self.source else f"sequence {i + 1}"

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
    def labels(self) -> list[int]:
        """The distinct training labels in order: class i of a model is label ``labels[i]`` (the test
        split never shapes the model). A dev or test label outside them is an error (a model cannot
        predict it)."""
        labels = np.unique(self.train.labels)
        for part in (self.dev, self.test):
            unseen = np.flatnonzero(~np.isin(part.labels, labels))
            if unseen.size:
                i = int(unseen[0])
                raise InputError(
                    f"{part.where(i)}: label {part.labels[i]} does not occur in the training split "
                    f"{self.train.source} (labels {', '.join(map(str, labels))}); every class needs training examples"
                )
        return labels.tolist()

    @property
    def num_classes(self) -> int:
        """The number of classes: distinct training labels (see ``labels``)."""
        return len(self.labels)

    @property
    def max_length(self) -> int:
        """The longest train or dev sequence (the test split never shapes the model)."""
        return max(max((len(q) for q in s.sequences), default=0) for s in (self.train, self.dev))


def read_labelled(path: str | Path) -> SequenceSet:
    """Read a CSV (a ``sequence`` or ``seq`` column and a ``label`` column, see the module docstring) or a
    FASTA file with labels in the headers, either one plain or
    gzip-compressed. FASTA is told by the suffix (before any ``.gz``), gzip by the file's first bytes."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; expected a CSV with header 'sequence,label' or a FASTA file")
    fasta = path.suffix.lower() in FASTA_SUFFIXES or "".join(path.suffixes[-2:]).lower() in _GZ_FASTA
    if fasta:
        seqs, labels, lines = _read_fasta(path)
        meta = {}
    else:
        with text_only(path, _EXPECTED), open_text(path) as handle:
            seqs, labels, lines, meta = _read_csv(handle, path)
    if not seqs:
        raise InputError(f"{path}: no sequences found")
    return SequenceSet(seqs, np.array(labels, dtype=np.int64), str(path), lines, meta)


_GZ_FASTA = {s + ".gz" for s in FASTA_SUFFIXES}
_EXPECTED = "a CSV (sequence,label) or FASTA file, plain or gzip-compressed"


def _parse_label(text: str, where: str) -> int:
    try:
        label = int(text)
    except ValueError:
        raise InputError(f"{where}: label {text!r} is not an integer; labels must be 0, 1, ...") from None
    if label < 0:
        raise InputError(f"{where}: label {label} is negative; labels must be 0, 1, ...")
    return label


#: Accepted names of the sequence column (GUE writes ``sequence``, TEB ``seq``); case is ignored.
SEQUENCE_COLUMNS = ("sequence", "seq")


def _csv_columns(header: list[str] | None, path: Path) -> tuple[int, int, dict[str, int]]:
    """Positions of the sequence and label columns in ``header``, and of the other named columns."""
    names = [h.strip().lower() for h in header or []]
    seq = next((names.index(n) for n in SEQUENCE_COLUMNS if n in names), None)
    if seq is None or "label" not in names:
        raise InputError(
            f"{path}:1: expected a header with a sequence column ('sequence' or 'seq') and a 'label' column "
            f"(GUE: 'sequence,label'; TEB: 'seq,label,biotype'), found {header!r}"
        )
    label = names.index("label")
    others = [(h.strip(), i) for i, h in enumerate(header or []) if i not in (seq, label) and h.strip()]
    names_seen = [h for h, _ in others]
    twice = [h for h in names_seen if names_seen.count(h) > 1]
    if twice:
        raise InputError(f"{path}:1: column {twice[0]!r} appears more than once; give each column its own name")
    extra = dict(others)
    return seq, label, extra


def _read_csv(handle: TextIO, path: Path) -> tuple[list[str], list[int], list[int], dict[str, list[str]]]:
    seqs: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    rows = csv.reader(handle)
    limit = csv.field_size_limit(_CSV_FIELD_LIMIT)  # process-wide: raised while reading, then restored
    try:
        seq_col, label_col, extra = _csv_columns(next(rows, None), path)
        meta: dict[str, list[str]] = {name: [] for name in extra}
        width = max(seq_col, label_col) + 1
        for row in rows:
            if not row:
                continue
            where = f"{path}:{rows.line_num}"
            if len(row) < width:
                raise InputError(f"{where}: expected at least {width} fields, found {len(row)}")
            seq = row[seq_col].strip()
            if not seq:
                raise InputError(f"{where}: empty sequence")
            seqs.append(seq)
            lines.append(rows.line_num)
            labels.append(_parse_label(row[label_col].strip(), where))
            for name, i in extra.items():
                meta[name].append(row[i].strip() if i < len(row) else "")
    except csv.Error as err:
        raise InputError(f"{path}:{rows.line_num}: not readable as CSV ({err})") from None
    finally:
        csv.field_size_limit(limit)
    return seqs, labels, lines, meta


_LABEL_IN_HEADER = re.compile(r"(?:^|\s)label=(\S+)")


def _read_fasta(path: Path) -> tuple[list[str], list[int], list[int]]:
    seqs: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    for record in parse_fasta(path, _EXPECTED):
        where = f"{path}:{record.line}"
        header = f"{record.id} {record.description}"
        match = _LABEL_IN_HEADER.search(header)
        if match:
            text = match.group(1)
        elif "|" in header:
            text = header.rsplit("|", 1)[1].strip()
        else:
            raise InputError(f"{where}: no label in FASTA header; write it as '>id label=K' or '>id|K'")
        labels.append(_parse_label(text, where))
        if not record.sequence:
            raise InputError(f"{where}: record has no sequence")
        seqs.append(record.sequence)
        lines.append(record.line + 1)
    return seqs, labels, lines


def split_file(folder: str | Path, split: str) -> Path:
    """``folder/<split><suffix>`` for the first of ``SEQUENCE_SUFFIXES`` present, plain or ``.gz``
    (``folder/<split>.csv`` when none is)."""
    folder = Path(folder)
    for suffix in SEQUENCE_SUFFIXES:
        for name in (f"{split}{suffix}", f"{split}{suffix}.gz"):
            if (folder / name).is_file():
                return folder / name
    return folder / f"{split}.csv"


def read_gue_dir(path: str | Path) -> Splits:
    """Read a task folder: ``train``, ``dev`` and ``test`` files (``train.csv``, ``dev.csv``, ``test.csv`` in
    the GUE layout; FASTA and gzip-compressed files too, see ``split_file``)."""
    path = Path(path)
    if not path.is_dir():
        raise DataNotFoundError(f"{path}: no such folder; expected a task folder with train.csv, dev.csv, test.csv")
    missing = [f"{s}.csv" for s in SPLITS if not split_file(path, s).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{path}: missing {', '.join(missing)}; a task folder has train.csv, dev.csv, test.csv "
            "(or FASTA files, each plain or .gz)"
        )
    return Splits(*(read_labelled(split_file(path, s)) for s in SPLITS))


class EncodedSequences:
    """A ``SequenceSet`` encoded once to (N, length) int8 indices (-1 = padding), a map-style
    dataset for ``torch.utils.data.DataLoader``.

    Items are ``(indices, class)``; the model one-hot encodes on its own device. The class of a
    sequence is the index of its label in ``labels`` (``Splits.labels``; default: the label itself).
    """

    def __init__(
        self, data: SequenceSet, length: int, *, truncate: bool = False, labels: list[int] | None = None
    ) -> None:
        import torch  # here, not at module level: reading sequence files needs no torch

        idx = np.empty((len(data), length), dtype=np.int8)
        for i, seq in enumerate(data.sequences):
            idx[i] = encode(seq, length, truncate=truncate, where=data.where(i))
        self.indices = torch.from_numpy(idx)
        classes = data.labels if labels is None else np.searchsorted(np.asarray(labels), data.labels)
        self.labels = torch.from_numpy(np.asarray(classes, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple:
        return self.indices[i], self.labels[i]
