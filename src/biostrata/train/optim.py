"""Riemannian Adam that leaves Euclidean parameter groups to torch's multi-tensor Adam.

geoopt's RiemannianAdam updates every tensor one at a time through manifold operations, even
Euclidean ones; on the genome CNNs, whose flatten layer holds millions of Euclidean weights, that
doubles the optimizer's cost. Here a group with no manifold parameter takes torch's functional
Adam (foreach), which computes the same update (coupled L2 weight decay, bias correction); groups
with manifold parameters take geoopt's Riemannian step.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch
from geoopt import ManifoldParameter, ManifoldTensor
from geoopt.optim import RiemannianAdam as _GeooptRiemannianAdam
from torch.optim.adam import adam

from biostrata.errors import InputError


def _is_riemannian(group: dict) -> bool:
    return any(isinstance(p, (ManifoldParameter, ManifoldTensor)) for p in group["params"])


class RiemannianAdam(_GeooptRiemannianAdam):
    """Drop-in for ``geoopt.optim.RiemannianAdam`` (same arguments and semantics)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = self.param_groups
        try:
            for group in groups:  # in order: a manifold's step sees the curvature as geoopt would
                if _is_riemannian(group):
                    self.param_groups = [group]
                    super().step()
                else:
                    self._euclidean_step(group)
        finally:
            self.param_groups = groups
        return loss

    def _euclidean_step(self, group: dict) -> None:
        if group["amsgrad"]:
            raise InputError("amsgrad is not supported for Euclidean groups; use amsgrad=False")
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        beta1, beta2 = group["betas"]
        adam(
            params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=True, amsgrad=False, beta1=beta1, beta2=beta2,
            lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
        )  # fmt: skip


def lr_factor(step: int, steps_per_epoch: int, warmup_steps: int, milestones: Sequence[int], gamma: float) -> float:
    """Multiplier of every group's base rate at optimizer step ``step`` (0-based):
    min(1, (step + 1) / warmup_steps) * gamma ** #{m in milestones : m <= step // steps_per_epoch}.

    A milestone m takes effect at the start of epoch m, as in ``torch.optim.lr_scheduler.MultiStepLR``
    stepped once per epoch; ``warmup_steps`` 0 means no warm-up.
    """
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warm * gamma ** bisect.bisect_right(sorted(milestones), step // max(1, steps_per_epoch))
