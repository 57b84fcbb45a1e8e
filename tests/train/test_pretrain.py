"""Tests of biostrata.train.pretrain: BGC split, batching, the three arms, and the CLI pipeline."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
import torch

from biostrata.cli import main
from biostrata.data.clusters.corpus import Cluster, ClusterCorpus, read_clusters
from biostrata.data.clusters.pfam import PfamTable
from biostrata.data.embedding_store import EmbeddingStore
from biostrata.errors import InputError, ParameterError
from biostrata.models.domain_lm import DomainLM
from biostrata.models.init_table import FamilyTable
from biostrata.models.protein_lm import load_protein_lm
from biostrata.train.pretrain import (
    LengthBucketSampler,
    domain_masking_scheme,
    evaluate_masked_lm,
    pretrain_domain_lm,
    split_clusters,
)

FAMILIES = [(f"PF{i:05d}", f"Dom{i}") for i in range(1, 13)]
AA = "ACDEFGHIKLMNPQRSTVWY"


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """A Pfam table, a domain list of 60 BGCs built from three 'pathway' motifs, and a domain table
    with protein segments for 8 of the 12 families."""
    rng = random.Random(0)
    clans = tmp_path / "clans.tsv"
    clans.write_text("".join(f"{acc}\t\t\t{name}\tfamily {name}\n" for acc, name in FAMILIES))
    motifs = [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12]]
    lines = []
    for i in range(60):
        k = i % 3
        genes = [" ".join(f"Dom{d}" for d in motifs[k]) for _ in range(rng.randint(1, 3))]
        lines.append(f"BGC{i:04d} {['NRP', 'RiPP', 'Terpene'][k]} " + " [SEP] ".join(genes))
    corpus = tmp_path / "list.txt"
    corpus.write_text("\n".join(lines) + "\n")
    rows = ["bgc_id\tpfam_id\tgene_id\tprotein_accession\tdna_start\tdna_end\tframe\tdna_sequence\tprotein_sequence"]
    for j in range(40):
        acc = FAMILIES[j % 8][0]
        seq = "".join(rng.choice(AA) for _ in range(rng.randint(8, 30)))
        rows.append(f"BGC{j:04d}\t{acc}\tg{j}\tX{j}.1\t{3 * j}\t{3 * j + 90}\t0\tACG\t{seq}")
    table = tmp_path / "domains.tsv"
    table.write_text("\n".join(rows) + "\n")
    return {"clans": clans, "corpus": corpus, "table": table}


def test_split_groups_duplicates_and_honours_given_splits() -> None:
    clusters = [Cluster(f"B{i}", ("PF1", f"PF{i % 7}")) for i in range(50)]
    corpus = ClusterCorpus(clusters)
    train, valid = split_clusters(corpus, 0.2, seed=1)
    assert sorted(train + valid) == list(range(50)) and len(valid) >= 10
    # identical domain lists never straddle the split
    assert not {clusters[i].domains for i in train} & {clusters[i].domains for i in valid}
    assert split_clusters(corpus, 0.2, seed=1) == (train, valid)
    given = ClusterCorpus(
        [Cluster(f"B{i}", ("PF1",), split=s) for i, s in enumerate(["train", "valid", "test", "train"])]
    )
    assert split_clusters(given) == ([0, 3], [1])
    with pytest.raises(InputError, match="val_fraction"):
        split_clusters(corpus, 1.5)


def test_length_bucket_sampler() -> None:
    rng = random.Random(3)
    lengths = [rng.randint(1, 100) for _ in range(103)]
    sampler = LengthBucketSampler(lengths, batch_size=8, seed=0, pool=4)
    epoch1, epoch2 = list(sampler), list(sampler)
    assert len(epoch1) == len(sampler) == 13  # pools of 32, 32, 32, 7 -> 4 + 4 + 4 + 1 batches
    assert sorted(i for b in epoch1 for i in b) == list(range(103))
    assert epoch1 != epoch2
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch1) / len(epoch1)
    assert spread < 40  # random batches of 8 from U(1, 100) would spread ~77


def test_three_arms(tmp_path: Path, files: dict[str, Path]) -> None:
    pfam = PfamTable.read(files["clans"])
    corpus = read_clusters(files["corpus"], pfam)
    g = torch.Generator().manual_seed(0)
    table = FamilyTable([a for a, _ in FAMILIES[:8]], torch.randn(8, 16, generator=g), [1] * 8)
    sizes = dict(d_model=16, n_layers=2, r=2)
    runs = {}
    for arm in ("random", "finetune", "frozen"):
        init = None if arm == "random" else table
        runs[arm] = pretrain_domain_lm(
            corpus,
            tmp_path / arm,
            preset="small",
            arm=arm,
            family_table=init,
            pfam=pfam,
            epochs=2,
            batch_size=8,
            lr=1e-2,
            accelerator="cpu",
            progress=False,
            d_embed=16,
            **sizes,
        )
    for arm, result in runs.items():
        best = result["best"]
        assert math.isclose(best["val_ppl"], math.exp(best["val_loss"]))
        assert 0 <= best["val_acc"] <= 1 and best["masked_tokens"] > 0
        saved = json.loads((tmp_path / arm / "metrics.json").read_text())
        assert saved["arm"] == arm and saved["best"] == best and len(saved["history"]) == 2
        assert saved["train_clusters"] + saved["val_clusters"] == 60
    # identical validation masks in every arm
    assert len({r["best"]["masked_tokens"] for r in runs.values()}) == 1
    assert runs["random"]["init"] is None and runs["frozen"]["init"]["initialized"] == 8
    assert runs["frozen"]["init"]["missing"] == 4 and runs["frozen"]["frozen_rows"] == 8
    frozen = DomainLM.load(tmp_path / "frozen")
    tuned = DomainLM.load(tmp_path / "finetune")
    rows = [frozen.vocab.index(a) for a, _ in FAMILIES[:8]]
    assert torch.equal(frozen.table.weight[rows], table.vectors)  # frozen rows never moved
    assert frozen.frozen_rows.nonzero().flatten().tolist() == sorted(rows)
    assert not torch.equal(tuned.table.weight[rows], table.vectors)
    with pytest.raises(InputError, match="needs a family table"):
        pretrain_domain_lm(corpus, tmp_path / "x", arm="frozen")


def test_cli_end_to_end(tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    """Protein LM pre-training -> family table from its embeddings -> domain LM, frozen arm."""
    prot = tmp_path / "prot"
    assert (
        main(
            [
                "pretrain",
                "--level",
                "protein",
                "--corpus",
                str(files["table"]),
                "--out",
                str(prot),
                "--epochs",
                "1",
                "--protein-layers",
                "1",
                "--protein-dim",
                "16",
                "--protein-heads",
                "2",
                "--batch-size",
                "8",
                "--accelerator",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    plm = load_protein_lm(prot)
    assert plm.num_layers == 1 and plm.embed_dim == 16
    store, fam = tmp_path / "e.h5", tmp_path / "fam"
    assert (
        main(
            [
                "embed",
                "--model",
                str(prot),
                "--input",
                str(files["table"]),
                "--out",
                str(store),
                "--layers",
                "0",
                "-1",
                "--pooling",
                "mean",
                "bos",
                "--family-table",
                str(fam),
                "--no-progress",
            ]
        )
        == 0
    )
    with EmbeddingStore(store) as s:
        assert len(s) == 40 and s.layers == [0, 1]
    table = FamilyTable.load(fam)
    assert len(table.families) == 8 and table.dim == 16 and table.meta["layer"] == 1
    out = tmp_path / "frozen"
    assert (
        main(
            [
                "pretrain",
                "--corpus",
                str(files["corpus"]),
                "--pfam",
                str(files["clans"]),
                "--out",
                str(out),
                "--arm",
                "frozen",
                "--init-table",
                str(fam),
                "--preset",
                "small",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--accelerator",
                "cpu",
                "--no-progress",
                "--class-token",
                "--snapshots",
                "--export-sequence-models",
                str(tmp_path / "frozen.pt"),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["epoch_000", "epoch_001"]
    exported = torch.load(tmp_path / "frozen.pt", weights_only=True)  # BiGCARP's layout, as its code reads it
    assert exported["model"] == "bigcarp_frozen" and "model_state_dict" in exported
    assert torch.equal(DomainLM.load(tmp_path / "frozen.pt").table.weight, DomainLM.load(out).table.weight)
    text = capsys.readouterr().out
    assert "initialized 8 domain rows; 4 domains without member sequences keep random rows" in text
    assert "validation masked-token accuracy" in text
    model = DomainLM.load(out)
    assert model.config["d_embed"] == 16 and "NRP" in model.vocab.classes
    assert torch.equal(model.table.weight[[model.vocab.index(f) for f in table.families]], table.vectors)
    assert (
        main(["pretrain", "--level", "protein", "--corpus", str(files["table"]), "--out", str(prot), "--snapshots"])
        == 2
    )
    assert "snapshots: kept at the domain level only" in capsys.readouterr().err
    argv = ["pretrain", "--level", "protein", "--corpus", str(files["table"]), "--out", str(prot)]
    assert main([*argv, "--export-sequence-models", str(tmp_path / "p.pt")]) == 2
    assert "--export-sequence-models: a domain-level model only" in capsys.readouterr().err
    assert main(["embed", "--out", str(tmp_path / "z.h5")]) == 2
    assert "give --model and --input" in capsys.readouterr().err


def test_epoch_snapshots(tmp_path: Path, files: dict[str, Path]) -> None:
    pfam = PfamTable.read(files["clans"])
    corpus = read_clusters(files["corpus"], pfam)
    from biostrata.data.clusters.corpus import DomainVocabulary

    torch.manual_seed(0)  # pretrain_domain_lm seeds the same way before building the model
    init = DomainLM.from_preset("small", DomainVocabulary.from_corpus(corpus), d_embed=8, d_model=8, n_layers=1, r=1)
    pretrain_domain_lm(
        corpus,
        tmp_path / "run",
        preset="small",
        pfam=pfam,
        epochs=2,
        batch_size=8,
        lr=1e-2,
        accelerator="cpu",
        progress=False,
        snapshots=True,
        d_embed=8,
        d_model=8,
        n_layers=1,
        r=1,
    )
    snaps = sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir())
    assert snaps == ["epoch_000", "epoch_001", "epoch_002"]
    first, last = (DomainLM.load(tmp_path / "run" / "snapshots" / n) for n in (snaps[0], snaps[-1]))
    assert torch.equal(first.table.weight, init.table.weight)  # the weights before any step (same seed)
    assert not torch.equal(last.table.weight, first.table.weight)


def test_corpora_too_small_to_split_name_the_counts(tmp_path: Path) -> None:
    from biostrata.config import PretrainSettings
    from biostrata.data.clusters.proteins import ProteinRecord
    from biostrata.models.protein_lm import small_protein_lm
    from biostrata.train.pretrain import pretrain_protein_lm

    same = ClusterCorpus([Cluster(f"B{i}", ("PF1", "PF2")) for i in range(5)], "five.txt")  # one domain list
    with pytest.raises(InputError, match=r"five\.txt: its 5 cluster\(s\) split into 0 for training and 5"):
        pretrain_domain_lm(same, tmp_path / "d", preset="small", accelerator="cpu", progress=False)
    given = ClusterCorpus([Cluster(f"B{i}", ("PF1",), split="train") for i in range(3)], "given.csv")
    with pytest.raises(InputError, match=r"given\.csv: .* 3 for training and 0 for validation \(by its split column\)"):
        pretrain_domain_lm(given, tmp_path / "g", preset="small", accelerator="cpu", progress=False)
    with pytest.raises(InputError, match=r"1 protein sequence\(s\) split .* into 0 for training and 1"):
        pretrain_protein_lm(small_protein_lm(1, 8, 2), [ProteinRecord("p", "ACDE")], tmp_path / "p", progress=False)
    share = r"^val_fraction=1\.0: give a share strictly between 0 and 1, e.g\. 0\.1$"  # errors.check_fraction
    with pytest.raises(ParameterError, match=share):
        pretrain_protein_lm(small_protein_lm(1, 8, 2), [ProteinRecord("p", "ACDE")], tmp_path / "p", val_fraction=1.0)
    with pytest.raises(ParameterError, match=share):
        split_clusters(same, 1.0)
    for field, value in [("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("lr", -1.0), ("val_fraction", 1.0),
                         ("max_length", 0), ("protein_dim", 0)]:  # fmt: skip
        with pytest.raises(InputError, match=rf"{field}=.* is invalid"):
            PretrainSettings(**{field: value})
    assert not (tmp_path / "d").exists() and not (tmp_path / "p").exists()


@pytest.mark.parametrize("geometry", ["euclidean", "lorentz"])
def test_evaluate_masked_lm_gives_the_best_epochs_validation_numbers(
    tmp_path: Path, files: dict[str, Path], geometry: str
) -> None:
    pfam = PfamTable.read(files["clans"])
    corpus = read_clusters(files["corpus"], pfam)
    curvature = {"lorentz": 2.0}.get(geometry, 1.0)
    run = dict(epochs=3, batch_size=8, lr=1e-2, seed=3, max_length=12, class_token=True)
    result = pretrain_domain_lm(
        corpus, tmp_path / "run", preset="small", pfam=pfam, accelerator="cpu", progress=False, d_embed=8,
        d_model=8, n_layers=2, r=2, geometry=geometry, curvature=curvature, **run,
    )  # fmt: skip
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["config"]["geometry"] == geometry and saved["config"]["curvature"] == curvature
    assert len(saved["history"]) == 3
    for record in saved["history"]:
        assert all(math.isfinite(record[key]) for key in ("val_loss", "val_acc", "val_ppl"))
    model = DomainLM.load(tmp_path / "run")
    assert model.geometry == geometry and model.config == saved["config"]
    _, val_idx = split_clusters(corpus, seed=run["seed"])
    valid = [model.vocab.encode(corpus[i], class_token=True) for i in val_idx]
    scheme = domain_masking_scheme(model.vocab)
    kwargs = dict(batch_size=8, seed=run["seed"], max_length=12, keep_first=1)
    first = evaluate_masked_lm(model, valid, scheme, **kwargs)
    best = result["best"]
    assert first == {"acc": best["val_acc"], "ppl": best["val_ppl"], "loss": best["val_loss"],
                     "masked_tokens": best["masked_tokens"]}  # fmt: skip
    model.train()  # evaluated in eval mode, then put back as it was
    assert evaluate_masked_lm(model, valid, scheme, **kwargs) == first and model.training  # deterministic
    other = evaluate_masked_lm(model, valid, scheme, **{**kwargs, "seed": 4, "repeats": 2})
    assert other["masked_tokens"] < first["masked_tokens"] and other["loss"] != first["loss"]
    with pytest.raises(InputError, match="none of the 1 sequences has a token"):
        evaluate_masked_lm(model, [torch.tensor([model.vocab.index("NRP")])], scheme, batch_size=2, seed=0)


def test_cli_resumes_a_pretraining_only_with_its_settings_and_inputs(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "prot"
    argv = ["pretrain", "--level", "protein", "--corpus", str(files["table"]), "--out", str(out), "--epochs", "1",
            "--protein-layers", "1", "--protein-dim", "16", "--protein-heads", "2", "--batch-size", "8",
            "--accelerator", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "settings.json").read_text())
    assert record["epochs"] == 1 and record["inputs"]["corpus"] == str(files["table"]) and record["code_version"]
    capsys.readouterr()
    assert main([*argv, "--resume", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert f"out={out} (--out): holds results made with other settings (lr: " in err and "0.5 now" in err
    assert main([*argv[:-1], "--resume", "--progress"]) == 0  # progress bars do not change results


def test_cli_lorentz_domain_lm(tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "hyper"
    base = ["pretrain", "--corpus", str(files["corpus"]), "--pfam", str(files["clans"]), "--preset", "small",
            "--d-embed", "8", "--epochs", "1", "--batch-size", "8", "--accelerator", "cpu", "--no-progress"]  # fmt: skip
    sizes = ["--d-model", "12", "--n-layers", "2"]  # the architecture of the strata study's small domain LMs
    assert main([*base, "--out", str(out), "--geometry", "lorentz", "--curvature", "0.5", *sizes]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(out)]) == 2  # finished (metrics.json): refused, unless --overwrite
    assert "the run finished already (metrics.json written); pass --overwrite to pre-train" in capsys.readouterr().err
    model = DomainLM.load(out)
    assert model.geometry == "lorentz" and model.config["curvature"] == 0.5 and model.config["d_embed"] == 8
    assert model.config["d_model"] == 12 and model.num_layers == 2
    assert json.loads((out / "metrics.json").read_text())["config"]["geometry"] == "lorentz"
    assert model.table_points().shape == (len(model.vocab), 9)
    capsys.readouterr()
    for extra, pattern in [
        (
            ["--level", "protein", "--geometry", "lorentz"],
            r"geometry: the protein LM is euclidean only; leave geometry euclidean",
        ),
        (
            ["--geometry", "poincare"],
            r"geometry='poincare' \(--geometry\) is invalid; expected one of 'euclidean', 'lorentz'",
        ),
        (["--geometry", "lorentz", "--curvature", "0"], r"curvature=0\.0 \(--curvature\) is invalid; expected > 0"),
        (["--curvature", "2"], r"curvature=2\.0 \(--curvature\) is invalid; expected 1 unless geometry is lorentz"),
        (["--n-layers", "0"], r"n_layers=0 \(--n-layers\) is invalid; expected at least 1, or unset"),
        (
            ["--level", "protein", "--d-model", "8"],
            r"d_model, n_layers: the domain LM's; at level protein give protein_dim, protein_layers",
        ),
    ]:
        assert main([*base, "--out", str(tmp_path / "bad"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("biostrata: error: ") and re.search(pattern, err[0]), err
    assert not (tmp_path / "bad").exists()
