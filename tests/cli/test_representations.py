"""Bad input to the representation commands (pretrain, embed, cka, probe, study cross-granularity): each
case is a one-line ``biostrata: error:`` naming the file, line or option, with exit code 2, never a
traceback or a silent wrong number. The table below is the one in docs/reliability.md."""

from __future__ import annotations

import datetime
import json
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from biostrata.cli import main
from biostrata.data.clusters.corpus import DomainVocabulary
from biostrata.data.embedding_store import EmbeddingStore
from biostrata.models.domain_lm import DomainLM

AA = "ACDEFGHIKLMNPQRSTVWY"
PFAM = [f"PF{i:05d}" for i in range(1, 11)]
N = 40  # examples of the feature files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Small good and bad inputs, written once for every case."""
    from biostrata.models.protein_lm import small_protein_lm

    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(N)]
    y = np.arange(N) % 2
    x = rng.normal(size=(N, 6))
    x[:, 0] += 1.5 * y
    np.savez(root / "feats.npz", ids=np.array(ids), L0=x, L1=rng.normal(size=(N, 5)))
    np.save(root / "noid.npy", x)
    np.save(root / "short.npy", x[:-1])
    bad = x.copy()
    bad[3, 2], bad[5, 1] = np.nan, np.inf
    np.savez(root / "nan.npz", ids=np.array(ids), L0=bad)
    np.savez(root / "const.npz", ids=np.array(ids), L0=np.ones((N, 4)), L1=x)
    np.savez(root / "three.npz", ids=np.array(ids[2:5]), M=rng.normal(size=(3, 4)))
    np.savez(root / "one.npz", ids=np.array([ids[0], "other"]), M=rng.normal(size=(2, 4)))
    np.savez(root / "fewids.npz", ids=np.array(ids[:2]), M=x)
    (root / "empty.npy").write_bytes(b"")
    (root / "labels.csv").write_text("id,label\n" + "".join(f"{i},{'ab'[k]}\n" for i, k in zip(ids, y)))
    rare = ["c" if i < 2 else "ab"[i % 2] for i in range(N)]
    (root / "rare.csv").write_text("id,label\n" + "".join(f"{i},{c}\n" for i, c in zip(ids, rare)))
    grouped = ["c" if i < 8 else "ab"[i % 2] for i in range(N)]  # c: 8 examples in 2 groups
    (root / "grouped.csv").write_text(
        "id,label,group\n" + "".join(f"{i},{c},g{k // 4}\n" for k, (i, c) in enumerate(zip(ids, grouped)))
    )
    (root / "labels_empty.csv").write_text("")
    (root / "labels_header.csv").write_text("id,label\n")
    (root / "labels_other.csv").write_text("id,label\n" + "".join(f"x{i},{i % 2}\n" for i in range(N)))
    small_protein_lm(1, 16, 2).save_fair_esm(root / "plm.pt")
    (root / "text.pt").write_text("not a checkpoint\n")
    torch.save({"model": {}, "saved": datetime.date(2024, 1, 1)}, root / "pickle.pt")  # needs full unpickling
    r = random.Random(0)
    (root / "p.fa").write_text("".join(f">p{i}\n{''.join(r.choices(AA, k=20))}\n" for i in range(6)))
    (root / "one.fa").write_text(">p\nACDEFGHIK\n")
    (root / "dup.fa").write_text(">a\nACDE\n>a\nACDF\n")
    (root / "empty.fa").write_text("")
    (root / "empty_corpus.txt").write_text("\n\n")
    for name in ("binary.txt", "binary.fa", "binary.tsv"):
        (root / name).write_bytes(bytes(range(256)) * 4)
    (root / "tiny.txt").write_text("B1 NRP PF00001 PF00002\n")
    (root / "empties.csv").write_text("cluster_id,label,domain_tokens\nB1,NRP,PF00001 PF00002\nB2,NRP,\nB3,PKS,\n")
    (root / "clans.tsv").write_text("PF99999\t\t\tOther\tnot a family of the corpora\n")
    (root / "clusters.txt").write_text("".join(f"B{i} NRP {' '.join(r.choices(PFAM, k=3 + i))}\n" for i in range(5)))
    torch.manual_seed(0)
    DomainLM(DomainVocabulary(PFAM), d_embed=8, d_model=8, n_layers=2, kernel_size=3, r=2).save_sequence_models(
        root / "dlm.pt"
    )
    return {
        "root": str(root),
        **{p.stem.replace(".", "_") + p.suffix.replace(".", "_"): str(p) for p in root.iterdir()},
    }


PRETRAIN = ["pretrain", "--preset", "small", "--accelerator", "cpu", "--no-progress", "--out", "{root}/pt"]
EMBED = ["embed", "--input", "{p_fa}", "--out", "{root}/e.h5", "--no-progress"]
PROBE = ["probe", "--labels", "{labels_csv}", "--label-column", "label", "--folds", "2", "--seeds", "0"]
PROBE += ["--bootstrap", "10"]

# (case, argv, regex matched by the last line of stderr after "biostrata: error: ")
CASES = [
    ("probe --folds 1", [*PROBE, "--features", "{feats_npz}:L0", "--folds", "1"], r"folds=1 \(--folds\): .*at least 2"),
    ("probe more folds than examples", [*PROBE, "--features", "{feats_npz}:L0", "--folds", "50"],
     r"folds=50 \(--folds\): more folds than the 40 example"),
    ("probe class rarer than the folds", [*PROBE, "--labels", "{rare_csv}", "--features", "{feats_npz}:L0",
     "--folds", "3"], r"folds \(--folds\): class 'c' has 2 example\(s\), fewer than the 3 folds: "),
    ("probe class in fewer groups than folds", [*PROBE, "--labels", "{grouped_csv}", "--group-column", "group",
     "--features", "{feats_npz}:L0", "--folds", "3"], r"folds \(--folds\): class 'c' is in 2 group\(s\), fewer than the 3 folds: "),
    ("probe NaN features", [*PROBE, "--features", "{nan_npz}"],
     r"nan\.npz: layer 'L0' has 2 NaN or infinite value\(s\) in 2 row\(s\) \(first: row 3, id 's3'\)"),
    ("probe empty labels file", [*PROBE, "--labels", "{labels_empty_csv}", "--features", "{feats_npz}:L0"],
     r"labels_empty\.csv: empty file"),
    ("probe labels header only", [*PROBE, "--labels", "{labels_header_csv}", "--features", "{feats_npz}:L0"],
     r"labels_header\.csv: a header \(id,label\) but no rows"),
    ("probe label ids match no feature id", [*PROBE, "--labels", "{labels_other_csv}", "--features", "{feats_npz}:L0"],
     r"feats\.npz:L0: none of its 40 ids .* is among the 40 ids of .*labels_other\.csv"),
    ("probe 0-byte .npy", [*PROBE, "--features", "{empty_npy}"], r"empty\.npy: empty file \(0 bytes\)"),
    ("probe --bootstrap -1", [*PROBE, "--features", "{feats_npz}:L0", "--bootstrap", "-1"], r"bootstrap=-1 \(--bootstrap\): must be >= 0"),
    ("probe --seeds repeated", [*PROBE, "--features", "{feats_npz}:L0", "--seeds", "0", "0"], r"\(--seeds\): 0 is given twice"),
    ("probe --cs 0", [*PROBE, "--features", "{feats_npz}:L0", "--cs", "0"], r"cs=\[0\.0\] \(--cs\): .* each > 0"),
    ("probe --hidden 0", [*PROBE, "--features", "{feats_npz}:L0", "--probe", "mlp", "--hidden", "0"],
     r"hidden=\[0\] \(--hidden\): .* each at least 1"),
    ("probe id-less .npy with id'd labels", [*PROBE, "--features", "{noid_npy}"],
     r"rows_in_label_order \(--rows-in-label-order\): \S*noid\.npy: rows have no ids, so they cannot be joined to the ids of "),
    ("probe --rows-in-label-order, counts differ", [*PROBE, "--features", "{short_npy}", "--rows-in-label-order"],
     r"short\.npy: 39 rows for the 40 label rows"),
    ("cka constant layer", ["cka", "{const_npz}"],
     r"layers \(--layers\): \S*const\.npz: layer 'L0' is constant over the 40 rows compared .* its CKA is undefined; leave it out"),
    ("cka one shared row", ["cka", "{feats_npz}", "{one_npz}"],
     r"joined 1 rows by id: .*feats\.npz lost 39 of 40, .*one\.npz lost 1 of 2; the CKA needs at least 2 shared rows"),
    ("cka --debiased on 3 shared rows", ["cka", "{feats_npz}", "{three_npz}", "--debiased"],
     r"joined 3 rows by id: .*needs at least 4 shared rows \(debiased\)"),
    ("cka --knn 0", ["cka", "{feats_npz}", "--knn", "0"], r"knn=0 \(--knn\): must be between 1 and .* \(39\)"),
    ("cka --knn >= rows", ["cka", "{feats_npz}", "--knn", "40"], r"knn=40 \(--knn\)"),
    ("cka ids joined with no ids", ["cka", "{feats_npz}", "{noid_npy}"],
     r"feats\.npz has row ids and .*noid\.npy has none"),
    ("cka fewer ids than rows", ["cka", "{fewids_npz}"], r"fewids\.npz: 2 ids for 40 rows; give one id per row"),
    ("probe fewer ids than rows", [*PROBE, "--features", "{fewids_npz}"], r"fewids\.npz: 2 ids for 40 rows"),
    ("cka NaN values", ["cka", "{nan_npz}"], r"nan\.npz: layer 'L0' has 2 NaN or infinite"),
    ("cka text file as .pt", ["cka", "{text_pt}"], r"text\.pt: not a PyTorch file .*expected a family table"),
    ("embed text file as --model", [*EMBED, "--model", "{text_pt}"],
     r"text\.pt: not a PyTorch file .*expected a fair-esm \.pt file .* or a hub name"),
    ("embed pickle needing full unpickling", [*EMBED, "--model", "{pickle_pt}"],
     r"trusted \(--trust-checkpoint\): \S*pickle\.pt: needs full unpickling \(it stores a datetime\.date object\); .*trusted=True"),
    ("embed --token-budget 2", [*EMBED, "--model", "{plm_pt}", "--token-budget", "2"],
     r"token_budget=2 \(--token-budget\): must be at least 3"),
    ("embed --overlap >= --max-residues", [*EMBED, "--model", "{plm_pt}", "--long", "window", "--max-residues", "10",
     "--overlap", "10"], r"overlap=10 \(--overlap\): must be in \[0, 10\)"),
    ("embed --layers out of range", [*EMBED, "--model", "{plm_pt}", "--layers", "7"],
     r"layers=\[7\] \(--layers\): layer 7 does not exist; this model has layers 0\.\.1"),
    ("embed --layers twice the same", [*EMBED, "--model", "{plm_pt}", "--layers", "1", "-1"],
     r"\(--layers\): layer 1 is named twice"),
    ("embed fp16 on CPU", [*EMBED, "--model", "{plm_pt}", "--device", "cpu", "--precision", "fp16"],
     r"precision='fp16' \(--precision\): float16 needs a GPU"),
    ("embed --device gpu", [*EMBED, "--model", "{plm_pt}", "--device", "gpu"], r"device='gpu' \(--device\)"),
    ("embed --max-residues 0", [*EMBED, "--model", "{plm_pt}", "--max-residues", "0"], r"\(--max-residues\)"),
    ("embed duplicate FASTA ids", [*EMBED, "--model", "{plm_pt}", "--input", "{dup_fa}"],
     r"dup\.fa: sequence id 'a' appears more than once"),
    ("embed empty FASTA", [*EMBED, "--model", "{plm_pt}", "--input", "{empty_fa}"], r"empty\.fa: no FASTA records"),
    ("embed a mistyped --model path", [*EMBED, "--model", "{root}/no/such/esm"],
     r"error: \S*/no/such/esm: no such file or folder; a model is a transformers folder \(config\.json"),
    ("embed a file with --backend transformers", [*EMBED, "--model", "{plm_pt}", "--backend", "transformers"],
     r"backend \(--backend\): \S*plm\.pt: a file, not a transformers folder \(config\.json, .*\); give such a "
     r"folder, or a fair-esm \.pt file with backend 'fair-esm' or 'auto'"),
    ("embed --half with --precision", [*EMBED, "--model", "{plm_pt}", "--half", "--precision", "fp32"],
     r"--half and --precision: --half is the old name of --precision fp16; give --precision only"),
    ("embed --half on the CPU", [*EMBED, "--model", "{plm_pt}", "--device", "cpu", "--half"],
     r"precision='fp16' \(--precision\): float16 needs a GPU"),
    ("embed clusters with protein-only options", [*EMBED, "--input", "{clusters_txt}", "--model", "{dlm_pt}",
     "--long", "window", "--precision", "bf16", "--half", "--trust-checkpoint"],
     r"--long, --precision, --half, --trust-checkpoint: for proteins only; \S*clusters\.txt holds gene clusters"),
    ("embed clusters --max-residues", [*EMBED, "--input", "{clusters_txt}", "--model", "{dlm_pt}", "--max-residues",
     "50", "--overlap", "10", "--backend", "fair-esm"], r"--backend, --max-residues, --overlap: for proteins only"),
    ("embed clusters --token-budget 0", [*EMBED, "--input", "{clusters_txt}", "--model", "{dlm_pt}", "--token-budget",
     "0"], r"token_budget=0 \(--token-budget\): must be at least 1"),
    ("pretrain --epochs 0", [*PRETRAIN, "--corpus", "{tiny_txt}", "--epochs", "0"], r"epochs=0 \(--epochs\) is invalid"),
    ("pretrain --batch-size 0", [*PRETRAIN, "--corpus", "{tiny_txt}", "--batch-size", "0"], r"batch_size=0 \(--batch-size\) is invalid"),
    ("pretrain --lr 0", [*PRETRAIN, "--corpus", "{tiny_txt}", "--lr", "0"], r"lr=0\.0 \(--lr\) is invalid; expected > 0"),
    ("pretrain --lr -1", [*PRETRAIN, "--corpus", "{tiny_txt}", "--lr", "-1"], r"lr=-1\.0 \(--lr\) is invalid"),
    ("pretrain --val-fraction 1", [*PRETRAIN, "--corpus", "{tiny_txt}", "--val-fraction", "1"],
     r"val_fraction=1\.0 \(--val-fraction\) is invalid; expected in \(0, 1\)"),
    ("pretrain empty corpus", [*PRETRAIN, "--corpus", "{empty_corpus_txt}"],
     r"empty_corpus\.txt: no clusters read as a domain list"),
    ("pretrain corpus too small to split", [*PRETRAIN, "--corpus", "{tiny_txt}"],
     r"tiny\.txt: its 1 cluster\(s\) split into 0 for training and 1 for validation"),
    ("pretrain corpus too small, the reader's warnings in the error", [*PRETRAIN, "--corpus", "{empties_csv}"],
     r"empties\.csv: its 1 cluster\(s\) split into 0 for training .* \(reading it met 2 x empty-cluster, first: "
     r"\S*empties\.csv:3: empty-cluster: 'B2' has no domains; skipped\)"),
    ("pretrain no family known", [*PRETRAIN, "--corpus", "{clusters_txt}", "--pfam", "{clans_tsv}"],
     r"clusters\.txt: none of its \d+ domains \(e\.g\. 'PF000\d\d'\) is a family of the Pfam table \S*clans\.tsv; "
     r"check the corpus \(and the layout it was read in\) and pfam"),
    ("pretrain a binary corpus", [*PRETRAIN, "--corpus", "{binary_txt}"],
     r"binary\.txt: not a text file; give a domain list \(\.txt\), an accession CSV, a BiGCARP CSV or a domain table"),
    ("pretrain a binary FASTA", [*PRETRAIN, "--level", "protein", "--corpus", "{binary_fa}"],
     r"binary\.fa: not a text file; give a FASTA file of proteins, plain or gzip-compressed"),
    ("pretrain a binary domain table", [*PRETRAIN, "--level", "protein", "--corpus", "{binary_tsv}"],
     r"binary\.tsv: not a text file; give a tab-separated domain table \(\.tsv\)"),
    ("embed a binary FASTA", [*EMBED, "--model", "{plm_pt}", "--input", "{binary_fa}"], r"binary\.fa: not a text file"),
    ("pretrain one protein", [*PRETRAIN, "--level", "protein", "--corpus", "{one_fa}"],
     r"1 protein sequence\(s\) split .* into 0 for training and 1 for validation"),
    ("pretrain text file as --init-table", [*PRETRAIN, "--corpus", "{tiny_txt}", "--arm", "finetune", "--init-table",
     "{text_pt}"], r"text\.pt: not a PyTorch file .*expected a family table"),
    ("study cross-granularity missing --corpus", ["study", "cross-granularity", "--out", "{root}/study", "--corpus",
     "{root}/nothere.txt"], r"corpus \(--corpus\): .*nothere\.txt: no such file; give the path of a file, or --data DIR \(a folder with bgc/ and pfam/\)$"),
]  # fmt: skip


@pytest.mark.parametrize("argv, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(
    files: dict[str, str], argv: list[str], pattern: str, capsys: pytest.CaptureFixture
) -> None:
    args = [a.format(**files) for a in argv]
    assert main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("biostrata: error: ")
    assert re.search(pattern, last), last
    if "not a PyTorch file" in pattern:
        assert "--trust-checkpoint" not in last  # no advice to unpickle a file that is not a checkpoint
    if args[0] == "embed":
        assert not (Path(files["root"]) / "e.h5").exists()  # refused before the store is created
    if args[0] == "study":
        assert not (Path(files["root"]) / "study").exists()  # refused before any work


def test_probe_joins_labels_by_id_not_by_row(files: dict[str, str], tmp_path: Path, capsys) -> None:
    """Shuffling the rows of the label CSV changes nothing; an id-less .npy is refused unless the rows are
    declared in label order, and then it gives the same numbers as the same features with ids."""
    shuffled = tmp_path / "shuffled.csv"
    table = pd.read_csv(files["labels_csv"])
    table.sample(frac=1, random_state=1).to_csv(shuffled, index=False)

    def summary(features: str, labels: str, *extra: str) -> pd.DataFrame:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        argv = ["probe", "--features", features, "--labels", labels, "--label-column", "label", "--folds", "3"]
        assert main([*argv, "--seeds", "0", "1", "--bootstrap", "20", "--out", str(out), *extra]) == 0
        return pd.read_csv(out / "summary.csv").drop(columns="features")

    by_id = summary(f"{files['feats_npz']}:L0", files["labels_csv"])
    pd.testing.assert_frame_equal(summary(f"{files['feats_npz']}:L0", str(shuffled)), by_id)
    pd.testing.assert_frame_equal(summary(files["noid_npy"], files["labels_csv"], "--rows-in-label-order"), by_id)
    assert main(["probe", "--features", files["noid_npy"], "--labels", str(shuffled), "--label-column", "label"]) == 2
    assert "rows have no ids" in capsys.readouterr().err


def test_probe_says_how_it_joined_the_rows(files: dict[str, str], tmp_path: Path, capsys) -> None:
    """#23: probe reports its join as cka does: rows joined by id, rows each side lost (or paired by position)."""
    labels = tmp_path / "some.csv"
    labels.write_text("id,label\n" + "".join(f"s{i},{i % 2}\n" for i in range(30)) + "x1,0\nx2,1\n")
    argv = ["probe", "--label-column", "label", "--folds", "3", "--seeds", "0", "--bootstrap", "0"]
    assert main([*argv, "--features", f"{files['feats_npz']}:L0", "--labels", str(labels)]) == 0
    out = capsys.readouterr().out
    assert f"feats.npz:L0: joined 30 rows by id with {labels}: the features lost 10 of 40, the labels 2 of 32" in out
    assert main([*argv, "--features", files["noid_npy"], "--labels", files["labels_csv"], "--rows-in-label-order"]) == 0
    assert (
        f"noid.npy: 40 rows paired with the label rows of {files['labels_csv']} by position" in capsys.readouterr().out
    )


def test_cka_says_how_many_rows_it_joined(files: dict[str, str], capsys: pytest.CaptureFixture) -> None:
    assert main(["cka", files["feats_npz"], files["three_npz"]]) == 0
    out = capsys.readouterr().out
    assert re.search(r"joined 3 rows by id: \S*feats\.npz lost 37 of 40, \S*three\.npz lost 0 of 3", out), out


def test_the_old_half_option_still_works_and_warns(files: dict[str, str], tmp_path: Path, capsys) -> None:
    """--half/--no-half (removed from the help) map to --precision fp16/fp32 for one release."""
    out = tmp_path / "e.h5"
    assert main([*(a.format(**files) for a in EMBED[:3]), "--out", str(out), "--model", files["plm_pt"], "--no-half",
                 "--no-progress"]) == 0  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["biostrata: warning: --no-half is now --precision fp32; --no-half goes in the next release"]
    with EmbeddingStore(out) as store:
        assert len(store) == 6
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    assert "--half" not in capsys.readouterr().out


def test_cluster_embeddings_take_the_token_budget_and_dtype(files: dict[str, str], tmp_path: Path, capsys) -> None:
    """--dtype float16 stores float16; the numbers do not depend on --token-budget."""
    stores = {}
    for budget, dtype in ((4, "float16"), (None, "float32")):
        out = tmp_path / f"{dtype}.h5"
        argv = ["embed", "--input", files["clusters_txt"], "--model", files["dlm_pt"], "--out", str(out), "--layers",
                "1", "2", "--pooling", "mean", "per_token", "--dtype", dtype, "--no-progress"]  # fmt: skip
        assert main(argv + (["--token-budget", str(budget)] if budget else [])) == 0
        assert "5 clusters (5 embedded now), layers [1, 2]" in capsys.readouterr().out
        stores[dtype] = out
    with EmbeddingStore(stores["float16"]) as low, EmbeddingStore(stores["float32"]) as ref:
        assert low.array("mean").dtype == np.float16 and ref.array("mean").dtype == np.float32
        assert low.per_token("B4").dtype == np.float16 and low.per_token("B4").shape == (2, 7, 8)
        np.testing.assert_allclose(low.array("mean", ids=ref.ids), ref.array("mean"), atol=2e-3, rtol=2e-3)


def test_embed_of_a_domain_table_says_how_its_rows_became_segments(files: dict[str, str], tmp_path: Path, capsys):
    """Rows repeating a family's segment share one embedding, and rows of an unchecked frame are kept: embed
    says both (#23: it merged and kept them without a word)."""
    head = "bgc_id\tpfam_id\tgene_id\tprotein_accession\tdna_start\tdna_end\tprotein_sequence\tframe_evidence\n"
    rows = [("B1", "PF00001.2", "g1", "P1", 0, 30, "ACDEFGHIKL", "hmm"),
            ("B2", "PF00001.2", "g2", "P2", 0, 30, "ACDEFGHIKL", "hmm"),  # the same segment and family as B1's
            ("B2", "PF00002.1", "g2", "P2", 30, 60, "MNPQRSTVWY", "ambiguous"),
            ("B3", "PF00002.1", "g3", "P3", 0, 27, "MNPQRSTVW", "unique")]  # fmt: skip
    table = tmp_path / "d.tsv"
    table.write_text(head + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    argv = ["embed", "--model", files["plm_pt"], "--input", str(table), "--out", str(tmp_path / "d.h5"),
            "--trust-checkpoint", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{table}: 4 rows, 3 protein segments to embed; 1 rows repeat the segment of an earlier row" in out
    assert "; 1 rows have a reading frame that was not checked (frame_evidence ambiguous, mismatch or unchecked)" in out
    with EmbeddingStore(tmp_path / "d.h5") as store:
        assert len(store) == 3 and not any(i.startswith("B2|g2|P2|0-30") for i in store.ids)


def shuffled(path: str, out: Path, seed: int = 1) -> str:
    """A copy of a representation (.npz, .npy) or label (.csv) file with its rows in another order."""
    rng = np.random.default_rng(seed)
    out = out / f"shuffled_{Path(path).name}"
    if out.suffix == ".csv":
        pd.read_csv(path, dtype=str).sample(frac=1, random_state=seed).to_csv(out, index=False)
    elif out.suffix == ".npy":
        x = np.load(path)
        np.save(out, x[rng.permutation(len(x))])
    else:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        order = rng.permutation(len(arrays["ids"]))
        np.savez(out, **{k: v[order] for k, v in arrays.items()})
    return str(out)


def test_every_analysis_gives_the_same_numbers_for_the_same_rows_in_any_order(
    files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """probe (also fusing two files, --fusion projection), cka (one file, two, --against) and delta (exact,
    sampled; points with ids and without) on the same rows with every input file's rows shuffled: the same
    numbers. Rows are joined by id and read in sorted order; folds and samples are drawn from that order."""
    rng = np.random.default_rng(2)
    ids = [f"s{i}" for i in range(N)]
    other = tmp_path / "other.npz"
    np.savez(other, ids=np.array(ids[::-1]), M=rng.normal(size=(N, 3)))
    probe = ["probe", "--label-column", "label", "--folds", "3", "--seeds", "0", "1", "--bootstrap", "20"]
    delta = ["delta", "--metric", "euclidean", "--json"]
    commands = {
        "probe": [*probe, "--features", "{feats}:L0", "{other}", "--labels", "{labels}"],
        "probe fusion": [*probe, "--features", "{feats}:L0", "{other}", "--fusion", "projection", "--labels",
                         "{labels}", "--probe", "mlp"],
        "probe all layers": [*probe, "--features", "{feats}", "--all-layers", "--labels", "{labels}"],
        "probe rows in label order": [*probe, "--features", "{noid}", "--rows-in-label-order", "--labels", "{labels}"],
        "cka": ["cka", "{feats}", "{other}", "--kernel", "rbf"],
        "cka one file": ["cka", "{feats}"],
        "cka against": ["cka", "{feats}", "--layers", "L0", "--against", "{other}"],
        "delta exact": [*delta, "{feats}", "--key", "L0"],
        "delta sampled": [*delta, "{feats}", "--key", "L0", "--method", "sampled", "--samples", "12", "--repeats", "4"],
        "delta sampled, no ids": [*delta, "{noid}", "--method", "sampled", "--samples", "12", "--repeats", "4"],
    }  # fmt: skip

    def numbers(argv: list[str], inputs: dict[str, str], run: str) -> list:
        argv = [a.format(**inputs) for a in argv]
        out = tmp_path / run
        if argv[0] == "probe":
            argv += ["--out", str(out)]
        elif argv[0] == "cka":
            argv += ["--out", f"{out}.csv"]
        assert main(argv) == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        if argv[0] == "probe":
            return [pd.read_csv(out / name).drop(columns="features") for name in ("summary.csv", "folds.csv")]
        if argv[0] == "cka":
            return [pd.read_csv(f"{out}.csv").drop(columns="input", errors="ignore")]
        result = json.loads(printed)
        return [{k: v for k, v in result.items() if k not in ("input", "seconds", "witness")}]

    given = {"feats": files["feats_npz"], "other": str(other), "labels": files["labels_csv"], "noid": files["noid_npy"]}
    # --rows-in-label-order: the label rows shuffled like the feature rows
    mixed = {name: shuffled(path, tmp_path) for name, path in given.items()}
    order = np.random.default_rng(1).permutation(N)
    pd.read_csv(files["labels_csv"], dtype=str).iloc[order].to_csv(tmp_path / "labels_like_noid.csv", index=False)
    for name, argv in commands.items():
        inputs = mixed | ({"labels": str(tmp_path / "labels_like_noid.csv")} if "label order" in name else {})
        first, again = numbers(argv, given, f"{name} a"), numbers(argv, inputs, f"{name} b")
        for a, b in zip(first, again):
            if isinstance(a, pd.DataFrame):
                pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
            else:
                assert a == b, name
