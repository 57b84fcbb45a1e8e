"""Protein sequences from FASTA files and from per-domain tables.

- FASTA: ``>id description`` header (the id is the text up to the first whitespace), then
  sequence lines, plain or gzip-compressed. A trailing stop ``*`` is removed; letters are upper-cased.
- Domain table (``mibig_domains.tsv``), tab-separated with a header that includes ``bgc_id``,
  ``pfam_id``, ``gene_id``, ``dna_start``, ``dna_end`` and ``protein_sequence``: one Pfam domain
  hit per row. Each row becomes a record with id ``<bgc_id>|<gene_id>|<dna_start>-<dna_end>|<pfam_id>``
  and ``family = pfam_id``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from biostrata.data.genome import open_text, text_only
from biostrata.errors import DataNotFoundError, InputError

__all__ = [
    "ProteinRecord",
    "iter_fasta",
    "read_fasta",
    "read_domain_proteins",
    "read_domain_segments",
    "read_proteins",
    "family_members",
]

CANONICAL_AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard residues

_TSV_COLUMNS = ("bgc_id", "pfam_id", "gene_id", "protein_accession", "dna_start", "dna_end", "protein_sequence")


@dataclass(frozen=True)
class ProteinRecord:
    """One protein (or protein segment): id, amino-acid sequence, optional Pfam family."""

    id: str
    sequence: str
    family: str | None = None


def _clean(seq: str, where: str) -> str:
    seq = seq.strip().upper().rstrip("*")
    if not seq:
        raise InputError(f"{where}: empty protein sequence")
    if not seq.isalpha():
        bad = next(c for c in seq if not c.isalpha())
        raise InputError(f"{where}: character {bad!r} in a protein sequence; only letters are allowed")
    return seq


def iter_fasta(path: str | Path) -> Iterator[ProteinRecord]:
    """Yield the records of a FASTA file one at a time (constant memory)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"FASTA file not found: {path}")
    with text_only(path, "a FASTA file of proteins, plain or gzip-compressed"), open_text(path) as handle:
        name, start, chunks = None, 0, []
        for lineno, line in enumerate(handle, 1):
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    yield ProteinRecord(name, _clean("".join(chunks), f"{path}:{start}"))
                fields = line[1:].split()
                if not fields:
                    raise InputError(f"{path}:{lineno}: FASTA header without an id")
                name, start, chunks = fields[0], lineno, []
            elif line:
                if name is None:
                    raise InputError(f"{path}:{lineno}: sequence before the first '>' header; is this FASTA?")
                chunks.append(line)
        if name is not None:
            yield ProteinRecord(name, _clean("".join(chunks), f"{path}:{start}"))


def read_fasta(path: str | Path) -> list[ProteinRecord]:
    """All records of a FASTA file; ids must be unique."""
    records, seen = [], set()
    for record in iter_fasta(path):
        if record.id in seen:
            raise InputError(f"{path}: sequence id {record.id!r} appears more than once; ids must be unique")
        seen.add(record.id)
        records.append(record)
    if not records:
        raise InputError(f"{path}: no FASTA records; expected '>id' header lines, each followed by its sequence")
    return records


def domain_rows(path: str | Path) -> Iterator[tuple[str, dict]]:
    """``(file:line, row)`` for every row of a domain table, with ``family`` (the Pfam accession without
    its version), ``segment`` (the cleaned protein sequence) and integer ``dna_start``/``dna_end`` added."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"domain table not found: {path}")
    with text_only(path, "a tab-separated domain table (.tsv)"), open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in _TSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}:1: missing column(s) {missing}; header is {reader.fieldnames}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(row[c] is None for c in _TSV_COLUMNS):
                raise InputError(f"{where}: wrong number of fields")
            for col in ("dna_start", "dna_end"):
                try:
                    row[col] = int(row[col])
                except ValueError:
                    raise InputError(f"{where}: {col} must be an integer, got {row[col]!r}") from None
            row["family"] = row["pfam_id"].strip().split(".")[0]
            row["segment"] = _clean(row["protein_sequence"], where)
            yield where, row


def hit_key(row: dict) -> tuple:
    """What identifies one domain hit: cluster, gene, protein, coordinates and family."""
    return row["bgc_id"], row["gene_id"], row["protein_accession"], row["dna_start"], row["dna_end"], row["family"]


def read_domain_proteins(path: str | Path, dedupe: bool = True) -> list[ProteinRecord]:
    """Per-domain protein segments of a domain table; with ``dedupe`` a sequence already seen in the
    same family is skipped."""
    records, seen_ids, seen_seq = [], set(), set()
    for where, row in domain_rows(path):
        family, seq = row["family"], row["segment"]
        rid = "|".join([row["bgc_id"], row["gene_id"], row["protein_accession"],
                        f"{row['dna_start']}-{row['dna_end']}", family])  # fmt: skip
        if dedupe and (family, seq) in seen_seq:
            continue
        if rid in seen_ids:
            raise InputError(f"{where}: record id {rid!r} repeats an earlier row")
        seen_ids.add(rid)
        seen_seq.add((family, seq))
        records.append(ProteinRecord(rid, seq, family))
    if not records:
        raise InputError(f"{path}: a header but no rows; expected one row per Pfam domain hit")
    return records


def read_domain_segments(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Cluster id -> its domain hits ``(Pfam accession, protein segment)``, clusters in id order, hits
    ordered by gene, start, end and family; rows repeating the same hit (gene, protein, coordinates,
    family) count once (the first)."""
    hits: dict[tuple, str] = {}
    for _, row in domain_rows(path):
        hits.setdefault(hit_key(row), row["segment"])
    out: dict[str, list[tuple[str, str]]] = {}
    for key in sorted(hits, key=lambda k: (k[0], k[1], k[3], k[4], k[5])):  # stable: ties keep file order
        out.setdefault(key[0], []).append((key[5], hits[key]))
    return out


def read_proteins(path: str | Path) -> list[ProteinRecord]:
    """FASTA, or a domain table when the name ends in ``.tsv``."""
    return read_domain_proteins(path) if str(path).endswith(".tsv") else read_fasta(path)


def family_members(records: list[ProteinRecord]) -> dict[str, list[str]]:
    """Pfam family -> ids of its member records (records without a family are left out)."""
    members: dict[str, list[str]] = {}
    for record in records:
        if record.family:
            members.setdefault(record.family, []).append(record.id)
    return members
