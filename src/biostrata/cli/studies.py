"""``biostrata study NAME``: end-to-end studies, each a thin call into :mod:`biostrata.studies`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from biostrata.cli.common import command, out_option, print_table, set_torch_threads, threads_option
from biostrata.cli.options import Option, add_options, add_settings


@command("study")
def _study(p: argparse.ArgumentParser) -> None:
    """end-to-end studies that reproduce a set of results

    Studies.
    """
    from biostrata.config import ConditionsSettings, CrossGranularitySettings, StrataSettings

    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True)
    formatter = p.formatter_class  # the help of every option ends with its default
    c = studies.add_parser(
        "conditions",
        formatter_class=formatter,
        help="hyperbolic - Euclidean MCC and embedding delta against tree shape, rate and label depth",
        description="Simulate datasets under varied generating conditions (one factor at a time around a "
        "base), train the Euclidean and the hyperbolic CNN on each, and plot MCC(hyperbolic) - MCC(Euclidean) "
        "and the Gromov delta of both models' embeddings against each condition. Resumable.",
    )
    add_options(c, None, out_option(default="runs/conditions"), threads_option("CPU threads for torch"))
    add_settings(c, ConditionsSettings, "study options")
    c.set_defaults(run=_run_study_conditions)
    g = studies.add_parser(
        "cross-granularity",
        formatter_class=formatter,
        help="protein LM + domain LM in three initialization arms: CKA over layers and checkpoints, probes, fusion",
        description="Pre-train a small protein LM and the domain LM (random, fine-tuned and frozen protein-derived "
        "table), then measure: CKA of the table against its initialization over epochs, layer x layer CKA per arm, "
        "MIBiG product-class probes on protein-level, per-layer domain-level and combined features, and a Pfam-clan "
        "probe on token-level features. Writes tables, plots and cross_granularity.md in --out. Resumable.",
    )
    data = "folder with bgc/ and pfam/"
    add_options(g, None, out_option(default="runs/cross_granularity"),
                Option("data", f"{data}: sets the four input files that are not given one by one", type=str, path="dir"))  # fmt: skip
    add_settings(g, CrossGranularitySettings, "study options", skip=("domain_sizes",))
    g.set_defaults(run=_run_study_cross_granularity)
    t = studies.add_parser(
        "strata",
        formatter_class=formatter,
        help="the same MIBiG domains as DNA, protein, domain token and cluster: delta, CKA and probes per layer, "
        "Euclidean and Lorentz models",
        description="For the domain instances of mibig_domains.tsv (or of an annotation: --data a `biostrata "
        "annotate` output folder) seen at every stratum: k-mer spectra and genome "
        "CNNs (Euclidean and Lorentz) trained to tell the Pfam clan from the domain's DNA; a protein LM; the domain LM "
        "in both geometries (Lorentz token table and distance logits) at several widths and seeds. Then the relative "
        "Gromov delta of every layer with calibration spaces, linear CKA between all layers of all strata (instances "
        "aligned by id), clan and product-class probes, held-out masked-token accuracy and perplexity per width, and "
        "UMAP pictures. Writes strata.md, CSV tables and plots in --out. Without a Pfam clans table the CNNs and the "
        "clan probe are skipped, without product classes the product-class probe; the run says what it skipped. "
        "Resumable; a GPU is used when present.",
    )
    add_options(t, None, out_option(default="runs/strata"), Option(
        "data", f"{data}, or a `biostrata annotate` output (domains.tsv, clusters.csv, and the clans table it was "
        "given, if any; no product classes): sets the four input files that are not given one by one", type=str,
        path="dir"))  # fmt: skip
    add_settings(t, StrataSettings, "study options")
    t.set_defaults(run=_run_study_strata)


def _run_study_conditions(args: argparse.Namespace) -> int:
    from biostrata.studies.conditions import run_conditions, summarize

    set_torch_threads(args.threads)
    try:
        table = run_conditions(args.out, args.settings)
    except KeyboardInterrupt:
        print(
            f"biostrata: interrupted: finished runs are kept under {args.out}/runs; the run in progress left no "
            "metrics.json. Run the same command again to resume: it skips the finished runs.",
            file=sys.stderr,
        )
        return 130
    print_table(summarize(table), digits=3)
    print(f"wrote {args.out}/conditions.md, conditions.csv, conditions.png")
    return 0


def _run_study_cross_granularity(args: argparse.Namespace) -> int:
    from biostrata.studies.cross_granularity import run_cross_granularity

    with _data_hint("a folder with bgc/ and pfam/"):
        run_cross_granularity(args.out, _with_data(args))
    print(f"wrote {args.out}/cross_granularity.md, product_class.csv, clan.csv, cka_*.png, probes.png")
    return 0


def _run_study_strata(args: argparse.Namespace) -> int:
    from biostrata.studies.strata import run_strata
    from biostrata.studies.strata.steps import NO_CLANS

    try:
        with _data_hint("a folder with bgc/ and pfam/, or a `biostrata annotate` output"):
            tables = run_strata(args.out, _with_data(args, annotation=True))
    except KeyboardInterrupt:
        print(
            f"biostrata: interrupted: finished steps are kept under {args.out}; run the same command again to resume.",
            file=sys.stderr,
        )
        return 130
    print_table(tables["widths"].groupby(["geometry", "width"])[["test_acc", "test_ppl"]].mean().reset_index()
                if len(tables["widths"]) else tables["probes"].head(), digits=3)  # fmt: skip
    for r in tables["skipped"].itertuples():
        hint = "; `biostrata annotate --clans` records one that --data finds" if r.reason == NO_CLANS else ""
        print(f"skipped {r.part}: {r.reason}{hint}")
    print(f"wrote {args.out}/strata.md, delta.csv, cka.csv, probes.csv, widths.csv, skipped.csv and the pictures")
    return 0


@contextmanager
def _data_hint(folder: str) -> Iterator[None]:
    """Within the block, a missing input file of the four that ``--data DIR`` sets (the library's error
    names the field; the command adds its option) says that ``--data`` may give it too: ``folder`` says
    what DIR holds."""
    from biostrata.errors import DataNotFoundError

    try:
        yield
    except DataNotFoundError as err:
        if err.param not in STUDY_INPUTS:
            raise
        raise DataNotFoundError(f"{err}, or --data DIR ({folder})", param=err.param) from None


#: The input files of a study that ``--data DIR`` sets (:func:`_with_data`).
STUDY_INPUTS = ("corpus", "pfam", "classes", "domains")


def _with_data(args: argparse.Namespace, annotation: bool = False):
    """The settings with ``--data DIR`` filling the four input files left at their defaults (a file given as
    an option or in --config stays): each default's place under ``config.DATA_ROOT``, under DIR. With ``annotation``
    DIR may also be a ``biostrata annotate`` output (told by its ``annotation.json``): ``domains.tsv``,
    ``clusters.csv``, the clans table recorded in ``annotation.json`` (none: "") and no class table ("")."""
    import json
    from dataclasses import fields
    from pathlib import Path

    from biostrata.config.sequences import DATA_ROOT

    settings = args.settings
    if not args.data:
        return settings
    data = Path(args.data)
    defaults = {f.name: f.default for f in fields(settings)}
    if annotation and (data / "annotation.json").is_file():
        record = json.loads((data / "annotation.json").read_text())
        files = {"corpus": data / "clusters.csv", "pfam": record.get("settings", {}).get("clans") or "",
                 "classes": "", "domains": data / "domains.tsv"}  # fmt: skip
    else:
        files = {k: data / Path(defaults[k]).relative_to(DATA_ROOT) for k in STUDY_INPUTS}
    return settings.replace(**{k: str(v) for k, v in files.items() if getattr(settings, k) == defaults[k]})
