// The time term of the Lorentz convolution (biostrata.nn.lorentz.LorentzConv1d) on the CPU, forwards and
// backwards, in two operators (torch.ops.biostrata.*; boost.cpp defines the library):
//
//   y[b, o, l'] += w[o] t[b, l'],   t[b, l'] = sqrt(k + sum_{i < K} sq[b, l' - P + i]),   sq[b, l] = |s[b, :, l]|^2
//
// for the convolution's output y (B, O, L'), its input s (B, C, L), kernel size K, zero padding P and stride 1
// (L' = L + 2 P - K + 1; sq is 0 outside 0..L-1): the time coordinate of the Lorentz direct concatenation of
// the window's points. nn.fused has the same in torch operations (squared norm, avg_pool1d, sqrt, a rank-one
// update). Each operator walks one sequence at a time (at::parallel_for over b) and reads each full-size
// tensor once; sums over sequences are added up in order of b, so results do not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include "common.h"

#include <algorithm>
#include <vector>

namespace {

struct Dims {
  int64_t B, C, L, O, Lout, K, P;
};

Dims dims_of(const at::Tensor& y, const at::Tensor& s, const at::Tensor& w, int64_t K, int64_t P) {
  TORCH_CHECK(s.dim() == 3 && y.dim() == 3, "s and y must be (B, C, L) and (B, O, L'), got ", s.sizes(), " and ",
              y.sizes());
  TORCH_CHECK(s.scalar_type() == at::kFloat || s.scalar_type() == at::kDouble,
              "s must be float32 or float64, got ", s.scalar_type());
  TORCH_CHECK(y.scalar_type() == s.scalar_type() && w.scalar_type() == s.scalar_type(),
              "y, w and s must have one dtype, got ", y.scalar_type(), ", ", w.scalar_type(), ", ", s.scalar_type());
  TORCH_CHECK(s.device().is_cpu() && y.device().is_cpu() && w.device().is_cpu(), "y, w and s must be on the CPU");
  TORCH_CHECK(K >= 1 && P >= 0, "kernel_size must be >= 1 and padding >= 0, got ", K, " and ", P);
  const Dims d{s.size(0), s.size(1), s.size(2), y.size(1), s.size(2) + 2 * P - K + 1, K, P};
  TORCH_CHECK(y.size(0) == d.B && y.size(2) == d.Lout, "y must be (B, O, L + 2 P - K + 1) = (", d.B, ", O, ", d.Lout,
              ") for s of ", s.sizes(), ", got ", y.sizes());
  TORCH_CHECK(w.numel() == d.O, "w must hold one weight per output channel (", d.O, "), got ", w.sizes());
  return d;
}

template <typename T>
void time_term_impl(const T* s, const T* w, T k, T* y, T* t, Dims d) {
  using V = at::vec::Vectorized<T>;
  at::parallel_for(0, d.B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> sq(d.L);
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(sq.begin(), sq.end(), T(0));
      for (int64_t c = 0; c < d.C; ++c) {
        const T* row = s + (b * d.C + c) * d.L;
#pragma omp simd
        for (int64_t l = 0; l < d.L; ++l) sq[l] += row[l] * row[l];
      }
      T* tb = t + b * d.Lout;
      for (int64_t l = 0; l < d.Lout; ++l) {  // the window of output l: inputs l - P .. l - P + K - 1
        const int64_t lo = std::max<int64_t>(l - d.P, 0), hi = std::min<int64_t>(l - d.P + d.K, d.L);
        T acc = 0;
        for (int64_t i = lo; i < hi; ++i) acc += sq[i];
        tb[l] = acc;
      }
      for (int64_t l = 0; l < d.Lout; l += V::size()) {
        const int64_t m = std::min<int64_t>(V::size(), d.Lout - l);
        (V::loadu(tb + l, m) + V(k)).sqrt().store(tb + l, m);
      }
      for (int64_t o = 0; o < d.O; ++o) {
        T* row = y + (b * d.O + o) * d.Lout;
        const T wo = w[o];
#pragma omp simd
        for (int64_t l = 0; l < d.Lout; ++l) row[l] += wo * tb[l];
      }
    }
  });
}

// d_w[o] = sum_{b, l'} G t;  d_t = sum_o w[o] G;  d_u = d_t / (2 t) (u = k + window sum);  d_k = sum d_u;
// d_sq[l] = sum of d_u over the outputs whose window holds l;  d_s = 2 s d_sq.
template <typename T>
void time_term_backward_impl(const T* G, const T* s, const T* w, const T* t, T* ds, double* dw, double* dk, Dims d) {
  at::parallel_for(0, d.B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> du(d.Lout), dsq(d.L);
    for (int64_t b = b0; b < b1; ++b) {
      const T* tb = t + b * d.Lout;
      std::fill(du.begin(), du.end(), T(0));  // d_t until the positions' loop
      for (int64_t o = 0; o < d.O; ++o) {
        const T* row = G + (b * d.O + o) * d.Lout;
        const T wo = w[o];
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t l = 0; l < d.Lout; ++l) {
          du[l] += wo * row[l];
          acc += row[l] * tb[l];
        }
        dw[b * d.O + o] = acc;
      }
      double acc = 0;
      for (int64_t l = 0; l < d.Lout; ++l) {
        du[l] /= 2 * tb[l];
        acc += du[l];
      }
      dk[b] = acc;
      for (int64_t l = 0; l < d.L; ++l) {  // outputs l' with l - P + ... : l + P - K + 1 <= l' <= l + P
        const int64_t lo = std::max<int64_t>(l + d.P - d.K + 1, 0), hi = std::min<int64_t>(l + d.P + 1, d.Lout);
        T sum = 0;
        for (int64_t i = lo; i < hi; ++i) sum += du[i];
        dsq[l] = sum + sum;
      }
      for (int64_t c = 0; c < d.C; ++c) {
        const int64_t off = (b * d.C + c) * d.L;
        const T* row = s + off;
        T* out = ds + off;
#pragma omp simd
        for (int64_t l = 0; l < d.L; ++l) out[l] = row[l] * dsq[l];
      }
    }
  });
}

}  // namespace

// t (B, 1, L'): the time coordinates of the windows; y is updated in place (y += w t).
at::Tensor time_term(at::Tensor y, const at::Tensor& w_, const at::Tensor& s_, const at::Tensor& k, int64_t K,
                     int64_t P) {
  const at::Tensor s = s_.contiguous(), w = w_.contiguous();
  TORCH_CHECK(y.is_contiguous(), "y must be contiguous (a convolution's output)");
  const Dims d = dims_of(y, s, w, K, P);
  at::Tensor t = at::empty({d.B, 1, d.Lout}, s.options());
  const double kv = value_of(k, "k");
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "time_term", [&] {
    time_term_impl<scalar_t>(s.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), scalar_t(kv), y.data_ptr<scalar_t>(),
                             t.data_ptr<scalar_t>(), d);
  });
  return t;
}

// (d_s (B, C, L), d_w (O,) float64, d_k float64) for the output's gradient G (B, O, L') (y's own gradient is G).
std::tuple<at::Tensor, at::Tensor, at::Tensor> time_term_backward(const at::Tensor& G_, const at::Tensor& w_,
                                                                  const at::Tensor& s_, const at::Tensor& t_,
                                                                  int64_t K, int64_t P) {
  const at::Tensor G = G_.contiguous(), s = s_.contiguous(), w = w_.contiguous(), t = t_.contiguous();
  const Dims d = dims_of(G, s, w, K, P);
  TORCH_CHECK(t.numel() == d.B * d.Lout && t.scalar_type() == s.scalar_type(), "t must be (B, 1, L') of s's dtype");
  at::Tensor ds = at::empty_like(s);
  std::vector<double> dw(d.B * d.O), dk(d.B);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "time_term_backward", [&] {
    time_term_backward_impl<scalar_t>(G.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                      t.data_ptr<scalar_t>(), ds.data_ptr<scalar_t>(), dw.data(), dk.data(), d);
  });
  const at::TensorOptions f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor d_w = at::zeros({d.O}, f64);
  double* out = d_w.data_ptr<double>();
  double d_k = 0;
  for (int64_t b = 0; b < d.B; ++b) {  // in order of b
    for (int64_t o = 0; o < d.O; ++o) out[o] += dw[b * d.O + o];
    d_k += dk[b];
  }
  return {ds, d_w, at::scalar_tensor(d_k, f64)};
}

TORCH_LIBRARY_FRAGMENT(biostrata, m) {
  m.def("time_term(Tensor(a!) y, Tensor w, Tensor s, Tensor k, int kernel_size, int padding) -> Tensor");  // t
  m.def("time_term_backward(Tensor g, Tensor w, Tensor s, Tensor t, int kernel_size, int padding) "
        "-> (Tensor, Tensor, Tensor)");  // d_s, d_w, d_k
}

TORCH_LIBRARY_IMPL(biostrata, CPU, m) {
  m.impl("time_term", &time_term);
  m.impl("time_term_backward", &time_term_backward);
}
