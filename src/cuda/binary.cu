// Binary elementwise ops (tensor-tensor and tensor-scalar), comparisons and where.
#include "cuda/allocator.hpp"
#include "cuda/elementwise.cuh"
#include "isrn/kernels/scalar_math.hpp"

namespace isrn::cuda {

namespace {

template <BinaryOp O, typename T>
struct BinaryFn {
  T* out;
  const T* a;
  const T* b;
  __device__ void operator()(const int64_t (&off)[3]) const {
    out[off[0]] = kernels::binary_forward<O, T>(a[off[1]], b[off[2]]);
  }
};

template <BinaryOp O, typename T>
struct BinaryScalarFn {
  T* out;
  const T* a;
  T b;
  __device__ void operator()(const int64_t (&off)[2]) const { out[off[0]] = kernels::binary_forward<O, T>(a[off[1]], b); }
};

template <CompareOp O, typename T>
struct CompareFn {
  bool* out;
  const T* a;
  const T* b;
  __device__ void operator()(const int64_t (&off)[3]) const { out[off[0]] = kernels::compare_fn<O, T>(a[off[1]], b[off[2]]); }
};

template <typename T>
struct WhereFn {
  T* out;
  const bool* cond;
  const T* a;
  const T* b;
  __device__ void operator()(const int64_t (&off)[4]) const { out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]]; }
};

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  dispatch_numeric(out.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    dispatch_binary_op(op, [&](auto op_tag) {
      constexpr BinaryOp O = decltype(op_tag)::value;
      const BinaryFn<O, T> fn{static_cast<T*>(out.raw_data()), static_cast<const T*>(a.raw_data()),
                              static_cast<const T*>(b.raw_data())};
      launch_elementwise<3>("binary_kernel", out.shape(), {&out, &a, &b}, fn);
    });
  });
}

void binary_scalar(BinaryOp op, const Tensor& a, double b, Tensor& out) {
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  dispatch_numeric(out.dtype(), "binary_scalar", [&](auto tag) {
    using T = decltype(tag);
    dispatch_binary_op(op, [&](auto op_tag) {
      constexpr BinaryOp O = decltype(op_tag)::value;
      const BinaryScalarFn<O, T> fn{static_cast<T*>(out.raw_data()), static_cast<const T*>(a.raw_data()),
                                    static_cast<T>(b)};
      launch_elementwise<2>("binary_scalar_kernel", out.shape(), {&out, &a}, fn);
    });
  });
}

void compare(CompareOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  dispatch_all(a.dtype(), "compare", [&](auto tag) {
    using T = decltype(tag);
    dispatch_compare_op(op, [&](auto op_tag) {
      constexpr CompareOp O = decltype(op_tag)::value;
      const CompareFn<O, T> fn{out.data_ptr<bool>(), static_cast<const T*>(a.raw_data()),
                               static_cast<const T*>(b.raw_data())};
      launch_elementwise<3>("compare_kernel", out.shape(), {&out, &a, &b}, fn);
    });
  });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  dispatch_all(out.dtype(), "where", [&](auto tag) {
    using T = decltype(tag);
    const WhereFn<T> fn{static_cast<T*>(out.raw_data()), cond.data_ptr<bool>(), static_cast<const T*>(a.raw_data()),
                        static_cast<const T*>(b.raw_data())};
    launch_elementwise<4>("where_kernel", out.shape(), {&out, &cond, &a, &b}, fn);
  });
}

}  // namespace isrn::cuda
