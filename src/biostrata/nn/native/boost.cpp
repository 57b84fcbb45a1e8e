// The full-size passes of the Lorentz batch norm (biostrata.nn.fused), one loop over the activations each.
//
// Every kernel reads (B, C, L) tensors, contiguous, position l fastest, and works on one sequence b at a
// time (at::parallel_for over b, on torch's intra-op threads): within a sequence it walks the channels in
// order and, for each, the positions, so every full-size tensor is read once, front to back, and the
// per-position results (B, ., L) stay in cache. x is a centred input, x[b, c, l] = a[b, c, l] - shift[c]
// (shift empty: no centring), formed on the fly and never stored. Results do not depend on the thread
// count: each sequence is summed in a fixed order, and sums over sequences are left to the caller.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>

namespace {

constexpr int64_t kGrain = 1;  // sequences per task: each is C L elements of work

struct Shape {
  int64_t B, C, L;
};

Shape shape_of(const at::Tensor& a, const char* name) {
  TORCH_CHECK(a.dim() == 3, name, " must be (B, C, L), got ", a.sizes());
  TORCH_CHECK(a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", a.scalar_type());
  TORCH_CHECK(a.device().is_cpu(), name, " must be on the CPU");
  return {a.size(0), a.size(1), a.size(2)};
}

// t as the kernels read it, contiguous, after checking that it has the activations' dtype and device.
at::Tensor like(const at::Tensor& t, const at::Tensor& a, const char* name) {
  TORCH_CHECK(t.scalar_type() == a.scalar_type() && t.device() == a.device(), name, " must be ", a.scalar_type(),
              " on ", a.device(), " as the activations are, got ", t.scalar_type(), " on ", t.device());
  return t.contiguous();
}

template <typename T>
const T* shift_ptr(const c10::optional<at::Tensor>& shift, int64_t C) {
  if (!shift.has_value()) return nullptr;
  TORCH_CHECK(shift->numel() == C && shift->is_contiguous(), "shift must be a contiguous (C,) vector");
  return shift->data_ptr<T>();
}

// sq[b, l] = sum_c s^2, mean[b, c] = mean_l s
template <typename T>
void stats_impl(const T* s, T* sq, T* mean, Shape n) {
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* q = sq + b * n.L;
      std::fill(q, q + n.L, T(0));
      for (int64_t c = 0; c < n.C; ++c) {
        const T* row = s + (b * n.C + c) * n.L;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t l = 0; l < n.L; ++l) {
          q[l] += row[l] * row[l];
          acc += row[l];
        }
        mean[b * n.C + c] = acc / T(n.L);
      }
    }
  });
}

// out[b, i, c] = sum_l rg[b, i, l] g[b, c, l] + rx[b, i, l] x[b, c, l], i < 3
template <typename T>
void sums_impl(const T* g, const T* rg, int64_t rg_stride, const T* a, const T* shift, const T* rx,
               int64_t rx_stride, T* out, Shape n) {
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T *rg0 = rg + b * rg_stride, *rg1 = rg0 + n.L, *rg2 = rg1 + n.L;
      const T *rx0 = rx + b * rx_stride, *rx1 = rx0 + n.L, *rx2 = rx1 + n.L;
      for (int64_t c = 0; c < n.C; ++c) {
        const T* grow = g + (b * n.C + c) * n.L;
        const T* row = a + (b * n.C + c) * n.L;
        const T sh = shift ? shift[c] : T(0);
        T s0 = 0, s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s0, s1, s2)
        for (int64_t l = 0; l < n.L; ++l) {
          const T v = row[l] - sh;
          s0 += rg0[l] * grow[l] + rx0[l] * v;
          s1 += rg1[l] * grow[l] + rx1[l] * v;
          s2 += rg2[l] * grow[l] + rx2[l] * v;
        }
        T* o = out + 3 * b * n.C + c;
        o[0] = s0;
        o[n.C] = s1;
        o[2 * n.C] = s2;
      }
    }
  });
}

// out[b, c, l] = p[b, l] g[b, c, l] + q[b, l] x[b, c, l] + sum_i V[b, i, c] R[b, i, l], i < NV
template <typename T, int NV, bool HasG>
void combine_impl(const T* g, const T* p, const T* a, const T* shift, const T* q, const T* V, const T* R, T* out,
                  Shape n) {
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* pb = HasG ? p + b * n.L : nullptr;
      const T* qb = q + b * n.L;
      const T* Rb = R + NV * b * n.L;
      for (int64_t c = 0; c < n.C; ++c) {
        const int64_t off = (b * n.C + c) * n.L;
        const T* row = a + off;
        const T* grow = HasG ? g + off : nullptr;
        T* o = out + off;
        const T sh = shift ? shift[c] : T(0);
        T v[NV];
        for (int i = 0; i < NV; ++i) v[i] = V[(b * NV + i) * n.C + c];
#pragma omp simd
        for (int64_t l = 0; l < n.L; ++l) {
          T acc = qb[l] * (row[l] - sh);
          if (HasG) acc += pb[l] * grow[l];
          for (int i = 0; i < NV; ++i) acc += v[i] * Rb[i * n.L + l];
          o[l] = acc;
        }
      }
    }
  });
}

// The per-position algebra of the batch norm (biostrata.nn.fused, where each formula is derived), fused with
// the passes over the activations that feed it. Rows are (B, k, L) tensors of per-position values.
//
// centre: x = a - shift; over channels xx = |x|^2, px = mu . x, bx = beta . x (W = (mu; beta)); then
//   t = t_in, or sqrt(xx + 2 px + mu_0^2);  alpha = px / e - (xx + 2 px) / (sqrt(k) (t + mu_0))
//   yy = xx + alpha (2 px + alpha |mu|^2);  q = bx + alpha (beta . mu)
//   u2 = max(yy, 1e-12) / k;  u = sqrt(u2);  w = sqrt(u2 + 1);  rho = log1p(u + u2 / (w + 1))
// P rows: t, xx, px, alpha, yy, q, u, w, rho. Scalars: k, sqrt(k), |mu|^2, beta . mu, mu_0, e.
template <typename T>
void centre_impl(const T* a, const T* shift, const T* W, const T* t_in, const std::vector<T>& sc, T* P, Shape n) {
  using V = at::vec::Vectorized<T>;
  const T k = sc[0], sk = sc[1], mm = sc[2], bm = sc[3], mu0 = sc[4], e = sc[5];
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* t = P + 9 * b * n.L;
      T *xx = t + n.L, *px = xx + n.L, *alpha = px + n.L, *yy = alpha + n.L, *q = yy + n.L, *u = q + n.L,
        *w = u + n.L, *rho = w + n.L;
      std::fill(xx, xx + 2 * n.L, T(0));
      std::fill(q, q + n.L, T(0));  // beta . x until the positions' loop
      for (int64_t c = 0; c < n.C; ++c) {
        const T* row = a + (b * n.C + c) * n.L;
        const T sh = shift ? shift[c] : T(0);
        const T u0 = W[c], u1 = W[n.C + c];
#pragma omp simd
        for (int64_t l = 0; l < n.L; ++l) {
          const T v = row[l] - sh;
          xx[l] += v * v;
          px[l] += u0 * v;
          q[l] += u1 * v;
        }
      }
      for (int64_t l = 0; l < n.L; l += V::size()) {
        const int64_t m = std::min<int64_t>(V::size(), n.L - l);
        const V vxx = V::loadu(xx + l, m), vpx = V::loadu(px + l, m), two_px = vpx + vpx;
        const V vt = t_in ? V::loadu(t_in + b * n.L + l, m) : (vxx + two_px + V(mu0 * mu0)).sqrt();
        const V va = vpx / V(e) - (vxx + two_px) / (V(sk) * (vt + V(mu0)));
        const V vyy = vxx + va * (two_px + va * V(mm));
        const V u2 = at::vec::maximum(vyy, V(T(1e-12))) / V(k);  // floor: 0/0 at the centroid
        const V vu = u2.sqrt(), vw = (u2 + V(1)).sqrt();
        vt.store(t + l, m);
        va.store(alpha + l, m);
        vyy.store(yy + l, m);
        (V::loadu(q + l, m) + va * V(bm)).store(q + l, m);
        vu.store(u + l, m);
        vw.store(w + l, m);
        (vu + u2 / (vw + V(1))).log1p().store(rho + l, m);
      }
    }
  });
}

// rescale: r = clamp(c rho, +-limit);  f = sinh(r) / u;  g = cosh(r) + f q / d;  then over channels
//   out = f x + (f alpha) mu + g beta.
// Q rows: f alpha, g, f, sinh(r), cosh(r), inside (1, or 0 where the clamp moved r). Scalars: c, limit, d.
template <typename T>
void rescale_impl(const T* a, const T* shift, const T* W, const T* P, const std::vector<T>& sc, T* out, T* Q,
                  Shape n) {
  using V = at::vec::Vectorized<T>;
  const T cc = sc[0], limit = sc[1], d = sc[2];
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* Pb = P + 9 * b * n.L;
      const T *alpha = Pb + 3 * n.L, *q = Pb + 5 * n.L, *u = Pb + 6 * n.L, *rho = Pb + 8 * n.L;
      T* fa = Q + 6 * b * n.L;
      T *g = fa + n.L, *f = g + n.L, *sh = f + n.L, *ch = sh + n.L, *inside = ch + n.L;
      for (int64_t l = 0; l < n.L; l += V::size()) {
        const int64_t m = std::min<int64_t>(V::size(), n.L - l);
        const V r_raw = V::loadu(rho + l, m) * V(cc);
        // clip: |r| <= limit bounds the output radius (see nn.lorentz.MAX_RADIUS)
        const V r = at::vec::clamp(r_raw, V(-limit), V(limit));
        const V vsh = r.sinh(), vch = r.cosh(), vf = vsh / V::loadu(u + l, m);
        V::blendv(V(1), V(0), r_raw.abs() > V(limit)).store(inside + l, m);
        (vf * V::loadu(alpha + l, m)).store(fa + l, m);
        (vch + vf * (V::loadu(q + l, m) / V(d))).store(g + l, m);
        vf.store(f + l, m);
        vsh.store(sh + l, m);
        vch.store(ch + l, m);
      }
      for (int64_t c = 0; c < n.C; ++c) {
        const int64_t off = (b * n.C + c) * n.L;
        const T* row = a + off;
        T* o = out + off;
        const T s0 = shift ? shift[c] : T(0), u0 = W[c], u1 = W[n.C + c];
#pragma omp simd
        for (int64_t l = 0; l < n.L; ++l) o[l] = f[l] * (row[l] - s0) + (u0 * fa[l] + u1 * g[l]);
      }
    }
  });
}

// grad_positions: over channels gx = G . x, g_mu = mu . G, g_beta = beta . G; then
//   d_f = gx + alpha g_mu;  df = d_f + g_beta q / d;  d_q = g_beta f / d;  d_r = (g_beta sinh(r) + df cosh(r) / u) inside
// D rows: df, d_q, d_r, g_mu; S (B, 2): sums over positions of d_q q and d_r rho. Scalars: d.
template <typename T>
void grad_positions_impl(const T* G, const T* a, const T* shift, const T* W, const T* P, const T* Q,
                         const std::vector<T>& sc, T* D, T* S, Shape n) {
  using V = at::vec::Vectorized<T>;
  const T d = sc[0];
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    std::vector<T> beta_g(n.L);
    for (int64_t b = b0; b < b1; ++b) {
      const T* Pb = P + 9 * b * n.L;
      const T *alpha = Pb + 3 * n.L, *q = Pb + 5 * n.L, *u = Pb + 6 * n.L, *rho = Pb + 8 * n.L;
      const T* f = Q + 6 * b * n.L + 2 * n.L;
      const T *sh = f + n.L, *ch = sh + n.L, *inside = ch + n.L;
      T* df = D + 4 * b * n.L;
      T *dq = df + n.L, *dr = dq + n.L, *gmu = dr + n.L, *gb = beta_g.data();
      std::fill(df, df + n.L, T(0));  // G . x until the positions' loop
      std::fill(gmu, gmu + n.L, T(0));
      std::fill(gb, gb + n.L, T(0));
      for (int64_t c = 0; c < n.C; ++c) {
        const int64_t off = (b * n.C + c) * n.L;
        const T *row = a + off, *grow = G + off;
        const T s0 = shift ? shift[c] : T(0), u0 = W[c], u1 = W[n.C + c];
#pragma omp simd
        for (int64_t l = 0; l < n.L; ++l) {
          df[l] += grow[l] * (row[l] - s0);
          gmu[l] += u0 * grow[l];
          gb[l] += u1 * grow[l];
        }
      }
      for (int64_t l = 0; l < n.L; l += V::size()) {
        const int64_t m = std::min<int64_t>(V::size(), n.L - l);
        const V vgb = V::loadu(gb + l, m), vf = V::loadu(f + l, m);
        const V d_f = V::loadu(df + l, m) + V::loadu(alpha + l, m) * V::loadu(gmu + l, m);
        const V vdf = d_f + vgb * (V::loadu(q + l, m) / V(d));
        const V vdr = vgb * V::loadu(sh + l, m) + vdf * (V::loadu(ch + l, m) / V::loadu(u + l, m));
        vdf.store(df + l, m);
        (vgb * (vf / V(d))).store(dq + l, m);
        V::blendv(V(0), vdr, V::loadu(inside + l, m) > V(0.5)).store(dr + l, m);  // the clamp's zero gradient
      }
      T s_q = 0, s_r = 0;
#pragma omp simd reduction(+ : s_q, s_r)
      for (int64_t l = 0; l < n.L; ++l) {
        s_q += dq[l] * q[l];
        s_r += dr[l] * rho[l];
      }
      S[2 * b] = s_q;
      S[2 * b + 1] = s_r;
    }
  });
}

// grad_rows (positions only), with kappa the gradient of rho through the batch's spread (0 in eval mode):
//   d_rho = c d_r + kappa;  d_u = d_rho / w - df f / u;  d_yy = d_u / (2 k u) (0 below the floor of yy)
//   d_alpha = f g_mu + bm d_q + 2 d_yy (px + alpha mm);  h = sqrt(k) (t + mu_0);  d_ah = d_alpha / h
//   d_xx = d_yy - d_ah;  d_px = d_alpha / e - 2 d_ah + 2 alpha d_yy;  d_h = d_ah (xx + 2 px) / h;  d_t = sqrt(k) d_h
// R rows: d_px, d_q, 2 d_xx, d_t, then scratch; S (B, 8): sums over positions of d_u u, d_yy alpha^2,
// d_q alpha, d_alpha px, d_h, d_h t, d_px, d_q. Scalars: c, kappa, k, sqrt(k), mm, bm, mu_0, e.
template <typename T>
void grad_rows_impl(const T* P, const T* Q, const T* D, const std::vector<T>& sc, T* R, T* S, Shape n) {
  using V = at::vec::Vectorized<T>;
  const T cc = sc[0], kappa = sc[1], k = sc[2], sk = sc[3], mm = sc[4], bm = sc[5], mu0 = sc[6], e = sc[7];
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* t = P + 9 * b * n.L;
      const T *xx = t + n.L, *px = xx + n.L, *alpha = px + n.L, *yy = alpha + n.L, *u = yy + 2 * n.L,
              *w = u + n.L;
      const T* f = Q + 6 * b * n.L + 2 * n.L;
      const T *df = D + 4 * b * n.L, *dq = df + n.L, *dr = dq + n.L, *gmu = dr + n.L;
      T* dpx = R + 8 * b * n.L;
      T *dq_out = dpx + n.L, *dxx2 = dq_out + n.L, *dt = dxx2 + n.L, *du_u = dt + n.L, *dyy = du_u + n.L,
        *dalpha = dyy + n.L, *dh = dalpha + n.L;
      for (int64_t l = 0; l < n.L; l += V::size()) {
        const int64_t m = std::min<int64_t>(V::size(), n.L - l);
        const V vu = V::loadu(u + l, m), vf = V::loadu(f + l, m), va = V::loadu(alpha + l, m);
        const V vpx = V::loadu(px + l, m), vdq = V::loadu(dq + l, m);
        const V d_rho = V::loadu(dr + l, m) * V(cc) + V(kappa);
        const V d_u = d_rho / V::loadu(w + l, m) - V::loadu(df + l, m) * vf / vu;
        const V d_yy = V::blendv(d_u / (V(k + k) * vu), V(0), V::loadu(yy + l, m) < V(T(1e-12)));
        const V d_alpha = vf * V::loadu(gmu + l, m) + vdq * V(bm) + V(2) * (d_yy * (vpx + va * V(mm)));
        const V h = V(sk) * (V::loadu(t + l, m) + V(mu0)), d_ah = d_alpha / h;
        const V d_h = d_ah * (V::loadu(xx + l, m) + vpx + vpx) / h;
        (d_alpha / V(e) - d_ah - d_ah + V(2) * (va * d_yy)).store(dpx + l, m);
        vdq.store(dq_out + l, m);
        ((d_yy - d_ah) * V(2)).store(dxx2 + l, m);
        (d_h * V(sk)).store(dt + l, m);
        (d_u * vu).store(du_u + l, m);
        d_yy.store(dyy + l, m);
        d_alpha.store(dalpha + l, m);
        d_h.store(dh + l, m);
      }
      T s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, s6, s7)
      for (int64_t l = 0; l < n.L; ++l) {
        s0 += du_u[l];
        s1 += dyy[l] * alpha[l] * alpha[l];
        s2 += dq[l] * alpha[l];
        s3 += dalpha[l] * px[l];
        s4 += dh[l];
        s5 += dh[l] * t[l];
        s6 += dpx[l];
        s7 += dq[l];
      }
      s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3, s[4] = s4, s[5] = s5, s[6] = s6, s[7] = s7;
      std::copy(s, s + 8, S + 8 * b);
    }
  });
}

at::Tensor positional(const Shape& n, int64_t rows, const at::Tensor& like) {
  return at::empty({n.B, rows, n.L}, like.options());
}

// Per-position rows (B, k, L) as the kernels read them: each row contiguous, rows of a sequence adjacent,
// any stride between sequences (a slice of a wider (B, K, L) tensor is taken as it is).
at::Tensor rows_of(const at::Tensor& r, const at::Tensor& a) {
  TORCH_CHECK(r.dim() == 3, "rows must be (B, k, L), got ", r.sizes());
  TORCH_CHECK(r.scalar_type() == a.scalar_type() && r.device() == a.device(), "rows must be ", a.scalar_type(),
              " on ", a.device(), " as the activations are, got ", r.scalar_type());
  return r.stride(2) == 1 && r.stride(1) == r.size(2) ? r : r.contiguous();
}

c10::optional<at::Tensor> optional_like(const c10::optional<at::Tensor>& t, const at::Tensor& a, const char* name) {
  if (!t.has_value()) return c10::nullopt;
  return like(*t, a, name);
}

// The scalars a kernel reads, from a small tensor (on the CPU, of the activations' dtype), in order.
template <typename T>
std::vector<T> scalars_of(const at::Tensor& values, const at::Tensor& a, int64_t count) {
  const at::Tensor v = like(values, a, "scalars");
  TORCH_CHECK(v.numel() == count, "expected ", count, " scalars, got ", v.numel());
  const T* p = v.data_ptr<T>();
  return std::vector<T>(p, p + count);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> stats(const at::Tensor& s_) {
  const at::Tensor s = s_.contiguous();
  const Shape n = shape_of(s, "s");
  at::Tensor sq = positional(n, 1, s), mean = at::empty({n.B, n.C}, s.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "stats", [&] {
    stats_impl<scalar_t>(s.data_ptr<scalar_t>(), sq.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), n);
  });
  return {sq, mean};
}

at::Tensor sums(const at::Tensor& g_, const at::Tensor& rg_, const at::Tensor& a_,
                const c10::optional<at::Tensor>& shift_, const at::Tensor& rx_) {
  const at::Tensor a = a_.contiguous();
  const Shape n = shape_of(a, "x");
  const at::Tensor g = like(g_, a, "g"), rg = rows_of(rg_, a), rx = rows_of(rx_, a);
  const c10::optional<at::Tensor> shift = optional_like(shift_, a, "shift");
  TORCH_CHECK(g.sizes() == a.sizes(), "g must have the shape of x");
  TORCH_CHECK(rg.sizes() == at::IntArrayRef({n.B, 3, n.L}) && rx.sizes() == rg.sizes(), "rows must be (B, 3, L)");
  at::Tensor out = at::empty({n.B, 3, n.C}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "sums", [&] {
    sums_impl<scalar_t>(g.data_ptr<scalar_t>(), rg.data_ptr<scalar_t>(), rg.stride(0), a.data_ptr<scalar_t>(),
                        shift_ptr<scalar_t>(shift, n.C), rx.data_ptr<scalar_t>(), rx.stride(0),
                        out.data_ptr<scalar_t>(), n);
  });
  return out;
}

at::Tensor combine(const c10::optional<at::Tensor>& g_, const c10::optional<at::Tensor>& p_, const at::Tensor& a_,
                   const c10::optional<at::Tensor>& shift_, const at::Tensor& q_, const at::Tensor& V_,
                   const at::Tensor& R_) {
  const at::Tensor a = a_.contiguous();
  const Shape n = shape_of(a, "x");
  const at::Tensor q = like(q_, a, "q"), V = like(V_, a, "V"), R = like(R_, a, "R");
  const c10::optional<at::Tensor> shift = optional_like(shift_, a, "shift");
  TORCH_CHECK(V.dim() == 3 && V.size(0) == n.B && V.size(2) == n.C && (V.size(1) == 2 || V.size(1) == 3),
              "V must be (B, 2 or 3, C), got ", V.sizes());
  const int64_t nv = V.size(1);
  TORCH_CHECK(R.sizes() == at::IntArrayRef({n.B, nv, n.L}), "R must be (B, V, L)");
  TORCH_CHECK(q.numel() == n.B * n.L, "q must be (B, 1, L)");
  at::Tensor g, p;
  if (g_.has_value()) {
    TORCH_CHECK(p_.has_value(), "p must be given with g");
    g = like(*g_, a, "g");
    p = like(*p_, a, "p");
    TORCH_CHECK(g.sizes() == a.sizes() && p.numel() == n.B * n.L, "g must have the shape of x, p (B, 1, L)");
  }
  at::Tensor out = at::empty_like(a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "combine", [&] {
    const scalar_t* gp = g.defined() ? g.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pp = g.defined() ? p.data_ptr<scalar_t>() : nullptr;
    auto args = std::make_tuple(gp, pp, a.data_ptr<scalar_t>(), shift_ptr<scalar_t>(shift, n.C),
                                q.data_ptr<scalar_t>(), V.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(),
                                out.data_ptr<scalar_t>(), n);
    if (nv == 2) {
      g.defined() ? std::apply(combine_impl<scalar_t, 2, true>, args) : std::apply(combine_impl<scalar_t, 2, false>, args);
    } else {
      g.defined() ? std::apply(combine_impl<scalar_t, 3, true>, args) : std::apply(combine_impl<scalar_t, 3, false>, args);
    }
  });
  return out;
}

at::Tensor centre(const at::Tensor& s_, const c10::optional<at::Tensor>& shift_, const at::Tensor& W_,
                  const c10::optional<at::Tensor>& t_, const at::Tensor& scalars) {
  const at::Tensor a = s_.contiguous();
  const Shape n = shape_of(a, "s");
  const at::Tensor W = like(W_, a, "W");
  TORCH_CHECK(W.dim() == 2 && W.size(0) == 2 && W.size(1) == n.C, "W must be (2, C)");
  const c10::optional<at::Tensor> shift = optional_like(shift_, a, "shift");
  at::Tensor t;
  if (t_.has_value()) {
    t = like(*t_, a, "t");
    TORCH_CHECK(t.numel() == n.B * n.L, "t must be (B, 1, L)");
  }
  at::Tensor P = positional(n, 9, a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "centre", [&] {
    centre_impl<scalar_t>(a.data_ptr<scalar_t>(), shift_ptr<scalar_t>(shift, n.C), W.data_ptr<scalar_t>(),
                          t.defined() ? t.data_ptr<scalar_t>() : nullptr, scalars_of<scalar_t>(scalars, a, 6),
                          P.data_ptr<scalar_t>(), n);
  });
  return P;
}

std::tuple<at::Tensor, at::Tensor> rescale(const at::Tensor& s_, const c10::optional<at::Tensor>& shift_,
                                           const at::Tensor& W_, const at::Tensor& P_, const at::Tensor& scalars) {
  const at::Tensor a = s_.contiguous();
  const Shape n = shape_of(a, "s");
  const at::Tensor W = like(W_, a, "W"), P = like(P_, a, "P");
  TORCH_CHECK(W.dim() == 2 && W.size(0) == 2 && W.size(1) == n.C, "W must be (2, C)");
  TORCH_CHECK(P.sizes() == at::IntArrayRef({n.B, 9, n.L}), "P must be (B, 9, L)");
  const c10::optional<at::Tensor> shift = optional_like(shift_, a, "shift");
  at::Tensor out = at::empty_like(a), Q = positional(n, 6, a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rescale", [&] {
    rescale_impl<scalar_t>(a.data_ptr<scalar_t>(), shift_ptr<scalar_t>(shift, n.C), W.data_ptr<scalar_t>(),
                           P.data_ptr<scalar_t>(), scalars_of<scalar_t>(scalars, a, 3), out.data_ptr<scalar_t>(),
                           Q.data_ptr<scalar_t>(), n);
  });
  return {out, Q};
}

std::tuple<at::Tensor, at::Tensor> grad_positions(const at::Tensor& G_, const at::Tensor& s_,
                                                  const c10::optional<at::Tensor>& shift_, const at::Tensor& W_,
                                                  const at::Tensor& P_, const at::Tensor& Q_,
                                                  const at::Tensor& scalars) {
  const at::Tensor a = s_.contiguous();
  const Shape n = shape_of(a, "s");
  const at::Tensor G = like(G_, a, "G"), W = like(W_, a, "W"), P = like(P_, a, "P"), Q = like(Q_, a, "Q");
  TORCH_CHECK(W.dim() == 2 && W.size(0) == 2 && W.size(1) == n.C, "W must be (2, C)");
  TORCH_CHECK(G.sizes() == a.sizes(), "G must have the shape of s");
  TORCH_CHECK(P.sizes() == at::IntArrayRef({n.B, 9, n.L}) && Q.sizes() == at::IntArrayRef({n.B, 6, n.L}),
              "P must be (B, 9, L) and Q (B, 6, L)");
  const c10::optional<at::Tensor> shift = optional_like(shift_, a, "shift");
  at::Tensor D = positional(n, 4, a), S = at::empty({n.B, 2}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "grad_positions", [&] {
    grad_positions_impl<scalar_t>(G.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), shift_ptr<scalar_t>(shift, n.C),
                                  W.data_ptr<scalar_t>(), P.data_ptr<scalar_t>(), Q.data_ptr<scalar_t>(),
                                  scalars_of<scalar_t>(scalars, a, 1), D.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(), n);
  });
  return {D, S};
}

std::tuple<at::Tensor, at::Tensor> grad_rows(const at::Tensor& P_, const at::Tensor& Q_, const at::Tensor& D_,
                                             const at::Tensor& scalars) {
  const at::Tensor P = P_.contiguous(), Q = like(Q_, P, "Q"), D = like(D_, P, "D");
  TORCH_CHECK(P.dim() == 3 && P.size(1) == 9, "P must be (B, 9, L)");
  const Shape n{P.size(0), 1, P.size(2)};
  TORCH_CHECK(Q.sizes() == at::IntArrayRef({n.B, 6, n.L}) && D.sizes() == at::IntArrayRef({n.B, 4, n.L}),
              "Q must be (B, 6, L) and D (B, 4, L)");
  at::Tensor R = positional(n, 8, P), S = at::empty({n.B, 8}, P.options());
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "grad_rows", [&] {
    grad_rows_impl<scalar_t>(P.data_ptr<scalar_t>(), Q.data_ptr<scalar_t>(), D.data_ptr<scalar_t>(),
                             scalars_of<scalar_t>(scalars, P, 8), R.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(), n);
  });
  return {R, S};
}

// Registered as torch operators (torch.ops.biostrata.*), so that the profiler and dispatch-level tools
// (benchmarks/step_time.py counts the full-size reads and writes of each operator) see them.
TORCH_LIBRARY(biostrata, m) {
  m.def("stats(Tensor s) -> (Tensor, Tensor)");  // sum_c s^2 (B, 1, L), mean_l s (B, C)
  m.def("sums(Tensor g, Tensor rg, Tensor x, Tensor? shift, Tensor rx) -> Tensor");  // (B, 3, C)
  m.def("combine(Tensor? g, Tensor? p, Tensor x, Tensor? shift, Tensor q, Tensor v, Tensor r) -> Tensor");
  m.def("centre(Tensor s, Tensor? shift, Tensor w, Tensor? t, Tensor scalars) -> Tensor");  // P (B, 9, L)
  m.def("rescale(Tensor s, Tensor? shift, Tensor w, Tensor p, Tensor scalars) -> (Tensor, Tensor)");  // out, Q
  m.def("grad_positions(Tensor g, Tensor s, Tensor? shift, Tensor w, Tensor p, Tensor q, Tensor scalars) -> (Tensor, Tensor)");
  m.def("grad_rows(Tensor p, Tensor q, Tensor d, Tensor scalars) -> (Tensor, Tensor)");  // R (B, 8, L), S (B, 8)
}

TORCH_LIBRARY_IMPL(biostrata, CPU, m) {
  m.impl("stats", &stats);
  m.impl("sums", &sums);
  m.impl("combine", &combine);
  m.impl("centre", &centre);
  m.impl("rescale", &rescale);
  m.impl("grad_positions", &grad_positions);
  m.impl("grad_rows", &grad_rows);
}
