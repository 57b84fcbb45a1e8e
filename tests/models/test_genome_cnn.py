import json

import pytest
import torch

from biostrata.data.dna.alphabet import encode_batch
from biostrata.errors import InputError
from biostrata.geometry.lorentz import lift, minkowski_inner
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
    (emb,) = model.embed(x).values()
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
    assert len(HyperbolicCNN(30, 2, curvature_mode="shared").manifolds) == 1
    per_block = HyperbolicCNN(30, 2, curvature_mode="per_block", blocks=3)
    assert len(per_block.manifolds) == 4
    assert len({id(b.manifold) for b in per_block.blocks}) == 3
    with pytest.raises(InputError, match=r"^curvature_mode='per_layer': use 'shared' or 'per_block'"):
        HyperbolicCNN(30, 2, curvature_mode="per_layer")


@pytest.mark.parametrize("name", ["cnn", "hcnn-s", "hcnn-m"])
def test_the_declared_geometry_is_that_of_every_layer(name):
    """config.GENOME_GEOMETRY, which reports read, says what ``layer_manifold`` gives for every layer."""
    from biostrata.config import GENOME_GEOMETRY
    from biostrata.geometry.lorentz import Lorentz

    model = build_model(name, 20, 2, channels=4, hidden=8)
    kinds = {type(model.layer_manifold(i)) for i in range(model.num_layers + 1)}
    assert kinds == ({type(None)} if GENOME_GEOMETRY[name] == "euclidean" else {Lorentz})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "resnet"}, "unknown model 'resnet'"),
        ({"pool": "max"}, "pool='max': use 'flatten' or 'mean'"),
        ({"num_classes": 1}, "num_classes=1: must be at least 2"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"name": "hcnn-s", "length": 30, "num_classes": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        build_model(**args)


def _f64(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


def test_hyperbolic_head_is_flatten_fc_relu_mlr_float64():
    """As in the reference (HGE): Lorentz flatten -> Lorentz FC -> Lorentz ReLU -> Lorentz MLR, the
    same skeleton as the Euclidean twin's flatten -> FC -> ReLU -> linear."""
    import geoopt

    torch.manual_seed(0)
    model = HyperbolicCNN(12, 3, channels=6, hidden=9).double().train()
    x = batch(length=12).double()
    k = model.manifold.kk.detach()
    man = geoopt.Lorentz(k=k)
    captured = {}
    last = model.blocks[-1].space
    model.blocks[-1].space = lambda s: captured.setdefault("s", last(s))
    logits = model(x)
    s = captured["s"]  # (B, C, L) space parts after the last block
    flat = lift(s.flatten(1), k)  # direct concatenation: time sqrt(k + sum |x_s|^2)
    assert torch.allclose(man.inner(flat, flat), -k.expand(4), atol=1e-9)
    fc = model.fc.linear
    u_s = flat[:, 1:] @ fc.weight.T + fc.bias + flat[:, :1] * model.fc.time_weight  # Lorentz FC
    h = lift(torch.relu(u_s), k)  # Lorentz ReLU: ReLU on the space part, time recomputed
    assert torch.allclose(logits, model.classifier(h), atol=1e-10)
    assert torch.allclose(model.embed(x)[model.num_layers], h, atol=1e-10)
    assert (u_s < 0).any()  # the ReLU is not a no-op here


def test_hcnn_m_hands_each_block_to_the_next_curvature_through_the_origin():
    """Block i + 1 (and the head) reads exp_o^{K_i+1}(log_o^{K_i}(block i's output)) (HGE), checked
    with geoopt's maps in float64."""
    import geoopt

    torch.manual_seed(1)
    model = HyperbolicCNN(10, 2, channels=5, hidden=7, curvature_mode="per_block").double()
    with torch.no_grad():
        for m, curv in zip(model.manifolds, (1.0, 0.5, 2.0, 0.8)):
            m.k.fill_(1 / curv)
    inputs, outputs = [], []
    for block in model.blocks:
        original = block.space

        def space(s, _f=original):
            inputs.append(s)
            outputs.append(_f(s))
            return outputs[-1]

        block.space = space
    model(batch(length=10).double())
    heads = []
    model.fc.space = lambda s, _f=model.fc.space: heads.append(s) or _f(s)
    inputs.clear(), outputs.clear()
    model(batch(length=10).double())
    received = [*inputs[1:], heads[0].view_as(outputs[-1])]
    for i, (out, got) in enumerate(zip(outputs, received)):
        src, dst = (geoopt.Lorentz(k=model.manifolds[j].k.detach()) for j in (i, i + 1))
        pts = lift(out, src.k).permute(0, 2, 1)
        expected = dst.expmap0(src.logmap0(pts)).permute(0, 2, 1)[:, 1:]
        assert torch.allclose(got, expected, atol=1e-10), f"block {i}"
        assert not torch.allclose(got, out, atol=1e-3)  # the curvatures differ, so the map is not the identity


@pytest.mark.parametrize("name", ["cnn", "hcnn-s"])
def test_short_runs_evaluate_with_the_batch_statistics(name):
    """bn_warm_start: after one training batch, eval mode on that batch equals train mode (the running
    statistics are that batch's), so a run of a few steps does not evaluate with the initial ones."""
    torch.manual_seed(2)
    x = batch(n=16, length=20)
    warm = build_model(name, 20, 2, channels=8, hidden=16)
    cold = build_model(name, 20, 2, channels=8, hidden=16, bn_warm_start=False)
    cold.load_state_dict(warm.state_dict())
    y_warm, y_cold = warm.train()(x), cold.train()(x)
    assert torch.allclose(y_warm, y_cold)
    warm_gap = (warm.eval()(x) - y_warm).abs().max()
    cold_gap = (cold.eval()(x) - y_cold).abs().max()
    # nn.BatchNorm1d keeps the unbiased variance (n / (n - 1)), so the Euclidean gap is not 0
    assert warm_gap < (1e-4 if name == "hcnn-s" else 1e-2) and warm_gap < 0.1 * cold_gap


@pytest.mark.parametrize("name", ["cnn", "hcnn-s", "hcnn-m"])
def test_layer_wise_embeddings(name):
    """embed(x, layers) -> {layer: states}: 0 the input, 1..3 the blocks, 4 (= -1) the head's features;
    the hyperbolic ones are points on the manifold layer_manifold(i) names."""
    torch.manual_seed(3)
    model = build_model(name, 20, 2, channels=8, hidden=16).eval()
    x = batch(n=5, length=20)
    assert model.num_layers == 4
    out = model.embed(x, layers=[0, 1, 3, -1])
    assert sorted(out) == [0, 1, 3, 4]
    hyperbolic = model.manifold is not None
    assert out[0].shape == ((5, 6, 20) if hyperbolic else (5, 5, 20))
    # 8 channels: 8 Euclidean ones, or time + 7 space dimensions
    assert out[1].shape == out[3].shape == (5, 8, 20) and out[4].shape == (5, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), model.classifier(out[4]))
        assert torch.allclose(model.embed(x, [2])[2], model.embed(x, [0, 1, 2, 3, 4])[2])
    for i, states in out.items():
        manifold = model.layer_manifold(i)
        if not hyperbolic:
            assert manifold is None
            continue
        k = manifold.kk.detach().double()
        err = (minkowski_inner(states.double(), states.double(), dim=1) + k).abs() / k
        assert err.max() < 1e-4, i
    if name == "hcnn-m":
        assert len({id(model.layer_manifold(i)) for i in range(5)}) == 4
    with pytest.raises(InputError, match="layer 5 does not exist; this model has layers 0..4"):
        model.embed(x, [5])
    assert model.embed(x, []) == {}


@pytest.mark.parametrize("name", ["cnn", "hcnn-s"])
def test_warm_start_counts_on_after_a_reload(name):
    """The batch count behind the warm-start momentum is saved with the model: a reloaded model's
    next batch is averaged in with momentum max(0.1, 1/n), not 1 (which would discard the stats)."""
    torch.manual_seed(4)
    xs = [batch(n=8, length=20, seed=i) for i in range(4)]
    kept = build_model(name, 20, 2, channels=8, hidden=16).train()
    for x in xs[:3]:
        kept(x)
    reloaded = build_model(name, 20, 2, channels=8, hidden=16).train()
    reloaded.load_state_dict(kept.state_dict())
    kept(xs[3]), reloaded(xs[3])
    for (key, a), b in zip(kept.state_dict().items(), reloaded.state_dict().values()):
        assert torch.allclose(a.float(), b.float()), key


@pytest.mark.parametrize("name", ["cnn", "hcnn-m"])
def test_save_and_load_round_trip(tmp_path, name):
    """The model family owns its file format: build_model's arguments and the weights, loaded safely."""
    from biostrata.models import GenomeCNN, load_model

    torch.manual_seed(5)
    model = build_model(name, 20, 3, channels=8, hidden=16, pool="mean").eval()
    model.save_pretrained(tmp_path / "m", note="kept")
    loaded, saved = load_model(tmp_path / "m")
    assert saved["note"] == "kept" and saved["architecture"]["pool"] == "mean" and not loaded.training
    assert saved["geometry"] == ("euclidean" if name == "cnn" else "lorentz")
    assert len(saved["curvatures"]) == {"cnn": 0, "hcnn-m": 4}[name]
    x = batch(n=3, length=20)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(GenomeCNN.from_pretrained(tmp_path / "m")(x), model(x))
    (tmp_path / "text.pt").write_text("not a model\n")
    with pytest.raises(InputError, match="text.pt: not a biostrata model file"):
        load_model(tmp_path / "text.pt")
    with pytest.raises(InputError, match="no such model file"):
        load_model(tmp_path / "missing.pt")


def test_model_files_without_a_radius_clip_load_with_the_earlier_one(tmp_path):
    """Files written before the batch norms' radius clip was an argument were trained with the clip at 5:
    they load with it; new files keep the clip they name (default: the reference's 10)."""
    from biostrata.models import load_model
    from biostrata.nn.lorentz import LorentzBatchNorm1d

    model = build_model("hcnn-s", 20, 2, channels=6, hidden=8, blocks=1, init_curvature=1.0)
    model.save_pretrained(tmp_path / "new")
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config["architecture"]["bn_max_radius"] == 10.0  # the default, named in the file

    def clips(m):
        return {b.max_radius for b in m.modules() if isinstance(b, LorentzBatchNorm1d)}

    assert clips(load_model(tmp_path / "new")[0]) == {10.0}
    architecture = {k: v for k, v in config["architecture"].items() if k != "bn_max_radius"}  # as files of /2 were
    blob = {"format": "biostrata-genome-classifier/2", "architecture": architecture, "state_dict": model.state_dict()}
    torch.save(blob, tmp_path / "old.pt")
    assert clips(load_model(tmp_path / "old.pt")[0]) == {5.0}
    assert "bn_max_radius" not in build_model("cnn", 20, 2, bn_max_radius=10.0).architecture  # Lorentz only
