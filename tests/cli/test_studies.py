"""Tests of biostrata.cli.studies: the `biostrata study` commands' options."""

from __future__ import annotations

from pathlib import Path

import pytest

from biostrata.cli import main


def test_data_fills_only_the_input_files_left_at_their_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import biostrata.studies.cross_granularity as study

    seen = {}
    monkeypatch.setattr(study, "run_cross_granularity", lambda out, s: seen.update(s=s))
    (tmp_path / "own.txt").write_text("x\n")
    (tmp_path / "c.yaml").write_text(f"corpus: {tmp_path / 'own.txt'}\n")
    argv = ["study", "cross-granularity", "--out", str(tmp_path / "o"), "--data", str(tmp_path), "--config",
            str(tmp_path / "c.yaml"), "--classes", str(tmp_path / "mine.csv")]  # fmt: skip
    assert main(argv) == 0
    s = seen["s"]
    assert s.corpus == str(tmp_path / "own.txt")  # from --config: kept
    assert s.classes == str(tmp_path / "mine.csv")  # from the command line: kept
    assert s.pfam == str(tmp_path / "pfam" / "Pfam-A.clans.tsv")  # default: taken from --data
    assert s.domains == str(tmp_path / "bgc" / "mibig_domains.tsv")
