"""Fixtures shared by the tests of biostrata.data."""

from __future__ import annotations

from pathlib import Path

import pytest

from biostrata.data.clusters.pfam import PfamTable

CLANS = (
    "PF00005\tCL0023\tP-loop_NTPase\tABC_tran\tABC transporter\n"
    "PF00109\tCL0046\tThiolase\tketoacyl-synt\tBeta-ketoacyl synthase, N-terminal domain\n"
    "PF02801\tCL0046\tThiolase\tKetoacyl-synt_C\tBeta-ketoacyl synthase, C-terminal domain\n"
    "PF00550\t\t\tPP-binding\tPhosphopantetheine attachment site\n"
)


@pytest.fixture()
def pfam(tmp_path: Path) -> PfamTable:
    """Four Pfam families read from a small ``Pfam-A.clans.tsv`` (one without a clan)."""
    path = tmp_path / "clans.tsv"
    path.write_text(CLANS)
    return PfamTable.read(path)
