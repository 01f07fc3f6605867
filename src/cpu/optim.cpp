// Optimizer kernels on the CPU: the fused SGD step. Compiled with -ffp-contract=off (src/CMakeLists.txt):
// every product and sum is rounded on its own, as in the op-by-op sequence the fused step replaces.
#include "backend.hpp"
#include "cpu/parallel.hpp"
#include "isrn/kernels/sgd.hpp"

namespace isrn::cpu {

namespace {
// Below this many elements a parameter is updated on one thread: a parallel region costs more.
constexpr int64_t kSgdGrain = int64_t{1} << 15;
}  // namespace

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, const SgdStepScalars& step) {
  dispatch_floating(param.dtype(), "sgd_update", [&](auto tag) {
    using T = decltype(tag);
    T* p = param.data_ptr<T>();
    const T* g = grad.data_ptr<T>();
    T* buf = step.momentum != 0.0 ? momentum_buffer.data_ptr<T>() : nullptr;
    const T lr = static_cast<T>(step.lr), momentum = static_cast<T>(step.momentum);
    const T weight_decay = static_cast<T>(step.weight_decay);
    const kernels::SgdFlags flags{step.weight_decay != 0.0, buf != nullptr, step.nesterov, step.first_step};
    parallel_for(0, param.numel(), kSgdGrain, [&](int64_t begin, int64_t end) {
      T unused = 0;
      for (int64_t i = begin; i < end; ++i)
        p[i] = kernels::sgd_step(p[i], g[i], buf ? buf[i] : unused, lr, momentum, weight_decay, flags);
    });
  });
}

}  // namespace isrn::cpu
