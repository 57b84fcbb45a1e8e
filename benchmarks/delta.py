"""Gromov delta: biostrata against plain NumPy reference code and the ``hypdelta`` package.

One run, side by side, every measurement in a fresh process (so peak memory is its own):

1. fixed-base delta (one base point) at n = 500 and 1000: ours against the plain NumPy version that
   materializes the n^3 array of min((x|z)_p, (z|y)_p) (as common reference code does);
2. exact delta at n = 200 and 400: ours against a loop over all base points of that plain version;
3. ``hypdelta`` (PyPI) where it installs: its exact ``naive`` strategy (the same loop) at n = 200 and
   its heuristics (``CCL`` on the 5% longest pairs, ``condensed``) at every size; numba compile time
   is excluded (one warm-up call on a small matrix first);
4. our exact delta at n = 1000 on several kinds of data, beside hypdelta's CCL heuristic.

Data: standard normal points in R^16 (Euclidean distances), one seed per size; section 4 adds
points in the unit square, in R^128, in 10 clusters, wrapped-normal points in the hyperbolic
plane and a random tree. Values are absolute deltas (hypdelta reports 2 delta / diam; converted).
Peak memory is the growth of the process's peak resident set during the call (Linux
``/proc/self/status`` VmHWM, reset before the call through ``/proc/self/clear_refs``).

    python benchmarks/delta.py [--threads 2] [--skip-plain-1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time

import numpy as np


# -- data and the plain reference ----------------------------------------------------------------
def make(kind: str, n: int, seed: int) -> np.ndarray:
    from biostrata.analysis.hyperbolicity import tree_metric
    from biostrata.geometry.distances import pairwise_distances

    rng = np.random.default_rng(seed)
    if kind == "gauss16":
        return pairwise_distances(rng.standard_normal((n, 16))).numpy()
    if kind == "plane":
        return pairwise_distances(rng.random((n, 2))).numpy()
    if kind == "gauss128":
        return pairwise_distances(rng.standard_normal((n, 128))).numpy()
    if kind == "clusters":
        centres = 3 * rng.standard_normal((10, 32))
        return pairwise_distances(centres[rng.integers(0, 10, n)] + rng.standard_normal((n, 32))).numpy()
    if kind == "hyperbolic":
        v = 2 * rng.standard_normal((n, 2))
        r = np.linalg.norm(v, axis=1, keepdims=True)
        x = np.concatenate([np.cosh(r), np.sinh(r) * v / r], 1)
        return pairwise_distances(x, metric="lorentz").numpy()
    if kind == "tree":
        return tree_metric(n, rng)
    raise KeyError(kind)


KINDS = {
    "gauss16": "N(0, I) in R^16",
    "plane": "uniform in the unit square",
    "gauss128": "N(0, I) in R^128",
    "clusters": "10 Gaussian clusters in R^32",
    "hyperbolic": "wrapped normal (sd 2) in H^2",
    "tree": "random tree, all nodes",
}


def plain_fixed(d: np.ndarray, p: int = 0) -> float:
    """Reference code: Gromov products at p, then the n^3 array of the (max, min) product."""
    row = d[p, :][np.newaxis, :]
    col = d[:, p][:, np.newaxis]
    xy_p = 0.5 * (row + col - d)
    maxmin = np.max(np.minimum(xy_p[:, :, None], xy_p[None, :, :]), axis=1)
    return float(np.max(maxmin - xy_p))


def plain_exact(d: np.ndarray) -> float:
    return max(plain_fixed(d, p) for p in range(d.shape[0]))


# -- one measurement in its own process ----------------------------------------------------------
def _status_kib(field: str) -> int:
    """A ``VmHWM`` (peak) or ``VmRSS`` (current) line of /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        return next((int(line.split()[1]) for line in f if line.startswith(field + ":")), 0)


def _child(task: dict, out: mp.Queue) -> None:
    import torch

    torch.set_num_threads(task["threads"])
    d = make(task["kind"], task["n"], task["seed"])
    impl = task["impl"]
    if impl.startswith("hypdelta"):
        from hypdelta.delta import hypdelta

        strategy = impl.split(":")[1]
        warm = make("gauss16", 30, 99)
        hypdelta(warm, device="cpu", strategy=strategy)  # numba compiles here, outside the timing
    if impl == "ours-fixed":
        from biostrata.geometry.delta import delta_fixed_base as fn
    elif impl == "ours-exact":
        from biostrata.geometry.delta import delta_exact as fn
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    if impl == "plain-fixed":
        value = plain_fixed(d, 0)
    elif impl == "plain-exact":
        value = plain_exact(d)
    elif impl == "ours-fixed":
        value = fn(d, 0, threads=task["threads"]).delta
    elif impl == "ours-exact":
        value = fn(d, threads=task["threads"]).delta
    else:  # hypdelta returns 2 delta / diam
        value = hypdelta(d, device="cpu", strategy=impl.split(":")[1]) * float(d.max()) / 2
    seconds = time.perf_counter() - start
    peak = max(_status_kib("VmHWM") - before, 0) / 1024
    out.put({**task, "value": float(value), "seconds": seconds, "peak_mib": peak})


def measure(impl: str, kind: str, n: int, threads: int, seed: int | None = None) -> dict:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    task = {"impl": impl, "kind": kind, "n": n, "threads": threads, "seed": n if seed is None else seed}
    p = ctx.Process(target=_child, args=(task, q))
    p.start()
    p.join()
    if p.exitcode != 0:
        return {
            **task,
            "value": float("nan"),
            "seconds": float("nan"),
            "peak_mib": float("nan"),
            "error": f"exit code {p.exitcode}",
        }
    res = q.get()
    print(
        f"  {impl:22s} {kind:10s} n={n:5d}  delta={res['value']:.12g}  {res['seconds']:9.3f} s  "
        f"peak +{res['peak_mib']:8.1f} MiB",
        flush=True,
    )
    return res


def available_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def hypdelta_ok() -> str | None:
    try:
        from hypdelta.delta import hypdelta  # noqa: F401

        return None
    except Exception as err:  # missing, or its undeclared numba dependency is
        return f"{type(err).__name__}: {err}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch threads / our worker threads (default 2)")
    ap.add_argument("--skip-plain-1000", action="store_true", help="skip the 8 GB plain run at n = 1000")
    ap.add_argument("--json", help="also write all measurements to this JSON file")
    args = ap.parse_args()

    import torch

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; our threads: {args.threads}"
    )
    no_hyp = hypdelta_ok()
    print("hypdelta:", "installed" if no_hyp is None else f"not available ({no_hyp}); its rows are skipped")
    rows: list[dict] = []

    print("\n1. fixed-base delta (base point 0), N(0, I) in R^16")
    for n in (500, 1000):
        ours = measure("ours-fixed", "gauss16", n, args.threads)
        ours1 = measure("ours-fixed", "gauss16", n, 1)
        if n == 1000 and (args.skip_plain_1000 or available_gib() < 12):
            print(f"  plain-fixed skipped at n = 1000 (needs ~8 GiB; {available_gib():.1f} GiB available)")
            plain = None
        else:
            plain = measure("plain-fixed", "gauss16", n, 1)
        hyp = [] if no_hyp else [measure(f"hypdelta:{s}", "gauss16", n, args.threads) for s in ("CCL", "condensed")]
        rows += [ours, ours1] + ([plain] if plain else []) + hyp
        if plain:
            print(
                f"  -> plain / ours: {plain['seconds'] / ours['seconds']:.1f}x time ({args.threads} threads), "
                f"{plain['seconds'] / ours1['seconds']:.1f}x (1 thread); memory {plain['peak_mib']:.0f} vs "
                f"{ours['peak_mib']:.0f} MiB; |difference| = {abs(plain['value'] - ours['value']):.2e}"
            )

    print("\n2. exact delta, N(0, I) in R^16")
    for n in (200, 400):
        ours = measure("ours-exact", "gauss16", n, args.threads)
        plain = measure("plain-exact", "gauss16", n, 1)
        hyp = []
        if not no_hyp:
            hyp = [
                measure(f"hypdelta:{s}", "gauss16", n, args.threads)
                for s in (("naive", "CCL", "condensed") if n == 200 else ("CCL", "condensed"))
            ]
        rows += [ours, plain] + hyp
        print(
            f"  -> plain loop / ours: {plain['seconds'] / ours['seconds']:.0f}x time; memory "
            f"{plain['peak_mib']:.0f} vs {ours['peak_mib']:.0f} MiB; |difference| = "
            f"{abs(plain['value'] - ours['value']):.2e}"
        )

    print(f"\n3. exact delta at n = 1000, {args.threads} threads (hypdelta CCL: a lower bound, no guarantee)")
    for kind, what in KINDS.items():
        res = measure("ours-exact", kind, 1000, args.threads)
        res["data"] = what
        rows.append(res)
        if not no_hyp:
            rows.append(measure("hypdelta:CCL", kind, 1000, args.threads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
