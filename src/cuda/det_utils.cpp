// Host side of the detector kernels' helpers (det_utils.cuh).
#include "cuda/det_utils.hpp"

#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <limits>

#include "cuda/common.cuh"

namespace isrn::cuda::det {

int multiprocessor_count() {
  constexpr int kMaxDevices = 64;
  static std::array<std::atomic<int>, kMaxDevices> cached{};
  int device = 0;
  ISRN_CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices) device = 0;
  int count = cached[device].load(std::memory_order_relaxed);
  if (count == 0) {
    ISRN_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    cached[device].store(count, std::memory_order_relaxed);
  }
  return count;
}

Tensor scratch(const Shape& shape, DType dtype, Device device) {
  return empty(shape, TensorOptions(dtype).device(device));
}

void check_int32_range(const char* op, const char* what, int64_t n) {
  ISRN_CHECK(n >= 0 && n < std::numeric_limits<int32_t>::max(), "[", op, "] ", what, " (", n,
             ") exceeds the 32-bit index range of the CUDA kernel");
}

}  // namespace isrn::cuda::det
