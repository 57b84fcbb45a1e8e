// What biostrata's kernels (boost.cpp, conv.cpp) share.
#pragma once

#include <ATen/ATen.h>

// The value of a one-element tensor (the curvature k, gamma, a spread), as a double.
inline double value_of(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.numel() == 1, name, " must be a single value, got a tensor of shape ", t.sizes());
  return t.item<double>();
}
