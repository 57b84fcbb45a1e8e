"""Training-step time of the Lorentz domain LM against its Euclidean twin, at several widths.

Both models are BiGCARP's ByteNet (``DomainLM``, preset ``small`` with ``d_embed = d_model = width``)
over the same vocabulary and the same batches of masked domain sentences (the BGCs of
``mibig_pfamid.csv`` when the data folder is present, else random sentences of the same size); only
``geometry`` differs. One step = masked logits, cross-entropy, backward, Adam step, the recipe of
``biostrata pretrain``. The two models are timed in alternation (best of ``--repeats`` passes over the
same batches), so that the load of a shared machine hits both alike; the figure of record is the
ratio. Prints Markdown; ``--json`` also writes the numbers.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/domain_lm.py --threads 1 --json docs/bench/domain_lm.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from biostrata.data.clusters.corpus import Cluster, ClusterCorpus, DomainVocabulary, read_clusters
from biostrata.models.domain_lm import DomainLM
from biostrata.train.masking import MLMCollator
from biostrata.train.pretrain import domain_masking_scheme

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bgc" / "mibig_pfamid.csv"


def load_corpus(seed: int) -> tuple[ClusterCorpus, str]:
    if DATA.is_file():
        return read_clusters(DATA), "the 2,492 BGCs of mibig_pfamid.csv"
    rng = random.Random(seed)
    families = [f"PF{i:05d}" for i in range(3000)]
    clusters = [Cluster(f"B{i}", tuple(rng.choice(families) for _ in range(rng.randint(5, 60)))) for i in range(2000)]
    return ClusterCorpus(clusters, "random"), "2,000 random sentences of 5-60 domains over 3,000 families"


def steps(model: DomainLM, batches: list[tuple], lr: float = 1e-3) -> float:
    """Seconds for one training step on each batch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start = time.perf_counter()
    for target, src, selected in batches:
        loss = F.cross_entropy(model.masked_logits(src, selected), target[selected])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[8, 64, 256])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batches", type=int, default=30, help="batches of 32 sentences per pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    corpus, what = load_corpus(args.seed)
    vocab = DomainVocabulary.from_corpus(corpus)
    collate = MLMCollator(domain_masking_scheme(vocab), None, 0, 0, train=True, seed=args.seed)
    order = list(range(len(corpus)))
    random.Random(args.seed).shuffle(order)
    encoded = [vocab.encode(corpus[i]) for i in order[: 32 * args.batches]]
    batches = [collate(encoded[i : i + 32]) for i in range(0, len(encoded), 32)]
    rows = []
    for width in args.widths:
        models = {}
        for geometry in ("euclidean", "lorentz"):
            torch.manual_seed(args.seed)
            models[geometry] = DomainLM.from_preset("small", vocab, geometry=geometry, d_embed=width, d_model=width,
                                                    n_layers=args.layers)  # fmt: skip
        best = {g: float("inf") for g in models}
        for _ in range(args.repeats):
            for g, model in models.items():  # in alternation
                best[g] = min(best[g], steps(model, batches))
        rows.append({"width": width, "euclidean_ms": 1000 * best["euclidean"] / len(batches),
                     "lorentz_ms": 1000 * best["lorentz"] / len(batches),
                     "ratio": best["lorentz"] / best["euclidean"]})  # fmt: skip
    print(f"Training step (batch 32, {args.layers} blocks, vocabulary {len(vocab):,}), {what}; "
          f"{args.threads} thread(s), best of {args.repeats}:\n")  # fmt: skip
    print("| width | euclidean ms/step | lorentz ms/step | lorentz / euclidean |\n| ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['width']} | {r['euclidean_ms']:.1f} | {r['lorentz_ms']:.1f} | {r['ratio']:.2f} |")
    if args.json:
        meta = {"data": what, "vocabulary": len(vocab), "threads": args.threads, "batches": len(batches),
                "repeats": args.repeats, "torch": torch.__version__, "machine": platform.machine()}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
