#pragma once
// bfloat16 convolutions and matmuls on a backend whose own kernels are float32: the operands are
// widened, the float32 kernel multiplies them (float32 accumulation: bfloat16 products are exact in
// float32) and the result is rounded once to bfloat16 - the arithmetic of a tensor-core bfloat16
// product, so every backend gives the same answer up to summation order.
#include "isrn/tensor.hpp"

namespace isrn::detail {

// Runs float32_kernel(a32, b32, out32) and rounds into `out` when `out` is bfloat16; returns false
// (doing nothing) otherwise, so the caller runs its own kernel.
template <typename Float32Kernel>
bool run_widened(const Tensor& a, const Tensor& b, Tensor& out, Float32Kernel&& float32_kernel) {
  if (out.dtype() != DType::BFloat16) return false;
  const Tensor a32 = a.to(DType::Float32), b32 = b.to(DType::Float32);
  Tensor out32 = empty(out.shape(), TensorOptions(DType::Float32).device(out.device()));
  float32_kernel(a32, b32, out32);
  out.copy_(out32);
  return true;
}

}  // namespace isrn::detail
