"""Masked-language-model pre-training with Lightning, for the domain LM and the small protein LM.

The training loop, its validation numbers and :func:`evaluate_masked_lm` (the same numbers on held-out
sequences) are in :mod:`biostrata.train.masked_lm`; they are importable from here too.

Outputs of :func:`pretrain_domain_lm` / :func:`pretrain_protein_lm` in ``out_dir``: ``config.json`` and
``model.safetensors`` (the model of the best validation epoch, ``save_pretrained``: ``out_dir`` is a model
folder that ``biostrata.load`` reads), ``metrics.json`` (best epoch, per-epoch history, settings),
``checkpoints/last.ckpt`` (Lightning, for resuming) and ``logs/`` (CSV); with ``snapshots=True`` also
``snapshots/epoch_000/`` (the initial weights) and ``snapshots/epoch_<e>/`` after each epoch ``e`` (model
folders too), e.g. to follow how far the token table moves in training. ``DomainLM.save_sequence_models``
and ``FairESM.save_fair_esm`` export a model in the layouts of BiGCARP's and fair-esm's own code.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from biostrata.data.clusters.corpus import ClusterCorpus, DomainVocabulary
from biostrata.data.clusters.pfam import PfamTable
from biostrata.data.clusters.proteins import CANONICAL_AMINO_ACIDS, ProteinRecord
from biostrata.errors import InputError, ParameterError, check_fraction
from biostrata.io import atomic_write_json
from biostrata.models.domain_lm import DomainLM
from biostrata.models.init_table import ARMS, FamilyTable, initialize_token_table
from biostrata.models.protein_lm import ProteinLM
from biostrata.train.masked_lm import (
    EpochSnapshots,
    LengthBucketSampler,
    MaskedLMModule,
    evaluate_masked_lm,
    fit_masked_lm,
)
from biostrata.train.masking import MaskingScheme

__all__ = [
    "MaskedLMModule",
    "EpochSnapshots",
    "LengthBucketSampler",
    "fit_masked_lm",
    "evaluate_masked_lm",
    "split_clusters",
    "domain_masking_scheme",
    "protein_masking_scheme",
    "pretrain_domain_lm",
    "pretrain_protein_lm",
    "RUN_OPTIONS",
]


_VALID_NAMES = ("valid", "validation", "val", "dev")
#: How a run goes, not what it learns: keywords the pretrain_* functions hand on to fit_masked_lm.
RUN_OPTIONS = ("accelerator", "devices", "progress", "resume")


def split_clusters(corpus: ClusterCorpus, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train / validation indices, split by BGC.

    If every cluster carries a ``split`` (BiGCARP CSV), ``train`` rows train and ``valid``/``val``/
    ``dev`` rows validate (``test`` rows are left out). Otherwise clusters with identical domain
    lists are grouped (so no duplicate leaks across the split) and whole groups are drawn, seeded,
    until at least ``val_fraction`` of the clusters validate.
    """
    if len(corpus) and all(c.split for c in corpus):
        train = [i for i, c in enumerate(corpus) if c.split == "train"]
        valid = [i for i, c in enumerate(corpus) if c.split in _VALID_NAMES]
        return train, valid
    check_fraction(val_fraction, "val_fraction")
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(corpus):
        groups.setdefault(c.domains, []).append(i)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    valid: list[int] = []
    target = val_fraction * len(corpus)
    while keys and len(valid) < target:
        valid += groups[keys.pop()]
    train = sorted(i for k in keys for i in groups[k])
    return train, sorted(valid)


def domain_masking_scheme(vocab: DomainVocabulary, rate: float = 0.15) -> MaskingScheme:
    """Mask domain positions (UNK included; class and separator tokens never); random replacements
    are drawn from the domain tokens."""
    maskable = torch.zeros(len(vocab), dtype=torch.bool)
    maskable[vocab.unk_idx :] = True
    replacements = torch.arange(vocab.domain_slice.start, vocab.domain_slice.stop)
    return MaskingScheme(vocab.pad_idx, vocab.mask_idx, maskable, replacements, rate=rate)


def protein_masking_scheme(plm: ProteinLM, rate: float = 0.15) -> MaskingScheme:
    """Mask residues only; random replacements are drawn from the 20 canonical amino acids."""
    a = plm.alphabet
    maskable = torch.zeros(len(a.all_toks), dtype=torch.bool)
    maskable[[a.tok_to_idx[t] for t in a.standard_toks]] = True
    replacements = torch.tensor([a.tok_to_idx[c] for c in CANONICAL_AMINO_ACIDS])
    return MaskingScheme(a.padding_idx, a.mask_idx, maskable, replacements, rate=rate)


def pretrain_domain_lm(
    corpus: ClusterCorpus,
    out_dir: str | Path,
    *,
    preset: str = "bigcarp",
    arm: str = "random",
    family_table: FamilyTable | None = None,
    projection: str = "learned",
    pfam: PfamTable | None = None,
    class_token: bool = False,
    separators: bool = False,
    val_fraction: float = 0.1,
    max_length: int | None = 512,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    snapshots: bool = False,
    **options: Any,
) -> dict:
    """Pre-train the domain LM in one arm: ``random`` table, or initialized from ``family_table``
    and then ``finetune``-d or kept ``frozen``. Returns (and writes) the metrics dict. With
    ``snapshots`` the weights at the start and after every epoch go to ``out_dir/snapshots/``
    (model folders, like ``out_dir``). ``options``: the :data:`RUN_OPTIONS` of
    :func:`fit_masked_lm`, sizes that override the preset's (``d_embed``, ``n_layers``, ...), and
    ``geometry="lorentz"`` with its ``curvature`` (see :class:`DomainLM`; recorded in ``config``).
    The recipe is the same in both geometries: Adam on the lorentz table's space parts keeps every
    row on the manifold."""
    run = {k: v for k, v in options.items() if k in RUN_OPTIONS}
    sizes = {k: v for k, v in options.items() if k not in RUN_OPTIONS}
    if arm not in ARMS:
        raise ParameterError("arm", f"arm={arm!r}: choose one of {list(ARMS)}")
    if (arm == "random") != (family_table is None):
        raise ParameterError("arm", f"arm={arm!r}: {'needs a' if arm != 'random' else 'takes no'} family table")
    out_dir = Path(out_dir)
    # every domain of the corpus (min_count 1): the one pass over it that the Pfam check needs too
    vocab = DomainVocabulary.from_corpus(corpus, class_tokens=class_token, gene_separator=separators)
    if pfam is not None and vocab.domains and not any(d in pfam for d in vocab.domains):
        first = next(d for c in corpus for d in c.domains)  # the corpus's first, as before (vocab sorts them)
        raise InputError(
            f"{corpus.source}: none of its {len(vocab.domains)} domains (e.g. {first!r}) is a family of the Pfam "
            f"table {pfam.source}; check the corpus (and the layout it was read in) and pfam (or give no pfam to train on "
            "the tokens as written)"
        )
    if family_table is not None and projection == "learned":
        if sizes.get("d_embed", family_table.dim) != family_table.dim:
            raise InputError(
                f"d_embed={sizes['d_embed']} differs from the family vectors' {family_table.dim} dimensions; "
                "with projection='learned' the table takes their width (leave d_embed unset, or use 'pca')"
            )
        sizes = {**sizes, "d_embed": family_table.dim}
    torch.manual_seed(seed)
    model = DomainLM.from_preset(preset, vocab, **sizes)
    report = None
    if family_table is not None:
        report = initialize_token_table(model, family_table, projection, freeze=arm == "frozen")
    train_idx, val_idx = split_clusters(corpus, val_fraction, seed)
    if not train_idx or not val_idx:
        how = (
            "by its split column"
            if all(c.split for c in corpus)
            else f"with val_fraction={val_fraction}, identical domain lists kept together"
        )
        met = "; ".join(corpus.summary().splitlines()[1:])  # the reader's warnings: often the cause
        raise InputError(
            f"{corpus.source}: its {len(corpus)} cluster(s) split into {len(train_idx)} for training and "
            f"{len(val_idx)} for validation ({how}); pre-training needs both, so give more clusters"
            + (f" (reading it met {met})" if met else "")
        )
    encode = [vocab.encode(c, class_token=class_token, separators=separators) for c in corpus]
    settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)  # for the fit and its record
    result = fit_masked_lm(
        model, [encode[i] for i in train_idx], [encode[i] for i in val_idx], domain_masking_scheme(vocab), out_dir,
        max_length=max_length, keep_first=int(class_token),
        snapshot=model.save_pretrained if snapshots else None,
        **settings, **run,
    )  # fmt: skip
    model.save_pretrained(out_dir)
    init = None if report is None else {
        "initialized": len(report.initialized), "missing": len(report.missing), "unused": len(report.unused),
        "projection": report.projection, "table": dict(family_table.meta),  # type: ignore[union-attr]
    }  # fmt: skip
    result.update(
        arm=arm, preset=preset, config=model.config, vocab_size=len(vocab), corpus=corpus.source,
        train_clusters=len(train_idx), val_clusters=len(val_idx), frozen_rows=int(model.frozen_rows.sum()),
        **settings, max_length=max_length, init=init,
    )  # fmt: skip
    atomic_write_json(out_dir / "metrics.json", result)
    return result


def pretrain_protein_lm(
    plm: ProteinLM,
    records: Sequence[ProteinRecord],
    out_dir: str | Path,
    *,
    val_fraction: float = 0.1,
    max_length: int | None = 512,
    epochs: int = 5,  # a protein LM here is a small helper model, not the object of study
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    valid: Sequence[ProteinRecord] | None = None,
    **run: Any,
) -> dict:
    """Pre-train a protein LM (e.g. :func:`~biostrata.models.protein_lm.small_protein_lm`) by masked
    residue prediction on ``records``, split at random by sequence, or, with ``valid`` (e.g. the segments
    of a study's validation clusters), trained on all of ``records`` and validated on ``valid``.
    ``max_length`` counts residues; ``run``: the :data:`RUN_OPTIONS` of :func:`fit_masked_lm`."""
    if valid is None:
        check_fraction(val_fraction, "val_fraction")
        order = list(range(len(records)))
        random.Random(seed).shuffle(order)
        n_val = max(1, round(val_fraction * len(order)))
        records, valid = [records[i] for i in order[n_val:]], [records[i] for i in order[:n_val]]
        how = f"split with val_fraction={val_fraction}"
    else:
        how = "given split"
    if not records or not valid:
        raise InputError(
            f"{len(records) + len(valid)} protein sequence(s) {how} into {len(records)} for training and "
            f"{len(valid)} for validation; pre-training needs both, so give more sequences"
        )
    tokenize = lambda part: [plm.tokenize([r.sequence])[0] for r in part]  # noqa: E731
    out_dir = Path(out_dir)
    settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)  # for the fit and its record
    result = fit_masked_lm(
        plm, tokenize(records), tokenize(valid), protein_masking_scheme(plm), out_dir,
        max_length=None if max_length is None else max_length + 2, keep_first=1, keep_last=1, **settings, **run,
    )  # fmt: skip
    plm.save_pretrained(out_dir)
    result.update(
        model=plm.name, layers=plm.num_layers, embed_dim=plm.embed_dim, train_sequences=len(records),
        val_sequences=len(valid), **settings, max_length=max_length,
    )  # fmt: skip
    atomic_write_json(out_dir / "metrics.json", result)
    return result
