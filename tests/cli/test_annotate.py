"""Tests of biostrata.cli.annotate: the `biostrata annotate` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biostrata.cli import main


@pytest.mark.shared_data("genomes", "pfam")
def test_annotate_a_genbank_file_with_one_real_hmm(shared_data, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["annotate", str(shared_data / "genomes" / "BGC0000015.gbk"), "--out", str(tmp_path / "a"), "--hmm",
            str(shared_data / "pfam" / "Pfam-A.PF00005.hmm"), "--cutoff", "evalue", "--Z", "16712", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "2 record(s), 30 proteins, 2 domains" in capsys.readouterr().out
    clusters = (tmp_path / "a" / "clusters.csv").read_text().splitlines()
    assert clusters == [
        "cluster_id,label,domain_tokens,tokens",
        "BGC0000015.1,,PF00005 PF00005,\"['PF00005', 'PF00005']\"",
    ]
    assert json.loads((tmp_path / "a" / "annotation.json").read_text())["Z"] == 16712
    assert main(argv) == 2  # finished: refused
    assert "the run finished already (annotation.json written); pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize(
    "files, args, message",
    [
        (
            {"x.hmm": "not an HMM\n", "p.faa": ">a\nMKV\n"},
            ["{p.faa}", "--hmm", "{x.hmm}"],
            r"x.hmm: not a HMMER3 profile file",
        ),
        ({"p.faa": ">a\nMKV\n"}, ["{p.faa}", "--hmm", "missing.hmm"], r"--hmm missing.hmm: no such file"),
        ({"p.faa": ">a\nMKV\n"}, ["{p.faa}", "--cutoff", "strict"], r"cutoff=.strict. \(--cutoff\) is invalid"),
        (
            {"p.faa": ">a\nMKV\n"},
            ["{p.faa}", "--overlaps", "clan"],
            r"overlaps=.clan. \(--overlaps\) is invalid; expected best or keep, or clan with clans",
        ),
        ({"m.fa": ">a\nACGTACGT\n>b\nMKVLW\n"}, ["{m.fa}"], r"m.fa: mixes nucleotide and protein records"),
        ({"f.gbk": ">a\nACGTACGT\n"}, ["{f.gbk}"], r"f.gbk: not a GenBank file gb-io can read \(.*\); give GenBank"),
        (
            {
                "past.gbk": "LOCUS       rec1 12 bp    DNA     linear   BCT 01-JAN-2020\nFEATURES             Location/"
                'Qualifiers\n     CDS             1..30\n                     /locus_tag="g1"\nORIGIN\n        1 '
                "atggctgctt gg\n//\n"
            },
            ["{past.gbk}"],
            r"past.gbk: record 'rec1', CDS g1: location .* ends at base 30, past the end of the record \(12 bp\)",
        ),  # fmt: skip
    ],
)
def test_bad_input_is_one_line_with_exit_2(tmp_path, capsys, files, args, message) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [
        "annotate",
        *(str(tmp_path / a[1:-1]) if a.startswith("{") else a for a in args),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("biostrata: error:")
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "o").exists()  # nothing written


def test_a_finished_annotation_is_refused_without_overwrite(tmp_path, capsys) -> None:
    """annotation.json, written last, marks a finished --out: annotate refuses it at once (before the HMMs are
    read), unless --overwrite."""
    (tmp_path / "p.faa").write_text(">a\nMKV\n")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "annotation.json").write_text("{}")
    assert main(["annotate", str(tmp_path / "p.faa"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"biostrata: error: --out {tmp_path / 'o'}: the run finished already (annotation.json written); pass "
        "--overwrite to annotate again, or give another --out"
    ]
    assert (tmp_path / "o" / "annotation.json").read_text() == "{}"


def _needs_default_hmms() -> None:
    """Skip unless the default Pfam HMMs (the gecco package) are installed."""
    from biostrata.data.annotation.annotate import default_hmm_path
    from biostrata.errors import DataNotFoundError

    try:
        default_hmm_path()
    except DataNotFoundError:
        pytest.skip("the gecco package (default Pfam HMMs) is not installed")


@pytest.mark.shared_data("genomes", "pfam")
def test_from_genbank_to_cluster_embeddings_and_cka(shared_data, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The tutorial of docs/annotate.md on a small scale: annotate, pre-train, embed, compare layers."""
    _needs_default_hmms()
    gbk = [str(shared_data / "genomes" / f) for f in ("BGC0000015.gbk", "BGC0001866.gbk")]
    assert main(["annotate", *gbk, "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    clusters = str(tmp_path / "a" / "clusters.csv")
    argv = ["pretrain", "--corpus", clusters, "--out", str(tmp_path / "lm"), "--epochs", "1", "--preset", "small", "--val-fraction", "0.34",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    store = str(tmp_path / "c.h5")
    argv = ["embed", "--model", str(tmp_path / "lm"), "--input", clusters, "--out", store, "--layers", "1",
            "4", "-1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 clusters (3 embedded now), layers [1, 4, 8]" in out, out
    assert main(["cka", store, "--out", str(tmp_path / "cka.csv"), "--heatmap", str(tmp_path / "cka.png")]) == 0
    assert (tmp_path / "cka.png").stat().st_size > 0 and len((tmp_path / "cka.csv").read_text().splitlines()) == 4
    # the domain table embeds as the same sentences (one layout for every stage)
    argv[argv.index(clusters)], argv[argv.index(store)] = str(tmp_path / "a" / "domains.tsv"), str(tmp_path / "t.h5")
    assert main(argv) == 0
    from biostrata.data.embedding_store import EmbeddingStore

    with EmbeddingStore(store) as a, EmbeddingStore(tmp_path / "t.h5") as b:
        ids = sorted(a.ids)
        assert sorted(b.ids) == ids and np.array_equal(a.array(ids=ids), b.array(ids=ids))


@pytest.mark.shared_data("genomes", "pfam")
def test_the_strata_study_runs_on_an_annotation(
    shared_data, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    """annotate -> study strata --data: every domain instance (DNA, protein, family, cluster) comes from the
    annotation, the clans from the table annotate was given; no product classes: that probe alone is skipped,
    and the run says so (tiny widths, 1 epoch, CPU)."""
    from biostrata.data.clusters.corpus import read_clusters

    _needs_default_hmms()
    ann, run = tmp_path / "ann", tmp_path / "run"
    argv = ["annotate", *map(str, sorted((shared_data / "genomes").glob("*.gbk"))), "--out", str(ann), "--clans",
            "Pfam-A.clans.tsv", "--no-progress"]  # fmt: skip
    monkeypatch.chdir(shared_data / "pfam")  # --clans relative to where annotate runs
    assert main(argv) == 0
    monkeypatch.chdir(tmp_path)  # and the study runs elsewhere
    # the domain table is a corpus too (pretrain --corpus), the same clusters as clusters.csv
    corpus = [(c.id, c.domains) for c in read_clusters(ann / "clusters.csv")]
    assert [(c.id, c.domains) for c in read_clusters(ann / "domains.tsv")] == corpus and len(corpus) == 3
    tiny = ["--kmers", "2", "--dna-length", "48", "--cnn-epochs", "1", "--cnn-hidden", "8", "--protein-layers", "1",
            "--protein-dim", "8", "--protein-heads", "2", "--protein-epochs", "1", "--protein-max-length", "32",
            "--widths", "4", "--width", "4", "--domain-layers", "1", "--domain-seeds", "0", "--domain-epochs", "1",
            "--instances", "50", "--delta-samples", "20", "--delta-repeats", "1", "--folds", "2", "--probe-seeds", "0",
            "--clan-min-families", "2", "--clan-min-count", "2", "--umap-neighbors", "5", "--accelerator", "cpu",
            "--no-progress"]  # fmt: skip
    assert main(["study", "strata", "--data", str(ann), "--out", str(run), *tiny]) == 0
    out = capsys.readouterr().out
    assert "skipped product-class probe: no product classes (classes; an annotation has none)" in out, out
    skipped = dict(line.split(": ", 1) for line in out.splitlines() if line.startswith("skipped "))
    assert "skipped clan probe" not in skipped and set(skipped) <= {"skipped cnn", "skipped product-class probe"}
    settings = json.loads((run / "settings.json").read_text())
    assert (settings["domains"], settings["corpus"]) == (str(ann / "domains.tsv"), str(ann / "clusters.csv"))
    # annotate records the clans table's absolute path, so --data finds it from any folder
    assert settings["pfam"] == str((shared_data / "pfam" / "Pfam-A.clans.tsv").resolve()) and settings["classes"] == ""
    facts = json.loads((run / "facts.json").read_text())
    assert facts["instances"] == json.loads((ann / "annotation.json").read_text())["domains"] and facts["clusters"] == 3
    assert facts["clan_probe_clans"] >= 2
    probes = pd.read_csv(run / "probes.csv")
    assert probes["clan_auroc_macro"].notna().all() and not any(c.startswith("product_") for c in probes)
    assert "## Skipped" in (run / "strata.md").read_text()
