"""The same Pfam domain instances seen at the strata of biological organization.

A domain table (``mibig_domains.tsv``, or the ``domains.tsv`` of ``biostrata annotate``: the one reader
:func:`biostrata.data.clusters.proteins.domain_rows` takes both) holds, for each Pfam domain hit of a cluster, the
domain's DNA (in gene orientation), its protein segment (``frame_evidence``: how its reading frame was chosen;
``hmm`` and ``unique`` are checked, anything else is not) and its family. :func:`read_instances` makes one row
per distinct hit (a repeated row counts once), keyed by ``instance_id`` =
``<bgc_id>|<gene_id>|<protein_accession>|<dna_start>-<dna_end>|<family>`` (the record ids of
:func:`biostrata.data.clusters.proteins.read_domain_proteins`), so that every stratum can be joined by id:

- nucleotide: ``dna``; amino acid: ``protein`` (and ``frame_evidence``);
- domain: ``family`` (accession without version), its ``clan`` (Pfam clans table, "" when none), and
  ``token_position``, the position of the same domain in the cluster's domain sentence of a corpus
  (the k-th occurrence of a family in the cluster paired with its k-th token; -1 when not paired);
- cluster: ``bgc_id``, ``product_class`` (``biosynthetic_class``; "" in annotate's table), and
  ``hit_index``, the hit's position among its cluster's hits (by gene, start, end, family: the ``locus`` of
  :func:`~biostrata.data.clusters.proteins.domain_rows`).

Rows are sorted by cluster and ``hit_index`` whatever the order of the file's lines (but for proteins
without coordinates in annotate's table, which keep the file's order).

One split serves every stratum of a study (:func:`assign_splits`: clusters with identical domain lists
together), and a nucleotide model learns the Pfam clan of a domain from its DNA (:func:`clan_classes`,
chosen on the training clusters only; :func:`clan_dna_splits`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.data.clusters.corpus import ClusterCorpus
from biostrata.data.clusters.pfam import PfamTable
from biostrata.data.clusters.proteins import domain_rows, hit_key
from biostrata.data.dna.genome import SequenceSet, Splits
from biostrata.errors import InputError, ParameterError

__all__ = [
    "read_instances",
    "align_occurrences",
    "assign_splits",
    "deal_groups",
    "cluster_groups",
    "clan_classes",
    "clan_dna_splits",
    "probe_families",
    "INSTANCE_COLUMNS",
    "SPLITS",
]

INSTANCE_COLUMNS = ("instance_id", "bgc_id", "hit_index", "family", "clan", "token_position", "product_class",
                    "frame_evidence", "dna", "protein")  # fmt: skip


def align_occurrences(a: Sequence[Hashable], b: Sequence[Hashable]) -> np.ndarray:
    """Index pairs ``[m, 2]`` pairing the k-th occurrence of each item in ``a`` with its k-th occurrence
    in ``b`` (``a[i] == b[j]`` on every row; rows in increasing ``i``; an index used at most once)."""
    slots: dict[Hashable, list[int]] = {}
    for j, key in enumerate(b):
        slots.setdefault(key, []).append(j)
    seen: dict[Hashable, int] = {}
    pairs = []
    for i, key in enumerate(a):
        k = seen.get(key, 0)
        if k < len(slots.get(key, ())):
            pairs.append((i, slots[key][k]))
        seen[key] = k + 1
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def read_instances(
    path: str | Path, corpus: ClusterCorpus | None = None, pfam: PfamTable | None = None
) -> pd.DataFrame:
    """The domain instances of a domain table at every stratum (columns :data:`INSTANCE_COLUMNS`; see
    the module docstring); ``corpus`` gives ``token_position``, ``pfam`` the clans."""
    rows, locus = {}, {}
    for where, row in domain_rows(path):
        if "dna_sequence" not in row:
            raise InputError(f"{where}: no dna_sequence column; the strata need each domain's DNA")
        key = hit_key(row)
        fields = (row.get("frame_evidence", ""), row.get("biosynthetic_class", ""), row["dna_sequence"].strip().upper(),
                  row["segment"])  # fmt: skip
        # a repeated hit counts once; the smallest of its rows, so that the file's line order does not matter
        rows[key] = min(rows.get(key, fields), fields)
        locus[key] = min(locus.get(key, row["locus"]), row["locus"])
    if not rows:
        raise InputError(f"{path}: no domain rows")
    order = sorted(rows, key=lambda k: (k[0], locus[k], "|".join(map(str, k))))
    table = pd.DataFrame(
        [(f"{b}|{g}|{p}|{s}-{e}|{f}", b, f, *rows[b, g, p, s, e, f]) for b, g, p, s, e, f in order],
        columns=["instance_id", "bgc_id", "family", "frame_evidence", "product_class", "dna", "protein"],
    )
    table["hit_index"] = table.groupby("bgc_id").cumcount()
    table["clan"] = [pfam.clan(f) or "" for f in table["family"]] if pfam is not None else ""
    table["token_position"] = -1
    if corpus is not None:
        clusters = {c.id: c for c in corpus}
        for bgc, part in table.groupby("bgc_id", sort=False):
            if bgc in clusters:
                pairs = align_occurrences(list(part["family"]), list(clusters[bgc].domains))
                table.loc[part.index[pairs[:, 0]], "token_position"] = pairs[:, 1]
    return table[list(INSTANCE_COLUMNS)].reset_index(drop=True)


#: The study's split names, in the order their shares are given.
SPLITS = ("train", "valid", "test")


def cluster_groups(
    corpus: ClusterCorpus | None, clusters: Sequence[str] = (), shared: pd.DataFrame | None = None
) -> dict[str, str]:
    """Cluster id -> group key, for the ids of ``corpus`` and ``clusters``. One group holds the corpus
    clusters with identical domain lists and, with ``shared`` (instances: ``bgc_id``, ``dna``, ``protein``),
    the clusters that share a domain's DNA or protein sequence (the same gene in two MIBiG entries); a
    group's key is its smallest cluster id."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def join(ids: Sequence[str]) -> None:
        for other in ids[1:]:
            a, b = find(ids[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)

    for bgc in [*(c.id for c in corpus or ()), *clusters]:
        find(bgc)
    by_list: dict[tuple, list[str]] = {}
    for c in corpus or ():
        by_list.setdefault(c.domains, []).append(c.id)
    for ids in by_list.values():
        join(ids)
    if shared is not None:
        for column in ("dna", "protein"):
            for ids in shared.groupby(column)["bgc_id"].unique():
                join(sorted(ids))
    return {bgc: find(bgc) for bgc in parent}


def assign_splits(
    corpus: ClusterCorpus | None,
    clusters: Sequence[str] = (),
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    shared: pd.DataFrame | None = None,
) -> dict[str, str]:
    """Cluster id -> ``train``/``valid``/``test``, one split for every stratum of a study: the groups of
    :func:`cluster_groups` (with ``shared``) dealt by :func:`deal_groups`, so that no duplicate leaks
    across the split."""
    return deal_groups(cluster_groups(corpus, clusters, shared), fractions, seed)


def deal_groups(
    group: Mapping[str, str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, str]:
    """Cluster id -> ``train``/``valid``/``test`` for the clusters of ``group`` (cluster id -> group key).
    Groups are ordered by key, shuffled with ``seed`` and dealt to ``test``, then ``valid``, until each
    holds at least its share of the ids; the rest train. The result does not depend on the order of the
    inputs."""
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or not np.isclose(sum(fractions), 1.0):
        raise InputError(
            f"split fractions {tuple(fractions)}: give three shares (train, valid, test) >= 0 that sum to 1, train > 0"
        )
    members: dict[str, list[str]] = {}
    for bgc, key in group.items():
        members.setdefault(key, []).append(bgc)
    keys = sorted(members)
    np.random.default_rng(seed).shuffle(keys)
    out: dict[str, str] = {}
    for name, share in (("test", fractions[2]), ("valid", fractions[1])):
        taken = 0
        while keys and taken < share * len(group):
            ids = members[keys.pop()]
            out.update(dict.fromkeys(ids, name))
            taken += len(ids)
    for key in keys:
        out.update(dict.fromkeys(members[key], "train"))
    return out


def clan_classes(
    instances: pd.DataFrame,
    split_of: Mapping[str, str],
    min_count: int = 20,
    top: int = 20,
    exclude: Sequence[str] = (),
) -> list[str]:
    """The clans a nucleotide model learns to predict: the ``top`` most frequent clans among the training
    instances (but those of the families in ``exclude``), each with at least ``min_count`` of them (ties by
    name). Only the training split counts, so that validation and test never shape the classes."""
    train = instances[(instances["bgc_id"].map(split_of) == "train") & (instances["clan"] != "")]
    if len(exclude):
        train = train[~train["family"].isin(list(exclude))]
    counts = train["clan"].value_counts()
    ranked = sorted(((int(n), c) for c, n in counts.items() if n >= min_count), key=lambda t: (-t[0], t[1]))
    return [c for _, c in ranked[:top]]


def clan_dna_splits(
    instances: pd.DataFrame,
    split_of: Mapping[str, str],
    clans: Sequence[str],
    source: str = "",
    exclude: Sequence[str] = (),
) -> Splits:
    """Train/dev/test sets of domain DNA labelled by the index of its clan in ``clans`` (instances of other
    clans, or of none, and of the families in ``exclude`` are left out), split by cluster as ``split_of``
    says (``valid`` is the dev set)."""
    index = {c: i for i, c in enumerate(clans)}
    keep = instances[instances["clan"].isin(index)]
    if len(exclude):
        keep = keep[~keep["family"].isin(list(exclude))]
    parts = []
    for name in SPLITS:
        part = keep[keep["bgc_id"].map(split_of) == name]
        parts.append(SequenceSet(list(part["dna"]), part["clan"].map(index).to_numpy(), f"{source} ({name} clusters)"))
    return Splits(*parts)


def probe_families(instances: pd.DataFrame, min_families: int = 5, share: float = 0.3, seed: int = 0) -> list[str]:
    """The families held out for a clan probe: of each clan with at least ``min_families`` families among
    ``instances``, a seeded ``share`` of them, and at least ``min_families``. A model trained on clan labels
    never sees these families (:func:`clan_dna_splits` with ``exclude``), so the probe asks of every
    representation the same question: does it place unseen families in their clan?"""
    if not 0 < share <= 1:
        raise ParameterError("share", f"share={share}: the share of each clan's families held out must be in (0, 1]")
    rng = np.random.default_rng([seed, 3])
    families = instances[instances["clan"] != ""].groupby("clan")["family"].unique()
    out: list[str] = []
    for clan in sorted(families.index):
        members = sorted(families[clan])
        if len(members) >= min_families:
            k = min(len(members), max(min_families, int(np.ceil(share * len(members)))))
            out += [members[i] for i in sorted(rng.choice(len(members), size=k, replace=False))]
    return sorted(out)
