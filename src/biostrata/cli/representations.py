"""Subcommands of the cross-granularity line: pre-train language models, extract layer-wise
embeddings, and compare representations (CKA) or probe them for labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from biostrata.cli.common import (
    command,
    finished_runs,
    out_option,
    overwrite_option,
    print_table,
    set_torch_threads,
    threads_option,
)
from biostrata.cli.options import Option, add_options, add_settings
from biostrata.config import PretrainSettings
from biostrata.errors import InputError

#: The corpus reader that ``pretrain`` calls (its ``fmt`` and ``strict`` are options) and its formats.
READ_CLUSTERS = "biostrata.data.clusters.corpus:read_clusters"
CORPUS_FORMATS = "biostrata.data.clusters.corpus:CORPUS_FORMATS"


@command("pretrain")
def _pretrain(p: argparse.ArgumentParser) -> None:
    """pre-train the domain-level BGC language model (BiGCARP) or a small protein LM

    Masked-token pre-training (15%; 80/10/10). --level domain (default): BiGCARP's ByteNet over the Pfam domains
    of each BGC, split by BGC, in one arm: random table, or initialized from --init-table and fine-tuned or
    frozen; --geometry lorentz puts its token table and output layer on the hyperboloid. --level protein: a
    small ESM-2 on protein sequences. Writes the model (config.json, model.safetensors; --out is a model folder that
    `biostrata embed --model` and biostrata.load read), metrics.json (validation masked-token accuracy and
    perplexity), checkpoints/ and logs/ in --out. metrics.json is written last: a finished --out is refused,
    unless --overwrite (or --resume, which continues an interrupted run).
    """
    from biostrata.settings import signature_defaults, source_constant

    # the corpus reader's own defaults and formats, read from its source: its module loads torch, too slow for --help
    reader = signature_defaults(READ_CLUSTERS)
    add_options(
        p, None,
        Option("corpus", "domain level: domain-name list, accession CSV, BiGCARP CSV or a domain table (.tsv: "
               "annotate's domains.tsv or mibig_domains.tsv); protein level: FASTA or a domain table (its domains' "
               "protein segments)", type=str, required=True, path="file"),
        out_option(),
        Option("pfam", "Pfam-A.clans.tsv, to map domain names and accessions (recommended)", type=str, path="file"),
        Option("format", "domain level: layout of --corpus; auto tells it by the file's columns",
               default=reader["fmt"], choices=source_constant(CORPUS_FORMATS)),
        Option("strict", "stop at the first unknown domain or malformed line", default=reader["strict"]),
        Option("init_table", "family table (its folder, or a .pt of earlier versions) from `biostrata embed "
               "--family-table`", type=str, path="any"),
        Option("export_sequence_models", "domain level: also export the model to this .pt in sequence-models' "
               "layout, which BiGCARP's own code reads (a euclidean model with the linear head)", type=str,
               metavar="FILE", path="out_file"),
        overwrite_option("pre-train again, replacing a finished run in --out"),
        threads_option("torch CPU threads (1 is fastest on a busy shared machine)"),
    )  # fmt: skip
    add_settings(p, PretrainSettings, "pre-training options")
    p.set_defaults(run=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    s = args.settings
    if s.level == "protein" and args.export_sequence_models:
        raise InputError("--export-sequence-models: a domain-level model only; drop it with --level protein")
    finished_runs(args.out, {"run": Path(args.out)}, "metrics.json", args.overwrite or s.resume, "pre-train again")
    # --resume continues only the pre-training of these settings and inputs
    s.record(
        Path(args.out) / "settings.json", {k: getattr(args, k) for k in ("corpus", "pfam", "init_table")}, s.resume
    )
    from biostrata.train import pretrain as pt

    set_torch_threads(args.threads)
    shared = ("epochs", "batch_size", "lr", "seed", "val_fraction", "max_length", "accelerator", "progress", "resume")
    common = {name: getattr(s, name) for name in shared} | {"devices": s.devices_arg}
    if s.level == "protein":
        from biostrata.data.clusters.proteins import read_proteins
        from biostrata.models.protein_lm import small_protein_lm

        plm = small_protein_lm(s.protein_layers, s.protein_dim, s.protein_heads, seed=s.seed)
        result = pt.pretrain_protein_lm(plm, read_proteins(args.corpus), args.out, **common)
    else:
        from biostrata.data.clusters.corpus import read_clusters
        from biostrata.data.clusters.pfam import PfamTable
        from biostrata.models.init_table import FamilyTable

        pfam = PfamTable.read(args.pfam) if args.pfam else None
        corpus = read_clusters(args.corpus, pfam, args.format, args.strict)
        table = FamilyTable.load(args.init_table) if args.init_table else None
        result = pt.pretrain_domain_lm(
            corpus, args.out, preset=s.preset, arm=s.arm, family_table=table, projection=s.projection, pfam=pfam,
            class_token=s.class_token, separators=s.separators, snapshots=s.snapshots, **common,
            geometry=s.geometry, curvature=s.curvature,
            **{k: getattr(s, k) for k in ("d_embed", "d_model", "n_layers") if getattr(s, k)},
        )  # fmt: skip
        if args.export_sequence_models:
            from biostrata.models.domain_lm import DomainLM

            DomainLM.from_pretrained(args.out).save_sequence_models(
                args.export_sequence_models, pfam, f"bigcarp_{result['arm']}"
            )
            print(f"exported the model in sequence-models' layout to {args.export_sequence_models}")
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


@command("embed")
def _embed(p: argparse.ArgumentParser) -> None:
    """layer-wise embeddings of proteins (ESM), gene clusters (domain LM) or DNA (genome CNN) into an HDF5 store

    Proteins (--input FASTA or a domain table .tsv; --model a fair-esm .pt file or hub name): sorted by length
    and packed by a token budget; mean/BOS/per-token outputs of the chosen layers streamed into an HDF5 store
    keyed by sequence id (resumable). Under torchrun each rank writes OUT.rank<r>-of-<w>.h5; --merge joins them.
    With a domain table --family-table also writes the mean vector of each Pfam family's members, for
    `biostrata pretrain --init-table`. Gene clusters (--input a .csv such as `biostrata annotate` writes, a
    domain list .txt, or a domain table .tsv; --model a BiGCARP / `biostrata pretrain` checkpoint or a name such
    as bigcarp_random):
    per layer the mean over each cluster's domains, and with --pooling per_token the state of every domain;
    domains outside the model's vocabulary are counted and reported. DNA (--input a CSV sequence,label;
    --model a `biostrata train` run folder, or a model.pt of earlier versions): per layer the mean over its own positions (a hyperbolic
    layer: the Lorentz centroid), keyed by row number (0, 1, ...).
    """
    from biostrata.api.models import embed, load

    add_options(
        p, embed,
        Option("model", "proteins: a Hugging Face ESM name (facebook/esm2_t6_8M_UR50D, _t12_35M, _t30_150M, _t33_650M, "
               "_t36_3B, _t48_15B; facebook/esm1b_t33_650M_UR50S; the facebook/ prefix may be left out), a local "
               "transformers directory (config.json + model.safetensors + vocab.txt: the way to load offline), or a "
               "fair-esm .pt file; gene clusters: a BiGCARP / `biostrata pretrain` checkpoint"),
        Option("backend", "auto: .pt files with fair-esm, directories and names with transformers; fair-esm with a "
               "name loads fair-esm's own download (esm2_t33_650M_UR50D.pt in $TORCH_HOME/hub/checkpoints)", of=load,
               choices=("auto", "transformers", "fair-esm")),
        Option("input", "FASTA or domain table (.tsv): proteins; clusters .csv, domain list .txt or domain table "
               "(.tsv, with a domain LM): gene clusters", param="inputs", path="file"),
        Option("out", "HDF5 store to write (or to merge into, with --merge)", required=True, path="out_file"),
        Option("layers", "layers (0 = token embedding; -1 = last)"),
        Option("pooling", "outputs kept per layer: the mean over the item's own positions, the <cls> state "
               "(proteins), every position", choices=("mean", "bos", "per_token")),
        Option("token_budget", "padded tokens per batch (default: 1024 on the CPU, 16384 on a GPU)"),
        Option("long", "proteins over --max-residues: keep the first residues, or cover with overlapping windows",
               choices=("truncate", "window")),
        Option("max_residues", "model length limit (default: saved with the model, else 1022)", of=load),
        Option("overlap", "residues shared by consecutive windows"),
        Option("device", "default: cuda:$LOCAL_RANK if a GPU is present, else cpu"),
        Option("precision", "fp32, or bf16/fp16 autocast (fp16: GPU only); default fp16 on a GPU, fp32 on the CPU "
               "(the drift of each against fp32 is in docs/benchmarks.md)", choices=("fp32", "bf16", "fp16")),
        # the old name of --precision fp16 / fp32, for one release
        Option("half", argparse.SUPPRESS, type=bool),
        Option("dtype", "stored precision", choices=("float32", "float16")),
        Option("trust_checkpoint", "allow full unpickling of a local .pt file", param="trusted", of=load),
        Option("family_table", "also write per-family mean vectors in this folder (a model folder; needs a .tsv "
               "input)", type=str, path="out_dir"),
        Option("table_layer", "layer of the family vectors (default: last of --layers)", type=int),
        Option("merge", "only merge these per-rank stores into --out", type=str, nargs="+", metavar="STORE",
               path="file"),
        threads_option("torch CPU threads"),
        Option("no_progress", "no progress bar", default=False),
    )  # fmt: skip
    p.set_defaults(run=_run_embed, protein_only={name: p.get_default(name) for name in _PROTEIN_ONLY})


#: Options of protein LMs only: refused with a gene-cluster input (their defaults say whether one was given).
_PROTEIN_ONLY = ("backend", "long", "max_residues", "overlap", "precision", "half", "trust_checkpoint",
                 "family_table", "table_layer")  # fmt: skip


def _precision_of_half(args: argparse.Namespace) -> None:
    """``--half`` / ``--no-half``, the old names of ``--precision fp16`` / ``fp32``: mapped, with a warning."""
    if args.half is None:
        return
    old, new = ("--half", "fp16") if args.half else ("--no-half", "fp32")
    if args.precision is not None:
        raise InputError(f"{old} and --precision: {old} is the old name of --precision {new}; give --precision only")
    print(f"biostrata: warning: {old} is now --precision {new}; {old} goes in the next release", file=sys.stderr)
    args.precision = new


def _domain_table_summary(path: str, segments: int, counts: dict) -> str:
    """How the rows of a domain table became protein segments to embed (merges and unchecked frames named)."""
    text = f"{path}: {counts['rows']} rows, {segments} protein segments to embed"
    if counts["merged"]:
        text += (
            f"; {counts['merged']} rows repeat the segment of an earlier row of their family and share its "
            "embedding, stored under that row's id only"
        )
    if counts["unchecked_frame"]:
        text += (
            f"; {counts['unchecked_frame']} rows have a reading frame that was not checked (frame_evidence ambiguous, "
            "mismatch or unchecked): embedded as given"
        )
    return text


def _run_embed(args: argparse.Namespace) -> int:
    from biostrata.data.embedding_store import EmbeddingStore, merge_stores

    set_torch_threads(args.threads)
    if args.merge:
        print(f"merged {len(args.merge)} stores into {merge_stores(args.merge, args.out)}")
        return 0
    if not args.model or not args.input:
        raise InputError("give --model and --input (or --merge STORE ...)")
    suffix = Path(args.input).suffix.lower()
    if suffix in (".csv", ".txt"):
        return _embed_table(args)
    _precision_of_half(args)
    from biostrata.data.clusters.proteins import family_members, read_proteins
    from biostrata.models.extract import check_options, extract_embeddings
    from biostrata.models.init_table import family_table_from_store
    from biostrata.models.protein_interface import ProteinLM
    from biostrata.models.protein_lm import load_protein_lm

    counts: dict = {}
    records = read_proteins(args.input, counts=counts)
    members = family_members(records)
    if args.family_table and not members:
        raise InputError(f"--family-table needs records with Pfam families (a .tsv domain table), not {args.input}")
    # what can be checked before the model loads; extract_embeddings checks again with the model's limits
    check_options(args.token_budget, args.long, args.overlap, args.max_residues, args.device, args.precision)
    progress = not args.no_progress
    if suffix == ".tsv":  # a domain table: its protein segments, or with a domain LM its clusters
        from biostrata.api.models import load

        plm = load(args.model, trusted=args.trust_checkpoint, max_residues=args.max_residues, backend=args.backend,
                   progress=progress)  # fmt: skip
        if not isinstance(plm, ProteinLM):
            return _embed_table(args, plm)
        print(_domain_table_summary(args.input, len(records), counts))
    else:
        plm = load_protein_lm(args.model, args.trust_checkpoint, args.max_residues, args.backend, progress)
    if args.family_table:
        table_layer = args.table_layer if args.table_layer is not None else args.layers[-1]
        if plm.layer_index([table_layer])[0] not in plm.layer_index(args.layers):
            raise InputError(f"--table-layer {table_layer}: not among the embedded --layers {args.layers}")
    path = extract_embeddings(
        plm, records, args.out, layers=args.layers, poolings=args.pooling, token_budget=args.token_budget,
        long=args.long, overlap=args.overlap, device=args.device, precision=args.precision, dtype=args.dtype,
        progress=not args.no_progress,
    )  # fmt: skip
    with EmbeddingStore(path) as store:
        print(f"{len(store)} sequences, layers {store.layers}, dim {store.dim}, {store.poolings} in {path}")
        if args.family_table:
            if path != Path(args.out):
                raise InputError("--family-table needs the merged store; run --merge first, then build the table")
            layer = plm.layer_index([table_layer])[0]
            table = family_table_from_store(store, members, layer)
            table.save_pretrained(args.family_table)
            print(f"{len(table.families)} family vectors (layer {layer}, dim {table.dim}) in {args.family_table}")
    return 0


def _embed_table(args: argparse.Namespace, model=None) -> int:
    """``biostrata embed`` of a .csv or .txt input, or of a domain table (.tsv) with a model already loaded:
    gene clusters with a domain LM, DNA with a genome CNN."""
    from biostrata.api.models import load
    from biostrata.models.domain_lm import DomainLM
    from biostrata.models.genome_cnn import EuclideanCNN, HyperbolicCNN

    model = load(args.model) if model is None else model
    dna = isinstance(model, (EuclideanCNN, HyperbolicCNN))
    if not (dna or isinstance(model, DomainLM)):
        raise InputError(
            f"--model {args.model}: a {type(model).__name__}, but {args.input} holds gene clusters or DNA; give a "
            "domain LM or a genome CNN (`biostrata train`), or proteins as FASTA or a domain table (.tsv)"
        )
    given = [name for name, default in args.protein_only.items() if getattr(args, name) != default]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        kind = "DNA, embedded by a genome CNN" if dna else "gene clusters, embedded by a domain LM"
        raise InputError(f"{options}: for proteins only; {args.input} holds {kind}; leave them out")
    return (_embed_dna if dna else _embed_clusters)(args, model)


def _embed_dna(args: argparse.Namespace, model) -> int:
    """``biostrata embed`` of DNA sequences with a genome CNN."""
    from biostrata.api.models import embed
    from biostrata.data.embedding_store import EmbeddingStore

    path = embed(model, args.input, args.layers, args.pooling, token_budget=args.token_budget, device=args.device,
                 dtype=args.dtype, progress=not args.no_progress, out=args.out)  # fmt: skip
    with EmbeddingStore(path) as store:
        print(f"{len(store)} sequences, layers {store.layers}, dim {store.dim}, {store.poolings} in {path}")
    return 0


def _embed_clusters(args: argparse.Namespace, model) -> int:
    """``biostrata embed`` of gene clusters with a domain LM."""
    from biostrata.data.clusters.corpus import read_clusters
    from biostrata.models.extract import extract_cluster_embeddings

    corpus = read_clusters(args.input)
    done = extract_cluster_embeddings(model, list(corpus), args.out, layers=args.layers, poolings=args.pooling,
                                      token_budget=args.token_budget, device=args.device, dtype=args.dtype,
                                      progress=not args.no_progress)  # fmt: skip
    print(f"{done['clusters']} clusters ({done['embedded']} embedded now), layers {model.layer_index(args.layers)} "
          f"in {done['path']}; {done['unknown_domains']} of {done['domains']} domains ({done['unknown_families']} "
          "families) are outside the model's vocabulary and embed as its unknown token")  # fmt: skip
    return 0


@command("cka")
def _cka(p: argparse.ArgumentParser) -> None:
    """CKA (and mutual k-NN) between the layers of one or two representations, or a curve against one

    Centered kernel alignment between representations of the same examples (rows joined by id; each join is
    reported: rows joined, rows each input lost). One INPUT: its layer x layer matrix; two: layers of the first
    x layers of the second; --against REF: the CKA of each INPUT (e.g. checkpoints' embedding tables) with REF
    (e.g. the table they started from). Inputs: .npz (one array per layer, optional 'ids'), .npy, .h5 embedding
    store, .pt family table or domain-LM checkpoint (its token table). Refused: a layer constant over the rows
    (its CKA is undefined), fewer than 2 shared rows (4 with --debiased).
    """
    from biostrata.api.analysis import cka

    add_options(
        p, cka,
        Option("inputs", "representation files", param="a", positional=True, nargs="+", metavar="INPUT",
               path="file"),
        Option("against", "reference representation (its one layer, or --ref-layer)", metavar="REF", path="file"),
        Option("ref_layer", "layer of REF to compare with"),
        Option("layers", "layers of the (first) input to use (default: all)"),
        Option("layers_b", "layers of the second input (default: all)"),
        Option("kernel", "CKA kernel", choices=("linear", "rbf")),
        Option("debiased", "unbiased HSIC (near 0 for independent features)"),
        Option("sigma_frac", "RBF bandwidth as a fraction of the median distance"),
        Option("batch_size", "rows per minibatch of the linear CKA"),
        Option("pooling", "pooled output read from .h5 stores", choices=("mean", "bos")),
        Option("knn", "also the mutual K-nearest-neighbour agreement", metavar="K"),
        Option("out", "CSV to write (with --knn, also OUT with .knn.csv)", path="out_file"),
        Option("heatmap", "PNG heatmap of the matrix", type=str, path="out_file"),
    )  # fmt: skip
    p.set_defaults(run=_run_cka)


def _run_cka(args: argparse.Namespace) -> int:
    from biostrata.api.analysis import cka
    from biostrata.report.plots import plot_cka_heatmap

    result = cka(
        args.inputs, against=args.against, ref_layer=args.ref_layer, layers=args.layers, layers_b=args.layers_b,
        pooling=args.pooling, knn=args.knn, kernel=args.kernel, debiased=args.debiased, sigma_frac=args.sigma_frac,
        batch_size=args.batch_size, out=args.out, report=print,
    )  # fmt: skip
    table, knn = result if args.knn is not None else (result, None)
    matrix = not args.against  # a layer x layer matrix (row labels kept), not a curve against REF
    print(f"{'debiased ' if args.debiased else ''}{args.kernel} CKA")
    print_table(table, index=matrix)
    if knn is not None:
        print(f"mutual {args.knn}-NN agreement")
        print_table(knn, index=matrix)
    if args.heatmap and matrix:
        plot_cka_heatmap(table, args.heatmap, title=f"{args.kernel} CKA")
        print(f"wrote {args.heatmap}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


@command("probe")
def _probe(p: argparse.ArgumentParser) -> None:
    """probe features for labels: linear or MLP, repeated stratified (grouped) k-fold, AUROC/MCC/F1

    Cross-validate a probe of frozen features. Features: FILE[:LAYER] (.npz, .npy, .h5 store, .pt), several
    joined by id and concatenated (or --fusion projection for two); features without ids (.npy) need
    --rows-in-label-order. Labels: a CSV whose first column is the id; --label-column for one label per row
    (binary/multi-class), else every other column is a 0/1 class (multi-label, iterative stratification).
    --group-column keeps groups out of straddling train and test. Every class needs at least --folds examples
    (groups).
    """
    from biostrata.api.analysis import probe

    add_options(
        p, probe,
        Option("features", "representation files; several are joined by id and concatenated (see --fusion)",
               nargs="+", required=True, metavar="FILE[:LAYER]", path="spec"),
        Option("all_layers", "probe every layer of the one features file separately"),
        Option("labels", "CSV of labels (first column: id)", required=True, path="file"),
        Option("id_column", "id column of the label CSV (default: the first)"),
        Option("rows_in_label_order", "features without ids (.npy, .csv): row i is the example of label row i (else "
               "they are refused)"),
        Option("label_column", "single label column (binary or multi-class)"),
        Option("group_column", "column of groups that must not straddle train and test"),
        Option("probe", "logistic regression, or an MLP", choices=("linear", "mlp")),
        Option("fusion", "two feature files: concatenate, or fuse by a learned gated projection",
               choices=("concat", "projection")),
        Option("cs", "linear: C values (inner CV)"),
        Option("hidden", "mlp: hidden layer sizes"),
        Option("one_vs_rest", "mlp, multi-label: one network per class"),
        Option("folds", "cross-validation folds"),
        Option("seeds", "seeds of the fold assignment"),
        Option("bootstrap", "bootstrap resamples for the interval (0: none)"),
        Option("out", "folder for summary.csv and folds.csv", path="out_dir"),
        Option("threads", "CPU threads"),
    )  # fmt: skip
    p.set_defaults(run=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    from biostrata.api.analysis import probe

    table, _ = probe(
        args.features, args.labels, probe=args.probe, cs=args.cs, hidden=args.hidden, one_vs_rest=args.one_vs_rest,
        all_layers=args.all_layers, fusion=args.fusion, id_column=args.id_column, label_column=args.label_column,
        group_column=args.group_column, folds=args.folds, seeds=args.seeds, bootstrap=args.bootstrap,
        threads=args.threads, rows_in_label_order=args.rows_in_label_order, progress=True, out=args.out,
        report=print,
    )  # fmt: skip
    print_table(table[[c for c in table.columns if not c.startswith("auroc[")]])
    if args.out:
        print(f"wrote {args.out}/summary.csv and folds.csv")
    return 0
