"""The full-size stages of the Lorentz batch norm and conv with hand-written backward passes.

Autograd records a dozen elementwise passes over the (B, C, L) activations for the two boosts and
the rescaling of the batch norm, and as many again backwards. Every one of them is either a
reduction over channels to one scalar per position, or a linear combination of a few
(B, C, L) tensors and channel vectors with per-position scalar weights. Here those passes are
written out by hand, forwards and backwards, and so is the per-position scalar algebra between
them (square roots, asinh, sinh, the clamps), whose autograd graph cost as much as the
full-size passes. The results equal the plain autograd path (``fused=False``) to float32
rounding; tests check both against each other and against ``torch.autograd.gradcheck``.

The batch norm runs on one of two implementations of one formula: on the CPU biostrata's C++ operators
(:mod:`biostrata.nn.native`, ``boost.cpp``: ``_native_forward`` and ``_native_backward``), which do each
full-size pass and the algebra around it, per-position and channel-level (float64), in one call; elsewhere,
or where they cannot be built, torch operations (``_forward`` and ``_backward``, with the full-size passes
of :mod:`biostrata.nn.passes`), where each formula is derived.

The public functions take the manifold (:class:`biostrata.geometry.lorentz.Lorentz`) and read its
clamped ``kk`` once; the private kernels under them take that ``k`` (the hyperboloid's
<x,x>_L = -k, k = 1/K, as inside :mod:`biostrata.geometry`) as a tensor, so that its gradient (a
learned curvature's) is written out too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from biostrata.geometry.lorentz import Lorentz
from biostrata.nn import native, passes
from biostrata.nn.passes import _dot


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


class _NativeTimeTerm(torch.autograd.Function):
    """The Lorentz convolution's time term in biostrata's C++ operators (``conv.cpp``): y + w_t t(s) in place,
    t = sqrt(k + window sum of |s|^2), forwards in one pass over s and one over y, backwards in one over G and
    one over s (``time_term`` derives nothing new: the torch path is ``squared_norm``, avg_pool1d, sqrt and
    ``add_time_term``)."""

    @staticmethod
    def forward(ctx, y, w_t, s, k, kernel_size: int, padding: int):
        t = native.kernels().time_term(y, w_t, s, k, kernel_size, padding)
        ctx.mark_dirty(y)
        ctx.save_for_backward(w_t, s, t)
        ctx.shape, ctx.like = (kernel_size, padding), [(x.dtype, x.shape) for x in (w_t, k)]
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        w_t, s, t = ctx.saved_tensors
        d_s, d_w, d_k = native.kernels().time_term_backward(g, w_t, s, t, *ctx.shape)
        (w_dtype, w_shape), (k_dtype, k_shape) = ctx.like
        return g, d_w.to(w_dtype).reshape(w_shape), d_s, d_k.to(k_dtype).reshape(k_shape), None, None


def conv_time_term(y: torch.Tensor, w_t: torch.Tensor, s: torch.Tensor, manifold: Lorentz, kernel_size: int,
                   padding: int, fused: bool = True, native_kernels: bool | None = None) -> torch.Tensor:  # fmt: skip
    """y + w_t t for the convolution's output y (B, O, L') of the space parts s (B, C, L) on ``manifold`` (k = 1/K
    its clamped ``kk``), w_t (O, 1) and t the time coordinate of the Lorentz direct concatenation of each
    window's points (kernel size K, zero padding P, stride 1):

        t[b, l'] = sqrt(k + sum_{i < K} |s[b, :, l' - P + i]|^2)     (s = 0 outside the sequence)

    y must be a fresh intermediate nothing else needs (a convolution's output): it is overwritten. On the CPU
    in biostrata's C++ operators where they build (``native_kernels`` as for ``boost_rescale``), else in torch
    operations (``fused``: hand-written backward passes of the squared norm and the rank-one term; False:
    autograd)."""
    k = manifold.kk
    if fused:
        # float32, as ``_apply`` would make it (both paths' functions take it so): the kernels are chosen for the
        # input they compute on, as the batch norm's are
        s = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s
        if native.chosen(s, native_kernels):
            return _apply(_NativeTimeTerm, y, w_t, s, k, kernel_size, padding)
    window = F.avg_pool1d(squared_norm(s, fused), kernel_size, stride=1, padding=padding, count_include_pad=True)
    return add_time_term(y, w_t, torch.sqrt(k + window * kernel_size), fused)


def _boost_scalars(mu_s: torch.Tensor, beta_s: torch.Tensor, k: torch.Tensor) -> dict[str, torch.Tensor]:
    """The channel-level scalars of the two boosts, from mu_s and beta_s (C,):

        mb = (mu_s; beta_s) (2, C),  sk = sqrt(k),  mm = |mu_s|^2,  bm = beta_s . mu_s
        mu_0, beta_0 = sqrt(k + |mu_s|^2), sqrt(k + |beta_s|^2)        (their time coordinates)
        e, d = sk (mu_0 + sk), sk (beta_0 + sk)                         (the boosts' denominators)

    computed once per call, for the forward and the backward."""
    mb = torch.stack([mu_s, beta_s])
    gram = mb @ mb.T
    sk = torch.sqrt(k)
    time = torch.sqrt(torch.diagonal(gram) + k)
    den = sk * (time + sk)
    return dict(mb=mb, sk=sk, mm=gram[0, 0], bm=gram[0, 1], mu_0=time[0], beta_0=time[1], e=den[0], d=den[1])


def _boost_offset(xx: torch.Tensor, px: torch.Tensor, t: torch.Tensor, sc: dict[str, torch.Tensor]) -> torch.Tensor:
    """alpha with B_{mu->o}(x)_s = x_s + a mu_s = (x_s - mu_s) + alpha mu_s, alpha = a + 1, from the
    differences to the centroid: xx = |x_s - mu_s|^2, px = mu_s . (x_s - mu_s), the time coordinates
    t = x_0 and ``_boost_scalars``. With a = (mu_s . x_s) / e - x_0 / sqrt(k), |mu_s|^2 = (mu_0 - sqrt(k))
    (mu_0 + sqrt(k)) and x_0 - mu_0 = (|x_s|^2 - |mu_s|^2) / (x_0 + mu_0):

        alpha = px / e - (xx + 2 px) / (sqrt(k) (x_0 + mu_0))

    Every term is of the size of x - mu, so alpha, and |y_s|^2 = xx + alpha (2 px + alpha |mu_s|^2), keep
    their relative precision near the centroid, where a -> -1 and |x_s|^2 + a (2 mu_s . x_s + a |mu_s|^2)
    would lose all its digits to cancellation (in float32, |y_s| below ~3e-4 |mu_s|)."""
    return px / sc["e"] - torch.add(xx, px, alpha=2) / (sc["sk"] * (t + sc["mu_0"]))


def _nested_centroid(m_s: torch.Tensor, m_0: torch.Tensor, k: torch.Tensor) -> dict[str, torch.Tensor]:
    """Space part ``mu`` of centroid_b(centroid_l(x_bl)) from each sequence's coordinate means over its
    positions, m_s (B, C) and m_0 (B, 1); centroid(x) = sqrt(k) m / sqrt(|<m, m>_L|). With
    D_b = m_0b^2 - |m_sb|^2, c_b = sqrt(k / D_b), u = mean_b(c_b m_b), E = u_0^2 - |u_s|^2, h = sqrt(k / E):
    mu = h u_s. Returns mu and those intermediates, for ``_nested_centroid_backward``."""
    sk = torch.sqrt(k)
    # floors: |<m, m>_L| > 0 for a mean of points on the hyperboloid; keep the roots' gradients finite
    D = m_0 * m_0 - (m_s * m_s).sum(1, keepdim=True)
    c = sk / torch.sqrt(D.clamp_min(1e-8))
    u_s, u_0 = (m_s * c).mean(0), (m_0 * c).mean()
    E = u_0 * u_0 - (u_s * u_s).sum()
    h = sk / torch.sqrt(E.clamp_min(1e-8))
    return dict(mu=u_s * h, m_s=m_s, m_0=m_0, D=D, c=c, u_s=u_s, u_0=u_0, E=E, h=h)


def _nested_centroid_backward(d_mu: torch.Tensor, z: dict[str, torch.Tensor], k: torch.Tensor):
    """Gradients (d_m_s, d_m_0, d_k) of ``_nested_centroid`` given d_mu and its intermediates ``z``:

        d_E = -(d_mu . u_s) h / (2 E),   d_u_s = h d_mu - 2 d_E u_s,   d_u_0 = 2 d_E u_0
        d_c_b = (m_sb . d_u_s + m_0b d_u_0) / B,   d_D_b = -d_c_b c_b / (2 D_b)
        d_m_sb = c_b d_u_s / B - 2 d_D_b m_sb,     d_m_0b = c_b d_u_0 / B + 2 d_D_b m_0b
        d_k = (d_mu . mu + sum_b d_c_b c_b) / (2 k)      (h and the c_b are sqrt(k) times the rest)

    Where a floor acts (D or E below 1e-8) its gradient is 0, as the clamp's."""
    m_s, m_0, D, c, u_s, u_0, E, h = (z[x] for x in ("m_s", "m_0", "D", "c", "u_s", "u_0", "E", "h"))
    n = m_s.shape[0]
    d_h = (d_mu * u_s).sum()
    d_E2 = (d_h * h / E.clamp_min(1e-8)).neg_() * (E >= 1e-8)  # 2 d_E, with the forward's floor and its zero gradient
    d_us, d_u0 = torch.addcmul(d_mu * h, u_s, d_E2, value=-1), d_E2 * u_0
    d_c = torch.addcmul((m_s * d_us).sum(1, keepdim=True), m_0, d_u0).div_(n)
    d_D2 = (d_c * c / D.clamp_min(1e-8)).neg_() * (D >= 1e-8)  # 2 d_D, likewise
    d_ms = torch.addcmul(c * d_us / n, m_s, d_D2, value=-1)
    d_m0 = torch.addcmul(c * d_u0 / n, m_0, d_D2)
    return d_ms, d_m0, (d_h * h + (d_c * c).sum()) / (k + k)


def _rescale(yy, q, sc, k, gamma, spread, eps, limit) -> dict[str, torch.Tensor]:
    """f, g with out_s = f y_s + g beta_s = B_{o->beta}(exp_o(log_o(y) gamma / (spread + eps)))_s,
    from yy = |y_s|^2, q = beta_s . y_s and ``_boost_scalars``; ``spread`` None: the batch's,
    sqrt(k) mean(rho). With u = |y_s| / sqrt(k):

        rho = asinh(u),  c = gamma / (spread + eps),  r = clamp(c rho, +-limit)
        f = sinh(r) / u,  g = f q / d + cosh(r)

    Returns f, g, spread, the mask of positions the clip moved (``outside``) and the intermediates of
    the backward pass, by name."""
    # floor: 0/0 at y = 0 (a point at the centroid), where the fused path's |y|^2 = xx + alpha (2 px +
    # alpha |mu|^2) can also round to a little below 0
    u2 = yy.clamp_min(1e-12) / k
    u = torch.sqrt(u2)
    w = torch.sqrt(u2 + 1)  # cosh(rho)
    # asinh(u) = log1p(u + u^2 / (1 + sqrt(1 + u^2))): as accurate in float32 (1.6e-7 relative from 1e-8
    # to 1e3), and a quarter of torch.asinh's time, which is not vectorized on the CPU
    rho = torch.log1p(torch.addcdiv(u, u2, w + 1))  # d(x, mu) / sqrt(k)
    if spread is None:
        spread = sc["sk"] * rho.mean()  # mean_i d(x_i, mu)
    c = gamma / (spread + eps)
    r_raw = rho * c
    outside = r_raw.detach().abs() > limit
    # clip: |r| <= limit, with beta's radius clipped too, bounds the output radius (see nn.lorentz.MAX_RADIUS)
    r = r_raw.clamp(-limit, limit)
    sh, ch = torch.sinh(r), torch.cosh(r)
    f = sh / u
    g = torch.addcmul(ch, f, q / sc["d"])  # z_0 / sqrt(k) = cosh(r)
    return dict(f=f, g=g, spread=spread, outside=outside, u=u, w=w, rho=rho, sh=sh, ch=ch, c=c)


def _forward(s, mu_s, beta_s, k, gamma, spread, eps: float, limit: float):
    """The forward pass of ``_BoostRescale`` in torch operations: (out, the tensors the backward reads,
    ``_rescale``'s and ``_boost_scalars``' results, the centroid's intermediates or None, mu_s)."""
    centroid = t = None
    if mu_s is None:  # from each sequence's coordinate means; its intermediates are kept for the backward
        ss, m_s = passes.stats(s)
        t = torch.sqrt(ss + k)  # time coordinates x_0
        centroid = _nested_centroid(m_s, t.mean(2), k)
        mu_s = centroid["mu"]
    sc = _boost_scalars(mu_s, beta_s, k)
    mb = sc["mb"]
    x = s - mu_s.view(1, -1, 1)
    xx, pb = passes.dots(None, x, mb)  # |x|^2; (B, 2, L): mu . x, beta . x
    px = pb[:, :1]
    if t is None:  # x_0 = sqrt(k + |x + mu|^2) = sqrt(xx + 2 px + mu_0^2)
        t = torch.sqrt(torch.add(xx, px, alpha=2) + sc["mu_0"] * sc["mu_0"])
    alpha = _boost_offset(xx, px, t, sc)
    yy = torch.addcmul(xx, alpha, torch.addcmul(px + px, alpha, sc["mm"]))  # |x + alpha mu|^2
    q = torch.addcmul(pb[:, 1:], alpha, sc["bm"])  # beta . (x + alpha mu)
    v = _rescale(yy, q, sc, k, gamma, spread, eps, limit)
    f, g = v["f"], v["g"]
    out = passes.combine(None, None, x, f, mb.expand(s.shape[0], -1, -1), torch.cat([f * alpha, g], 1))
    return out, (x, t, xx, px, alpha, yy, q, k, gamma), v, sc, centroid, mu_s


def _position_grads(grad, saved, v, sc, eps: float, batch_spread: bool) -> dict:
    """The backward pass through the per-position algebra, in torch operations: from G to the gradients of
    the channel-level scalars and the per-position rows the passes over the activations need (see
    ``_backward``; the native operator grad_positions computes the same)."""
    x, t, xx, px, alpha, yy, q, k, gamma = saved
    u, w, rho, sh, ch, f, g, c = (v[n] for n in ("u", "w", "rho", "sh", "ch", "f", "g", "c"))
    sk, d, e, mu_0, beta_0 = (sc[n] for n in ("sk", "d", "e", "mu_0", "beta_0"))
    k2 = k + k
    gx, g_mb = passes.dots(grad, x, sc["mb"])  # G . x; (B, 2, L): mu . G, beta . G
    g_mu, g_beta = g_mb[:, :1], g_mb[:, 1:]
    d_f = torch.addcmul(gx, alpha, g_mu)  # out = f y + g beta: d_f = G . y
    # g = f q / d + cosh(r)
    df = torch.addcmul(d_f, g_beta, q / d)
    d_q = g_beta * (f / d)
    d_d = -(d_q * q).sum() / d
    # f = sinh(r) / u, r = clamp(c rho): the clamp passes gradients inside only
    d_r = torch.addcmul(g_beta * sh, df, ch / u).masked_fill_(v["outside"], 0)
    z = _spread_grads(d_d, (d_r * rho).sum(), v, sc, eps, batch_spread)
    d_rho = d_r * c + z.pop("kappa")
    # rho = asinh(u): drho/du = 1 / cosh(rho) = 1 / w; f = sinh(r) / u: explicit df/du = -f / u
    d_u = torch.addcdiv(d_rho / w, df * f, u, value=-1)
    # u = sqrt(max(yy, 1e-12) / k): du/dyy = 1 / (2 k u) above the floor, du/dk = -u / (2 k)
    d_yy = (d_u / (k2 * u)).masked_fill_(yy < 1e-12, 0)
    # yy = xx + alpha (2 px + alpha mm), q = beta . x + alpha bm, out = f (x + alpha mu) + g beta
    d_alpha = torch.addcmul(f * g_mu, d_q, sc["bm"]).addcmul_(d_yy, torch.addcmul(px, alpha, sc["mm"]), value=2)
    # alpha = px / e - (xx + 2 px) / h, h = sk (t + mu_0), e = sk (mu_0 + sk)
    h = sk * (t + mu_0)
    d_ah = d_alpha / h
    d_xx = d_yy - d_ah
    d_px = torch.addcmul(d_alpha / e - d_ah - d_ah, alpha, d_yy, value=2)  # with yy's 2 alpha px
    d_h = d_ah * torch.add(xx, px, alpha=2) / h
    sums = [(d_u * u).sum(), (d_yy * alpha * alpha).sum(), (d_q * alpha).sum(), (d_alpha * px).sum(), d_h.sum(),
            (d_h * t).sum(), d_px.sum(), d_q.sum()]  # fmt: skip
    rows, weights = torch.cat([d_px, d_q, d_xx + d_xx], 1), torch.cat([f * alpha, g, f], 1)
    return dict(z, rows=rows, weights=weights, d_t=d_h * sk, sums=torch.stack(sums))


def _spread_grads(d_d, d_c, v, sc, eps: float, batch_spread: bool) -> dict:
    """The gradients through c = gamma / (spread + eps) and d = sk (beta_0 + sk), from d_d and d_c = sum
    d_r rho; ``kappa``: what the batch's spread (sk mean(rho)) adds to every position's d_rho."""
    sk, beta_0 = sc["sk"], sc["beta_0"]
    d_gamma = d_c / (v["spread"] + eps)
    d_spread = -d_gamma * v["c"]
    d_sk = d_d * (beta_0 + sk + sk)
    kappa = torch.zeros_like(d_c)
    if batch_spread:  # spread = sk mean(rho)
        kappa = d_spread * sk / v["rho"].numel()
        d_sk = d_sk + d_spread * v["rho"].mean()
        d_spread = None
    return dict(d_gamma=d_gamma, d_spread=d_spread, d_sk=d_sk, d_beta0=d_d * sk, kappa=kappa)


def _backward(grad, saved, v, sc, centroid, eps: float, batch_spread: bool):
    """The backward pass of ``_BoostRescale`` in torch operations, the chain rule through ``_forward``
    backwards, each step's derivative in its comment (in ``_position_grads`` for the per-position algebra).
    It reads G four times (``passes.dots`` reads it twice) and writes ds once:

        ds = f G + (2 d_xx + d_t / t) x + (d_px + d_t / t) mu + d_q beta  [+ d_m_s / L]
    """
    # contiguous: a broadcast gradient (of a sum, say) has zero strides, and the batched
    # products below then took a slow path (4x the whole layer's time)
    grad = grad.contiguous()
    x, t, k = saved[0], saved[1], saved[7]
    z = _position_grads(grad, saved, v, sc, eps, batch_spread)
    mb, sk, e, mu_0, beta_0 = (sc[n] for n in ("mb", "sk", "e", "mu_0", "beta_0"))
    s_uu, d_mm, d_bm, s_ap, d_h_sum, s_ht, s_px, s_q = z["sums"]
    d_k = -s_uu / (k + k)  # u = sqrt(yy / k): du/dk = -u / (2 k)
    d_e = -s_ap / (e * e)
    d_sk = z["d_sk"] + s_ht + d_h_sum * mu_0 + d_e * (mu_0 + sk + sk)
    d_mu0 = d_e * sk + d_h_sum * sk
    d_k = d_k + d_mu0 / (mu_0 + mu_0) + z["d_beta0"] / (beta_0 + beta_0)  # mu_0 = sqrt(k + mm), beta_0 likewise
    # channel vectors: sums over positions of out's f alpha G, g G and f G, and of d_px x, d_q x and
    # 2 d_xx x; the last of each is the sum of ds over positions, which x = s - mu sends to mu
    rows = z["rows"]
    sums = passes.sums(grad, z["weights"], x, rows)
    # mm, bm, mu_0 = sqrt(k + mm) and beta_0 = sqrt(k + |beta|^2) as functions of mu and beta; the
    # rank terms of ds summed over positions (mu sum d_px + beta sum d_q) go to mu with a minus
    pair = torch.stack([d_mm + d_mm + d_mu0 / mu_0, d_bm, d_bm, z["d_beta0"] / beta_0]).view(2, 2)
    d_mb = torch.addmm(sums[:2], pair, mb)
    d_mu = d_mb[0] - sums[2] - torch.stack([s_px, s_q]) @ mb
    d_t, d_xx2 = z["d_t"], rows[:, 2:3]
    vectors, rows = mb.expand(x.shape[0], -1, -1), rows[:, :2].clone()
    if centroid is not None:  # mu = _nested_centroid(mean_l s, mean_l t): back into s and t
        n = x.shape[2]
        d_ms, d_m0, d_k3 = _nested_centroid_backward(d_mu, centroid, k)
        d_t = d_t + d_m0.unsqueeze(2) / n
        d_k = d_k + d_k3
        # the mean over positions spreads d_ms / n over every position of its sequence
        vectors = torch.cat([vectors, (d_ms / n).unsqueeze(1)], 1)
        rows = torch.cat([rows, torch.ones_like(d_t)], 1)
        d_mu = None
    d_tt = d_t / t  # t = sqrt(k + |s|^2), s = x + mu: dt/ds = s / t, dt/dk = 1 / (2 t)
    d_k = d_k + d_tt.sum() / 2 + d_sk / (sk + sk)
    rows[:, :1] += d_tt  # the weight of mu in ds
    d_s = passes.combine(grad, v["f"], x, d_tt + d_xx2, vectors, rows)
    return d_s, d_mu, d_mb[1], d_k, z["d_gamma"], z["d_spread"]


def _native_forward(s, mu_s, beta_s, k, gamma, spread, eps: float, limit: float):
    """The forward pass of ``_BoostRescale`` in biostrata's C++ operators (``nn.native``, ``boost.cpp``), which
    compute ``_forward``'s formulas, the channel-level ones in float64: (out, the tensors the backward reads,
    spread, mu_s, clipped)."""
    ops = native.kernels()
    t = m = None
    if mu_s is None:
        t, m = ops.stats(s, k)  # x_0 (B, 1, L) and each sequence's means of (s, x_0)
    P, W, W64, sc, cd = ops.centre(s, m, t, mu_s, beta_s, k)  # per-position rows; (mu; beta); scalars
    out, Q, rs, spread_out, clipped = ops.rescale(s, W, P, sc, gamma, spread, eps, limit)
    return out, (s, W, W64, P, Q, sc, rs, m, None if m is None else cd), spread_out, W[0].clone(), clipped


def _native_backward(grad, saved, eps: float, batch_spread: bool):
    """``_backward`` in biostrata's C++ operators: (ds, d_mu, d_beta, d_k, d_gamma, d_spread), the last five
    float64 (d_mu and d_spread meaningful in eval mode only)."""
    s, W, W64, P, Q, sc, rs, m, cd = saved
    ops = native.kernels()
    R, gs = ops.grad_positions(grad, s, W, P, Q, sc, rs, batch_spread, eps)
    sums = ops.grad_sums(grad, s, W, Q, R)
    return ops.grad_input(grad, s, W, W64, P, Q, R, sums, gs, sc, m, cd)


class _BoostRescale(torch.autograd.Function):
    """out_s = B_{o->beta}(rescale(B_{mu->o}(x)))_s for space parts s (B, C, L), see ``boost_rescale``,
    from the differences x = s - mu and without forming y:

        x = s - mu;   xx = |x|^2;   px, bx = mu . x, beta . x       (one pass)
        y = x + alpha mu  (``_boost_offset``);   |y|^2 = xx + alpha (2 px + alpha |mu|^2);   beta . y = bx + alpha (beta . mu)
        out = f y + g beta = f x + (f alpha) mu + g beta          (one pass and a rank-two update)

    Full-size passes per call, forwards and backwards (``benchmarks/step_time.py`` counts them): with the
    C++ operators (``nn.native``), train mode reads s 6 times (3 forwards) and G 3 times and writes out and
    ds (11; eval 10, without the positional means); with torch operations 28 (eval 24)."""

    @staticmethod
    def forward(ctx, s, mu_s, beta_s, k, gamma, spread, eps, limit, native_kernels):
        ctx.eps, ctx.batch_spread = eps, spread is None
        ctx.native = native.chosen(s, native_kernels)
        if ctx.native:
            out, saved, spread_out, mu_out, clipped = _native_forward(s, mu_s, beta_s, k, gamma, spread, eps, limit)
            ctx.save_for_backward(*saved)
            # the dtypes and shapes of the inputs that get a gradient, for the float64 ones the operators give
            ctx.like = [None if x is None else (x.dtype, x.shape) for x in (mu_s, beta_s, k, gamma, spread)]
        else:
            out, saved, v, sc, centroid, mu_s = _forward(s, mu_s, beta_s, k, gamma, spread, eps, limit)
            ctx.save_for_backward(*saved)
            ctx.v, ctx.sc, ctx.centroid = v, sc, centroid
            # outputs of their own: ctx keeps v and the input mu_s, and an output kept on ctx is a cycle
            spread_out, mu_out, clipped = v["spread"].detach().clone(), mu_s.detach().clone(), v["outside"].sum()
        ctx.mark_non_differentiable(spread_out, mu_out, clipped)
        return out, spread_out, mu_out, clipped

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _grad_spread, _grad_mu, _grad_clipped):
        if not ctx.native:
            grads = _backward(grad, ctx.saved_tensors, ctx.v, ctx.sc, ctx.centroid, ctx.eps, ctx.batch_spread)
            return (*grads, None, None, None)
        d_s, *rest = _native_backward(grad, ctx.saved_tensors, ctx.eps, ctx.batch_spread)
        # None for the inputs that have none: mu and the spread in train mode (computed from s)
        grads = [None if like is None else g.to(like[0]).reshape(like[1]) for g, like in zip(rest, ctx.like)]
        return (d_s, *grads, None, None, None)


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
    native_kernels: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch norm's map of space parts s (B, C, L) on ``manifold`` (k = 1/K its clamped ``kk``):

        mu  = centroid_b(centroid_l(x_bl))      (when ``mu_s`` is None: train mode)
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
        return _apply(_BoostRescale, s, mu_s, beta_s, k, gamma, spread, eps, limit, native_kernels)
    t = torch.sqrt((s * s).sum(1, keepdim=True) + k)
    if mu_s is None:
        mu_s = _nested_centroid(s.mean(2), t.mean(2), k)["mu"]
    sc = _boost_scalars(mu_s, beta_s, k)
    x = s - mu_s.view(1, -1, 1)
    alpha = _boost_offset((x * x).sum(1, keepdim=True), _dot(mu_s.unsqueeze(0), x), t, sc)
    y = torch.addcmul(x, mu_s.view(1, -1, 1), alpha)
    q = _dot(beta_s.unsqueeze(0), y)
    v = _rescale((y * y).sum(1, keepdim=True), q, sc, k, gamma, spread, eps, limit)
    out = torch.addcmul(v["f"] * y, beta_s.view(1, -1, 1), v["g"])
    return out, v["spread"], mu_s, v["outside"].sum()
