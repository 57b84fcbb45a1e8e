"""Tests of biostrata.data.clusters.corpus: BGC readers, classes, vocabulary (fixture ``pfam``: conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biostrata.data.clusters.corpus import Cluster, DomainVocabulary, class_matrix, read_classes, read_clusters
from biostrata.data.clusters.pfam import PfamTable
from biostrata.errors import InputError


def test_domain_list_genes_and_issues(tmp_path: Path, pfam: PfamTable) -> None:
    path = tmp_path / "list.txt"
    path.write_text(
        "BGC1 Polyketide ketoacyl-synt Ketoacyl-synt_C [SEP] PP-binding [SEP] [SEP] ABC_tran\n"
        "\n"
        "BGC2 NRP ABC_tran Mystery_dom\n"
        "BGC3 NRP\n"
        "BGC1 NRP ABC_tran\n"
        "lonely\n"
    )
    with pytest.warns(UserWarning, match="unknown-domain"):
        corpus = read_clusters(path, pfam)
    assert corpus.ids == ["BGC1", "BGC2"]
    first = corpus[0]
    assert first.domains == ("PF00109", "PF02801", "PF00550", "PF00005")
    assert first.genes == (0, 0, 1, 2)  # the protein without domains leaves no gap
    assert first.label == "Polyketide" and first.where.endswith("list.txt:1")
    assert corpus[1].domains == ("PF00005", "Mystery_dom")
    kinds = {(i.kind, i.where.rsplit(":", 1)[1]) for i in corpus.issues}
    assert kinds == {("unknown-domain", "3"), ("empty-cluster", "4"), ("duplicate-id", "5"), ("malformed", "6")}
    with pytest.raises(InputError, match=r"list\.txt:3: unknown-domain: 'Mystery_dom'"):
        read_clusters(path, pfam, strict=True)


def test_three_formats_agree(tmp_path: Path, pfam: PfamTable) -> None:
    (tmp_path / "a.txt").write_text("B1 NRP ABC_tran [SEP] PP-binding ketoacyl-synt\nB2 RiPP PP-binding\n")
    (tmp_path / "b.csv").write_text(
        "cluster_id,label,domain_tokens,tokens\nB1,NRP,PF00005 PF00550 PF00109,\"['x']\"\nB2,RiPP,PF00550,[]\n"
    )
    (tmp_path / "c.csv").write_text(
        "bgc_id,domains,function,split\nB1,ABC_tran;PF00550.27;ketoacyl-synt,NRP,train\nB2,PP-binding,RiPP,valid\n"
    )
    corpora = [read_clusters(tmp_path / n, pfam) for n in ("a.txt", "b.csv", "c.csv")]
    for corpus in corpora:
        assert corpus.ids == ["B1", "B2"]
        assert corpus[0].domains == ("PF00005", "PF00550", "PF00109")
        assert [c.label for c in corpus] == ["NRP", "RiPP"]
        assert not corpus.issues
    assert corpora[0][0].genes == (0, 1, 1) and corpora[1][0].genes is None
    assert [c.split for c in corpora[2]] == ["train", "valid"]


def test_a_domain_table_is_a_corpus_in_either_layout(tmp_path: Path, pfam: PfamTable) -> None:
    """annotate's domains.tsv and the MIBiG layout give the clusters their clusters.csv would (by header)."""
    (tmp_path / "mibig.tsv").write_text(
        "bgc_id\tpfam_id\tgene_id\tprotein_accession\tdna_start\tdna_end\tprotein_sequence\n"
        "B1\tPF00550\tg2\tA\t1\t9\tMKV\nB1\tPF00005.3\tg1\tA\t1\t9\tMKV\nB2\tPF00109\tg1\tB\t1\t9\tWW\n"
    )
    (tmp_path / "domains.tsv").write_text(
        "record\tprotein_id\tgene_start\tgene_end\tpfam_id\tdna_start\tdna_end\tprotein_sequence\n"
        "B1\tg2\t0\t90\tPF00005.3\t0\t9\tMKV\nB1\tg1\t100\t190\tPF00550.1\t0\t9\tMKV\n"
        "B2\tx\t0\t90\tPF00109.2\t0\t9\tWW\n"
    )
    for name in ("mibig.tsv", "domains.tsv"):
        corpus = read_clusters(tmp_path / name, pfam)
        assert [(c.id, c.domains) for c in corpus] == [("B1", ("PF00005", "PF00550")), ("B2", ("PF00109",))]
        assert read_clusters(tmp_path / name, pfam, fmt="domain-table").ids == corpus.ids


def test_csv_errors_name_file_and_line(tmp_path: Path, pfam: PfamTable) -> None:
    path = tmp_path / "b.csv"
    path.write_text("cluster_id,label,domain_tokens\nB1,NRP,PF00005\nB2,NRP\nB3,NRP,\n")
    with pytest.warns(UserWarning, match="malformed"):
        corpus = read_clusters(path, pfam, fmt="pfamid")
    assert [(i.kind, i.where) for i in corpus.issues] == [("malformed", f"{path}:3"), ("empty-cluster", f"{path}:4")]
    nohead = tmp_path / "n.csv"
    nohead.write_text("cluster_id,label\nB1,NRP\n")
    with pytest.raises(InputError, match="missing column"):
        read_clusters(nohead, fmt="pfamid")
    with pytest.raises(InputError, match="fmt='xml'"):
        read_clusters(path, fmt="xml")


def test_without_pfam_table_tokens_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("domains\nPF00005.3;Foo\n")
    corpus = read_clusters(path)
    assert corpus[0].domains == ("PF00005", "Foo")
    assert corpus[0].id == "c:2"


def test_classes_multi_and_single(tmp_path: Path, pfam: PfamTable) -> None:
    (tmp_path / "a.txt").write_text("B1 NRP ABC_tran\nB2 RiPP PP-binding\n")
    corpus = read_clusters(tmp_path / "a.txt", pfam)
    y, names = class_matrix(corpus)
    assert names == ["NRP", "RiPP"] and y.tolist() == [[1, 0], [0, 1]]
    table_path = tmp_path / "classes.csv"
    table_path.write_text("sequence_id,NRP,Polyketide,RiPP\nB2,0,0,1\nB1,1,1,0\nB9,0,1,0\n")
    table = read_classes(table_path)
    y, names = class_matrix(corpus, table)
    assert names == ["NRP", "Polyketide", "RiPP"]
    np.testing.assert_array_equal(y, [[1, 1, 0], [0, 0, 1]])
    table_path.write_text("sequence_id,NRP\nB1,1\nB2,2\n")
    with pytest.raises(InputError, match=r"classes\.csv:3: column 'NRP'"):
        read_classes(table_path)
    table_path.write_text("sequence_id,NRP\nB1,1\n")
    with pytest.raises(InputError, match="no row in the class table"):
        class_matrix(corpus, read_classes(table_path))


def test_vocabulary_layout_and_encoding() -> None:
    c = Cluster("B1", ("PF2", "PF1", "PF9", "PF2"), (0, 0, 1, 2), "NRP")
    vocab = DomainVocabulary(["PF1", "PF2"], classes=["NRP", "RiPP"], gene_separator=True)
    assert vocab.tokens == ["-", "*", "#", "NRP", "RiPP", "[SEP]", "UNK", "PF1", "PF2"]
    assert (vocab.pad_idx, vocab.mask_idx, vocab.unk_idx, vocab.sep_idx) == (0, 2, 6, 5)
    assert vocab.domain_slice == slice(7, 9)
    assert vocab.encode(c).tolist() == [8, 7, 6, 8]
    assert vocab.decode(vocab.encode(c, class_token=True, separators=True)) == [
        "NRP",
        "PF2",
        "PF1",
        "[SEP]",
        "UNK",
        "[SEP]",
        "PF2",
    ]
    with pytest.raises(InputError, match="gene_separator=True"):
        DomainVocabulary(["PF1"]).encode(c, separators=True)
    with pytest.raises(InputError, match="class 'NRP' has no token"):
        DomainVocabulary(["PF1"]).encode(c, class_token=True)
    with pytest.raises(InputError, match="clash"):
        DomainVocabulary(["UNK"])


def test_vocabulary_sequence_models_round_trip(pfam: PfamTable) -> None:
    vocab = DomainVocabulary(["PF00550", "PF00005", "PF77777"], classes=["NRP"])
    tokens, pfam_to_domain = vocab.to_sequence_models(pfam)
    assert tokens["specials"] == {"-": 0, "*": 1, "#": 2, "NRP": 3}
    assert tokens["domains"] == {"UNK": 4, "PP-binding": 5, "ABC_tran": 6, "PF77777": 7}
    assert pfam_to_domain["PF00005"] == "ABC_tran" and tokens["size"] == 8
    back = DomainVocabulary.from_sequence_models(tokens, pfam_to_domain)
    assert back.tokens == vocab.tokens
    # versioned accessions in pfam_to_domain are accepted
    versioned = {f"{k}.1": v for k, v in pfam_to_domain.items()}
    assert DomainVocabulary.from_sequence_models(tokens, versioned).tokens == vocab.tokens
    # names without pfam_to_domain entries map through the Pfam table
    by_name = DomainVocabulary.from_sequence_models(tokens, {"PF77777": "PF77777"}, pfam)
    assert by_name.tokens == vocab.tokens
    assert DomainVocabulary.from_sequence_models(tokens).domains == ["PP-binding", "ABC_tran", "PF77777"]
    shuffled = dict(tokens, specials={"*": 0, "-": 1, "#": 2, "NRP": 3})
    with pytest.raises(InputError, match="must start with"):
        DomainVocabulary.from_sequence_models(shuffled, pfam_to_domain)
    gap = dict(tokens, domains={"UNK": 4, "PP-binding": 6, "ABC_tran": 7, "PF77777": 8}, size=9)
    with pytest.raises(InputError, match="layout"):
        DomainVocabulary.from_sequence_models(gap, pfam_to_domain)


@pytest.mark.shared_data("bgc", "pfam")
def test_real_mibig_corpus(shared_data) -> None:
    pfam = PfamTable.read(shared_data / "pfam" / "Pfam-A.clans.tsv")
    names = read_clusters(shared_data / "bgc" / "mibig_domain_list.txt", pfam, strict=True)
    accs = read_clusters(shared_data / "bgc" / "mibig_pfamid.csv", pfam, strict=True)
    assert len(names) == len(accs) == 2492
    assert all(a.domains == b.domains for a, b in zip(names, accs))
    first = names[0]
    assert first.id == "BGC0000001" and first.label == "Polyketide"
    assert first.domains[:3] == ("PF01135", "PF03704", "PF00067")  # PCMT, BTAD, p450
    assert first.genes is not None and first.genes[:3] == (0, 1, 2)
    vocab = DomainVocabulary.from_corpus(names, class_tokens=True)
    assert len(vocab) == 3 + 7 + 1 + 3157
    classes = read_classes(shared_data / "bgc" / "mibig3_classes.csv")
    y, cls = class_matrix(names, classes)
    assert cls == ["Alkaloid", "NRP", "Other", "Polyketide", "RiPP", "Saccharide", "Terpene"]
    assert y.shape == (2492, 7) and y.sum(1).min() >= 1


def test_a_corpus_without_clusters_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(InputError, match=r"blank\.txt: no clusters read as a domain list"):
        read_clusters(tmp_path / "blank.txt")
    (tmp_path / "only_bad.txt").write_text("B1\nB2 NRP\n")
    with pytest.raises(InputError, match=r"only_bad\.txt: no clusters .*malformed.*empty-cluster"):
        read_clusters(tmp_path / "only_bad.txt")
    (tmp_path / "header.csv").write_text("cluster_id,label,domain_tokens\n")
    with pytest.raises(InputError, match=r"header\.csv: no clusters read as a Pfam-accession CSV"):
        read_clusters(tmp_path / "header.csv")


def test_accession_csv_with_protein_separators(tmp_path) -> None:
    """``biostrata annotate --separators`` writes [SEP] between proteins: they become gene indices."""
    from biostrata.data.clusters.corpus import read_pfamid_csv

    path = tmp_path / "clusters.csv"
    path.write_text("cluster_id,label,domain_tokens\nc1,,PF00001 PF00002 [SEP] PF00003\nc2,NRP,PF00004\n")
    c1, c2 = read_pfamid_csv(path)
    assert (c1.domains, c1.genes, c1.label) == (("PF00001", "PF00002", "PF00003"), (0, 0, 1), None)
    assert (c2.domains, c2.genes, c2.label) == (("PF00004",), None, "NRP")
