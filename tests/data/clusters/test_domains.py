"""Tests of biostrata.data.clusters.domains: domain instances at every stratum, joined by instance id."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from biostrata.data.clusters.corpus import Cluster, ClusterCorpus
from biostrata.data.clusters.domains import INSTANCE_COLUMNS, align_occurrences, read_instances
from biostrata.data.clusters.pfam import PfamFamily, PfamTable
from biostrata.errors import InputError

HEADER = "bgc_id\tpfam_id\tgene_id\tprotein_accession\tdna_start\tdna_end\tframe\tdna_sequence\tprotein_sequence\t" \
         "biosynthetic_class\tmolecule\tframe_evidence"  # fmt: skip
ROWS = [
    "B1\tPF00002.1\tg2\tA\t5\t50\t0\tacgt\tMKV*\tNRP\tx\thmm",
    "B1\tPF00001\tg1\tA\t30\t90\t0\tAAAC\tAAA\tNRP\tx\tunique",
    "B1\tPF00001\tg1\tA\t30\t90\t0\tAAAC\tAAA\tNRP\tx\tunique",  # the same hit again
    "B1\tPF00001\tg1\tA\t1\t20\t0\tCCCG\tCCC\tNRP\tx\tambiguous",
    "B2\tPF00003\tg1\tA\t1\t20\t0\tGGGA\tDDD\tPolyketide\ty\thmm",
]


def test_one_row_per_instance_whatever_the_line_order(tmp_path: Path) -> None:
    pfam = PfamTable([PfamFamily("PF00001", "CL0001", "c", "A", ""), PfamFamily("PF00002", "", "", "B", "")])
    corpus = ClusterCorpus([Cluster("B1", ("PF00009", "PF00001", "PF00002", "PF00001")), Cluster("B3", ("PF00001",))])
    tables = []
    for seed in range(4):
        rows = ROWS[:]
        random.Random(seed).shuffle(rows)
        (tmp_path / "d.tsv").write_text("\n".join([HEADER, *rows]) + "\n")
        tables.append(read_instances(tmp_path / "d.tsv", corpus, pfam))
    for other in tables[1:]:
        pd.testing.assert_frame_equal(tables[0], other)
    t = tables[0]
    assert list(t.columns) == list(INSTANCE_COLUMNS) and len(t) == 4
    assert list(t["instance_id"]) == ["B1|g1|A|1-20|PF00001", "B1|g1|A|30-90|PF00001", "B1|g2|A|5-50|PF00002",
                                      "B2|g1|A|1-20|PF00003"]  # fmt: skip
    assert list(t["hit_index"]) == [0, 1, 2, 0] and list(t["clan"]) == ["CL0001", "CL0001", "", ""]
    # k-th PF00001 of B1 with its k-th token; B2 is not in the corpus
    assert list(t["token_position"]) == [1, 3, 2, -1]
    assert list(t["protein"]) == ["CCC", "AAA", "MKV", "DDD"] and t["dna"].iloc[2] == "ACGT"
    assert list(t["product_class"]) == ["NRP", "NRP", "NRP", "Polyketide"]


def test_align_occurrences() -> None:
    pairs = align_occurrences(["a", "b", "a", "c"], ["b", "a", "x", "a"])
    assert pairs.tolist() == [[0, 1], [1, 0], [2, 3]]
    assert align_occurrences([], ["a"]).shape == (0, 2)


def test_a_table_without_dna_is_refused(tmp_path: Path) -> None:
    header = HEADER.replace("\tdna_sequence", "")
    row = ROWS[0].replace("\tacgt", "")
    (tmp_path / "d.tsv").write_text(f"{header}\n{row}\n")
    with pytest.raises(InputError, match=r"d.tsv:2: no dna_sequence column"):
        read_instances(tmp_path / "d.tsv")


@pytest.mark.shared_data("bgc", "pfam")
def test_real_instances(shared_data) -> None:
    from biostrata.data.clusters.corpus import read_clusters

    pfam = PfamTable.read(shared_data / "pfam" / "Pfam-A.clans.tsv")
    t = read_instances(
        shared_data / "bgc" / "mibig_domains.tsv", read_clusters(shared_data / "bgc" / "mibig_pfamid.csv", pfam), pfam
    )
    assert len(t) == 23_358 and t["bgc_id"].nunique() == 1_246 and t["instance_id"].is_unique
    assert t["frame_evidence"].value_counts().to_dict() == {"hmm": 8_999, "ambiguous": 8_249, "unique": 6_110}
    assert (t["token_position"] >= 0).sum() == 19_672


# -- one split for every stratum --------------------------------------------------------------------
def _corpus(n: int = 60) -> ClusterCorpus:
    # clusters 0..9 share one domain list (duplicates); the rest are distinct
    return ClusterCorpus([Cluster(f"B{i:03d}", ("PF00001",) if i < 10 else (f"PF{i:05d}",)) for i in range(n)])


def test_assign_splits_keeps_duplicates_together_and_ignores_input_order() -> None:
    from biostrata.data.clusters.domains import assign_splits

    corpus = _corpus()
    extra = ["X1", "X2", "X3"]  # clusters of the instances that the corpus lacks
    split = assign_splits(corpus, extra, (0.6, 0.2, 0.2), seed=3)
    shuffled = ClusterCorpus(list(reversed(corpus.clusters)))
    assert assign_splits(shuffled, extra[::-1], (0.6, 0.2, 0.2), seed=3) == split
    assert set(split) == {c.id for c in corpus} | set(extra)
    assert len({split[f"B{i:03d}"] for i in range(10)}) == 1  # identical domain lists: one split
    counts = pd.Series(split).value_counts()
    assert counts["test"] >= 0.2 * len(split) and counts["valid"] >= 0.2 * len(split) and counts["train"] > 0
    assert assign_splits(corpus, extra, (0.6, 0.2, 0.2), seed=4) != split


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.9, 0.2, 0.1), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_assign_splits_refuses_bad_shares(fractions) -> None:
    from biostrata.data.clusters.domains import assign_splits

    with pytest.raises(InputError, match="three shares"):
        assign_splits(_corpus(), (), fractions)


def test_clan_classes_come_from_training_clusters_only() -> None:
    from biostrata.data.clusters.domains import clan_classes, clan_dna_splits

    rows = [("T1", "CL1")] * 5 + [("T1", "CL2")] * 3 + [("T2", "CL3")] * 2 + [("T2", "")] * 4 + [("V1", "CL4")] * 9
    rows += [("V1", "CL1")] + [("S1", "CL2"), ("S1", "CL4")]
    inst = pd.DataFrame({"bgc_id": [b for b, _ in rows], "clan": [c for _, c in rows],
                         "dna": [f"ACGT{i}" for i in range(len(rows))]})  # fmt: skip
    split = {"T1": "train", "T2": "train", "V1": "valid", "S1": "test"}
    # CL4 is the most frequent clan overall but occurs in no training cluster: it is no class
    assert clan_classes(inst, split, min_count=2, top=5) == ["CL1", "CL2", "CL3"]
    assert clan_classes(inst, split, min_count=3, top=5) == ["CL1", "CL2"]
    assert clan_classes(inst, split, min_count=1, top=1) == ["CL1"]
    splits = clan_dna_splits(inst, split, ["CL1", "CL2"], "d.tsv")
    assert [len(p) for p in splits] == [8, 1, 1]
    assert splits.train.labels.tolist() == [0] * 5 + [1] * 3
    assert splits.dev.labels.tolist() == [0] and splits.test.labels.tolist() == [1]
    assert "valid clusters" in splits.dev.source and splits.labels == [0, 1]


def test_clusters_sharing_a_sequence_form_one_group() -> None:
    from biostrata.data.clusters.domains import assign_splits, cluster_groups

    corpus = ClusterCorpus([Cluster("A", ("PF1",)), Cluster("B", ("PF1",)), Cluster("C", ("PF2",)),
                            Cluster("D", ("PF3",)), Cluster("E", ("PF4",))])  # fmt: skip
    shared = pd.DataFrame({"bgc_id": ["C", "D", "E", "F"], "dna": ["AAA", "AAA", "CCC", "GGG"],
                           "protein": ["K", "M", "P", "P"]})  # fmt: skip
    groups = cluster_groups(corpus, ["F"], shared)
    assert groups == {"A": "A", "B": "A", "C": "C", "D": "C", "E": "E", "F": "E"}
    assert cluster_groups(corpus, ["F"])["D"] == "D"  # without the instances, only domain lists join
    for seed in range(5):
        split = assign_splits(corpus, ["F"], (0.4, 0.3, 0.3), seed, shared=shared)
        assert split["A"] == split["B"] and split["C"] == split["D"] and split["E"] == split["F"]


def test_probe_families_are_held_out_per_clan_and_left_out_of_clan_training() -> None:
    from biostrata.data.clusters.domains import clan_classes, clan_dna_splits, probe_families

    rows = [(f"B{i % 7}", f"PF{c}{f}", f"CL{c}") for c in range(3) for f in range(3 + 4 * c) for i in range(4)]
    inst = pd.DataFrame(rows, columns=["bgc_id", "family", "clan"]).assign(dna="ACGT")
    held = probe_families(inst, min_families=3, share=0.5, seed=0)
    per_clan = pd.Series([f[:3] for f in held]).value_counts().sort_index()
    assert per_clan.to_dict() == {"PF0": 3, "PF1": 4, "PF2": 6}  # max(3, ceil(share x families))
    assert probe_families(inst, 3, 0.5, seed=0) == held and probe_families(inst, 3, 0.5, seed=1) != held
    assert probe_families(inst, min_families=8, share=0.5) == sorted(probe_families(inst, 8, 0.5))
    assert {f[:3] for f in probe_families(inst, min_families=8, share=0.5)} == {"PF2"}
    with pytest.raises(InputError, match="share"):
        probe_families(inst, 3, 0.0)
    split = {f"B{i}": "train" if i < 5 else ("valid" if i == 5 else "test") for i in range(7)}
    clans = clan_classes(inst, split, min_count=1, top=5, exclude=held)
    assert clans == ["CL2", "CL1"]  # CL0's 3 families are all held out
    splits = clan_dna_splits(inst, split, clans, exclude=held)
    used = inst[inst["clan"].isin(clans) & ~inst["family"].isin(held)]
    assert sum(len(p) for p in splits) == len(used)
