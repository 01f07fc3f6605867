#pragma once
// Declares the cpu:: and cuda:: kernel twins from one list, so their signatures cannot drift.
#include <array>

#include "isrn/ops/boxes.hpp"
#include "isrn/ops/conv.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/pool.hpp"
#include "isrn/ops/reduce.hpp"
#include "isrn/ops/resize.hpp"
#include "isrn/tensor.hpp"
#include "kernel_profile.hpp"

namespace isrn {
// The scalars of one SGD step (kernel sgd_update; optim/sgd.hpp has their meaning).
struct SgdStepScalars {
  double lr = 0, momentum = 0, weight_decay = 0;
  bool nesterov = false;
  bool first_step = false;  // the momentum buffer is written, not read
};
}  // namespace isrn

#define ISRN_KERNEL(ret, name, params) ret name params;
namespace isrn::cpu {
#include "kernel_list.inc"
}
namespace isrn::cuda {
#include "kernel_list.inc"
}
#undef ISRN_KERNEL

namespace isrn {

// Calls cpu::fn or cuda::fn by `device`; timed under the kernel's name while the profiler records
// (src/kernel_profile.hpp).
#define ISRN_DISPATCH(device, fn, ...)                                                          \
  ::isrn::detail::profiled_kernel(                                                              \
      #fn, (device),                                                                            \
      [&](auto&&... isrn_args_) -> decltype(auto) {                                             \
        return (device).is_cuda() ? ::isrn::cuda::fn(isrn_args_...) : ::isrn::cpu::fn(isrn_args_...); \
      },                                                                                        \
      __VA_ARGS__)

// Throws naming `op` and `arg` unless every tensor is on `device`.
void check_same_device(const char* op, Device device, std::initializer_list<std::pair<const char*, const Tensor*>> args);
void check_dtype(const char* op, const char* arg, const Tensor& t, DType expected);
// float32 or float64, the dtypes ops compute in; bfloat16 too where the op takes it (conv2d).
void check_floating(const char* op, const char* arg, const Tensor& t, bool allow_bfloat16 = false);
void check_dim(const char* op, const char* arg, const Tensor& t, int64_t ndim);

}  // namespace isrn

namespace isrn::cuda_runtime {
// Raw device memory through the caching allocator, and copies. Defined in src/cuda (or throwing in
// no_cuda.cpp).
void* allocate(size_t nbytes, int device);
void deallocate(void* ptr, int device);
void memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);
int device_count();
// Page-locked host memory (cudaHostAlloc), or nullptr when there is no GPU to lock it for.
void* allocate_pinned(size_t nbytes);
void deallocate_pinned(void* ptr) noexcept;
// Enqueues a copy from pinned host memory to `device` on its current stream without waiting, then
// records `event` after it (creating the event on `device` when it is null).
void copy_to_device_async(void* dst, int device, const void* src, size_t nbytes, void*& event);
// Blocks until the work before the event's last record has completed.
void wait_event(void* event);
void destroy_event(void* event) noexcept;
}  // namespace isrn::cuda_runtime
