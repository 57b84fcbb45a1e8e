"""Tests of biostrata.data.annotate: Pfam domains with pyhmmer, overlaps, outputs."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from biostrata.data.annotate import DomainHit, annotate_files, default_hmm_path, resolve_overlaps, search_domains
from biostrata.data.clusters import read_clusters
from biostrata.data.genes import Gene, genes_of, read_records
from biostrata.data.pfam import PfamFamily, PfamTable
from biostrata.errors import DataNotFoundError, InputError

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "genomes").is_dir(), reason="real data folder ../shared/data is absent")
AA = "ACDEFGHIKLMNPQRSTVWY"


def _gecco_installed() -> bool:
    try:
        default_hmm_path()
    except DataNotFoundError:
        return False
    return True


def write_hmms(path: Path, motifs: dict[str, str], seed: int = 0) -> None:
    """Profile HMMs built from noisy copies of each motif, with GA cut-offs of 20 bits."""
    import pyhmmer
    from pyhmmer.easel import Alphabet, TextMSA, TextSequence
    from pyhmmer.plan7 import Background, Builder

    rng = random.Random(seed)
    amino = Alphabet.amino()
    with open(path, "wb") as handle:
        for k, (name, motif) in enumerate(motifs.items()):
            rows = ["".join(c if rng.random() > 0.1 else rng.choice(AA) for c in motif) for _ in range(12)]
            seqs = [TextSequence(name=f"s{i}", sequence=r) for i, r in enumerate(rows)]
            msa = TextMSA(name=name, sequences=seqs).digitize(amino)
            hmm, _, _ = Builder(amino).build_msa(msa, Background(amino))
            hmm.accession = f"PF{k + 1:05d}.1"
            hmm.cutoffs.gathering = (20.0, 20.0)
            hmm.write(handle)
    assert pyhmmer.__version__


@pytest.fixture
def motifs() -> dict[str, str]:
    rng = random.Random(1)
    return {name: "".join(rng.choice(AA) for _ in range(40)) for name in ("Alpha", "Beta")}


def protein(rng: random.Random, *parts: str, pad: int = 30) -> str:
    return "".join("".join(rng.choice(AA) for _ in range(pad)) + p for p in parts) + "".join(
        rng.choice(AA) for _ in range(pad)
    )


def test_domains_found_in_order_under_both_rules(tmp_path: Path, motifs: dict[str, str]) -> None:
    write_hmms(tmp_path / "t.hmm", motifs)
    rng = random.Random(2)
    genes = [Gene("r1", "g1", 0, 300, 1, protein(rng, motifs["Beta"], motifs["Alpha"])),
             Gene("r1", "g2", 400, 700, -1, protein(rng)),
             Gene("r1", "g3", 800, 900, 1, protein(rng, motifs["Alpha"]))]  # fmt: skip
    for cutoff in ("gathering", "evalue"):
        hits = search_domains(genes, tmp_path / "t.hmm", cutoff=cutoff, cpus=1)
        assert [(h.gene, h.name, h.family) for h in hits] == [(0, "Beta", "PF00002"), (0, "Alpha", "PF00001"),
                                                             (2, "Alpha", "PF00001")]  # fmt: skip
        first = hits[0]
        assert first.env_start <= 30 < 70 <= first.env_end and first.hmm_end <= 40 and first.accession == "PF00002.1"
    # a gzipped database reads the same
    import gzip

    (tmp_path / "t.hmm.gz").write_bytes(gzip.compress((tmp_path / "t.hmm").read_bytes()))
    assert search_domains(genes, tmp_path / "t.hmm.gz", cpus=1) == search_domains(genes, tmp_path / "t.hmm", cpus=1)
    # E-values scale with the database size Z (hmmscan's convention: P-value x Z)
    small = search_domains(genes, tmp_path / "t.hmm", cutoff="evalue", Z=2, cpus=1)
    large = search_domains(genes, tmp_path / "t.hmm", cutoff="evalue", Z=20_000, cpus=1)
    assert large[0].i_evalue == pytest.approx(small[0].i_evalue * 10_000, rel=1e-6)


def test_overlaps_best_clan_keep() -> None:
    def hit(gene, family, start, end, score):
        return DomainHit(gene, family + ".1", family, family, start, end, start, end, 0, 10, score, 1e-5)

    hits = [hit(0, "PF00001", 0, 50, 30.0), hit(0, "PF00002", 40, 90, 20.0), hit(0, "PF00003", 45, 80, 25.0),
            hit(1, "PF00002", 40, 90, 20.0)]  # fmt: skip
    assert [(h.gene, h.family) for h in resolve_overlaps(hits, "best")] == [(0, "PF00001"), (1, "PF00002")]
    assert len(resolve_overlaps(hits, "keep")) == 4
    rows = [("PF00001", "CL0001", "c", "A", ""), ("PF00003", "CL0001", "c", "C", ""), ("PF00002", "", "", "B", "")]
    pfam = PfamTable([PfamFamily(*row) for row in rows])
    # only families of one clan compete: PF00003 loses to PF00001, PF00002 (no clan) stays
    kept = resolve_overlaps(hits, "clan", pfam)
    assert [(h.gene, h.family) for h in kept] == [(0, "PF00001"), (0, "PF00002"), (1, "PF00002")]


def test_bad_databases_and_arguments(tmp_path: Path, motifs: dict[str, str]) -> None:
    genes = [Gene("r", "g", 0, 3, 1, "MKV")]
    (tmp_path / "x.hmm").write_text("not an HMM\n")
    with pytest.raises(InputError, match=r"x.hmm: not a HMMER3 profile file"):
        search_domains(genes, tmp_path / "x.hmm")
    write_hmms(tmp_path / "t.hmm", motifs)
    with pytest.raises(InputError, match="cutoff='strict'"):
        search_domains(genes, tmp_path / "t.hmm", cutoff="strict")
    with pytest.raises(InputError, match="needs the Pfam clans table"):
        search_domains(genes, tmp_path / "t.hmm", overlaps="clan")


def test_annotate_files_writes_every_output(tmp_path: Path, motifs: dict[str, str]) -> None:
    from biostrata.config import AnnotateSettings

    write_hmms(tmp_path / "t.hmm", motifs)
    rng = random.Random(3)
    (tmp_path / "p.faa").write_text(f">a\n{protein(rng, motifs['Alpha'])}\n>b\n{protein(rng)}\n")
    record = annotate_files([tmp_path / "p.faa"], tmp_path / "out", AnnotateSettings(hmm=str(tmp_path / "t.hmm"),
                            progress=False, cpus=1))  # fmt: skip
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["annotation.json", "clusters.csv", "domains.tsv", "proteins.faa"]
    rows = list(csv.DictReader(open(out / "domains.tsv"), delimiter="\t"))
    assert [(r["protein_id"], r["pfam_id"], r["pfam"], r["name"]) for r in rows] == [
        ("a", "PF00001.1", "PF00001", "Alpha")
    ]
    saved = json.loads((out / "annotation.json").read_text())
    assert saved == record and saved["database"]["hmms"] == 2 and len(saved["database"]["sha256"]) == 64
    assert saved["proteins"] == 2 and saved["domains"] == 1 and saved["settings"]["cutoff"] == "gathering"
    corpus = read_clusters(out / "clusters.csv")  # the domain LM's corpus reader takes it as it is
    assert [(c.id, c.domains) for c in corpus] == [("a", ("PF00001",))]


@needs_data
def test_pf00005_under_deepbgc_rule_gives_the_expected_two_hits() -> None:
    genes = genes_of(read_records(DATA / "genomes" / "BGC0000015.gbk"))
    hits = search_domains(
        genes, DATA / "pfam" / "Pfam-A.PF00005.hmm", cutoff="evalue", Z=16712, overlaps="keep", cpus=1
    )
    expected = [(r["protein_id"], int(r["domain_start"]), int(r["domain_end"]))
                for r in csv.DictReader(open(DATA / "genomes" / "BGC0000015.pfam.csv")) if r["pfam_id"] == "PF00005"]  # fmt: skip
    assert [(genes[h.gene].id, h.hmm_start, h.hmm_end) for h in hits] == expected == [
        ("AAK73498.1", 1, 137), ("AAK73499.1", 0, 135)]  # fmt: skip
    minipfam = DATA / "pfam" / "minipfam.hmm"
    assert search_domains(genes, minipfam, cpus=1) == search_domains(genes, minipfam, cutoff="evalue", cpus=1) == []


@needs_data
@pytest.mark.skipif(not _gecco_installed(), reason="the gecco package (default Pfam HMMs) is not installed")
def test_default_database_against_deepbgc_annotation() -> None:
    """DeepBGC's rule with Pfam 31's Z on the families the subset holds: precision and recall >= 0.95,
    and the hits in the same gene order."""
    from biostrata.data.annotate import _read_hmms

    genes = genes_of(read_records(DATA / "genomes" / "BGC0000015.gbk"))
    families = {str(h.accession).split(".")[0] for h in _read_hmms(default_hmm_path())}
    rows = [r for r in csv.DictReader(open(DATA / "genomes" / "BGC0000015.pfam.csv")) if r["pfam_id"] in families]
    expected = {(r["protein_id"], r["pfam_id"]) for r in rows}
    hits = search_domains(genes, cutoff="evalue", Z=16712, overlaps="keep", cpus=2)
    found = {(genes[h.gene].id, h.family) for h in hits}
    shared = found & expected
    assert len(shared) / len(found) >= 0.95 and len(shared) / len(expected) >= 0.95
    order = [r["protein_id"] for r in rows]
    assert [p for p in dict.fromkeys(genes[h.gene].id for h in hits)] == [p for p in dict.fromkeys(order)]
