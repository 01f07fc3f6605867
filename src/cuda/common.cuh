#pragma once
// Shared CUDA plumbing: checked calls, launch checks, the current stream, grid-stride loops.
// Every CUDA/cuBLAS/cuDNN call goes through a check; every launch is followed by ISRN_CUDA_LAUNCH_CHECK.
#include <cuda_runtime.h>

#include <cstdint>

#include "backend.hpp"

namespace isrn::cuda {

[[noreturn]] void throw_cuda_error(const char* call, cudaError_t err, const char* file, int line);

// ISRN_CUDA_SYNC_DEBUG=1 (read once) synchronizes after every launch so an asynchronous error is
// reported by the kernel that caused it.
bool sync_after_launch();

// The stream all isrn work is issued on (the legacy default stream for now: one stream, in order).
inline cudaStream_t current_stream() { return nullptr; }

// Grid size for a grid-stride loop over n items with `block` threads (capped; the loop covers the rest).
inline unsigned int grid_for(int64_t n, int block = 256) {
  const int64_t blocks = (n + block - 1) / block;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

}  // namespace isrn::cuda

#define ISRN_CUDA_CHECK(call)                                                              \
  do {                                                                                     \
    cudaError_t isrn_err_ = (call);                                                        \
    if (isrn_err_ != cudaSuccess) ::isrn::cuda::throw_cuda_error(#call, isrn_err_, __FILE__, __LINE__); \
  } while (0)

// After every <<<>>>: reports launch errors and, in sync-debug mode, execution errors by kernel name.
#define ISRN_CUDA_LAUNCH_CHECK(kernel_name)                                                \
  do {                                                                                     \
    cudaError_t isrn_err_ = cudaGetLastError();                                            \
    if (isrn_err_ == cudaSuccess && ::isrn::cuda::sync_after_launch())                     \
      isrn_err_ = cudaStreamSynchronize(::isrn::cuda::current_stream());                   \
    if (isrn_err_ != cudaSuccess) ::isrn::cuda::throw_cuda_error(kernel_name, isrn_err_, __FILE__, __LINE__); \
  } while (0)

// for (i = global thread; i < n; i += grid stride), 64-bit indices.
#define ISRN_CUDA_KERNEL_LOOP(i, n)                                                       \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);    \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
