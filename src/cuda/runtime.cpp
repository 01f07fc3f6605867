// The CUDA runtime layer: device discovery, error reporting, the caching allocator, copies between
// host and device, pinned host buffers and the TF32 switch.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda/allocator.hpp"
#include "cuda/common.cuh"

namespace isrn {

namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

const char* base_name(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

}  // namespace

namespace cuda {

void throw_cuda_error(const char* call, cudaError_t err, const char* file, int line) {
  // A failed call also sets the thread's last error; clear it (when it is not sticky) so the next
  // launch check does not report this failure a second time.
  (void)cudaGetLastError();
  detail::throw_error(file, line,
                      detail::concat("[cuda] ", call, " failed: ", cudaGetErrorName(err), " (",
                                     cudaGetErrorString(err), ") at ", base_name(file), ":", line));
}

bool sync_after_launch() {
  static const bool sync = env_flag("ISRN_CUDA_SYNC_DEBUG");
  return sync;
}

// --- device guard --------------------------------------------------------------------------------

DeviceGuard::DeviceGuard(int device) {
  ISRN_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) ISRN_CUDA_CHECK(cudaSetDevice(device));
  else previous_ = -1;  // nothing to restore
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) (void)cudaSetDevice(previous_);  // destructors never throw
}

// --- caching allocator ---------------------------------------------------------------------------

size_t DeviceAllocator::segment_size_for(size_t rounded) {
  if (rounded <= kSmallRequest) return kSmallSegment;
  if (rounded < kMidRequest) return kLargeSegment;
  return (rounded + kLargeRound - 1) / kLargeRound * kLargeRound;
}

void DeviceAllocator::add_active(int64_t delta) {
  stats_.active_bytes += delta;
  if (stats_.active_bytes > stats_.peak_active_bytes) stats_.peak_active_bytes = stats_.active_bytes;
}

void DeviceAllocator::add_reserved(int64_t delta) {
  stats_.reserved_bytes += delta;
  if (stats_.reserved_bytes > stats_.peak_reserved_bytes) stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

void* DeviceAllocator::device_malloc(size_t nbytes) {
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, nbytes);
  if (err == cudaErrorMemoryAllocation && caching_) {
    (void)cudaGetLastError();
    release_pool(small_pool_);
    release_pool(large_pool_);
    err = cudaMalloc(&ptr, nbytes);
  }
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    return nullptr;
  }
  if (err != cudaSuccess) throw_cuda_error("cudaMalloc", err, __FILE__, __LINE__);
  ++stats_.num_device_mallocs;
  add_reserved(static_cast<int64_t>(nbytes));
  return ptr;
}

void DeviceAllocator::device_free(void* ptr, size_t nbytes) {
  ISRN_CUDA_CHECK(cudaFree(ptr));
  ++stats_.num_device_frees;
  add_reserved(-static_cast<int64_t>(nbytes));
}

void DeviceAllocator::throw_out_of_memory(size_t requested) {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
  detail::throw_error(__FILE__, __LINE__,
                      detail::concat("[cuda] out of memory allocating ", requested, " bytes on cuda:", device_,
                                     " (", stats_.active_bytes, " bytes active, ", stats_.reserved_bytes,
                                     " reserved, ", stats_.reserved_bytes - stats_.active_bytes,
                                     " of them cached; the device reports ", free_bytes, " of ", total_bytes,
                                     " bytes free)"));
}

void* DeviceAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!caching_) {
    void* ptr = device_malloc(nbytes);
    if (ptr == nullptr) throw_out_of_memory(nbytes);
    direct_[ptr] = nbytes;
    add_active(static_cast<int64_t>(nbytes));
    return ptr;
  }
  const size_t size = round_size(nbytes);
  const bool small = size <= kSmallRequest;
  Pool& pool = pool_of(small);
  Block key;
  key.size = size;
  Block* block = nullptr;
  if (auto it = pool.lower_bound(&key); it != pool.end()) {
    block = *it;
    pool.erase(it);
  } else {
    const size_t segment = segment_size_for(size);
    void* ptr = device_malloc(segment);
    if (ptr == nullptr) throw_out_of_memory(nbytes);
    block = new Block{ptr, segment, small, false, nullptr, nullptr};
  }
  const size_t remaining = block->size - size;
  if (small ? remaining >= kRound : remaining > kSmallRequest) {
    Block* rest = new Block{static_cast<char*>(block->ptr) + size, remaining, small, false, block, block->next};
    if (block->next) block->next->prev = rest;
    block->next = rest;
    block->size = size;
    pool.insert(rest);
  }
  block->allocated = true;
  active_[block->ptr] = block;
  add_active(static_cast<int64_t>(block->size));
  return block->ptr;
}

void DeviceAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!caching_) {
    auto it = direct_.find(ptr);
    ISRN_ASSERT(it != direct_.end(), "[cuda] freeing a pointer the allocator did not hand out");
    const size_t nbytes = it->second;
    direct_.erase(it);
    add_active(-static_cast<int64_t>(nbytes));
    device_free(ptr, nbytes);
    return;
  }
  auto it = active_.find(ptr);
  ISRN_ASSERT(it != active_.end(), "[cuda] freeing a pointer the allocator did not hand out");
  Block* block = it->second;
  active_.erase(it);
  block->allocated = false;
  add_active(-static_cast<int64_t>(block->size));
  Pool& pool = pool_of(block->small_pool);
  if (Block* prev = block->prev; prev != nullptr && !prev->allocated) {
    pool.erase(prev);  // before its size (the set's key) changes
    prev->size += block->size;
    prev->next = block->next;
    if (block->next) block->next->prev = prev;
    delete block;
    block = prev;
  }
  if (Block* next = block->next; next != nullptr && !next->allocated) {
    pool.erase(next);
    block->size += next->size;
    block->next = next->next;
    if (next->next) next->next->prev = block;
    delete next;
  }
  pool.insert(block);
}

void DeviceAllocator::release_pool(Pool& pool) {
  for (auto it = pool.begin(); it != pool.end();) {
    Block* block = *it;
    if (block->prev == nullptr && block->next == nullptr) {  // a whole segment, unused
      it = pool.erase(it);
      device_free(block->ptr, block->size);
      delete block;
    } else {
      ++it;
    }
  }
}

void DeviceAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_pool(small_pool_);
  release_pool(large_pool_);
}

MemoryStats DeviceAllocator::stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void DeviceAllocator::reset_peaks() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_active_bytes = stats_.active_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

bool caching_enabled() {
  static const bool caching = !env_flag("ISRN_CUDA_NO_CACHE");
  return caching;
}

namespace {
void check_device_index(int device, const char* what) {
  const int count = cuda_runtime::device_count();
  ISRN_CHECK(count > 0, "[", what, "] a CUDA device was asked for, but no CUDA GPU is present");
  ISRN_CHECK(device >= 0 && device < count, "[", what, "] device cuda:", device, " does not exist (", count,
             " visible)");
}
}  // namespace

DeviceAllocator& device_allocator(int device) {
  // Leaked on purpose: storages freed during static destruction must still find their allocator.
  static std::vector<DeviceAllocator*>* allocators = [] {
    auto* all = new std::vector<DeviceAllocator*>();
    for (int d = 0; d < cuda_runtime::device_count(); ++d) all->push_back(new DeviceAllocator(d, caching_enabled()));
    return all;
  }();
  check_device_index(device, "cuda allocator");
  return *(*allocators)[device];
}

MemoryStats memory_stats(int device) {
  if (cuda_runtime::device_count() == 0) return {};
  return device_allocator(device).stats();
}

void reset_peak_stats(int device) {
  if (cuda_runtime::device_count() == 0) return;
  device_allocator(device).reset_peaks();
}

void empty_cache() {
  for (int d = 0; d < cuda_runtime::device_count(); ++d) {
    DeviceGuard guard(d);
    device_allocator(d).release_cached();
  }
}

// --- TF32 ------------------------------------------------------------------------------------------

namespace {
std::atomic<bool> tf32_allowed{false};
}
void set_allow_tf32(bool allow) { tf32_allowed.store(allow); }
bool allow_tf32() { return tf32_allowed.load(); }

}  // namespace cuda

// --- the backend's runtime entry points (src/backend.hpp) ------------------------------------------

namespace cuda_runtime {

int device_count() {
  // No driver or no GPU is an answer (zero), not an error: CPU-only use of a CUDA build must work.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

void* allocate_pinned(size_t nbytes) {
  // A CUDA build on a machine without a GPU has nothing to lock pages for.
  if (device_count() == 0) return nullptr;
  void* ptr = nullptr;
  ISRN_CUDA_CHECK(cudaHostAlloc(&ptr, std::max<size_t>(nbytes, 1), cudaHostAllocDefault));
  return ptr;
}

void deallocate_pinned(void* ptr) noexcept {
  if (ptr != nullptr) (void)cudaFreeHost(ptr);  // at process exit the runtime may be gone: nothing to report
}

void copy_to_device_async(void* dst, int device, const void* src, size_t nbytes, void*& event) {
  cuda::DeviceGuard guard(device);
  if (event == nullptr) {
    cudaEvent_t created = nullptr;
    ISRN_CUDA_CHECK(cudaEventCreateWithFlags(&created, cudaEventDisableTiming));
    event = created;
  }
  ISRN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, cuda::current_stream()));
  ISRN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), cuda::current_stream()));
}

void wait_event(void* event) {
  if (event != nullptr) ISRN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

void destroy_event(void* event) noexcept {
  if (event != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

void synchronize(int device) {
  cuda::DeviceGuard guard(device);
  ISRN_CUDA_CHECK(cudaStreamSynchronize(cuda::current_stream()));
}

void* allocate(size_t nbytes, int device) {
  cuda::check_device_index(device, "cuda allocate");
  if (nbytes == 0) return nullptr;
  cuda::DeviceGuard guard(device);
  return cuda::device_allocator(device).allocate(nbytes);
}

void deallocate(void* ptr, int device) {
  if (ptr == nullptr) return;
  cuda::DeviceGuard guard(device);
  cuda::device_allocator(device).deallocate(ptr);
}

void memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  const cudaStream_t stream = cuda::current_stream();
  if (dst_device.is_cuda() && src_device.is_cuda()) {
    if (dst_device.index == src_device.index) {
      cuda::DeviceGuard guard(dst_device.index);
      ISRN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream));
    } else {
      ISRN_CUDA_CHECK(cudaMemcpyPeer(dst, dst_device.index, src, src_device.index, nbytes));
    }
    return;
  }
  // A host side is involved: the host buffer may be pageable and may be freed or read as soon as we
  // return, so the copy completes before returning.
  const int device = dst_device.is_cuda() ? dst_device.index : src_device.index;
  cuda::DeviceGuard guard(device);
  const cudaMemcpyKind kind = dst_device.is_cuda() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  ISRN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, stream));
  ISRN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace cuda_runtime

}  // namespace isrn
