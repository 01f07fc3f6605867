#pragma once
// Small device helpers shared by the detector kernels (conv, norm, loss, boxes): fast integer
// division, warp/block reductions, the SM count, and scratch tensors from the caching allocator.
// Kept in their own namespace so they cannot collide with the elementwise backend's helpers.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/det_utils.hpp"

namespace isrn::cuda::det {

// n / d and n % d by a multiply-high and a shift (Granlund–Montgomery, as PyTorch's IntDivider).
// Exact for 0 <= n < 2^31 and 1 <= d < 2^31; the host checks the ranges before building one.
struct IntDivider {
  uint32_t divisor = 1;
  uint32_t multiplier = 1;
  uint32_t shift = 0;

  IntDivider() = default;
  __host__ explicit IntDivider(uint32_t d) : divisor(d) {
    shift = 0;
    while (shift < 32 && (uint64_t{1} << shift) < d) ++shift;
    const uint64_t m = ((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d)) / d + 1;
    multiplier = static_cast<uint32_t>(m);
  }
  __host__ __device__ __forceinline__ uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t t = __umulhi(n, multiplier);
#else
    const uint32_t t = static_cast<uint32_t>((uint64_t{n} * multiplier) >> 32);
#endif
    return (t + n) >> shift;
  }
  __host__ __device__ __forceinline__ void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

// A read-only global load through the non-coherent cache on the device; a plain load on the host
// (the operand loaders are host-callable so their index math can be exercised without a GPU).
template <typename T>
__host__ __device__ __forceinline__ T load_ro(const T* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}

// Sum of a value over a full warp; every lane gets the result.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of a pair over the whole block (blockDim.x a multiple of 32, at most 1024); the result is
// valid in thread 0. `scratch` holds 2 * 32 values. Ends with a barrier so scratch can be reused.
template <typename T>
__device__ __forceinline__ void block_sum2(T& a, T& b, T* scratch) {
  a = warp_sum(a);
  b = warp_sum(b);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    scratch[warp] = a;
    scratch[32 + warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    a = lane < warps ? scratch[lane] : T(0);
    b = lane < warps ? scratch[32 + lane] : T(0);
    a = warp_sum(a);
    b = warp_sum(b);
  }
  __syncthreads();
}

}  // namespace isrn::cuda::det
