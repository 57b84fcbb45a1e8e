"""Protein sequences from FASTA files and from per-domain tables.

- FASTA: ``>id description`` header (the id is the text up to the first whitespace), then
  sequence lines, plain or gzip-compressed. A trailing stop ``*`` is removed; letters are upper-cased.
- Domain table, tab-separated with a header, one Pfam domain hit per row, in either of two layouts told by
  their column names (:data:`DOMAIN_TABLE_COLUMNS`): MIBiG's (``mibig_domains.tsv``: ``bgc_id``, ``pfam_id``,
  ``gene_id``, ``protein_accession``, ``dna_start``, ``dna_end``, ``protein_sequence``, and for the strata
  ``dna_sequence``, ``frame_evidence``, ``biosynthetic_class``) or ``biostrata annotate``'s ``domains.tsv``
  (the cluster is its ``record``, gene and protein its ``protein_id``; the same ``pfam_id``, ``dna_start``,
  ``dna_end``, ``dna_sequence``, ``protein_sequence``, ``frame_evidence``). Each row becomes a record with id
  ``<bgc_id>|<gene_id>|<protein_accession>|<dna_start>-<dna_end>|<family>``, ``family`` the accession
  without its version.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from biostrata.data.fasta import parse_fasta
from biostrata.data.files import open_text, text_only
from biostrata.errors import DataNotFoundError, InputError

__all__ = [
    "ProteinRecord",
    "iter_fasta",
    "read_fasta",
    "read_domain_proteins",
    "read_domain_segments",
    "domain_rows",
    "DOMAIN_TABLE_COLUMNS",
    "read_proteins",
    "family_members",
]

CANONICAL_AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard residues

#: The columns a domain table needs, by their MIBiG names, each read from the first of its names that the
#: header has: MIBiG's, then ``biostrata annotate``'s.
DOMAIN_TABLE_COLUMNS = {
    "bgc_id": ("bgc_id", "record"),
    "pfam_id": ("pfam_id",),
    "gene_id": ("gene_id", "protein_id"),
    "protein_accession": ("protein_accession", "protein_id"),
    "dna_start": ("dna_start",),
    "dna_end": ("dna_end",),
    "protein_sequence": ("protein_sequence",),
}


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
    for record in parse_fasta(path, "a FASTA file of proteins, plain or gzip-compressed"):
        yield ProteinRecord(record.id, _clean(record.sequence, f"{path}:{record.line}"))


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
    """``(file:line, row)`` for every row of a domain table in either layout (module docstring), with the
    columns of :data:`DOMAIN_TABLE_COLUMNS` under their MIBiG names, integer ``dna_start``/``dna_end``,
    ``family`` (the Pfam accession without its version), ``segment`` (the cleaned protein sequence) and
    ``locus``, the key that orders a cluster's hits: by gene, then ``dna_start``, ``dna_end`` and family; genes
    by ``gene_id`` in the MIBiG layout, along the record in annotate's (``gene_start``, ``gene_end``, then the
    gene's first line: proteins without coordinates in file order, as in annotate's ``clusters.csv``)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"domain table not found: {path}")
    with text_only(path, "a tab-separated domain table (.tsv)"), open_text(path) as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        header = reader.fieldnames or []
        names = {c: next((n for n in options if n in header), None) for c, options in DOMAIN_TABLE_COLUMNS.items()}
        missing = [c for c, n in names.items() if n is None]
        if missing:
            older = "record" in header and "protein_id" in header  # annotate's layout, before the domains' sequences
            raise InputError(
                f"{path}:1: missing column(s) {missing}; header is {header}. "
                + ("Written by an older `biostrata annotate`: annotate again to add them" if older else
                   "Give `biostrata annotate`'s domains.tsv or a table in the MIBiG layout (mibig_domains.tsv)")
            )  # fmt: skip
        placed = "gene_start" in header and "gene_end" in header
        first_line: dict[tuple[str, str], int] = {}
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise InputError(f"{where}: wrong number of fields (the header has {len(header)})")
            row.update({c: row[n] for c, n in names.items()})
            for col in ("dna_start", "dna_end", *(("gene_start", "gene_end") if placed else ())):
                try:
                    row[col] = int(row[col])
                except ValueError:
                    raise InputError(f"{where}: {col} must be an integer, got {row[col]!r}") from None
            row["family"] = row["pfam_id"].strip().split(".")[0]
            row["segment"] = _clean(row["protein_sequence"], where)
            gene = (row["gene_start"], row["gene_end"], first_line.setdefault((row["bgc_id"], row["gene_id"]),
                    reader.line_num)) if placed else (row["gene_id"],)  # fmt: skip
            row["locus"] = (*gene, row["dna_start"], row["dna_end"], row["family"])
            yield where, row


def hit_key(row: dict) -> tuple:
    """What identifies one domain hit: cluster, gene, protein, coordinates and family."""
    return row["bgc_id"], row["gene_id"], row["protein_accession"], row["dna_start"], row["dna_end"], row["family"]


#: ``frame_evidence`` of a row whose reading frame was checked (MIBiG's ``hmm`` and ``unique``, annotate's
#: ``hmm``); ``ambiguous`` (MIBiG), ``mismatch`` and ``unchecked`` (annotate) are not; an empty value has no DNA
#: to check.
CHECKED_FRAMES = ("hmm", "unique")


def read_domain_proteins(path: str | Path, dedupe: bool = True, counts: dict | None = None) -> list[ProteinRecord]:
    """Per-domain protein segments of a domain table; with ``dedupe`` a sequence already seen in the
    same family is skipped (its rows share the first one's record). ``counts``, if given, is filled with
    ``rows``, ``merged`` (rows skipped so) and ``unchecked_frame`` (rows kept whose ``frame_evidence`` is
    neither empty nor one of :data:`CHECKED_FRAMES`: their segment may be read in a wrong frame)."""
    records, seen_ids, seen_seq = [], set(), set()
    tally = {"rows": 0, "merged": 0, "unchecked_frame": 0}
    for where, row in domain_rows(path):
        family, seq = row["family"], row["segment"]
        rid = "|".join([row["bgc_id"], row["gene_id"], row["protein_accession"],
                        f"{row['dna_start']}-{row['dna_end']}", family])  # fmt: skip
        tally["rows"] += 1
        if dedupe and (family, seq) in seen_seq:
            tally["merged"] += 1
            continue
        tally["unchecked_frame"] += row.get("frame_evidence", "") not in ("", *CHECKED_FRAMES)
        if rid in seen_ids:
            raise InputError(f"{where}: record id {rid!r} repeats an earlier row")
        seen_ids.add(rid)
        seen_seq.add((family, seq))
        records.append(ProteinRecord(rid, seq, family))
    if not records:
        raise InputError(f"{path}: a header but no rows; expected one row per Pfam domain hit")
    if counts is not None:
        counts.update(tally)
    return records


def read_domain_segments(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Cluster id -> its domain hits ``(Pfam accession, protein segment)``, clusters in id order, hits in
    ``locus`` order (:func:`domain_rows`: by gene, start, end and family); rows repeating the same hit (gene,
    protein, coordinates, family) count once (the first)."""
    hits: dict[tuple, tuple[tuple, str]] = {}
    for _, row in domain_rows(path):
        hits.setdefault(hit_key(row), (row["locus"], row["segment"]))
    out: dict[str, list[tuple[str, str]]] = {}
    for key in sorted(hits, key=lambda k: (k[0], hits[k][0])):  # stable: ties keep file order
        out.setdefault(key[0], []).append((key[5], hits[key][1]))
    return out


def read_proteins(path: str | Path, counts: dict | None = None) -> list[ProteinRecord]:
    """FASTA, or a domain table when the name ends in ``.tsv`` (any case; ``counts`` as
    :func:`read_domain_proteins` fills it, left empty for FASTA)."""
    if Path(path).suffix.lower() == ".tsv":
        return read_domain_proteins(path, counts=counts)
    return read_fasta(path)


def family_members(records: list[ProteinRecord]) -> dict[str, list[str]]:
    """Pfam family -> ids of its member records (records without a family are left out)."""
    members: dict[str, list[str]] = {}
    for record in records:
        if record.family:
            members.setdefault(record.family, []).append(record.id)
    return members
