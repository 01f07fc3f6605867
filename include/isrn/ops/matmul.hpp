#pragma once
#include "isrn/tensor.hpp"

namespace isrn {

// [M,K]·[K,N] → [M,N], or batched [B,M,K]·[B,K,N] → [B,M,N]. Float32/float64.
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace isrn
