"""Time per training step, hyperbolic over Euclidean, measured in one run.

Prints ratios (ours / reference in the same process): HyperbolicCNN over EuclideanCNN at equal
width (full step: forward, backward, optimizer step; batch 100; lengths 300 and 1000), LorentzConv1d
over nn.Conv1d and LorentzBatchNorm1d over nn.BatchNorm1d (forward + backward, 32 channels). A
Lorentz layer is timed twice: on whole points (B, 1 + C, L), its public ``forward``, and on space
parts, the ``space`` path the models chain. Timings are interleaved (A, B, A, B, ...) and the median
of each is used, so background load hits both alike.

    python benchmarks/step_time.py [--threads 2] [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from biostrata.train.optim import RiemannianAdam

from biostrata.config import TrainConfig
from biostrata.data.alphabet import one_hot
from biostrata.geometry.lorentz import Lorentz, lift
from biostrata.models import build_model
from biostrata.nn.lorentz import LorentzBatchNorm1d, LorentzConv1d
from biostrata.train.module import parameter_groups


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


def train_step(name: str, length: int, batch: int) -> Callable[[], None]:
    cfg = TrainConfig(model=name)
    model = build_model(name, length, 2)
    groups = parameter_groups(model, cfg)
    opt = RiemannianAdam(groups) if model.manifold is not None else torch.optim.Adam(groups)
    g = torch.Generator().manual_seed(0)
    x = one_hot(torch.randint(0, 5, (batch, length), generator=g))
    y = torch.randint(0, 2, (batch,), generator=g)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def layer_step(layer: Callable[[torch.Tensor], torch.Tensor], params: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    x = x.detach().requires_grad_(True)

    def step() -> None:
        params.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cpu"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, batch {args.batch}")
    rows = []
    for length in (300, 1000):
        t = interleaved({m: train_step(m, length, args.batch) for m in ("cnn", "hcnn-s")}, args.repeats)
        rows.append(("full training step", length, t["cnn"], t["hcnn-s"]))
    m = Lorentz(1.0, learnable=True)
    g = torch.Generator().manual_seed(0)
    for length in (300, 1000):
        e = torch.randn(args.batch, 32, length, generator=g)
        s = torch.randn(args.batch, 31, length, generator=g)
        x = lift(s, m.kk.detach())
        for what, euclid, lorentz in [
            ("conv k=9", torch.nn.Conv1d(32, 32, 9, padding=4), LorentzConv1d(31, 31, 9, m, padding=4)),
            ("batch norm", torch.nn.BatchNorm1d(32), LorentzBatchNorm1d(31, m)),
        ]:
            t = interleaved(
                {
                    "euclid": layer_step(euclid, euclid, e),
                    "points": layer_step(lorentz, lorentz, x),
                    "space": layer_step(lorentz.space, lorentz, s),
                },
                args.repeats,
            )
            rows.append((f"{what} (points)", length, t["euclid"], t["points"]))
            rows.append((f"{what} (space path)", length, t["euclid"], t["space"]))
    print(f"{'what':<26}{'length':>7}{'Euclidean ms':>14}{'Lorentz ms':>12}{'ratio':>8}")
    for what, length, e, h in rows:
        print(f"{what:<26}{length:>7}{e * 1e3:>14.1f}{h * 1e3:>12.1f}{h / e:>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(zip(("what", "length", "euclidean_s", "lorentz_s"), r)) for r in rows], f, indent=2)


if __name__ == "__main__":
    main()
