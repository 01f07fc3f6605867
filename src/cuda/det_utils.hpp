#pragma once
// Host side of the detector kernels' helpers (device side: det_utils.cuh). Plain C++, so the
// host-compiled sources (cuDNN path) can use it too.
#include "isrn/tensor.hpp"

namespace isrn::cuda::det {

// Multiprocessors of the current device (cached per device).
int multiprocessor_count();

// A contiguous scratch tensor on `device` from the caching allocator.
Tensor scratch(const Shape& shape, DType dtype, Device device);

// Throws unless n fits the 32-bit index math of the kernels that use IntDivider.
void check_int32_range(const char* op, const char* what, int64_t n);

}  // namespace isrn::cuda::det
