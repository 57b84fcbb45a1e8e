"""Riemannian Adam that leaves Euclidean parameter groups to torch's multi-tensor Adam and updates the
manifold parameters of one manifold and shape together.

geoopt's RiemannianAdam updates every tensor one at a time through manifold operations, even
Euclidean ones; on the genome CNNs, whose flatten layer holds millions of Euclidean weights, that
doubles the optimizer's cost. Here a group with no manifold parameter takes torch's functional
Adam (foreach), which computes the same update (coupled L2 weight decay, bias correction). In a group
with manifold parameters, those on one manifold object with one shape, dtype, device and step count
(the batch norms' centres of one curvature, say) are stacked and take geoopt's Riemannian step as one
batch, by its formula, row by row (its manifold operations act along the last dimension); that is a
hundred small operations per step for all of them instead of per tensor, which had made the step of
``hcnn-s`` twice Adam's. Under amsgrad or a sparse gradient a group takes geoopt's step as it is.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch
from geoopt import ManifoldParameter, ManifoldTensor
from geoopt.optim import RiemannianAdam as _GeooptRiemannianAdam
from torch.optim.adam import adam

from biostrata.errors import InputError


def _stack_key(p: torch.Tensor) -> tuple:
    """Manifold parameters with one key stack into one tensor: one manifold object, shape, dtype and device."""
    return id(p.manifold), tuple(p.shape), p.dtype, p.device


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
                if not _is_riemannian(group):
                    self._euclidean_step(group)
                    continue
                self._riemannian_step(group)
        finally:
            self.param_groups = groups
        return loss

    def _riemannian_step(self, group: dict) -> None:
        """geoopt's RiemannianAdam step for ``group``, with the manifold parameters of one manifold object, shape,
        dtype, device and step count stacked into one tensor each (geoopt's own loop under amsgrad or a sparse
        gradient). geoopt's formula for a point x with gradient g, state m, v and step t, here on every row
        at once (the default manifold for a parameter that has none):

            g <- rgrad(x, g + wd x);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) <g, g>_x
            x, m <- retr_transp(x, -lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), m)

        geoopt steps the group's tensors in order, so a point listed after its manifold's own parameter (a
        learned curvature in the same group) moves on the updated manifold: a stack is stepped before that
        parameter is, and the points after it start a new one. Then, as geoopt, when any parameter's t is a
        multiple of ``stabilize``, every manifold parameter of the group that has a state: x <- projx(x),
        m <- proju(x, m)."""
        live = [p for p in group["params"] if p.grad is not None]
        if group["amsgrad"] or any(p.grad.is_sparse for p in live):
            self.param_groups = [group]
            super().step()
            return
        every = group["stabilize"]
        due = every is not None and any((self.state[p].get("step", 0) + 1) % every == 0 for p in live)
        pending: dict[tuple, tuple] = {}
        for p in live:
            if not self.state[p]:  # geoopt's initial state
                self.state[p].update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            if isinstance(p, (ManifoldParameter, ManifoldTensor)):
                key = (*_stack_key(p), self.state[p]["step"])
                pending.setdefault(key, (p.manifold, []))[1].append(p)
                continue
            # a tensor of the default manifold: if it is a manifold's own (its curvature), the points on that
            # manifold listed before it are stepped first, as in geoopt's loop
            for key in [key for key, (m, _) in pending.items() if any(q is p for q in m.parameters())]:
                self._stacked_step(group, *pending.pop(key))
            self._stacked_step(group, self._default_manifold, [p])
        for manifold, params in pending.values():
            self._stacked_step(group, manifold, params)
        if due:
            self._stabilize_stacked(group)

    def _stacked_step(self, group: dict, manifold, params: list) -> None:
        b1, b2 = group["betas"]
        states = [self.state[p] for p in params]
        for state in states:
            state["step"] += 1
        step = states[0]["step"]
        point = torch.stack(params)
        grad = torch.stack([p.grad for p in params]).add_(point, alpha=group["weight_decay"])
        grad = manifold.egrad2rgrad(point, grad)
        exp_avg = torch.stack([s["exp_avg"] for s in states]).mul_(b1).add_(grad, alpha=1 - b1)
        exp_avg_sq = torch.stack([s["exp_avg_sq"] for s in states])
        exp_avg_sq.mul_(b2).add_(manifold.component_inner(point, grad), alpha=1 - b2)
        denom = exp_avg_sq.div(1 - b2**step).sqrt_().add_(group["eps"])
        direction = exp_avg.div(1 - b1**step) / denom
        point, exp_avg = manifold.retr_transp(point, -group["lr"] * direction, exp_avg)
        torch._foreach_copy_(params, list(point.unbind(0)))
        torch._foreach_copy_([s["exp_avg"] for s in states], list(exp_avg.unbind(0)))
        torch._foreach_copy_([s["exp_avg_sq"] for s in states], list(exp_avg_sq.unbind(0)))

    def _stabilize_stacked(self, group: dict) -> None:
        """geoopt's ``stabilize_group``, stacked: x <- projx(x), m <- proju(x, m) for every manifold parameter of
        the group that has a state, after the whole group's step."""
        stacks: dict[tuple, tuple] = {}
        for p in group["params"]:
            if isinstance(p, (ManifoldParameter, ManifoldTensor)) and self.state[p]:
                stacks.setdefault(_stack_key(p), (p.manifold, []))[1].append(p)
        for manifold, params in stacks.values():
            states = [self.state[p] for p in params]
            point = manifold.projx(torch.stack(params))
            exp_avg = manifold.proju(point, torch.stack([s["exp_avg"] for s in states]))
            torch._foreach_copy_(params, list(point.unbind(0)))
            torch._foreach_copy_([s["exp_avg"] for s in states], list(exp_avg.unbind(0)))

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
