#pragma once
// User-facing controls of the CUDA backend: the caching allocator's statistics, TF32 for float32
// matmuls, and page-locked host buffers. No CUDA headers: these compile and work in every build;
// without a CUDA backend the statistics are zero and the switches have nothing to act on.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "isrn/core/storage.hpp"

namespace isrn::cuda {

// Device memory seen through the caching allocator. Byte counts are of blocks as handed out
// (requests rounded up to 512 B); with ISRN_CUDA_NO_CACHE=1 they are the exact requested sizes.
struct MemoryStats {
  int64_t active_bytes = 0;         // in blocks currently owned by tensors or workspaces
  int64_t peak_active_bytes = 0;    // high-water mark of active_bytes since the last reset
  int64_t reserved_bytes = 0;       // in segments obtained from cudaMalloc (active plus cached)
  int64_t peak_reserved_bytes = 0;  // high-water mark of reserved_bytes since the last reset
  int64_t num_device_mallocs = 0;   // cudaMalloc calls made so far
  int64_t num_device_frees = 0;     // cudaFree calls made so far
};

MemoryStats memory_stats(int device = 0);
// Sets the peaks to the current values.
void reset_peak_stats(int device = 0);
// Returns every cached segment no tensor uses to the driver (cudaFree), on every device.
void empty_cache();
// False when ISRN_CUDA_NO_CACHE=1 was set at first use: each allocation is its own cudaMalloc of
// the exact size, so compute-sanitizer sees every allocation and every overrun.
bool caching_enabled();

// float32 matmuls use full FP32 arithmetic unless TF32 tensor cores are allowed here (about 10
// mantissa bits per product instead of 23, several times faster on Ampere and later).
void set_allow_tf32(bool allow);
bool allow_tf32();

// Page-locked host memory (cudaHostAlloc), so host↔device copies can run at full speed and
// asynchronously. Without a CUDA backend, or without a GPU, it is a plain 64-byte aligned buffer
// (pinned() says which). For tensors, TensorOptions::pinned_memory and Tensor::pin_memory do the same.
class PinnedBuffer {
 public:
  PinnedBuffer();
  explicit PinnedBuffer(size_t nbytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;

  void* data() const;
  size_t size() const;
  bool pinned() const;

 private:
  std::unique_ptr<Storage> storage_;  // none for zero bytes
};

}  // namespace isrn::cuda
