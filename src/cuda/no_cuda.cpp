// Built instead of src/cuda/*.cu when isrn has no CUDA backend: every CUDA entry point throws an
// isrn::Error that says so, and the runtime reports no devices.
#include "backend.hpp"
#include "isrn/cuda/conv.hpp"

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
// Own is what a CUDA build without cuDNN would use; choosing it here is harmless.
void set_conv_backend(ConvBackend backend) {
  ISRN_CHECK(backend == ConvBackend::Own,
             "[set_conv_backend] cuDNN was asked for, but this build of isrn has no CUDA backend");
}
ConvBackend conv_backend() { return ConvBackend::Own; }
bool conv_cudnn_built() { return false; }
}  // namespace cuda

namespace cuda_runtime {
void* allocate(size_t, int) { no_cuda("allocate"); }
void deallocate(void*, int) {}
void memcpy(void*, Device, const void*, Device, size_t) { no_cuda("copy"); }
int device_count() { return 0; }
}  // namespace cuda_runtime

}  // namespace isrn
