"""Genomes to domain sentences: :func:`annotate` finds the genes of GenBank or FASTA records and their Pfam
domains (pyrodigal, pyhmmer) and gives each record's domains as a sentence, the input of :func:`embed`
with a domain LM and of ``biostrata pretrain``.

Imports pandas and pyhmmer only inside the function.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from biostrata.errors import InputError

if TYPE_CHECKING:
    from biostrata.config import AnnotateSettings
    from biostrata.data.annotation.annotate import Annotation

__all__ = ["annotate"]

PathLike = str | os.PathLike


def annotate(
    inputs: PathLike | Sequence[PathLike],
    *,
    settings: AnnotateSettings | None = None,
    out: PathLike | None = None,
    **options: Any,
) -> Annotation:
    """Pfam domains of the genes of genomes or gene clusters, and each record's domain sentence.

    Parameters
    ----------
    inputs : path or sequence of paths
        GenBank (``.gbk``, ``.gb``, ``.gbff``) or nucleotide FASTA: one cluster per record (its CDS
        features, or pyrodigal's genes where it has none); protein FASTA (``.faa``): one cluster of all
        its proteins, named by the file. ``.gz`` files are read as they are.
    settings : AnnotateSettings, optional
        The options (default: :class:`biostrata.config.AnnotateSettings`).
    out : path, optional
        Folder to write ``domains.tsv``, ``clusters.csv``, ``proteins.faa`` and ``annotation.json`` to
        (the files of ``biostrata annotate``; ``annotation.json`` last).
    **options
        Fields of ``AnnotateSettings`` that override ``settings``: ``hmm`` (profile HMMs; default the Pfam
        35.0 subset of the ``gecco`` package), ``cutoff`` (``gathering`` or ``evalue``), ``evalue``,
        ``Z``, ``overlaps`` (``best``, ``clan``, ``keep``), ``clans``, ``genes``, ``separators``,
        ``cpus``, ``progress``.

    Returns
    -------
    Annotation
        ``domains`` (DataFrame, one row per domain hit: record, protein, coordinates, Pfam accession,
        score, i-Evalue, the domain's DNA and protein segment), ``clusters`` (DataFrame, one row per record with domains: ``cluster_id``,
        ``domain_tokens``, the domain sentence), ``proteins`` (DataFrame, one row per protein with its
        ``sequence``), ``record`` (what ``annotation.json`` holds) and ``write(folder)``.
    """
    from biostrata.config import AnnotateSettings
    from biostrata.data.annotation.annotate import annotate as find_domains

    if settings is not None and not isinstance(settings, AnnotateSettings):
        raise InputError(f"settings: got {type(settings).__name__}; give an AnnotateSettings (or options)")
    s = settings or AnnotateSettings()
    s = s.replace(**options) if options else s
    annotation = find_domains([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs), s)
    if out is not None:
        annotation.write(out)
    return annotation
