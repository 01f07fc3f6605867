// Unary elementwise ops and their gradients, with the formulas of isrn/kernels/scalar_math.hpp.
#include "cuda/allocator.hpp"
#include "cuda/elementwise.cuh"
// abs_ and friends compare with zero; for uint8 that is always false, and correct.
#pragma nv_diag_suppress 186
#include "isrn/kernels/scalar_math.hpp"

namespace isrn::cuda {

namespace {

template <UnaryOp O, typename T>
struct UnaryFn {
  T* out;
  const T* x;
  T p0, p1;
  __device__ void operator()(const int64_t (&off)[2]) const {
    out[off[0]] = kernels::unary_forward<O, T>(x[off[1]], p0, p1);
  }
};

template <UnaryOp O, typename T>
struct UnaryBackwardFn {
  T* grad_x;
  const T* grad_y;
  const T* x;
  const T* y;
  T p0, p1;
  __device__ void operator()(const int64_t (&off)[4]) const {
    grad_x[off[0]] = kernels::unary_backward<O, T>(grad_y[off[1]], x[off[2]], y[off[3]], p0, p1);
  }
};

}  // namespace

void unary(UnaryOp op, const Tensor& x, double p0, double p1, Tensor& out) {
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  dispatch_numeric(out.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    dispatch_unary_op(op, [&](auto op_tag) {
      constexpr UnaryOp O = decltype(op_tag)::value;
      // Integer tensors reach only the ops that stay in their type (the front end's rule); the
      // others are not compiled for them.
      constexpr bool integral_safe = O == UnaryOp::Neg || O == UnaryOp::Abs || O == UnaryOp::Relu ||
                                     O == UnaryOp::Clamp;
      if constexpr (std::is_floating_point_v<T> || integral_safe) {
        const UnaryFn<O, T> fn{static_cast<T*>(out.raw_data()), static_cast<const T*>(x.raw_data()),
                               static_cast<T>(p0), static_cast<T>(p1)};
        launch_elementwise<2>("unary_kernel", out.shape(), {&out, &x}, fn);
      } else {
        ISRN_CHECK(false, "[unary] op ", static_cast<int>(O), " needs a floating dtype, got ",
                   dtype_name(out.dtype()));
      }
    });
  });
}

void unary_backward(UnaryOp op, const Tensor& grad_y, const Tensor& x, const Tensor& y, double p0, double p1,
                    Tensor& grad_x) {
  if (grad_x.numel() == 0) return;
  DeviceGuard guard(grad_x.device().index);
  dispatch_floating(grad_x.dtype(), "unary_backward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_unary_op(op, [&](auto op_tag) {
      constexpr UnaryOp O = decltype(op_tag)::value;
      const UnaryBackwardFn<O, T> fn{static_cast<T*>(grad_x.raw_data()), static_cast<const T*>(grad_y.raw_data()),
                                     static_cast<const T*>(x.raw_data()), static_cast<const T*>(y.raw_data()),
                                     static_cast<T>(p0), static_cast<T>(p1)};
      launch_elementwise<4>("unary_backward_kernel", grad_x.shape(), {&grad_x, &grad_y, &x, &y}, fn);
    });
  });
}

}  // namespace isrn::cuda
