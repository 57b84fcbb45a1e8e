"""Models: :func:`load` a model of any family from a path or a name, :func:`embed` inputs with it into
one array per layer, in memory (or, with ``out=``, into the HDF5 store ``biostrata embed`` writes).

Imports torch and the model families only inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biostrata.errors import InputError, ParameterError

if TYPE_CHECKING:
    import numpy as np

    from biostrata.data.clusters.corpus import Cluster
    from biostrata.data.clusters.pfam import PfamTable

__all__ = ["load", "embed"]

PathLike = str | os.PathLike

#: What :func:`load` reads, for its errors.
KINDS = (
    "a model folder (config.json, model.safetensors: `biostrata train` and `biostrata pretrain` write one), a "
    "BiGCARP name such as bigcarp_random, a transformers ESM folder or hub name, or a .pt file of earlier "
    "versions (genome CNN model.pt, domain LM, family table) or of fair-esm"
)
#: Published domain LMs, loaded by name (:meth:`biostrata.models.domain_lm.DomainLM.load`).
BIGCARP_NAMES = ("bigcarp_random", "bigcarp_esm1bfinetune", "bigcarp_esm1bfrozen")


def load(
    path_or_name: PathLike,
    *,
    trusted: bool = False,
    max_residues: int | None = None,
    backend: str = "auto",
    pfam: PfamTable | PathLike | None = None,
    progress: bool = False,
) -> Any:
    """Load a model of any family, told by what the path holds.

    Parameters
    ----------
    path_or_name : path or str
        A model folder of ``save_pretrained`` (``config.json`` naming the family, ``model.safetensors``; the
        folder of a ``biostrata train`` or ``biostrata pretrain`` run is one), or a transformers model folder
        (``config.json``, ``model.safetensors``, ``vocab.txt``). Files of earlier versions and other tools: the
        run folder of an earlier ``biostrata train`` (``model.pt``) or a ``.pt`` file: a genome CNN, a domain
        LM (sequence-models layout), a fair-esm ESM or a family table. A name: a published BiGCARP (``bigcarp_random``,
        ``bigcarp_esm1bfinetune``, ``bigcarp_esm1bfrozen``) or an ESM on the Hugging Face hub
        (``facebook/esm2_t6_8M_UR50D``; the ``facebook/`` prefix may be left out).
    trusted : bool
        Allow full unpickling of a local ``.pt`` file (it can run code); official fair-esm files need it.
    max_residues : int, optional
        A protein LM's length limit (default: the one saved with it, else 1022).
    backend : {"auto", "transformers", "fair-esm"}
        How a protein LM given by name loads (``auto``: transformers).
    pfam : PfamTable or path of Pfam-A.clans.tsv, optional
        A domain LM: maps the family names its checkpoint lacks to accessions.
    progress : bool
        A transformers ESM: show transformers' loading bars.

    Only ``.pt`` files are unpickled (with ``weights_only`` unless ``trusted``); model folders hold JSON and
    safetensors, which run no code.

    Returns
    -------
    model
        In eval mode, on the CPU: a genome CNN (``EuclideanCNN`` or ``HyperbolicCNN``), a ``DomainLM``,
        a protein LM (``FairESM`` or ``TransformersESM``), each with ``num_layers`` and
        ``embed(x, layers) -> dict[int, Tensor]``; or a ``FamilyTable`` (one vector per Pfam family).
    """
    from biostrata.data.clusters.pfam import PfamTable
    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.pretrained import load_pretrained, pretrained_config
    from biostrata.models.protein_lm import load_protein_lm

    table = PfamTable.read(pfam) if isinstance(pfam, (str, os.PathLike)) else pfam
    path = Path(path_or_name).expanduser()
    config = pretrained_config(path)
    if config is not None:
        model = load_pretrained(path, config)
        if max_residues is not None and hasattr(model, "max_residues"):
            model.max_residues = max_residues
        return model
    if path.is_dir():
        if (path / "model.pt").is_file():
            from biostrata.models.genome_cnn import load_model

            return load_model(path)[0]
        if (path / "config.json").is_file():
            return load_protein_lm(path, max_residues=max_residues, backend="transformers", progress=progress)
        raise InputError(f"{path}: a folder with neither config.json nor model.pt; give {KINDS}")
    if path.is_file():
        return _load_file(path, trusted, max_residues, table)
    if str(path_or_name) in BIGCARP_NAMES:
        return DomainLM.load(str(path_or_name), table)
    return load_protein_lm(path_or_name, trusted, max_residues, backend, progress)  # a hub name; refuses a missing path


def _load_file(path: Path, trusted: bool, max_residues: int | None, pfam: PfamTable | None) -> Any:
    """The model of a ``.pt`` file, read once and told by its keys."""
    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.genome_cnn import model_from_saved
    from biostrata.models.hub import load_torch_file
    from biostrata.models.init_table import FamilyTable
    from biostrata.models.protein_lm import TRUST, fair_esm_from_saved

    data = load_torch_file(path, KINDS, trusted, TRUST)
    keys = set(data) if isinstance(data, dict) else set()
    if "format" in keys and str(data["format"]).startswith("biostrata-genome-classifier"):
        return model_from_saved(data, str(path))
    if {"model_state_dict", "tokens"} <= keys:
        return DomainLM.from_checkpoint(data, str(path), pfam)
    if {"families", "vectors", "members"} <= keys:
        return FamilyTable.from_saved(data, str(path))
    if "model" in keys and ({"cfg", "args"} & keys):
        return fair_esm_from_saved(data, path, trusted, max_residues)
    held = f"a dict with keys {sorted(map(str, keys))[:8]}" if keys else f"a {type(data).__name__}"
    raise InputError(f"{path}: holds {held}, not a model biostrata knows; give {KINDS}")


def embed(
    model: Any,
    inputs: Any,
    layers: Sequence[int] = (-1,),
    pooling: str | Sequence[str] = "mean",
    *,
    token_budget: int | None = None,
    long: str = "truncate",
    overlap: int = 128,
    truncate: bool = False,
    batch_size: int = 256,
    device: str | None = None,
    precision: str | None = None,
    dtype: str = "float32",
    progress: bool = False,
    out: PathLike | None = None,
) -> dict[int, np.ndarray | list[np.ndarray]] | Path:
    """Layer-wise embeddings of inputs by a model of any family: one array per layer, rows in input order.

    Parameters
    ----------
    model : model or path
        A model of :func:`load` (or what it takes): a genome CNN, a domain LM or a protein LM.
    inputs : list of str, list of domain sentences, or path
        Genome CNN: DNA sequences (``ACGTN``), or a CSV (``sequence,label``) / labelled FASTA file. Domain
        LM: domain sentences (each a list of Pfam tokens, or one string of them separated by spaces, or
        a ``Cluster``), or a file: a domain table (``.tsv`` of ``biostrata annotate``), a clusters CSV or
        a domain list (``.txt``). Protein LM: protein sequences, or a FASTA file or domain table
        (``.tsv``: its domain segments).
    layers : sequence of int
        Layers to return: 0 the input embedding, ``i`` block ``i``, -1 the last.
    pooling : {"mean", "bos", "per_token"} or, for a genome CNN, "flatten"
        ``mean`` over an item's own positions (a hyperbolic CNN layer: the Lorentz centroid), ``bos`` the
        ``<cls>`` state (protein LMs), ``flatten`` a CNN layer's positions concatenated, ``per_token``
        every position. With ``out``, one or more of ``mean``, ``bos``, ``per_token``.
    token_budget : int, optional
        Padded tokens per batch: language models (default: 1024 on the CPU, 16384 on a GPU); a genome CNN
        then takes ``token_budget // length`` sequences per batch instead of ``batch_size``.
    long : {"truncate", "window"}
        Proteins longer than the model's limit: keep the first residues, or cover them with windows
        that share ``overlap`` residues.
    overlap : int
        Residues shared by consecutive windows.
    truncate : bool
        Genome CNN: cut sequences longer than the model's length (else they are refused).
    batch_size : int
        Genome CNN: sequences per batch.
    device, precision : str, optional
        Where the model runs (default: a GPU when present); ``fp32``, ``bf16`` or ``fp16`` (GPU only)
        for protein LMs (default fp16 on a GPU, fp32 on the CPU).
    dtype : {"float32", "float16"}
        With ``out``: the stored precision.
    progress : bool
        A progress bar.
    out : path, optional
        Write an HDF5 embedding store here instead (the file ``biostrata embed`` writes; ids already in
        it are skipped, so a killed job resumes); items get ids from the input file, else ``0..n-1``.

    Returns
    -------
    dict of int to numpy.ndarray, or Path
        Layer index (0..num_layers) -> ``float32 [n, D]`` (``per_token``: a list of ``n`` arrays
        ``[length_i, D]``); with ``out``, the path of the store.
    """
    from biostrata.models.batching import check_token_budget
    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.genome_cnn import EuclideanCNN, HyperbolicCNN
    from biostrata.models.protein_interface import ProteinLM

    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    stored = {} if out is None else {"dtype": dtype}
    if isinstance(model, ProteinLM):
        options = dict(token_budget=token_budget, long=long, overlap=overlap, device=device, precision=precision)
        return _embed_proteins(model, inputs, layers, pooling, out, {**options, "progress": progress, **stored})
    if isinstance(model, DomainLM):
        options = dict(token_budget=token_budget, device=device, progress=progress)
        return _embed_clusters(model, inputs, layers, pooling, out, {**options, **stored})
    if isinstance(model, (EuclideanCNN, HyperbolicCNN)):
        if token_budget is not None:
            check_token_budget(token_budget)
            batch_size = max(1, token_budget // model.length)
        options = dict(truncate=truncate, batch_size=batch_size, device=device, progress=progress)
        return _embed_dna(model, inputs, layers, pooling, out, {**options, **stored})
    raise InputError(f"model: a {type(model).__name__} embeds nothing; give a genome CNN, a domain LM or a protein LM")


def _single_pooling(pooling: str | Sequence[str]) -> str:
    """The one pooling of an in-memory result (several go to a store only)."""
    if isinstance(pooling, str):
        return pooling
    if len(pooling) != 1:
        raise ParameterError(
            "pooling", f"pooling={list(pooling)}: in memory give one pooling; several go to a store (out=)"
        )
    return pooling[0]


def _poolings(pooling: str | Sequence[str]) -> list[str]:
    return [pooling] if isinstance(pooling, str) else list(pooling)


def _nonempty(items: Sequence, what: str) -> Sequence:
    if not len(items):
        raise InputError(f"inputs: no {what}; give at least one")
    return items


def _embed_proteins(model: Any, inputs: Any, layers: Sequence[int], pooling: str | Sequence[str],
                    out: PathLike | None, options: dict) -> Any:  # fmt: skip
    from biostrata.data.clusters.proteins import ProteinRecord, read_proteins
    from biostrata.models.arrays import embed_proteins
    from biostrata.models.extract import extract_embeddings

    if isinstance(inputs, (str, os.PathLike)):
        records = read_proteins(inputs)
    else:
        records = [r if isinstance(r, ProteinRecord) else ProteinRecord(str(i), str(r)) for i, r in enumerate(inputs)]
    _nonempty(records, "protein sequences")
    if out is None:
        return embed_proteins(model, [r.sequence for r in records], layers, _single_pooling(pooling), **options)
    return extract_embeddings(model, records, out, layers, _poolings(pooling), **options)


def _clusters(inputs: Any) -> list[Cluster]:
    """Domain sentences from a file or from lists / strings of Pfam tokens (ids ``0..n-1``)."""
    from biostrata.data.clusters.corpus import Cluster, read_clusters

    if isinstance(inputs, (str, os.PathLike)):  # a domain table (.tsv) too: read_clusters tells it by its header
        return list(read_clusters(inputs))
    clusters = []
    for i, item in enumerate(inputs):
        if isinstance(item, Cluster):
            clusters.append(item)
        elif isinstance(item, str):
            clusters.append(Cluster(str(i), tuple(item.split())))
        elif isinstance(item, Sequence) and all(isinstance(t, str) for t in item):
            clusters.append(Cluster(str(i), tuple(item)))
        else:
            raise InputError(f"inputs[{i}]: a {type(item).__name__}; a domain sentence is a list of Pfam tokens")
    return clusters


def _embed_clusters(model: Any, inputs: Any, layers: Sequence[int], pooling: str | Sequence[str],
                    out: PathLike | None, options: dict) -> Any:  # fmt: skip
    from biostrata.models.arrays import embed_clusters
    from biostrata.models.extract import extract_cluster_embeddings

    clusters = _nonempty(_clusters(inputs), "domain sentences")
    if out is None:
        return embed_clusters(model, clusters, layers, _single_pooling(pooling), **options)
    return Path(extract_cluster_embeddings(model, clusters, out, layers, _poolings(pooling), **options)["path"])


def _embed_dna(model: Any, inputs: Any, layers: Sequence[int], pooling: str | Sequence[str],
               out: PathLike | None, options: dict) -> Any:  # fmt: skip
    from biostrata.data.dna.genome import read_labelled
    from biostrata.models.arrays import embed_dna
    from biostrata.models.extract import extract_dna_embeddings

    sequences = read_labelled(inputs).sequences if isinstance(inputs, (str, os.PathLike)) else [str(s) for s in inputs]
    _nonempty(sequences, "DNA sequences")
    if out is None:
        return embed_dna(model, sequences, layers, _single_pooling(pooling), **options)
    if _poolings(pooling) != ["mean"]:
        raise ParameterError(
            "pooling", f"pooling={pooling!r}: a genome CNN's store keeps the mean; other poolings stay in memory"
        )
    ids = [str(i) for i in range(len(sequences))]
    return Path(extract_dna_embeddings(model, ids, sequences, out, layers, **options)["path"])
