"""Tests of biostrata.models.protein_lm: ESM tokenizing, layer-wise outputs, saving and loading."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from esm.data import Alphabet
from esm.model.esm1 import ProteinBertModel

from biostrata.errors import DataNotFoundError, InputError
from biostrata.models.protein_lm import FairESM, ProteinLM, load_protein_lm, small_protein_lm


def test_tokenize_follows_esm_alphabet() -> None:
    plm = small_protein_lm(2, 16, 2)
    a = plm.alphabet
    tokens = plm.tokenize(["MKV", "a"])
    assert tokens.tolist() == [
        [a.cls_idx, a.get_idx("M"), a.get_idx("K"), a.get_idx("V"), a.eos_idx],
        [a.cls_idx, a.get_idx("A"), a.eos_idx, a.padding_idx, a.padding_idx],
    ]
    assert plm.tokenize(["J"])[0, 1] == a.unk_idx
    ref = a.get_batch_converter()([("x", "MKVLA")])[2]
    assert torch.equal(plm.tokenize(["MKVLA"]), ref)


def _same_outputs(a: ProteinLM, b: ProteinLM, seqs: list[str]) -> None:
    tokens = a.tokenize(seqs)
    with torch.no_grad():
        ra, rb = a.embed(tokens, [0, -1]), b.embed(tokens, [0, -1])
    for k in ra:
        assert torch.equal(ra[k], rb[k])


def test_save_and_load_esm2_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plm = small_protein_lm(num_layers=2, embed_dim=16, attention_heads=2, max_residues=100)
    path = tmp_path / "small.pt"
    plm.save_fair_esm(path)
    loaded = load_protein_lm(path)
    assert loaded.num_layers == 2 and loaded.embed_dim == 16 and loaded.max_residues == 100
    _same_outputs(plm.eval(), loaded, ["MKVLAG", "WW"])
    # the published ESM-2 layout: keys under "encoder.", cfg.model a Namespace, file found by hub name
    data = torch.load(path, weights_only=False)
    data["model"] = {f"encoder.{k}": v for k, v in data["model"].items()}
    del data["biostrata"]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(data, tmp_path / "hub" / "checkpoints" / "esm2_t2_16_test.pt")
    hub = load_protein_lm("esm2_t2_16_test", backend="fair-esm")
    assert hub.max_residues == 1022
    _same_outputs(plm, hub, ["MKVLAG"])

    def offline(url: str, dst: str, progress: bool = False) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DataNotFoundError, match="esm2_t6_8M_UR50D.*could not be downloaded"):
        load_protein_lm("esm2_t6_8M_UR50D", backend="fair-esm")
    with pytest.raises(DataNotFoundError, match="missing.pt"):
        load_protein_lm(tmp_path / "missing.pt")


class _Payload:
    """An arbitrary class: its pickle cannot load with weights_only."""


def test_esm1b_layout_and_untrusted_pickles(tmp_path: Path) -> None:
    alphabet = Alphabet.from_architecture("ESM-1b")
    arch = dict(layers=2, embed_dim=16, ffn_embed_dim=32, attention_heads=2, max_positions=64)
    torch.manual_seed(1)
    model = ProteinBertModel(argparse.Namespace(arch="roberta_large", final_bias=True, **arch), alphabet).eval()
    args = argparse.Namespace(
        arch="roberta_large",
        max_positions=64,
        final_bias=True,
        **{f"encoder_{k}": v for k, v in arch.items() if k != "max_positions"},
    )
    state = {
        ("encoder.lm_head." + k[len("lm_head.") :]) if k.startswith("lm_head.") else "encoder.sentence_encoder." + k: v
        for k, v in model.state_dict().items()
    }
    path = tmp_path / "esm1b_t2_16_test.pt"
    torch.save({"args": args, "model": state}, path)
    loaded = load_protein_lm(path, max_residues=62)
    assert loaded.num_layers == 2 and loaded.embed_dim == 16
    _same_outputs(FairESM(model, alphabet), loaded, ["MKVLAG", "CCW"])
    torch.save({"args": args, "model": state, "extra": _Payload()}, path)
    with pytest.raises(InputError, match="trusted=True"):
        load_protein_lm(path)
    assert load_protein_lm(path, trusted=True).num_layers == 2


def test_only_a_real_checkpoint_gets_the_advice_to_trust_it(tmp_path: Path) -> None:
    """A file that is not a torch checkpoint is told what it should be, never to unpickle it in full."""
    from biostrata.models.hub import load_torch_file

    (tmp_path / "text.pt").write_text("hello\n")
    with pytest.raises(InputError, match=r"not a PyTorch file .* expected a fair-esm \.pt file") as err:
        load_protein_lm(tmp_path / "text.pt")
    assert "trust" not in str(err.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.pt: empty file \(0 bytes\)"):
        load_protein_lm(tmp_path / "empty.pt")
    torch.save({"vectors": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="a torch file, but not a fair-esm checkpoint"):
        load_protein_lm(tmp_path / "other.pt")
    torch.save({"x": _Payload()}, tmp_path / "pickle.pt")
    with pytest.raises(
        InputError, match=r"needs full unpickling \(it stores a .*_Payload object\); .*pass trusted=True"
    ):
        load_protein_lm(tmp_path / "pickle.pt")
    with pytest.raises(InputError, match=r"needs full unpickling .*; expected a table, which loads without"):
        load_torch_file(tmp_path / "pickle.pt", "a table")
    torch.save({"x": torch.ones(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert torch.equal(load_torch_file(tmp_path / "legacy.pt", "a table")["x"], torch.ones(2))
    with pytest.raises(InputError, match=r"max_residues=0: must be at least 1"):
        load_protein_lm(tmp_path / "legacy.pt", max_residues=0)
