#pragma once
// Mixed precision (PyTorch's autocast, for the ops where it pays: conv2d and matmul).
//
// Inside an AutocastGuard(DType::BFloat16), conv2d given float32 operands casts the input and weight
// to bfloat16, convolves them with float32 accumulation (tensor cores on the GPU through cuDNN), and
// returns the result cast back to float32, with the float32 bias added after; matmul likewise
// (cuBLAS's bfloat16 GEMM on the GPU). Everything else -
// GroupNorm statistics, activations, losses, the optimizer's master weights - stays float32. The
// casts are ordinary differentiable ops, so the backward pass needs no mode: the convolution's node
// saves its bfloat16 operands (half the bytes of float32), its two gradient convolutions run in
// bfloat16 too, and the casts' backward hands float32 gradients to the float32 weights. bfloat16
// keeps float32's exponent range, so no loss scaling is needed.
//
// float64 operands are never cast (they are the reference dtype), and bfloat16 operands pass as they are.
#include <string>

#include "isrn/core/dtype.hpp"

namespace isrn {

struct Autocast {
  // The dtype float32 convolutions compute in on this thread: Float32 (autocast off) or BFloat16.
  static DType compute_dtype();
  static void set_compute_dtype(DType dtype);  // throws for anything but Float32 or BFloat16
};

// Sets the compute dtype for its scope and restores the previous one at its end.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType compute_dtype) : previous_(Autocast::compute_dtype()) {
    Autocast::set_compute_dtype(compute_dtype);
  }
  ~AutocastGuard() { Autocast::set_compute_dtype(previous_); }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType previous_;
};

// "fp32" / "bf16" (the configuration and command-line spelling) ↔ the compute dtype.
DType parse_precision(const std::string& name);
std::string precision_name(DType compute_dtype);

}  // namespace isrn
