"""Throughput of layer-wise protein embedding: packed batches vs one sequence at a time vs fixed-size batches.

One model (an ESM-2 of the chosen size with random weights: speed does not depend on the weights),
one set of proteins (the per-domain protein segments of ``mibig_domains.tsv`` when the data folder
is present, else random sequences with the same length range), three ways to batch them:

- ``single``: one protein per forward pass, in input order;
- ``fixed``: batches of ``--batch-size`` proteins in input order (what a plain DataLoader does);
- ``packed``: sorted by length and packed to ``--token-budget`` padded tokens per batch (biostrata).

Each way runs ``tokenize -> forward (all requested layers) -> mean pooling`` on the same proteins;
throughput counts residues (padding, BOS and EOS excluded) per second. The packed way is also run
end to end through ``extract_embeddings`` (HDF5 store included). Prints a Markdown section.

    python benchmarks/embed.py --n 400 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from pathlib import Path

import torch

from biostrata.data.proteins import ProteinRecord, read_domain_proteins
from biostrata.models.extract import embed_batch, extract_embeddings, plan_batches
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400, help="proteins")
    parser.add_argument("--num-layers", type=int, default=6, help="ESM-2 layers (6/320 = esm2_t6_8M's shape)")
    parser.add_argument("--dim", type=int, default=320)
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--token-budget", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=32, help="fixed-size batches")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
