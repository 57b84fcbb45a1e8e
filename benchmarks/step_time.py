"""Time and memory of a training step, hyperbolic over Euclidean, measured in one run.

Prints ratios (ours / reference in the same process):
- full training step (forward, backward, optimizer step as in training, both optimizers
  multi-tensor; batch 100; ``--lengths``, by default 300 and 1000): ``hcnn-s`` over ``cnn``, with the
  batch norms and the convolutions' time terms in biostrata's C++ operators where they are built
  (``nn.native``; on the CPU), in torch operations with hand-written backward passes
  (``native_kernels=False``, what runs on a GPU), and with plain-autograd batch norms (``fused=False``);
- layers, forward + backward, 32 channels: LorentzConv1d (C++ time term where built, torch operations)
  over nn.Conv1d, LorentzBatchNorm1d (C++ operators where built, torch operations, autograd) over
  nn.BatchNorm1d, each
  with its full-size traffic: how many times an operation read or wrote a tensor of the activations'
  size (B, C, L) in one forward and backward, and the bytes those reads and writes move
  (``FullSizeTraffic``; counted per operator, aten's and biostrata's C++ ones (``torch.ops.biostrata``)
  alike, so a kernel that reads its input twice, as nn.BatchNorm1d's does, counts once), and how many
  operators of any size it called (each one dispatch, the serial cost of small ones);
- peak memory of a training step (CPU: resident set size over the bare process, with glibc's mmap
  threshold fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``) so that every tensor's memory goes back to the
  system when it is freed and the peak is that of the live tensors: with glibc's adaptive threshold the
  peak varied by 10 % from run to run; CUDA: peak allocated memory; weights, gradients, optimizer state,
  activations), each model in a fresh subprocess.
Timings are interleaved (A, B, A, B, ...) and the median of each is used, so background load hits
both alike. The thread count, OMP_WAIT_POLICY and whether the C++ kernels are in use are printed;
biostrata sets OMP_WAIT_POLICY=PASSIVE unless it is already set (spin-waiting threads collapse on a
shared machine). ``--device cuda`` times on the GPU (synchronized; the C++ kernels are for the CPU),
``--precision bf16-mixed`` runs forward and loss under bf16 autocast, as training's
``--precision bf16-mixed`` does.

    python benchmarks/step_time.py [--threads 2] [--repeats 7] [--lengths 300 1000]
        [--device cpu|cuda] [--precision 32|bf16-mixed] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
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
from torch.utils._python_dispatch import TorchDispatchMode

from biostrata.config import TrainConfig
from biostrata.data.dna.alphabet import one_hot
from biostrata.geometry.lorentz import Lorentz
from biostrata.models import build_model
from biostrata.nn.lorentz import LorentzBatchNorm1d, LorentzConv1d
from biostrata.nn.native import kernels
from biostrata.train.module import make_optimizer


class FullSizeTraffic(TorchDispatchMode):
    """Counts, for every aten operation run under it, the tensors of at least ``numel`` elements it reads
    and writes, and their bytes. An argument is read unless it is only an ``out=`` buffer (a tensor given
    twice, as in ``x * x``, is read once); an argument the operation mutates (``x.add_``) is also written;
    a new output is written; views and allocations (``empty_like``) move nothing. ``operations`` counts
    every operator called, of any size."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.reads, self.writes, self.bytes = numel, 0, 0, 0
        self.operations = 0  # every operator called, of any size: each a dispatch, whatever it moves

    def _count(self, tensors: list, read: bool, write: bool) -> None:
        for t in tensors:
            if t.numel() >= self.numel:
                self.reads, self.writes = self.reads + read, self.writes + write
                self.bytes += (read + write) * t.numel() * t.element_size()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.operations += 1
        schema = func._schema
        if schema.name.startswith("aten::empty") or any(
            r.alias_info is not None and not r.alias_info.is_write for r in schema.returns
        ):
            return out  # an allocation or a view
        read, written, seen = [], [], set()
        for i, arg in enumerate(schema.arguments):
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            for t in value if isinstance(value, (list, tuple)) else (value,):
                if not isinstance(t, torch.Tensor) or id(t) in seen:
                    continue
                seen.add(id(t))
                is_write = arg.alias_info is not None and arg.alias_info.is_write
                if not (is_write and arg.kwarg_only):
                    read.append(t)
                if is_write:
                    written.append(t)
        self._count(read, read=True, write=False)
        self._count(written or [t for t in (out if isinstance(out, (list, tuple)) else (out,)) if isinstance(t, torch.Tensor)],
                    read=False, write=True)  # fmt: skip
        return out


def interleaved(fns: dict[str, Callable[[], None]], repeats: int, sync: Callable[[], None], warmup: int = 2) -> dict:
    """Median seconds per call of each function, calls interleaved, as {name: (wall, cpu)}: wall-clock time
    (``sync`` waits for the device) and this process's CPU time, which other jobs on a shared machine
    inflate less (passive OpenMP threads sleep while they wait, so it counts the work)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            sync()
            times[name].append((time.perf_counter() - t, time.process_time() - c))
    return {k: tuple(statistics.median(x) for x in zip(*v)) for k, v in times.items()}


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``bf16-mixed``, as Lightning's precision plugin; nothing for ``32``."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def train_step(
    name: str,
    length: int,
    batch: int,
    fused: bool = True,
    device: str = "cpu",
    precision: str = "32",
    native: bool | None = None,
) -> Callable[[], None]:
    """One training step of ``name`` with the optimizer training uses; ``fused`` sets every LorentzBatchNorm1d's
    ``fused``, ``native`` its and every LorentzConv1d's ``native_kernels``."""
    model = build_model(name, length, 2).to(device)
    for m in model.modules():
        if isinstance(m, LorentzBatchNorm1d):
            m.fused = fused
        if isinstance(m, (LorentzBatchNorm1d, LorentzConv1d)):
            m.native_kernels = native
    opt = make_optimizer(model, TrainConfig(model=name))
    g = torch.Generator().manual_seed(0)
    x = one_hot(torch.randint(0, 5, (batch, length), generator=g)).to(device)
    y = torch.randint(0, 2, (batch,), generator=g).to(device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def layer_step(
    layer: Callable[[torch.Tensor], torch.Tensor], params: torch.nn.Module, x: torch.Tensor, precision: str = "32"
) -> Callable[[], None]:
    """Forward and backward of ``layer`` with a fixed gradient of the output (a dense one, as a next
    layer sends; the gradient of ``out.sum()`` is a broadcast that no model produces)."""
    x = x.detach().requires_grad_(True)
    with autocast(x.device.type, precision):
        grad = torch.randn_like(layer(x), dtype=torch.float32)

    def step() -> None:
        params.zero_grad(set_to_none=True)
        x.grad = None
        with autocast(x.device.type, precision):
            out = layer(x)
        out.backward(grad.to(out.dtype))

    return step


def traffic(step: Callable[[], None], x: torch.Tensor) -> dict:
    """Full-size reads and writes (and MiB) of one call of a ``layer_step`` on input ``x``."""
    with FullSizeTraffic(x.numel() // 2) as counter:
        step()
    return {"reads": counter.reads, "writes": counter.writes, "mib": counter.bytes / 2**20, "ops": counter.operations}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_step_memory(
    name: str, length: int, batch: int, threads: int, device: str = "cpu", precision: str = "32"
) -> float:
    """MiB: peak memory during one training step (after two warm-up steps). CPU: the resident set over the
    process before the model was built (Linux /proc); CUDA: peak allocated memory. Run in this function's
    own subprocess."""
    torch.set_num_threads(threads)
    base = _status_kb("VmRSS") if device == "cpu" else 0
    step = train_step(name, length, batch, device=device, precision=precision)
    step(), step()
    if device == "cpu":
        with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current size
            f.write("5")
        step()
        return (_status_kb("VmHWM") - base) / 1024
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def memory_in_subprocess(name: str, length: int, batch: int, threads: int, device: str, precision: str) -> float | None:
    args = f"{name!r}, {length}, {batch}, {threads}, {device!r}, {precision!r}"
    code = f"from benchmarks.step_time import peak_step_memory as p; print(p({args}))"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(128 * 1024))  # see the module's docstring
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env)
    return float(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.strip() else None


def row(what: str, length: int, euclidean: tuple[float, float], lorentz: tuple[float, float], **extra) -> dict:
    """One line of the table: the (wall, cpu) medians of both sides."""
    return dict(what=what, length=length, euclidean_s=euclidean[0], lorentz_s=lorentz[0], euclidean_cpu_s=euclidean[1],
                lorentz_cpu_s=lorentz[1], **extra)  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lengths", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device, precision = args.device, args.precision
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    where = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    # the batch norm's passes run in them on the CPU (float32 and float64, also under bf16 autocast)
    native_kernels = device == "cpu" and kernels() is not None
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, device {where}, "
        f"precision {precision}, batch {args.batch}, native kernels {'in use' if native_kernels else 'not in use'}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for length in args.lengths:
        t = interleaved(
            {
                "cnn": train_step("cnn", length, args.batch, device=device, precision=precision),
                "hcnn-s": train_step("hcnn-s", length, args.batch, device=device, precision=precision),
                "hcnn-s torch": train_step("hcnn-s", length, args.batch, True, device, precision, native=False),
                "hcnn-s autograd": train_step("hcnn-s", length, args.batch, False, device, precision),
            },
            args.repeats,
            sync,
        )
        rows.append(row("full training step", length, t["cnn"], t["hcnn-s"]))
        rows.append(row("  same, torch operations", length, t["cnn"], t["hcnn-s torch"]))
        rows.append(row("  same, autograd batch norm", length, t["cnn"], t["hcnn-s autograd"]))
    g = torch.Generator().manual_seed(0)
    for length in args.lengths:
        m = Lorentz(1.0, learnable=True)  # on the CPU until the layers that share it are built, then moved with them
        e = torch.randn(args.batch, 32, length, generator=g).to(device)
        s = torch.randn(args.batch, 31, length, generator=g).to(device)
        conv, conv_torch, bn, bn_torch, bn_autograd = (
            LorentzConv1d(31, 31, 9, m, padding=4),
            LorentzConv1d(31, 31, 9, m, padding=4, native_kernels=False),
            LorentzBatchNorm1d(31, m),
            LorentzBatchNorm1d(31, m, native_kernels=False),
            LorentzBatchNorm1d(31, m, fused=False),
        )
        for layer in (conv, conv_torch, bn, bn_torch, bn_autograd):
            layer.to(device)
        econv, ebn = torch.nn.Conv1d(32, 32, 9, padding=4).to(device), torch.nn.BatchNorm1d(32).to(device)
        steps = {
            "econv": (layer_step(econv, econv, e, precision), e),
            "conv": (layer_step(conv.space, conv, s, precision), s),
            "conv torch": (layer_step(conv_torch.space, conv_torch, s, precision), s),
            "ebn": (layer_step(ebn, ebn, e, precision), e),
            "bn": (layer_step(bn.space, bn, s, precision), s),
            "bn torch": (layer_step(bn_torch.space, bn_torch, s, precision), s),
            "bn autograd": (layer_step(bn_autograd.space, bn_autograd, s, precision), s),
        }
        t = interleaved({k: fn for k, (fn, _) in steps.items()}, args.repeats, sync)
        moved = {k: traffic(fn, x) for k, (fn, x) in steps.items()}
        for what, eu, hy in (
            ("conv k=9", "econv", "conv"),
            ("  same, torch operations", "econv", "conv torch"),
            ("batch norm", "ebn", "bn"),
            ("  same, torch operations", "ebn", "bn torch"),
            ("  same, autograd", "ebn", "bn autograd"),
        ):
            rows.append(row(what, length, t[eu], t[hy], euclidean_traffic=moved[eu], lorentz_traffic=moved[hy]))
    print(f"{'what':<30}{'length':>7}{'Euclidean ms':>14}{'Lorentz ms':>12}{'ratio':>8}{'cpu ratio':>10}"
          f"{'full-size r+w':>16}{'MiB moved':>14}{'operators':>14}")  # fmt: skip
    for r in rows:
        line = f"{r['what']:<30}{r['length']:>7}{r['euclidean_s'] * 1e3:>14.2f}{r['lorentz_s'] * 1e3:>12.2f}"
        line += f"{r['lorentz_s'] / r['euclidean_s']:>8.2f}{r['lorentz_cpu_s'] / r['euclidean_cpu_s']:>10.2f}"
        if "lorentz_traffic" in r:
            eu, hy = r["euclidean_traffic"], r["lorentz_traffic"]
            passes = f"{eu['reads'] + eu['writes']} / {hy['reads'] + hy['writes']}"
            line += f"{passes:>16}{eu['mib']:>7.0f} / {hy['mib']:<6.0f}{eu['ops']:>7} / {hy['ops']:<6}"
        print(line)
    memory = []
    print(f"\n{'peak memory of a step (MiB)':<30}{'length':>7}{'cnn':>14}{'hcnn-s':>12}{'ratio':>8}")
    for length in args.lengths:
        eu, hy = (
            memory_in_subprocess(n, length, args.batch, args.threads, device, precision) for n in ("cnn", "hcnn-s")
        )
        memory.append({"length": length, "cnn_mib": eu, "hcnn_s_mib": hy})
        if eu and hy:
            print(f"{'':<30}{length:>7}{eu:>14.0f}{hy:>12.0f}{hy / eu:>8.2f}")
    setting = {
        "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "device": where,
        "precision": precision, "batch": args.batch, "native_kernels": native_kernels, "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }  # fmt: skip
    result = {"setting": setting, "times": rows, "memory": memory}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
