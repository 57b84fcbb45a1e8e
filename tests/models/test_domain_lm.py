"""Tests of biostrata.models.domain_lm: BiGCARP's ByteNet LM, its checkpoints and layer outputs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from sequence_models.convolutional import ByteNetLM

from biostrata.data.clusters.corpus import Cluster, DomainVocabulary
from biostrata.errors import DataNotFoundError, InputError
from biostrata.models.domain_lm import PRESETS, DomainLM

TINY = dict(d_embed=12, d_model=16, n_layers=3, kernel_size=3, r=4, slim=True, activation="gelu")


@pytest.fixture()
def vocab() -> DomainVocabulary:
    return DomainVocabulary([f"PF{i:05d}" for i in range(1, 21)], classes=["NRP", "RiPP"])


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    """Random values in every parameter (LayerNorms included) so no weight is trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _batch(vocab: DomainVocabulary) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(vocab.unk_idx, len(vocab), (3, 9), generator=g)
    x[0, 0], x[1, 4] = vocab.mask_idx, vocab.mask_idx
    x[2, 6:] = vocab.pad_idx
    return x


def _bytenet_logits(net: ByteNetLM, x: torch.Tensor, pad: int) -> torch.Tensor:
    """Logits of a sequence-models ByteNetLM with pad positions masked, as BiGCARP calls it."""
    with torch.no_grad():
        return net.eval()(x, input_mask=(x != pad).unsqueeze(-1).float())


def _sm_checkpoint(net: ByteNetLM, vocab: DomainVocabulary, name: str) -> dict:
    tokens, p2d = vocab.to_sequence_models()
    return {"model": name, "model_state_dict": net.state_dict(), "tokens": tokens, "pfam_to_domain": p2d, **TINY}


def test_sequence_models_checkpoint_reproduces_logits(tmp_path: Path, vocab: DomainVocabulary) -> None:
    net = ByteNetLM(
        len(vocab), 12, 16, 3, 3, 4, padding_idx=vocab.mask_idx, final_ln=True, slim=True, activation="gelu"
    )
    _perturb(net)
    path = tmp_path / "bigcarp_random.pt"
    torch.save(_sm_checkpoint(net, vocab, "bigcarp_random"), path)
    model = DomainLM.load(path)
    x = _batch(vocab)
    assert torch.equal(model(x), _bytenet_logits(net, x, vocab.pad_idx))
    assert model.vocab.tokens == vocab.tokens and not model.frozen_rows.any()


def test_frozen_variant_checkpoint(tmp_path: Path, vocab: DomainVocabulary) -> None:
    n_frozen = len(vocab) - vocab.unk_idx - 1  # the domain rows, as in bigcarp_esm1bfrozen
    net = ByteNetLM(
        len(vocab),
        12,
        16,
        3,
        3,
        4,
        padding_idx=vocab.mask_idx,
        final_ln=True,
        slim=True,
        activation="gelu",
        n_frozen_embs=n_frozen,
    )
    _perturb(net, seed=3)
    assert "embedder.embedder.frozen.weight" in net.state_dict()
    path = tmp_path / "bigcarp_esm1bfrozen.pt"
    torch.save(_sm_checkpoint(net, vocab, "bigcarp_esm1bfrozen"), path)
    model = DomainLM.load(path)
    x = _batch(vocab)
    assert torch.equal(model(x), _bytenet_logits(net, x, vocab.pad_idx))
    assert model.frozen_rows.nonzero().flatten().tolist() == list(range(vocab.unk_idx + 1, len(vocab)))


def test_saved_checkpoint_loads_in_sequence_models(tmp_path: Path, vocab: DomainVocabulary) -> None:
    from sequence_models.pretrained import load_model_and_alphabet

    model = DomainLM(vocab, **TINY)
    _perturb(model.net, seed=5)
    path = tmp_path / "bigcarp_random.pt"
    model.save_sequence_models(path)
    carp, collater = load_model_and_alphabet(str(path))
    cluster = Cluster("B", ("PF00003", "PF00001", "PF00020", "PF00099"))
    (tokens,) = collater([(";".join(cluster.domains),)])
    assert tokens[0].tolist() == vocab.encode(cluster).tolist()  # PF00099 -> UNK in both
    with torch.no_grad():
        theirs = carp(tokens, logits=True)["logits"]
        assert torch.equal(model.eval()(tokens), theirs)
    assert torch.equal(DomainLM.load(path)(tokens), model(tokens))


def test_load_by_name_from_hub_cache(tmp_path: Path, vocab: DomainVocabulary, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    model = DomainLM(vocab, **TINY)
    model.save_sequence_models(tmp_path / "checkpoints" / "bigcarp_random.pt")
    loaded = DomainLM.load("bigcarp_random")
    assert torch.equal(loaded.table.weight, model.table.weight)

    def offline(url: str, dst: str, progress: bool = False) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DataNotFoundError, match="bigcarp_esm1bfrozen.*could not be downloaded"):
        DomainLM.load("bigcarp_esm1bfrozen")
    with pytest.raises(DataNotFoundError, match="nothere.pt"):
        DomainLM.load(tmp_path / "nothere.pt")


def test_bad_checkpoints(tmp_path: Path, vocab: DomainVocabulary) -> None:
    path = tmp_path / "x.pt"
    torch.save({"model_state_dict": {}}, path)
    with pytest.raises(InputError, match="missing key"):
        DomainLM.load(path)
    data = DomainLM(vocab, **TINY).checkpoint()
    data["d_model"] = 32
    torch.save(data, path)
    with pytest.raises(InputError, match="do not fit"):
        DomainLM.load(path)
    path.write_text("not a checkpoint\n")
    with pytest.raises(
        InputError,
        match=r"not a PyTorch file .* expected a model folder of `biostrata pretrain`, a sequence-models BiGCARP checkpoint",
    ) as err:
        DomainLM.load(path)
    assert "trust" not in str(err.value)


def test_embed_layers(vocab: DomainVocabulary) -> None:
    model = DomainLM(vocab, **TINY).eval()
    _perturb(model.net, seed=7)
    x = _batch(vocab)
    with torch.no_grad():
        out = model.embed(x, layers=[0, 2, -1])
        assert list(out) == [0, 2, 3]
        assert torch.equal(out[0], model.table.weight[x])
        assert out[0].shape == (3, 9, 12) and out[3].shape == (3, 9, 16)
        # the last block's output is what the LM head normalizes and decodes
        assert torch.allclose(model.decode(model.net.last_norm(out[3])), model(x), atol=1e-5)
        # padding does not change the states at real positions (row 2 has 6 real tokens)
        padded = model.embed(x, layers=[1, 3])
        alone = model.embed(x[2:, :6], layers=[1, 3])
        for layer in (1, 3):
            assert torch.allclose(alone[layer][0], padded[layer][2, :6], atol=1e-6)
    with pytest.raises(InputError, match="layer 4 does not exist"):
        model.embed(x, layers=[4])
    with pytest.raises(InputError, match=r"token ids must lie in \[0, 26\)"):
        model(torch.tensor([[0, 26]]))


def test_mask_token_embeds_to_zero_at_init(vocab: DomainVocabulary) -> None:
    model = DomainLM(vocab, **TINY)
    assert torch.equal(model.table.weight[vocab.mask_idx], torch.zeros(12))  # padding_idx = mask, as BiGCARP
    assert model.table.weight[vocab.pad_idx].abs().sum() > 0


def test_frozen_rows_do_not_move(vocab: DomainVocabulary) -> None:
    torch.manual_seed(0)
    model = DomainLM(vocab, **TINY)
    rows = torch.arange(vocab.unk_idx + 1, vocab.unk_idx + 11)
    model.freeze_rows(rows)
    before = model.table.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = _batch(vocab)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
        opt.step()
    after = model.table.weight.detach()
    assert torch.equal(after[rows], before[rows])
    free = torch.tensor([vocab.unk_idx + 12, vocab.unk_idx + 15])
    assert not torch.equal(after[free], before[free])
    twin = copy.deepcopy(model)  # e.g. weight averaging copies the model: rows stay frozen
    twin(x).sum().backward()
    assert twin.table.weight.grad[rows].abs().sum() == 0 and twin.table.weight.grad[free].abs().sum() > 0


def test_presets(vocab: DomainVocabulary) -> None:
    big_vocab = DomainVocabulary([f"PF{i:05d}" for i in range(19450)], classes=[f"type{i}" for i in range(55)])
    assert len(big_vocab) == 19509  # BiGCARP's vocabulary size
    model = DomainLM.from_preset("bigcarp", big_vocab)
    n_params = sum(p.numel() for p in model.parameters())
    assert model.table.weight.numel() == 19509 * 1280
    assert 33e6 < n_params < 35e6  # ~34M, as published
    assert DomainLM.from_preset("small", vocab).config == {
        **PRESETS["small"],
        "geometry": "euclidean",
        "curvature": 1.0,
        "head": "linear",
    }
    with pytest.raises(InputError, match="preset='huge'"):
        DomainLM.from_preset("huge", vocab)
    with pytest.raises(InputError, match="unknown DomainLM option"):
        DomainLM.from_preset("small", vocab, width=3)
    hyper = DomainLM.from_preset("small", vocab, geometry="lorentz", curvature=0.5, n_layers=1)
    assert hyper.geometry == "lorentz" and hyper.config["curvature"] == 0.5 and hyper.config["n_layers"] == 1


# ----------------------------------------------------------------------------------- lorentz geometry
def _lorentz(vocab: DomainVocabulary, curvature: float = 1.0, seed: int = 0) -> DomainLM:
    """A float64 lorentz model with every weight random (table rows well away from the origin)."""
    torch.manual_seed(seed)
    model = DomainLM(vocab, **TINY, geometry="lorentz", curvature=curvature).double()
    _perturb(model.net, seed=seed)
    with torch.no_grad():  # the perturbation gave every k a random value: put the curvature back
        for name, p in model.net.named_parameters():
            if name.endswith("manifold.k"):
                p.fill_(1.0 / curvature)
        model.table.space[vocab.mask_idx] = 0.0  # the mask row is the origin, as built
        model.table.space.mul_(4.0)  # rows at |e| ~ 4, radius ~ 2
    return model


def _minkowski(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """<x, y>_L = -x_0 y_0 + x_s . y_s along the last axis, broadcast."""
    return -x[..., 0] * y[..., 0] + (x[..., 1:] * y[..., 1:]).sum(-1)


def test_lorentz_options_are_validated(vocab: DomainVocabulary) -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match=r"curvature=.*finite number > 0"):
            DomainLM(vocab, **TINY, geometry="lorentz", curvature=bad)
    with pytest.raises(InputError, match=r"geometry='poincare': choose one of \['euclidean', 'lorentz'\]"):
        DomainLM(vocab, **TINY, geometry="poincare")
    with pytest.raises(InputError, match="curvature=2.0: only a lorentz model has a curvature"):
        DomainLM(vocab, **TINY, curvature=2.0)
    with pytest.raises(InputError, match="geometry is 'euclidean'.*read model.table.weight"):
        DomainLM(vocab, **TINY).table_points()


@pytest.mark.parametrize("curvature", [0.5, 1.0, 3.0])
def test_lorentz_table_stays_on_the_hyperboloid_and_freezes_rows(vocab: DomainVocabulary, curvature: float) -> None:
    model = DomainLM(vocab, **TINY, geometry="lorentz", curvature=curvature).double()
    k = float(model.table.manifold.k)  # 1 / curvature, rounded to float32 when the model was built
    assert k == pytest.approx(1.0 / curvature, rel=1e-7)
    origin = torch.zeros(1 + 12, dtype=torch.float64)
    origin[0] = k**0.5
    assert torch.equal(model.table_points()[vocab.mask_idx], origin)  # the mask token embeds to the origin
    rows = torch.arange(vocab.unk_idx + 1, vocab.unk_idx + 8)
    model.freeze_rows(rows)
    before = model.table.space.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)  # big steps: rows move far
    x = _batch(vocab)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
        assert model.table.space.grad[rows].abs().sum() == 0 and model.table.space.grad[vocab.mask_idx].abs().sum() == 0
        opt.step()
    points = model.table_points().detach()
    assert points.shape == (len(vocab), 13)
    assert torch.allclose(_minkowski(points, points), torch.full((len(vocab),), -k, dtype=torch.float64), atol=1e-12)
    assert (points[:, 0] > 0).all()
    after = model.table.space.detach()
    assert torch.equal(after[rows], before[rows]) and torch.equal(after[vocab.mask_idx], before[vocab.mask_idx])
    free = sorted(set(x.flatten().tolist()) - set(rows.tolist()) - {vocab.mask_idx})
    assert len(free) > 5 and (after[free] - before[free]).abs().amax(1).min() > 0.05  # rows in the batch moved
    assert torch.equal(model.table_points()[vocab.mask_idx], origin)
    twin = copy.deepcopy(model)  # copies keep their frozen rows
    twin(x).sum().backward()
    assert twin.table.space.grad[rows].abs().sum() == 0


@pytest.mark.parametrize("curvature", [0.5, 1.0, 3.0])
def test_lorentz_body_reads_the_log_map_and_logits_are_distances(vocab: DomainVocabulary, curvature: float) -> None:
    model = _lorentz(vocab, curvature).eval()
    k = float(model.table.manifold.k)
    assert k == 1.0 / curvature  # set in float64 by _lorentz
    x = _batch(vocab)
    with torch.no_grad():
        layer0 = model.embed(x, layers=[0])[0]
        # log_o(x) = sqrt(k) arccosh(x_0 / sqrt(k)) x_s / |x_s|, written out from the points
        pts = model.table_points()[x]
        norm = pts[..., 1:].norm(dim=-1, keepdim=True)
        expected = k**0.5 * torch.acosh(pts[..., :1] / k**0.5) * pts[..., 1:] / norm.clamp_min(1e-300)
        assert layer0.dtype == torch.float64 and layer0.shape == (3, 9, 12)
        assert torch.allclose(layer0, expected, atol=1e-10)
        assert layer0.norm(dim=-1).max() > 1.0  # rows far enough out that log_o differs from the space part
        assert torch.equal(layer0[0, 0], torch.zeros(12, dtype=torch.float64))  # mask token: origin
        assert torch.equal(model.table.weight[x], layer0)
        # output: y = exp_o(W h + b) (radius-clipped), logit_c = -sqrt(k) arccosh(-<y, p_c>_L / k) / tau + b_c
        h = model.hidden(x)
        head = model.net.decoder
        u = h @ head.linear.weight.T + head.linear.bias
        r = u.norm(dim=-1, keepdim=True)
        assert r.max() / k**0.5 < 5.0  # no clip: the formula below holds as written
        y = torch.cat([k**0.5 * torch.cosh(r / k**0.5), k**0.5 * torch.sinh(r / k**0.5) * u / r], -1)
        ps = head.logits.prototypes.space
        p = torch.cat([torch.sqrt(k + (ps**2).sum(-1, keepdim=True)), ps], -1)
        dist = k**0.5 * torch.acosh(-_minkowski(y[..., None, :], p) / k)
        expected = -dist / head.logits.tau + head.logits.bias
        assert torch.allclose(model(x), expected, atol=1e-9)
        assert torch.allclose(model.decode(h), expected, atol=1e-9)  # through the [1, N, d] path
        assert torch.allclose(model.masked_logits(x, x == vocab.mask_idx), expected[x == vocab.mask_idx], atol=1e-9)
        out = model.embed(x, layers=[-1])
        assert torch.allclose(model.decode(model.net.last_norm(out[3])), model(x), atol=1e-9)


def test_lorentz_output_is_clipped_far_out(vocab: DomainVocabulary) -> None:
    from biostrata.nn.lorentz import HEAD_MAX_RADIUS

    model = DomainLM(vocab, **TINY, geometry="lorentz", curvature=2.0)
    with torch.no_grad():
        model.net.decoder.linear.weight.mul_(1e4)  # states would land at radius ~5000: sinh overflows float32
    y = model.net.decoder.points(model.hidden(_batch(vocab)))
    k = 0.5
    radius = torch.acosh(y[..., 0].double() / k**0.5)
    assert torch.isfinite(y).all() and radius.max() <= HEAD_MAX_RADIUS + 1e-3 and radius.max() > HEAD_MAX_RADIUS - 1e-3
    assert torch.isfinite(model(_batch(vocab))).all()


def test_lorentz_checkpoint_round_trip(tmp_path: Path, vocab: DomainVocabulary) -> None:
    model = _lorentz(vocab, curvature=2.0).float().eval()
    model.freeze_rows([vocab.unk_idx + 1, vocab.unk_idx + 4])
    path = tmp_path / "hyper.pt"
    model.save_sequence_models(path)
    data = torch.load(path, weights_only=True)
    assert data["geometry"] == "lorentz" and data["curvature"] == 2.0
    assert (
        "embedder.embedder.space" in data["model_state_dict"]
        and "decoder.logits.prototypes.space" in data["model_state_dict"]
    )
    back = DomainLM.load(path)
    x = _batch(vocab)
    assert back.geometry == "lorentz" and back.config == model.config
    assert back.frozen_rows.nonzero().flatten().tolist() == [vocab.unk_idx + 1, vocab.unk_idx + 4]
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
        ours, theirs = model.embed(x, [0, 1, -1]), back.embed(x, [0, 1, -1])
        assert all(torch.equal(ours[i], theirs[i]) for i in ours)
        assert torch.equal(back.table_points(), model.table_points())
    # an older euclidean checkpoint has neither key: it loads as euclidean
    old = DomainLM(vocab, **TINY).checkpoint()
    del old["geometry"], old["curvature"]
    torch.save(old, path)
    assert DomainLM.load(path).geometry == "euclidean" and DomainLM.load(path).config["curvature"] == 1.0
    # lorentz weights under a euclidean declaration do not fit
    data["geometry"] = "euclidean"
    del data["curvature"]
    torch.save(data, path)
    with pytest.raises(InputError, match="do not fit"):
        DomainLM.load(path)
    data["geometry"], data["curvature"] = "lorentz", -1.0
    torch.save(data, path)
    with pytest.raises(InputError, match=r"hyper.pt: curvature=-1.0"):
        DomainLM.load(path)


def test_euclidean_distance_head_is_the_flat_control(vocab: DomainVocabulary, tmp_path) -> None:
    torch.manual_seed(0)
    model = DomainLM(vocab, **TINY, head="distance").double().eval()
    assert model.config["head"] == "distance" and model.geometry == "euclidean"
    assert DomainLM(vocab, **TINY).config["head"] == "linear"
    assert DomainLM(vocab, **TINY, geometry="lorentz").config["head"] == "distance"
    with pytest.raises(InputError, match="head='linear'"):
        DomainLM(vocab, **TINY, geometry="lorentz", head="linear")
    with pytest.raises(InputError, match="head='dot'"):
        DomainLM(vocab, **TINY, head="dot")
    x = _batch(vocab)
    with torch.no_grad():
        # logit_c = -|W h + b - p_c| / tau + b_c, written out
        h = model.hidden(x)
        head = model.net.decoder
        u = h @ head.linear.weight.T + head.linear.bias
        dist = (u[..., None, :] - head.prototypes).pow(2).sum(-1).sqrt()
        expected = -dist / head.tau + head.bias
        assert float(head.tau) == pytest.approx(0.1)
        assert torch.allclose(model(x), expected, atol=1e-9)
        assert torch.allclose(model.decode(h), expected, atol=1e-9)
        # the same start as the lorentz head: states near the origin (|u| ~ 0.5), prototypes at |p| ~ 1
        assert 0.2 < float(u.norm(dim=-1).mean()) < 1.0 and 0.5 < float(head.prototypes.norm(dim=-1).mean()) < 1.5
    model.save_sequence_models(tmp_path / "m.pt")
    back = DomainLM.load(tmp_path / "m.pt").double()
    assert back.config == model.config
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-12)
