// Optimizer kernels on CUDA: the fused SGD step, one launch per parameter instead of six elementwise
// ones (and no temporaries), with the CPU's bits (cuda/rounded.cuh).
#include "cuda/allocator.hpp"
#include "cuda/common.cuh"
#include "cuda/rounded.cuh"
#include "isrn/kernels/sgd.hpp"

namespace isrn::cuda {

namespace {

template <typename T>
__global__ void sgd_update_kernel(T* __restrict__ param, const T* __restrict__ grad, T* __restrict__ buf, int64_t n,
                                  T lr, T momentum, T weight_decay, kernels::SgdFlags flags) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    Rounded<T> b = buf != nullptr ? buf[i] : T(0);
    const Rounded<T> updated = kernels::sgd_step(Rounded<T>(param[i]), Rounded<T>(grad[i]), b, Rounded<T>(lr),
                                                 Rounded<T>(momentum), Rounded<T>(weight_decay), flags);
    param[i] = updated.v;
    if (buf != nullptr) buf[i] = b.v;
  }
}

}  // namespace

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, const SgdStepScalars& step) {
  const int64_t n = param.numel();
  if (n == 0) return;
  DeviceGuard guard(param.device().index);
  dispatch_floating(param.dtype(), "sgd_update", [&](auto tag) {
    using T = decltype(tag);
    T* buf = step.momentum != 0.0 ? momentum_buffer.data_ptr<T>() : nullptr;
    const kernels::SgdFlags flags{step.weight_decay != 0.0, buf != nullptr, step.nesterov, step.first_step};
    sgd_update_kernel<T><<<grid_for(n), 256, 0, current_stream()>>>(
        param.data_ptr<T>(), grad.data_ptr<T>(), buf, n, static_cast<T>(step.lr), static_cast<T>(step.momentum),
        static_cast<T>(step.weight_decay), flags);
    ISRN_CUDA_LAUNCH_CHECK("sgd_update_kernel");
  });
}

}  // namespace isrn::cuda
