"""Subcommands of the genome line: simulate data, train and sweep genome classifiers, report a sweep,
and measure how tree-like data and embeddings are (Gromov delta)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from biostrata.cli.common import (
    SPLIT_OPTIONS,
    check_seeds,
    command,
    finished_runs,
    load_splits,
    out_option,
    overwrite_option,
    print_table,
    set_torch_threads,
    threads_option,
)
from biostrata.cli.options import Option, add_options, add_settings
from biostrata.errors import InputError, parameters_named

if TYPE_CHECKING:
    from pathlib import Path


@command("demo")
def _demo(p: argparse.ArgumentParser) -> None:
    """the main job on simulated data: Euclidean vs hyperbolic CNN, test MCC and delta

    Simulate DNA evolving along a tree, train the Euclidean CNN and the hyperbolic (Lorentz) CNN, and report
    their test MCC and the Gromov delta of their embeddings. No download. A finished --out (summary.csv
    written) is refused, unless --overwrite.
    """
    from biostrata.config import DemoSettings

    add_options(p, None, out_option(default="demo_out"),
                overwrite_option("run the demo again, replacing a finished one in --out"))  # fmt: skip
    add_settings(p, DemoSettings, "demo options")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    finished_runs(args.out, {"demo": Path(args.out)}, "summary.csv", args.overwrite, "run it again")
    from biostrata.demo import run_demo

    table = run_demo(args.out, args.settings)
    print()
    print_table(table)
    print(f"\nwrote {args.out}/summary.md, summary.csv, summary.png; runs in {args.out}/runs, data in {args.out}/data")
    return 0


@command("train")
def _train(p: argparse.ArgumentParser) -> None:
    """train a Euclidean or hyperbolic genome CNN

    Train on the train split, keep the epoch with the best validation metric (dev only), evaluate it once on
    test. Writes config.yaml, the model (config.json, model.safetensors: the run folder is a model folder that
    biostrata.load and --model read), curve.csv, test_curve.csv and metrics.json per seed under --out;
    metrics.json is written last, so a run without it did not finish. Labels need not run 0..C-1: the model's classes are the distinct training
    labels in order (class_labels in metrics.json). Running the command again trains the seeds that did not
    finish and skips those that did (with the same settings); with every seed finished it refuses, unless
    --overwrite. A folder holds one run (--seed) or the seed<k>/ runs of --seeds, never both.
    """
    from biostrata.api.genome import train
    from biostrata.config import TrainConfig

    add_options(
        p, train, *SPLIT_OPTIONS, Option("out", "output folder", path="out_dir"),
        Option("seeds", "train once per seed, in OUT/seed<k>; overrides --seed", type=int, nargs="+"),
        overwrite_option("train every seed again, replacing finished runs in --out"), threads_option(),
    )  # fmt: skip
    add_settings(p, TrainConfig, "training options (defaults from the HGE paper)")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    """Train one run (--seed, in OUT) or one per seed (--seeds, in OUT/seed<k>): a sweep of one task and one
    model (train.sweep.SeedRuns), which skips the finished runs."""
    from pathlib import Path

    from biostrata.train.sweep import SeedRuns, finished_metrics

    cfg = args.settings
    seeds = args.seeds or [cfg.seed]
    check_seeds("--seeds", seeds)
    _check_layout(Path(args.out), bool(args.seeds), seeds)
    runs = SeedRuns.of(cfg, seeds, args.out, lambda: load_splits(args), one_run=not args.seeds,
                       overwrite=args.overwrite)  # fmt: skip
    folders = {run.seed: runs.folder(run) for run in runs.runs}
    done = finished_runs(args.out, folders, "metrics.json", args.overwrite, "train again", finished_metrics)
    import numpy as np  # only now: a refused command answers at once

    from biostrata.train.run import check_splits

    set_torch_threads(args.threads)
    labels = check_splits(runs.splits)
    todo = runs.check()  # the finished runs were made as these would be: refused before any is reported or trained
    if labels != list(range(len(labels))):
        classes, given = ", ".join(map(str, range(len(labels)))), ", ".join(map(str, labels))
        print(f"labels are not 0..{len(labels) - 1}: the model's classes {classes} are labels {given} (class_labels)")
    for seed, metrics in done.items():
        print(f"{cfg.model} seed {seed}: finished already in {folders[seed]} (test MCC {metrics['test_mcc']:.4f}); "
              "skipped")  # fmt: skip

    trained = {}

    def report(run, metrics: dict) -> None:
        trained[run.seed] = metrics
        print(
            f"{cfg.model} seed {run.seed}: test MCC {metrics['test_mcc']:.4f}, accuracy {metrics['test_accuracy']:.4f}, "
            f"F1 {metrics['test_f1']:.4f} (best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, dev "
            f"{cfg.metric} {metrics['dev_' + cfg.metric]:.4f}); wrote {folders[run.seed]}"
        )
        if metrics["stopped_early"]:
            print(f"  stopped early after {metrics['epochs_run']} of {cfg.epochs} epochs: no better dev {cfg.metric} "
                  f"in {cfg.patience} epochs (--patience)")  # fmt: skip

    try:
        runs.run(progress=False, report=report, todo=todo)  # checked above: not again
    except KeyboardInterrupt:
        finished = [*done, *trained]
        seed = next(seed for seed in seeds if seed not in finished)
        print(
            f"biostrata: interrupted: seed {seed} did not finish (no metrics.json in {folders[seed]})"
            + (f"; finished and kept: seed {', '.join(map(str, finished))}" if finished else "")
            + ". Run the same command again to resume: it skips finished seeds and trains the others.",
            file=sys.stderr,
        )
        return 130
    if len(seeds) > 1:
        mcc = np.array([{**done, **trained}[seed]["test_mcc"] for seed in seeds])
        print(f"{cfg.model}: test MCC {mcc.mean():.4f} +- {mcc.std(ddof=1):.4f} over seeds {seeds}")
    return 0


def _check_layout(out: Path, seeds: bool, wanted: list[int]) -> None:
    """A folder holds one run (``--seed``) or the ``seed<k>/`` runs of ``--seeds``, never both: refuse the
    other kind into it, with or without --overwrite (it would replace nothing, only mix them)."""
    import re

    if not out.is_dir():
        return
    runs = sorted(int(m[1]) for p in out.iterdir() if (m := re.fullmatch(r"seed(\d+)", p.name)) and _started(p))
    if not seeds and runs:
        listed = ", ".join(f"seed{k}/" for k in runs)
        raise InputError(
            f"--out {out}: holds the runs of --seeds ({listed}); one run is not written beside them: give "
            f"--seeds {wanted[0]} to add seed{wanted[0]}/, or another --out"
        )
    if seeds and _started(out):
        raise InputError(
            f"--out {out}: holds one run (config.yaml); the seed<k>/ runs of --seeds are not written beside it: "
            "give another --out"
        )


def _started(folder: Path) -> bool:
    """Whether ``folder`` holds a training run, finished or not (its config.yaml is written first)."""
    return (folder / "config.yaml").is_file()


@command("simulate")
def _simulate(p: argparse.ArgumentParser) -> None:
    """simulate a labelled DNA dataset along a tree (GUE layout)

    Grow a tree, evolve sequences along it under a substitution model, label the leaves by clade (or by a
    planted motif), split them train/dev/test by leaf, and write train.csv, dev.csv, test.csv (sequence,label),
    tree.nwk, leaves.csv and simulation.yaml to --out. Branch lengths are substitutions per site; the same
    --seed gives the same files byte for byte.
    """
    from biostrata.config import SimulateSettings

    add_options(p, None, out_option("output folder (created if missing; its files are replaced)"))
    add_settings(p, SimulateSettings, "simulation options")
    p.set_defaults(run=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from biostrata.api.genome import simulate

    data = simulate(out=args.out, **args.settings.keywords())
    sizes = ", ".join(f"{name} {len(idx)}" for name, idx in data.rows.items())
    print(f"wrote {len(data.sequences)} sequences ({sizes}; {data.n_classes} classes) to {Path(args.out)}")
    return 0


@command("benchmark")
def _benchmark(p: argparse.ArgumentParser) -> None:
    """train models over tasks and seeds of a benchmark suite (resumable sweep)

    Train every (task, model, seed) of a benchmark suite and write one record per run to
    OUT/<suite>/<task>/<model>/seed<k>/record.json, atomically once the run has finished. Running the same
    command again skips finished runs, so a killed sweep resumes where it stopped. Suites: gue (28 tasks), gb
    (Genomic Benchmarks, 9), teb (7), or a folder of task folders holding train, dev and test files (CSV
    'sequence,label' or FASTA with 'label=K' in the headers). Summarize with `biostrata report OUT`.
    """
    from biostrata.config import GENOME_MODELS, TrainConfig
    from biostrata.train.sweep import PER_RUN_KEYS, Sweep

    add_options(
        p, Sweep,
        Option("suite", "gue, gb, teb, or the path of a folder of task folders", type=str, required=True),
        Option("tasks", "task names (tf/0), groups (tf) or last parts (prom_core_all); default: all", type=str,
               nargs="+", metavar="TASK"),
        Option("models", "models, comma- or space-separated", default=list(GENOME_MODELS)),
        Option("seeds", "training seeds", default=[1, 2, 3]),
        out_option("sweep folder for the records (created if missing)"),
        Option("data_dir", "data root holding gue/, genomic_benchmarks/, teb/ (default: $BIOSTRATA_DATA)", type=str,
               path="dir"),
        Option("dev_fraction", "Genomic Benchmarks: share of train held out as dev, per class"),
        Option("split_seed", "Genomic Benchmarks: seed of that dev split"),
        Option("backend", "local: in this process; ray: one Ray task per run", of=Sweep.run, choices=("local", "ray")),
        Option("address", "Ray cluster address, e.g. auto or ray://host:10001 (default: start a local Ray instance)",
               of=Sweep.run),
        Option("cpus_per_run", "Ray: CPUs per run", of=Sweep.run),
        Option("gpus_per_run", "Ray: GPUs per run (default: 1 if the cluster has GPUs, else 0)", of=Sweep.run),
        threads_option("local backend: CPU threads for torch (default: all cores; 1 when two sweeps share 2 cores)"),
        Option("dry_run", "print the plan (each run and whether it is done), make the checks of a real run, and stop",
               default=False),
    )  # fmt: skip
    add_settings(
        p, TrainConfig, f"training options of every run ({', '.join(PER_RUN_KEYS)} are set per run)", skip=PER_RUN_KEYS
    )
    p.set_defaults(run=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    from biostrata.data.dna.benchmarks import data_root, resolve_suite, select_tasks
    from biostrata.train.sweep import Sweep

    check_seeds("--seeds", args.seeds)
    set_torch_threads(args.threads)
    with parameters_named({"name_or_path": "suite", "names": "tasks"}):  # the readers' names for the options
        suite = resolve_suite(args.suite)
        tasks = select_tasks(suite, args.tasks)
    sweep = Sweep(
        suite,
        tasks,
        [m for item in args.models for m in item.replace(",", " ").split()],
        args.seeds,
        args.out,
        args.settings,
        data_dir=None if suite.layout == "custom" else data_root(args.data_dir),
        dev_fraction=args.dev_fraction,
        split_seed=args.split_seed,
    )
    if args.dry_run:
        print(sweep.describe())
        sweep.check()  # what the real run refuses, the dry run refuses too
        return 0
    try:
        records = sweep.run(
            backend=args.backend, address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
            progress=args.settings.progress,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(
            f"biostrata: interrupted: every finished run keeps its record under {args.out}; the run in progress left "
            "none. Run the same command again to resume: it skips the finished runs.",
            file=sys.stderr,
        )
        return 130
    print(f"{len(records)} run(s) finished now, {len(sweep.runs) - len(records)} were already done; "
          f"records under {args.out}. Summarize with: biostrata report {args.out}")  # fmt: skip
    return 0


@command("report")
def _report(p: argparse.ArgumentParser) -> None:
    """results table and bar charts of a benchmark sweep, or several sweeps compared

    With one DIR: read every record.json under it and write results.md and results.csv (per task and model: mean
    and standard deviation of the test metric over seeds x100, parameter count, whether hyperbolic >= Euclidean,
    counts at or above the published DNABERT-2 and NT-2.5B numbers on GUE) and results_<suite>.png. With several
    DIRs (one per config, each a variant named by its folder): write comparison.md and comparison.csv, per task
    and model the validation and test metric of each variant, the best variant on validation marked. With
    --selection: write selection.md, selection.csv, selection_runs.csv and learning-curve pictures: per task,
    model and seed, the test metric at the epoch chosen on validation (ours), on test (the reference code's rule)
    and at the last epoch, hyperbolic >= Euclidean under each rule, and what selecting on test adds.
    """
    add_options(
        p, None,
        Option("dirs", "the --out folder(s) of `biostrata benchmark`", type=str, positional=True, nargs="+",
               metavar="DIR", path="dir"),
        Option("out", "folder for the report files (default: DIR; required with several DIRs)", type=str,
               path="out_dir"),
        Option("selection", "report the epoch-selection rules instead", default=False),
    )  # fmt: skip
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from biostrata.report.compare import write_comparison
    from biostrata.report.selection import write_selection
    from biostrata.report.summary import write_report

    if args.selection:
        if args.out is None and len(args.dirs) > 1:
            raise InputError("--out: give a folder for selection.md when reporting several sweeps")
        paths = write_selection(args.dirs, args.out or args.dirs[0])
    elif len(args.dirs) == 1:
        paths = write_report(args.dirs[0], args.out)
    elif args.out is None:
        raise InputError("--out: give a folder for comparison.md when comparing several sweeps")
    else:
        paths = write_comparison(args.dirs, args.out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


@command("delta")
def _delta(p: argparse.ArgumentParser) -> None:
    """Gromov delta-hyperbolicity of distances, points, model embeddings; calibration

    How tree-like is a dataset: Gromov delta (four-point; max over base points of min((x|z)_p, (z|y)_p) -
    (x|y)_p) and relative delta 2*delta/diameter (0: a tree; 1: the largest). Give INPUT (.npy, .npz, .h5, .csv:
    a distance matrix or points; an embedding store or a model's token table: points under their own geometry),
    or --calibrate N, or --model RUN --data TASK_DIR. An exact delta over more than 1000 points warns
    first with the time it may take.
    """
    from biostrata.api.analysis import delta

    with_model = "with --model: "
    add_options(
        p, delta,
        Option("input", "distance matrix or points (.npy, .npz, .h5, .csv), or a model's token table", param="x",
               positional=True, nargs="?", path="file"),
        Option("key", "array in a .npz, dataset in an .h5 (pooling in a biostrata embedding store)"),
        Option("layer", "layer of an embedding store, or of --model (default: the last)"),
        Option("metric", "precomputed: INPUT is a distance matrix; else INPUT rows are points (default: an embedding "
               "store's or a model table's own geometry, else precomputed for a square matrix, euclidean for any "
               "other)", choices=("precomputed", "euclidean", "cosine", "lorentz", "poincare")),
        Option("curvature", "K of the lorentz/poincare metric, curvature -K (default: 1, or a Lorentz model's own)"),
        Option("method", "exact (worst case ~n^4/8 steps), fixed (base points), sampled (mean +- sd)",
               choices=("exact", "fixed", "sampled")),
        Option("base", "fixed: base point index(es)"),
        Option("samples", "sampled: points per sample"),
        Option("bases", "sampled: base points per sample"),
        Option("repeats", "sampled: number of samples"),
        Option("histogram", "also the distribution of relative delta over triples", metavar="BINS"),
        Option("histogram_bases", "histogram over B random base points (default: all)", metavar="B"),
        Option("calibrate", "relative delta of N points in reference spaces (tree, plane, ...)", metavar="N"),
        Option("model", "the run folder of `biostrata train` (or a model.pt of earlier versions)", metavar="RUN",
               path="any"),
        Option("data", f"{with_model}task folder with train/dev/test.csv", metavar="TASK_DIR", path="dir"),
        Option("split", f"{with_model}split", choices=("train", "dev", "test")),
        Option("points", f"{with_model}sequences to sample"),
        Option("kmer", f"{with_model}k of the k-mer spectrum baseline"),
        Option("seed", "random seed"),
        Option("device", "cpu or cuda[:i] (default: cuda when torch has a GPU)"),
        Option("threads", "CPU worker threads (default: torch's thread count)"),
        Option("json", "print JSON (fields delta, relative_delta, diameter, method, n, ...)", default=False),
    )  # fmt: skip
    p.set_defaults(run=_run_delta)


def _run_delta(args: argparse.Namespace) -> int:
    # the counts, the k-mer size and the curvature are checked by delta() before any work, named by option
    modes = [args.input is not None, args.calibrate is not None, args.model is not None or args.data is not None]
    if sum(modes) != 1:
        raise InputError("give exactly one of: INPUT, --calibrate N, or --model RUN --data TASK_DIR")
    if modes[2] and not (args.model and args.data):
        raise InputError("--model and --data go together: a trained model and the task folder to embed")

    from biostrata.api.analysis import delta  # imports torch only after its checks: a refused value answers at once

    result = delta(
        args.input, metric=args.metric, curvature=args.curvature, method=args.method, base=args.base,
        samples=args.samples, bases=args.bases, repeats=args.repeats, histogram=args.histogram,
        histogram_bases=args.histogram_bases, key=args.key, layer=args.layer, calibrate=args.calibrate,
        model=args.model, data=args.data, split=args.split, points=args.points, kmer=args.kmer, seed=args.seed,
        device=args.device, threads=args.threads, progress=sys.stderr.isatty(),
    )  # fmt: skip
    import json

    from biostrata.analysis.hyperbolicity import format_rows

    if isinstance(result, list):
        print(
            json.dumps(result, indent=2)
            if args.json
            else format_rows(result, "space" if modes[1] else "representation")
        )
        return 0
    out = {"input": args.input, **result}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(format_rows([out], "input"))
    if out["witness"] is not None:
        w, z, x, y = out["witness"]
        print(
            f"attained by points {tuple(out['witness'])}: d({x},{y}) + d({z},{w}) is the largest of the three pair sums"
        )
    if args.histogram is not None:
        h = out["histogram"]
        print(f"relative delta over {h['triples']} triples ({h['base_points']} base points), mean {h['mean']:.4g}:")
        for lo, hi, c in zip(h["edges"][:-1], h["edges"][1:], h["counts"]):
            print(f"  [{lo:.3f}, {hi:.3f})  {c}")
    return 0
