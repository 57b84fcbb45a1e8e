"""Training-step time with 1 and 2 torch threads, to choose a thread setting for a shared machine.

Run it once per OpenMP wait policy (the policy is read when torch starts its thread pool, so it
must be set before the process starts), while the machine is busy and while it is quiet:

    OMP_WAIT_POLICY=PASSIVE python -m benchmarks.threads
    OMP_WAIT_POLICY=ACTIVE python -m benchmarks.threads

Prints the median step time of ``cnn`` and ``hcnn-s`` (batch 100, length 300) with 1 and 2
threads, interleaved, and the 2-thread / 1-thread ratio.
"""

from __future__ import annotations

import argparse
import os

import biostrata  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE unless already set: keep it first)

# isort: split
import torch

from benchmarks.step_time import interleaved, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--length", type=int, default=300)
    args = parser.parse_args()
    steps = {m: train_step(m, args.length, 100) for m in ("cnn", "hcnn-s")}
    times: dict[tuple[str, int], float] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for model, t in interleaved(steps, args.repeats).items():
            times[model, threads] = t
    print(
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, length {args.length}, batch 100, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'model':<8}{'1 thread ms':>13}{'2 threads ms':>14}{'2 / 1':>7}")
    for model in steps:
        one, two = times[model, 1], times[model, 2]
        print(f"{model:<8}{one * 1e3:>13.1f}{two * 1e3:>14.1f}{two / one:>7.2f}")


if __name__ == "__main__":
    main()
