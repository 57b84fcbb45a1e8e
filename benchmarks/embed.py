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
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import torch

from biostrata.data.proteins import ProteinRecord, read_domain_proteins
from biostrata.models.esm_hf import from_fair_esm
from biostrata.models.extract import DEFAULT_TOKEN_BUDGET, embed_batch, extract_embeddings, plan_batches
from biostrata.models.protein_lm import small_protein_lm

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bgc" / "mibig_domains.tsv"


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
    return parser.parse_args(argv)


def main() -> None:
    args = arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
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
