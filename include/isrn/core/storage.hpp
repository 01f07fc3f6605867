#pragma once
#include <cstddef>
#include <memory>

#include "isrn/core/device.hpp"

namespace isrn {

// Where CPU memory comes from: ordinary pageable pages, or page-locked ("pinned") pages the GPU reads
// directly, so host-to-device copies run at full bus speed and may run while the host goes on.
enum class HostMemory { Pageable, Pinned };

// A flat, owned allocation on one device. CPU memory is 64-byte aligned; CUDA memory comes from the
// caching allocator. Tensors share storages through shared_ptr; views point into the same storage.
class Storage {
 public:
  // HostMemory::Pinned applies to CPU storage only; without a GPU to lock pages for, the memory is
  // pageable and pinned() says so.
  Storage(size_t nbytes, Device device, HostMemory host = HostMemory::Pageable);
  ~Storage();  // waits for device copies still reading the bytes
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }

  // Enqueues a copy of `nbytes` from `src` (inside this pinned storage) to `dst` on CUDA device
  // `dst_device` and returns without waiting for it. Writes to the bytes must wait_for_device_reads()
  // first; the destructor does. One thread at a time per storage (as any write to it).
  void copy_to_device_async(void* dst, Device dst_device, const void* src, size_t nbytes);
  // Blocks until every copy enqueued by copy_to_device_async has read its bytes.
  void wait_for_device_reads() const;

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  bool pinned_ = false;
  void* read_done_ = nullptr;  // the device event recorded after the last asynchronous copy (cudaEvent_t)
  int read_done_device_ = -1;
};

// Bytes held by CPU storages (pinned included) now and at most since the last reset: the host twin of
// cuda::memory_stats()'s active and peak figures, e.g. the activations a training step keeps on the CPU.
struct HostMemoryStats {
  size_t active_bytes = 0;
  size_t peak_active_bytes = 0;
};
HostMemoryStats host_memory_stats();
void reset_host_peak_memory();  // the peak restarts from the bytes active now

// Copies bytes between any two devices (host↔device, device↔device, host↔host); returns once the
// copy is complete.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace isrn
