"""Tests of biostrata.data.clusters.proteins: FASTA and per-domain protein tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from biostrata.data.clusters.proteins import (
    family_members,
    read_domain_proteins,
    read_domain_segments,
    read_fasta,
    read_proteins,
)
from biostrata.errors import DataNotFoundError, InputError

HEADER = "bgc_id\tpfam_id\tgene_id\tprotein_accession\tdna_start\tdna_end\tframe\tdna_sequence\tprotein_sequence\n"


def test_fasta(tmp_path: Path) -> None:
    path = tmp_path / "p.fa"
    path.write_text(">a first protein\nMKV\nla*\n\n>b\nWW\n")
    recs = read_fasta(path)
    assert [(r.id, r.sequence, r.family) for r in recs] == [("a", "MKVLA", None), ("b", "WW", None)]
    path.write_text(">a\nMK\n>a\nVV\n")
    with pytest.raises(InputError, match="'a' appears more than once"):
        read_fasta(path)
    path.write_text("MKV\n>a\nMK\n")
    with pytest.raises(InputError, match=r"p\.fa:1: sequence before the first"):
        read_fasta(path)
    path.write_text(">a\nMK1V\n")
    with pytest.raises(InputError, match=r"p\.fa:1: character '1'"):
        read_fasta(path)
    path.write_text(">a\n>b\nMK\n")
    with pytest.raises(InputError, match=r"p\.fa:1: empty protein sequence"):
        read_fasta(path)
    with pytest.raises(DataNotFoundError):
        read_fasta(tmp_path / "none.fa")


def test_domain_table(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text(
        HEADER
        + "B1\tPF00005.3\tg1\tA.1\t1\t90\t0\tACG\tMKV\n"
        + "B1\tPF00005\tg2\tA.2\t1\t90\t0\tACG\tMKV\n"  # same family, same sequence: skipped
        + "B2\tPF00109\tg1\tC.1\t5\t95\t1\tACG\tWWL\n"
    )
    recs = read_proteins(path)
    assert [(r.id, r.sequence, r.family) for r in recs] == [
        ("B1|g1|A.1|1-90|PF00005", "MKV", "PF00005"),
        ("B2|g1|C.1|5-95|PF00109", "WWL", "PF00109"),
    ]
    assert len(read_domain_proteins(path, dedupe=False)) == 3
    assert family_members(recs) == {"PF00005": ["B1|g1|A.1|1-90|PF00005"], "PF00109": ["B2|g1|C.1|5-95|PF00109"]}
    counts: dict = {}
    upper = path.rename(tmp_path / "D.TSV")  # the suffix in any case is a domain table; counts as embed prints them
    assert read_proteins(upper, counts=counts) == recs and counts == {"rows": 3, "merged": 1, "unchecked_frame": 0}
    path = upper.rename(path)
    path.write_text("bgc_id\tpfam_id\nB1\tPF1\n")
    with pytest.raises(InputError, match="missing column"):
        read_domain_proteins(path)


@pytest.mark.shared_data("genomes", "bgc")
def test_real_protein_files(shared_data) -> None:
    fasta = read_fasta(shared_data / "genomes" / "BGC0000015.protein.fa")
    assert len(fasta) == 30 and fasta[0].id.startswith("BGC0000015|c1|4-1824")
    recs = read_domain_proteins(shared_data / "bgc" / "mibig_domains.tsv")
    assert len(recs) == 22240 and len(family_members(recs)) == 1278


def test_domain_segments_ordered_by_gene_and_position_without_repeated_rows(tmp_path: Path) -> None:
    rows = ["B1\tPF00002.1\tg2\tA\t5\t50\t0\tACG\tmkv*",
            "B1\tPF00001\tg1\tA\t30\t90\t0\tACG\tAAA",
            "B1\tPF00001\tg1\tA\t30\t90\t0\tACG\tAAA",  # the same hit again
            "B1\tPF00003\tg1\tA\t1\t20\t0\tACG\tCCC",
            "B0\tPF00001\tg1\tA\t1\t20\t0\tACG\tDDD"]  # fmt: skip
    path = tmp_path / "d.tsv"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    segments = read_domain_segments(path)
    assert segments == {
        "B0": [("PF00001", "DDD")],
        "B1": [("PF00003", "CCC"), ("PF00001", "AAA"), ("PF00002", "MKV")],
    }
    assert list(segments) == ["B0", "B1"]
    path.write_text(HEADER + "B1\tPF00002\tg2\tA\tfive\t50\t0\tACG\tMKV\n")
    with pytest.raises(InputError, match=r"d.tsv:2: dna_start must be an integer"):
        read_domain_segments(path)


ANNOTATE = ("record\tprotein_id\tgene_start\tgene_end\tgene_strand\tpfam_id\tpfam\tname\tenv_start\tenv_end\t"
            "dna_start\tdna_end\tdna_sequence\tprotein_sequence\tframe_evidence\n")  # fmt: skip


def test_annotate_table_reads_by_its_own_column_names_hits_along_the_record(tmp_path: Path) -> None:
    """annotate's domains.tsv: cluster = record, gene and protein = protein_id; a cluster's hits ordered by the
    gene's place on the record (not its id), then by start; proteins without coordinates in file order."""
    rows = ["r1\tz9\t500\t800\t1\tPF00002.3\tPF00002\tB\t0\t3\t0\t9\tATGAAAGTG\tMKV\thmm",
            "r1\ta1\t100\t400\t-1\tPF00001.1\tPF00001\tA\t4\t6\t12\t18\tTGGTGG\tWW\thmm",
            "r1\ta1\t100\t400\t-1\tPF00003.1\tPF00003\tC\t0\t2\t0\t6\tCTGCTG\tLL\thmm",
            "p\tq\t0\t0\t0\tPF00001.1\tPF00001\tA\t0\t2\t0\t6\t\tAA\t",
            "p\tb\t0\t0\t0\tPF00002.1\tPF00002\tB\t0\t2\t0\t6\t\tCC\t"]  # fmt: skip
    path = tmp_path / "domains.tsv"
    path.write_text(ANNOTATE + "\n".join(rows) + "\n")
    assert read_domain_segments(path) == {
        "p": [("PF00001", "AA"), ("PF00002", "CC")],  # a protein FASTA: its proteins in file order
        "r1": [("PF00003", "LL"), ("PF00001", "WW"), ("PF00002", "MKV")],
    }
    assert [r.id for r in read_proteins(path)][:2] == ["r1|z9|z9|0-9|PF00002", "r1|a1|a1|12-18|PF00001"]
    path.write_text(ANNOTATE.replace("\tdna_start\tdna_end\tdna_sequence\tprotein_sequence\tframe_evidence", "")
                    + "r1\tz9\t500\t800\t1\tPF00002.3\tPF00002\tB\t0\t3\n")  # fmt: skip
    with pytest.raises(InputError, match=r"domains.tsv:1: missing column.*older `biostrata annotate`: annotate again"):
        read_domain_segments(path)
    path.write_text("cluster\tpfam_id\nB1\tPF00001\n")
    with pytest.raises(InputError, match=r"domains.tsv:1: missing column.*Give `biostrata annotate`'s domains.tsv or"):
        read_domain_segments(path)
    path.write_text(ANNOTATE + rows[0] + "\tx\n")
    with pytest.raises(InputError, match=r"domains.tsv:2: wrong number of fields \(the header has 15\)"):
        read_domain_segments(path)


def test_gzipped_fasta_reads_like_the_plain_file(tmp_path: Path) -> None:
    import gzip

    (tmp_path / "p.fa").write_text(">a\nMKV*\n>b\nww\n")
    (tmp_path / "p.fa.gz").write_bytes(gzip.compress((tmp_path / "p.fa").read_bytes()))
    assert read_fasta(tmp_path / "p.fa.gz") == read_fasta(tmp_path / "p.fa")
