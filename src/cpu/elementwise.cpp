#include <atomic>

#include "backend.hpp"
#include "cpu/strided.hpp"
#include "isrn/kernels/scalar_math.hpp"

namespace isrn::cpu {

namespace {
template <typename T>
T& at(char* base, int64_t stride, int64_t i) {
  return *reinterpret_cast<T*>(base + i * stride);
}

// Integer division by zero would trap (SIGFPE) on the CPU: look for a zero divisor first and raise.
template <typename T>
void check_integer_divisor(const Tensor& b) {
  std::atomic<bool> zero{false};
  for_each_row<1>(b.shape(), {&b}, [&zero](RowView<1> v, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
      if (at<T>(v.data[0], v.stride[0], i) == T(0)) zero.store(true, std::memory_order_relaxed);
  });
  ISRN_CHECK(!zero.load(), "[div] integer division by zero");
}

}  // namespace

void unary(UnaryOp op, const Tensor& x, double p0, double p1, Tensor& out) {
  dispatch_numeric(out.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    dispatch_unary_op(op, [&](auto op_tag) {
      constexpr UnaryOp O = decltype(op_tag)::value;
      const T a = static_cast<T>(p0), b = static_cast<T>(p1);
      for_each_row<2>(out.shape(), {&out, &x}, [a, b](RowView<2> v, int64_t n) {
        if (v.stride[0] == sizeof(T) && v.stride[1] == sizeof(T)) {
          T* o = reinterpret_cast<T*>(v.data[0]);
          const T* in = reinterpret_cast<const T*>(v.data[1]);
          for (int64_t i = 0; i < n; ++i) o[i] = kernels::unary_forward<O, T>(in[i], a, b);
        } else {
          for (int64_t i = 0; i < n; ++i)
            at<T>(v.data[0], v.stride[0], i) = kernels::unary_forward<O, T>(at<T>(v.data[1], v.stride[1], i), a, b);
        }
      });
    });
  });
}

void unary_backward(UnaryOp op, const Tensor& grad_y, const Tensor& x, const Tensor& y, double p0, double p1,
                    Tensor& grad_x) {
  dispatch_floating(grad_x.dtype(), "unary_backward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_unary_op(op, [&](auto op_tag) {
      constexpr UnaryOp O = decltype(op_tag)::value;
      const T a = static_cast<T>(p0), b = static_cast<T>(p1);
      for_each_row<4>(grad_x.shape(), {&grad_x, &grad_y, &x, &y}, [a, b](RowView<4> v, int64_t n) {
        // Dense rows get plain pointers, which the compiler vectorizes (the strided form it does not).
        if (v.stride[0] == sizeof(T) && v.stride[1] == sizeof(T) && v.stride[2] == sizeof(T) &&
            v.stride[3] == sizeof(T)) {
          T* gx = reinterpret_cast<T*>(v.data[0]);
          const T* gy = reinterpret_cast<const T*>(v.data[1]);
          const T* px = reinterpret_cast<const T*>(v.data[2]);
          const T* py = reinterpret_cast<const T*>(v.data[3]);
          for (int64_t i = 0; i < n; ++i) gx[i] = kernels::unary_backward<O, T>(gy[i], px[i], py[i], a, b);
        } else {
          for (int64_t i = 0; i < n; ++i)
            at<T>(v.data[0], v.stride[0], i) = kernels::unary_backward<O, T>(
                at<T>(v.data[1], v.stride[1], i), at<T>(v.data[2], v.stride[2], i), at<T>(v.data[3], v.stride[3], i),
                a, b);
        }
      });
    });
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_numeric(out.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<T>)
      if (op == BinaryOp::Div) check_integer_divisor<T>(b);
    dispatch_binary_op(op, [&](auto op_tag) {
      constexpr BinaryOp O = decltype(op_tag)::value;
      for_each_row<3>(out.shape(), {&out, &a, &b}, [](RowView<3> v, int64_t n) {
        if (v.stride[0] == sizeof(T) && v.stride[1] == sizeof(T) && v.stride[2] == sizeof(T)) {
          T* o = reinterpret_cast<T*>(v.data[0]);
          const T* pa = reinterpret_cast<const T*>(v.data[1]);
          const T* pb = reinterpret_cast<const T*>(v.data[2]);
          for (int64_t i = 0; i < n; ++i) o[i] = kernels::binary_forward<O, T>(pa[i], pb[i]);
        } else {
          for (int64_t i = 0; i < n; ++i)
            at<T>(v.data[0], v.stride[0], i) =
                kernels::binary_forward<O, T>(at<T>(v.data[1], v.stride[1], i), at<T>(v.data[2], v.stride[2], i));
        }
      });
    });
  });
}

void binary_scalar(BinaryOp op, const Tensor& a, double b, Tensor& out) {
  dispatch_numeric(out.dtype(), "binary_scalar", [&](auto tag) {
    using T = decltype(tag);
    const T s = static_cast<T>(b);
    dispatch_binary_op(op, [&](auto op_tag) {
      constexpr BinaryOp O = decltype(op_tag)::value;
      for_each_row<2>(out.shape(), {&out, &a}, [s](RowView<2> v, int64_t n) {
        if (v.stride[0] == sizeof(T) && v.stride[1] == sizeof(T)) {
          T* o = reinterpret_cast<T*>(v.data[0]);
          const T* pa = reinterpret_cast<const T*>(v.data[1]);
          for (int64_t i = 0; i < n; ++i) o[i] = kernels::binary_forward<O, T>(pa[i], s);
        } else {
          for (int64_t i = 0; i < n; ++i)
            at<T>(v.data[0], v.stride[0], i) = kernels::binary_forward<O, T>(at<T>(v.data[1], v.stride[1], i), s);
        }
      });
    });
  });
}

void compare(CompareOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_all(a.dtype(), "compare", [&](auto tag) {
    using T = decltype(tag);
    dispatch_compare_op(op, [&](auto op_tag) {
      constexpr CompareOp O = decltype(op_tag)::value;
      for_each_row<3>(out.shape(), {&out, &a, &b}, [](RowView<3> v, int64_t n) {
        for (int64_t i = 0; i < n; ++i)
          at<bool>(v.data[0], v.stride[0], i) =
              kernels::compare_fn<O, T>(at<T>(v.data[1], v.stride[1], i), at<T>(v.data[2], v.stride[2], i));
      });
    });
  });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_all(out.dtype(), "where", [&](auto tag) {
    using T = decltype(tag);
    for_each_row<4>(out.shape(), {&out, &cond, &a, &b}, [](RowView<4> v, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        at<T>(v.data[0], v.stride[0], i) = at<bool>(v.data[1], v.stride[1], i) ? at<T>(v.data[2], v.stride[2], i)
                                                                                 : at<T>(v.data[3], v.stride[3], i);
    });
  });
}

}  // namespace isrn::cpu
