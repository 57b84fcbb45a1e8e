"""biostrata annotate against HMMER's command-line hmmscan (what DeepBGC runs): same proteins, same
HMMs, same thresholds; identical hit sets, and the speed ratio, in one run.

Proteins: the 2,100-protein proteome that pyhmmer ships as test data (Prodigal genes of a 2 Mb
genome). HMMs: biostrata's default database (the Pfam 35.0 subset of the gecco package), written
out as text and pressed for hmmscan (the pressing is not timed). Rules:

- gathering: `hmmscan --cut_ga` against our hmmsearch with GA cut-offs; every domain compared;
- evalue (DeepBGC): `hmmscan -Z 16712` then, per (protein, family), the best domain with
  i-Evalue <= 0.01, against ours with the same rule and Z.

Then pyrodigal on a 2.5 Mb genome (pyrodigal's test data) and the time of a 5 Mb genome,
extrapolated. Needs the `bench` extra (the PyPI package `hmmer` ships the binaries).

    python benchmarks/annotate.py --cpus 2 --json docs/bench/annotate.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from biostrata.data.annotation.annotate import default_hmm_path, read_hmms, search_domains  # noqa: E402
from biostrata.data.annotation.genes import Record, genes_of, read_records  # noqa: E402


def package_file(package: str, relative: str) -> Path:
    from importlib import metadata

    return Path(metadata.distribution(package).locate_file(relative))


def hmmer_binary(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).is_file():
        sys.exit(f"{name} not found: pip install hmmer (the bench extra: pip install -e '.[bench]')")
    return found


def domtbl(path: Path) -> list[dict]:
    """Rows of an hmmscan --domtblout file (target = HMM, query = protein)."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        f = line.split()
        rows.append({"family": f[1].split(".")[0], "protein": f[3], "i_evalue": float(f[12]),
                     "score": float(f[13]), "env": (int(f[19]) - 1, int(f[20]))})  # fmt: skip
    return rows


def deepbgc_rule(rows: list[dict], evalue: float = 0.01) -> tuple[set[tuple], set[tuple]]:
    """Per (protein, family) the best domain with i-Evalue <= evalue, and those of them whose i-Evalue
    reads exactly ``evalue``: hmmscan prints two significant digits, so 0.0104 reads as 0.01."""
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (r["protein"], r["family"])
        if key not in best or r["score"] > best[key]["score"]:
            best[key] = r
    return {k for k, r in best.items() if r["i_evalue"] <= evalue}, {
        k for k, r in best.items() if r["i_evalue"] == evalue
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    proteome = package_file("pyhmmer", "pyhmmer/tests/data/seqs/938293.PRJEB85.HG003687.faa")
    genes = genes_of(read_records(proteome))
    names = [g.id for g in genes]
    hmm_path = default_hmm_path()
    hmms = read_hmms(hmm_path)
    out: dict = {"proteins": len(genes), "hmms": len(hmms), "cpus": args.cpus, "machine": platform.processor(),
                 "python": platform.python_version()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with open(tmp / "db.hmm", "wb") as handle:
            for hmm in hmms:
                hmm.write(handle)
        subprocess.run([hmmer_binary("hmmpress"), str(tmp / "db.hmm")], check=True, capture_output=True)
        (tmp / "q.faa").write_text("".join(f">{g.id}\n{g.protein}\n" for g in genes))
        scan = hmmer_binary("hmmscan")
        for rule, flags, ours in (
            ("gathering", ["--cut_ga"], {"cutoff": "gathering"}),
            ("evalue", ["-Z", "16712"], {"cutoff": "evalue", "Z": 16712}),
        ):
            start = time.perf_counter()
            subprocess.run([scan, "--cpu", str(args.cpus), *flags, "--domtblout", str(tmp / f"{rule}.tbl"), "-o",
                            os.devnull, str(tmp / "db.hmm"), str(tmp / "q.faa")], check=True)  # fmt: skip
            t_scan = time.perf_counter() - start
            start = time.perf_counter()
            hits = search_domains(genes, hmm_path, overlaps="keep", cpus=args.cpus, **ours)
            t_ours = time.perf_counter() - start
            rows = domtbl(tmp / f"{rule}.tbl")
            at_threshold: set[tuple] = set()
            if rule == "gathering":
                theirs = {(r["protein"], r["family"], r["env"]) for r in rows}
                mine = {(names[h.gene], h.family, (h.env_start, h.env_end)) for h in hits}
            else:
                theirs, at_threshold = deepbgc_rule(rows)
                mine = {(names[h.gene], h.family) for h in hits}
            out[rule] = {"hmmscan_s": round(t_scan, 2), "biostrata_s": round(t_ours, 2),
                         "speedup": round(t_scan / t_ours, 2), "hits_hmmscan": len(theirs), "hits_biostrata": len(mine),
                         "identical": theirs == mine, "only_hmmscan": len(theirs - mine), "only_biostrata": len(mine - theirs),
                         "only_hmmscan_printed_at_threshold": len((theirs - mine) & at_threshold)}  # fmt: skip
    genome = package_file("pyrodigal", "pyrodigal/tests/data/GCF_001457455.1_NCTC11397_genomic.fna.gz")
    with gzip.open(genome, "rt") as handle:
        sequence = "".join(line.strip() for line in handle if not line.startswith(">"))
    start = time.perf_counter()
    predicted = genes_of([Record("genome", sequence.upper())], "predicted")
    t_genes = time.perf_counter() - start
    per_mb = len(predicted) / (len(sequence) / 1e6)
    per_protein = out["gathering"]["biostrata_s"] / len(genes)
    out["genes"] = {"genome_bp": len(sequence), "genes": len(predicted), "seconds": round(t_genes, 2)}
    out["extrapolated_5mb_s"] = round(t_genes * 5e6 / len(sequence) + per_protein * per_mb * 5, 1)
    out["extrapolated_5mb_hmmscan_s"] = round(out["gathering"]["hmmscan_s"] / len(genes) * per_mb * 5, 1)
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
