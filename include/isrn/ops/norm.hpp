#pragma once
#include "isrn/tensor.hpp"

namespace isrn {

// GroupNorm over NC... (any spatial rank ≥ 0). gamma, beta: [C], may be undefined (then 1 and 0).
// fuse_relu applies max(0, ·) to the output in the same pass (and masks the gradient).
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& gamma, const Tensor& beta,
                  double eps = 1e-5, bool fuse_relu = false);
// The op-by-op definition (reshape, mean, variance, affine): the oracle for the fused kernels.
Tensor group_norm_composite(const Tensor& x, int64_t groups, const Tensor& gamma, const Tensor& beta,
                            double eps = 1e-5);

}  // namespace isrn
