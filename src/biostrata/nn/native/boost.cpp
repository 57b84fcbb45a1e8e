// The full-size passes of the Lorentz batch norm (biostrata.nn.fused), one loop over the activations each.
//
// Every kernel reads (B, C, L) tensors, contiguous, position l fastest, and works on one sequence b at a
// time (at::parallel_for over b, on torch's intra-op threads): within a sequence it walks the channels in
// order and, for each, the positions, so every full-size tensor is read once, front to back, and the
// per-position results (B, ., L) stay in cache. x is a centred input, x[b, c, l] = a[b, c, l] - shift[c]
// (shift empty: no centring), formed on the fly and never stored. Results do not depend on the thread
// count: each sequence is summed in a fixed order, and sums over sequences are left to the caller.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <ATen/Parallel.h>

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

// xx[b, l] = sum_c x^2 (or, with g, sum_c g x); w0, w1[b, l] = sum_c W[i, c] v, v = x (or g)
template <typename T>
void dots_impl(const T* g, const T* a, const T* shift, const T* W, T* xx, T* w, Shape n) {
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* q = xx + b * n.L;
      T* w0 = w + 2 * b * n.L;
      T* w1 = w0 + n.L;
      std::fill(q, q + n.L, T(0));
      std::fill(w0, w0 + 2 * n.L, T(0));
      for (int64_t c = 0; c < n.C; ++c) {
        const T* row = a + (b * n.C + c) * n.L;
        const T sh = shift ? shift[c] : T(0);
        const T u0 = W[c], u1 = W[n.C + c];
        if (g) {
          const T* grow = g + (b * n.C + c) * n.L;
#pragma omp simd
          for (int64_t l = 0; l < n.L; ++l) {
            q[l] += grow[l] * (row[l] - sh);
            w0[l] += u0 * grow[l];
            w1[l] += u1 * grow[l];
          }
        } else {
#pragma omp simd
          for (int64_t l = 0; l < n.L; ++l) {
            const T v = row[l] - sh;
            q[l] += v * v;
            w0[l] += u0 * v;
            w1[l] += u1 * v;
          }
        }
      }
    }
  });
}

// out[b, i, c] = sum_l rg[b, i, l] g[b, c, l] + rx[b, i, l] x[b, c, l], i < 3
template <typename T>
void sums_impl(const T* g, const T* rg, const T* a, const T* shift, const T* rx, T* out, Shape n) {
  at::parallel_for(0, n.B, kGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T *rg0 = rg + 3 * b * n.L, *rg1 = rg0 + n.L, *rg2 = rg1 + n.L;
      const T *rx0 = rx + 3 * b * n.L, *rx1 = rx0 + n.L, *rx2 = rx1 + n.L;
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

at::Tensor positional(const Shape& n, int64_t rows, const at::Tensor& like) {
  return at::empty({n.B, rows, n.L}, like.options());
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

std::tuple<at::Tensor, at::Tensor> dots(const c10::optional<at::Tensor>& g_, const at::Tensor& a_,
                             const c10::optional<at::Tensor>& shift_, const at::Tensor& W_) {
  const at::Tensor a = a_.contiguous(), W = W_.contiguous();
  const Shape n = shape_of(a, "x");
  TORCH_CHECK(W.dim() == 2 && W.size(0) == 2 && W.size(1) == n.C, "W must be (2, C)");
  at::Tensor g;
  if (g_.has_value()) {
    g = g_->contiguous();
    TORCH_CHECK(g.sizes() == a.sizes(), "g must have the shape of x");
  }
  c10::optional<at::Tensor> shift;
  if (shift_.has_value()) shift = shift_->contiguous();
  at::Tensor xx = positional(n, 1, a), w = positional(n, 2, a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "dots", [&] {
    dots_impl<scalar_t>(g.defined() ? g.data_ptr<scalar_t>() : nullptr, a.data_ptr<scalar_t>(),
                        shift_ptr<scalar_t>(shift, n.C), W.data_ptr<scalar_t>(), xx.data_ptr<scalar_t>(),
                        w.data_ptr<scalar_t>(), n);
  });
  return {xx, w};
}

at::Tensor sums(const at::Tensor& g_, const at::Tensor& rg_, const at::Tensor& a_,
                const c10::optional<at::Tensor>& shift_, const at::Tensor& rx_) {
  const at::Tensor g = g_.contiguous(), rg = rg_.contiguous(), a = a_.contiguous(), rx = rx_.contiguous();
  const Shape n = shape_of(a, "x");
  TORCH_CHECK(g.sizes() == a.sizes(), "g must have the shape of x");
  TORCH_CHECK(rg.sizes() == at::IntArrayRef({n.B, 3, n.L}) && rx.sizes() == rg.sizes(), "rows must be (B, 3, L)");
  c10::optional<at::Tensor> shift;
  if (shift_.has_value()) shift = shift_->contiguous();
  at::Tensor out = at::empty({n.B, 3, n.C}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "sums", [&] {
    sums_impl<scalar_t>(g.data_ptr<scalar_t>(), rg.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(),
                        shift_ptr<scalar_t>(shift, n.C), rx.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n);
  });
  return out;
}

at::Tensor combine(const c10::optional<at::Tensor>& g_, const c10::optional<at::Tensor>& p_, const at::Tensor& a_,
                   const c10::optional<at::Tensor>& shift_, const at::Tensor& q_, const at::Tensor& V_,
                   const at::Tensor& R_) {
  const at::Tensor a = a_.contiguous(), q = q_.contiguous(), V = V_.contiguous(), R = R_.contiguous();
  const Shape n = shape_of(a, "x");
  const int64_t nv = V.size(1);
  TORCH_CHECK(V.dim() == 3 && V.size(0) == n.B && V.size(2) == n.C && (nv == 2 || nv == 3), "V must be (B, 2 or 3, C)");
  TORCH_CHECK(R.sizes() == at::IntArrayRef({n.B, nv, n.L}), "R must be (B, V, L)");
  TORCH_CHECK(q.numel() == n.B * n.L, "q must be (B, 1, L)");
  at::Tensor g, p;
  if (g_.has_value()) {
    g = g_->contiguous();
    p = p_.value().contiguous();
    TORCH_CHECK(g.sizes() == a.sizes() && p.numel() == n.B * n.L, "g must have the shape of x, p (B, 1, L)");
  }
  c10::optional<at::Tensor> shift;
  if (shift_.has_value()) shift = shift_->contiguous();
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

// Registered as torch operators (torch.ops.biostrata.*), so that the profiler and dispatch-level tools
// (benchmarks/step_time.py counts the full-size reads and writes of each operator) see them.
TORCH_LIBRARY(biostrata, m) {
  m.def("stats(Tensor s) -> (Tensor, Tensor)");  // sum_c s^2 (B, 1, L), mean_l s (B, C)
  m.def("dots(Tensor? g, Tensor x, Tensor? shift, Tensor w) -> (Tensor, Tensor)");  // x^2 or g x; w x or w g
  m.def("sums(Tensor g, Tensor rg, Tensor x, Tensor? shift, Tensor rx) -> Tensor");  // (B, 3, C)
  m.def("combine(Tensor? g, Tensor? p, Tensor x, Tensor? shift, Tensor q, Tensor v, Tensor r) -> Tensor");
}

TORCH_LIBRARY_IMPL(biostrata, CPU, m) {
  m.impl("stats", &stats);
  m.impl("dots", &dots);
  m.impl("sums", &sums);
  m.impl("combine", &combine);
}
