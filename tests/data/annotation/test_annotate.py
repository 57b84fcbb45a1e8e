"""Tests of biostrata.data.annotation.annotate: Pfam domains with pyhmmer, overlaps, outputs."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest

from biostrata.data.annotation.annotate import (
    DomainHit,
    annotate_files,
    cluster_rows,
    default_hmm_path,
    read_hmms,
    resolve_overlaps,
    search_domains,
)
from biostrata.data.annotation.genes import Gene, genes_of, read_records
from biostrata.data.clusters.corpus import read_clusters
from biostrata.data.clusters.pfam import PfamFamily, PfamTable
from biostrata.data.clusters.proteins import read_fasta
from biostrata.errors import DataNotFoundError, InputError

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
    # a gzipped database reads the same, and HMMs already read are taken as they are
    import gzip

    (tmp_path / "t.hmm.gz").write_bytes(gzip.compress((tmp_path / "t.hmm").read_bytes()))
    assert search_domains(genes, tmp_path / "t.hmm.gz", cpus=1) == search_domains(genes, tmp_path / "t.hmm", cpus=1)
    assert search_domains(genes, read_hmms(tmp_path / "t.hmm"), cpus=1) == search_domains(genes, tmp_path / "t.hmm")
    # E-values scale with the database size Z (hmmscan's convention: P-value x Z)
    small = search_domains(genes, tmp_path / "t.hmm", cutoff="evalue", Z=2, cpus=1)
    large = search_domains(genes, tmp_path / "t.hmm", cutoff="evalue", Z=20_000, cpus=1)
    assert large[0].i_evalue == pytest.approx(small[0].i_evalue * 10_000, rel=1e-6)


def test_an_i_evalue_does_not_depend_on_the_other_proteins(tmp_path: Path, motifs: dict[str, str]) -> None:
    """E-values use Z = the number of HMMs under both rules, never hmmsearch's default (the number of
    proteins searched): more unrelated proteins leave every hit and its i-Evalue as they were."""
    write_hmms(tmp_path / "t.hmm", motifs)
    rng = random.Random(4)
    mine = [Gene("r1", "g1", 0, 300, 1, protein(rng, motifs["Alpha"])), Gene("r1", "g2", 400, 700, 1, protein(rng))]
    others = [Gene("r2", f"o{i}", 0, 300, 1, protein(rng, pad=50)) for i in range(200)]
    for cutoff in ("gathering", "evalue"):
        alone = search_domains(mine, tmp_path / "t.hmm", cutoff=cutoff, cpus=1)
        crowd = [h for h in search_domains(mine + others, tmp_path / "t.hmm", cutoff=cutoff, cpus=1) if h.gene < 2]
        assert [h.family for h in alone] == ["PF00001"] and alone == crowd, cutoff
        assert alone[0].i_evalue == search_domains(mine, tmp_path / "t.hmm", cutoff=cutoff, Z=2, cpus=1)[0].i_evalue


def test_hmms_are_read_once_and_a_gzip_file_is_closed(tmp_path: Path, motifs: dict[str, str], monkeypatch) -> None:
    import gzip

    write_hmms(tmp_path / "t.hmm", motifs)
    (tmp_path / "t.hmm.gz").write_bytes(gzip.compress((tmp_path / "t.hmm").read_bytes()))
    opened = []
    real_open = gzip.open
    monkeypatch.setattr(gzip, "open", lambda *a, **k: opened.append(real_open(*a, **k)) or opened[-1])
    assert [h.name for h in read_hmms(tmp_path / "t.hmm.gz")] == [h.name for h in read_hmms(tmp_path / "t.hmm")]
    assert len(opened) == 1 and opened[0].closed
    with pytest.raises(DataNotFoundError, match=r"nope.hmm: no such file"):
        read_hmms(tmp_path / "nope.hmm")


def test_cluster_rows_keep_file_order_for_genes_without_coordinates() -> None:
    genes = [Gene("c", f"p{i}", 0, 0, 0, "MKV") for i in range(3)]  # a protein FASTA: start = end = 0

    def hit(gene, family):
        return DomainHit(gene, family + ".1", family, family, 0, 10, 0, 10, 0, 10, 30.0, 1e-9)

    rows = cluster_rows(["c"], genes, [hit(2, "PF00003"), hit(0, "PF00001"), hit(1, "PF00002")], separators=True)
    assert [r["domain_tokens"] for r in rows] == ["PF00001 [SEP] PF00002 [SEP] PF00003"]


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
    (tmp_path / "p.faa").write_text(f">b\n{protein(rng, motifs['Beta'])}\n>c\n{protein(rng)}\n>a\n"
                                    f"{protein(rng, motifs['Alpha'])}\n")  # fmt: skip
    settings = AnnotateSettings(hmm=str(tmp_path / "t.hmm"), progress=False, cpus=1)
    record = annotate_files([tmp_path / "p.faa"], tmp_path / "out", settings)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["annotation.json", "clusters.csv", "domains.tsv", "proteins.faa"]
    rows = list(csv.DictReader(open(out / "domains.tsv"), delimiter="\t"))
    assert [(r["record"], r["protein_id"], r["pfam_id"], r["pfam"], r["name"]) for r in rows] == [
        ("p", "b", "PF00002.1", "PF00002", "Beta"), ("p", "a", "PF00001.1", "PF00001", "Alpha")
    ]  # fmt: skip
    saved = json.loads((out / "annotation.json").read_text())
    assert saved == record and saved["database"]["hmms"] == 2 and len(saved["database"]["sha256"]) == 64
    assert saved["proteins"] == 3 and saved["domains"] == 2 and saved["settings"]["cutoff"] == "gathering"
    assert saved["Z"] == 2 and saved["records"] == 1  # Z under the gathering rule too; the FASTA is one cluster
    corpus = read_clusters(out / "clusters.csv")  # the domain LM's corpus reader takes it as it is
    assert [(c.id, c.domains) for c in corpus] == [("p", ("PF00002", "PF00001"))]  # one cluster, in file order


def test_the_front_door_gives_the_files_in_memory(tmp_path: Path, motifs: dict[str, str]) -> None:
    """biostrata.annotate returns the tables that annotate_files writes, and writes the same files."""
    import biostrata
    from biostrata.config import AnnotateSettings

    write_hmms(tmp_path / "t.hmm", motifs)
    rng = random.Random(3)
    sequences = {"b": protein(rng, motifs["Beta"]), "c": protein(rng), "a": protein(rng, motifs["Alpha"])}
    (tmp_path / "p.faa").write_text("".join(f">{k}\n{v}\n" for k, v in sequences.items()))
    found = biostrata.annotate(tmp_path / "p.faa", hmm=str(tmp_path / "t.hmm"), progress=False, cpus=1,
                               out=tmp_path / "mem")  # fmt: skip
    assert found.clusters["domain_tokens"].tolist() == ["PF00002 PF00001"]
    assert found.domains["protein_id"].tolist() == ["b", "a"] and found.domains["pfam"].tolist() == [
        "PF00002",
        "PF00001",
    ]
    assert dict(zip(found.proteins["protein_id"], found.proteins["sequence"])) == sequences
    settings = AnnotateSettings(hmm=str(tmp_path / "t.hmm"), progress=False, cpus=1)
    record = annotate_files([tmp_path / "p.faa"], tmp_path / "files", settings)
    for name in ("domains.tsv", "clusters.csv", "proteins.faa", "annotation.json"):
        assert (tmp_path / "mem" / name).read_text() == (tmp_path / "files" / name).read_text(), name
    assert found.record == record
    with pytest.raises(InputError, match="unknown key"):
        biostrata.annotate(tmp_path / "p.faa", cutof="evalue")


def test_annotation_json_is_written_last(tmp_path: Path, motifs: dict[str, str], monkeypatch) -> None:
    """A run that fails while writing leaves no annotation.json, even where an earlier run left one."""
    import biostrata.io
    from biostrata.config import AnnotateSettings

    write_hmms(tmp_path / "t.hmm", motifs)
    (tmp_path / "p.faa").write_text(f">a\n{protein(random.Random(3), motifs['Alpha'])}\n")
    settings = AnnotateSettings(hmm=str(tmp_path / "t.hmm"), progress=False, cpus=1)
    annotate_files([tmp_path / "p.faa"], tmp_path / "out", settings)
    real = biostrata.io.atomic_write_text

    def failing(path, text):
        if Path(path).name == "clusters.csv":
            raise OSError("disk full")
        real(path, text)

    monkeypatch.setattr(biostrata.io, "atomic_write_text", failing)
    with pytest.raises(OSError, match="disk full"):
        annotate_files([tmp_path / "p.faa"], tmp_path / "out", settings)
    assert not (tmp_path / "out" / "annotation.json").exists() and (tmp_path / "out" / "domains.tsv").exists()


def test_the_database_is_checked_before_genes(tmp_path: Path, motifs: dict[str, str], monkeypatch) -> None:
    import biostrata.data.annotation.genes
    from biostrata.config import AnnotateSettings

    def no_genes(*args, **kwargs):
        raise AssertionError("genes_of ran before the database was checked")

    monkeypatch.setattr(biostrata.data.annotation.genes, "genes_of", no_genes)
    (tmp_path / "n.fna").write_text(">c1\nACGTACGTAC\n")
    (tmp_path / "x.hmm").write_text("not an HMM\n")
    with pytest.raises(InputError, match=r"x.hmm: not a HMMER3 profile file"):
        annotate_files([tmp_path / "n.fna"], tmp_path / "o", AnnotateSettings(hmm=str(tmp_path / "x.hmm")))
    write_hmms(tmp_path / "t.hmm", motifs)
    no_ga = (tmp_path / "t.hmm").read_text().replace("GA    20.00 20.00\n", "")
    (tmp_path / "noga.hmm").write_text(no_ga)
    with pytest.raises(InputError, match=r"noga.hmm: 2 HMMs \(e.g. Alpha\) have no GA cut-offs"):
        annotate_files([tmp_path / "n.fna"], tmp_path / "o", AnnotateSettings(hmm=str(tmp_path / "noga.hmm")))
    with pytest.raises(DataNotFoundError):
        clans = str(tmp_path / "missing.tsv")
        annotate_files([tmp_path / "n.fna"], tmp_path / "o", AnnotateSettings(hmm=str(tmp_path / "t.hmm"), clans=clans))
    assert not (tmp_path / "o").exists()


def test_domain_rows_give_each_domain_its_dna_and_protein() -> None:
    """The envelope on the protein and its codons on the gene's coding sequence; the frame is checked by
    translating the gene (a /translation that differs: mismatch; no DNA: no evidence)."""
    from biostrata.data.annotation.annotate import domain_rows

    genes = [Gene("r", "g", 10, 25, -1, "MKVWL", "ATGAAAGTGTGGCTGTAA"), Gene("r", "h", 30, 45, 1, "MKVWL", "ATGAAATAA"),
             Gene("p", "q", 0, 0, 0, "MKVWL")]  # fmt: skip
    hits = [DomainHit(k, "PF00001.2", "PF00001", "A", 1, 4, 1, 4, 0, 3, 30.0, 1e-5) for k in range(3)]
    rows = domain_rows(genes, hits)
    assert [(r["dna_start"], r["dna_end"], r["dna_sequence"], r["protein_sequence"], r["frame_evidence"]) for r in rows] == [
        (3, 12, "AAAGTGTGG", "KVW", "hmm"), (3, 12, "AAATAA", "KVW", "mismatch"), (3, 12, "", "KVW", "")]  # fmt: skip


def test_frame_evidence_reads_each_gene_with_its_translation_table(tmp_path: Path) -> None:
    """A GenBank CDS is checked under its own /transl_table: table 1 (another start codon set) translates as
    the DNA says; a /translation under table 4 (TGA is Trp there) cannot be checked by biostrata and is
    ``unchecked``, not ``mismatch`` (before, every gene was translated with table 11)."""
    from biostrata.data.annotation.annotate import domain_rows
    from biostrata.data.annotation.genes import read_records

    dna = "ATGAAATGGTGAGCTTAA"  # M K W (TGA: stop in tables 1 and 11, W in table 4) A stop
    body = dna + "C" * 12 + dna + "C" * 12
    features = (
        '     CDS             1..18\n                     /locus_tag="t1"\n                     /transl_table=1\n'
        '     CDS             31..48\n                     /locus_tag="t4"\n                     /transl_table=4\n'
        '                     /translation="MKWWA"\n'
    )
    origin = "\n".join(f"{i + 1:>9} {body[i : i + 60].lower()}" for i in range(0, len(body), 60))
    (tmp_path / "t.gbk").write_text(
        f"LOCUS       rec1 {len(body)} bp    DNA     linear   BCT 01-JAN-2020\nFEATURES             Location/Qualifiers\n"
        f"{features}ORIGIN\n{origin}\n//\n"
    )
    genes = list(read_records(tmp_path / "t.gbk")[0].cds)
    assert [(g.id, g.protein, g.table) for g in genes] == [("t1", "MKW", 1), ("t4", "MKWWA", 4)]
    hits = [DomainHit(k, "PF00001.2", "PF00001", "A", 0, 2, 0, 2, 0, 2, 30.0, 1e-5) for k in range(2)]
    assert [r["frame_evidence"] for r in domain_rows(genes, hits)] == ["hmm", "unchecked"]
    table11 = [Gene("r", "g", 0, 18, 1, "MKW", dna), Gene("r", "h", 0, 18, 1, "MKWWA", dna)]
    assert [r["frame_evidence"] for r in domain_rows(table11, hits)] == ["hmm", "mismatch"]


@pytest.mark.shared_data("genomes", "pfam")
def test_a_genbank_annotation_holds_each_domain_dna_in_gene_orientation(shared_data, tmp_path: Path) -> None:
    """The real record: both PF00005 hits (genes on the minus strand) with DNA that translates to their segment."""
    from biostrata.config import AnnotateSettings
    from biostrata.data.annotation.genes import translate

    settings = AnnotateSettings(hmm=str(shared_data / "pfam" / "Pfam-A.PF00005.hmm"), cutoff="evalue", Z=16712, cpus=1,
                                progress=False)  # fmt: skip
    annotate_files([shared_data / "genomes" / "BGC0000015.gbk"], tmp_path, settings)
    rows = list(csv.DictReader(open(tmp_path / "domains.tsv"), delimiter="\t"))
    proteins = {r.id: r.sequence for r in read_fasta(tmp_path / "proteins.faa")}
    assert [(r["protein_id"], r["gene_strand"]) for r in rows] == [("AAK73498.1", "-1"), ("AAK73499.1", "-1")]
    for r in rows:
        start, end = int(r["env_start"]), int(r["env_end"])
        inside = translate("GCT" + r["dna_sequence"])[1:]  # a codon before: the first one is not read as a start
        assert r["protein_sequence"] == proteins[r["protein_id"]][start:end] == inside
        assert (int(r["dna_start"]), int(r["dna_end"])) == (3 * start, 3 * end) and r["frame_evidence"] == "hmm"


@pytest.mark.shared_data("genomes", "pfam")
def test_pf00005_under_deepbgc_rule_gives_the_expected_two_hits(shared_data) -> None:
    genes = genes_of(read_records(shared_data / "genomes" / "BGC0000015.gbk"))
    hits = search_domains(
        genes, shared_data / "pfam" / "Pfam-A.PF00005.hmm", cutoff="evalue", Z=16712, overlaps="keep", cpus=1
    )
    expected = [(r["protein_id"], int(r["domain_start"]), int(r["domain_end"]))
                for r in csv.DictReader(open(shared_data / "genomes" / "BGC0000015.pfam.csv")) if r["pfam_id"] == "PF00005"]  # fmt: skip
    assert [(genes[h.gene].id, h.hmm_start, h.hmm_end) for h in hits] == expected == [
        ("AAK73498.1", 1, 137), ("AAK73499.1", 0, 135)]  # fmt: skip
    minipfam = shared_data / "pfam" / "minipfam.hmm"
    assert search_domains(genes, minipfam, cpus=1) == search_domains(genes, minipfam, cutoff="evalue", cpus=1) == []


@pytest.mark.shared_data("genomes", "pfam")
@pytest.mark.skipif(not _gecco_installed(), reason="the gecco package (default Pfam HMMs) is not installed")
def test_default_database_against_deepbgc_annotation(shared_data) -> None:
    """DeepBGC's rule with Pfam 31's Z on the families the subset holds: precision and recall >= 0.95,
    and the hits in the same gene order."""
    from biostrata.data.annotation.annotate import read_hmms

    genes = genes_of(read_records(shared_data / "genomes" / "BGC0000015.gbk"))
    families = {str(h.accession).split(".")[0] for h in read_hmms(default_hmm_path())}
    rows = [
        r for r in csv.DictReader(open(shared_data / "genomes" / "BGC0000015.pfam.csv")) if r["pfam_id"] in families
    ]
    expected = {(r["protein_id"], r["pfam_id"]) for r in rows}
    hits = search_domains(genes, cutoff="evalue", Z=16712, overlaps="keep", cpus=2)
    found = {(genes[h.gene].id, h.family) for h in hits}
    shared = found & expected
    assert len(shared) / len(found) >= 0.95 and len(shared) / len(expected) >= 0.95
    order = [r["protein_id"] for r in rows]
    assert [p for p in dict.fromkeys(genes[h.gene].id for h in hits)] == [p for p in dict.fromkeys(order)]


@pytest.mark.shared_data("genomes", "pfam")
@pytest.mark.skipif(not _gecco_installed(), reason="the gecco package (default Pfam HMMs) is not installed")
def test_the_deepbgc_comparison_in_the_docs_is_what_the_code_gives(shared_data) -> None:
    """docs/annotate.md: per rule, the rows domains.tsv gets, the (protein, family) pairs, those shared with
    DeepBGC, precision and recall (the docs once called pairs hits, where the table has rows)."""
    from biostrata.data.annotation.annotate import read_hmms

    text = (Path(__file__).resolve().parents[3] / "docs" / "annotate.md").read_text()
    documented = [
        [float(x) for x in re.findall(r"\| ([\d.]+)", line)]
        for line in text.splitlines()
        if line.startswith("| `--cutoff")
    ]
    genes = genes_of(read_records(shared_data / "genomes" / "BGC0000015.gbk"))
    families = {str(h.accession).split(".")[0] for h in read_hmms(default_hmm_path())}
    rows = [
        r for r in csv.DictReader(open(shared_data / "genomes" / "BGC0000015.pfam.csv")) if r["pfam_id"] in families
    ]
    expected = {(r["protein_id"], r["pfam_id"]) for r in rows}
    measured = []
    for rule in ({"cutoff": "evalue", "Z": 16712, "overlaps": "keep"}, {"overlaps": "keep"}, {}):
        hits = search_domains(genes, cpus=2, **rule)
        pairs = {(genes[h.gene].id, h.family) for h in hits}
        shared = len(pairs & expected)
        measured.append(
            [len(hits), len(pairs), shared, round(shared / len(pairs), 3), round(shared / len(expected), 3)]
        )
    assert documented == measured
