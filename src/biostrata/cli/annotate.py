"""``biostrata annotate``: genomes or gene clusters to Pfam domain sentences."""

from __future__ import annotations

import argparse

from biostrata.cli.common import command, finished_runs, out_option, overwrite_option
from biostrata.cli.options import Option, add_options, add_settings, paths


@command("annotate")
def _annotate(p: argparse.ArgumentParser) -> None:
    """genomes or gene clusters (GenBank, FASTA) to Pfam domains and domain sentences

    Take the genes of each record (CDS features, or pyrodigal where a record has none), search their proteins
    against Pfam profile HMMs with pyhmmer (hmmsearch, all cores), keep the domains above the gathering cut-offs
    (or DeepBGC's E-value rule), resolve overlaps, and write domains.tsv (each domain with its DNA and protein:
    the table `embed`, `pretrain --corpus` and `study strata --data` read), clusters.csv (the layout of
    mibig_pfamid.csv, ready for `biostrata pretrain --corpus` and the domain LM), proteins.faa and
    annotation.json (database, sha256, Z, thresholds, tool versions) to --out; annotation.json is written
    last, and without it the folder is not a finished annotation (a finished one is refused, unless
    --overwrite). A GenBank or nucleotide FASTA record is
    one cluster; a protein FASTA (.faa) is one cluster of all its proteins, in file order, named by the
    file (cluster.faa -> cluster). Default HMMs: the Pfam 35.0 subset of the gecco package (2,766
    families); pass --hmm Pfam-A.hmm.gz for full Pfam.
    """
    from biostrata.api.domains import annotate
    from biostrata.config import AnnotateSettings

    add_options(
        p, annotate,
        Option("inputs", "GenBank (.gbk/.gb/.gbff) or nucleotide FASTA: a cluster per record; protein FASTA (.faa): "
               "one cluster per file; .gz ok", positional=True, nargs="+", metavar="INPUT", path="file"),
        out_option(), overwrite_option("annotate again, replacing a finished annotation in --out"),
    )  # fmt: skip
    add_settings(p, AnnotateSettings, "annotation options")
    paths(p, hmm="file", clans="file")
    p.set_defaults(run=_run_annotate)


def _run_annotate(args: argparse.Namespace) -> int:
    from pathlib import Path

    finished_runs(args.out, {"annotation": Path(args.out)}, "annotation.json", args.overwrite, "annotate again")
    from biostrata.api.domains import annotate

    record = annotate(args.inputs, settings=args.settings, out=args.out).record
    print(
        f"{record['records']} record(s), {record['proteins']} proteins, {record['domains']} domains "
        f"({record['database'].get('database', record['database']['path'])}, {record['database']['hmms']} HMMs); "
        f"{record['clusters_with_domains']} record(s) with domains in {args.out}/clusters.csv; wrote domains.tsv, "
        "proteins.faa, annotation.json"
    )
    return 0
