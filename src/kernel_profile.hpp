#pragma once
// What ISRN_DISPATCH does around a kernel call while the profiler (isrn/core/profiler.hpp) records: a scope
// named by the kernel, plus the op for the generic elementwise and reduction kernels ("binary.mul"), ended
// after a device synchronization on CUDA so the row holds the kernel's time rather than its launch.
#include <string>
#include <type_traits>
#include <utility>

#include "isrn/core/device.hpp"
#include "isrn/core/profiler.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/reduce.hpp"
#include "isrn/tensor.hpp"

namespace isrn::cuda_runtime {
// Waits for the device's stream (a no-op without CUDA).
void synchronize(int device);
}  // namespace isrn::cuda_runtime

namespace isrn::detail {

inline const char* op_name(UnaryOp op) {
  static const char* const names[] = {"neg",  "exp",  "log",     "sqrt",     "abs",        "pow",
                                      "clamp", "relu", "sigmoid", "softplus", "log_sigmoid"};
  return names[static_cast<int>(op)];
}
inline const char* op_name(BinaryOp op) {
  static const char* const names[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
  return names[static_cast<int>(op)];
}
inline const char* op_name(CompareOp op) {
  static const char* const names[] = {"eq", "ne", "lt", "le", "gt", "ge"};
  return names[static_cast<int>(op)];
}
inline const char* op_name(ReduceOp op) {
  static const char* const names[] = {"sum", "max", "min"};
  return names[static_cast<int>(op)];
}

template <typename First, typename... Rest>
std::string kernel_label(const char* kernel, const First& first, const Rest&... rest) {
  using F = std::decay_t<First>;
  std::string label = kernel;
  if constexpr (std::is_same_v<F, UnaryOp> || std::is_same_v<F, BinaryOp> || std::is_same_v<F, CompareOp> ||
                std::is_same_v<F, ReduceOp>)
    (label += '.') += op_name(first);
  if (profiler::recording_shapes()) {
    int shown = 0;
    const auto add_shape = [&](const auto& arg) {
      if constexpr (std::is_same_v<std::decay_t<decltype(arg)>, Tensor>)
        if (shown < 2 && arg.defined()) {
          label += ' ';
          label += shape_str(arg.shape());
          ++shown;
        }
    };
    add_shape(first);
    (add_shape(rest), ...);
  }
  return label;
}

struct KernelScope {
  KernelScope(const std::string& label, Device device) : scope(label), device(device) {}
  ~KernelScope() {
    if (!device.is_cuda()) return;
    // This may run while the kernel's own error unwinds, so it must not throw; an execution error it
    // would report is sticky, and the next checked CUDA call reports it.
    try {
      cuda_runtime::synchronize(device.index);
    } catch (...) {
    }
  }
  profiler::Scope scope;  // destroyed after the synchronization above
  Device device;
};

// The arguments are evaluated once, before the scope opens (their preparation belongs to the front end).
template <typename Call, typename... Args>
decltype(auto) profiled_kernel(const char* kernel, Device device, Call&& call, Args&&... args) {
  if (!profiler::enabled()) return call(std::forward<Args>(args)...);
  KernelScope scope(kernel_label(kernel, args...), device);
  return call(std::forward<Args>(args)...);
}

}  // namespace isrn::detail
