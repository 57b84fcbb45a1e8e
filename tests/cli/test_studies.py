"""Tests of biostrata.cli.studies: the `biostrata study` commands' options."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
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


def test_strata_data_takes_the_accession_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import biostrata.studies.strata as study

    seen = {}
    tables = {"widths": pd.DataFrame(), "probes": pd.DataFrame({"name": ["domain/lorentz/1"]}),
              "skipped": pd.DataFrame(columns=["part", "reason"])}  # fmt: skip
    monkeypatch.setattr(study, "run_strata", lambda out, s: seen.update(s=s) or tables)
    assert main(["study", "strata", "--out", str(tmp_path / "o"), "--data", str(tmp_path), "--widths", "8", "16",
                 "--width", "16"]) == 0  # fmt: skip
    s = seen["s"]
    assert s.corpus == str(tmp_path / "bgc" / "mibig_pfamid.csv") and s.widths == [8, 16] and s.width == 16


def test_strata_data_takes_an_annotation_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """--data a `biostrata annotate` output: its domain table and clusters, the clans table it recorded (if
    any), no product classes; what the run skipped is printed."""
    import json

    import biostrata.studies.strata as study
    from biostrata.studies.strata.steps import NO_CLANS

    seen = {}
    skipped = pd.DataFrame({"part": ["product-class probe", "cnn"], "reason": ["no product classes", NO_CLANS]})
    tables = {"widths": pd.DataFrame(), "probes": pd.DataFrame({"name": ["domain/lorentz/1"]}), "skipped": skipped}
    monkeypatch.setattr(study, "run_strata", lambda out, s: seen.update(s=s) or tables)
    ann = tmp_path / "ann"
    ann.mkdir()
    for clans, pfam in ((None, ""), ("/x/Pfam-A.clans.tsv", "/x/Pfam-A.clans.tsv")):
        (ann / "annotation.json").write_text(json.dumps({"settings": {"clans": clans}}))
        assert main(["study", "strata", "--out", str(tmp_path / "o"), "--data", str(ann)]) == 0
        s = seen["s"]
        assert (s.domains, s.corpus) == (str(ann / "domains.tsv"), str(ann / "clusters.csv"))
        assert (s.pfam, s.classes) == (pfam, "")
    out = capsys.readouterr().out
    assert "skipped product-class probe: no product classes" in out
    # the library's reason names the field; the command adds how its options give one
    assert f"skipped cnn: {NO_CLANS}; `biostrata annotate --clans` records one that --data finds" in out
    assert "--" not in NO_CLANS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--skip", "proteins"], "skip=.*is invalid"),
        (["--widths", "8", "16", "--width", "32"], "width=32.*is invalid"),
        (["--split", "0.8", "0.2"], "split=.*is invalid"),
        (["--cnn-models", "resnet"], "cnn_models=.*is invalid"),
        (["--domain-variants", "hyper"], "domain_variants=.*is invalid"),
        (["--domains", "missing.tsv"], "domains.*missing.tsv"),
    ],
)
def test_strata_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture, argv, message):
    import re

    code = main(["study", "strata", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("biostrata: error:") and re.search(message, err[0])
