"""Tests of biostrata.data.annotation.genes: records from GenBank and FASTA, CDS genes, predicted genes."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from biostrata.data.annotation.genes import genes_of, read_records, translate
from biostrata.data.clusters.proteins import read_fasta
from biostrata.errors import InputError


def test_translate_tables_1_and_11() -> None:
    assert translate("ATGGCTTGGTAA") == "MAW"  # the stop ends the protein
    assert translate("GTGAAATTTTAGCCC") == "MKF"  # an alternative start reads as M
    assert translate("ATGNNNAAA") == "MXK"  # an ambiguous codon is X
    with pytest.raises(InputError, match="translation table 4"):
        translate("ATG", table=4)


def test_fasta_kinds_and_bad_records(tmp_path: Path) -> None:
    (tmp_path / "n.fna").write_text(">c1 a contig\nACGTU\nNNAC\n>c2\nacgt\n")
    records = read_records(tmp_path / "n.fna")
    assert [r.id for r in records] == ["c1", "c2"] and records[0].sequence == "ACGTTNNAC" and not records[0].cds
    (tmp_path / "p.faa").write_text(">p1\nMKV*\n>p2\nACGT\n")  # .faa: proteins even when letters look like DNA
    proteins = read_records(tmp_path / "p.faa")
    assert [g.protein for r in proteins for g in r.cds] == ["MKV", "ACGT"] and all(not r.sequence for r in proteins)
    with gzip.open(tmp_path / "n.fna.gz", "wt") as handle:
        handle.write(">c1\nACGT\n")
    assert read_records(tmp_path / "n.fna.gz")[0].sequence == "ACGT"
    cases = {
        "mixed.fa": (">a\nACGTACGT\n>b\nMKVLLW\n", r"mixed.fa: mixes nucleotide and protein records"),
        "empty.fa": (">a\n>b\nACGT\n", r"empty.fa:1: record 'a' is empty"),
        "odd.fa": (">a\nMKV1@\n", r"odd.fa:1: record 'a': letters \['1', '@'\] are neither"),
        "dup.fa": (">a\nACGT\n>a\nACGT\n", r"dup.fa: record id 'a' appears more than once"),
        "nohead.fa": ("ACGT\n", r"nohead.fa:1: sequence before the first '>'"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=message):
            read_records(tmp_path / name)


def test_genbank_without_sequence_and_genes_modes(tmp_path: Path) -> None:
    rng = random.Random(0)
    seq = "".join(rng.choice("ACGT") for _ in range(3000))
    cds = "ATG" + "GCT" * 5 + "TAA"
    body = seq[:100] + cds + seq[100:]
    origin = "\n".join(f"{i + 1:>9} {body[i : i + 60].lower()}" for i in range(0, len(body), 60))
    gbk = (f"LOCUS       rec1 {len(body)} bp    DNA     linear   BCT 01-JAN-2020\nFEATURES             Location/Qualifiers\n"
           f"     CDS             101..{100 + len(cds)}\n                     /locus_tag=\"g1\"\nORIGIN\n{origin}\n//\n")  # fmt: skip
    (tmp_path / "r.gbk").write_text(gbk)
    (record,) = read_records(tmp_path / "r.gbk")
    assert [(g.id, g.start, g.end, g.strand, g.protein) for g in record.cds] == [("g1", 100, 121, 1, "MAAAAA")]
    assert genes_of([record], "annotated") == list(record.cds) == genes_of([record], "auto")
    predicted = genes_of([record], "predicted")
    assert all(0 <= g.start < g.end <= len(body) and g.protein and g.strand in (1, -1) for g in predicted)
    assert predicted and {g.table for g in predicted} == {11}  # pyrodigal's table, which the frame check reads
    empty = gbk.split("ORIGIN")[0] + "ORIGIN\n//\n"
    (tmp_path / "e.gbk").write_text(empty.replace(f"{len(body)} bp", "0 bp"))
    with pytest.raises(InputError, match=r"e.gbk: record 'rec1' has no sequence"):
        read_records(tmp_path / "e.gbk")
    (tmp_path / "n.fna").write_text(">c1\n" + seq + "\n")
    with pytest.raises(
        InputError, match=r"^genes='annotated': \S*n.fna: record 'c1' has no CDS features; use 'auto' or 'predicted'"
    ):
        genes_of(read_records(tmp_path / "n.fna"), "annotated")
    (tmp_path / "p.faa").write_text(">p1\nMKV\n")
    with pytest.raises(InputError, match="proteins, not nucleotides"):
        genes_of(read_records(tmp_path / "p.faa"), "predicted")


def test_a_protein_fasta_is_one_cluster_named_by_its_file(tmp_path: Path) -> None:
    (tmp_path / "my.cluster.faa").write_text(">p2 second\nMKVLW*\n>p1\nMAAW\n>p3\nMKK\n")
    (record,) = read_records(tmp_path / "my.cluster.faa")
    assert record.id == "my.cluster" and record.source == str(tmp_path / "my.cluster.faa") and not record.sequence
    assert [(g.record, g.id, g.start, g.end, g.strand, g.protein) for g in record.cds] == [
        ("my.cluster", "p2", 0, 0, 0, "MKVLW"), ("my.cluster", "p1", 0, 0, 0, "MAAW"), ("my.cluster", "p3", 0, 0, 0, "MKK")
    ]  # fmt: skip
    assert genes_of([record]) == list(record.cds)  # in file order
    # a FASTA of proteins by its letters, gzipped: the name drops .gz and the format suffix
    (tmp_path / "bgc.fa.gz").write_bytes(gzip.compress(b">a\nMKVLLW\n>b\nMEEK\n"))
    assert [(r.id, [g.id for g in r.cds]) for r in read_records(tmp_path / "bgc.fa.gz")] == [("bgc", ["a", "b"])]
    (tmp_path / "dup.faa").write_text(">a\nMKV\n>a\nMKW\n")
    with pytest.raises(InputError, match=r"dup.faa: protein id 'a' appears more than once"):
        read_records(tmp_path / "dup.faa")


def _genbank(body: str, features: str) -> str:
    origin = "\n".join(f"{i + 1:>9} {body[i : i + 60].lower()}" for i in range(0, len(body), 60))
    return (f"LOCUS       rec1 {len(body)} bp    DNA     linear   BCT 01-JAN-2020\nFEATURES             Location/Qualifiers\n"
            f"{features}ORIGIN\n{origin}\n//\n")  # fmt: skip


def _cds(location: str, *qualifiers: str) -> str:
    return f"     CDS             {location}\n" + "".join(f"                     {q}\n" for q in qualifiers)


def _revcomp(dna: str) -> str:
    return dna.translate(str.maketrans("ACGT", "TGCA"))[::-1]


def test_a_minus_strand_join_spans_its_parts_in_either_layout(tmp_path: Path) -> None:
    """``join(complement(b),complement(a))`` is ``complement(join(a,b))``: the reverse complement of each
    part in the order given; the gene spans from the first base of a to the last of b, on strand -1."""
    exon1, exon2 = "ATGGCTGCT", "TGGAAATAA"  # M A A | W K stop
    body = _revcomp(exon2) + "C" * 21 + _revcomp(exon1) + "C" * 21  # exon2 at 1..9, exon1 at 31..39
    layouts = ["join(complement(31..39),complement(1..9))", "complement(join(1..9,31..39))"]
    for k, location in enumerate(layouts):
        (tmp_path / f"m{k}.gbk").write_text(_genbank(body, _cds(location, '/locus_tag="g1"')))
        (gene,) = read_records(tmp_path / f"m{k}.gbk")[0].cds
        assert (gene.start, gene.end, gene.strand, gene.protein) == (0, 39, -1, "MAAWK"), location
    plus = "C" * 3 + exon1 + "C" * 20 + exon2 + "C" * 10  # a plus-strand join, parts at 4..12 and 33..41
    (tmp_path / "p.gbk").write_text(_genbank(plus, _cds("join(4..12,33..41)", '/locus_tag="g1"')))
    (gene,) = read_records(tmp_path / "p.gbk")[0].cds
    assert (gene.start, gene.end, gene.strand, gene.protein) == (3, 41, 1, "MAAWK")


def test_unreadable_genbank_and_bad_qualifiers_are_input_errors(tmp_path: Path) -> None:
    body = "ATGGCTGCTTGGAAATAA" + "C" * 42
    broken = _genbank(body, "").replace("FEATURES             Location/Qualifiers\n", "FEATURES\n     CDS\n")
    unreadable = {"fasta.gbk": b">a\nACGT\n", "features.gbk": broken.encode(), "bytes.gbk": bytes(range(256)) * 4}
    for name, data in unreadable.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=rf"{name}: not a GenBank file gb-io can read \(.*\); give GenBank text"):
            read_records(tmp_path / name)
    cases = {
        "/transl_table=x": r"t.gbk: record 'rec1', CDS g1: /transl_table='x' is not a whole number",
        "/codon_start=x": r"t.gbk: record 'rec1', CDS g1: /codon_start='x' is not a whole number",
        "/codon_start=5": r"t.gbk: record 'rec1', CDS g1: /codon_start=5 is not 1, 2 or 3",
        "/transl_table=4": r"t.gbk: record 'rec1', CDS g1: translation table 4 is not supported",
    }
    for qualifier, message in cases.items():
        (tmp_path / "t.gbk").write_text(_genbank(body, _cds("1..18", '/locus_tag="g1"', qualifier)))
        with pytest.raises(InputError, match=message):
            read_records(tmp_path / "t.gbk")
    # past the 60 bp: refused, with /translation or without
    for location in ("1..90", "complement(50..300)", "join(1..9,55..61)"):
        (tmp_path / "t.gbk").write_text(_genbank(body, _cds(location, '/locus_tag="g1"', '/translation="MAAWK"')))
        with pytest.raises(InputError, match=r"t.gbk: record 'rec1', CDS g1: location .* ends at base \d+, past the "
                           r"end of the record \(60 bp\); fix the location"):  # fmt: skip
            read_records(tmp_path / "t.gbk")
    # gzip is told by the bytes, whatever the name
    (tmp_path / "z.gbk").write_bytes(gzip.compress(_genbank(body, _cds("1..18", "/codon_start=1")).encode()))
    assert [g.protein for g in read_records(tmp_path / "z.gbk")[0].cds] == ["MAAWK"]


def test_prediction_shows_a_bar_over_records(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = random.Random(0)
    (tmp_path / "n.fna").write_text(">c1\n" + "".join(rng.choice("ACGT") for _ in range(3000)) + "\n")
    genes_of(read_records(tmp_path / "n.fna"), "predicted", progress=True)
    assert "pyrodigal" in capsys.readouterr().err
    genes_of(read_records(tmp_path / "n.fna"), "predicted")
    assert "pyrodigal" not in capsys.readouterr().err


@pytest.mark.shared_data("genomes")
def test_cds_of_a_real_record_are_its_translations(shared_data) -> None:
    genes = genes_of(read_records(shared_data / "genomes" / "BGC0000015.gbk"), "annotated")
    expected = read_fasta(shared_data / "genomes" / "BGC0000015.protein.fa")
    assert len(genes) == len(expected) == 30
    assert [g.protein for g in genes] == [r.sequence for r in expected]
    # DeepBGC's ids carry 1-based start, end and strand: BGC0000015|c1|4-1824|-|...
    assert [(g.start + 1, g.end, "+" if g.strand > 0 else "-") for g in genes] == [
        (int(r.id.split("|")[2].split("-")[0]), int(r.id.split("|")[2].split("-")[1]), r.id.split("|")[3])
        for r in expected
    ]


@pytest.mark.shared_data("genomes")
def test_pyrodigal_reproduces_the_annotated_proteins(shared_data) -> None:
    """BGC0001866's CDS are Prodigal's: the same 23 proteins and strands, the same ends, and every start
    one base before the file's (the file's starts are one base short of Prodigal's, a quirk of the tool
    that wrote it)."""
    records = read_records(shared_data / "genomes" / "BGC0001866.gbk")
    annotated, predicted = genes_of(records, "annotated"), genes_of(records, "predicted")
    assert len(annotated) == len(predicted) == 23
    assert [(g.protein, g.strand, g.end) for g in annotated] == [(g.protein, g.strand, g.end) for g in predicted]
    assert [g.start for g in predicted] == [g.start - 1 for g in annotated]
