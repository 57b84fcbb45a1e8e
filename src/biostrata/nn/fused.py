"""The full-size stages of the Lorentz batch norm and conv with hand-written backward passes.

Autograd records a dozen elementwise passes over the (B, C, L) activations for the two boosts and
the rescaling of the batch norm, and as many again backwards. Every one of them is either a
reduction over channels to one scalar per position, or a linear combination of a few
(B, C, L) tensors and channel vectors with per-position scalar weights. Here those passes are
written out by hand, forwards and backwards, and so is the per-position scalar algebra between
them (square roots, asinh, sinh, the clamps), whose autograd graph cost as much as the
full-size passes. The results equal the plain autograd path (``fused=False``) to float32
rounding; tests check both against each other and against ``torch.autograd.gradcheck``.

The public functions take the manifold (:class:`biostrata.geometry.lorentz.Lorentz`) and read its
clamped ``kk`` once; the private kernels under them take that ``k`` (the hyperboloid's
<x,x>_L = -k, k = 1/K, as inside :mod:`biostrata.geometry`) as a tensor, so that its gradient (a
learned curvature's) is written out too.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from biostrata.geometry.lorentz import Lorentz


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
    args = [
        a.float() if isinstance(a, torch.Tensor) and a.dtype in (torch.float16, torch.bfloat16) else a for a in args
    ]
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
    (B, O, L) temporary. y must be a fresh intermediate nothing else needs (a convolution's
    output): it is overwritten (under mixed precision a float32 copy is, and y is left alone)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, w_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w_t, t)
        ctx.mark_dirty(y)
        return y.addcmul_(w_t, t)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        g = g.contiguous()  # see BoostRescale.backward
        w_t, t = ctx.saved_tensors
        d_w = torch.bmm(g, t.transpose(1, 2)).sum(0)  # (O, 1)
        d_t = _dot(w_t.T, g)  # (B, 1, L)
        return g, d_w, d_t


def add_time_term(y: torch.Tensor, w_t: torch.Tensor, t: torch.Tensor, fused: bool = True) -> torch.Tensor:
    return _apply(AddTimeTerm, y, w_t, t) if fused else torch.addcmul(y, w_t, t)


def _boost_coefficient(ss: torch.Tensor, p: torch.Tensor, mu_s: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """a with B_{mu->o}(x)_s = x_s + a mu_s: a = (mu_s . x_s) / (sqrt(k) (mu_0 + sqrt(k))) - x_0 / sqrt(k),
    from ss = |x_s|^2 and p = mu_s . x_s."""
    sk = torch.sqrt(k)
    mu_0 = torch.sqrt(k + (mu_s * mu_s).sum())
    return p / (sk * (mu_0 + sk)) - torch.sqrt(k + ss) / sk


def _nested_centroid(m_s: torch.Tensor, m_0: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Space part of centroid_b(centroid_l(x_bl)) from each sequence's coordinate means over its
    positions, m_s (B, C) and m_0 (B, 1); centroid(x) = sqrt(k) m / sqrt(|<m, m>_L|)."""
    sk = torch.sqrt(k)
    # floor: |<m, m>_L| > 0 for a mean of points on the hyperboloid; keeps the root's gradient finite
    c = sk / torch.sqrt((m_0 * m_0 - (m_s * m_s).sum(1, keepdim=True)).clamp_min(1e-8))
    u_s, u_0 = (m_s * c).mean(0), (m_0 * c).mean()
    return u_s * (sk / torch.sqrt((u_0 * u_0 - (u_s * u_s).sum()).clamp_min(1e-8)))


def _boost_coefficient_backward(d_a, ss, p, mu_s, k):
    """Gradients of ``_boost_coefficient`` (d_ss, d_p, d_mu_s, d_k) given d_a, written out."""
    sk = torch.sqrt(k)
    mu_0 = torch.sqrt(k + (mu_s * mu_s).sum())
    e = sk * (mu_0 + sk)
    t = torch.sqrt(k + ss)
    d_p = d_a / e
    d_ss = d_a / (-2 * sk * t)  # a = ... - t / sk, t = sqrt(k + ss)
    d_e = -(d_a * p).sum() / (e * e)
    d_sk = (d_a * t).sum() / k + d_e * (mu_0 + 2 * sk)
    d_mu0 = d_e * sk
    d_k = d_ss.sum() + d_mu0 / (2 * mu_0) + d_sk / (2 * sk)  # dt/dk = dt/dss
    return d_ss, d_p, d_mu0 * mu_s / mu_0, d_k


def _rescale(yy, q, beta_s, k, gamma, spread, eps, limit) -> dict[str, torch.Tensor]:
    """f, g with out_s = f y_s + g beta_s = B_{o->beta}(exp_o(log_o(y) gamma / (spread + eps)))_s,
    from yy = |y_s|^2 and q = beta_s . y_s; ``spread`` None: the batch's, sqrt(k) mean(rho).
    Returns f, g, spread and the intermediates of the backward pass, by name."""
    sk = torch.sqrt(k)
    n = torch.sqrt(yy.clamp_min(1e-12))  # floor: 0/0 at y = 0 (a point at the centroid)
    rho = torch.asinh(n / sk)  # d(x, mu) / sqrt(k)
    if spread is None:
        spread = sk * rho.mean()  # mean_i d(x_i, mu)
    c = gamma / (spread + eps)
    r_raw = c * rho
    # clip: |r| <= limit, with beta's radius clipped too, bounds the output radius (see nn.lorentz.MAX_RADIUS)
    r = r_raw.clamp(-limit, limit)
    sh, ch = torch.sinh(r), torch.cosh(r)
    f = sh * sk / n
    beta_0 = torch.sqrt(k + (beta_s * beta_s).sum())
    d = sk * (beta_0 + sk)
    g = f * q / d + ch  # z_0 / sqrt(k) = cosh(r)
    return dict(f=f, g=g, spread=spread, n=n, rho=rho, r_raw=r_raw, sh=sh, ch=ch, c=c, beta_0=beta_0, d=d)


def _rescale_backward(d_f, d_g, v, yy, q, beta_s, k, gamma, batch_spread: bool, limit: float, eps: float):
    """Gradients of ``_rescale``'s f and g (d_yy, d_q, d_beta_s, d_k, d_gamma, d_spread) given
    d_f, d_g, written out; ``v`` holds the forward's intermediates."""
    sk = torch.sqrt(k)
    n, rho, sh, ch, f, d, beta_0, c, spread = (
        v[x] for x in ("n", "rho", "sh", "ch", "f", "d", "beta_0", "c", "spread")
    )
    df = d_f + d_g * q / d
    d_q = d_g * f / d
    d_d = -(d_g * f * q).sum() / (d * d)
    inside = (v["r_raw"] >= -limit) & (v["r_raw"] <= limit)  # the clamp passes gradients there only
    d_r = torch.where(inside, df * ch * sk / n + d_g * sh, 0.0)
    d_n = -df * f / n
    d_sk = (df * sh / n).sum()
    d_c = (d_r * rho).sum()
    d_rho = d_r * c
    d_gamma = d_c / (spread + eps)
    d_spread = -d_c * gamma / (spread + eps) ** 2
    if batch_spread:  # spread = sqrt(k) mean(rho)
        d_rho = d_rho + d_spread * sk / rho.numel()
        d_sk = d_sk + d_spread * rho.mean()
        d_spread = None
    root = torch.sqrt(k + n * n)  # d asinh(n / sk) / dn = 1 / sqrt(k + n^2)
    d_n = d_n + d_rho / root
    d_sk = d_sk - (d_rho * n / root).sum() / sk
    d_yy = torch.where(yy >= 1e-12, d_n / (2 * n), 0.0)
    d_sk = d_sk + d_d * (beta_0 + 2 * sk)
    d_beta0 = d_d * sk
    d_k = d_beta0 / (2 * beta_0) + d_sk / (2 * sk)
    return d_yy, d_q, d_beta0 * beta_s / beta_0, d_k, d_gamma, d_spread


class _BoostRescale(torch.autograd.Function):
    """out_s = B_{o->beta}(rescale(B_{mu->o}(x)))_s for space parts s (B, C, L), see
    ``boost_rescale``. Saves s and per-position scalars only."""

    @staticmethod
    def forward(ctx, s, mu_s, beta_s, k, gamma, spread, eps, limit):
        ss = (s * s).sum(1, keepdim=True)
        batch_mu = mu_s is None
        if batch_mu:
            n = s.shape[2]
            mu_s = _nested_centroid(s.sum(2) / n, torch.sqrt(k + ss).sum(2) / n, k)
        p = _dot(mu_s.unsqueeze(0), s)
        a = _boost_coefficient(ss, p, mu_s, k)
        y = torch.addcmul(s, mu_s.view(1, -1, 1), a)
        yy = (y * y).sum(1, keepdim=True)
        q = _dot(beta_s.unsqueeze(0), y)
        v = _rescale(yy, q, beta_s, k, gamma, spread, eps, limit)
        out = y.mul_(v["f"]).addcmul_(beta_s.view(1, -1, 1), v["g"])
        ctx.save_for_backward(s, ss, p, a, yy, q, mu_s, beta_s, k, gamma)
        ctx.v, ctx.eps, ctx.limit, ctx.batch_spread, ctx.batch_mu = v, eps, limit, spread is None, batch_mu
        # outputs of their own: ctx keeps v and the input mu_s, and an output kept on ctx is a cycle
        spread_out, mu_out = v["spread"].detach().clone(), mu_s.detach().clone()
        clipped = _clipped(v["r_raw"], limit)
        ctx.mark_non_differentiable(spread_out, mu_out, clipped)
        return out, spread_out, mu_out, clipped

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _grad_spread, _grad_mu, _grad_clipped):
        # contiguous: a broadcast gradient (of a sum, say) has zero strides, and the batched
        # products below then took a slow path (4x the whole layer's time)
        grad = grad.contiguous()
        s, ss, p, a, yy, q, mu_s, beta_s, k, gamma = ctx.saved_tensors
        v = ctx.v
        f, g = v["f"], v["g"]
        mb = torch.stack([mu_s, beta_s])
        g_mb = _dot(mb, grad)  # (B, 2, L): mu . G, beta . G
        g_mu, g_beta = g_mb[:, :1], g_mb[:, 1:]
        g_y = (grad * s).sum(1, keepdim=True) + a * g_mu  # G . y, y = s + a mu
        d_yy, d_q, d_beta_s, d_k2, d_gamma, d_spread = _rescale_backward(
            g_y, g_beta, v, yy, q, beta_s, k, gamma, ctx.batch_spread, ctx.limit, ctx.eps
        )
        mu_mu, beta_mu = (mu_s * mu_s).sum(), (beta_s * mu_s).sum()
        # a enters out = f (s + a mu), yy = |s + a mu|^2 and q = beta . (s + a mu)
        d_a = f * g_mu + d_yy * 2 * (p + a * mu_mu) + d_q * beta_mu
        d_ss, d_p, d_mu_s, d_k1 = _boost_coefficient_backward(d_a, ss, p, mu_s, k)
        c_s = 2 * d_yy  # weight of s in ds, and of y's through y = s + a mu
        c_mb = torch.cat([c_s * a + d_p, d_q], 1)  # weights of mu and beta in ds
        # channel vectors: sums over positions
        from_g = _sum_positions(torch.cat([f * a, g], 1), grad)  # (2, C)
        from_s = _sum_positions(torch.cat([d_p + c_s * a, d_q], 1), s)
        d_qa = (d_q * a).sum()
        d_mu_s = d_mu_s + from_g[0] + from_s[0] + mu_s * (c_s * a * a).sum() + beta_s * d_qa
        d_beta_s = d_beta_s + from_g[1] + from_s[1] + mu_s * d_qa
        d_k = d_k1 + d_k2
        vectors, rows = mb.T.expand(s.shape[0], -1, -1), c_mb
        if ctx.batch_mu:  # mu = _nested_centroid(mean_l s, mean_l sqrt(k + ss)): back into s and ss
            n = s.shape[2]
            t = torch.sqrt(k + ss)
            with torch.enable_grad():  # (B, C)-sized, so autograd's cost is small here
                leaves = [x.detach().requires_grad_() for x in (s.sum(2) / n, t.sum(2) / n, k)]
                d_ms, d_m0, d_k3 = torch.autograd.grad(_nested_centroid(*leaves), leaves, d_mu_s)
            d_ss = d_ss + d_m0.unsqueeze(2) / (2 * n * t)
            d_k = d_k + d_k3 + (d_m0.unsqueeze(2) / (2 * n * t)).sum()
            # the mean over positions spreads d_ms / n over every position of its sequence
            vectors = torch.cat([vectors, (d_ms / n).unsqueeze(2)], 2)
            rows = torch.cat([rows, torch.ones_like(a)], 1)
            d_mu_s = None
        # ds = f G + 2 (d_yy + d_ss) s + (c_s a + d_p) mu + d_q beta [+ d_ms / n]
        d_s = torch.bmm(vectors, rows).addcmul_(f, grad).addcmul_(c_s + 2 * d_ss, s)
        return d_s, d_mu_s, d_beta_s, d_k, d_gamma, d_spread, None, None


def _clipped(r_raw: torch.Tensor, limit: float) -> torch.Tensor:
    """How many positions the radius clip moved (|r| > limit), as a tensor: no device-to-host copy."""
    return (r_raw.detach().abs() > limit).sum()


def boost_rescale(
    s: torch.Tensor,
    mu_s: torch.Tensor | None,
    beta_s: torch.Tensor,
    manifold: Lorentz,
    gamma: torch.Tensor,
    spread: torch.Tensor | None,
    eps: float,
    limit: float,
    fused: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch norm's map of space parts s (B, C, L) on ``manifold`` (k = 1/K its clamped ``kk``):

        mu  = _nested_centroid(mean_l x_bl)      (when ``mu_s`` is None: train mode)
        y_s = x_s + a mu_s                      (B_{mu->o}: boost taking mu to the origin)
        rho = asinh(|y_s| / sqrt(k)),  r = clamp(gamma rho / (spread + eps), +-limit)
        z_s = y_s sinh(r) sqrt(k) / |y_s|,  z_0 = sqrt(k) cosh(r)   (log_o, rescale, exp_o)
        out_s = z_s + beta_s ((beta_s . z_s) / (sqrt(k) (beta_0 + sqrt(k))) + z_0 / sqrt(k))   (B_{o->beta})

    ``spread`` None: the batch's mean distance to mu, sqrt(k) mean(rho). Returns (out_s, spread, mu_s,
    clipped), ``clipped`` the number of positions whose r the clip moved (a 0-d integer tensor).
    ``fused``: hand-written backward for the full-size passes; False: plain autograd, same formula.
    """
    k = manifold.kk
    if fused:
        return _apply(_BoostRescale, s, mu_s, beta_s, k, gamma, spread, eps, limit)
    ss = (s * s).sum(1, keepdim=True)
    if mu_s is None:
        mu_s = _nested_centroid(s.mean(2), torch.sqrt(k + ss).mean(2), k)
    p = _dot(mu_s.unsqueeze(0), s)
    y = torch.addcmul(s, mu_s.view(1, -1, 1), _boost_coefficient(ss, p, mu_s, k))
    q = _dot(beta_s.unsqueeze(0), y)
    v = _rescale((y * y).sum(1, keepdim=True), q, beta_s, k, gamma, spread, eps, limit)
    out = torch.addcmul(v["f"] * y, beta_s.view(1, -1, 1), v["g"])
    return out, v["spread"], mu_s, _clipped(v["r_raw"], limit)
