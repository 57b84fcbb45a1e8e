"""ESM through Hugging Face transformers: the adapter of :class:`~biostrata.models.protein_lm.ProteinLM`.

A model is a hub name (``facebook/esm2_t33_650M_UR50D``; a bare ``esm2_...`` or ``esm1b_...`` name
gets the ``facebook/`` prefix) or a local directory in the transformers layout (``config.json``,
``model.safetensors`` or ``pytorch_model.bin``, ``vocab.txt``). The local cache is tried first, with
no network; the hub only when the model is not cached and ``HF_HUB_OFFLINE`` is not set. Weights are
read with safetensors where the directory has them.

Layers follow fair-esm's numbering: ``hidden_states[0]`` of ``EsmModel`` is the token embedding (after
ESM's token-dropout scaling and the padding mask, as in fair-esm), ``hidden_states[i]`` the output of
block ``i``, and the last one is taken after the final LayerNorm (``emb_layer_norm_after``), which
transformers applies before adding it. :func:`from_fair_esm` maps a fair-esm ESM-2's weights into an
``EsmModel`` (the parity test checks that both give the same states).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from biostrata.errors import DataNotFoundError, InputError, ParameterError
from biostrata.extras import require
from biostrata.io import atomic_write_text
from biostrata.models.pretrained import CONFIG, Pretrained, meta
from biostrata.models.protein_interface import ProteinLM

__all__ = ["TransformersESM", "load_transformers_esm", "from_fair_esm", "hub_name", "check_model_path"]

#: The key of ``config.json`` that keeps ``max_residues`` (transformers keeps unknown config keys).
MAX_RESIDUES_KEY = "biostrata_max_residues"

#: ESM's 33 tokens in id order (fair-esm's ESM-1b/ESM-2 alphabet; transformers' vocab.txt).
_TOKENS = ("<cls> <pad> <eos> <unk> L A G V S E R T I D P K Q N F Y M H W C X B U Z O . - <null_1> <mask>").split()


class TransformersESM(Pretrained, ProteinLM):
    """A transformers ``EsmModel`` with ``vocab`` (token -> id) from its ``vocab.txt``."""

    backend = "transformers"

    def __init__(
        self, model: nn.Module, vocab: dict[str, int], name: str = "", max_residues: int | None = 1022
    ) -> None:
        super().__init__()
        self.model, self.name, self.max_residues = model, name, max_residues
        self.vocab = dict(vocab)
        self._set_vocab(vocab, vocab["<cls>"], vocab["<eos>"], vocab["<pad>"], vocab["<unk>"])

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, tokens: torch.Tensor, layers: Iterable[int] = (-1,)) -> dict[int, torch.Tensor]:
        """States ``[B, T, D]`` per layer (keys as given by :meth:`layer_index`)."""
        want = self.layer_index(layers)
        out = self.model(input_ids=tokens, attention_mask=tokens != self.pad_idx, output_hidden_states=True)
        return {i: out.hidden_states[i] for i in want}

    family = "transformers-esm"

    def save_pretrained(self, directory: str | Path, **extra: object) -> Path:
        """Write the model in the transformers layout (``config.json`` with ``max_residues`` under
        :data:`MAX_RESIDUES_KEY`, the ``biostrata`` entry of :mod:`biostrata.models.pretrained` and ``extra``
        entries; ``model.safetensors``; ``vocab.txt``), which transformers reads too. Files are written
        beside the folder first and moved in, ``config.json`` last."""
        import tempfile

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.model.config
        for key, value in {MAX_RESIDUES_KEY: self.max_residues, **extra, "biostrata": meta(self.family)}.items():
            setattr(config, key, value)
        with tempfile.TemporaryDirectory(prefix=f".{directory.name}.", dir=directory.parent) as tmp:
            with transformers_output():
                self.model.save_pretrained(tmp, safe_serialization=True)
            written = sorted(Path(tmp).iterdir(), key=lambda f: f.name == CONFIG)  # config.json last
            atomic_write_text(directory / "vocab.txt", "\n".join(sorted(self.vocab, key=self.vocab.get)) + "\n")
            for file in written:  # files only: EsmModel.save_pretrained makes no sub-folder (shards are files too)
                os.replace(file, directory / file.name)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TransformersESM:
        return load_transformers_esm(directory)

    @classmethod
    def _from_parsed(cls, directory: Path, config: dict) -> TransformersESM:
        return load_transformers_esm(directory)  # transformers reads its config.json itself


def hub_name(name: str) -> str:
    """``facebook/<name>`` for a bare ESM name, the name itself otherwise."""
    return f"facebook/{name}" if "/" not in name and name.startswith(("esm2_", "esm1b_", "esm1v_")) else name


#: A model directory's contents, for messages.
_MODEL_DIR = (
    "a model is a transformers folder (config.json, model.safetensors or pytorch_model.bin, vocab.txt), a fair-esm "
    ".pt file, or a hub name such as facebook/esm2_t33_650M_UR50D or esm2_t33_650M_UR50D"
)


def check_model_path(name_or_path: str | Path) -> Path:
    """``name_or_path`` as a path (``~`` expanded), after refusing a path that does not exist: one that
    starts with ``.``, ``/`` or ``~``, has more than one path separator or ends with one, or names a
    weights file. Hub names are ``org/name`` or a bare name (``esm2_t33_650M_UR50D``)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    seps = {"/", os.sep, os.altsep} - {None}
    looks_local = (
        text.startswith((".", "~", *seps))
        or sum(text.count(sep) for sep in seps) > 1
        or text.endswith(tuple(seps))
        or path.suffix in (".pt", ".pth", ".bin", ".safetensors", ".json", ".ckpt")
    )
    if looks_local:
        raise DataNotFoundError(f"{text}: no such file or folder; {_MODEL_DIR}")
    return path


def _vocab(path: Path | None) -> dict[str, int]:
    """Token -> id from a ``vocab.txt`` (one token a line); ESM's own 33 tokens when there is none."""
    if path is None or not path.is_file():
        return {tok: i for i, tok in enumerate(_TOKENS)}
    tokens = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    missing = [t for t in ("<cls>", "<eos>", "<pad>", "<unk>") if t not in tokens]
    if missing:
        raise InputError(f"{path}: no {missing} token(s); is this an ESM vocabulary?")
    return {tok: i for i, tok in enumerate(tokens)}


@contextlib.contextmanager
def transformers_output(progress: bool = False) -> Iterator[None]:
    """transformers' (and the hub's) progress bars shown only with ``progress``, and its log kept to errors:
    its load report lists every weight of a published ``EsmForMaskedLM`` file that ``EsmModel`` leaves unused
    (the ``lm_head``), in colour, on every load. Weights the model lacks are checked by the caller instead."""
    logging = require("transformers").utils.logging
    import huggingface_hub.utils as hub  # transformers' own dependency

    verbosity, bars, hub_bars = (
        logging.get_verbosity(),
        logging.is_progress_bar_enabled(),
        hub.are_progress_bars_disabled(),
    )
    logging.set_verbosity_error()
    (logging.enable_progress_bar if progress else logging.disable_progress_bar)()
    (hub.enable_progress_bars if progress else hub.disable_progress_bars)()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        (logging.enable_progress_bar if bars else logging.disable_progress_bar)()
        (hub.disable_progress_bars if hub_bars else hub.enable_progress_bars)()


def load_transformers_esm(
    name_or_dir: str | Path, max_residues: int | None = None, progress: bool = False
) -> TransformersESM:
    """Load ``EsmModel`` from a local directory or a hub name (module docstring); ``max_residues``
    defaults to the value saved with the model (:meth:`TransformersESM.save_pretrained`), else 1022 (the
    length ESM-2 was trained on). A path that does not exist, or a file, is refused (:func:`check_model_path`),
    never looked up on the hub. transformers' bars show with ``progress``; a weight of ``EsmModel`` that the
    files lack is an error."""
    path = check_model_path(name_or_dir)
    if path.is_file():  # a local file is never a hub name
        raise ParameterError(
            "backend",
            f"{name_or_dir}: a file, not a transformers folder (config.json, model.safetensors or "
            "pytorch_model.bin, vocab.txt); give such a folder, or a fair-esm .pt file with backend 'fair-esm' or 'auto'",
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"{path}: no config.json; give a transformers model directory (config.json, weights)")
        source, name = str(path), path.name
    else:
        source, name = hub_name(str(name_or_dir)), str(name_or_dir).rstrip("/").split("/")[-1]
    EsmModel = require("transformers").EsmModel
    cached_file = require("transformers.utils").cached_file
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    options = {"add_pooling_layer": False, "output_loading_info": True}
    with transformers_output(progress):
        try:
            model, info = EsmModel.from_pretrained(source, local_files_only=True, **options)
        except OSError:
            if path.is_dir() or offline:
                raise DataNotFoundError(_not_found(source, path.is_dir())) from None
            try:
                model, info = EsmModel.from_pretrained(source, **options)
            except OSError:
                raise DataNotFoundError(_not_found(source, False)) from None
    # buffers that EsmModel computes (rotary frequencies, position ids) are not stored in the files
    missing = [k for k in info.get("missing_keys", ()) if "inv_freq" not in k and "position_ids" not in k]
    if missing:
        raise InputError(
            f"{source}: the files lack {len(missing)} weight(s) of EsmModel ({', '.join(sorted(missing)[:4])}...); "
            "not an ESM model, or an incomplete download"
        )
    vocab_file = (
        path / "vocab.txt"
        if path.is_dir()
        else cached_file(source, "vocab.txt", local_files_only=True, _raise_exceptions_for_missing_entries=False)
    )
    vocab = _vocab(Path(vocab_file) if vocab_file else None)
    if max_residues is None:
        max_residues = getattr(model.config, MAX_RESIDUES_KEY, 1022)
    return TransformersESM(model.eval(), vocab, name, max_residues)


def _not_found(source: str, local: bool) -> str:
    if local:
        return f"{source}: cannot load a transformers ESM model from this directory (config.json and weights)"
    return (
        f"{source}: not in the Hugging Face cache, and the hub cannot be reached; download the model directory "
        f"(config.json, model.safetensors, vocab.txt) on a machine with network, e.g. `hf download {source} "
        f"--local-dir {source.split('/')[-1]}`, and load that folder by its path"
    )


def from_fair_esm(plm: ProteinLM) -> TransformersESM:
    """The same ESM-2 as a transformers ``EsmModel``: fair-esm's weights under transformers' names."""
    ESM2 = require("esm.model.esm2").ESM2
    transformers = require("transformers")
    EsmConfig, EsmModel = transformers.EsmConfig, transformers.EsmModel

    m = plm.model
    if not isinstance(m, ESM2):
        raise InputError(f"only ESM-2 models map to transformers here, not {type(m).__name__}")
    config = EsmConfig(
        vocab_size=m.alphabet_size, hidden_size=m.embed_dim, num_hidden_layers=m.num_layers,
        num_attention_heads=m.attention_heads, intermediate_size=4 * m.embed_dim, hidden_act="gelu",
        position_embedding_type="rotary", token_dropout=m.token_dropout, emb_layer_norm_before=False,
        mask_token_id=plm.alphabet.mask_idx, pad_token_id=plm.alphabet.padding_idx, max_position_embeddings=1026,
        layer_norm_eps=1e-5,
    )  # fmt: skip
    model = EsmModel(config, add_pooling_layer=False)
    names = {"self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
             "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
             "self_attn_layer_norm": "attention.LayerNorm", "fc1": "intermediate.dense", "fc2": "output.dense",
             "final_layer_norm": "LayerNorm"}  # fmt: skip
    state = {"embeddings.word_embeddings.weight": m.embed_tokens.weight,
             "encoder.emb_layer_norm_after.weight": m.emb_layer_norm_after.weight,
             "encoder.emb_layer_norm_after.bias": m.emb_layer_norm_after.bias,
             "contact_head.regression.weight": m.contact_head.regression.weight,
             "contact_head.regression.bias": m.contact_head.regression.bias}  # fmt: skip
    for i in range(m.num_layers):
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                state[f"encoder.layer.{i}.{theirs}.{kind}"] = m.state_dict()[f"layers.{i}.{ours}.{kind}"]
    missing, unexpected = model.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    left = [k for k in missing if "inv_freq" not in k and "position_ids" not in k]
    if left or unexpected:
        raise InputError(f"weights do not map onto transformers' EsmModel: missing {left}, unexpected {unexpected}")
    vocab = {tok: i for i, tok in enumerate(plm.alphabet.all_toks)}
    return TransformersESM(model.eval(), vocab, plm.name, plm.max_residues)
