import pytest
import torch

from biostrata.data.alphabet import encode_batch
from biostrata.geometry.lorentz import minkowski_inner
from biostrata.models import EuclideanCNN, HyperbolicCNN, build_model


def batch(n=4, length=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    seqs = ["".join("ACGT"[i] for i in torch.randint(0, 4, (int(length * 0.8),), generator=g)) for _ in range(n)]
    return encode_batch(seqs, length)


@pytest.mark.parametrize("name", ["cnn", "hcnn-s", "hcnn-m"])
@pytest.mark.parametrize("pool", ["flatten", "mean"])
def test_models_and_heads(name, pool):
    model = build_model(name, 30, 3, pool=pool, channels=8, hidden=16)
    x = batch()
    logits = model(x)
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    emb = model.embed(x)
    assert emb.shape == (4, 16)
    if model.manifold is not None:
        k = model.manifold.kk.detach().double()
        err = (minkowski_inner(emb.detach().double(), emb.detach().double(), dim=1) + k).abs() / k
        assert err.max() < 1e-4
        assert (emb[:, 0] > 0).all()


def test_flatten_size_grows_with_length_mean_does_not():
    def params(m):
        return sum(p.numel() for p in m.parameters())

    for cls in (EuclideanCNN, HyperbolicCNN):
        assert params(cls(300, 2)) > params(cls(70, 2))
        assert params(cls(300, 2, pool="mean")) == params(cls(70, 2, pool="mean"))


def test_parameter_counts_match_the_paper():
    # ~1.2M at length 70, ~5M at 300, ~16.4M at 1000 (ANCHORS.md section 1)
    counts = {L: sum(p.numel() for p in HyperbolicCNN(L, 2).parameters()) for L in (70, 300, 1000)}
    assert counts[70] == pytest.approx(1.2e6, rel=0.05)
    assert counts[300] == pytest.approx(5.0e6, rel=0.05)
    assert counts[1000] == pytest.approx(16.4e6, rel=0.01)


def test_curvature_modes():
    assert len(HyperbolicCNN(30, 2, curvature="shared").manifolds) == 1
    per_block = HyperbolicCNN(30, 2, curvature="per_block", blocks=3)
    assert len(per_block.manifolds) == 4
    assert len({id(b.manifold) for b in per_block.blocks}) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "resnet"}, "unknown model 'resnet'"),
        ({"pool": "max"}, "pool must be 'flatten' or 'mean'"),
        ({"num_classes": 1}, "num_classes must be >= 2"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"name": "hcnn-s", "length": 30, "num_classes": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        build_model(**args)
