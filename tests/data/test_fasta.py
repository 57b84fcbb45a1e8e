"""Tests of biostrata.data.fasta: the one FASTA tokenizer under every reader, and the one writer."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from biostrata.data.annotation.genes import read_records
from biostrata.data.clusters.proteins import read_fasta
from biostrata.data.dna.genome import read_labelled
from biostrata.data.fasta import FastaRecord, parse_fasta, write_fasta
from biostrata.errors import InputError


def test_records_keep_id_description_sequence_and_header_line(tmp_path: Path) -> None:
    path = tmp_path / "x.fa"
    path.write_text("\n>a  first  protein \nMK\n  vl*\n\n>b\n>c|1 label=2\r\nAC\r\n")
    assert list(parse_fasta(path)) == [
        FastaRecord("a", "first  protein", "MKvl*", 2),
        FastaRecord("b", "", "", 6),
        FastaRecord("c|1", "label=2", "AC", 7),
    ]
    assert list(parse_fasta(tmp_path / "x.fa")) == list(parse_fasta(_gzipped(path, tmp_path / "plain_name.fa")))
    path.write_text("")
    assert list(parse_fasta(path)) == []


def test_records_are_read_one_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "x.fa"
    path.write_text(">a\nMK\n>\nVV\n")
    records = parse_fasta(path)
    assert next(records) == ("a", "", "MK", 1)  # the layout error further on is not read yet
    with pytest.raises(InputError, match=r"x\.fa:3: FASTA header without an id"):
        next(records)


@pytest.mark.parametrize(
    "text, message",
    [
        (">a|0\nAC\n> \nAC\n", r":3: FASTA header without an id"),
        ("\nAC\n>a\nAC\n", r":2: sequence before the first '>' header; is this FASTA\?"),
    ],
)
@pytest.mark.parametrize("read", [read_fasta, read_labelled, read_records], ids=["proteins", "labelled", "genes"])
def test_every_reader_reports_layout_errors_alike(tmp_path: Path, text: str, message: str, read) -> None:
    path = tmp_path / "x.fa"
    path.write_text(text)
    with pytest.raises(InputError, match=r"x\.fa" + message):
        read(path)


@pytest.mark.parametrize(
    "read, expected",
    [
        (read_fasta, "a FASTA file of proteins"),
        (read_labelled, r"a CSV \(sequence,label\) or FASTA file"),
        (read_records, "a GenBank or FASTA file"),
    ],
    ids=["proteins", "labelled", "genes"],
)
def test_binary_and_damaged_gzip_files_are_refused_by_name(tmp_path: Path, read, expected: str) -> None:
    (tmp_path / "bin.fa").write_bytes(bytes(range(256)))
    with pytest.raises(InputError, match=rf"bin\.fa: not a text file; give {expected}, plain or gzip-compressed"):
        read(tmp_path / "bin.fa")
    (tmp_path / "cut.fa").write_bytes(
        gzip.compress("".join(f">s{i} label=1\nACGT\n" for i in range(100)).encode())[:40]
    )
    with pytest.raises(InputError, match=r"cut\.fa: a damaged gzip file \(.*\); compress it again"):
        read(tmp_path / "cut.fa")


def test_write_fasta_round_trips(tmp_path: Path) -> None:
    records = [("p1", "rec:0-9(+)", "MKV"), ("p2", "", "WW")]
    write_fasta(tmp_path / "out" / "p.faa", records)
    assert (tmp_path / "out" / "p.faa").read_text() == ">p1 rec:0-9(+)\nMKV\n>p2\nWW\n"
    assert [r[:3] for r in parse_fasta(tmp_path / "out" / "p.faa")] == records
    assert [(r.id, r.sequence) for r in read_fasta(tmp_path / "out" / "p.faa")] == [("p1", "MKV"), ("p2", "WW")]


def _gzipped(source: Path, target: Path) -> Path:
    target.write_bytes(gzip.compress(source.read_bytes()))
    return target
