"""Tests of biostrata.models.init_table: family vectors and cross-model token-table initialization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from biostrata.data.clusters.corpus import DomainVocabulary
from biostrata.data.embedding_store import EmbeddingStore
from biostrata.errors import InputError
from biostrata.models.domain_lm import DomainLM
from biostrata.models.init_table import FamilyTable, _pca_projection, family_table_from_store, initialize_token_table

SIZES = dict(d_model=8, n_layers=2, kernel_size=3, r=2)


def _store(path: Path) -> EmbeddingStore:
    """Four proteins, two layers (0 and 5), dim 3, known mean vectors."""
    store = EmbeddingStore.create(path, "toy", [0, 5], 3, ["mean"])
    mean = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    store.append(["a1", "a2", "b1", "c1"], [5, 6, 7, 8], {"mean": mean})
    return store


def test_family_table_is_mean_of_members(tmp_path: Path) -> None:
    with _store(tmp_path / "s.h5") as store:
        table = family_table_from_store(store, {"PF00002": ["b1"], "PF00001": ["a1", "a2"], "PF00009": []}, layer=5)
        assert table.families == ["PF00001", "PF00002"] and table.members == [2, 1] and table.dim == 3
        mean = np.arange(24, dtype=np.float32).reshape(4, 2, 3)[:, 1]
        np.testing.assert_allclose(table.vectors[0], (mean[0] + mean[1]) / 2)
        np.testing.assert_allclose(table.vectors[1], mean[2])
        assert table.meta["layer"] == 5 and table.meta["model"] == "toy"
        with pytest.raises(InputError, match="no embedding for id 'zz'"):
            family_table_from_store(store, {"PF00001": ["zz"]}, layer=5)
        with pytest.raises(InputError, match="layer 1 not stored"):
            family_table_from_store(store, {"PF00001": ["a1"]}, layer=1)
    table.save_pretrained(tmp_path / "t")
    back = FamilyTable.load(tmp_path / "t")
    assert back.families == table.families and torch.equal(back.vectors, table.vectors) and back.meta == table.meta


def _table(dim: int, families: list[str], seed: int = 0) -> FamilyTable:
    g = torch.Generator().manual_seed(seed)
    return FamilyTable(families, torch.randn(len(families), dim, generator=g), [1] * len(families))


def test_learned_projection_copies_rows_and_reports() -> None:
    vocab = DomainVocabulary(["PF00001", "PF00002", "PF00003"], classes=["NRP"])
    table = _table(6, ["PF00003", "PF00001", "PF00077"])
    model = DomainLM(vocab, d_embed=6, **SIZES)
    before = model.table.weight.detach().clone()
    report = initialize_token_table(model, table, "learned", freeze=True)
    assert report.initialized == ["PF00001", "PF00003"] and report.missing == ["PF00002"]
    assert report.unused == ["PF00077"] and "1 domains have no member sequences" in report.summary()
    w = model.table.weight.detach()
    assert torch.equal(w[vocab.index("PF00001")], table.vectors[1])
    assert torch.equal(w[vocab.index("PF00003")], table.vectors[0])
    assert torch.equal(w[vocab.index("PF00002")], before[vocab.index("PF00002")])  # random row kept
    assert model.frozen_rows.nonzero().flatten().tolist() == [vocab.index("PF00001"), vocab.index("PF00003")]
    initialize_token_table(model, table, "learned", freeze=False)
    assert not model.frozen_rows.any()


def test_pca_projection_and_errors() -> None:
    families = [f"PF{i:05d}" for i in range(10)]
    vocab = DomainVocabulary(families)
    table = _table(20, families, seed=2)
    model = DomainLM(vocab, d_embed=4, **SIZES)
    with pytest.raises(InputError, match="d_embed=20"):
        initialize_token_table(model, table, "learned")
    initialize_token_table(model, table, "pca")
    rows = model.table.weight.detach()[vocab.domain_slice].double()
    centred = table.vectors.double() - table.vectors.double().mean(0)
    _, s, _ = torch.linalg.svd(centred, full_matrices=False)
    # the projections are the top principal components: zero mean, variances = top singular values^2
    assert torch.allclose(rows.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(rows.norm(dim=0), s[:4], rtol=1e-4)
    # fewer families than dimensions: the extra columns are zero
    wide = DomainLM(DomainVocabulary(families[:3]), d_embed=8, **SIZES)
    initialize_token_table(wide, _table(20, families[:3]), "pca")
    assert torch.equal(wide.table.weight.detach()[wide.vocab.domain_slice][:, 3:], torch.zeros(3, 5))
    with pytest.raises(InputError, match="no vocabulary domain"):
        initialize_token_table(model, _table(4, ["PF99999"]), "learned")
    with pytest.raises(InputError, match="projection='random'"):
        initialize_token_table(model, table, "random")
    with pytest.raises(InputError, match="must agree"):
        FamilyTable(["PF1"], torch.zeros(2, 3), [1])


def test_load_says_what_a_family_table_is(tmp_path: Path) -> None:
    (tmp_path / "text.pt").write_text("not a table\n")
    with pytest.raises(InputError, match=r"not a PyTorch file .* expected a family table .* --family-table") as err:
        FamilyTable.load(tmp_path / "text.pt")
    assert "trust" not in str(err.value)
    torch.save({"families": ["PF1"]}, tmp_path / "partial.pt")
    with pytest.raises(InputError, match=r"a torch file, but not a family table \(KeyError"):
        FamilyTable.load(tmp_path / "partial.pt")


@pytest.mark.parametrize("projection", ["learned", "pca"])
def test_lorentz_table_reads_back_the_family_vectors(projection: str) -> None:
    families = [f"PF{i:05d}" for i in range(1, 9)]
    vocab = DomainVocabulary(families + ["PF00099"], classes=["NRP"])
    table = _table(6, families + ["PF00077"], seed=4)
    table.vectors[0] *= 5.0  # one row far out (radius ~ 12 at K = 2): exp_o then log_o must still give it back
    torch.manual_seed(0)
    model = DomainLM(vocab, d_embed=6, **SIZES, geometry="lorentz", curvature=2.0)
    before = model.table_points().detach().clone()
    report = initialize_token_table(model, table, projection, freeze=True)
    assert report.initialized == families and report.missing == ["PF00099"]
    vectors = table.vectors[:8] if projection == "learned" else _pca_projection(table.vectors, 6)[:8]
    rows = torch.tensor([vocab.index(f) for f in families])
    tokens = rows.unsqueeze(0)
    with torch.no_grad():
        layer0 = model.embed(tokens, layers=[0])[0][0]
        assert layer0.dtype == torch.float32
        assert torch.allclose(layer0, vectors, rtol=1e-5, atol=1e-5)  # the body reads the family vectors
        points = model.table_points().double()
        k = float(model.table.manifold.k)
        # on the hyperboloid: x_0 = sqrt(k + |x_s|^2) (relative error; <x,x>_L + k of float32 coordinates
        # far out is mostly rounding)
        assert torch.allclose(points[:, 0], torch.sqrt(k + (points[:, 1:] ** 2).sum(-1)), rtol=1e-6, atol=0)
    other = vocab.index("PF00099")
    assert torch.equal(model.table_points()[other], before[other])  # random row kept
    assert model.frozen_rows.nonzero().flatten().tolist() == sorted(rows.tolist())
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.cat([tokens, torch.tensor([[other, vocab.unk_idx]])], 1)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[0], x[0]).backward()
        opt.step()
    with torch.no_grad():
        assert torch.allclose(model.embed(tokens, layers=[0])[0][0], vectors, rtol=1e-5, atol=1e-5)  # frozen
        assert not torch.equal(model.table_points()[other], before[other])
