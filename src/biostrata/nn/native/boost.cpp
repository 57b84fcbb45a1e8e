// The Lorentz batch norm (biostrata.nn.fused) on the CPU, forwards and backwards, in six operators
// (torch.ops.biostrata.*) that nn.fused calls in turn:
//
//   forward:   stats (train mode) -> centre -> rescale          reads s 3 times, writes out
//   backward:  grad_positions -> grad_sums -> grad_input        reads G and s 3 times each, writes ds
//
// Each operator is one pass over the (B, C, L) activations together with the algebra around it: the
// per-position values (B, k, L rows) in the same loop, the channel-level values (the centroid, the boosts'
// scalars, the gradients of mu, beta, gamma and k) in float64 in the operator itself, before or after its
// loop. nn.fused derives every formula and computes the same in torch operations, the path for other devices;
// the comments here name the quantities as it does, and tests hold the two paths equal.
//
// Layout: full-size tensors are contiguous (B, C, L), position l fastest. Each loop works on one sequence b
// at a time (at::parallel_for over b, on torch's intra-op threads): within a sequence it walks the channels
// in order and, for each, the positions, so every full-size tensor is read once, front to back, and the
// sequence's rows stay in cache. x = s - mu is formed on the fly and never stored. Results do not depend on
// the thread count: each sequence is summed in a fixed order, and the sums over sequences are added up in
// order of b after the loop.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include "common.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t kGrain = 1;  // sequences per task: each is C L elements of work

// Floors, as nn.fused has them and for its reasons: |y|^2 at a point at the centroid (0/0 in |y|, and the
// formula's rounding can make it a little negative); |<m, m>_L| of a mean of points on the hyperboloid, which
// is > 0, floored to keep the square roots' gradients finite.
constexpr double kFloorYY = 1e-12;
constexpr double kFloorLorentz = 1e-8;

// The channel-level scalars (float64) that centre computes and the other operators read, by index.
enum Sc : int64_t {
  kK,        // k = 1/K
  kSk,       // sqrt(k)
  kMm,       // |mu|^2
  kBm,       // beta . mu
  kMu0,      // mu_0 = sqrt(k + |mu|^2)
  kBeta0,    // beta_0 = sqrt(k + |beta|^2)
  kE,        // e = sqrt(k) (mu_0 + sqrt(k))
  kD,        // d = sqrt(k) (beta_0 + sqrt(k))
  kU0,       // the centroid's u_0 (train mode)
  kEE,       // its E = u_0^2 - |u_s|^2
  kH,        // its h = sqrt(k / E)
  kRhoMean,  // mean over all positions of rho = d(x, mu) / sqrt(k)
  kNumSc
};

// rescale's results (float64) that the backward reads.
enum Rs : int64_t { kSpread, kCc, kNumRs };  // the spread used; c = gamma / (spread + eps)

// grad_positions' sums over all positions, then the gradients through the spread (float64).
enum Gs : int64_t {
  kSumDuU,     // sum d_u u
  kDMm,        // d |mu|^2 = sum d_yy alpha^2
  kDBm,        // d (beta . mu) = sum d_q alpha
  kSumDaPx,    // sum d_alpha px
  kSumDh,      // sum d_h
  kSumDhT,     // sum d_h t
  kSumDpx,     // sum d_px
  kSumDq,      // sum d_q
  kDGamma,     // d gamma
  kDSpread,    // d spread (eval mode; train mode's goes into kappa and d sqrt(k))
  kDSkSpread,  // d sqrt(k) through d and the batch's spread
  kDBeta0,     // d beta_0
  kNumGs
};

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

// A per-position tensor (B, rows, L) of the activations' dtype, as another operator of this file made it.
at::Tensor rows_like(const at::Tensor& t, const at::Tensor& a, int64_t rows, const char* name) {
  const at::Tensor r = like(t, a, name);
  TORCH_CHECK(r.sizes() == at::IntArrayRef({a.size(0), rows, a.size(2)}), name, " must be (B, ", rows,
              ", L) for s of ", a.sizes(), ", got ", r.sizes());
  return r;
}

// W = (mu; beta) (2, C) as centre made it, in the activations' dtype.
at::Tensor centres_like(const at::Tensor& W_, const at::Tensor& a) {
  const at::Tensor W = like(W_, a, "W");
  TORCH_CHECK(W.sizes() == at::IntArrayRef({2, a.size(1)}), "W must be (2, C) for s of ", a.sizes(), ", got ",
              W.sizes());
  return W;
}

// The gradient G of the output, of the activations' shape, dtype and device.
at::Tensor gradient_like(const at::Tensor& G_, const at::Tensor& a) {
  const at::Tensor G = like(G_, a, "G");
  TORCH_CHECK(G.sizes() == a.sizes(), "G must have the shape of s, ", a.sizes(), ", got ", G.sizes());
  return G;
}

// A float64 vector of n values as an operator of this file made it (scalars, sums).
const double* float64s(const at::Tensor& t, int64_t n, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kDouble && t.device().is_cpu() && t.numel() == n && t.is_contiguous(), name,
              " must be a contiguous float64 tensor of ", n, " values on the CPU, got ", t.scalar_type(), " ",
              t.sizes());
  return t.data_ptr<double>();
}

at::Tensor float64_zeros(at::IntArrayRef size) { return at::zeros(size, at::TensorOptions().dtype(at::kDouble)); }

at::Tensor positional(const Shape& n, int64_t rows, const at::Tensor& a) {
  return at::empty({n.B, rows, n.L}, a.options());
}

// sum over b of part[b * width + i], in order of b: (width,)
std::vector<double> sum_over_sequences(const std::vector<double>& part, int64_t B, int64_t width) {
  std::vector<double> out(width, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < width; ++i) out[i] += part[b * width + i];
  return out;
}

// ---- forward ------------------------------------------------------------------------------------------

// stats: t = sqrt(k + |s|^2) (B, 1, L), the time coordinates; m (B, C + 1, float64): each sequence's means over
// its positions of s (columns < C) and of t (column C), from which centre forms the centroid.
template <typename T>
void stats_impl(const T* s, T k, T* t, double* m, Shape n) {
  using V = at::vec::Vectorized<T>;
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* q = t + b * n.L;
      double* mb = m + b * (n.C + 1);
      std::fill(q, q + n.L, T(0));
      for (int64_t c = 0; c < n.C; ++c) {
        const T* row = s + (b * n.C + c) * n.L;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t l = 0; l < n.L; ++l) {
          q[l] += row[l] * row[l];
          acc += row[l];
        }
        mb[c] = acc / n.L;
      }
      for (int64_t l = 0; l < n.L; l += V::size()) {
        const int64_t w = std::min<int64_t>(V::size(), n.L - l);
        (V::loadu(q + l, w) + V(k)).sqrt().store(q + l, w);
      }
      double acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t l = 0; l < n.L; ++l) acc += q[l];
      mb[n.C] = acc / n.L;
    }
  });
}

// The nested centroid mu = centroid_b(centroid_l(x_bl)) from the means m (B, C + 1), in float64:
//   D_b = m_0b^2 - |m_sb|^2,  c_b = sqrt(k / D_b),  u = mean_b c_b m_b,  E = u_0^2 - |u_s|^2,  h = sqrt(k / E),
//   mu = h u_s.
// Writes mu, (c_b, D_b) into cd (B, 2) and u_0, E, h into sc.
void centroid(const double* m, Shape n, double* sc, double* mu, double* cd) {
  const double sk = sc[kSk];
  std::vector<double> us(n.C, 0.0);
  double u0 = 0;
  for (int64_t b = 0; b < n.B; ++b) {
    const double* ms = m + b * (n.C + 1);
    double ss = 0;
    for (int64_t c = 0; c < n.C; ++c) ss += ms[c] * ms[c];
    const double D = ms[n.C] * ms[n.C] - ss;
    const double cb = sk / std::sqrt(std::max(D, kFloorLorentz));  // floor: see kFloorLorentz
    for (int64_t c = 0; c < n.C; ++c) us[c] += cb * ms[c] / n.B;
    u0 += cb * ms[n.C] / n.B;
    cd[2 * b] = cb;
    cd[2 * b + 1] = D;
  }
  double uu = 0;
  for (int64_t c = 0; c < n.C; ++c) uu += us[c] * us[c];
  const double E = u0 * u0 - uu;
  const double h = sk / std::sqrt(std::max(E, kFloorLorentz));
  for (int64_t c = 0; c < n.C; ++c) mu[c] = h * us[c];
  sc[kU0] = u0, sc[kEE] = E, sc[kH] = h;
}

// The boosts' scalars of mu and beta (float64, Sc).
void boost_scalars(const double* mu, const double* beta, int64_t C, double* sc) {
  double mm = 0, bm = 0, bb = 0;
  for (int64_t c = 0; c < C; ++c) {
    mm += mu[c] * mu[c];
    bm += beta[c] * mu[c];
    bb += beta[c] * beta[c];
  }
  const double k = sc[kK], sk = sc[kSk];
  sc[kMm] = mm, sc[kBm] = bm;
  sc[kMu0] = std::sqrt(k + mm), sc[kBeta0] = std::sqrt(k + bb);
  sc[kE] = sk * (sc[kMu0] + sk), sc[kD] = sk * (sc[kBeta0] + sk);
}

// centre's pass: over channels xx = |x|^2, px = mu . x, bx = beta . x for x = s - mu (W = (mu; beta)); then
//   t = t_in, or sqrt(xx + 2 px + mu_0^2);  alpha = px / e - (xx + 2 px) / (sqrt(k) (t + mu_0))
//   yy = xx + alpha (2 px + alpha |mu|^2);  q = bx + alpha (beta . mu)
//   u2 = max(yy, 1e-12) / k;  u = sqrt(u2);  w = sqrt(u2 + 1);  rho = log1p(u + u2 / (w + 1))
// P rows: t, xx, px, alpha, yy, q, u, w, rho; rho_sum (B): each sequence's sum of rho.
template <typename T>
void centre_impl(const T* a, const T* W, const T* t_in, const double* sc, T* P, double* rho_sum, Shape n) {
  using V = at::vec::Vectorized<T>;
  const T k = sc[kK], sk = sc[kSk], mm = sc[kMm], bm = sc[kBm], mu0 = sc[kMu0], e = sc[kE];
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* t = P + 9 * b * n.L;
      T *xx = t + n.L, *px = xx + n.L, *alpha = px + n.L, *yy = alpha + n.L, *q = yy + n.L, *u = q + n.L,
        *w = u + n.L, *rho = w + n.L;
      std::fill(xx, xx + 2 * n.L, T(0));
      std::fill(q, q + n.L, T(0));  // beta . x until the positions' loop
      for (int64_t c = 0; c < n.C; ++c) {
        const T* row = a + (b * n.C + c) * n.L;
        const T mu_c = W[c], beta_c = W[n.C + c];
#pragma omp simd
        for (int64_t l = 0; l < n.L; ++l) {
          const T v = row[l] - mu_c;
          xx[l] += v * v;
          px[l] += mu_c * v;
          q[l] += beta_c * v;
        }
      }
      for (int64_t l = 0; l < n.L; l += V::size()) {
        const int64_t m = std::min<int64_t>(V::size(), n.L - l);
        const V vxx = V::loadu(xx + l, m), vpx = V::loadu(px + l, m), two_px = vpx + vpx;
        const V vt = t_in ? V::loadu(t_in + b * n.L + l, m) : (vxx + two_px + V(mu0 * mu0)).sqrt();
        const V va = vpx / V(e) - (vxx + two_px) / (V(sk) * (vt + V(mu0)));
        const V vyy = vxx + va * (two_px + va * V(mm));
        const V u2 = at::vec::maximum(vyy, V(T(kFloorYY))) / V(k);  // floor: see kFloorYY
        const V vu = u2.sqrt(), vw = (u2 + V(1)).sqrt();
        vt.store(t + l, m);
        va.store(alpha + l, m);
        vyy.store(yy + l, m);
        (V::loadu(q + l, m) + va * V(bm)).store(q + l, m);
        vu.store(u + l, m);
        vw.store(w + l, m);
        (vu + u2 / (vw + V(1))).log1p().store(rho + l, m);
      }
      double acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t l = 0; l < n.L; ++l) acc += rho[l];
      rho_sum[b] = acc;
    }
  });
}

// rescale: r = clamp(c rho, +-limit);  f = sinh(r) / u;  g = cosh(r) + f q / d;  then over channels
//   out = f x + (f alpha) mu + g beta.
// Q rows: f alpha, g, f, sinh(r), cosh(r), inside (1, or 0 where the clamp moved r); clipped (B): each
// sequence's count of positions the clamp moved.
template <typename T>
void rescale_impl(const T* a, const T* W, const T* P, T cc, T limit, T d, T* out, T* Q, int64_t* clipped, Shape n) {
  using V = at::vec::Vectorized<T>;
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
      int64_t moved = 0;
      for (int64_t l = 0; l < n.L; ++l) moved += inside[l] == T(0);
      clipped[b] = moved;
      for (int64_t c = 0; c < n.C; ++c) {
        const int64_t off = (b * n.C + c) * n.L;
        const T* row = a + off;
        T* o = out + off;
        const T mu_c = W[c], beta_c = W[n.C + c];
#pragma omp simd
        for (int64_t l = 0; l < n.L; ++l) o[l] = f[l] * (row[l] - mu_c) + (mu_c * fa[l] + beta_c * g[l]);
      }
    }
  });
}

// ---- backward -----------------------------------------------------------------------------------------

// grad_positions, first loop: over channels gx = G . x, g_mu = mu . G, g_beta = beta . G; then
//   d_f = gx + alpha g_mu;  df = d_f + g_beta q / d;  d_q = g_beta f / d;  d_r = (g_beta sinh(r) + df cosh(r) / u) inside
// D rows: df, d_q, d_r, g_mu; S (B, 2): each sequence's sums of d_q q and d_r rho.
template <typename T>
void grad_positions_impl(const T* G, const T* a, const T* W, const T* P, const T* Q, T d, T* D, double* S, Shape n) {
  using V = at::vec::Vectorized<T>;
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
        const T mu_c = W[c], beta_c = W[n.C + c];
#pragma omp simd
        for (int64_t l = 0; l < n.L; ++l) {
          df[l] += grow[l] * (row[l] - mu_c);
          gmu[l] += mu_c * grow[l];
          gb[l] += beta_c * grow[l];
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
      double s_q = 0, s_r = 0;
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

// grad_positions, second loop (positions only), with kappa the gradient of rho through the batch's spread
// (0 in eval mode):
//   d_rho = c d_r + kappa;  d_u = d_rho / w - df f / u;  d_yy = d_u / (2 k u) (0 below the floor of yy)
//   d_alpha = f g_mu + bm d_q + 2 d_yy (px + alpha mm);  h = sqrt(k) (t + mu_0);  d_ah = d_alpha / h
//   d_xx = d_yy - d_ah;  d_px = d_alpha / e - 2 d_ah + 2 alpha d_yy;  d_h = d_ah (xx + 2 px) / h;  d_t = sqrt(k) d_h
// R rows: d_px, d_q, 2 d_xx, d_t; S (B, 8): each sequence's sums of d_u u, d_yy alpha^2, d_q alpha,
// d_alpha px, d_h, d_h t, d_px, d_q (Gs up to kSumDq).
template <typename T>
void grad_rows_impl(const T* P, const T* Q, const T* D, const double* sc, T cc, T kappa, T* R, double* S, Shape n) {
  using V = at::vec::Vectorized<T>;
  const T k = sc[kK], sk = sc[kSk], mm = sc[kMm], bm = sc[kBm], mu0 = sc[kMu0], e = sc[kE];
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    std::vector<T> scratch(4 * n.L);
    for (int64_t b = b0; b < b1; ++b) {
      const T* t = P + 9 * b * n.L;
      const T *xx = t + n.L, *px = xx + n.L, *alpha = px + n.L, *yy = alpha + n.L, *u = yy + 2 * n.L,
              *w = u + n.L;
      const T* f = Q + 6 * b * n.L + 2 * n.L;
      const T *df = D + 4 * b * n.L, *dq = df + n.L, *dr = dq + n.L, *gmu = dr + n.L;
      T* dpx = R + 4 * b * n.L;
      T *dq_out = dpx + n.L, *dxx2 = dq_out + n.L, *dt = dxx2 + n.L;
      T *du_u = scratch.data(), *dyy = du_u + n.L, *dalpha = dyy + n.L, *dh = dalpha + n.L;
      for (int64_t l = 0; l < n.L; l += V::size()) {
        const int64_t m = std::min<int64_t>(V::size(), n.L - l);
        const V vu = V::loadu(u + l, m), vf = V::loadu(f + l, m), va = V::loadu(alpha + l, m);
        const V vpx = V::loadu(px + l, m), vdq = V::loadu(dq + l, m);
        const V d_rho = V::loadu(dr + l, m) * V(cc) + V(kappa);
        const V d_u = d_rho / V::loadu(w + l, m) - V::loadu(df + l, m) * vf / vu;
        // below the floor of yy, its gradient is the clamp's: 0
        const V d_yy = V::blendv(d_u / (V(k + k) * vu), V(0), V::loadu(yy + l, m) < V(T(kFloorYY)));
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
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
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
      double* o = S + 8 * b;
      o[0] = s0, o[1] = s1, o[2] = s2, o[3] = s3, o[4] = s4, o[5] = s5, o[6] = s6, o[7] = s7;
    }
  });
}

// grad_sums: S (B, 3, C): sum over l of rg_i[b, l] G[b, c, l] + rx_i[b, l] x[b, c, l], with rows rg = Q's first
// three (f alpha, g, f) and rx = R's first three (d_px, d_q, 2 d_xx).
template <typename T>
void grad_sums_impl(const T* G, const T* a, const T* W, const T* Q, const T* R, double* S, Shape n) {
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T *rg0 = Q + 6 * b * n.L, *rg1 = rg0 + n.L, *rg2 = rg1 + n.L;
      const T *rx0 = R + 4 * b * n.L, *rx1 = rx0 + n.L, *rx2 = rx1 + n.L;
      for (int64_t c = 0; c < n.C; ++c) {
        const T* grow = G + (b * n.C + c) * n.L;
        const T* row = a + (b * n.C + c) * n.L;
        const T mu_c = W[c];
        T s0 = 0, s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s0, s1, s2)
        for (int64_t l = 0; l < n.L; ++l) {
          const T v = row[l] - mu_c;
          s0 += rg0[l] * grow[l] + rx0[l] * v;
          s1 += rg1[l] * grow[l] + rx1[l] * v;
          s2 += rg2[l] * grow[l] + rx2[l] * v;
        }
        double* o = S + 3 * b * n.C + c;
        o[0] = s0;
        o[n.C] = s1;
        o[2 * n.C] = s2;
      }
    }
  });
}

// Gradients (d_m_s, d_m_0, d_k) of the nested centroid given d_mu (see centroid; nn.fused's
// _nested_centroid_backward derives them):
//   d_E = -(d_mu . u_s) h / (2 E),   d_u_s = h d_mu - 2 d_E u_s,   d_u_0 = 2 d_E u_0
//   d_c_b = (m_sb . d_u_s + m_0b d_u_0) / B,   d_D_b = -d_c_b c_b / (2 D_b)
//   d_m_sb = c_b d_u_s / B - 2 d_D_b m_sb,     d_m_0b = c_b d_u_0 / B + 2 d_D_b m_0b
//   d_k = (d_mu . mu + sum_b d_c_b c_b) / (2 k)
// where a floor acts (D or E below it) its gradient is 0, as the clamp's. dm (B, C + 1): d_m_s, d_m_0.
double centroid_backward(const double* d_mu, const double* mu, const double* m, const double* cd, const double* sc,
                         Shape n, double* dm) {
  const double k = sc[kK], u0 = sc[kU0], E = sc[kEE], h = sc[kH];
  double d_h = 0;
  for (int64_t c = 0; c < n.C; ++c) d_h += d_mu[c] * mu[c] / h;  // u_s = mu / h
  const double d_E2 = E >= kFloorLorentz ? -d_h * h / E : 0.0;  // 2 d_E
  std::vector<double> d_us(n.C);
  for (int64_t c = 0; c < n.C; ++c) d_us[c] = d_mu[c] * h - mu[c] / h * d_E2;
  const double d_u0 = d_E2 * u0;
  double sum_dc_c = 0;
  for (int64_t b = 0; b < n.B; ++b) {
    const double* ms = m + b * (n.C + 1);
    const double cb = cd[2 * b], D = cd[2 * b + 1];
    double dot = 0;
    for (int64_t c = 0; c < n.C; ++c) dot += ms[c] * d_us[c];
    const double d_c = (dot + ms[n.C] * d_u0) / n.B;
    const double d_D2 = D >= kFloorLorentz ? -d_c * cb / D : 0.0;  // 2 d_D
    double* o = dm + b * (n.C + 1);
    for (int64_t c = 0; c < n.C; ++c) o[c] = cb * d_us[c] / n.B - ms[c] * d_D2;
    o[n.C] = cb * d_u0 / n.B + ms[n.C] * d_D2;
    sum_dc_c += d_c * cb;
  }
  return (d_h * h + sum_dc_c) / (k + k);
}

// grad_input's pass: with d_t = R's d_t + d_m_0 / L (train mode) and d_tt = d_t / t (t = sqrt(k + |s|^2)),
//   ds = f G + (2 d_xx + d_tt) x + (d_px + d_tt) mu + d_q beta + d_m_s / L
// dm (B, C + 1, float64): the centroid's d_m_s, d_m_0 (train mode; null in eval mode); dtt (B): each
// sequence's sum of d_tt.
template <typename T>
void grad_input_impl(const T* G, const T* a, const T* W, const T* P, const T* Q, const T* R, const double* dm, T* ds,
                     double* dtt, Shape n) {
  using V = at::vec::Vectorized<T>;
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    std::vector<T> scratch(2 * n.L);
    for (int64_t b = b0; b < b1; ++b) {
      const T* t = P + 9 * b * n.L;
      const T* f = Q + 6 * b * n.L + 2 * n.L;
      const T *dpx = R + 4 * b * n.L, *dq = dpx + n.L, *dxx2 = dq + n.L, *dt = dxx2 + n.L;
      T *qx = scratch.data(), *qmu = qx + n.L;
      const T dm0 = dm ? T(dm[b * (n.C + 1) + n.C] / n.L) : T(0);
      V acc(0);
      for (int64_t l = 0; l < n.L; l += V::size()) {
        const int64_t m = std::min<int64_t>(V::size(), n.L - l);
        // tails: loadu fills the lanes past m with 0, V::set puts 1 in t's, and masked keeps them out of acc
        const V d_tt = (V::loadu(dt + l, m) + V(dm0)) / V::set(V(1), V::loadu(t + l, m), m);
        const V masked = V::set(V(0), d_tt, m);
        acc = acc + masked;
        (d_tt + V::loadu(dxx2 + l, m)).store(qx + l, m);
        (d_tt + V::loadu(dpx + l, m)).store(qmu + l, m);
      }
      T lanes[V::size()];
      acc.store(lanes);
      double total = 0;
      for (int64_t i = 0; i < V::size(); ++i) total += lanes[i];
      dtt[b] = total;
      for (int64_t c = 0; c < n.C; ++c) {
        const int64_t off = (b * n.C + c) * n.L;
        const T *row = a + off, *grow = G + off;
        T* o = ds + off;
        const T mu_c = W[c], beta_c = W[n.C + c];
        const T v2 = dm ? T(dm[b * (n.C + 1) + c] / n.L) : T(0);
#pragma omp simd
        for (int64_t l = 0; l < n.L; ++l) {
          o[l] = f[l] * grow[l] + qx[l] * (row[l] - mu_c) + (mu_c * qmu[l] + beta_c * dq[l] + v2);
        }
      }
    }
  });
}

}  // namespace

// ---- operators ----------------------------------------------------------------------------------------

// (t (B, 1, L), m (B, C + 1) float64): see stats_impl. k: the manifold's k (one value).
std::tuple<at::Tensor, at::Tensor> stats(const at::Tensor& s_, const at::Tensor& k) {
  const at::Tensor s = s_.contiguous();
  const Shape n = shape_of(s, "s");
  at::Tensor t = positional(n, 1, s), m = at::empty({n.B, n.C + 1}, s.options().dtype(at::kDouble));
  const double kv = value_of(k, "k");
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "stats", [&] {
    stats_impl<scalar_t>(s.data_ptr<scalar_t>(), scalar_t(kv), t.data_ptr<scalar_t>(), m.data_ptr<double>(), n);
  });
  return {t, m};
}

// Train mode (m and t from stats, mu None): the centroid of the batch; eval mode (mu given, m and t None): mu.
// Returns P (B, 9, L) (see centre_impl), W = (mu; beta) (2, C) in the activations' dtype and W64 the same in
// float64, sc (Sc) and cd (B, 2): each sequence's c_b, D_b (train mode; (0, 2) in eval mode).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> centre(
    const at::Tensor& s_, const c10::optional<at::Tensor>& m_, const c10::optional<at::Tensor>& t_,
    const c10::optional<at::Tensor>& mu_, const at::Tensor& beta_, const at::Tensor& k) {
  const at::Tensor a = s_.contiguous();
  const Shape n = shape_of(a, "s");
  TORCH_CHECK(m_.has_value() != mu_.has_value(), "give either m (train mode) or mu (eval mode)");
  TORCH_CHECK(m_.has_value() == t_.has_value(), "give t with m");
  const at::Tensor beta = beta_.to(at::kDouble).contiguous();
  TORCH_CHECK(beta.dim() == 1 && beta.size(0) == n.C, "beta must be (C,) for s of ", a.sizes(), ", got ",
              beta_.sizes());
  at::Tensor W64 = at::empty({2, n.C}, beta.options()), sc = float64_zeros({kNumSc});
  at::Tensor cd = float64_zeros({m_.has_value() ? n.B : 0, 2});
  double* scp = sc.data_ptr<double>();
  double *mu = W64.data_ptr<double>(), *bp = mu + n.C;
  scp[kK] = value_of(k, "k");
  scp[kSk] = std::sqrt(scp[kK]);
  std::copy(beta.data_ptr<double>(), beta.data_ptr<double>() + n.C, bp);
  at::Tensor t;
  if (m_.has_value()) {
    t = rows_like(*t_, a, 1, "t");
    const double* m = float64s(*m_, n.B * (n.C + 1), "m");
    centroid(m, n, scp, mu, cd.data_ptr<double>());
  } else {
    const at::Tensor mu_in = mu_->to(at::kDouble).contiguous();
    TORCH_CHECK(mu_in.dim() == 1 && mu_in.size(0) == n.C, "mu must be (C,) for s of ", a.sizes(), ", got ",
                mu_->sizes());
    std::copy(mu_in.data_ptr<double>(), mu_in.data_ptr<double>() + n.C, mu);
  }
  boost_scalars(mu, bp, n.C, scp);
  const at::Tensor W = W64.to(a.scalar_type());
  at::Tensor P = positional(n, 9, a);
  std::vector<double> rho_sum(n.B);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "centre", [&] {
    centre_impl<scalar_t>(a.data_ptr<scalar_t>(), W.data_ptr<scalar_t>(),
                          t.defined() ? t.data_ptr<scalar_t>() : nullptr, scp, P.data_ptr<scalar_t>(),
                          rho_sum.data(), n);
  });
  scp[kRhoMean] = sum_over_sequences(rho_sum, n.B, 1)[0] / (n.B * n.L);
  return {P, W, W64, sc, cd};
}

// (out (B, C, L), Q (B, 6, L), rs (Rs), spread, clipped): see rescale_impl. spread None: the batch's,
// sqrt(k) mean(rho); spread (returned) in the activations' dtype, clipped (int64) the positions the clip moved.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rescale(
    const at::Tensor& s_, const at::Tensor& W_, const at::Tensor& P_, const at::Tensor& sc_, const at::Tensor& gamma,
    const c10::optional<at::Tensor>& spread_, double eps, double limit) {
  const at::Tensor a = s_.contiguous();
  const Shape n = shape_of(a, "s");
  const at::Tensor W = centres_like(W_, a), P = rows_like(P_, a, 9, "P");
  const double* sc = float64s(sc_, kNumSc, "sc");
  const double spread = spread_.has_value() ? value_of(*spread_, "spread") : sc[kSk] * sc[kRhoMean];
  const double cc = value_of(gamma, "gamma") / (spread + eps);
  at::Tensor out = at::empty_like(a), Q = positional(n, 6, a), rs = float64_zeros({kNumRs});
  rs.data_ptr<double>()[kSpread] = spread;
  rs.data_ptr<double>()[kCc] = cc;
  std::vector<int64_t> clipped(n.B);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rescale", [&] {
    rescale_impl<scalar_t>(a.data_ptr<scalar_t>(), W.data_ptr<scalar_t>(), P.data_ptr<scalar_t>(), scalar_t(cc),
                           scalar_t(limit), scalar_t(sc[kD]), out.data_ptr<scalar_t>(), Q.data_ptr<scalar_t>(),
                           clipped.data(), n);
  });
  int64_t moved = 0;
  for (int64_t b = 0; b < n.B; ++b) moved += clipped[b];
  return {out, Q, rs, at::scalar_tensor(spread, a.options()), at::scalar_tensor(moved, at::kLong)};
}

// (R (B, 4, L), gs (Gs)): both loops of grad_positions, and between them the gradients through the spread:
//   d_d = -sum(d_q q) / d;  d_gamma = sum(d_r rho) / (spread + eps);  d_spread = -d_gamma c
//   d_sqrt(k) = d_d (beta_0 + 2 sqrt(k));  d_beta_0 = d_d sqrt(k)
// and with the batch's spread (sqrt(k) mean(rho)): kappa = d_spread sqrt(k) / (B L) into every d_rho,
// d_sqrt(k) += d_spread mean(rho).
std::tuple<at::Tensor, at::Tensor> grad_positions(const at::Tensor& G_, const at::Tensor& s_, const at::Tensor& W_,
                                                  const at::Tensor& P_, const at::Tensor& Q_, const at::Tensor& sc_,
                                                  const at::Tensor& rs_, bool batch_spread, double eps) {
  const at::Tensor a = s_.contiguous();
  const Shape n = shape_of(a, "s");
  const at::Tensor G = gradient_like(G_, a), W = centres_like(W_, a);
  const at::Tensor P = rows_like(P_, a, 9, "P"), Q = rows_like(Q_, a, 6, "Q");
  const double* sc = float64s(sc_, kNumSc, "sc");
  const double* rs = float64s(rs_, kNumRs, "rs");
  at::Tensor D = positional(n, 4, a), R = positional(n, 4, a), gs = float64_zeros({kNumGs});
  std::vector<double> S2(2 * n.B), S8(8 * n.B);
  double* g = gs.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "grad_positions", [&] {
    grad_positions_impl<scalar_t>(G.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), W.data_ptr<scalar_t>(),
                                  P.data_ptr<scalar_t>(), Q.data_ptr<scalar_t>(), scalar_t(sc[kD]),
                                  D.data_ptr<scalar_t>(), S2.data(), n);
    const std::vector<double> s2 = sum_over_sequences(S2, n.B, 2);
    const double sk = sc[kSk], d_d = -s2[0] / sc[kD];
    g[kDGamma] = s2[1] / (rs[kSpread] + eps);
    g[kDSpread] = -g[kDGamma] * rs[kCc];
    g[kDSkSpread] = d_d * (sc[kBeta0] + sk + sk);
    g[kDBeta0] = d_d * sk;
    double kappa = 0;
    if (batch_spread) {  // spread = sqrt(k) mean(rho)
      kappa = g[kDSpread] * sk / (n.B * n.L);
      g[kDSkSpread] += g[kDSpread] * sc[kRhoMean];
      g[kDSpread] = 0;
    }
    grad_rows_impl<scalar_t>(P.data_ptr<scalar_t>(), Q.data_ptr<scalar_t>(), D.data_ptr<scalar_t>(), sc,
                             scalar_t(rs[kCc]), scalar_t(kappa), R.data_ptr<scalar_t>(), S8.data(), n);
  });
  const std::vector<double> s8 = sum_over_sequences(S8, n.B, 8);
  std::copy(s8.begin(), s8.end(), g);
  return {R, gs};
}

// (3, C) float64: see grad_sums_impl, summed over sequences.
at::Tensor grad_sums(const at::Tensor& G_, const at::Tensor& s_, const at::Tensor& W_, const at::Tensor& Q_,
                     const at::Tensor& R_) {
  const at::Tensor a = s_.contiguous();
  const Shape n = shape_of(a, "s");
  const at::Tensor G = gradient_like(G_, a), W = centres_like(W_, a);
  const at::Tensor Q = rows_like(Q_, a, 6, "Q"), R = rows_like(R_, a, 4, "R");
  std::vector<double> part(3 * n.C * n.B);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "grad_sums", [&] {
    grad_sums_impl<scalar_t>(G.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), W.data_ptr<scalar_t>(),
                             Q.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(), part.data(), n);
  });
  const std::vector<double> total = sum_over_sequences(part, n.B, 3 * n.C);
  at::Tensor out = float64_zeros({3, n.C});
  std::copy(total.begin(), total.end(), out.data_ptr<double>());
  return out;
}

// (ds, d_mu, d_beta, d_k, d_gamma, d_spread): the gradients of the batch norm's inputs, the last five in float64.
// The channel-level chain rule (nn.fused._backward), with sums = grad_sums and the Gs sums:
//   d_k = -sum(d_u u) / (2 k);  d_e = -sum(d_alpha px) / e^2
//   d_sqrt(k) = (spread's) + sum(d_h t) + mu_0 sum(d_h) + d_e (mu_0 + 2 sqrt(k));  d_mu_0 = sqrt(k) (d_e + sum(d_h))
//   d_k += d_mu_0 / (2 mu_0) + d_beta_0 / (2 beta_0)
//   (d_mu; d_beta) = sums[:2] + [[2 d|mu|^2 + d_mu_0 / mu_0, d(beta.mu)], [d(beta.mu), d_beta_0 / beta_0]] (mu; beta)
//   d_mu -= sums[2] + sum(d_px) mu + sum(d_q) beta
// then, in train mode, through the centroid (centroid_backward) into the means m, whose gradient spreads over
// the positions (grad_input_impl), and d_k += sum(d_tt) / 2 + d_sqrt(k) / (2 sqrt(k)).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> grad_input(
    const at::Tensor& G_, const at::Tensor& s_, const at::Tensor& W_, const at::Tensor& W64_, const at::Tensor& P_,
    const at::Tensor& Q_, const at::Tensor& R_, const at::Tensor& sums_, const at::Tensor& gs_, const at::Tensor& sc_,
    const c10::optional<at::Tensor>& m_, const c10::optional<at::Tensor>& cd_) {
  const at::Tensor a = s_.contiguous();
  const Shape n = shape_of(a, "s");
  const at::Tensor G = gradient_like(G_, a), W = centres_like(W_, a);
  const at::Tensor P = rows_like(P_, a, 9, "P"), Q = rows_like(Q_, a, 6, "Q"), R = rows_like(R_, a, 4, "R");
  TORCH_CHECK(m_.has_value() == cd_.has_value(), "give cd with m");
  const double *mu = float64s(W64_, 2 * n.C, "W64"), *beta = mu + n.C;
  const double* sums = float64s(sums_, 3 * n.C, "sums");
  const double* g = float64s(gs_, kNumGs, "gs");
  const double* sc = float64s(sc_, kNumSc, "sc");
  const double k = sc[kK], sk = sc[kSk], mu0 = sc[kMu0], beta0 = sc[kBeta0], e = sc[kE];
  double d_k = -g[kSumDuU] / (k + k);
  const double d_e = -g[kSumDaPx] / (e * e);
  const double d_sk = g[kDSkSpread] + g[kSumDhT] + g[kSumDh] * mu0 + d_e * (mu0 + sk + sk);
  const double d_mu0 = (d_e + g[kSumDh]) * sk;
  d_k += d_mu0 / (mu0 + mu0) + g[kDBeta0] / (beta0 + beta0);
  const double p00 = 2 * g[kDMm] + d_mu0 / mu0, p01 = g[kDBm], p11 = g[kDBeta0] / beta0;
  at::Tensor d_mu = float64_zeros({n.C}), d_beta = float64_zeros({n.C});
  double *dmu = d_mu.data_ptr<double>(), *dbeta = d_beta.data_ptr<double>();
  for (int64_t c = 0; c < n.C; ++c) {
    dmu[c] = sums[c] + p00 * mu[c] + p01 * beta[c] - sums[2 * n.C + c] - g[kSumDpx] * mu[c] - g[kSumDq] * beta[c];
    dbeta[c] = sums[n.C + c] + p01 * mu[c] + p11 * beta[c];
  }
  std::vector<double> dm;
  if (m_.has_value()) {  // mu = centroid(m): into the means, and from them into s and t
    const double* m = float64s(*m_, n.B * (n.C + 1), "m");
    const double* cd = float64s(*cd_, 2 * n.B, "cd");
    dm.resize(n.B * (n.C + 1));
    d_k += centroid_backward(dmu, mu, m, cd, sc, n, dm.data());
  }
  at::Tensor ds = at::empty_like(a);
  std::vector<double> dtt(n.B);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "grad_input", [&] {
    grad_input_impl<scalar_t>(G.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), W.data_ptr<scalar_t>(),
                              P.data_ptr<scalar_t>(), Q.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(),
                              dm.empty() ? nullptr : dm.data(), ds.data_ptr<scalar_t>(), dtt.data(), n);
  });
  d_k += sum_over_sequences(dtt, n.B, 1)[0] / 2 + d_sk / (sk + sk);
  const at::TensorOptions f64 = at::TensorOptions().dtype(at::kDouble);
  return {ds, d_mu, d_beta, at::scalar_tensor(d_k, f64), at::scalar_tensor(g[kDGamma], f64),
          at::scalar_tensor(g[kDSpread], f64)};
}

// Registered as torch operators (torch.ops.biostrata.*), so that the profiler and dispatch-level tools
// (benchmarks/step_time.py counts the full-size reads and writes of each operator) see them.
TORCH_LIBRARY(biostrata, m) {
  m.def("stats(Tensor s, Tensor k) -> (Tensor, Tensor)");  // t (B, 1, L), m (B, C + 1)
  m.def("centre(Tensor s, Tensor? m, Tensor? t, Tensor? mu, Tensor beta, Tensor k) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");  // P, W, W64, sc, cd
  m.def("rescale(Tensor s, Tensor w, Tensor p, Tensor sc, Tensor gamma, Tensor? spread, float eps, float limit) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");  // out, Q, rs, spread, clipped
  m.def("grad_positions(Tensor g, Tensor s, Tensor w, Tensor p, Tensor q, Tensor sc, Tensor rs, bool batch_spread, "
        "float eps) -> (Tensor, Tensor)");  // R (B, 4, L), gs
  m.def("grad_sums(Tensor g, Tensor s, Tensor w, Tensor q, Tensor r) -> Tensor");  // (3, C)
  m.def("grad_input(Tensor g, Tensor s, Tensor w, Tensor w64, Tensor p, Tensor q, Tensor r, Tensor sums, "
        "Tensor gs, Tensor sc, Tensor? m, Tensor? cd) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(biostrata, CPU, m) {
  m.impl("stats", &stats);
  m.impl("centre", &centre);
  m.impl("rescale", &rescale);
  m.impl("grad_positions", &grad_positions);
  m.impl("grad_sums", &grad_sums);
  m.impl("grad_input", &grad_input);
}
