"""FASTA files: one tokenizer (:func:`parse_fasta`) under every reader, and one writer (:func:`write_fasta`).

A record is a ``>id description`` header line (the id is the text up to the first whitespace, the
description the rest) followed by its sequence lines, joined with their surrounding whitespace removed;
blank lines are skipped. Files are read plain or gzip-compressed (told by the first bytes). The tokenizer
checks only the layout; each reader checks its own alphabet and labels (proteins:
:func:`biostrata.data.clusters.proteins.read_fasta`; labelled DNA: :func:`biostrata.data.dna.genome.read_labelled`;
genomes and gene clusters: :func:`biostrata.data.annotation.genes.read_records`). Errors read ``path:line: message``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from biostrata.data.files import open_text, text_only
from biostrata.errors import InputError
from biostrata.io import atomic_write_text

__all__ = ["FastaRecord", "parse_fasta", "write_fasta"]


class FastaRecord(NamedTuple):
    """One FASTA record as written: ``id``, ``description`` ("" when the header has none), ``sequence``
    (its lines joined, case kept; "" when the header is followed by no sequence) and ``line``, the
    1-based line of its header (for messages: ``f"{path}:{line}: ..."``)."""

    id: str
    description: str
    sequence: str
    line: int


def parse_fasta(path: str | Path, expected: str = "a FASTA file, plain or gzip-compressed") -> Iterator[FastaRecord]:
    """Yield the records of the FASTA file ``path`` one at a time (constant memory). A header without an
    id and a sequence line before the first header are errors, and so is a file that is not text or a
    damaged gzip file (the message names ``expected``, the kind of file the caller reads)."""
    path = Path(path)
    with text_only(path, expected), open_text(path) as handle:
        header: tuple[str, str, int] | None = None
        chunks: list[str] = []
        for lineno, line in enumerate(handle, 1):
            line = line.strip()
            if line.startswith(">"):
                if header is not None:
                    yield FastaRecord(*header[:2], "".join(chunks), header[2])
                fields = line[1:].split(maxsplit=1)
                if not fields:
                    raise InputError(f"{path}:{lineno}: FASTA header without an id")
                header, chunks = (fields[0], fields[1] if len(fields) > 1 else "", lineno), []
            elif line:
                if header is None:
                    raise InputError(f"{path}:{lineno}: sequence before the first '>' header; is this FASTA?")
                chunks.append(line)
        if header is not None:
            yield FastaRecord(*header[:2], "".join(chunks), header[2])


def write_fasta(path: str | Path, records: Iterable[tuple[str, str, str]]) -> None:
    """Write ``(id, description, sequence)`` records to ``path`` atomically, each as a ``>id description``
    header (``>id`` when the description is empty) and its sequence on one line; :func:`parse_fasta`
    reads them back."""
    atomic_write_text(
        Path(path), "".join(f">{rid} {text}\n{seq}\n" if text else f">{rid}\n{seq}\n" for rid, text, seq in records)
    )
