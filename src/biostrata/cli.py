"""The `biostrata` command: one thin subcommand per job; the work lives in the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from biostrata import __version__
from biostrata.errors import BiostrataError, InputError

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
    from biostrata.train.run import quiet_lightning

    quiet_lightning()
    try:
        return int(args.run(args) or 0)
    except BiostrataError as err:
        print(f"biostrata: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("biostrata: interrupted; finished results are kept.", file=sys.stderr)
        return 130


def set_torch_threads(threads: int | None) -> None:
    """Apply a ``--threads`` option to torch's CPU thread pool (None: leave torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def load_splits(args: argparse.Namespace):
    """Splits from ``--data DIR`` (GUE layout) or ``--train/--dev/--test`` files."""
    from biostrata.data.genome import Splits, read_gue_dir, read_labelled

    files = (args.train, args.dev, args.test)
    if args.data and any(files):
        raise InputError("give either --data DIR or --train/--dev/--test files, not both")
    if args.data:
        return read_gue_dir(args.data)
    if not all(files):
        raise InputError("give --data DIR (train.csv, dev.csv, test.csv) or all three of --train, --dev, --test")
    return Splits(*(read_labelled(f) for f in files))


@command
def _demo(sub: argparse._SubParsersAction) -> None:
    from biostrata.config import DemoSettings

    p = sub.add_parser(
        "demo",
        help="the main job on simulated data: Euclidean vs hyperbolic CNN, test MCC and delta",
        description="Simulate DNA evolving along a tree, train the Euclidean CNN and the hyperbolic "
        "(Lorentz) CNN, and report their test MCC and the Gromov delta of their embeddings. No download.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    DemoSettings.add_options(p, "demo options")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from biostrata.config import DemoSettings
    from biostrata.demo import run_demo

    table = run_demo(args.out, DemoSettings.from_args(args))
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nwrote {args.out}/summary.md, summary.csv, summary.png; runs in {args.out}/runs, data in {args.out}/data")
    return 0


@command
def _study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="end-to-end studies that reproduce a set of results", description="Studies.")
    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True)
    c = studies.add_parser(
        "conditions",
        help="hyperbolic - Euclidean MCC and embedding delta against tree shape, rate and label depth",
        description="Simulate datasets under varied generating conditions (one factor at a time around a "
        "base), train the Euclidean and the hyperbolic CNN on each, and plot MCC(hyperbolic) - MCC(Euclidean) "
        "and the Gromov delta of both models' embeddings against each condition. Resumable.",
    )
    c.add_argument("--out", default="runs/conditions", help="output folder (default: runs/conditions)")
    c.add_argument("--threads", type=int, help="CPU threads for torch")
    from biostrata.config import ConditionsSettings

    ConditionsSettings.add_options(c, "study options")
    c.set_defaults(run=_run_study_conditions)
    g = studies.add_parser(
        "cross-granularity",
        help="protein LM + domain LM in three initialization arms: CKA over layers and checkpoints, probes, fusion",
        description="Pre-train a small protein LM and the domain LM (random, fine-tuned and frozen protein-derived "
        "table), then measure: CKA of the table against its initialization over epochs, layer x layer CKA per arm, "
        "MIBiG product-class probes on protein-level, per-layer domain-level and combined features, and a Pfam-clan "
        "probe on token-level features. Writes tables, plots and cross_granularity.md in --out. Resumable.",
    )
    g.add_argument("--out", default="runs/cross_granularity", help="output folder (default: runs/cross_granularity)")
    g.add_argument("--data", help="folder with bgc/ and pfam/: sets the four input files that are not given one by one")
    from biostrata.config import CrossGranularitySettings

    CrossGranularitySettings.add_options(g, "study options", skip=("domain_sizes",))
    g.set_defaults(run=_run_study_cross_granularity)


def _run_study_conditions(args: argparse.Namespace) -> int:
    from biostrata.config import ConditionsSettings
    from biostrata.studies.conditions import run_conditions, summarize

    set_torch_threads(args.threads)
    table = run_conditions(args.out, ConditionsSettings.from_args(args))
    print(summarize(table).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out}/conditions.md, conditions.csv, conditions.png")
    return 0


def _run_study_cross_granularity(args: argparse.Namespace) -> int:
    from pathlib import Path

    from biostrata.config import CrossGranularitySettings
    from biostrata.studies.cross_granularity import run_cross_granularity

    settings = CrossGranularitySettings.from_args(args)
    if args.data:
        data = Path(args.data)
        files = {
            "corpus": data / "bgc" / "mibig_domain_list.txt", "pfam": data / "pfam" / "Pfam-A.clans.tsv",
            "classes": data / "bgc" / "mibig3_classes.csv", "domains": data / "bgc" / "mibig_domains.tsv",
        }  # fmt: skip
        settings = settings.replace(**{k: str(v) for k, v in files.items() if getattr(args, k) is None})
    run_cross_granularity(args.out, settings)
    print(f"wrote {args.out}/cross_granularity.md, product_class.csv, clan.csv, cka_*.png, probes.png")
    return 0


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
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice, all cores)")
    from biostrata.config import TrainConfig

    TrainConfig.add_options(p, "training options (defaults from the HGE paper)")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from biostrata.config import TrainConfig
    from biostrata.train.run import train

    set_torch_threads(args.threads)
    cfg = TrainConfig.from_args(args)
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
    p.add_argument(
        "--tree",
        default="yule",
        choices=("yule", "birth-death", "balanced", "caterpillar"),
        help="tree shape (default yule)",
    )
    p.add_argument(
        "--height", type=float, default=1.0, help="root-to-leaf distance in substitutions per site (default 1.0)"
    )
    p.add_argument("--birth", type=float, default=1.0, help="birth rate of --tree birth-death (default 1.0)")
    p.add_argument("--death", type=float, default=0.5, help="death rate of --tree birth-death, <= birth (default 0.5)")
    p.add_argument(
        "--model", default="hky85", choices=("jc69", "k80", "hky85"), help="substitution model (default hky85)"
    )
    p.add_argument("--kappa", type=float, help="transition/transversion ratio of k80 and hky85 (default 2.0)")
    p.add_argument(
        "--freqs",
        type=float,
        nargs=4,
        metavar=("A", "C", "G", "T"),
        help="base frequencies of hky85, summing to 1 (default 0.3 0.2 0.2 0.3)",
    )
    p.add_argument(
        "--gamma", type=float, metavar="ALPHA", help="shape of gamma-distributed site rates (default: equal rates)"
    )
    p.add_argument("--categories", type=int, default=4, help="discrete gamma rate categories (default 4)")
    p.add_argument(
        "--indel-rate", type=float, default=0.0, help="indel events per site per substitution unit (default 0)"
    )
    p.add_argument("--indel-length", type=float, default=2.0, help="mean indel length, geometric (default 2)")
    p.add_argument("--fixed-length", action="store_true", help="cut or pad (random bases) every sequence to --length")
    p.add_argument("--root", help="root sequence (ACGT); overrides --length")
    p.add_argument(
        "--label",
        default="clade",
        choices=("clade", "motif"),
        help="class = clade of the tree, or a planted motif (default clade)",
    )
    p.add_argument("--classes", type=int, default=2, help="number of classes (default 2)")
    p.add_argument("--clades", type=int, help="clades to cut the tree into, dealt to the classes (default: --classes)")
    p.add_argument("--motif-length", type=int, default=8, help="motif length for --label motif (default 8)")
    p.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "DEV", "TEST"),
        help="split fractions (default 0.8 0.1 0.1)",
    )
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
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK",
        help="task names (tf/0), groups (tf) or last parts (prom_core_all); default: all",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=["cnn,hcnn-s,hcnn-m"],
        help="models, comma- or space-separated (default cnn,hcnn-s,hcnn-m)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="training seeds (default 1 2 3)")
    p.add_argument("--out", required=True, help="sweep folder for the records (created if missing)")
    p.add_argument("--data-dir", help="data root holding gue/, genomic_benchmarks/, teb/ (default: $BIOSTRATA_DATA)")
    p.add_argument(
        "--dev-fraction",
        type=float,
        default=0.1,
        help="Genomic Benchmarks: share of train held out as dev, per class (default 0.1)",
    )
    p.add_argument("--split-seed", type=int, default=0, help="Genomic Benchmarks: seed of that dev split (default 0)")
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: in this process (default); ray: one Ray task per run",
    )
    p.add_argument(
        "--address", help="Ray cluster address, e.g. auto or ray://host:10001 (default: start a local Ray instance)"
    )
    p.add_argument("--cpus-per-run", type=float, default=1, help="Ray: CPUs per run (default 1)")
    p.add_argument("--gpus-per-run", type=float, help="Ray: GPUs per run (default: 1 if the cluster has GPUs, else 0)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (each run and whether it is done) and stop")
    from biostrata.config import TrainConfig
    from biostrata.train.sweep import PER_RUN_KEYS

    TrainConfig.add_options(
        p, f"training options of every run ({', '.join(PER_RUN_KEYS)} are set per run)", skip=PER_RUN_KEYS
    )
    p.set_defaults(run=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    from biostrata.config import TrainConfig
    from biostrata.data.benchmarks import data_root, resolve_suite, select_tasks
    from biostrata.train.sweep import Sweep

    suite = resolve_suite(args.suite)
    cfg = TrainConfig.from_args(args)
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
    records = sweep.run(
        backend=args.backend, address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run
    )
    print(f"{len(records)} run(s) finished now, {len(sweep.runs) - len(records)} were already done; "
          f"records under {args.out}. Summarize with: biostrata report {args.out}")  # fmt: skip
    return 0


@command
def _report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="results table and bar charts of a benchmark sweep, or several sweeps compared",
        description="With one DIR: read every record.json under it and write results.md and results.csv (per "
        "task and model: mean and standard deviation of the test metric over seeds x100, parameter count, whether "
        "hyperbolic >= Euclidean, counts at or above the published DNABERT-2 and NT-2.5B numbers on GUE) and "
        "results_<suite>.png. With several DIRs (one per config, each a variant named by its folder): write "
        "comparison.md and comparison.csv, per task and model the validation and test metric of each variant, "
        "the best variant on validation marked.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="the --out folder(s) of `biostrata benchmark`")
    p.add_argument("--out", help="folder for the report files (default: DIR; required with several DIRs)")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from biostrata.report.compare import write_comparison
    from biostrata.report.summary import write_report

    if len(args.dirs) == 1:
        paths = write_report(args.dirs[0], args.out)
    elif args.out is None:
        raise InputError("--out: give a folder for comparison.md when comparing several sweeps")
    else:
        paths = write_comparison(args.dirs, args.out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


@command
def _pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pre-train the domain-level BGC language model (BiGCARP) or a small protein LM",
        description="Masked-token pre-training (15%%; 80/10/10). --level domain (default): BiGCARP's ByteNet "
        "over the Pfam domains of each BGC, split by BGC, in one arm: random table, or initialized from "
        "--init-table and fine-tuned or frozen. --level protein: a small ESM-2 on protein sequences. Writes "
        "model.pt, metrics.json (validation masked-token accuracy and perplexity), checkpoints/ and logs/ in --out.",
    )
    p.add_argument(
        "--corpus",
        required=True,
        help="domain level: domain-name list, accession CSV or BiGCARP CSV; "
        "protein level: FASTA or a domain table (.tsv with protein_sequence)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--pfam", help="Pfam-A.clans.tsv, to map domain names and accessions (recommended)")
    p.add_argument("--format", default="auto", choices=("auto", "domain-list", "pfamid", "bigcarp"))
    p.add_argument("--strict", action="store_true", help="stop at the first unknown domain or malformed line")
    p.add_argument("--init-table", help="family table (.pt) from `biostrata embed --family-table`")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy shared machine)")
    from biostrata.config import PretrainSettings

    PretrainSettings.add_options(p, "pre-training options")
    p.set_defaults(run=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    from biostrata.config import PretrainSettings
    from biostrata.train import pretrain as pt

    set_torch_threads(args.threads)
    s = PretrainSettings.from_args(args)
    common = dict(
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        seed=s.seed,
        val_fraction=s.val_fraction,
        max_length=s.max_length,
        accelerator=s.accelerator,
        devices=s.devices_arg,
        progress=s.progress,
        resume=s.resume,
    )
    if s.level == "protein":
        from biostrata.data.proteins import read_proteins
        from biostrata.models.protein_lm import small_protein_lm

        plm = small_protein_lm(s.protein_layers, s.protein_dim, s.protein_heads, seed=s.seed)
        result = pt.pretrain_protein_lm(plm, read_proteins(args.corpus), args.out, **common)
    else:
        from biostrata.data.clusters import PfamTable, read_clusters
        from biostrata.models.init_table import FamilyTable

        pfam = PfamTable.read(args.pfam) if args.pfam else None
        corpus = read_clusters(args.corpus, pfam, args.format, args.strict)
        table = FamilyTable.load(args.init_table) if args.init_table else None
        result = pt.pretrain_domain_lm(
            corpus,
            args.out,
            preset=s.preset,
            arm=s.arm,
            family_table=table,
            projection=s.projection,
            pfam=pfam,
            class_token=s.class_token,
            separators=s.separators,
            snapshots=s.snapshots,
            **common,
            **({"d_embed": s.d_embed} if s.d_embed else {}),
        )
        if result["init"]:
            print(
                f"initialized {result['init']['initialized']} domain rows; {result['init']['missing']} domains "
                "without member sequences keep random rows"
            )
    best = result["best"]
    print(
        f"best epoch {best['epoch']}: validation masked-token accuracy {best['val_acc']:.4f}, perplexity "
        f"{best['val_ppl']:.2f} ({best['masked_tokens']} masked tokens); wrote {args.out}"
    )
    return 0


@command
def _embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="layer-wise protein embeddings (ESM or a small protein LM) into an HDF5 store",
        description="Embed proteins sorted by length and packed by a token budget; stream mean/BOS/per-token "
        "outputs of the chosen layers into an HDF5 store keyed by sequence id (resumable). Under torchrun each "
        "rank writes OUT.rank<r>-of-<w>.h5; --merge joins them. With a domain table (.tsv) --family-table "
        "also writes the mean vector of each Pfam family's members, for `biostrata pretrain --init-table`.",
    )
    p.add_argument("--model", help="fair-esm .pt file, or hub name such as esm2_t33_650M_UR50D")
    p.add_argument("--input", help="FASTA, or a domain table (.tsv with pfam_id and protein_sequence)")
    p.add_argument("--out", required=True, help="HDF5 store to write (or to merge into, with --merge)")
    p.add_argument("--layers", type=int, nargs="+", default=[-1], help="layers (0 = token embedding; -1 = last)")
    p.add_argument("--pooling", nargs="+", default=["mean"], choices=("mean", "bos", "per_token"))
    p.add_argument("--token-budget", type=int, default=4096, help="padded tokens per batch (default 4096)")
    p.add_argument(
        "--long",
        default="truncate",
        choices=("truncate", "window"),
        help="proteins over --max-residues: keep the first residues, or cover with overlapping windows",
    )
    p.add_argument("--max-residues", type=int, help="model length limit (default: saved with the model, else 1022)")
    p.add_argument("--overlap", type=int, default=128, help="residues shared by consecutive windows")
    p.add_argument("--device", help="default: cuda:$LOCAL_RANK if a GPU is present, else cpu")
    p.add_argument("--half", action=argparse.BooleanOptionalAction, default=None, help="default: on for GPU")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="stored precision")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow full unpickling of a local .pt file")
    p.add_argument("--family-table", help="also write per-family mean vectors here (.pt; needs a .tsv input)")
    p.add_argument("--table-layer", type=int, help="layer of the family vectors (default: last of --layers)")
    p.add_argument("--merge", nargs="+", metavar="STORE", help="only merge these per-rank stores into --out")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from pathlib import Path

    from biostrata.data.embedding_store import EmbeddingStore, merge_stores

    set_torch_threads(args.threads)
    if args.merge:
        print(f"merged {len(args.merge)} stores into {merge_stores(args.merge, args.out)}")
        return 0
    if not args.model or not args.input:
        raise InputError("give --model and --input (or --merge STORE ...)")
    from biostrata.data.proteins import family_members, read_proteins
    from biostrata.models.init_table import family_table_from_store
    from biostrata.models.protein_lm import extract_embeddings, load_protein_lm

    records = read_proteins(args.input)
    members = family_members(records)
    if args.family_table and not members:
        raise InputError(f"--family-table needs records with Pfam families (a .tsv domain table), not {args.input}")
    plm = load_protein_lm(args.model, trusted=args.trust_checkpoint, max_residues=args.max_residues)
    path = extract_embeddings(
        plm,
        records,
        args.out,
        layers=args.layers,
        poolings=args.pooling,
        token_budget=args.token_budget,
        long=args.long,
        overlap=args.overlap,
        device=args.device,
        half=args.half,
        dtype=args.dtype,
        progress=not args.no_progress,
    )
    with EmbeddingStore(path) as store:
        print(f"{len(store)} sequences, layers {store.layers}, dim {store.dim}, {store.poolings} in {path}")
        if args.family_table:
            if path != Path(args.out):
                raise InputError("--family-table needs the merged store; run --merge first, then build the table")
            layer = plm.layer_index([args.table_layer if args.table_layer is not None else args.layers[-1]])[0]
            table = family_table_from_store(store, members, layer)
            table.save(args.family_table)
            print(f"{len(table.families)} family vectors (layer {layer}, dim {table.dim}) in {args.family_table}")
    return 0


@command
def _delta(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "delta",
        help="Gromov delta-hyperbolicity of distances, points, model embeddings; calibration",
        description="How tree-like is a dataset: Gromov delta (four-point; max over base points of "
        "min((x|z)_p, (z|y)_p) - (x|y)_p) and relative delta 2*delta/diameter (0: a tree; 1: the largest). "
        "Give INPUT (.npy, .npz, .h5, .csv: a distance matrix, or points with --metric), or --calibrate N, "
        "or --model CHECKPOINT --data TASK_DIR.",
    )
    p.add_argument("input", nargs="?", help="distance matrix or points (.npy, .npz, .h5, .csv)")
    p.add_argument("--key", help="array in a .npz, dataset in an .h5 (pooling in a biostrata embedding store)")
    p.add_argument("--layer", type=int, help="layer of a biostrata embedding store (default: the last)")
    p.add_argument(
        "--metric",
        default="precomputed",
        choices=("precomputed", "euclidean", "cosine", "lorentz", "poincare"),
        help="precomputed: INPUT is a distance matrix (default); else INPUT rows are points",
    )
    p.add_argument(
        "--curvature", type=float, default=1.0, help="K of the lorentz/poincare metric, curvature -K (default 1)"
    )
    p.add_argument(
        "--method",
        default="exact",
        choices=("exact", "fixed", "sampled"),
        help="exact (default; worst case ~n^4/8 steps), fixed (base points), sampled (mean +- sd)",
    )
    p.add_argument("--base", type=int, nargs="+", default=[0], help="fixed: base point index(es) (default 0)")
    p.add_argument("--samples", type=int, default=1500, help="sampled: points per sample (default 1500)")
    p.add_argument("--bases", type=int, default=1, help="sampled: base points per sample (default 1)")
    p.add_argument("--repeats", type=int, default=10, help="sampled: number of samples (default 10)")
    p.add_argument("--histogram", type=int, metavar="BINS", help="also the distribution of relative delta over triples")
    p.add_argument(
        "--histogram-bases", type=int, metavar="B", help="histogram over B random base points (default: all)"
    )
    p.add_argument(
        "--calibrate", type=int, metavar="N", help="relative delta of N points in reference spaces (tree, plane, ...)"
    )
    p.add_argument("--model", metavar="CHECKPOINT", help="model.pt (or run folder) from `biostrata train`")
    p.add_argument("--data", metavar="TASK_DIR", help="with --model: task folder with train/dev/test.csv")
    p.add_argument(
        "--split", default="test", choices=("train", "dev", "test"), help="with --model: split (default test)"
    )
    p.add_argument("--points", type=int, default=1000, help="with --model: sequences to sample (default 1000)")
    p.add_argument("--kmer", type=int, default=4, help="with --model: k of the k-mer spectrum baseline (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", help="cpu or cuda[:i] (default: cuda when torch has a GPU)")
    p.add_argument("--threads", type=int, help="CPU worker threads (default: torch's thread count)")
    p.add_argument(
        "--json", action="store_true", help="print JSON (fields delta, relative_delta, diameter, method, n, ...)"
    )
    p.set_defaults(run=_run_delta)


def _run_delta(args: argparse.Namespace) -> int:
    import json

    from biostrata.analysis import hyperbolicity as hyp
    from biostrata.geometry.delta import delta_distribution

    modes = [args.input is not None, args.calibrate is not None, args.model is not None or args.data is not None]
    if sum(modes) != 1:
        raise InputError("give exactly one of: INPUT, --calibrate N, or --model CHECKPOINT --data TASK_DIR")
    if modes[2] and not (args.model and args.data):
        raise InputError("--model and --data go together: a trained model and the task folder to embed")
    progress = sys.stderr.isatty()
    common = dict(
        method=args.method,
        base=args.base,
        samples=args.samples,
        bases=args.bases,
        repeats=args.repeats,
        device=args.device,
        threads=args.threads,
    )
    if args.calibrate is not None:
        rows = hyp.calibrate(args.calibrate, seed=args.seed, progress=progress, **common)
        print(json.dumps(rows, indent=2) if args.json else hyp.format_rows(rows, "space"))
        return 0
    if args.model is not None:
        rows = hyp.dataset_deltas(
            args.model,
            args.data,
            split=args.split,
            points=args.points,
            kmer=args.kmer,
            seed=args.seed,
            progress=progress,
            **common,
        )
        print(json.dumps(rows, indent=2) if args.json else hyp.format_rows(rows, "representation"))
        return 0
    data = hyp.load_array(args.input, args.key, args.layer)
    res = hyp.gromov_delta(
        data, metric=args.metric, curvature=args.curvature, seed=args.seed, progress=progress, **common
    )
    out = {"input": args.input, "metric": args.metric, **res.to_dict()}
    if args.histogram is not None:
        hist = delta_distribution(
            hyp.distances_of(data, args.metric, args.curvature),
            bins=args.histogram,
            bases=args.histogram_bases,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
            progress=progress,
        )
        out["histogram"] = hist.to_dict()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(hyp.format_rows([out], "input"))
    if res.witness is not None:
        w, z, x, y = res.witness
        print(f"attained by points {res.witness}: d({x},{y}) + d({z},{w}) is the largest of the three pair sums")
    if args.histogram is not None:
        h = out["histogram"]
        print(f"relative delta over {h['triples']} triples ({h['base_points']} base points), mean {h['mean']:.4g}:")
        edges, counts = h["edges"], h["counts"]
        for lo, hi, c in zip(edges[:-1], edges[1:], counts):
            print(f"  [{lo:.3f}, {hi:.3f})  {c}")
    return 0


@command
def _cka(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cka",
        help="CKA (and mutual k-NN) between the layers of one or two representations, or a curve against one",
        description="Centered kernel alignment between representations of the same examples (rows joined by id). "
        "One INPUT: its layer x layer matrix; two: layers of the first x layers of the second; --against REF: the "
        "CKA of each INPUT (e.g. checkpoints' embedding tables) with REF (e.g. the table they started from). "
        "Inputs: .npz (one array per layer, optional 'ids'), .npy, .h5 embedding store, .pt family table or "
        "domain-LM checkpoint (its token table).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="representation files")
    p.add_argument("--against", metavar="REF", help="reference representation (its one layer, or --ref-layer)")
    p.add_argument("--ref-layer", help="layer of REF to compare with")
    p.add_argument("--layers", nargs="+", help="layers of the (first) input to use (default: all)")
    p.add_argument("--layers-b", nargs="+", help="layers of the second input (default: all)")
    p.add_argument("--kernel", default="linear", choices=("linear", "rbf"))
    p.add_argument("--debiased", action="store_true", help="unbiased HSIC (near 0 for independent features)")
    p.add_argument("--sigma-frac", type=float, default=1.0, help="RBF bandwidth as a fraction of the median distance")
    p.add_argument("--batch-size", type=int, default=4096, help="rows per minibatch of the linear CKA")
    p.add_argument("--pooling", default="mean", choices=("mean", "bos"), help="pooled output read from .h5 stores")
    p.add_argument("--knn", type=int, metavar="K", help="also the mutual K-nearest-neighbour agreement")
    p.add_argument("--out", help="CSV to write (with --knn, also OUT with .knn.csv)")
    p.add_argument("--heatmap", help="PNG heatmap of the matrix")
    p.set_defaults(run=_run_cka)


def _run_cka(args: argparse.Namespace) -> int:
    from pathlib import Path

    from biostrata.analysis.cka import plot_cka_heatmap
    from biostrata.analysis.layers import compare_files
    from biostrata.io import atomic_write_text

    table, knn = compare_files(
        args.inputs, against=args.against, ref_layer=args.ref_layer, layers=args.layers, layers_b=args.layers_b,
        pooling=args.pooling, knn=args.knn, kernel=args.kernel, debiased=args.debiased, sigma_frac=args.sigma_frac,
        batch_size=args.batch_size,
    )  # fmt: skip
    print(f"{'debiased ' if args.debiased else ''}{args.kernel} CKA")
    print(table.to_string(index=bool(not args.against), float_format=lambda v: f"{v:.4f}"))
    if knn is not None:
        print(f"mutual {args.knn}-NN agreement")
        print(knn.to_string(index=bool(not args.against), float_format=lambda v: f"{v:.4f}"))
    if args.heatmap and not args.against:
        plot_cka_heatmap(table, args.heatmap, title=f"{args.kernel} CKA")
        print(f"wrote {args.heatmap}")
    if args.out:
        atomic_write_text(Path(args.out), table.to_csv(index=not args.against))
        if knn is not None:
            atomic_write_text(Path(args.out).with_suffix(".knn.csv"), knn.to_csv(index=not args.against))
        print(f"wrote {args.out}")
    return 0


@command
def _probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="probe features for labels: linear or MLP, repeated stratified (grouped) k-fold, AUROC/MCC/F1",
        description="Cross-validate a probe of frozen features. Features: FILE[:LAYER] (.npz, .npy, .h5 store, "
        ".pt), several joined by id and concatenated (or --fusion projection for two). Labels: a CSV whose first "
        "column is the id; --label-column for one label per row (binary/multi-class), else every other column "
        "is a 0/1 class (multi-label, iterative stratification). --group-column keeps groups out of straddling "
        "train and test.",
    )
    p.add_argument("--features", nargs="+", required=True, metavar="FILE[:LAYER]")
    p.add_argument("--all-layers", action="store_true", help="probe every layer of the one features file separately")
    p.add_argument("--labels", required=True, help="CSV of labels (first column: id)")
    p.add_argument("--id-column", help="id column of the label CSV (default: the first)")
    p.add_argument("--label-column", help="single label column (binary or multi-class)")
    p.add_argument("--group-column", help="column of groups that must not straddle train and test")
    p.add_argument("--probe", default="linear", choices=("linear", "mlp"))
    p.add_argument(
        "--fusion",
        default="concat",
        choices=("concat", "projection"),
        help="two feature files: concatenate, or fuse by a learned gated projection",
    )
    p.add_argument("--cs", type=float, nargs="+", default=[0.01, 0.1, 1.0, 10.0], help="linear: C values (inner CV)")
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 256], help="mlp: hidden layer sizes")
    p.add_argument("--one-vs-rest", action="store_true", help="mlp, multi-label: one network per class")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval (0: none)")
    p.add_argument("--out", help="folder for summary.csv and folds.csv")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    p.set_defaults(run=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from biostrata.analysis.probe_files import probe_files
    from biostrata.analysis.probes import LinearProbe, MLPProbe
    from biostrata.io import atomic_write_text

    probe = (
        LinearProbe(Cs=tuple(args.cs))
        if args.probe == "linear"
        else MLPProbe(tuple(args.hidden), one_vs_rest=args.one_vs_rest)
    )
    table, folds = probe_files(
        args.features, args.labels, probe, all_layers=args.all_layers, fusion=args.fusion, id_column=args.id_column,
        label_column=args.label_column, group_column=args.group_column, n_splits=args.folds, seeds=args.seeds,
        n_boot=args.bootstrap, threads=args.threads,
    )  # fmt: skip
    cols = [c for c in table.columns if not c.startswith("auroc[")]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        atomic_write_text(Path(args.out) / "summary.csv", table.to_csv(index=False))
        atomic_write_text(Path(args.out) / "folds.csv", folds.to_csv(index=False))
        print(f"wrote {args.out}/summary.csv and folds.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
