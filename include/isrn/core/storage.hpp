#pragma once
#include <cstddef>
#include <memory>

#include "isrn/core/device.hpp"

namespace isrn {

// A flat, owned allocation on one device. CPU memory is 64-byte aligned; CUDA memory comes from the
// caching allocator. Tensors share storages through shared_ptr; views point into the same storage.
class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

// Copies bytes between any two devices (host↔device, device↔device, host↔host).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace isrn
