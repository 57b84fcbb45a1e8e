"""Tests of biostrata.data.clusters.pfam: the Pfam clans table and its lookups (fixture ``pfam``: conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from biostrata.data.clusters.pfam import PfamTable, parse_accession
from biostrata.errors import DataNotFoundError, InputError


def test_parse_accession() -> None:
    assert parse_accession("PF00005") == parse_accession("PF00005.27") == "PF00005"
    assert parse_accession("ABC_tran") is None and parse_accession("PF0005") is None


def test_pfam_table_lookups(pfam: PfamTable) -> None:
    assert len(pfam) == 4
    assert "PF00005" in pfam and "PF00005.21" not in pfam
    assert pfam.accessions == ["PF00005", "PF00109", "PF02801", "PF00550"]
    assert pfam.accession("ABC_tran") == "PF00005"
    assert pfam.accession("PF00005.21") == "PF00005"
    assert pfam.accession("abc_TRAN") == "PF00005"  # unique case-insensitive match
    assert pfam.accession("PF99999") is None
    assert pfam.accession("no_such") is None
    assert pfam.name("PF00109") == "ketoacyl-synt"
    assert pfam.clan("PF00005") == "CL0023"
    assert pfam.clan("PF00550") is None


def test_pfam_table_errors(tmp_path: Path, pfam: PfamTable) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text(Path(pfam.source).read_text() + "oops\n")
    with pytest.raises(InputError, match=r"bad\.tsv:5"):
        PfamTable.read(bad)
    with pytest.raises(DataNotFoundError, match="missing.tsv"):
        PfamTable.read(tmp_path / "missing.tsv")
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n")
    with pytest.raises(InputError, match="no Pfam families"):
        PfamTable.read(empty)


@pytest.mark.shared_data("pfam")
def test_real_pfam_table(shared_data) -> None:
    pfam = PfamTable.read(shared_data / "pfam" / "Pfam-A.clans.tsv")
    assert len(pfam) == 19632
    assert pfam.accession("ABC_tran") == "PF00005" and pfam.clan("PF00005") == "CL0023"
