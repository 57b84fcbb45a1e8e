"""Pfam domains of proteins with pyhmmer, and gene clusters written as domain sentences.

Profile HMMs come from a user file (``.hmm``, ``.hmm.gz`` or pressed ``.h3m``) or, by default, from
the Pfam 35.0 subset (2,766 families with gathering cut-offs) that the PyPI package ``gecco``
ships (``pip install --no-deps gecco``; read in place, never copied). The HMMs are read once, whole,
into memory (:func:`read_hmms`: the gathering rule checks every HMM's GA line first, and their number
is the default ``Z``); :func:`search_domains` runs them with ``hmmsearch`` (all cores by default) over
one block of all proteins and keeps hits by one of two rules:

- ``gathering`` (default): every domain above the family's gathering cut-offs (GA1 for the protein,
  GA2 for the domain), as Pfam's curators set them;
- ``evalue`` (DeepBGC's rule): per (protein, family) the best-scoring domain, kept when its
  independent E-value is at most ``evalue``, among the families reported for the protein (E <= 10).
  The E-values are those ``hmmscan`` of each protein against the database reports: P-value times the
  database size ``Z``, the number of HMMs by default (DeepBGC's Pfam 31 had 16,712; with a subset,
  pass that ``Z`` to reproduce its E-values), for the protein and for its domains alike.

Both rules compute E-values with that ``Z`` (hmmsearch's own default, the number of proteins searched,
would make a domain's i-Evalue depend on which other proteins were in the run); the gathering rule
keeps hits by bit score alone, so ``Z`` changes only the i-Evalues it reports.

Overlapping hits on a protein (envelopes sharing a residue) are resolved by ``overlaps``: ``best``
keeps the best-scoring of overlapping hits, ``clan`` does so only among families of one Pfam clan
(``PfamTable`` needed), ``keep`` keeps all. Coordinates are 0-based and end-exclusive: envelope and
alignment on the protein, and on the HMM (``hmm_start = hmm_from - 1``, ``hmm_end = hmm_to``).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from biostrata.config import AnnotateSettings
from biostrata.data.annotation.genes import Gene
from biostrata.data.clusters.pfam import PfamTable, parse_accession
from biostrata.data.files import is_gzip
from biostrata.errors import DataNotFoundError, InputError, ParameterError
from biostrata.extras import require

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DomainHit", "default_hmm_path", "read_hmms", "check_gathering", "hmm_info", "search_domains",
           "resolve_overlaps", "CUTOFFS", "OVERLAPS", "Annotation", "annotate", "annotate_files", "domain_rows",
           "cluster_rows", "PROTEIN_COLUMNS"]  # fmt: skip

CUTOFFS = ("gathering", "evalue")
OVERLAPS = ("best", "clan", "keep")
#: hmmscan's per-protein reporting threshold (E <= 10).
_REPORT_E = 10.0


@dataclass(frozen=True)
class DomainHit:
    """One Pfam domain on one protein (``gene``: its index in the searched list)."""

    gene: int
    accession: str  # versioned, e.g. PF00005.26
    family: str  # without version, PF00005
    name: str
    env_start: int
    env_end: int
    ali_start: int
    ali_end: int
    hmm_start: int
    hmm_end: int
    score: float
    i_evalue: float


def default_hmm_path() -> Path:
    """The Pfam 35.0 subset inside the installed ``gecco`` package (found without importing it)."""
    from importlib import metadata

    try:
        path = Path(metadata.distribution("gecco").locate_file("gecco/hmmer/Pfam.h3m"))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise DataNotFoundError(
            "hmm: none given, and the default (the Pfam 35.0 subset in the gecco package) is not installed: run "
            "`pip install --no-deps gecco` (make installs it), or give hmm=Pfam-A.hmm.gz (full Pfam, from the "
            "Pfam/InterPro FTP site)",
            param="hmm",
        )
    return path


def read_hmms(path: str | Path) -> list:
    """All profile HMMs of ``path`` (``.hmm``, pressed ``.h3m``, or either gzip-compressed, told by the
    first bytes), read once into memory as a list of ``pyhmmer.plan7.HMM``."""
    HMMFile = require("pyhmmer.plan7").HMMFile

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; give profile HMMs (a .hmm, .hmm.gz or .h3m file)")
    try:
        if is_gzip(path):  # pyhmmer reads a .gz path only through an external `gzip -dc`: decompress here
            with gzip.open(path, "rb") as raw, HMMFile(raw) as hmms:
                out = list(hmms)
        else:
            with HMMFile(path) as hmms:
                out = list(hmms)
    except (ValueError, EOFError, OSError) as err:
        raise InputError(f"{path}: not a HMMER3 profile file ({err}); give a .hmm, .hmm.gz or .h3m file") from None
    if not out:
        raise InputError(f"{path}: no profile HMMs")
    return out


def check_gathering(hmms: Sequence, where: str | Path) -> None:
    """Raise an InputError when an HMM of ``hmms`` (read from ``where``) lacks gathering cut-offs."""
    missing = [_text(h.name) for h in hmms if h.cutoffs.gathering_available() is False]
    if missing:
        raise ParameterError(
            "cutoff",
            f"cutoff='gathering': {where}: {len(missing)} HMMs (e.g. {missing[0]}) have no GA cut-offs; use 'evalue'",
        )


def hmm_info(path: str | Path, hmms: int) -> dict:
    """What ``annotation.json`` records of a database: path, sha256, number of HMMs (``hmms``, as
    counted by :func:`read_hmms`), and the Pfam version when the file says it (gecco's ``Pfam.ini``)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    info = {"path": str(path), "sha256": digest.hexdigest(), "hmms": hmms}
    ini = path.with_suffix(".ini")
    if ini.is_file():
        import configparser

        parser = configparser.ConfigParser()
        parser.read(ini)
        info["database"] = f"{parser.get('hmm', 'id', fallback='?')} {parser.get('hmm', 'version', fallback='?')}"
    return info


def search_domains(
    genes: Sequence[Gene],
    hmms: str | Path | Sequence | None = None,
    *,
    cutoff: str = "gathering",
    evalue: float = 0.01,
    Z: float | None = None,
    overlaps: str = "best",
    pfam: PfamTable | None = None,
    cpus: int = 0,
    progress: bool = False,
) -> list[DomainHit]:
    """Pfam domains of ``genes``' proteins (rules in the module docstring), sorted by gene, then N to C.

    ``hmms``: a file (:func:`read_hmms`), HMMs already read, or None for the default database. ``Z``:
    the database size for E-values under either rule (None: the number of HMMs). ``progress`` shows a
    bar that counts HMMs, the unit hmmsearch works through."""
    pyhmmer = require("pyhmmer")
    easel = require("pyhmmer.easel")
    Alphabet, DigitalSequenceBlock, TextSequence = easel.Alphabet, easel.DigitalSequenceBlock, easel.TextSequence

    if cutoff not in CUTOFFS:
        raise ParameterError("cutoff", f"cutoff={cutoff!r}: choose one of {', '.join(CUTOFFS)}")
    if overlaps not in OVERLAPS:
        raise ParameterError("overlaps", f"overlaps={overlaps!r}: choose one of {', '.join(OVERLAPS)}")
    if overlaps == "clan" and pfam is None:
        raise ParameterError("clans", "overlaps='clan' needs the Pfam clans table (clans=Pfam-A.clans.tsv)")
    if not evalue > 0 or (Z is not None and not Z > 0):
        raise InputError(f"evalue={evalue}, Z={Z}: both must be positive")
    if hmms is None or isinstance(hmms, (str, os.PathLike)):
        where = Path(hmms) if hmms is not None else default_hmm_path()
        hmms = read_hmms(where)
    else:
        where = "the HMMs given"
    if cutoff == "gathering":
        check_gathering(hmms, where)
    amino = Alphabet.amino()
    block = DigitalSequenceBlock(
        amino, [TextSequence(name=str(i).encode(), sequence=g.protein).digitize(amino) for i, g in enumerate(genes)]
    )
    if not len(block):
        return []
    z = Z or len(hmms)  # E-values as hmmscan of each protein against the database reports them
    options = {"Z": z, "domZ": z, **({"bit_cutoffs": "gathering"} if cutoff == "gathering" else {"E": _REPORT_E})}
    from tqdm.auto import tqdm

    hits = []
    with tqdm(total=len(hmms), unit="HMM", desc="hmmsearch", disable=not progress) as bar:
        # one HMM's hits at a time, as hmmsearch yields them: no list of every HMM's results
        for top in pyhmmer.hmmsearch(hmms, block, cpus=cpus, callback=lambda *_: bar.update(), **options):
            if cutoff == "gathering":
                hits += [_hit(hit, d) for hit in top.included for d in hit.domains.included]
                continue
            for hit in top.reported:
                best = max(hit.domains, key=lambda d: d.score)
                if best.i_evalue <= evalue:
                    hits.append(_hit(hit, best))
    return resolve_overlaps(hits, overlaps, pfam)


def _hit(hit, domain) -> DomainHit:
    ali = domain.alignment
    accession = _text(ali.hmm_accession) or _text(ali.hmm_name)
    return DomainHit(
        gene=int(_text(hit.name)), accession=accession, family=parse_accession(accession) or accession,
        name=_text(ali.hmm_name), env_start=domain.env_from - 1, env_end=domain.env_to,
        ali_start=ali.target_from - 1, ali_end=ali.target_to, hmm_start=ali.hmm_from - 1, hmm_end=ali.hmm_to,
        score=float(domain.score), i_evalue=float(domain.i_evalue),
    )  # fmt: skip


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def resolve_overlaps(
    hits: Sequence[DomainHit], overlaps: str = "best", pfam: PfamTable | None = None
) -> list[DomainHit]:
    """Hits without overlaps (see the module docstring), sorted by gene and envelope start."""
    if overlaps == "keep":
        return sorted(hits, key=lambda h: (h.gene, h.env_start, h.env_end, h.family))
    kept: list[DomainHit] = []
    by_gene: dict[int, list[DomainHit]] = {}
    for h in sorted(hits, key=lambda h: (-h.score, h.i_evalue, h.family)):  # best first
        mine = by_gene.setdefault(h.gene, [])
        rivals = (
            mine if overlaps == "best" else [k for k in mine if _clan(pfam, k) and _clan(pfam, k) == _clan(pfam, h)]
        )
        if all(h.env_end <= k.env_start or k.env_end <= h.env_start for k in rivals):
            mine.append(h)
            kept.append(h)
    return sorted(kept, key=lambda h: (h.gene, h.env_start, h.env_end, h.family))


def _clan(pfam: PfamTable | None, hit: DomainHit) -> str | None:
    return pfam.clan(hit.family) if pfam is not None else None


# -- outputs --------------------------------------------------------------------------------------
DOMAIN_COLUMNS = ("record", "protein_id", "gene_start", "gene_end", "gene_strand", "pfam_id", "pfam", "name",
                  "env_start", "env_end", "ali_start", "ali_end", "hmm_start", "hmm_end", "score", "i_evalue",
                  "dna_start", "dna_end", "dna_sequence", "protein_sequence", "frame_evidence")  # fmt: skip


def domain_rows(genes: Sequence[Gene], hits: Sequence[DomainHit]) -> list[dict]:
    """One ``domains.tsv`` row per hit (columns :data:`DOMAIN_COLUMNS`). The domain is its envelope: on the
    protein ``protein_sequence = protein[env_start:env_end]``, on the gene's coding sequence (gene orientation,
    from its first codon) ``dna_start = 3 * env_start``, ``dna_end = 3 * env_end`` and ``dna_sequence`` those
    bases; ``frame_evidence`` is ``hmm`` when the gene's DNA translates to its protein under the gene's
    translation table (the frame is the gene call's, the one the HMM hit), ``mismatch`` when it does not (a
    ``/translation`` that differs), ``unchecked`` under a table :func:`~.genes.translate` does not read (a
    ``/translation`` given with ``/transl_table=4``, say), and empty without DNA (a protein input)."""
    from biostrata.data.annotation.genes import TABLES, translate

    def frame(g: Gene) -> str:
        if not g.dna:
            return ""
        if g.table not in TABLES:
            return "unchecked"
        return "hmm" if translate(g.dna, g.table) == g.protein else "mismatch"

    evidence: dict[int, str] = {}
    rows = []
    for h in hits:
        g = genes[h.gene]
        if h.gene not in evidence:
            evidence[h.gene] = frame(g)
        rows.append(dict(zip(DOMAIN_COLUMNS, (
            g.record, g.id, g.start, g.end, g.strand, h.accession, h.family, h.name, h.env_start, h.env_end,
            h.ali_start, h.ali_end, h.hmm_start, h.hmm_end, round(h.score, 2), f"{h.i_evalue:.3g}",
            3 * h.env_start, 3 * h.env_end, g.dna[3 * h.env_start : 3 * h.env_end], g.protein[h.env_start : h.env_end],
            evidence[h.gene],
        ))))  # fmt: skip
    return rows


def cluster_rows(records: Sequence[str], genes: Sequence[Gene], hits: Sequence[DomainHit],
                 separators: bool = False) -> list[dict]:  # fmt: skip
    """One row per record with domains, in the layout of ``mibig_pfamid.csv`` (``cluster_id``,
    ``label`` (empty), ``domain_tokens``: accessions without version, genes in order along the record,
    N to C within a protein, ``[SEP]`` between proteins with ``separators``; ``tokens``: the same as a
    Python list)."""
    by_gene: dict[int, list[str]] = {}
    for h in sorted(hits, key=lambda h: (h.gene, h.env_start)):
        by_gene.setdefault(h.gene, []).append(h.family)
    rows = []
    for record in records:
        order = sorted((i for i, g in enumerate(genes) if g.record == record and i in by_gene),
                       key=lambda i: (genes[i].start, genes[i].end))  # fmt: skip
        tokens: list[str] = []
        for i in order:
            tokens += (["[SEP]"] if separators and tokens else []) + by_gene[i]
        if tokens:
            rows.append({"cluster_id": record, "label": "", "domain_tokens": " ".join(tokens), "tokens": str(tokens)})
    return rows


@dataclass
class Annotation:
    """What :func:`annotate` finds, in memory; :meth:`write` gives the files of ``biostrata annotate``.

    ``domains``: one row per domain hit, the columns of ``domains.tsv`` (:data:`DOMAIN_COLUMNS`);
    ``clusters``: one row per record with domains, the layout of ``clusters.csv`` (``cluster_id``,
    ``label``, ``domain_tokens``, ``tokens``; see :func:`cluster_rows`); ``proteins``: one row per
    protein (``protein_id``, ``record``, ``start``, ``end``, ``strand``, ``sequence``; as written, object
    columns); ``record``: what ``annotation.json`` holds (database, ``Z``, settings, tool versions, counts).
    """

    domains: pd.DataFrame
    clusters: pd.DataFrame
    proteins: pd.DataFrame
    record: dict

    def write(self, out: str | Path) -> Path:
        """Write ``domains.tsv``, ``clusters.csv``, ``proteins.faa`` (``>id record:start-end(strand)``) and
        ``annotation.json`` to the folder ``out``, each atomically, ``annotation.json`` last, after any
        earlier one is deleted: without it the folder is not a finished annotation (a killed run may leave
        new files beside old ones). Returns ``out``."""
        from biostrata.data.fasta import write_fasta
        from biostrata.io import atomic_write_json, atomic_write_text

        out = Path(out)
        (out / "annotation.json").unlink(missing_ok=True)  # the marker of a finished annotation: gone until the end
        atomic_write_text(out / "domains.tsv", self.domains.to_csv(sep="\t", index=False))
        atomic_write_text(out / "clusters.csv", self.clusters.to_csv(index=False))
        strand = {1: "+", -1: "-"}
        write_fasta(out / "proteins.faa", ((p.protein_id, f"{p.record}:{p.start}-{p.end}({strand.get(p.strand, '.')})",
                                            p.sequence) for p in self.proteins.itertuples()))  # fmt: skip
        atomic_write_json(out / "annotation.json", self.record)
        return out


#: The columns of :attr:`Annotation.proteins`.
PROTEIN_COLUMNS = ("protein_id", "record", "start", "end", "strand", "sequence")


def annotate(inputs: Sequence[str | Path], settings: AnnotateSettings | None = None) -> Annotation:
    """Annotate the records of ``inputs`` (GenBank, nucleotide or protein FASTA): genes, their Pfam domains
    and each record's domain sentence, in memory. The database and the clans table are read and checked
    before the genes are (pyrodigal is the slow step); the HMMs are read once, into memory."""
    import importlib.metadata as md

    import pandas as pd

    from biostrata.data.annotation.genes import first_repeat, genes_of, read_records
    from biostrata.provenance import code_version

    s = settings or AnnotateSettings()
    hmm_path = Path(s.hmm) if s.hmm else default_hmm_path()
    pfam = PfamTable.read(s.clans) if s.clans else None
    records = [r for path in inputs for r in read_records(path)]
    ids = [r.id for r in records]
    if (dup := first_repeat(ids)) is not None:
        raise InputError(f"record id {dup!r} appears in more than one input file; ids must be unique across inputs")
    hmms = read_hmms(hmm_path)
    if s.cutoff == "gathering":
        check_gathering(hmms, hmm_path)
    genes = genes_of(records, s.genes, progress=s.progress)
    hits = search_domains(genes, hmms, cutoff=s.cutoff, evalue=s.evalue, Z=s.Z, overlaps=s.overlaps, pfam=pfam,
                          cpus=s.cpus, progress=s.progress)  # fmt: skip
    domains = pd.DataFrame(domain_rows(genes, hits), columns=list(DOMAIN_COLUMNS))
    clusters = pd.DataFrame(cluster_rows(ids, genes, hits, s.separators),
                            columns=["cluster_id", "label", "domain_tokens", "tokens"])  # fmt: skip
    proteins = pd.DataFrame([(g.id, g.record, g.start, g.end, g.strand, g.protein) for g in genes],
                            columns=list(PROTEIN_COLUMNS), dtype=object)  # fmt: skip
    settings = dataclasses.asdict(s)
    if s.clans:  # absolute, so that `study strata --data` finds it from any folder
        settings["clans"] = str(Path(s.clans).resolve())
    record = {
        "inputs": [str(p) for p in inputs], "settings": settings, "database": hmm_info(hmm_path, len(hmms)),
        "Z": s.Z or len(hmms), "tools": {name: md.version(name) for name in ("pyhmmer", "pyrodigal", "gb-io")},
        "code_version": code_version(), "records": len(records), "proteins": len(genes), "domains": len(hits),
        "clusters_with_domains": len(clusters),
    }  # fmt: skip
    return Annotation(domains, clusters, proteins, record)


def annotate_files(inputs: Sequence[str | Path], out: str | Path, settings: AnnotateSettings | None = None) -> dict:
    """:func:`annotate` the records of ``inputs`` and :meth:`~Annotation.write` the files into ``out``:
    ``domains.tsv``, ``clusters.csv``, ``proteins.faa`` and ``annotation.json`` (the database, its sha256
    and size, ``Z``, thresholds, tool versions, counts). Returns the ``annotation.json`` record."""
    annotation = annotate(inputs, settings)
    annotation.write(out)
    return annotation.record
