"""Time and memory of a training step, hyperbolic over Euclidean, measured in one run.

Prints ratios (ours / reference in the same process):
- full training step (forward, backward, optimizer step as in training, both optimizers
  multi-tensor; batch 100; lengths 300 and 1000): ``hcnn-s`` over ``cnn``, and ``hcnn-s`` with the
  plain-autograd batch norm (``fused=False``) over ``cnn``;
- layers, forward + backward, 32 channels: LorentzConv1d over nn.Conv1d, LorentzBatchNorm1d (fused
  and autograd) over nn.BatchNorm1d;
- peak memory of a training step (resident set size over the bare process: weights, gradients,
  optimizer state, activations), each model in a fresh subprocess.
Timings are interleaved (A, B, A, B, ...) and the median of each is used, so background load hits
both alike. The thread count and OMP_WAIT_POLICY are printed; biostrata sets OMP_WAIT_POLICY=PASSIVE
unless it is already set (spin-waiting threads collapse on a shared machine).

    python benchmarks/step_time.py [--threads 2] [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import biostrata  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads OpenMP: keep it first)

# isort: split
import torch

from biostrata.config import TrainConfig
from biostrata.data.dna.alphabet import one_hot
from biostrata.geometry.lorentz import Lorentz
from biostrata.models import build_model
from biostrata.nn.lorentz import LorentzBatchNorm1d, LorentzConv1d
from biostrata.train.module import make_optimizer


def interleaved(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def train_step(name: str, length: int, batch: int, fused: bool = True) -> Callable[[], None]:
    """One training step of ``name`` with the optimizer training uses."""
    model = build_model(name, length, 2)
    for m in model.modules():
        if isinstance(m, LorentzBatchNorm1d):
            m.fused = fused
    opt = make_optimizer(model, TrainConfig(model=name))
    g = torch.Generator().manual_seed(0)
    x = one_hot(torch.randint(0, 5, (batch, length), generator=g))
    y = torch.randint(0, 2, (batch,), generator=g)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def layer_step(
    layer: Callable[[torch.Tensor], torch.Tensor], params: torch.nn.Module, x: torch.Tensor
) -> Callable[[], None]:
    x = x.detach().requires_grad_(True)

    def step() -> None:
        params.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return step


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_step_memory(name: str, length: int, batch: int, threads: int) -> float:
    """MiB: peak resident set during one training step (after two warm-up steps) over the process
    before the model was built. Run in this function's own subprocess (Linux /proc)."""
    torch.set_num_threads(threads)
    base = _status_kb("VmRSS")
    step = train_step(name, length, batch)
    step(), step()
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current size
        f.write("5")
    step()
    return (_status_kb("VmHWM") - base) / 1024


def memory_in_subprocess(name: str, length: int, batch: int, threads: int) -> float | None:
    code = f"from benchmarks.step_time import peak_step_memory as p; print(p({name!r}, {length}, {batch}, {threads}))"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    return float(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.strip() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, device cpu, batch {args.batch}"
    )
    rows = []
    for length in (300, 1000):
        t = interleaved(
            {
                "cnn": train_step("cnn", length, args.batch),
                "hcnn-s": train_step("hcnn-s", length, args.batch),
                "hcnn-s autograd": train_step("hcnn-s", length, args.batch, fused=False),
            },
            args.repeats,
        )
        rows.append(("full training step", length, t["cnn"], t["hcnn-s"]))
        rows.append(("  same, autograd batch norm", length, t["cnn"], t["hcnn-s autograd"]))
    m = Lorentz(1.0, learnable=True)
    g = torch.Generator().manual_seed(0)
    for length in (300, 1000):
        e = torch.randn(args.batch, 32, length, generator=g)
        s = torch.randn(args.batch, 31, length, generator=g)
        conv, bn = LorentzConv1d(31, 31, 9, m, padding=4), LorentzBatchNorm1d(31, m)
        bn_autograd = LorentzBatchNorm1d(31, m, fused=False)
        econv, ebn = torch.nn.Conv1d(32, 32, 9, padding=4), torch.nn.BatchNorm1d(32)
        t = interleaved(
            {
                "econv": layer_step(econv, econv, e),
                "conv": layer_step(conv.space, conv, s),
                "ebn": layer_step(ebn, ebn, e),
                "bn": layer_step(bn.space, bn, s),
                "bn autograd": layer_step(bn_autograd.space, bn_autograd, s),
            },
            args.repeats,
        )
        rows.append(("conv k=9", length, t["econv"], t["conv"]))
        rows.append(("batch norm", length, t["ebn"], t["bn"]))
        rows.append(("  same, autograd", length, t["ebn"], t["bn autograd"]))
    print(f"{'what':<30}{'length':>7}{'Euclidean ms':>14}{'Lorentz ms':>12}{'ratio':>8}")
    for what, length, eu, hy in rows:
        print(f"{what:<30}{length:>7}{eu * 1e3:>14.1f}{hy * 1e3:>12.1f}{hy / eu:>8.2f}")
    memory = []
    print(f"\n{'peak memory of a step (MiB)':<30}{'length':>7}{'cnn':>14}{'hcnn-s':>12}{'ratio':>8}")
    for length in (300, 1000):
        eu, hy = (memory_in_subprocess(n, length, args.batch, args.threads) for n in ("cnn", "hcnn-s"))
        memory.append({"length": length, "cnn_mib": eu, "hcnn_s_mib": hy})
        if eu and hy:
            print(f"{'':<30}{length:>7}{eu:>14.0f}{hy:>12.0f}{hy / eu:>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            times = [dict(zip(("what", "length", "euclidean_s", "lorentz_s"), r)) for r in rows]
            setting = {"threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
            json.dump({"setting": setting, "times": times, "memory": memory}, f, indent=2)


if __name__ == "__main__":
    main()
