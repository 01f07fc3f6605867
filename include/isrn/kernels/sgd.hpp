#pragma once
// One parameter element's SGD step, shared by the CPU loop and the CUDA kernel (kernel_list.inc:
// sgd_update). `R` is the element type on the CPU and, on the GPU, cuda::Rounded<T>, whose operators
// round as written: the steps must not be contracted into fused multiply-adds, or the fused update
// would differ in the last bit from the op-by-op sequence it replaces (src/cpu/optim.cpp is compiled
// with -ffp-contract=off for the same reason).
#include "isrn/core/host_device.hpp"

namespace isrn::kernels {

struct SgdFlags {
  bool weight_decay, momentum, nesterov, first_step;
};

// Returns the updated parameter; updates `buf` (the momentum buffer) when f.momentum.
template <typename R>
ISRN_HOST_DEVICE R sgd_step(R param, R grad, R& buf, R lr, R momentum, R weight_decay, SgdFlags f) {
  R d = f.weight_decay ? grad + param * weight_decay : grad;
  if (f.momentum) {
    buf = f.first_step ? d : buf * momentum + d;
    d = f.nesterov ? d + buf * momentum : buf;
  }
  return param - d * lr;
}

}  // namespace isrn::kernels
