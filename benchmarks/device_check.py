"""The checks that need a GPU, run as one job and written as one JSON (``benchmarks/device_check.sh`` runs it).

Steps, each timed and recorded with its exit status (a failed step is recorded and the next runs):

1. ``tests``: the tests that only run where torch sees a CUDA GPU (``-k "cuda or gpu"`` over the test modules
   that have them: the fused Lorentz layers against autograd on the GPU, in fp32 and under bf16 autocast,
   and Gromov delta on the GPU against the CPU);
2. ``step_time``: ``benchmarks/step_time.py``, ``hcnn-s`` over ``cnn`` (full training step, layers, peak
   memory), at lengths 300 and 1000, in fp32 and in bf16-mixed;
3. ``esm``: embedding throughput (residues per second) of a transformers ESM-2 with esm2_t6_8M's shape (6
   layers x 320) and random weights, built here as an ``EsmForMaskedLM`` folder (the GPU machine reaches no
   network), loaded with ``biostrata.load`` and run by ``biostrata.embed``, in fp32 and in fp16;
4. ``strata``: ``biostrata study strata --accelerator gpu`` on a tiny synthetic data set (the one
   ``tests/studies/test_strata.py`` writes) with tiny settings, its wall time and its probe table's size.

``--cpu`` runs the same steps on the CPU at tiny sizes, in about a minute: a dry run of the script.

    python benchmarks/device_check.py [--cpu] [--out device_check.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AA = "ACDEFGHIKLMNPQRSTVWY"


def run(argv: list[str], timeout: float) -> dict:
    """A subprocess from the repository root: its exit status, seconds, and the last lines of its output."""
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        code, text = (
            "timeout",
            (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else str(e.stdout or ""),
        )
    print(text[-3000:], flush=True)
    return {
        "argv": argv[1:],
        "exit": code,
        "seconds": round(time.perf_counter() - start, 1),
        "tail": text.splitlines()[-15:],
    }


def tests(cpu: bool) -> dict:
    modules = ["tests/nn/test_fused.py", "tests/geometry/test_delta.py"]
    return run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda or gpu", *modules], 300)


def step_time(cpu: bool, precision: str, work: Path) -> dict:
    out = work / f"step_time_{precision}.json"
    sizes = (
        ["--device", "cpu", "--lengths", "40", "--batch", "8", "--repeats", "1"]
        if cpu
        else ["--device", "cuda", "--repeats", "20"]
    )
    result = run([sys.executable, "benchmarks/step_time.py", *sizes, "--precision", precision, "--json", str(out)], 240)
    if out.is_file():
        result["result"] = json.loads(out.read_text())
    return result


def esm(cpu: bool, work: Path) -> dict:
    """Residues per second of ``biostrata.embed`` (all layers, mean pooling) on random proteins."""
    import torch
    from transformers import EsmForMaskedLM

    import biostrata
    from biostrata.models.esm_hf import from_fair_esm
    from biostrata.models.protein_lm import small_protein_lm

    shape = (
        dict(num_layers=2, embed_dim=32, attention_heads=2)
        if cpu
        else dict(num_layers=6, embed_dim=320, attention_heads=20)
    )
    hf = from_fair_esm(small_protein_lm(**shape, seed=0))
    folder = work / "esm2_random"
    masked = EsmForMaskedLM(hf.model.config)  # the published folders' class: the loader takes its encoder
    masked.esm.load_state_dict(hf.model.state_dict(), strict=False)
    masked.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(sorted(hf.vocab, key=hf.vocab.get)) + "\n")
    model = biostrata.load(folder)
    rng = random.Random(0)
    proteins = ["".join(rng.choice(AA) for _ in range(rng.randint(50, 400))) for _ in range(20 if cpu else 2000)]
    residues = sum(map(len, proteins))
    device = "cpu" if cpu else "cuda"
    rows = {}
    for precision in ("fp32",) if cpu else ("fp32", "fp16"):
        biostrata.embed(model, proteins[:8], layers=range(model.num_layers + 1), device=device, precision=precision)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        biostrata.embed(model, proteins, layers=range(model.num_layers + 1), device=device, precision=precision)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rows[precision] = {"seconds": round(seconds, 3), "residues_per_s": round(residues / seconds)}
    return {"model": f"{shape['num_layers']} layers x {shape['embed_dim']}", "proteins": len(proteins),
            "residues": residues, "device": device, "throughput": rows}  # fmt: skip


def strata(cpu: bool, work: Path) -> dict:
    """``biostrata study strata`` on the tiny data set of ``tests/studies/test_strata.py``."""
    sys.path.insert(0, str(ROOT / "tests" / "studies"))
    from test_strata import write_inputs  # the test's generator of files in the real layouts

    data = work / "strata_inputs"
    data.mkdir()
    files = write_inputs(data)
    tiny = ("--split 0.5 0.25 0.25 --kmers 2 3 --dna-length 48 --cnn-epochs 2 --cnn-hidden 8 --clan-classes 3 "
            "--clan-min-count 5 --protein-layers 1 --protein-dim 8 --protein-heads 2 --protein-epochs 1 "
            "--protein-max-length 32 --widths 4 8 --width 8 --domain-layers 2 --domain-seeds 0 --domain-epochs 2 "
            "--batch-size 16 --lr 0.01 --instances 200 --delta-samples 20 --delta-repeats 1 --clan-min-families 2 "
            "--folds 3 --probe-seeds 0 --umap-neighbors 5 --no-progress").split()  # fmt: skip
    inputs = [f"--{key} {value}" for key, value in files.items()]
    out = work / "strata_study"
    argv = [sys.executable, "-m", "biostrata.cli", "study", "strata", "--out", str(out), *" ".join(inputs).split(),
            *tiny, "--accelerator", "cpu" if cpu else "gpu"]  # fmt: skip
    result = run(argv, 300)
    result["files"] = sorted(str(p.relative_to(out)) for p in out.rglob("*.csv"))[:20] if out.is_dir() else []
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="the same steps on the CPU at tiny sizes (a dry run)")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "device_check.json"))
    args = parser.parse_args(argv)
    import torch

    record: dict = {
        "cpu_dry_run": args.cpu, "python": sys.version.split()[0], "platform": platform.platform(),
        "torch": torch.__version__, "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "steps": {},
    }  # fmt: skip
    if not args.cpu and not torch.cuda.is_available():
        print("device_check: torch sees no CUDA GPU; use --cpu for a dry run on the CPU", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        steps = {
            "tests": lambda: tests(args.cpu),
            "step_time_fp32": lambda: step_time(args.cpu, "32", work),
            "step_time_bf16_mixed": lambda: step_time(args.cpu, "bf16-mixed", work),
            "esm": lambda: esm(args.cpu, work),
            "strata": lambda: strata(args.cpu, work),
        }
        for name, step in steps.items():
            print(f"== {name}", flush=True)
            t = time.perf_counter()
            try:
                record["steps"][name] = step()
            except Exception as e:  # recorded, and the next step runs
                record["steps"][name] = {"exit": "error", "error": f"{type(e).__name__}: {e}"}
            record["steps"][name]["wall_s"] = round(time.perf_counter() - t, 1)
            Path(args.out).write_text(json.dumps(record, indent=2))  # after every step: a killed run keeps the rest
    record["total_s"] = round(time.perf_counter() - start, 1)
    Path(args.out).write_text(json.dumps(record, indent=2))
    failed = [n for n, r in record["steps"].items() if r.get("exit", 0) not in (0,)]
    print(f"device_check: {len(steps) - len(failed)} of {len(steps)} steps passed in {record['total_s']} s; "
          f"results in {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
