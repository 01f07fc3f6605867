#pragma once
// The CUDA caching allocator, after PyTorch's (c10/cuda/CUDACachingAllocator.cpp):
// - requests are rounded up to 512 B;
// - small requests (≤ 1 MiB) are carved from 2 MiB segments, kept in the small pool;
// - large requests of 1–10 MiB carve 20 MiB segments; larger ones get a segment rounded up to 2 MiB;
// - a request takes the best-fitting free block of its pool (smallest size, then lowest address)
//   and splits off the remainder when it is worth keeping (≥ 512 B in the small pool, > 1 MiB in
//   the large one); a freed block merges with free neighbours of its segment;
// - when cudaMalloc runs out of memory, every cached segment without live blocks is released and
//   the cudaMalloc retried once; a second failure throws isrn::Error with the size and the stats.
// All isrn work runs on one stream in order, so a freed block can be reused at once: later work on
// that stream runs after the work that used it.
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <unordered_map>

#include "isrn/cuda/runtime.hpp"

namespace isrn::cuda {

class DeviceAllocator {
 public:
  static constexpr size_t kRound = 512;                    // every block is a multiple of this
  static constexpr size_t kSmallRequest = 1 << 20;         // ≤ this: small pool
  static constexpr size_t kSmallSegment = 2 << 20;         // segment size of the small pool
  static constexpr size_t kMidRequest = 10 << 20;          // < this: one 20 MiB segment
  static constexpr size_t kLargeSegment = 20 << 20;
  static constexpr size_t kLargeRound = 2 << 20;           // larger requests round their segment to this

  DeviceAllocator(int device, bool caching) : device_(device), caching_(caching) {}
  DeviceAllocator(const DeviceAllocator&) = delete;
  DeviceAllocator& operator=(const DeviceAllocator&) = delete;

  // nbytes == 0 gives nullptr.
  void* allocate(size_t nbytes);
  void deallocate(void* ptr);
  void release_cached();
  MemoryStats stats();
  void reset_peaks();

  static size_t round_size(size_t nbytes) { return (nbytes + kRound - 1) / kRound * kRound; }
  static size_t segment_size_for(size_t rounded);

 private:
  struct Block {
    void* ptr = nullptr;
    size_t size = 0;
    bool small_pool = false;
    bool allocated = false;
    Block* prev = nullptr;  // neighbours within the same segment
    Block* next = nullptr;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const {
      if (a->size != b->size) return a->size < b->size;
      return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
    }
  };
  using Pool = std::set<Block*, BySizeThenAddress>;

  Pool& pool_of(bool small) { return small ? small_pool_ : large_pool_; }
  // cudaMalloc with one release-and-retry on out-of-memory; nullptr when both attempts fail.
  void* device_malloc(size_t nbytes);
  void device_free(void* ptr, size_t nbytes);
  void release_pool(Pool& pool);
  void add_active(int64_t delta);
  void add_reserved(int64_t delta);
  [[noreturn]] void throw_out_of_memory(size_t requested);

  int device_;
  bool caching_;
  std::mutex mutex_;
  Pool small_pool_, large_pool_;
  std::unordered_map<void*, Block*> active_;        // caching mode: block by pointer
  std::unordered_map<void*, size_t> direct_;        // no-cache mode: exact size by pointer
  MemoryStats stats_;
};

// The allocator of one device (created on first use; never destroyed, so tensors released during
// static destruction still find it).
DeviceAllocator& device_allocator(int device);

// Makes `device` current for the guard's lifetime.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace isrn::cuda
