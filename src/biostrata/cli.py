"""The `biostrata` command: one thin subcommand per job; the work lives in the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from biostrata import __version__
from biostrata.errors import BiostrataError

# Each entry adds one subcommand to the parser; the subparser sets `run=<function(args) -> int>`.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def command(add: Callable[[argparse._SubParsersAction], None]) -> Callable:
    """Register a function that adds a subcommand."""
    COMMANDS.append(add)
    return add


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biostrata",
        description="Learn, measure and compare representations of biological sequences "
        "in Euclidean and hyperbolic geometry.",
    )
    parser.add_argument("--version", action="version", version=f"biostrata {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BiostrataError as err:
        print(f"biostrata: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("biostrata: interrupted; finished results are kept.", file=sys.stderr)
        return 130


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field (``--batch-size`` for ``batch_size``); unset ones keep the config's."""
    from dataclasses import MISSING, fields

    from biostrata.config import TrainConfig

    g = p.add_argument_group("training options (override --config; defaults from the HGE paper)")
    g.add_argument("--config", help="YAML file of training options; options given here override it")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        helptext = f"default: {default}"
        if isinstance(default, bool):
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        elif isinstance(default, list):
            g.add_argument(flag, dest=f.name, type=int, nargs="*", default=None, help=helptext)
        elif f.name in ("length", "patience"):
            g.add_argument(flag, dest=f.name, type=int, default=None, help=helptext)
        else:
            g.add_argument(flag, dest=f.name, type=type(default), default=None, help=helptext)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of ``--config`` (or the defaults) with the options given on the command line."""
    from dataclasses import fields

    from biostrata.config import TrainConfig

    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    changes = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    return cfg.replace(**changes)


def load_splits(args: argparse.Namespace):
    """Splits from ``--data DIR`` (GUE layout) or ``--train/--dev/--test`` files."""
    from biostrata.data.genome import Splits, read_gue_dir, read_labelled
    from biostrata.errors import InputError

    files = (args.train, args.dev, args.test)
    if args.data and any(files):
        raise InputError("give either --data DIR or --train/--dev/--test files, not both")
    if args.data:
        return read_gue_dir(args.data)
    if not all(files):
        raise InputError("give --data DIR (train.csv, dev.csv, test.csv) or all three of --train, --dev, --test")
    return Splits(*(read_labelled(f) for f in files))


@command
def _train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a Euclidean or hyperbolic genome CNN",
        description="Train on the train split, keep the epoch with the best validation metric (dev only), "
        "evaluate it once on test. Writes config.yaml, model.pt and metrics.json per seed under --out.",
    )
    p.add_argument("--data", help="GUE-layout folder with train.csv, dev.csv, test.csv (header sequence,label)")
    p.add_argument("--train", help="training set: CSV (sequence,label) or FASTA with 'label=K' in headers")
    p.add_argument("--dev", help="validation set, used for model selection only")
    p.add_argument("--test", help="test set, evaluated once with the selected model")
    p.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    p.add_argument("--seeds", type=int, nargs="+", help="train once per seed, in OUT/seed<k>; overrides --seed")
    add_config_options(p)
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from biostrata.train.run import train

    cfg = config_from_args(args)
    splits = load_splits(args)
    seeds = args.seeds or [cfg.seed]
    results = []
    for seed in seeds:
        out = Path(args.out) / f"seed{seed}" if args.seeds else Path(args.out)
        metrics = train(cfg.replace(seed=seed), splits, out)
        results.append(metrics)
        print(
            f"{cfg.model} seed {seed}: test MCC {metrics['test_mcc']:.4f}, accuracy {metrics['test_accuracy']:.4f}, "
            f"F1 {metrics['test_f1']:.4f} (best epoch {metrics['best_epoch']}, dev {cfg.metric} "
            f"{metrics['dev_' + cfg.metric]:.4f}); wrote {out}"
        )
    if len(results) > 1:
        mcc = np.array([m["test_mcc"] for m in results])
        print(f"{cfg.model}: test MCC {mcc.mean():.4f} +- {mcc.std(ddof=1):.4f} over seeds {seeds}")
    return 0


@command
def _simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a labelled DNA dataset along a tree (GUE layout)",
        description="Grow a tree, evolve sequences along it under a substitution model, label the leaves "
        "by clade (or by a planted motif), split them train/dev/test by leaf, and write train.csv, dev.csv, "
        "test.csv (sequence,label), tree.nwk, leaves.csv and simulation.yaml to --out. Branch lengths are "
        "substitutions per site; the same --seed gives the same files byte for byte.",
    )
    p.add_argument("--out", required=True, help="output folder (created if missing; its files are replaced)")
    p.add_argument("--leaves", type=int, default=5000, help="number of leaves = sequences (default 5000)")
    p.add_argument("--length", type=int, default=200, help="root sequence length in bases (default 200)")
    p.add_argument("--tree", default="yule", choices=("yule", "birth-death", "balanced", "caterpillar"), help="tree shape (default yule)")
    p.add_argument("--height", type=float, default=1.0, help="root-to-leaf distance in substitutions per site (default 1.0)")
    p.add_argument("--birth", type=float, default=1.0, help="birth rate of --tree birth-death (default 1.0)")
    p.add_argument("--death", type=float, default=0.5, help="death rate of --tree birth-death, <= birth (default 0.5)")
    p.add_argument("--model", default="hky85", choices=("jc69", "k80", "hky85"), help="substitution model (default hky85)")
    p.add_argument("--kappa", type=float, help="transition/transversion ratio of k80 and hky85 (default 2.0)")
    p.add_argument("--freqs", type=float, nargs=4, metavar=("A", "C", "G", "T"), help="base frequencies of hky85, summing to 1 (default 0.3 0.2 0.2 0.3)")
    p.add_argument("--gamma", type=float, metavar="ALPHA", help="shape of gamma-distributed site rates (default: equal rates)")
    p.add_argument("--categories", type=int, default=4, help="discrete gamma rate categories (default 4)")
    p.add_argument("--indel-rate", type=float, default=0.0, help="indel events per site per substitution unit (default 0)")
    p.add_argument("--indel-length", type=float, default=2.0, help="mean indel length, geometric (default 2)")
    p.add_argument("--fixed-length", action="store_true", help="cut or pad (random bases) every sequence to --length")
    p.add_argument("--root", help="root sequence (ACGT); overrides --length")
    p.add_argument("--label", default="clade", choices=("clade", "motif"), help="class = clade of the tree, or a planted motif (default clade)")
    p.add_argument("--classes", type=int, default=2, help="number of classes (default 2)")
    p.add_argument("--clades", type=int, help="clades to cut the tree into, dealt to the classes (default: --classes)")
    p.add_argument("--motif-length", type=int, default=8, help="motif length for --label motif (default 8)")
    p.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "DEV", "TEST"), help="split fractions (default 0.8 0.1 0.1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(run=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    from biostrata.data.simulate import simulate_dataset, write_gue

    data = simulate_dataset(
        args.leaves, args.length, tree=args.tree, height=args.height, birth=args.birth, death=args.death,
        model=args.model, kappa=args.kappa, freqs=args.freqs, gamma=args.gamma, categories=args.categories,
        indel_rate=args.indel_rate, indel_length=args.indel_length, root=args.root, label=args.label,
        n_classes=args.classes, n_clades=args.clades, motif_length=args.motif_length,
        fractions=args.fractions, fixed_length=args.fixed_length, seed=args.seed,
    )  # fmt: skip
    out = write_gue(data, args.out)
    sizes = ", ".join(f"{name} {len(idx)}" for name, idx in data.rows.items())
    print(f"wrote {len(data.sequences)} sequences ({sizes}; {data.n_classes} classes) to {out}")
    return 0


@command
def _benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="train models over tasks and seeds of a benchmark suite (resumable sweep)",
        description="Train every (task, model, seed) of a benchmark suite and write one record per run to "
        "OUT/<suite>/<task>/<model>/seed<k>/record.json, atomically once the run has finished. Running the "
        "same command again skips finished runs, so a killed sweep resumes where it stopped. Suites: gue "
        "(28 tasks), gb (Genomic Benchmarks, 9), teb (7), or a folder of task folders holding train, dev and "
        "test files (CSV 'sequence,label' or FASTA with 'label=K' in the headers). Summarize with "
        "`biostrata report OUT`.",
    )
    p.add_argument("--suite", required=True, help="gue, gb, teb, or the path of a folder of task folders")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="task names (tf/0), groups (tf) or last parts (prom_core_all); default: all")
    p.add_argument("--models", nargs="+", default=["cnn,hcnn-s,hcnn-m"], help="models, comma- or space-separated (default cnn,hcnn-s,hcnn-m)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="training seeds (default 1 2 3)")
    p.add_argument("--out", required=True, help="sweep folder for the records (created if missing)")
    p.add_argument("--data-dir", help="data root holding gue/, genomic_benchmarks/, teb/ (default: $BIOSTRATA_DATA)")
    p.add_argument("--config", help="TrainConfig YAML that every run starts from (model, seed, length are set per run)")
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.add_argument("--batch-size", type=int, help="override the config's batch_size")
    p.add_argument("--lr", type=float, help="override the config's lr")
    p.add_argument("--dev-fraction", type=float, default=0.1, help="Genomic Benchmarks: share of train held out as dev, per class (default 0.1)")
    p.add_argument("--split-seed", type=int, default=0, help="Genomic Benchmarks: seed of that dev split (default 0)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local: in this process (default); ray: one Ray task per run")
    p.add_argument("--address", help="Ray cluster address, e.g. auto or ray://host:10001 (default: start a local Ray instance)")
    p.add_argument("--cpus-per-run", type=float, default=1, help="Ray: CPUs per run (default 1)")
    p.add_argument("--gpus-per-run", type=float, help="Ray: GPUs per run (default: 1 if the cluster has GPUs, else 0)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (each run and whether it is done) and stop")
    p.set_defaults(run=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    from biostrata.config import TrainConfig
    from biostrata.data.benchmarks import data_root, resolve_suite, select_tasks
    from biostrata.train.sweep import Sweep

    suite = resolve_suite(args.suite)
    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    cfg = cfg.replace(**{k: v for k, v in overrides.items() if v is not None})
    sweep = Sweep(
        suite,
        select_tasks(suite, args.tasks),
        [m for item in args.models for m in item.replace(",", " ").split()],
        args.seeds,
        args.out,
        cfg,
        data_dir=None if suite.layout == "custom" else data_root(args.data_dir),
        dev_fraction=args.dev_fraction,
        split_seed=args.split_seed,
    )
    if args.dry_run:
        print(sweep.describe())
        return 0
    records = sweep.run(backend=args.backend, address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    print(f"{len(records)} run(s) finished now, {len(sweep.runs) - len(records)} were already done; "
          f"records under {args.out}. Summarize with: biostrata report {args.out}")  # fmt: skip
    return 0


@command
def _report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="results table and bar charts of a benchmark sweep",
        description="Read every record.json under DIR and write results.md and results.csv (per task and "
        "model: mean and standard deviation of the test metric over seeds x100, parameter count, whether "
        "hyperbolic >= Euclidean, published DNABERT-2 and NT-2.5B numbers on GUE) and results_<suite>.png.",
    )
    p.add_argument("dir", metavar="DIR", help="the --out folder of `biostrata benchmark`")
    p.add_argument("--out", help="folder for the report files (default: DIR)")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from biostrata.report.tables import write_report

    paths = write_report(args.dir, args.out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
