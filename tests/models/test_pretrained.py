"""One model format: every family round-trips save_pretrained -> from_pretrained with identical outputs, reads no
pickle, and every file of the earlier formats (tests/fixtures/legacy, written by the code before it) still loads
through biostrata.load with the embeddings that code computed."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import biostrata
from biostrata.data.clusters.corpus import Cluster, DomainVocabulary
from biostrata.data.dna.alphabet import encode_batch
from biostrata.errors import DataNotFoundError, InputError
from biostrata.models.domain_lm import DomainLM
from biostrata.models.genome_cnn import GenomeCNN, build_model
from biostrata.models.init_table import FamilyTable
from biostrata.models.pretrained import FORMAT, load_pretrained

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
DNA = ["ACGTACGTAACCGGTTACGT", "TTTTACGCGCGAATTCCGGA"]
SENTENCES = [["PF00001", "PF00002", "PF00003"], ["PF00003", "PF00001"]]
PROTEINS = ["MKTAYIAKQR", "MSEQNNTEMTFQIQRIYTKDISFEAPNAPHVFQKDW"]


def _inputs(model):
    """The tensor each family embeds, of the inputs above."""
    if isinstance(model, GenomeCNN):
        return encode_batch(DNA, model.length)
    if isinstance(model, DomainLM):
        return model.tokenize([Cluster(str(i), tuple(s)) for i, s in enumerate(SENTENCES)])
    return model.tokenize(PROTEINS)


def _layers(model) -> dict[int, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in model.embed(_inputs(model), range(model.num_layers + 1)).items()}


def _no_pickle(monkeypatch):
    """Make every unpickling fail, so that a load that needs one shows."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model folder was read with pickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def _genome(name: str):
    torch.manual_seed(3)
    model = build_model(name, 20, 3, channels=6, hidden=8, kernel_size=3)
    model.train()
    with torch.no_grad():  # a step in training mode moves the batch norms' running statistics off their start
        model(encode_batch(DNA * 2, 20))
    return model.eval()


def _domain_lm(geometry: str, head: str | None = None):
    torch.manual_seed(4)
    vocab = DomainVocabulary(["PF00001", "PF00002", "PF00003"], classes=["NRP"], gene_separator=True)
    kw = {"curvature": 0.5} if geometry == "lorentz" else {}
    model = DomainLM(vocab, d_embed=8, d_model=8, n_layers=2, r=2, geometry=geometry, head=head, **kw)
    model.freeze_rows([5, 6])
    return model.eval()


FAMILIES = {
    "cnn": lambda: _genome("cnn"),
    "hcnn-s": lambda: _genome("hcnn-s"),
    "hcnn-m": lambda: _genome("hcnn-m"),
    "domain-lm": lambda: _domain_lm("euclidean"),
    "domain-lm distance head": lambda: _domain_lm("euclidean", "distance"),
    "domain-lm lorentz": lambda: _domain_lm("lorentz"),
}


@pytest.mark.parametrize("kind", list(FAMILIES))
def test_every_family_round_trips_with_identical_outputs_and_no_pickle(kind, tmp_path, monkeypatch) -> None:
    model = FAMILIES[kind]()
    want = _layers(model)
    folder = model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["biostrata"]["format"] == FORMAT and config["biostrata"]["code_version"]
    _no_pickle(monkeypatch)
    for loaded in (type(model).from_pretrained(folder), biostrata.load(folder), load_pretrained(folder)):
        assert type(loaded) is type(model) and not loaded.training
        got = _layers(loaded)
        assert sorted(got) == sorted(want)
        for layer in want:
            np.testing.assert_array_equal(got[layer], want[layer], err_msg=f"{kind} layer {layer}")
        assert loaded.state_dict().keys() == model.state_dict().keys()
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    if isinstance(model, DomainLM):
        assert torch.equal(loaded.frozen_rows, model.frozen_rows) and loaded.vocab.tokens == model.vocab.tokens
        assert config["architecture"]["geometry"] == model.geometry
    else:
        assert config["geometry"] == ("euclidean" if kind == "cnn" else "lorentz")
        assert len(config["curvatures"]) == {"cnn": 0, "hcnn-s": 1, "hcnn-m": 4}[kind]


def test_one_load_reads_config_json_once(tmp_path, monkeypatch) -> None:
    from biostrata.models import pretrained
    from biostrata.models.genome_cnn import load_model

    genome = _genome("cnn").save_pretrained(tmp_path / "cnn", class_labels=["a", "b", "c"])
    domain = _domain_lm("euclidean").save_pretrained(tmp_path / "lm")
    read = pretrained.read_config
    calls = []
    monkeypatch.setattr(pretrained, "read_config", lambda d: calls.append(d) or read(d))
    loads = {
        "biostrata.load": lambda: biostrata.load(genome),
        "load_pretrained": lambda: load_pretrained(genome),
        "from_pretrained": lambda: GenomeCNN.from_pretrained(genome),
        "load_model": lambda: load_model(genome),
        "DomainLM.load": lambda: DomainLM.load(domain),
    }
    for name, load in loads.items():
        calls.clear()
        load()
        assert len(calls) == 1, name
    assert load_model(genome)[1]["class_labels"] == ["a", "b", "c"]


def test_a_hyperbolic_model_keeps_its_learned_curvatures(tmp_path) -> None:
    model = _genome("hcnn-m")
    with torch.no_grad():
        for i, manifold in enumerate(model.manifolds):
            manifold.k.fill_(0.3 + 0.2 * i)  # as if training had moved them apart
    want = [float(m.curvature.detach()) for m in model.manifolds]
    loaded = GenomeCNN.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert [float(m.curvature.detach()) for m in loaded.manifolds] == want
    assert json.loads((tmp_path / "m" / "config.json").read_text())["curvatures"] == pytest.approx(want)


def test_protein_lms_of_both_backends_round_trip(tmp_path, monkeypatch) -> None:
    pytest.importorskip("esm")
    pytest.importorskip("transformers")
    from biostrata.models.esm_hf import TransformersESM, from_fair_esm
    from biostrata.models.protein_lm import FairESM, load_protein_lm, small_protein_lm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fair = small_protein_lm(num_layers=2, embed_dim=16, attention_heads=2, seed=2, max_residues=77).eval()
    hf = from_fair_esm(fair)
    for model, cls in ((fair, FairESM), (hf, TransformersESM)):
        want = _layers(model)
        folder = model.save_pretrained(tmp_path / cls.__name__)
        for loaded in (cls.from_pretrained(folder), biostrata.load(folder), load_protein_lm(folder)):
            assert type(loaded) is cls and loaded.max_residues == 77 and loaded.num_layers == 2
            got = _layers(loaded)
            for layer in want:
                np.testing.assert_allclose(got[layer], want[layer], rtol=0, atol=0, err_msg=f"{cls.__name__} {layer}")
        assert biostrata.load(folder, max_residues=12).max_residues == 12
    # transformers reads its folder as its own (the biostrata entry is one more config key)
    EsmModel = pytest.importorskip("transformers").EsmModel
    assert EsmModel.from_pretrained(tmp_path / "TransformersESM").config.biostrata["family"] == "transformers-esm"
    # and the fair-esm folder holds no pickle: it loads with unpickling made impossible
    _no_pickle(monkeypatch)
    assert type(biostrata.load(tmp_path / "FairESM")) is FairESM


def test_a_family_table_round_trips(tmp_path, monkeypatch) -> None:
    table = FamilyTable(["PF00001", "PF00002"], torch.randn(2, 5), [4, 1], {"layer": 6, "model": "esm"})
    folder = table.save_pretrained(tmp_path / "t")
    _no_pickle(monkeypatch)
    for back in (FamilyTable.from_pretrained(folder), FamilyTable.load(folder), biostrata.load(folder)):
        assert back.families == table.families and back.members == table.members and back.meta == table.meta
        assert torch.equal(back.vectors, table.vectors)


def test_files_of_every_earlier_format_load_with_the_outputs_they_gave() -> None:
    """Files written by the code before save_pretrained (tests/fixtures/legacy/make_legacy.py)."""
    pytest.importorskip("esm")
    pytest.importorskip("transformers")
    expected = np.load(LEGACY / "expected.npz")
    names = ["genome_cnn.pt", "genome_hcnn_m.pt", "domain_lm.pt", "domain_lm_lorentz.pt", "fair_esm.pt",
             "transformers_esm"]  # fmt: skip
    for name in names:
        model = biostrata.load(LEGACY / name)
        got = _layers(model)
        stem = name.removesuffix(".pt")
        keys = sorted(int(k.split("/")[1]) for k in expected.files if k.startswith(stem + "/"))
        assert sorted(got) == keys, name
        for layer in keys:
            np.testing.assert_allclose(got[layer], expected[f"{stem}/{layer}"], rtol=1e-6, atol=1e-6, err_msg=name)
    table = biostrata.load(LEGACY / "family_table.pt")
    np.testing.assert_array_equal(table.vectors.numpy(), expected["family_table/vectors"])
    assert table.meta == {"source": "legacy fixture"}
    assert biostrata.load(LEGACY / "fair_esm.pt").max_residues == 100


def test_an_earlier_file_saved_again_gives_the_same_outputs(tmp_path) -> None:
    """The way to move a file to the new format: load it, save_pretrained."""
    for name in ("genome_hcnn_m.pt", "domain_lm_lorentz.pt"):
        old = biostrata.load(LEGACY / name)
        new = biostrata.load(old.save_pretrained(tmp_path / name.removesuffix(".pt")))
        got, want = _layers(new), _layers(old)
        for layer in want:
            np.testing.assert_array_equal(got[layer], want[layer])


def test_bad_model_folders_get_one_line_errors(tmp_path) -> None:
    model = _genome("cnn")
    folder = model.save_pretrained(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())

    def write(**changes):
        (folder / "config.json").write_text(json.dumps({**config, **changes}))

    write(biostrata={**config["biostrata"], "format": "biostrata-model/9"})
    with pytest.raises(
        InputError, match=r"m/config\.json: format 'biostrata-model/9'; this biostrata reads biostrata-model/1"
    ):
        biostrata.load(folder)
    write(biostrata={**config["biostrata"], "family": "tree"})
    with pytest.raises(InputError, match="unknown model family 'tree'; known: genome-cnn, domain-lm"):
        biostrata.load(folder)
    write()
    with pytest.raises(InputError, match="holds a genome-cnn model, not a domain-lm; read it with biostrata.load"):
        DomainLM.from_pretrained(folder)
    write(architecture={**config["architecture"], "channels": 7})
    with pytest.raises(InputError, match="weights do not fit the architecture it declares"):
        biostrata.load(folder)
    write(architecture={k: v for k, v in config["architecture"].items() if k != "length"})
    with pytest.raises(InputError, match=r"m: a damaged model folder \(KeyError: 'length'\); save it again"):
        biostrata.load(folder)
    write()
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="model.safetensors: not a readable safetensors file"):
        biostrata.load(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(DataNotFoundError, match="model.safetensors: missing"):
        biostrata.load(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(InputError, match=r"config\.json: not JSON"):
        GenomeCNN.from_pretrained(folder)
    with pytest.raises(DataNotFoundError, match="no config.json"):
        GenomeCNN.from_pretrained(tmp_path)
