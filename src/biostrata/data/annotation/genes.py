"""Genes of genomes and gene clusters: read from GenBank or FASTA, taken from CDS features or predicted.

Inputs (each optionally gzipped, told by the file's first bytes):

- GenBank (``.gbk``, ``.gb``, ``.gbff``, ``.genbank``), read with gb-io: every record's sequence and
  its CDS features (``/translation``, else the CDS translated with its ``/transl_table``, default 11,
  from its ``/codon_start``);
- FASTA: a nucleotide FASTA (records of IUPAC nucleotide letters; one record per sequence) or a protein
  FASTA (``.faa``, or records that are not nucleotides); one file holds one kind. A protein FASTA is
  one gene cluster: all its proteins make one record, named by the file name without its suffix (and
  ``.gz``: ``cluster.faa.gz`` is record ``cluster``), its genes in file order with the FASTA ids.

Genes (``genes=``): ``annotated`` takes the CDS features (a record without any is an error),
``predicted`` runs pyrodigal, ``auto`` takes a record's CDS features when it has some and predicts the
genes of the others. pyrodigal runs in single (trained) mode when the records to predict on total at
least 100 kb, trained on all of them together as contigs of one genome, else in metagenomic mode:
single mode trained on one short record mis-trains (Prodigal's own advice).

A :class:`Gene` has 0-based, end-exclusive coordinates on its record (``start < end`` whatever the
strand: the span from its first to its last base, introns included) and the protein without a stop
``*``; its strand is -1 when every part of its location is complemented (``complement(join(a,b))`` or
``join(complement(b),complement(a))``), else +1. Proteins of a protein FASTA have no record coordinates
(``start = end = 0``, ``strand = 0``). Its ``dna`` is the coding sequence in the gene's orientation from the
first base of its first codon (a CDS's spliced location from its ``/codon_start``, pyrodigal's gene with its
stop codon), so that residue ``i`` of the protein is codon ``dna[3 * i : 3 * i + 3]``; empty for a bare protein.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from biostrata.data.fasta import parse_fasta
from biostrata.data.files import open_bytes
from biostrata.errors import DataNotFoundError, InputError, ParameterError
from biostrata.extras import require

__all__ = ["Gene", "Record", "read_records", "genes_of", "translate", "GENES", "GENBANK_SUFFIXES", "SINGLE_MODE_MIN_BP"]

#: Where the genes of a record come from (``genes_of(genes=...)``; module docstring).
GENES = ("auto", "annotated", "predicted")
GENBANK_SUFFIXES = (".gbk", ".gb", ".gbff", ".genbank")
#: Total length from which pyrodigal trains on the input itself (below it: metagenomic mode).
SINGLE_MODE_MIN_BP = 100_000
_NUCLEOTIDES = set("ACGTUNRYKMSWBDHV-.")
_AMINO_ACIDS = set("ACDEFGHIKLMNPQRSTVWYBZXJUO*-.")
_BASES = "TCAG"
# NCBI translation tables 1 and 11 (the same amino acids; 11 allows more start codons, read as M first)
_CODE = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
_CODONS = {a + b + c: _CODE[16 * i + 4 * j + k] for i, a in enumerate(_BASES) for j, b in enumerate(_BASES)
           for k, c in enumerate(_BASES)}  # fmt: skip
_STARTS = {"ATG", "GTG", "TTG", "CTG", "ATT", "ATC", "ATA"}


@dataclass(frozen=True)
class Record:
    """One input sequence: its id, nucleotides (upper case; empty for a protein) and its CDS genes."""

    id: str
    sequence: str
    cds: tuple[Gene, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Gene:
    """A protein-coding gene: record id, protein id, 0-based end-exclusive ``start``/``end``, ``strand``
    (+1, -1, or 0 for a bare protein), the protein and its coding ``dna`` (module docstring; "" when unknown),
    and the NCBI translation ``table`` its DNA is read with (a CDS's ``/transl_table``, pyrodigal's table;
    0 when a ``/translation`` is given with a ``/transl_table`` that is not a number)."""

    record: str
    id: str
    start: int
    end: int
    strand: int
    protein: str
    dna: str = ""
    table: int = 11


def _unzipped(path: Path) -> Path:
    """The file name without ``.gz``: ``cluster.faa.gz`` -> ``cluster.faa`` (its stem and format suffix)."""
    return Path(path.name[:-3] if path.name.lower().endswith(".gz") else path.name)


def first_repeat(ids: Sequence[str]) -> str | None:
    """The first id seen twice, or None when all are unique."""
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None


def read_records(path: str | Path) -> list[Record]:
    """The records of one GenBank or FASTA file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; give a GenBank (.gbk) or FASTA file")
    try:
        records = _read_genbank(path) if _unzipped(path).suffix.lower() in GENBANK_SUFFIXES else _read_fasta(path)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise InputError(f"{path}: cannot read ({type(err).__name__}: {err}); is it GenBank or FASTA text?") from None
    if not records:
        raise InputError(f"{path}: no records")
    if (dup := first_repeat([r.id for r in records])) is not None:
        raise InputError(f"{path}: record id {dup!r} appears more than once; ids must be unique")
    return records


def _read_fasta(path: Path) -> list[Record]:
    kinds, records, proteins = set(), [], []
    for name, _, seq, lineno in parse_fasta(path, "a GenBank or FASTA file, plain or gzip-compressed"):
        seq = seq.upper()
        where = f"{path}:{lineno}: record {name!r}"
        if not seq:
            raise InputError(f"{where} is empty")
        nucleotide = set(seq) <= _NUCLEOTIDES and _unzipped(path).suffix.lower() != ".faa"
        if not nucleotide and not set(seq) <= _AMINO_ACIDS:
            bad = sorted(set(seq) - _AMINO_ACIDS)[:3]
            raise InputError(f"{where}: letters {bad} are neither IUPAC nucleotides nor amino acids")
        kinds.add("nucleotide" if nucleotide else "protein")
        if nucleotide:
            records.append(Record(name, seq.replace("U", "T"), source=str(path)))
        else:
            proteins.append((name, seq.rstrip("*")))
    if len(kinds) > 1:
        raise InputError(f"{path}: mixes nucleotide and protein records; give one kind per file (proteins as .faa)")
    if proteins:  # one gene cluster: one record named by the file
        if (dup := first_repeat([name for name, _ in proteins])) is not None:
            raise InputError(f"{path}: protein id {dup!r} appears more than once; ids must be unique")
        file = _unzipped(path)
        record = file.stem or file.name
        return [Record(record, "", tuple(Gene(record, name, 0, 0, 0, p) for name, p in proteins), str(path))]
    return records


def _read_genbank(path: Path) -> list[Record]:
    gb_io = require("gb_io")

    records = []
    with open_bytes(path) as handle:
        try:
            parsed = list(gb_io.iter(handle))
        except (ValueError, RuntimeError, OSError) as err:
            reason = " ".join(str(err).split())[:120]
            raise InputError(
                f"{path}: not a GenBank file gb-io can read ({reason}); give GenBank text (LOCUS, FEATURES, ORIGIN, //) "
                "or name a FASTA file .fna, .fa or .faa"
            ) from None
    for rec in parsed:
        name = rec.name or rec.accession or f"record{len(records) + 1}"
        seq = bytes(rec.sequence).decode("ascii", "replace").upper()
        if not seq:
            raise InputError(f"{path}: record {name!r} has no sequence (ORIGIN); give a GenBank file with sequence")
        cds = tuple(_cds_gene(path, name, seq, f, k) for k, f in enumerate(_cds_features(rec), 1))
        records.append(Record(name, seq, tuple(g for g in cds if g is not None), str(path)))
    return records


def _cds_features(rec) -> list:
    return [f for f in rec.features if f.kind == "CDS"]


def _qualifier(feature, key: str) -> str | None:
    return next((q.value for q in feature.qualifiers if q.key == key), None)


def _cds_gene(path: Path, record: str, seq: str, feature, k: int) -> Gene | None:
    """The gene of a CDS feature; None for a pseudo-gene without a translation."""
    gid = _qualifier(feature, "protein_id") or _qualifier(feature, "locus_tag") or f"{record}_cds{k}"
    where = f"{path}: record {record!r}, CDS {gid}"
    try:
        leaves = list(_leaves(feature.location))
    except ValueError:
        raise InputError(
            f"{where}: location {feature.location!r} is not on this record; give a CDS located on its own record"
        ) from None
    start, end = min(a for a, _, _ in leaves), max(b for _, b, _ in leaves)
    if end > len(seq):
        raise InputError(
            f"{where}: location {feature.location!r} ends at base {end}, past the end of the record "
            f"({len(seq)} bp); fix the location"
        )
    strand = -1 if all(minus for _, _, minus in leaves) else 1
    protein = _qualifier(feature, "translation")
    if protein is None and any(q.key == "pseudo" for q in feature.qualifiers):
        return None
    if protein is None:
        codon_start = _int_qualifier(feature, "codon_start", 1, where)
        if codon_start not in (1, 2, 3):
            raise InputError(f"{where}: /codon_start={codon_start} is not 1, 2 or 3; fix it, or give /translation")
    else:  # the translation is given: a malformed /codon_start only leaves the DNA unknown
        codon_start = {"1": 1, "2": 2, "3": 3}.get(_qualifier(feature, "codon_start") or "1", 0)
    dna = _spliced(seq, feature.location)[codon_start - 1 :] if codon_start else ""
    if protein is None:
        table = _int_qualifier(feature, "transl_table", 11, where)
        protein = translate(dna, table, where=where)
    else:  # likewise, a malformed /transl_table only leaves the frame unchecked (table 0)
        value = (_qualifier(feature, "transl_table") or "11").strip()
        table = int(value) if value.isdigit() else 0
    protein = re.sub(r"\s+", "", protein).upper().rstrip("*")
    if not protein:
        raise InputError(f"{where}: empty translation")
    if not set(protein) <= _AMINO_ACIDS:
        bad = sorted(set(protein) - _AMINO_ACIDS)[:3]
        raise InputError(f"{where}: letters {bad} in the translation are not amino acids")
    return Gene(record, gid, start, end, strand, protein, dna, table)


def _int_qualifier(feature, key: str, default: int, where: str) -> int:
    value = _qualifier(feature, key)
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise InputError(f"{where}: /{key}={value!r} is not a whole number; fix it, or give /translation") from None


def _leaves(loc, minus: bool = False) -> Iterator[tuple[int, int, bool]]:
    """``(start, end, complemented)`` of every range of a gb-io location (ValueError for one on another
    record). ``one-of`` reads as its first alternative."""
    kind = type(loc).__name__
    if kind == "Complement":
        yield from _leaves(loc.location, not minus)
    elif kind in ("Join", "Order", "Bond"):
        for part in loc.locations:
            yield from _leaves(part, minus)
    elif kind == "OneOf":
        yield from _leaves(loc.locations[0], minus)
    elif kind in ("Range", "Between"):
        yield int(loc.start), int(loc.end), minus
    else:  # External: a location on another record
        raise ValueError(kind)


def _spliced(seq: str, loc) -> str:
    """The nucleotides of a gb-io location, in the gene's orientation: a complement is the reverse
    complement of what it holds, a join its parts in the order given (so ``complement(join(a,b))`` and
    ``join(complement(b),complement(a))`` read alike)."""
    kind = type(loc).__name__
    if kind == "Complement":
        return _reverse_complement(_spliced(seq, loc.location))
    if kind in ("Join", "Order", "Bond"):
        return "".join(_spliced(seq, part) for part in loc.locations)
    if kind == "OneOf":
        return _spliced(seq, loc.locations[0])
    return seq[int(loc.start) : int(loc.end)]


def _reverse_complement(dna: str) -> str:
    return dna.translate(str.maketrans("ACGTRYKMBVDHN", "TGCAYRMKVBHDN"))[::-1]


#: the NCBI translation tables :func:`translate` reads (they differ only in their start codons)
TABLES = (1, 11)


def translate(dna: str, table: int = 11, where: str = "") -> str:
    """Protein of a coding sequence under NCBI table 1 or 11 (an alternative start codon reads as M;
    a codon with an ambiguous base as X); the stop codon, if any, ends it."""
    if table not in TABLES:
        raise InputError(f"{where}: translation table {table} is not supported (1 and 11 are); give /translation")
    dna = dna.upper().replace("U", "T")
    codons = [dna[i : i + 3] for i in range(0, len(dna) - 2, 3)]
    protein = "".join(_CODONS.get(c, "X") for c in codons)
    if codons and codons[0] in _STARTS:
        protein = "M" + protein[1:]
    return protein.split("*", 1)[0]


def genes_of(records: Sequence[Record], genes: str = "auto", progress: bool = False) -> list[Gene]:
    """The genes of ``records`` (``genes``: one of :data:`GENES`; module docstring),
    records in the order given. ``progress`` shows a bar over the records pyrodigal predicts on."""
    if genes not in GENES:
        raise ParameterError("genes", f"genes={genes!r}: choose {', '.join(GENES[:-1])} or {GENES[-1]}")
    proteins_only = [r for r in records if not r.sequence]
    if proteins_only and genes == "predicted":
        raise InputError(f"{proteins_only[0].source}: proteins, not nucleotides; genes cannot be predicted on them")
    if genes == "annotated":
        bare = [r for r in records if not r.cds]
        if bare:
            raise ParameterError(
                "genes",
                f"genes='annotated': {bare[0].source}: record {bare[0].id!r} has no CDS features; use 'auto' or 'predicted'",
            )
    predict = [r for r in records if r.sequence and (genes == "predicted" or (genes == "auto" and not r.cds))]
    predicted = dict(_predict(predict, progress)) if predict else {}
    return [g for r in records for g in (predicted[r.id] if r.id in predicted else r.cds)]


def _predict(records: Sequence[Record], progress: bool) -> Iterator[tuple[str, list[Gene]]]:
    from tqdm.auto import tqdm

    pyrodigal = require("pyrodigal")

    total = sum(len(r.sequence) for r in records)
    finder = pyrodigal.GeneFinder(meta=total < SINGLE_MODE_MIN_BP, closed=False, mask=True)
    if total >= SINGLE_MODE_MIN_BP:
        finder.train(*(r.sequence.encode() for r in records))
    for r in tqdm(records, unit="record", desc="pyrodigal", disable=not progress):
        found = finder.find_genes(r.sequence.encode())
        yield r.id, [Gene(r.id, f"{r.id}_{k}", g.begin - 1, g.end, g.strand, g.translate().rstrip("*"), g.sequence(),
                          g.translation_table) for k, g in enumerate(found, 1)]  # fmt: skip
