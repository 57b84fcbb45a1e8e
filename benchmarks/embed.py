"""Throughput of layer-wise protein embedding: packed batches vs one sequence at a time vs fixed-size
batches, fair-esm vs transformers on the same weights, and the drift of lower precisions.

One model (an ESM-2 of the chosen size with random weights: speed does not depend on the weights),
the same weights mapped into transformers' ``EsmModel`` (``biostrata.models.esm_hf.from_fair_esm``),
one set of proteins (the per-domain protein segments of ``mibig_domains.tsv`` when the data folder
is present, else random sequences with the same length range), three ways to batch them:

- ``single``: one protein per forward pass, in input order;
- ``fixed``: batches of ``--batch-size`` proteins in input order (what a plain DataLoader does);
- ``packed``: sorted by length and packed to ``--token-budget`` padded tokens per batch (biostrata).

Each way runs ``tokenize -> forward (all requested layers) -> mean pooling`` on the same proteins;
throughput counts residues (padding, BOS and EOS excluded) per second. The packed way is also run
end to end through ``extract_embeddings`` (HDF5 store included). Then both backends, one sequence at
a time and packed at the device's default token budget, measured in alternation (best of
``--repeats``), and the per-layer difference of bf16 (and, on a GPU, fp16) autocast from fp32.
Prints Markdown; ``--json`` also writes the numbers.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/embed.py --n 400 --threads 2 --json docs/bench/embed.json

``--against-command`` measures instead ``biostrata.embed`` in memory against the ``biostrata embed``
command on the same input, for three model families: the ESM-2 above (saved as a transformers folder) on
proteins (FASTA), a small domain LM on gene clusters (a domain list: ``mibig_domain_list.txt`` when
present, else random Pfam tokens) and a genome CNN (``hcnn-s``) on random DNA (CSV). Each model is
written where the command reads it (:func:`model_file`) and loaded back with ``biostrata.load``; the
in-memory call gets that model and the inputs as Python lists, the command the two files. The command
is timed in-process (``biostrata.cli.main``: reading the input, loading the model, embedding, writing
the HDF5 store; not writing its inputs) and as a subprocess (``python -m biostrata.cli``, start-up
included; in the first two rounds only), in alternation with the in-memory call, best of ``--repeats``;
the arrays in memory are checked against the store the command wrote.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/embed.py --against-command --threads 2 --repeats 5 --json docs/bench/embed_command.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import biostrata
from biostrata.cli import main as command
from biostrata.data.clusters.corpus import DomainVocabulary, read_domain_list
from biostrata.data.clusters.proteins import ProteinRecord, read_domain_proteins
from biostrata.data.embedding_store import EmbeddingStore
from biostrata.models.domain_lm import DomainLM
from biostrata.models.esm_hf import from_fair_esm
from biostrata.models.extract import DEFAULT_TOKEN_BUDGET, embed_batch, extract_embeddings, plan_batches
from biostrata.models.genome_cnn import build_model
from biostrata.models.protein_lm import FairESM, small_protein_lm

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bgc" / "mibig_domains.tsv"
DOMAIN_LIST = DATA.with_name("mibig_domain_list.txt")


def load_proteins(n: int, seed: int) -> tuple[list[ProteinRecord], str]:
    rng = random.Random(seed)
    if DATA.is_file():
        records = read_domain_proteins(DATA)
        k = min(n, len(records))
        return rng.sample(records, k), f"{k} random domain segments of mibig_domains.tsv"
    aa = "ACDEFGHIKLMNPQRSTVWY"
    recs = [ProteinRecord(f"s{i}", "".join(rng.choice(aa) for _ in range(rng.randint(11, 349)))) for i in range(n)]
    return recs, f"{n} random sequences, lengths uniform in [11, 349]"


@torch.inference_mode()
def run(plm, seqs: list[str], batches: list[list[int]], layers: list[int]) -> float:
    """Seconds to embed ``seqs`` batch by batch (tokenize, forward, mean-pool every layer)."""
    start = time.perf_counter()
    for batch in batches:
        embed_batch(plm, [seqs[i] for i in batch], layers)
    return time.perf_counter() - start


def backends(fair, seqs: list[str], layers: list[int], repeats: int) -> dict:
    """Residues/s of fair-esm and transformers, one at a time and packed at the CPU's default budget,
    measured in alternation (best of ``repeats``), and the packed / one-at-a-time ratio of each."""
    hf = from_fair_esm(fair)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    budget = DEFAULT_TOKEN_BUDGET["cpu"]
    ways = {"single": [[i] for i in range(len(seqs))],
            "packed": [[order[j] for j in b] for b in plan_batches([len(seqs[i]) for i in order], budget, special=2)]}  # fmt: skip
    best: dict[tuple[str, str], float] = {}
    for _ in range(repeats):
        for name, plm in (("fair-esm", fair), ("transformers", hf)):
            for way, batches in ways.items():
                seconds = run(plm, seqs, batches, layers)
                best[name, way] = min(best.get((name, way), seconds), seconds)
    residues = sum(map(len, seqs))
    rate = {f"{name} {way}": residues / t for (name, way), t in best.items()}
    return {"token_budget": budget, "residues_per_s": {k: round(v) for k, v in rate.items()},
            "transformers_vs_fair_esm_packed": round(rate["transformers packed"] / rate["fair-esm packed"], 3),
            "transformers_vs_fair_esm_single": round(rate["transformers single"] / rate["fair-esm single"], 3),
            "packed_vs_single_fair_esm": round(rate["fair-esm packed"] / rate["fair-esm single"], 3),
            "packed_vs_single_transformers": round(rate["transformers packed"] / rate["transformers single"], 3)}  # fmt: skip


@torch.inference_mode()
def drift(plm, seqs: list[str], layers: list[int]) -> dict:
    """Per layer, the largest difference of mean-pooled states under bf16 (and fp16 on a GPU) autocast
    from fp32, absolute and relative to the largest fp32 value."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    plm = plm.to(device)
    ref = embed_batch(plm, seqs, layers, device)[1].float()
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if name == "fp16" and device == "cpu":
            continue
        with torch.autocast(device, dtype=dtype):
            low = embed_batch(plm, seqs, layers, device)[1].float()
        diff = (low - ref).abs().amax(dim=(0, 2))
        scale = ref.abs().amax(dim=(0, 2))
        out[name] = {
            str(layer): {"max_abs": float(d), "relative": float(d / m)} for layer, d, m in zip(layers, diff, scale)
        }
    return out


# ---------------------------------------------------------------- biostrata.embed against `biostrata embed`


def model_file(model, folder: Path) -> Path:
    """Write ``model`` where ``biostrata embed --model`` reads it and return that path: a model folder of
    ``save_pretrained`` (a protein LM as a transformers folder, so that the command runs the same backend)."""
    if isinstance(model, FairESM):
        model = from_fair_esm(model)
    return model.save_pretrained(folder / type(model).__name__)


@dataclass
class Case:
    """One model family: the model, its inputs as a list (in memory) and as a file (the command), the ids
    the command stores them under, the layers asked for."""

    name: str
    what: str
    model: torch.nn.Module
    inputs: list
    file: Path
    ids: list[str]
    layers: list[int]


def protein_case(args: argparse.Namespace, folder: Path) -> Case:
    records, what = load_proteins(args.command_proteins, args.seed)
    seqs = [r.sequence for r in records]
    ids = [f"p{i}" for i in range(len(seqs))]
    (file := folder / "proteins.fa").write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs)))
    plm = small_protein_lm(args.num_layers, args.dim, args.heads, seed=args.seed)
    what = (f"ESM-2 {args.num_layers} x {args.dim} (transformers), layers 0-{args.num_layers}; {what} "
            f"({sum(map(len, seqs))} residues), FASTA")  # fmt: skip
    return Case("protein LM", what, plm, seqs, file, ids, list(range(args.num_layers + 1)))


def domain_case(args: argparse.Namespace, folder: Path) -> Case:
    rng, n = random.Random(args.seed), args.command_clusters
    if DOMAIN_LIST.is_file():
        lines = [line for line in DOMAIN_LIST.read_text().splitlines() if line.strip()]
        lines = rng.sample(lines, min(n, len(lines)))
        source = "random clusters of mibig_domain_list.txt"
    else:
        pfam = [f"PF{i:05d}" for i in range(1, 2001)]
        lines = [f"B{i} NRP " + " ".join(rng.choices(pfam, k=rng.randint(5, 80))) for i in range(n)]
        source = "random sentences of 5-80 of 2,000 Pfam tokens"
    (file := folder / "clusters.txt").write_text("\n".join(lines) + "\n")
    corpus = read_domain_list(file)
    torch.manual_seed(args.seed)
    model = DomainLM(DomainVocabulary.from_corpus(corpus), d_embed=256, d_model=128, n_layers=8, kernel_size=5, r=64)
    domains = sum(len(c.domains) for c in corpus)
    what = f"DomainLM 8 x 128 (d_embed 256), layers 1-8; {len(corpus)} {source} ({domains} domains), domain list"
    # layers 1-8: a store holds layers of one width, and layer 0 (the token table) is 256 wide
    return Case("domain LM", what, model, [list(c.domains) for c in corpus], file, corpus.ids, list(range(1, 9)))


def dna_case(args: argparse.Namespace, folder: Path) -> Case:
    rng, n, length = np.random.default_rng(args.seed), args.command_dna, 300
    seqs = ["".join(s) for s in rng.choice(list("ACGT"), size=(n, length))]
    (file := folder / "dna.csv").write_text("sequence,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(seqs)))
    torch.manual_seed(args.seed)
    model = build_model("hcnn-s", length, 2)
    what = f"hcnn-s (3 blocks x 32 channels), layers 1-3; {n} random DNA sequences of {length} bp, CSV"
    return Case("genome CNN", what, model, seqs, file, [str(i) for i in range(n)], [1, 2, 3])


def seconds(call) -> tuple[float, object]:
    """(wall-clock seconds of ``call()``, its result)."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def against_command(case: Case, folder: Path, args: argparse.Namespace) -> dict:
    """Best-of-``repeats`` seconds of ``biostrata.embed`` in memory and of the command in-process (and of the
    command as a subprocess, in the first two rounds), measured in alternation; whether the arrays equal
    what the command stored."""
    path = model_file(case.model, folder / case.name.replace(" ", "_"))
    model = biostrata.load(path)
    out = folder / "out.h5"
    argv = ["embed", "--model", str(path), "--input", str(case.file), "--out", str(out), "--layers",
            *map(str, case.layers), "--no-progress", *(["--threads", str(args.threads)] if args.threads else [])]  # fmt: skip
    shell_argv = [sys.executable, "-m", "biostrata.cli", *argv]
    times: dict[str, list[float]] = {"in_memory": [], "command": [], "subprocess": []}
    for round_ in range(args.repeats):
        t, got = seconds(lambda: biostrata.embed(model, case.inputs, layers=case.layers, pooling="mean"))
        times["in_memory"].append(t)
        out.unlink(missing_ok=True)
        if round_ < 2:  # the subprocess's start-up (seconds) dwarfs the differences: two rounds are enough
            t, run_ = seconds(lambda: subprocess.run(shell_argv, capture_output=True))
            if run_.returncode:
                raise SystemExit(f"biostrata {' '.join(argv)} failed:\n{run_.stderr.decode()}")
            times["subprocess"].append(t)
            out.unlink()
        with contextlib.redirect_stdout(io.StringIO()):
            t, status = seconds(lambda: command(argv))
        if status:
            raise SystemExit(f"biostrata {' '.join(argv)}: exit status {status}")
        times["command"].append(t)
    with EmbeddingStore(out) as store:
        stored = {layer: store.array("mean", layer, case.ids) for layer in store.layers}
    if sorted(got) != sorted(stored):
        raise SystemExit(f"{case.name}: layers {sorted(got)} in memory, {sorted(stored)} in the store")
    same = all(np.allclose(got[k], stored[k], rtol=1e-5, atol=1e-6) for k in got)
    diff = max(float(np.abs(got[k] - stored[k]).max()) for k in got)
    best = {k: min(v) for k, v in times.items()}
    median = {k: float(np.median(v)) for k, v in times.items()}
    return {"what": case.what, "layers": sorted(got), "seconds": {k: round(v, 3) for k, v in best.items()},
            "median_seconds": {k: round(v, 3) for k, v in median.items()},
            "command_vs_in_memory": round(best["command"] / best["in_memory"], 3),
            "command_vs_in_memory_median": round(median["command"] / median["in_memory"], 3),
            "subprocess_vs_in_memory": round(best["subprocess"] / best["in_memory"], 3),
            "allclose": bool(same), "max_abs_difference": diff}  # fmt: skip


def compare_with_command(args: argparse.Namespace) -> None:
    """The ``--against-command`` mode: every family, a Markdown table, the JSON."""
    policy, load = os.environ.get("OMP_WAIT_POLICY", "unset"), [round(os.getloadavg()[0], 2)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {case.name: against_command(case, folder, args)
                   for case in (make(args, folder) for make in (protein_case, domain_case, dna_case))}  # fmt: skip
    load.append(round(os.getloadavg()[0], 2))
    print("## biostrata.embed in memory against `biostrata embed`\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {torch.get_num_interop_threads()} "
          f"interop threads, OMP_WAIT_POLICY={policy}, {platform.processor() or platform.machine()}, "
          f"best of {args.repeats} in alternation (the subprocess: of 2), mean pooling, load average {load[0]} at the "
          f"start, {load[1]} at the end\n")  # fmt: skip
    print("| model | in memory (s) | command (s) | command / in memory | median ratio | command as a subprocess (s) "
          "| subprocess / in memory | arrays equal the store | input |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for name, r in results.items():
        s = r["seconds"]
        print(f"| {name} | {s['in_memory']:.3f} | {s['command']:.3f} | {r['command_vs_in_memory']:.2f}x "
              f"| {r['command_vs_in_memory_median']:.2f}x | {s['subprocess']:.3f} | {r['subprocess_vs_in_memory']:.2f}x "
              f"| {'yes' if r['allclose'] else 'NO'} (max diff {r['max_abs_difference']:.1e}) | {r['what']} |")  # fmt: skip
    if args.json:
        record = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                  "interop_threads": torch.get_num_interop_threads(), "omp_wait_policy": policy,
                  "load_average_start_end": load, "repeats": args.repeats, "families": results}  # fmt: skip
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``sys.argv`` when ``argv`` is None)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400, help="proteins")
    parser.add_argument("--num-layers", type=int, default=6, help="ESM-2 layers (6/320 = esm2_t6_8M's shape)")
    parser.add_argument("--dim", type=int, default=320)
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument(
        "--token-budget",
        type=int,
        default=DEFAULT_TOKEN_BUDGET["cpu"],
        help=f"padded tokens per packed batch (default: the library's CPU default, {DEFAULT_TOKEN_BUDGET['cpu']})",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="fixed-size batches")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of the backend comparison")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument(
        "--against-command", action="store_true", help="time biostrata.embed in memory against `biostrata embed`"
    )
    parser.add_argument("--command-proteins", type=int, default=150, help="--against-command: proteins")
    parser.add_argument("--command-clusters", type=int, default=500, help="--against-command: gene clusters")
    parser.add_argument("--command-dna", type=int, default=1000, help="--against-command: DNA sequences (300 bp)")
    return parser.parse_args(argv)


def main() -> None:
    args = arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.against_command:
        compare_with_command(args)
        return
    records, what = load_proteins(args.n, args.seed)
    seqs = [r.sequence for r in records]
    residues = sum(len(s) for s in seqs)
    plm = small_protein_lm(args.num_layers, args.dim, args.heads, seed=args.seed).eval()
    layers = list(range(plm.num_layers + 1))
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    ways = {
        "single": [[i] for i in range(len(seqs))],
        "fixed": [list(range(i, min(i + args.batch_size, len(seqs)))) for i in range(0, len(seqs), args.batch_size)],
        "packed": [
            [order[j] for j in b] for b in plan_batches([len(seqs[i]) for i in order], args.token_budget, special=2)
        ],
    }
    run(plm, seqs, ways["packed"][:2], layers)  # warm-up
    seconds = {name: run(plm, seqs, batches, layers) for name, batches in ways.items()}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        extract_embeddings(
            plm, records, Path(tmp) / "b.h5", layers=layers, token_budget=args.token_budget, progress=False
        )
        seconds["packed + HDF5 store"] = time.perf_counter() - start
    padded = {name: sum((max(len(seqs[i]) for i in b) + 2) * len(b) for b in batches) for name, batches in ways.items()}
    rate = {name: residues / s for name, s in seconds.items()}
    print("## Protein embedding extraction\n")
    print(
        f"`python benchmarks/embed.py --n {args.n} --num-layers {args.num_layers} --dim {args.dim} --heads {args.heads} "
        f"--token-budget {args.token_budget} --batch-size {args.batch_size}"
        + (f" --threads {args.threads}`" if args.threads else "`")
        + f", one run on {platform.processor() or platform.machine()} ({torch.get_num_threads()} torch threads), "
        f"torch {torch.__version__}. Model: ESM-2 architecture, {args.num_layers} layers x {args.dim} "
        f"(random weights), all {len(layers)} layers extracted and mean-pooled. Proteins: {what} "
        f"({residues} residues).\n"
    )
    print("| batching | batches | padded tokens / residues | residues / s | packed speed-up |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in ["single", "fixed", "packed", "packed + HDF5 store"]:
        key = name if name in ways else "packed"
        print(
            f"| {name}{f' ({args.batch_size})' if name == 'fixed' else ''} | {len(ways[key])} | "
            f"{padded[key] / residues:.2f} | {rate[name]:.0f} | {rate['packed'] / rate[name]:.2f}x |"
        )
    print(
        f"\nPacked extraction runs at {rate['packed'] / rate['single']:.2f}x the throughput of one sequence at a "
        f"time and {rate['packed'] / rate['fixed']:.2f}x that of fixed batches of {args.batch_size} (same model, "
        "same proteins)."
    )
    result = {"n": len(seqs), "residues": residues, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "batching": {name: round(r) for name, r in rate.items()}, "backends": backends(plm, seqs, layers, args.repeats),
              "drift": drift(plm, seqs[:64], layers)}  # fmt: skip
    b = result["backends"]
    print(f"\n### fair-esm and transformers (same weights), token budget {b['token_budget']}\n")
    print("| backend | one at a time (res/s) | packed (res/s) | packed / one at a time |")
    print("| --- | ---: | ---: | ---: |")
    for name in ("fair-esm", "transformers"):
        r = b["residues_per_s"]
        print(
            f"| {name} | {r[name + ' single']} | {r[name + ' packed']} | {r[name + ' packed'] / r[name + ' single']:.2f}x |"
        )
    print(
        f"\ntransformers / fair-esm, packed: {b['transformers_vs_fair_esm_packed']:.2f}x; one at a time: "
        f"{b['transformers_vs_fair_esm_single']:.2f}x\n"
    )
    for name, per_layer in result["drift"].items():
        print(f"### {name} autocast against fp32 (mean-pooled states of 64 proteins)\n")
        print("| layer | max abs difference | relative to max abs value |\n| --- | ---: | ---: |")
        for layer, d in per_layer.items():
            print(f"| {layer} | {d['max_abs']:.2e} | {d['relative']:.2e} |")
        print()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
