"""The full-size stages of the Lorentz batch norm and conv with hand-written backward passes.

Autograd records a dozen elementwise passes over the (B, C, L) activations for the two boosts and
the rescaling of the batch norm, and as many again backwards. Every one of them is either a
reduction over channels to one scalar per position, or a linear combination of a few
(B, C, L) tensors and channel vectors with per-position scalar weights. Here those passes are
written out by hand, forwards and backwards; the per-position scalar algebra between them
(square roots, asinh, sinh, the clamps) stays in autograd, re-run on the (B, 1, L) scalars in
the backward pass. The results equal the plain autograd path (``fused=False``) to float32
rounding; tests check both against each other and against ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


# Both as batched matrix products on the (B, C, L) layout as it is: torch.matmul and einsum
# copied the activations into (B, L, C) first, which cost more than the products.
def _dot(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(W, C) . (B, C, L) over channels -> (B, W, L)."""
    return torch.bmm(u.expand(x.shape[0], -1, -1), x)


def _sum_positions(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum over (b, l) of w[b, i, l] x[b, c, l] -> (W, C)."""
    return torch.bmm(w, x.transpose(1, 2)).sum(0)


def _apply(fn: type[torch.autograd.Function], *args):
    """``fn.apply`` in float32 with autocast off: under mixed precision the inputs arrive in bf16 or
    fp16 (a convolution's output), and the hyperbolic maths runs in float32 (see DESIGN.md)."""
    args = [a.float() if isinstance(a, torch.Tensor) and a.dtype in (torch.float16, torch.bfloat16) else a for a in args]
    device = next(a.device.type for a in args if isinstance(a, torch.Tensor))
    with torch.autocast(device, enabled=False):
        return fn.apply(*args)


class SquaredNorm(torch.autograd.Function):
    """|x_s|^2 over channels, (B, C, L) -> (B, 1, L); backward 2 x g in one pass."""

    @staticmethod
    def forward(ctx, s: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(s)
        return (s * s).sum(1, keepdim=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (s,) = ctx.saved_tensors
        return s * (2 * g)


def squared_norm(s: torch.Tensor, fused: bool = True) -> torch.Tensor:
    return _apply(SquaredNorm, s) if fused else (s * s).sum(1, keepdim=True)


class AddTimeTerm(torch.autograd.Function):
    """y + w_t t in place, for y (B, O, L), w_t (O, 1), t (B, 1, L): the Lorentz conv's rank-one
    time term added to the convolution of the space parts. Backward: two batched products, no
    (B, O, L) temporary."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, w_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w_t, t)
        ctx.mark_dirty(y)
        return y.addcmul_(w_t, t)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        w_t, t = ctx.saved_tensors
        d_w = torch.bmm(g, t.transpose(1, 2)).sum(0)  # (O, 1)
        d_t = _dot(w_t.T, g)  # (B, 1, L)
        return g, d_w, d_t


def add_time_term(y: torch.Tensor, w_t: torch.Tensor, t: torch.Tensor, fused: bool = True) -> torch.Tensor:
    return _apply(AddTimeTerm, y, w_t, t) if fused else torch.addcmul(y, w_t, t)


def boost_coefficient(ss: torch.Tensor, p: torch.Tensor, mu_s: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """a with B_{mu->o}(x)_s = x_s + a mu_s: a = (mu_s . x_s) / (sqrt(k) (mu_0 + sqrt(k))) - x_0 / sqrt(k),
    from ss = |x_s|^2 and p = mu_s . x_s."""
    sk = torch.sqrt(k)
    mu_0 = torch.sqrt(k + (mu_s * mu_s).sum())
    return p / (sk * (mu_0 + sk)) - torch.sqrt(k + ss) / sk


def rescale_coefficients(
    yy: torch.Tensor,
    q: torch.Tensor,
    beta_s: torch.Tensor,
    k: torch.Tensor,
    gamma: torch.Tensor,
    spread: torch.Tensor | None,
    eps: float,
    limit: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f, g with out_s = f y_s + g beta_s = B_{o->beta}(exp_o(log_o(y) gamma / (spread + eps)))_s,
    from yy = |y_s|^2 and q = beta_s . y_s; ``spread`` None: the batch's, sqrt(k) mean(rho).
    Returns (f, g, spread)."""
    sk = torch.sqrt(k)
    y_norm = torch.sqrt(yy.clamp_min(1e-12))  # floor: 0/0 at y = 0 (a point at the centroid)
    rho = torch.asinh(y_norm / sk)  # d(x, mu) / sqrt(k)
    if spread is None:
        spread = sk * rho.mean()  # mean_i d(x_i, mu)
    # clip: |r| + radius(beta) <= MAX_RADIUS bounds the output radius (see nn.lorentz.MAX_RADIUS)
    r = (gamma / (spread + eps) * rho).clamp(-limit, limit)
    f = torch.sinh(r) * sk / y_norm
    beta_0 = torch.sqrt(k + (beta_s * beta_s).sum())
    g = f * q / (sk * (beta_0 + sk)) + torch.cosh(r)  # z_0 / sqrt(k) = cosh(r)
    return f, g, spread


class BoostRescale(torch.autograd.Function):
    """out_s = B_{o->beta}(rescale(B_{mu->o}(x)))_s for space parts s (B, C, L), see
    ``boost_rescale``. Saves s and per-position scalars only."""

    @staticmethod
    def forward(ctx, s, ss, mu_s, beta_s, k, gamma, spread, eps, limit):
        p = _dot(mu_s.unsqueeze(0), s)
        a = boost_coefficient(ss, p, mu_s, k)
        y = torch.addcmul(s, mu_s.view(1, -1, 1), a)
        yy = (y * y).sum(1, keepdim=True)
        q = _dot(beta_s.unsqueeze(0), y)
        f, g, spread_out = rescale_coefficients(yy, q, beta_s, k, gamma, spread, eps, limit)
        out = torch.addcmul(y.mul_(f), beta_s.view(1, -1, 1), g)
        ctx.save_for_backward(s, ss, p, a, yy, q, f, g, mu_s, beta_s, k, gamma, spread)
        ctx.eps, ctx.limit, ctx.batch_spread = eps, limit, spread is None
        ctx.mark_non_differentiable(spread_out)
        return out, spread_out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _grad_spread):
        s, ss, p, a, yy, q, f, g, mu_s, beta_s, k, gamma, spread = ctx.saved_tensors
        mb = torch.stack([mu_s, beta_s])
        g_mb = _dot(mb, grad)  # (B, 2, L): mu . G, beta . G
        g_mu, g_beta = g_mb[:, :1], g_mb[:, 1:]
        g_y = (grad * s).sum(1, keepdim=True) + a * g_mu  # G . y, y = s + a mu
        # per-position scalar algebra, re-run under autograd
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in (yy, q, beta_s, k, gamma)]
            spread_leaf = None if ctx.batch_spread else spread.detach().requires_grad_()
            f2, g2, _ = rescale_coefficients(*leaves, spread_leaf, ctx.eps, ctx.limit)
            inputs = leaves + ([spread_leaf] if spread_leaf is not None else [])
            d_yy, d_q, d_beta_s, d_k2, d_gamma, *d_spread = torch.autograd.grad(
                (f2, g2), inputs, (g_y, g_beta), allow_unused=True
            )
        mu_mu, beta_mu = (mu_s * mu_s).sum(), (beta_s * mu_s).sum()
        # a enters out = f (s + a mu), yy = |s + a mu|^2 and q = beta . (s + a mu)
        d_a = f * g_mu + d_yy * 2 * (p + a * mu_mu) + d_q * beta_mu
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in (ss, p, mu_s, k)]
            d_ss, d_p, d_mu_s, d_k1 = torch.autograd.grad(boost_coefficient(*leaves), leaves, d_a)
        # ds = f G + 2 d_yy y + d_q beta + d_p mu, y = s + a mu
        c_s = 2 * d_yy
        c_mb = torch.cat([c_s * a + d_p, d_q], 1)  # weights of mu, beta
        d_s = torch.addcmul(torch.matmul(mb.T, c_mb), f, grad).addcmul_(c_s, s)
        # channel vectors: sums over positions
        from_g = _sum_positions(torch.cat([f * a, g], 1), grad)  # (2, C)
        from_s = _sum_positions(torch.cat([d_p + c_s * a, d_q], 1), s)
        d_mu_s = d_mu_s + from_g[0] + from_s[0] + mu_s * (c_s * a * a).sum() + beta_s * (d_q * a).sum()
        d_beta_s = d_beta_s + from_g[1] + from_s[1] + mu_s * (d_q * a).sum()
        d_k = d_k1 + (d_k2 if d_k2 is not None else 0)
        d_spread = d_spread[0] if d_spread else None
        return d_s, d_ss, d_mu_s, d_beta_s, d_k, d_gamma, d_spread, None, None


def boost_rescale(
    s: torch.Tensor,
    ss: torch.Tensor,
    mu_s: torch.Tensor,
    beta_s: torch.Tensor,
    k: torch.Tensor,
    gamma: torch.Tensor,
    spread: torch.Tensor | None,
    eps: float,
    limit: float,
    fused: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch norm's map of space parts s (B, C, L) with ss = |s|^2 (B, 1, L):

        y_s = x_s + a mu_s                      (B_{mu->o}: boost taking mu to the origin)
        rho = asinh(|y_s| / sqrt(k)),  r = clamp(gamma rho / (spread + eps), +-limit)
        z_s = y_s sinh(r) sqrt(k) / |y_s|,  z_0 = sqrt(k) cosh(r)   (log_o, rescale, exp_o)
        out_s = z_s + beta_s ((beta_s . z_s) / (sqrt(k) (beta_0 + sqrt(k))) + z_0 / sqrt(k))   (B_{o->beta})

    ``spread`` None: the batch's mean distance to mu, sqrt(k) mean(rho). Returns (out_s, spread).
    ``fused``: hand-written backward for the full-size passes; False: plain autograd, same formula.
    """
    if fused:
        return _apply(BoostRescale, s, ss, mu_s, beta_s, k, gamma, spread, eps, limit)
    p = _dot(mu_s.unsqueeze(0), s)
    y = torch.addcmul(s, mu_s.view(1, -1, 1), boost_coefficient(ss, p, mu_s, k))
    q = _dot(beta_s.unsqueeze(0), y)
    f, g, spread = rescale_coefficients((y * y).sum(1, keepdim=True), q, beta_s, k, gamma, spread, eps, limit)
    return torch.addcmul(f * y, beta_s.view(1, -1, 1), g), spread
