"""Tests of biostrata.models.esm_hf: transformers ESM beside fair-esm, with proof they agree."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from biostrata.data.clusters.proteins import ProteinRecord
from biostrata.data.embedding_store import EmbeddingStore
from biostrata.errors import DataNotFoundError, InputError, ParameterError
from biostrata.models.esm_hf import MAX_RESIDUES_KEY, TransformersESM, from_fair_esm, hub_name, transformers_output
from biostrata.models.extract import extract_embeddings
from biostrata.models.protein_lm import load_protein_lm, small_protein_lm

pytest.importorskip("transformers")


def proteins(shared_data: Path) -> list[ProteinRecord]:
    """Real protein segments when the data folder is there (else random ones), mixed lengths, one
    longer than the 60-residue window used below."""
    rng = random.Random(0)
    real = shared_data / "bgc" / "mibig_domains.tsv"
    if real.is_file():
        from biostrata.data.clusters.proteins import read_domain_proteins

        records = read_domain_proteins(real)
        short = [r for r in records if 20 <= len(r.sequence) <= 58]
        long = [r for r in records if 130 <= len(r.sequence) <= 200]
        return rng.sample(short, 7) + rng.sample(long, 1)
    aa = "ACDEFGHIKLMNPQRSTVWY"
    lengths = [5, 17, 33, 58, 12, 40, 150]
    return [ProteinRecord(f"p{i}", "".join(rng.choice(aa) for _ in range(n))) for i, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def pair() -> tuple:
    """A random 3-layer ESM-2 of width 64 in fair-esm, and the same weights in transformers' EsmModel."""
    fair = small_protein_lm(num_layers=3, embed_dim=64, attention_heads=4, seed=3, max_residues=60).eval()
    with torch.no_grad():  # layer norms away from their identity initialization, so that they are tested too
        for name, p in fair.model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return fair, from_fair_esm(fair)


def test_every_layer_agrees_with_fair_esm_in_float32(pair, tmp_path: Path, shared_data: Path) -> None:
    fair, hf = pair
    assert isinstance(hf, TransformersESM) and hf.num_layers == 3 and hf.embed_dim == 64
    records = proteins(shared_data)
    assert max(len(r.sequence) for r in records) > fair.max_residues  # windows are exercised
    stores = {}
    for name, plm in (("fair", fair), ("hf", hf)):
        stores[name] = extract_embeddings(plm, records, tmp_path / f"{name}.h5", layers=[0, 1, 2, 3],
                                          poolings=["mean", "bos", "per_token"], token_budget=200, long="window",
                                          overlap=20, progress=False)  # fmt: skip
    with EmbeddingStore(stores["fair"]) as a, EmbeddingStore(stores["hf"]) as b:
        ids = a.ids
        for layer in range(4):
            for pooling in ("mean", "bos"):
                diff = np.abs(a.array(pooling, layer, ids) - b.array(pooling, layer, ids)).max()
                assert diff < 1e-5, (layer, pooling, diff)
            for sid in ids:
                assert np.abs(a.per_token(sid, layer) - b.per_token(sid, layer)).max() < 1e-5


def test_directory_round_trip_offline(pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, hf = pair
    directory = hf.save_pretrained(tmp_path / "esm2_tiny")
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in directory.iterdir()}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_protein_lm(directory)
    assert isinstance(loaded, TransformersESM) and loaded.name == "esm2_tiny" and loaded.max_residues == 60
    assert load_protein_lm(directory, max_residues=100).max_residues == 100  # an explicit limit wins
    tokens = hf.tokenize(["MKVLAG", "WWC"])
    assert torch.equal(tokens, loaded.tokenize(["MKVLAG", "WWC"]))
    with torch.no_grad():
        a, b = hf.embed(tokens, [0, -1]), loaded.embed(tokens, [0, -1])
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_the_saved_length_limit_and_a_torn_vocab_write(pair, tmp_path: Path, monkeypatch) -> None:
    """A folder saved before the limit was kept (no key in config.json) loads with 1022; a vocab.txt
    write that fails half way leaves the one before it whole, and no temporary file."""
    _, hf = pair
    directory = hf.save_pretrained(tmp_path / "m")
    config = json.loads((directory / "config.json").read_text())
    assert config[MAX_RESIDUES_KEY] == 60
    del config[MAX_RESIDUES_KEY]
    (directory / "config.json").write_text(json.dumps(config))
    assert load_protein_lm(directory).max_residues == 1022
    before = (directory / "vocab.txt").read_text()

    def torn(self: Path, text: str, *args, **kwargs) -> int:
        with open(self, "w") as handle:
            handle.write(text[:7])
        raise OSError("no space left on device")

    monkeypatch.setattr(Path, "write_text", torn)
    with pytest.raises(OSError, match="no space"):
        hf.save_pretrained(directory)
    monkeypatch.undo()
    assert (directory / "vocab.txt").read_text() == before
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_a_published_masked_lm_folder_loads_quietly_and_missing_weights_are_an_error(pair, tmp_path, capfd) -> None:
    """Published ESM-2 folders hold EsmForMaskedLM: loading them as EsmModel leaves the lm_head unused, which
    transformers reports in a coloured table with a bar on every load; that stays quiet unless progress is asked
    for, and a weight that EsmModel needs but the files lack stops the load."""
    from safetensors.torch import load_file, save_file
    from transformers import EsmForMaskedLM

    _, hf = pair
    directory = tmp_path / "esm2_mlm"
    masked = EsmForMaskedLM(hf.model.config)
    masked.esm.load_state_dict(hf.model.state_dict(), strict=False)
    masked.save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(sorted(hf.vocab, key=hf.vocab.get)) + "\n")
    capfd.readouterr()
    model = load_protein_lm(directory)
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "UNEXPECTED" not in err and "Loading weights" not in err and "\x1b[" not in err
    tokens = model.tokenize(["MKTAYIAKQR"])
    with torch.no_grad():
        last = hf.num_layers
        torch.testing.assert_close(model.embed(tokens, [last])[last], hf.embed(tokens, [last])[last], rtol=0, atol=1e-6)
    from transformers.utils import logging

    before = logging.is_progress_bar_enabled()
    for progress in (True, False):  # the bars follow progress inside, and are as they were after
        with transformers_output(progress):
            assert logging.is_progress_bar_enabled() is progress
        assert logging.is_progress_bar_enabled() is before
    weights = load_file(directory / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layer.1." not in k}, directory / "model.safetensors")
    with pytest.raises(InputError, match=r"esm2_mlm: the files lack \d+ weight\(s\) of EsmModel .*incomplete download"):
        load_protein_lm(directory)


@pytest.mark.parametrize("typo", ["./my_esm", "/tmp/nonexist/esm", "~/esm", "models/esm2/small", "my_esm/", "esm.pt",
                                  "weights.safetensors"])  # fmt: skip
@pytest.mark.parametrize("backend", ["auto", "transformers", "fair-esm"])
def test_a_path_that_does_not_exist_is_not_a_hub_name(tmp_path, monkeypatch, typo: str, backend: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError) as err:
        load_protein_lm(typo, backend=backend)
    message = str(err.value)
    assert message.startswith(f"{typo}: no such file or folder; a model is a transformers folder (config.json")
    assert "\n" not in message and "hf download" not in message and "cache" not in message


def test_a_home_folder_and_an_org_name_with_fair_esm(pair, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    pair[1].save_pretrained(tmp_path / "esm")
    assert isinstance(load_protein_lm("~/esm"), TransformersESM)  # as --model=~/esm, which no shell expands
    with pytest.raises(ParameterError, match="me/esm: fair-esm .* is a Hugging Face name") as caught:
        load_protein_lm("me/esm", backend="fair-esm")
    assert caught.value.param == "backend"


def test_a_name_without_network_or_cache_says_how_to_load_a_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(
        DataNotFoundError,
        match=r"facebook/esm2_t6_8M_UR50D: not in the Hugging Face cache.*load that folder by its path",
    ):
        load_protein_lm("esm2_t6_8M_UR50D")
    assert hub_name("esm2_t6_8M_UR50D") == "facebook/esm2_t6_8M_UR50D" and hub_name("me/model") == "me/model"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        load_protein_lm(tmp_path / "empty")


@pytest.mark.parametrize("backend", ["fair", "hf"])
def test_bf16_on_the_cpu_stays_close_and_fp16_is_refused(pair, tmp_path: Path, backend: str, shared_data: Path) -> None:
    plm = dict(zip(("fair", "hf"), pair))[backend]
    records = proteins(shared_data)[:4]
    ref = extract_embeddings(plm, records, tmp_path / "32.h5", layers=[0, -1], progress=False, precision="fp32")
    low = extract_embeddings(plm, records, tmp_path / "16.h5", layers=[0, -1], progress=False, precision="bf16")
    with EmbeddingStore(ref) as a, EmbeddingStore(low) as b:
        assert np.array_equal(a.array("mean", 0), b.array("mean", 0, a.ids))  # a table lookup: no product to lower
        x, y = a.array("mean", 3), b.array("mean", 3, a.ids)
        assert 0 < np.abs(x - y).max() < 0.05 * np.abs(x).max()  # bf16 keeps 8 bits of mantissa
    with pytest.raises(InputError, match=r"precision='fp16': float16 needs a GPU"):
        extract_embeddings(plm, records, tmp_path / "f.h5", progress=False, precision="fp16", device="cpu")
