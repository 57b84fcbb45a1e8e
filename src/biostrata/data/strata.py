"""The same Pfam domain instances seen at the strata of biological organization.

``mibig_domains.tsv`` holds, for each Pfam domain hit of a MIBiG cluster, the domain's DNA (in gene
orientation), its protein segment (``frame_evidence``: how its reading frame was chosen; ``hmm`` and
``unique`` are checked, ``ambiguous`` is not) and its family. :func:`read_instances` makes one row per
distinct hit (a repeated row counts once), keyed by ``instance_id`` =
``<bgc_id>|<gene_id>|<protein_accession>|<dna_start>-<dna_end>|<family>`` (the record ids of
:func:`biostrata.data.proteins.read_domain_proteins`), so that every stratum can be joined by id:

- nucleotide: ``dna``; amino acid: ``protein`` (and ``frame_evidence``);
- domain: ``family`` (accession without version), its ``clan`` (Pfam clans table, "" when none), and
  ``token_position``, the position of the same domain in the cluster's domain sentence of a corpus
  (the k-th occurrence of a family in the cluster paired with its k-th token; -1 when not paired);
- cluster: ``bgc_id``, ``product_class`` (``biosynthetic_class``), and ``hit_index``, the hit's
  position among its cluster's hits (by gene, start, end, family).

Rows are sorted by cluster and ``hit_index`` whatever the order of the file's lines.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from biostrata.data.clusters import ClusterCorpus
from biostrata.data.pfam import PfamTable
from biostrata.data.proteins import domain_rows, hit_key
from biostrata.errors import InputError

__all__ = ["read_instances", "align_occurrences", "INSTANCE_COLUMNS"]

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
    rows = {}
    for where, row in domain_rows(path):
        if "dna_sequence" not in row:
            raise InputError(f"{where}: no dna_sequence column; the strata need each domain's DNA")
        key = hit_key(row)
        fields = (row.get("frame_evidence", ""), row.get("biosynthetic_class", ""), row["dna_sequence"].strip().upper(),
                  row["segment"])  # fmt: skip
        # a repeated hit counts once; the smallest of its rows, so that the file's line order does not matter
        rows[key] = min(rows.get(key, fields), fields)
    if not rows:
        raise InputError(f"{path}: no domain rows")
    table = pd.DataFrame(
        [(f"{b}|{g}|{p}|{s}-{e}|{f}", b, g, s, e, f, *rest) for (b, g, p, s, e, f), rest in rows.items()],
        columns=["instance_id", "bgc_id", "gene", "start", "end", "family", "frame_evidence", "product_class", "dna",
                 "protein"],
    )  # fmt: skip
    table = table.sort_values(["bgc_id", "gene", "start", "end", "family", "instance_id"], kind="stable")
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
