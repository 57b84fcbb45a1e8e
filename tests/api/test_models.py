"""biostrata.load reads every model family from what its path holds; biostrata.embed gives in memory the
arrays that ``biostrata embed`` writes for the same input: a genome CNN on DNA, a domain LM on domain
sentences, a transformers ESM on proteins."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import biostrata
from biostrata.cli import main
from biostrata.data.clusters.corpus import DomainVocabulary
from biostrata.data.embedding_store import EmbeddingStore
from biostrata.errors import InputError
from biostrata.models.domain_lm import DomainLM
from biostrata.models.genome_cnn import HyperbolicCNN, build_model

PFAM = [f"PF{i:05d}" for i in range(1, 11)]
AA = "ACDEFGHIKLMNPQRSTVWY"


def store_arrays(path: Path, ids: list[str], pooling: str = "mean") -> dict[int, np.ndarray]:
    with EmbeddingStore(path) as store:
        return {layer: store.array(pooling, layer, ids) for layer in store.layers}


@pytest.fixture(scope="module")
def genome_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a tiny hyperbolic CNN (random weights, batch norms in eval mode)."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = build_model("hcnn-s", 24, 2, channels=6, hidden=8, blocks=2, kernel_size=3).eval()
    model.save_pretrained(run)
    return run


def test_a_genome_cnn_on_dna_equals_the_command(genome_run: Path, tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=int(n))) for n in rng.integers(10, 25, size=7)]
    (tmp_path / "dna.csv").write_text("sequence,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(seqs)))
    model = biostrata.load(genome_run)
    assert isinstance(model, HyperbolicCNN) and not model.training
    got = biostrata.embed(model, seqs, layers=[1, 2], token_budget=48)  # the command's batches: 2 sequences
    # other batches change only the rounding (a batched product's blocking depends on its shape)
    other = biostrata.embed(model, seqs, layers=[1, 2], batch_size=3)
    for layer in (1, 2):
        np.testing.assert_allclose(other[layer], got[layer], rtol=1e-5, atol=1e-7)
    argv = ["embed", "--model", str(genome_run), "--input", str(tmp_path / "dna.csv"), "--out",
            str(tmp_path / "dna.h5"), "--layers", "1", "2", "--token-budget", "48", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "7 sequences, layers [1, 2], dim 6" in capsys.readouterr().out
    written = store_arrays(tmp_path / "dna.h5", [str(i) for i in range(7)])
    assert sorted(got) == [1, 2] and got[1].shape == (7, 6)
    for layer in (1, 2):
        np.testing.assert_array_equal(got[layer], written[layer])
    # a hyperbolic layer's mean is the Lorentz centroid: a point of the hyperboloid, <x, x>_L = -k
    manifold = model.layer_manifold(1)
    x = torch.from_numpy(got[1]).double()
    inner = -(x[:, 0] ** 2) + (x[:, 1:] ** 2).sum(1)
    np.testing.assert_allclose(inner.numpy(), -float(manifold.kk.detach()), rtol=1e-4)
    head = biostrata.embed(model, seqs, layers=[-1], pooling="per_token")
    assert len(head[3]) == 7 and head[3][0].shape == (8,)  # the head's features (hidden wide), one per sequence
    tokens = biostrata.embed(model, seqs[:2], layers=[1], pooling="per_token")
    assert [t.shape for t in tokens[1]] == [(len(seqs[0]), 6), (len(seqs[1]), 6)]  # own positions x channels
    np.testing.assert_allclose(model.layer_manifold(1).centroid(torch.from_numpy(tokens[1][0]).T[None], (2,))[0]
                               .detach().numpy(), got[1][0], rtol=1e-5, atol=1e-6)  # fmt: skip
    with pytest.raises(InputError, match="widths .* differ"):
        biostrata.embed(model, seqs, layers=[0, -1], out=tmp_path / "mixed.h5")


def test_a_domain_lm_on_domain_sentences_equals_the_command(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    DomainLM(DomainVocabulary(PFAM), d_embed=8, d_model=8, n_layers=2, kernel_size=3, r=2).save_pretrained(
        tmp_path / "dlm"
    )
    r = random.Random(0)
    sentences = [r.choices(PFAM, k=3 + i) for i in range(5)] + [["PF00001", "PF99999"]]  # one unknown domain
    (tmp_path / "clusters.txt").write_text("".join(f"B{i} NRP {' '.join(s)}\n" for i, s in enumerate(sentences)))
    model = biostrata.load(tmp_path / "dlm")
    assert isinstance(model, DomainLM)
    got = biostrata.embed(model, sentences, layers=[1, -1], token_budget=8)
    argv = ["embed", "--model", str(tmp_path / "dlm"), "--input", str(tmp_path / "clusters.txt"), "--out",
            str(tmp_path / "c.h5"), "--layers", "1", "-1", "--pooling", "mean", "per_token", "--token-budget", "8",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    written = store_arrays(tmp_path / "c.h5", [f"B{i}" for i in range(6)])
    assert sorted(got) == [1, 2]
    for layer in (1, 2):
        np.testing.assert_array_equal(got[layer], written[layer])
    same = biostrata.embed(model, [" ".join(s) for s in sentences], layers=[2], token_budget=8)  # token strings
    np.testing.assert_array_equal(same[2], got[2])
    tokens = biostrata.embed(model, tmp_path / "clusters.txt", layers=[2], pooling="per_token", token_budget=8)
    with EmbeddingStore(tmp_path / "c.h5") as store:
        np.testing.assert_array_equal(tokens[2][4], store.per_token("B4", layer=2))
    wide = DomainLM(DomainVocabulary(PFAM), d_embed=8, d_model=6, n_layers=2, kernel_size=3, r=2).eval()
    mixed = biostrata.embed(wide, sentences, layers=[0, -1])  # layers of two widths, as in BiGCARP (1280, 256)
    assert mixed[0].shape == (6, 8) and mixed[2].shape == (6, 6)
    np.testing.assert_array_equal(mixed[2], biostrata.embed(wide, sentences, layers=[-1])[2])
    assert [t.shape for t in biostrata.embed(wide, sentences[:2], [0, 2], "per_token")[0]] == [(3, 8), (4, 8)]
    with pytest.raises(InputError, match="inputs\\[1\\] \\(1\\): a cluster without domains"):
        biostrata.embed(model, [["PF00001"], []])
    with pytest.raises(InputError, match="pooling='bos'"):
        biostrata.embed(model, sentences, pooling="bos")


@pytest.fixture(scope="module")
def esm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ESM-2 saved as a transformers folder (config.json, model.safetensors, vocab.txt)."""
    pytest.importorskip("transformers")
    from biostrata.models.esm_hf import from_fair_esm
    from biostrata.models.protein_lm import small_protein_lm

    fair = small_protein_lm(num_layers=2, embed_dim=16, attention_heads=2, seed=1, max_residues=30)
    return from_fair_esm(fair).save_pretrained(tmp_path_factory.mktemp("esm") / "esm2_tiny")


def test_a_transformers_esm_on_proteins_equals_the_command(
    esm_folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from biostrata.models.esm_hf import TransformersESM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = random.Random(0)
    proteins = ["".join(r.choices(AA, k=n)) for n in (5, 40, 12, 29, 61)]  # two over the 30-residue limit
    (tmp_path / "p.fa").write_text("".join(f">p{i}\n{s}\n" for i, s in enumerate(proteins)))
    model = biostrata.load(esm_folder)
    assert isinstance(model, TransformersESM) and model.max_residues == 30
    argv = ["embed", "--model", str(esm_folder), "--input", str(tmp_path / "p.fa"), "--layers", "0", "-1",
            "--pooling", "mean", "bos", "--long", "window", "--overlap", "8", "--token-budget", "64", "--no-progress"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "p.h5")]) == 0
    ids = [f"p{i}" for i in range(5)]
    for pooling in ("mean", "bos"):
        got = biostrata.embed(model, proteins, layers=[0, -1], pooling=pooling, long="window", overlap=8,
                              token_budget=64)  # fmt: skip
        written = store_arrays(tmp_path / "p.h5", ids, pooling)
        assert sorted(got) == [0, 2]
        for layer in (0, 2):
            np.testing.assert_array_equal(got[layer], written[layer])
    path = biostrata.embed(esm_folder, tmp_path / "p.fa", layers=[0, -1], pooling=["mean", "bos"], long="window",
                           overlap=8, token_budget=64, out=tmp_path / "q.h5")  # fmt: skip
    assert path == tmp_path / "q.h5"
    np.testing.assert_array_equal(store_arrays(path, ids)[2], store_arrays(tmp_path / "p.h5", ids)[2])
    with pytest.raises(InputError, match="in memory give one pooling"):
        biostrata.embed(model, proteins, pooling=["mean", "bos"])
    (tmp_path / "c.txt").write_text("B1 NRP PF00001 PF00002\n")
    assert (
        main(["embed", "--model", str(esm_folder), "--input", str(tmp_path / "c.txt"), "--out", str(tmp_path / "c.h5")])
        == 2
    )
    assert "a TransformersESM, but" in capsys.readouterr().err


def test_load_tells_the_family_by_content(genome_run: Path, tmp_path: Path) -> None:
    from biostrata.models.init_table import FamilyTable
    from biostrata.models.protein_lm import FairESM, small_protein_lm

    small_protein_lm(1, 16, 2).save_fair_esm(tmp_path / "esm.pt")
    assert isinstance(biostrata.load(tmp_path / "esm.pt"), FairESM)
    FamilyTable(["PF00001", "PF00002"], torch.ones(2, 3), [1, 2]).save_pretrained(tmp_path / "table")
    table = biostrata.load(tmp_path / "table")
    assert isinstance(table, FamilyTable) and table.families == ["PF00001", "PF00002"]
    with pytest.raises(InputError, match="a FamilyTable embeds nothing"):
        biostrata.embed(table, ["ACGT"])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="other.pt: holds a dict with keys \\['weights'\\], not a model"):
        biostrata.load(tmp_path / "other.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: a folder with neither config.json nor model.pt"):
        biostrata.load(tmp_path / "empty")
    with pytest.raises(biostrata.errors.DataNotFoundError, match="no such file or folder"):
        biostrata.load(tmp_path / "missing.pt")
