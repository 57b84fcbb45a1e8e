"""Fully hyperbolic layers in the Lorentz model (Bdeir, Schwethelm, Landwehr, ICLR 2024).

Inputs and outputs of ``forward`` are points (B, 1 + C, L) or (B, 1 + C) with the time coordinate
first. A point is determined by its space part, so each layer also has ``space(s)``: space part in,
space part out, time recomputed under the layer's manifold where the formula needs it. Models chain
``space`` and skip materializing time coordinates between layers; blocks of different curvature
compose because each layer reads its input under its own manifold.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from geoopt import ManifoldParameter
from torch import nn

from biostrata.compat import moved
from biostrata.errors import InputError, ParameterError
from biostrata.geometry.lorentz import Lorentz, clip_norm
from biostrata.nn.fused import boost_rescale, conv_time_term

# Largest radius rho = d(x, o)/sqrt(k) of the learned centre beta of a batch norm. Without this clip
# the centre of the last batch norm of the genome CNN drifted outwards in training (radius 4 by epoch
# 50 on prom_core_tata) until the forward pass overflowed to NaN.
MAX_CENTRE_RADIUS = 5.0
# Largest rescaled radius r of a batch-norm output before it is moved to beta: the reference's cap
# (HyperbolicCV's fork of geoopt, EXP_MAX_NORM = 10 in its expmap: the norm of the tangent vector over
# sqrt(k), clamped at 10 before cosh and sinh), the default. Outputs then lie within 15 of the origin.
REFERENCE_RADIUS_CLIP = 10.0
# With r clipped at MAX_RADIUS - MAX_CENTRE_RADIUS = 5 instead (``max_radius=5``, the earlier
# default), outputs stay within MAX_RADIUS = 10, coordinates below sinh(10) ~ 1.1e4, so squared norms
# and the boosts of the next layers stay accurate in float32. That clip acted in training (2e-5 of the
# positions of the last batch norm of hcnn-s in the first epoch on prom_core_tata at lr 1e-3), where
# it changes the model, so it is an option, not the default.
MAX_RADIUS = 10.0
# Largest radius of the points a LorentzDistanceHead scores. Its logits are distances, arccosh of
# -<y, p>_L / k, a difference of products of coordinates ~ sqrt(k) cosh(r): float32 rounding puts an
# error of ~1e-7 cosh(r_y) cosh(r_p) on it: ~7e-4 at r_y = r_p = 5 (measured: a distance of 1 off by
# 2e-3), but ~15 at MAX_RADIUS (a distance of 5 off by 2), where the logits of nearby points are noise.
HEAD_MAX_RADIUS = 5.0


def _space(x: torch.Tensor) -> torch.Tensor:
    return x[:, 1:]


class _SpaceLayer(nn.Module):
    """A Lorentz layer defined by its map of space parts; ``forward`` maps whole points."""

    manifold: Lorentz

    def space(self, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.manifold.lift(self.space(_space(x)))


class LorentzLinear(_SpaceLayer):
    """Lorentz fully-connected layer: y_s = W_s x_s + w_t x_0 + b, y_0 = sqrt(k + |y_s|^2).

    ``in_features`` and ``out_features`` count space dimensions.
    """

    def __init__(self, in_features: int, out_features: int, manifold: Lorentz) -> None:
        super().__init__()
        self.manifold = manifold
        self.linear = nn.Linear(in_features, out_features)
        bound = 1.0 / math.sqrt(in_features + 1)
        self.time_weight = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    def space(self, s: torch.Tensor) -> torch.Tensor:
        return self.linear(s) + self.manifold.time(s) * self.time_weight


class LorentzConv1d(_SpaceLayer):
    """Lorentz convolution: the window's points joined by Lorentz direct concatenation, then a
    Lorentz linear map (Qu & Zou 2022; Bdeir et al. 2024).

    The direct concatenation of N points has space part (x_s^1, ..., x_s^N) and time
    sqrt(sum_i x_0^i^2 - (N - 1) k) = sqrt(k + sum_i |x_s^i|^2), so the whole layer is
        y_s = conv1d(x_s, W) + w_t sqrt(k + window_sum(|x_s|^2)) + b,
    a Euclidean convolution of the space parts plus one rank-one term. Zero padding of the space
    parts pads with the origin. ``in_channels``/``out_channels`` count space dimensions. The time term
    runs with a hand-written backward (``nn.fused.conv_time_term``; ``fused=False``: autograd), on the CPU
    in biostrata's C++ kernels where they build (``nn.native``; ``native_kernels=False``: torch
    operations; True: an error where they cannot be used).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        manifold: Lorentz,
        padding: int = 0,
        native_kernels: bool | None = None,
    ) -> None:
        super().__init__()
        self.manifold = manifold
        self.kernel_size = kernel_size
        self.padding = padding
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding)
        self.fused = True  # hand-written backward of the time term (nn.fused); False: autograd
        # the time term in biostrata's C++ kernels (nn.native): None where they build and the input is on the CPU
        self.native_kernels = native_kernels
        bound = 1.0 / math.sqrt(in_channels * kernel_size + 1)
        self.time_weight = nn.Parameter(torch.empty(out_channels, 1).uniform_(-bound, bound))

    def space(self, s: torch.Tensor) -> torch.Tensor:
        y = self.conv(s)
        return conv_time_term(y, self.time_weight, s, self.manifold, self.kernel_size, self.padding, self.fused,
                              self.native_kernels)  # fmt: skip


class LorentzBatchNorm1d(_SpaceLayer):
    """Lorentz batch norm of Bdeir et al. (2024), as in their code and that of Khan et al. (2025):
    centre on the Lorentz centroid mu, rescale by the mean geodesic distance to it, re-centre on a
    learned point beta.

    Train mode, for points x_i (for (B, C, L) input, i runs over all B L positions):
        mu  = centroid_b(centroid_l(x_bl))  for (B, C, L); centroid_i(x_i) for (B, C)
              (centroid(x) = sqrt(k) m / sqrt(|<m, m>_L|), m the coordinate mean)
        v_i = PT_{mu->o}(log_mu x_i)           (tangent vectors at the origin o)
        s   = mean_i |v_i| = mean_i d(x_i, mu)  (the mean distance, not its square)
        out_i = exp_beta(PT_{o->beta}(v_i gamma / (s + eps)))
    Eval mode uses the running statistics: mu = exp_o(running_mean), s = running_var, where after
    each training batch, with momentum m,
        running_mean <- log_o(centroid((1 - m) exp_o(running_mean), m mu))   (weighted centroid)
        running_var  <- (1 - m) running_var + m s.
    ``warm_start`` (on by default; off is the reference) uses momentum max(m, 1/n) on the n-th
    training batch, so the first batch replaces the initial statistics (origin, 1) and the next
    ones average in: after a few dozen steps the reference's statistics still weigh the initial
    values enough that eval mode predicted one class. From batch 1/m on both are the same moving
    average. Training-mode outputs do not depend on it.

    Computed in closed form: PT_{mu->o} log_mu = log_o B_{mu->o}, with B the Lorentz boost along the
    geodesic from mu to o; a boost adds a multiple of one vector to the space part,
        y_s = x_s + a mu_s,  a = (mu_s . x_s) / (sqrt(k) (mu_0 + sqrt(k))) - x_0 / sqrt(k),
    and in units of sqrt(k) the radius of y is rho = asinh(|y_s| / sqrt(k)) = d(x, mu) / sqrt(k), so
        z_s = y_s sinh(r) sqrt(k) / |y_s|,  z_0 = sqrt(k) cosh(r),  r = gamma rho / (s + eps)
        out_s = z_s + beta_s ((beta_s . z_s) / (sqrt(k) (beta_0 + sqrt(k))) + z_0 / sqrt(k)).
    The full-size passes run with a hand-written backward (``nn.fused``; ``fused=False``: autograd), on the
    CPU in biostrata's C++ kernels where they build (``nn.native``; ``native_kernels=False``: torch
    operations, the same results within float rounding; True: an error where they cannot be used).
    Clamps (not formula changes): r is clipped at ``max_radius`` (default REFERENCE_RADIUS_CLIP = 10,
    the reference's only cap, which it applies inside its exponential map; 5 keeps outputs within
    MAX_RADIUS, see there), and beta's radius at MAX_CENTRE_RADIUS (ours). How often the radius clip
    acts is counted per mode (``clip_counts``).
    """

    def __init__(
        self,
        num_features: int,
        manifold: Lorentz,
        momentum: float = 0.1,
        eps: float = 1e-5,
        warm_start: bool = True,
        fused: bool = True,
        max_radius: float = REFERENCE_RADIUS_CLIP,
        native_kernels: bool | None = None,
    ) -> None:
        super().__init__()
        if not max_radius > 0:
            raise ParameterError("max_radius", f"max_radius={max_radius}: must be > 0 (a radius in units of sqrt(1/K))")
        self.fused = fused  # hand-written backward of the full-size passes (nn.fused); False: autograd
        # the fused passes in biostrata's C++ kernels (nn.native): None where they build and the input is on the CPU
        self.native_kernels = native_kernels
        self.max_radius = float(max_radius)
        # per mode, (positions the radius clip moved, positions seen) since the last ``clip_counts``; the
        # first a tensor on the activations' device (no device-to-host copy per step); not model state
        self._clips: dict[str, tuple] = {}
        self.manifold = manifold
        self.momentum = momentum
        self.eps = eps
        self.warm_start = warm_start
        origin = manifold.lift(torch.zeros(num_features), dim=0).detach()  # (sqrt(k), 0, ..., 0)
        self.beta = ManifoldParameter(origin, manifold=manifold)
        self.gamma = nn.Parameter(torch.ones(()))
        # log_o of the running centroid: a tangent vector at the origin, time component 0
        self.register_buffer("running_mean", torch.zeros(1 + num_features))
        self.register_buffer("running_var", torch.ones(()))
        # training batches seen, for ``warm_start``; a buffer, so a reloaded model goes on counting
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def space(self, s: torch.Tensor) -> torch.Tensor:
        """Space parts (B, C, L) or (B, C) in, normalized space parts out."""
        if s.dim() == 2:
            return self.space(s.unsqueeze(-1)).squeeze(-1)
        mu_s = None if self.training else self.manifold.expmap0_space(self.running_mean[1:])
        beta_s = self.manifold.clip_radius(self.beta[1:], MAX_CENTRE_RADIUS, dim=0)
        out, spread, mu_s, clipped = boost_rescale(
            s, mu_s, beta_s, self.manifold, self.gamma, None if self.training else self.running_var,
            self.eps, self.max_radius, self.fused, self.native_kernels,
        )  # fmt: skip
        if self.training:
            self._update_running(mu_s.detach(), spread.detach())
        mode = "train" if self.training else "eval"
        moved, seen = self._clips.get(mode, (0, 0))
        self._clips[mode] = (moved + clipped, seen + s.shape[0] * s.shape[2])
        return out

    def clip_counts(self, mode: str) -> tuple[int, int]:
        """(positions whose radius the clip moved, positions seen) in ``mode`` ("train" or "eval") since the
        last call, which starts the count again."""
        moved, seen = self._clips.pop(mode, (0, 0))
        return int(moved), int(seen)

    @torch.no_grad()
    def clip_centre_(self) -> None:
        """Pull beta back within MAX_CENTRE_RADIUS of the origin, on the manifold. Called after each
        optimizer step: far out, float32 Riemannian updates of beta turn NaN."""
        self.beta.copy_(self.manifold.lift(self.manifold.clip_radius(self.beta[1:], MAX_CENTRE_RADIUS, dim=0), dim=0))

    @torch.no_grad()
    def _update_running(self, mu_s: torch.Tensor, spread: torch.Tensor) -> None:
        """Running mean: log_o of the weighted centroid of (exp_o(running), batch); running var:
        moving average of the spread."""
        self.num_batches_tracked.add_(1)
        m = self.momentum
        if self.warm_start:  # max(momentum, 1/n) as a tensor: no device-to-host copy per step
            m = (1.0 / self.num_batches_tracked.to(spread.dtype)).clamp_min(self.momentum)
        running = self.manifold.expmap0_point(self.running_mean[1:], dim=0)
        pair = torch.stack([(1 - m) * running, m * self.manifold.lift(mu_s, dim=0)]) * 2  # weights (1 - m, m)
        self.running_mean[1:] = self.manifold.logmap0_space(self.manifold.centroid(pair, (0,))[1:])
        self.running_var.mul_(1 - m).add_(m * spread)


class LorentzReLU(_SpaceLayer):
    """ReLU on the space part, time recomputed."""

    def __init__(self, manifold: Lorentz) -> None:
        super().__init__()
        self.manifold = manifold

    def space(self, s: torch.Tensor) -> torch.Tensor:
        return F.relu(s)


def lorentz_residual(x: torch.Tensor, y: torch.Tensor, manifold: Lorentz) -> torch.Tensor:
    """Residual sum: space parts added, time recomputed."""
    return manifold.lift(_space(x) + _space(y))


def lorentz_flatten(x: torch.Tensor, manifold: Lorentz) -> torch.Tensor:
    """Lorentz direct concatenation of the L points of (B, 1 + C, L): (B, 1 + C L)."""
    return manifold.lift(_space(x).flatten(1))


def lorentz_mean(x: torch.Tensor, manifold: Lorentz) -> torch.Tensor:
    """Lorentz centroid of the L points of (B, 1 + C, L): (B, 1 + C)."""
    return manifold.centroid(x, (2,))


class LorentzMLR(nn.Module):  # maps points to logits, so it has no ``space``
    """Lorentz multinomial logistic regression (Bdeir et al. 2024): signed scaled distance to the
    hyperplane of class c, with a_c in R and z_c in R^n and sqrt(K) = 1/sqrt(k):

        alpha = cosh(sqrt(K) a) <z, x_s> - sinh(sqrt(K) a) |z| x_0
        logit = |z| / sqrt(K) * asinh(sqrt(K) alpha / |z|)
    """

    def __init__(self, in_features: int, num_classes: int, manifold: Lorentz) -> None:
        super().__init__()
        self.manifold = manifold
        self.z = nn.Parameter(torch.empty(num_classes, in_features).uniform_(-1, 1) / math.sqrt(in_features))
        self.a = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sqrt_curv = 1.0 / torch.sqrt(self.manifold.kk)
        s = _space(x)
        t = self.manifold.time(s)
        znorm = self.z.norm(dim=1).clamp_min(1e-8)
        alpha = torch.cosh(sqrt_curv * self.a) * (s @ self.z.T) - torch.sinh(sqrt_curv * self.a) * znorm * t
        return znorm / sqrt_curv * torch.asinh(sqrt_curv * alpha / znorm)


class LorentzEmbedding(nn.Module):
    """A token table on the hyperboloid. Row v is the point over its learned space part e_v,

        x_v = (sqrt(k + |e_v|^2), e_v),

    so every row lies on the manifold whatever the optimizer does to ``space``; the ``padding_idx``
    row is the origin (space part 0, no gradient). ``forward(idx [...]) -> [..., 1 + dim]``, time first
    along the last axis. Space parts start as N(0, init_std^2), near the origin where the hyperboloid
    is almost flat."""

    def __init__(self, num_embeddings: int, dim: int, manifold: Lorentz, padding_idx: int | None = None,
                 init_std: float = 0.1) -> None:  # fmt: skip
        super().__init__()
        self.manifold, self.padding_idx = manifold, padding_idx
        self.space = nn.Parameter(torch.randn(num_embeddings, dim) * init_std)
        if padding_idx is not None:
            with torch.no_grad():
                self.space[padding_idx].zero_()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.manifold.lift(F.embedding(idx, self.space, self.padding_idx), dim=-1)


class LorentzDistanceLogits(nn.Module):  # maps points to logits, so it has no ``space``
    """Logits as negative geodesic distances to one learned point p_c per class (space parts learned as
    in :class:`LorentzEmbedding`), with geoopt's distance on <x,x>_L = -k (the manifold's
    ``gram_distances``, :func:`~biostrata.geometry.distances.lorentz_gram_distances`):

        d(x, p) = sqrt(k) arccosh(-<x, p>_L / k),    logit_c(x) = -d(x, p_c) / tau + b_c

    ``forward(x [..., 1 + dim]) -> [..., num_classes]``, time first along the last axis; ``tau`` > 0
    is a fixed temperature, kept in a buffer so that a saved state dict carries it."""

    def __init__(self, dim: int, num_classes: int, manifold: Lorentz, tau: float = 1.0, init_std: float = 0.1) -> None:
        super().__init__()
        if not tau > 0:
            raise ParameterError("tau", f"tau={tau}: the temperature must be > 0")
        self.manifold = manifold
        self.register_buffer("tau", torch.tensor(float(tau)))
        self.prototypes = LorentzEmbedding(num_classes, dim, manifold, init_std=init_std)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.manifold.lift(self.prototypes.space, dim=-1)  # [C, 1 + dim]
        return -self.manifold.gram_distances(x, p) / self.tau + self.bias


class LorentzTangentEmbedding(LorentzEmbedding):
    """A :class:`LorentzEmbedding` read by a Euclidean body: ``forward(idx [...]) -> [..., dim]`` gives
    the space part of the tangent vector at the origin o = (sqrt(k), 0) of each row's point x_v,

        log_o(x_v) = sqrt(k) arccosh(x_0 / sqrt(k)) x_s / |x_s| = sqrt(k) asinh(|e_v| / sqrt(k)) e_v / |e_v|

    (its time part is 0), and ``points(idx)`` the points themselves. Rows marked in the (non-persistent)
    bool buffer ``frozen`` get no gradient (the lookup reads them through ``detach()``), like
    :class:`~biostrata.models.domain_lm.RowFrozenEmbedding`; ``weight`` is the table of tangent
    vectors ``[V, dim]``, computed (read it; write rows with :meth:`write_rows_`)."""

    def __init__(self, num_embeddings: int, dim: int, manifold: Lorentz, padding_idx: int | None = None,
                 init_std: float = 0.1) -> None:  # fmt: skip
        super().__init__(num_embeddings, dim, manifold, padding_idx, init_std)
        self.register_buffer("frozen", torch.zeros(num_embeddings, dtype=torch.bool), persistent=False)

    def rows(self) -> torch.Tensor:
        """The space parts e_v ``[V, dim]``, frozen rows detached."""
        if self.frozen.any():
            return torch.where(self.frozen.unsqueeze(1), self.space.detach(), self.space)
        return self.space

    def points(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Points ``[..., 1 + dim]`` (time first) of the rows ``idx``; all ``[V, 1 + dim]`` if None."""
        space = self.rows() if idx is None else F.embedding(idx, self.rows(), self.padding_idx)
        return self.manifold.lift(space, dim=-1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.manifold.logmap0_space(F.embedding(idx, self.rows(), self.padding_idx), dim=-1)

    @property
    def weight(self) -> torch.Tensor:
        return self.manifold.logmap0_space(self.rows(), dim=-1)

    @torch.no_grad()
    def write_rows_(self, rows: torch.Tensor, vectors: torch.Tensor) -> None:
        """Place rows ``rows`` at exp_o(v) for tangent vectors ``vectors [n, dim]`` (space parts
        e = sqrt(k) sinh(|v| / sqrt(k)) v / |v|, computed in float64), so that the lookup gives back v.
        Refuses vectors whose points the table's dtype cannot hold (|e|^2 overflows)."""
        e = self.manifold.expmap0_space(vectors.to(self.space.device, torch.float64), dim=-1)
        cast = e.to(self.space.dtype)
        if not torch.isfinite(self.manifold.lift(cast, dim=-1)).all():
            radius = float((vectors.double().norm(dim=-1) / self.manifold.kk.double().sqrt()).max())
            raise InputError(
                f"vectors: a row lies at radius {radius:.4g} (|v| / sqrt(k)), too far out for a {self.space.dtype} "
                "hyperboloid point; scale the vectors down or use a smaller curvature"
            )
        self.space[rows] = cast


class LorentzDistanceHead(nn.Module):
    """Logits of Euclidean states h ``[..., in_features]`` by geodesic distance on the hyperboloid:

        u = W h + b                               (Euclidean linear map, in_features -> dim)
        u <- u min(1, R sqrt(k) / |u|)            (radius clip, R = ``max_radius``, see HEAD_MAX_RADIUS)
        y = exp_o(u) = (sqrt(k) cosh(|u| / sqrt(k)), sqrt(k) sinh(|u| / sqrt(k)) u / |u|)
        logit_c = -d(y, p_c) / tau + b_c          (:class:`LorentzDistanceLogits`)

    Since d(exp_o(u), o) = |u|, clipping u at R sqrt(k) is clipping y at radius R (in units of
    sqrt(k)); doing it before exp_o keeps sinh from overflowing. W starts as N(0, sigma^2) with
    sigma = init_radius sqrt(k) / sqrt(dim in_features) and b = 0, so a LayerNorm output (|h| ~
    sqrt(in_features)) starts at radius ~ ``init_radius`` (see ``__init__``); the prototypes p_c start
    with |p_s| ~ sqrt(k), at radius asinh(1) ~ 0.88. ``points(h)`` gives y ``[..., 1 + dim]``.
    """

    def __init__(self, in_features: int, num_classes: int, manifold: Lorentz, dim: int | None = None,
                 tau: float = 1.0, init_radius: float = 0.5, max_radius: float = HEAD_MAX_RADIUS) -> None:  # fmt: skip
        super().__init__()
        dim = in_features if dim is None else dim
        self.manifold, self.max_radius = manifold, max_radius
        # Small start (default nn.Linear would put a LayerNorm output at radius ~ sqrt(dim / 3), 4.6 at
        # width 64): near the origin exp_o is almost the identity and distances almost Euclidean, so the
        # head starts as a distance-to-prototype classifier with logits of order 1 (loss ~ log V) and
        # gradients that neither grow like sinh nor vanish at the radius clip.
        self.linear = nn.Linear(in_features, dim)
        with torch.no_grad():
            std = init_radius * float(manifold.kk.detach().sqrt()) / math.sqrt(dim * in_features)
            self.linear.weight.normal_(0.0, std)
            self.linear.bias.zero_()
        self.logits = LorentzDistanceLogits(
            dim, num_classes, manifold, tau, init_std=float(manifold.kk.detach().sqrt()) / math.sqrt(dim)
        )

    def points(self, h: torch.Tensor) -> torch.Tensor:
        # clip: see HEAD_MAX_RADIUS (far out, float32 distances are noise)
        u = clip_norm(self.linear(h), self.max_radius * torch.sqrt(self.manifold.kk), dim=-1)
        return self.manifold.expmap0_point(u, dim=-1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.logits(self.points(h))


# the old name works, with a warning, for one release
__getattr__ = moved(
    __name__,
    {"clip_radius": "biostrata.geometry.lorentz"},
    " (or the manifold's method manifold.clip_radius(space, radius))",
)
