// Built instead of src/cuda/*.cu when isrn has no CUDA backend: every CUDA entry point throws an
// isrn::Error that says so, and the runtime reports no devices.
#include <atomic>
#include <cstdlib>

#include "backend.hpp"
#include "isrn/cuda/conv.hpp"
#include "isrn/cuda/runtime.hpp"

namespace isrn {
namespace {
[[noreturn]] void no_cuda(const char* what) {
  ISRN_CHECK(false, "[", what, "] a CUDA tensor was used, but this build of isrn has no CUDA backend "
                               "(configure with -DISRN_WITH_CUDA=ON on a machine with nvcc)");
  throw;  // unreachable
}
}  // namespace

#define ISRN_KERNEL(ret, name, params) \
  ret cuda::name params { no_cuda(#name); }
#include "kernel_list.inc"
#undef ISRN_KERNEL

namespace cuda {
// Auto and Own are what a CUDA build without cuDNN would use; choosing them here is harmless.
void set_conv_backend(ConvBackend backend) {
  ISRN_CHECK(backend == ConvBackend::Auto || backend == ConvBackend::Own,
             "[set_conv_backend] cuDNN was asked for, but this build of isrn has no CUDA backend");
}
ConvBackend conv_backend() { return ConvBackend::Auto; }
bool conv_cudnn_built() { return false; }
namespace {
std::atomic<bool> conv_transforms_allowed{false};  // remembered so the getter agrees; no cuDNN to act on it
}
void set_allow_conv_transforms(bool allow) { conv_transforms_allowed.store(allow); }
bool allow_conv_transforms() { return conv_transforms_allowed.load(); }
}  // namespace cuda

namespace cuda_runtime {
void* allocate(size_t, int) { no_cuda("allocate"); }
void deallocate(void*, int) {}
void memcpy(void*, Device, const void*, Device, size_t) { no_cuda("copy"); }
int device_count() { return 0; }
void synchronize(int) {}
void* allocate_pinned(size_t) { return nullptr; }  // no GPU to lock pages for: the caller uses pageable memory
void deallocate_pinned(void*) noexcept {}
void copy_to_device_async(void*, int, const void*, size_t, void*&) { no_cuda("copy"); }
void wait_event(void*) {}
void destroy_event(void*) noexcept {}
}  // namespace cuda_runtime

// The user-facing CUDA controls exist in every build: no device memory, so nothing to report or release.
namespace cuda {
MemoryStats memory_stats(int) { return {}; }
void reset_peak_stats(int) {}
void empty_cache() {}
bool caching_enabled() { return false; }

namespace {
std::atomic<bool> tf32_allowed{false};  // remembered so the getter agrees with the setter; nothing reads it
}
void set_allow_tf32(bool allow) { tf32_allowed.store(allow); }
bool allow_tf32() { return tf32_allowed.load(); }

}  // namespace cuda

}  // namespace isrn
