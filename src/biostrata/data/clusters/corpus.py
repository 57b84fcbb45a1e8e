"""Biosynthetic gene clusters (BGCs) as ordered lists of Pfam domains, and their token vocabulary.

Files read (every reader reports problems with ``path:line``):

- Domain-name list (``mibig_domain_list.txt``), one BGC per line, whitespace-separated:
  ``<id> <class> <name> <name> [SEP] <name> ...``; ``[SEP]`` separates proteins.
- Accession CSV (``mibig_pfamid.csv``, ``biostrata annotate``'s ``clusters.csv``): ``cluster_id,label,domain_tokens[,...]``,
  space-separated accessions, ``[SEP]`` between proteins optional.
- BiGCARP CSV: a ``domains`` column of ``;``-joined Pfam names or accessions, optionally an id column
  (``cluster_id``, ``bgc_id``, ``sequence_id``, ``id`` or ``name``), a class column (``function``,
  ``label`` or ``class``) and a ``split`` column (``train``/``valid``/``test``).
- Domain table (``.tsv`` with a ``pfam_id`` column: ``biostrata annotate``'s ``domains.tsv`` or the MIBiG
  layout, read by :func:`biostrata.data.clusters.proteins.read_domain_segments`): a cluster's domains in the order of
  its hits along the record.
- Class table (``mibig3_classes.csv``): ``sequence_id,<class 1>,...,<class C>`` with 0/1 entries.

Domains are stored as Pfam accessions without version (``PF00005``) when a Pfam table
(:class:`~biostrata.data.clusters.pfam.PfamTable`) is given; names and versioned accessions are mapped through it. A
token the table does not know is kept as written and encoded as ``UNK``. Unknown domains, empty clusters,
duplicate ids and malformed lines are collected in ``ClusterCorpus.issues``; with ``strict=True`` the first
one raises ``InputError``.
"""

from __future__ import annotations

import csv
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from biostrata.data.clusters.pfam import PfamTable, parse_accession
from biostrata.errors import DataNotFoundError, InputError, ParameterError

__all__ = [
    "Cluster", "Issue", "ClusterCorpus", "DomainVocabulary", "read_clusters", "read_domain_list", "read_pfamid_csv",
    "read_bigcarp_csv", "read_domain_table", "read_classes", "class_matrix",
]  # fmt: skip

SEP = "[SEP]"
_ID_COLUMNS = ("cluster_id", "bgc_id", "sequence_id", "id", "name")
_CLASS_COLUMNS = ("function", "label", "class")


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DataNotFoundError(f"{what} not found: {path}. Check the path (real data lives in ../shared/data).")


# -- clusters and corpora --------------------------------------------------------------------------
@dataclass(frozen=True)
class Cluster:
    """One BGC: its Pfam domains in genomic order.

    ``genes[i]`` is the 0-based index of the protein that carries ``domains[i]`` (None when the
    source has no gene separators). ``where`` is ``path:line`` of the source record."""

    id: str
    domains: tuple[str, ...]
    genes: tuple[int, ...] | None = None
    label: str | None = None
    split: str | None = None
    where: str = ""

    def __len__(self) -> int:
        return len(self.domains)


@dataclass(frozen=True)
class Issue:
    """A problem found while reading: ``kind`` is unknown-domain, empty-cluster, duplicate-id or malformed."""

    where: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


@dataclass
class ClusterCorpus:
    """Clusters read from one file, with the problems met on the way."""

    clusters: list[Cluster]
    source: str = ""
    issues: list[Issue] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clusters)

    def __iter__(self) -> Iterator[Cluster]:
        return iter(self.clusters)

    def __getitem__(self, i: int) -> Cluster:
        return self.clusters[i]

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.clusters]

    def domain_counts(self) -> Counter:
        """Occurrences of each domain over all clusters."""
        return Counter(d for c in self.clusters for d in c.domains)

    def subset(self, indices: Iterable[int]) -> ClusterCorpus:
        return ClusterCorpus([self.clusters[i] for i in indices], self.source, list(self.issues))

    def summary(self) -> str:
        """One line per issue kind: count and first location."""
        counts = Counter(issue.kind for issue in self.issues)
        first = {issue.kind: issue for issue in reversed(self.issues)}  # the earliest of each kind
        lines = [f"{len(self.clusters)} clusters from {self.source}"]
        lines += [f"{counts[k]} x {k}, first: {first[k]}" for k in counts]
        return "\n".join(lines)


class _Reader:
    """What the readers share: the clusters read from ``path``, the ids seen, and the issues met
    (the first one raised when ``strict``); tokens become accessions through the Pfam table."""

    def __init__(self, path: str | Path, what: str, pfam: PfamTable | None, strict: bool) -> None:
        self.path, self.what, self.pfam, self.strict = Path(path), what, pfam, strict
        _require_file(self.path, what)
        self.clusters: list[Cluster] = []
        self.issues: list[Issue] = []
        self.seen: set[str] = set()

    def issue(self, where: str, kind: str, detail: str) -> None:
        issue = Issue(where, kind, detail)
        if self.strict:
            raise InputError(f"{issue} (read with strict=False to skip or keep such records)")
        self.issues.append(issue)

    def canonical(self, token: str, where: str) -> str:
        """Accession for a name/accession token; the token itself (without version) when unknown."""
        plain = parse_accession(token) or token
        if self.pfam is None:
            return plain
        acc = self.pfam.accession(token)
        if acc is None:
            self.issue(where, "unknown-domain", f"{token!r} is not in the Pfam table {self.pfam.source}")
        return acc or plain

    def add(self, cluster: Cluster) -> None:
        """Keep ``cluster``, its domains as accessions, unless its id was seen before or it has no domains."""
        cid, where = cluster.id, cluster.where
        if cid in self.seen:
            self.issue(where, "duplicate-id", f"{cid!r} seen before; this record is skipped")
        elif not cluster.domains:
            self.issue(where, "empty-cluster", f"{cid!r} has no domains; skipped")
        else:
            self.seen.add(cid)
            self.clusters.append(replace(cluster, domains=tuple(self.canonical(t, where) for t in cluster.domains)))

    def corpus(self) -> ClusterCorpus:
        corpus = ClusterCorpus(self.clusters, str(self.path), self.issues)
        if not self.clusters:  # an empty corpus is an error, with the problems met if any
            why = f" ({'; '.join(corpus.summary().splitlines()[1:])})" if self.issues else ""
            raise InputError(
                f"{self.path}: no clusters read as a {self.what}{why}; check the file (and the layout it is read in)"
            )
        if self.issues:
            warnings.warn(corpus.summary() + "\n(see ClusterCorpus.issues for every location)", stacklevel=3)
        return corpus


def read_domain_list(path: str | Path, pfam: PfamTable | None = None, strict: bool = False) -> ClusterCorpus:
    """Read ``<id> <class> <domain> ... [SEP] <domain> ...`` lines (one BGC per line)."""
    reader = _Reader(path, "domain list", pfam, strict)
    with open(reader.path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{reader.path}:{lineno}"
            if len(fields) < 2 or fields[0] == SEP or fields[1] == SEP:
                reader.issue(where, "malformed", f"expected '<id> <class> <domains...>', got {line.strip()[:80]!r}")
                continue
            reader.add(Cluster(fields[0], *_split_genes(fields[2:]), fields[1], where=where))
    return reader.corpus()


def _split_genes(tokens: Sequence[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Domains and the protein of each: proteins are the runs between [SEP]s (an empty one leaves no gap)."""
    proteins = [list(run) for sep, run in groupby(tokens, lambda t: t == SEP) if not sep]
    return tuple(t for p in proteins for t in p), tuple(g for g, p in enumerate(proteins) for _ in p)


def _csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) with the header validated; malformed rows have a ``None`` key."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"{path}:1: missing column(s) {missing}; header is {header}")
        for row in reader:
            yield reader.line_num, row


def _csv_header(path: Path) -> list[str]:  # the fields of the first line, read as CSV
    with open(path, encoding="utf-8", newline="") as handle:
        return next(csv.reader([handle.readline()]), [])


def _row_malformed(row: dict) -> bool:  # a row with fields missing or left over
    return None in row or any(v is None for v in row.values())


def read_pfamid_csv(path: str | Path, pfam: PfamTable | None = None, strict: bool = False) -> ClusterCorpus:
    """Read ``cluster_id,label,domain_tokens`` rows (space-separated accessions)."""
    reader = _Reader(path, "Pfam-accession CSV", pfam, strict)
    for lineno, row in _csv_rows(reader.path, ("cluster_id", "domain_tokens")):
        where = f"{reader.path}:{lineno}"
        if _row_malformed(row) or not row["cluster_id"].strip():
            reader.issue(where, "malformed", "wrong number of fields or empty cluster_id")
        else:
            tokens = row["domain_tokens"].split()  # [SEP] between proteins is optional (biostrata annotate)
            domains, genes = _split_genes(tokens)
            cid, label = row["cluster_id"].strip(), (row.get("label") or "").strip() or None
            reader.add(Cluster(cid, domains, genes if SEP in tokens else None, label, where=where))
    return reader.corpus()


def read_bigcarp_csv(path: str | Path, pfam: PfamTable | None = None, strict: bool = False) -> ClusterCorpus:
    """Read BiGCARP's CSV: a ``domains`` column of ``;``-joined domains (see module docstring)."""
    reader = _Reader(path, "BiGCARP CSV", pfam, strict)
    header = _csv_header(reader.path)
    id_col = next((c for c in _ID_COLUMNS if c in header), None)
    cls_col = next((c for c in _CLASS_COLUMNS if c in header), None)
    for lineno, row in _csv_rows(reader.path, ("domains",)):
        where = f"{reader.path}:{lineno}"
        if _row_malformed(row):
            reader.issue(where, "malformed", "wrong number of fields")
            continue
        cid = row[id_col].strip() if id_col else f"{reader.path.stem}:{lineno}"
        domains = tuple(t.strip() for t in row["domains"].split(";") if t.strip())
        label = (row[cls_col] or "").strip() or None if cls_col else None
        reader.add(Cluster(cid, domains, label=label, split=(row.get("split") or "").strip() or None, where=where))
    return reader.corpus()


def read_domain_table(path: str | Path, pfam: PfamTable | None = None, strict: bool = False) -> ClusterCorpus:
    """Read the clusters of a domain table (one Pfam hit per row; see the module docstring)."""
    from biostrata.data.clusters.proteins import read_domain_segments

    reader = _Reader(path, "domain table", pfam, strict)
    for cid, hits in read_domain_segments(reader.path).items():
        reader.add(Cluster(cid, tuple(acc for acc, _ in hits), where=f"{reader.path}: cluster {cid}"))
    return reader.corpus()


#: The corpus formats of :func:`read_clusters`.
CORPUS_FORMATS = ("auto", "domain-list", "pfamid", "bigcarp", "domain-table")


def read_clusters(
    path: str | Path, pfam: PfamTable | str | Path | None = None, fmt: str = "auto", strict: bool = False
) -> ClusterCorpus:
    """Read a BGC corpus; ``fmt`` is one of :data:`CORPUS_FORMATS`.

    ``auto`` picks ``domain-table`` for a tab-separated header with a ``pfam_id`` column, ``pfamid`` for a
    CSV with a ``domain_tokens`` column, ``bigcarp`` for a CSV with a ``domains`` column, and
    ``domain-list`` otherwise.
    """
    from biostrata.data.files import text_only

    path = Path(path)
    _require_file(path, "cluster corpus")
    table = PfamTable.read(pfam) if isinstance(pfam, (str, Path)) else pfam
    with text_only(path, "a domain list (.txt), an accession CSV, a BiGCARP CSV or a domain table (.tsv)"):
        if fmt == "auto":
            header = [h.strip() for h in _csv_header(path)]
            tabbed = header[0].split("\t") if len(header) == 1 else []
            fmt = ("domain-table" if "pfam_id" in tabbed else "pfamid" if "domain_tokens" in header else
                   "bigcarp" if "domains" in header else "domain-list")  # fmt: skip
        readers = {"domain-list": read_domain_list, "pfamid": read_pfamid_csv, "bigcarp": read_bigcarp_csv,
                   "domain-table": read_domain_table}  # fmt: skip
        if fmt not in readers:
            raise ParameterError("fmt", f"fmt={fmt!r}: choose one of auto, {', '.join(readers)}")
        return readers[fmt](path, table, strict)


# -- product classes -------------------------------------------------------------------------------
def read_classes(path: str | Path) -> pd.DataFrame:
    """Read a multi-hot class table: first column the BGC id, then one 0/1 column per class."""
    path = Path(path)
    _require_file(path, "class table")
    table = pd.read_csv(path, dtype=str)
    if table.shape[1] < 2:
        raise InputError(f"{path}:1: expected 'id,<class>,...' with at least one class column")
    table = table.set_index(table.columns[0])
    for col in table.columns:
        bad = ~table[col].isin(["0", "1"])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path}:{row + 2}: column {col!r} must be 0 or 1, got {table[col].iloc[row]!r}")
    if table.index.duplicated().any():
        dup = table.index[table.index.duplicated()][0]
        raise InputError(f"{path}: BGC id {dup!r} appears more than once")
    return table.astype(np.int64)


def class_matrix(corpus: ClusterCorpus, classes: pd.DataFrame | None = None) -> tuple[np.ndarray, list[str]]:
    """Labels of each cluster as a 0/1 matrix ``[n_clusters, n_classes]`` and the class names.

    With ``classes`` (from :func:`read_classes`) the labels are multi-hot and every cluster id must
    be in the table; without it they are one-hot from each cluster's own ``label``.
    """
    if classes is not None:
        missing = [c.id for c in corpus if c.id not in classes.index]
        if missing:
            raise InputError(
                f"{len(missing)} cluster(s) of {corpus.source} have no row in the class table, e.g. "
                f"{missing[:3]}; subset the corpus to the labelled ids first"
            )
        return classes.loc[corpus.ids].to_numpy(dtype=np.int64), list(classes.columns)
    unlabelled = [c.where for c in corpus if c.label is None]
    if unlabelled:
        raise InputError(f"{unlabelled[0]}: cluster has no class label; pass a class table instead")
    names = sorted({c.label for c in corpus})  # type: ignore[type-var]
    col = {n: j for j, n in enumerate(names)}
    y = np.zeros((len(corpus), len(names)), dtype=np.int64)
    for i, c in enumerate(corpus):
        y[i, col[c.label]] = 1
    return y, names


# -- vocabulary ------------------------------------------------------------------------------------
class DomainVocabulary:
    """Tokens of a domain-level language model, in BiGCARP's order.

    ``-`` (pad) = 0, ``*`` (stop) = 1, ``#`` (mask) = 2, then the class tokens, then ``[SEP]`` if
    gene separators are used, then ``UNK``, then one token per domain in the order given (the
    ``from_*`` constructors sort them). All but UNK and the domain tokens are "specials" in the
    sequence-models checkpoint layout.
    """

    PAD, STOP, MASK, UNK = "-", "*", "#", "UNK"
    pad_idx, mask_idx = 0, 2  # where PAD and MASK always are
    SEP = SEP

    def __init__(self, domains: Iterable[str], classes: Iterable[str] = (), gene_separator: bool = False) -> None:
        self.classes = list(dict.fromkeys(classes))
        self.domains = list(dict.fromkeys(domains))
        specials = [self.PAD, self.STOP, self.MASK, *self.classes]
        if gene_separator:
            specials.append(self.SEP)
        clash = set(specials + [self.UNK]) & set(self.domains)
        if clash:
            raise InputError(f"domain token(s) {sorted(clash)} clash with special or class tokens")
        if len(set(specials)) != len(specials):
            raise InputError(f"class names {self.classes} repeat a special token (-, *, #, [SEP])")
        self.tokens = specials + [self.UNK] + self.domains
        self._index = {t: i for i, t in enumerate(self.tokens)}
        self.n_specials = len(specials)

    @classmethod
    def from_corpus(
        cls, corpus: ClusterCorpus, class_tokens: bool = False, gene_separator: bool = False, min_count: int = 1
    ) -> DomainVocabulary:
        """Domains seen at least ``min_count`` times; class tokens from the clusters' labels."""
        counts = corpus.domain_counts()
        classes = sorted({c.label for c in corpus if c.label}) if class_tokens else []
        return cls(sorted(d for d, n in counts.items() if n >= min_count), classes, gene_separator)

    @classmethod
    def from_pfam(cls, pfam: PfamTable, classes: Iterable[str] = (), gene_separator: bool = False) -> DomainVocabulary:
        """Every Pfam family, as BiGCARP does (19,450 families there)."""
        return cls(sorted(pfam.accessions), classes, gene_separator)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def index(self, token: str) -> int:
        """Index of a token; domains not in the vocabulary map to UNK."""
        return self._index.get(token, self._index[self.UNK])

    @property
    def unk_idx(self) -> int:
        return self._index[self.UNK]

    @property
    def sep_idx(self) -> int | None:
        return self._index.get(self.SEP)

    @property
    def domain_slice(self) -> slice:
        """Rows of the token table that hold domains (UNK excluded)."""
        return slice(self.unk_idx + 1, len(self.tokens))

    def encode(self, cluster: Cluster, class_token: bool = False, separators: bool = False) -> torch.Tensor:
        """Token indices of a cluster: optional class token, then domains (``[SEP]`` between genes)."""
        out: list[int] = []
        if class_token:
            if cluster.label not in self._index or cluster.label not in self.classes:
                raise InputError(
                    f"{cluster.where}: class {cluster.label!r} has no token; vocabulary has {self.classes}"
                )
            out.append(self._index[cluster.label])
        if separators:
            if self.sep_idx is None:
                raise ParameterError("separators", "separators=True: needs a vocabulary built with gene_separator=True")
            if cluster.genes is None:
                raise InputError(f"{cluster.where}: the source has no gene separators")
        prev = None
        for d, g in zip(cluster.domains, cluster.genes or [None] * len(cluster.domains)):
            if separators and prev is not None and g != prev:
                out.append(self.sep_idx)  # type: ignore[arg-type]
            out.append(self.index(d))
            prev = g
        return torch.tensor(out, dtype=torch.long)

    def decode(self, indices: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in indices]

    def to_sequence_models(self, pfam: PfamTable | None = None) -> tuple[dict, dict]:
        """``tokens`` and ``pfam_to_domain`` entries of a sequence-models BiGCARP checkpoint.

        ``tokens = {"size": V, "specials": {token: idx}, "domains": {"UNK": idx, name: idx}}``;
        domains are keyed by Pfam family name (accession when no name is known) and
        ``pfam_to_domain`` maps accession -> that key.
        """
        specials = {t: i for i, t in enumerate(self.tokens[: self.n_specials])}
        names = {d: ((pfam.name(d) if pfam else None) or d) for d in self.domains}
        domains = {self.UNK: self.unk_idx}
        domains.update({names[d]: self._index[d] for d in self.domains})
        tokens = {"size": len(self), "specials": specials, "domains": domains}
        return tokens, {d: names[d] for d in self.domains}

    @classmethod
    def from_sequence_models(
        cls, tokens: dict, pfam_to_domain: dict | None = None, pfam: PfamTable | None = None
    ) -> DomainVocabulary:
        """Inverse of :meth:`to_sequence_models`; checks that the indices come out the same.

        Domain keys become accessions through ``pfam_to_domain``, else through ``pfam`` (family
        names), else stay as they are."""
        try:
            specials, domains, size = dict(tokens["specials"]), dict(tokens["domains"]), int(tokens["size"])
        except (KeyError, TypeError) as err:
            raise InputError(f"checkpoint 'tokens' must hold size, specials and domains ({err})") from None
        to_acc = {}  # domain key (family name) -> accession without version
        if pfam is not None:
            to_acc.update({k: acc for k in tokens["domains"] if (acc := pfam.accession(k))})
        for acc, key in (pfam_to_domain or {}).items():
            to_acc[key] = parse_accession(acc) or acc
        order = sorted(specials, key=specials.get)
        base = [cls.PAD, cls.STOP, cls.MASK]
        if order[:3] != base:
            raise InputError(f"checkpoint specials must start with {base}, got {order[:3]}")
        classes = [t for t in order[3:] if t != cls.SEP]
        unk = domains.pop(cls.UNK, None)
        vocab = cls([to_acc.get(k, k) for k in sorted(domains, key=domains.get)], classes, cls.SEP in specials)
        by_key = {to_acc.get(k, k): v for k, v in domains.items()}
        expected = {**specials, cls.UNK: unk, **by_key}
        if len(vocab) != size or any(vocab._index[t] != i for t, i in expected.items()):
            raise InputError(
                "checkpoint token indices are not in BiGCARP's layout (-, *, #, classes, [SEP], UNK, "
                "domains); this vocabulary layout is not supported"
            )
        return vocab
