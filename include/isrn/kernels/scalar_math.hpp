#pragma once
// Scalar math shared by the CPU loops and the CUDA kernels, so both backends compute the same
// formulas. Ops are template parameters: the per-element switch folds away at compile time.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "isrn/core/host_device.hpp"
#include "isrn/ops/elementwise.hpp"

namespace isrn::kernels {

template <typename T> ISRN_HOST_DEVICE T exp_(T x) { if constexpr (std::is_same_v<T, float>) return ::expf(x); else return ::exp(static_cast<double>(x)); }
template <typename T> ISRN_HOST_DEVICE T log_(T x) { if constexpr (std::is_same_v<T, float>) return ::logf(x); else return ::log(static_cast<double>(x)); }
template <typename T> ISRN_HOST_DEVICE T log1p_(T x) { if constexpr (std::is_same_v<T, float>) return ::log1pf(x); else return ::log1p(static_cast<double>(x)); }
template <typename T> ISRN_HOST_DEVICE T sqrt_(T x) { if constexpr (std::is_same_v<T, float>) return ::sqrtf(x); else return ::sqrt(static_cast<double>(x)); }
template <typename T> ISRN_HOST_DEVICE T pow_(T x, T p) { if constexpr (std::is_same_v<T, float>) return ::powf(x, p); else return ::pow(static_cast<double>(x), static_cast<double>(p)); }
// Exact shortcuts for the common exponents: correctly rounded like the host's pow, and identical on
// every backend (a device pow may differ from the host's by an ulp).
template <typename T> ISRN_HOST_DEVICE T pow_exact_(T x, T p) {
  if (p == T(1)) return x;
  if (p == T(2)) return x * x;
  if (p == T(-1)) return T(1) / x;
  if (p == T(0.5)) {
    if (x == T(0)) return T(0);                       // pow(-0, 0.5) = +0, where sqrt gives -0
    if (x < T(0) && (x - x) != (x - x)) return -x;    // pow(-inf, 0.5) = +inf, where sqrt gives NaN
    return sqrt_(x);
  }
  return pow_(x, p);
}
template <typename T> ISRN_HOST_DEVICE T abs_(T x) { return x < T(0) ? -x : x; }
template <typename T> ISRN_HOST_DEVICE T max_(T a, T b) { return a > b ? a : b; }
template <typename T> ISRN_HOST_DEVICE T min_(T a, T b) { return a < b ? a : b; }
// NaN-propagating forms (as torch.maximum/minimum/clamp): a NaN operand wins. `x != x` is false for
// integers, so they compile to the plain forms.
template <typename T> ISRN_HOST_DEVICE T max_nan_(T a, T b) { return (a > b || a != a) ? a : b; }
template <typename T> ISRN_HOST_DEVICE T min_nan_(T a, T b) { return (a < b || a != a) ? a : b; }
// Integer division truncating toward zero that never traps: the caller reports division by zero
// (the CPU backend raises an error; a GPU cannot), and INT_MIN / -1 wraps to INT_MIN.
template <typename T> ISRN_HOST_DEVICE T div_(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    if (b == T(0)) return T(0);
    if constexpr (std::is_signed_v<T>) {
      if (b == T(-1)) return static_cast<T>(-static_cast<std::make_unsigned_t<T>>(a));
    }
  }
  return a / b;
}

// Numerically stable forms: exact for |x| up to the type's range, no overflow at ±300.
template <typename T> ISRN_HOST_DEVICE T sigmoid_(T x) {
  if (x >= T(0)) return T(1) / (T(1) + exp_(-x));
  const T e = exp_(x);
  return e / (T(1) + e);
}
template <typename T> ISRN_HOST_DEVICE T softplus_(T x) { return max_(x, T(0)) + log1p_(exp_(-abs_(x))); }
template <typename T> ISRN_HOST_DEVICE T log_sigmoid_(T x) { return min_(x, T(0)) - log1p_(exp_(-abs_(x))); }

template <UnaryOp Op, typename T>
ISRN_HOST_DEVICE T unary_forward(T x, T p0, T p1) {
  if constexpr (Op == UnaryOp::Neg) return -x;
  else if constexpr (Op == UnaryOp::Exp) return exp_(x);
  else if constexpr (Op == UnaryOp::Log) return log_(x);
  else if constexpr (Op == UnaryOp::Sqrt) return sqrt_(x);
  else if constexpr (Op == UnaryOp::Abs) return abs_(x);
  else if constexpr (Op == UnaryOp::Pow) return pow_exact_(x, p0);
  else if constexpr (Op == UnaryOp::Clamp) return min_nan_(max_nan_(x, p0), p1);
  else if constexpr (Op == UnaryOp::Relu) return (x > T(0) || x != x) ? x : T(0);
  else if constexpr (Op == UnaryOp::Sigmoid) return sigmoid_(x);
  else if constexpr (Op == UnaryOp::Softplus) return softplus_(x);
  else return log_sigmoid_(x);
}

// d op(x) / dx times the incoming gradient g; y = op(x).
template <UnaryOp Op, typename T>
ISRN_HOST_DEVICE T unary_backward(T g, T x, T y, T p0, T p1) {
  if constexpr (Op == UnaryOp::Neg) return -g;
  else if constexpr (Op == UnaryOp::Exp) return g * y;
  else if constexpr (Op == UnaryOp::Log) return g / x;
  else if constexpr (Op == UnaryOp::Sqrt) return g / (T(2) * y);
  else if constexpr (Op == UnaryOp::Abs) return x > T(0) ? g : (x < T(0) ? -g : T(0));
  else if constexpr (Op == UnaryOp::Pow) return p0 == T(0) ? T(0) : g * p0 * pow_exact_(x, p0 - T(1));
  else if constexpr (Op == UnaryOp::Clamp) return (x >= p0 && x <= p1) ? g : T(0);  // as PyTorch: inclusive
  else if constexpr (Op == UnaryOp::Relu) return x > T(0) ? g : T(0);
  else if constexpr (Op == UnaryOp::Sigmoid) {
    // e^{-|x|} / (1 + e^{-|x|})² rather than y (1 - y): no cancellation in 1 - y, so the derivative
    // keeps full relative accuracy in the tails (y (1 - y) is 0 from |x| ≈ 37 in float64).
    const T e = exp_(-abs_(x));
    const T s = T(1) + e;
    return g * (e / (s * s));
  }
  else if constexpr (Op == UnaryOp::Softplus) return g * sigmoid_(x);
  else return g * sigmoid_(-x);
}

template <BinaryOp Op, typename T>
ISRN_HOST_DEVICE T binary_forward(T a, T b) {
  if constexpr (Op == BinaryOp::Add) return a + b;
  else if constexpr (Op == BinaryOp::Sub) return a - b;
  else if constexpr (Op == BinaryOp::Mul) return a * b;
  else if constexpr (Op == BinaryOp::Div) return div_(a, b);
  else if constexpr (Op == BinaryOp::Maximum) return max_nan_(a, b);
  else return min_nan_(a, b);
}

template <CompareOp Op, typename T>
ISRN_HOST_DEVICE bool compare_fn(T a, T b) {
  if constexpr (Op == CompareOp::Eq) return a == b;
  else if constexpr (Op == CompareOp::Ne) return a != b;
  else if constexpr (Op == CompareOp::Lt) return a < b;
  else if constexpr (Op == CompareOp::Le) return a <= b;
  else if constexpr (Op == CompareOp::Gt) return a > b;
  else return a >= b;
}

}  // namespace isrn::kernels

namespace isrn {

// Runtime enum → compile-time constant: fn receives std::integral_constant<Enum, value>.
template <typename Fn>
decltype(auto) dispatch_unary_op(UnaryOp op, Fn&& fn) {
  switch (op) {
#define ISRN_CASE(name) case UnaryOp::name: return fn(std::integral_constant<UnaryOp, UnaryOp::name>{});
    ISRN_CASE(Neg) ISRN_CASE(Exp) ISRN_CASE(Log) ISRN_CASE(Sqrt) ISRN_CASE(Abs) ISRN_CASE(Pow)
    ISRN_CASE(Clamp) ISRN_CASE(Relu) ISRN_CASE(Sigmoid) ISRN_CASE(Softplus) ISRN_CASE(LogSigmoid)
#undef ISRN_CASE
  }
  return fn(std::integral_constant<UnaryOp, UnaryOp::Neg>{});
}

template <typename Fn>
decltype(auto) dispatch_binary_op(BinaryOp op, Fn&& fn) {
  switch (op) {
#define ISRN_CASE(name) case BinaryOp::name: return fn(std::integral_constant<BinaryOp, BinaryOp::name>{});
    ISRN_CASE(Add) ISRN_CASE(Sub) ISRN_CASE(Mul) ISRN_CASE(Div) ISRN_CASE(Maximum) ISRN_CASE(Minimum)
#undef ISRN_CASE
  }
  return fn(std::integral_constant<BinaryOp, BinaryOp::Add>{});
}

template <typename Fn>
decltype(auto) dispatch_compare_op(CompareOp op, Fn&& fn) {
  switch (op) {
#define ISRN_CASE(name) case CompareOp::name: return fn(std::integral_constant<CompareOp, CompareOp::name>{});
    ISRN_CASE(Eq) ISRN_CASE(Ne) ISRN_CASE(Lt) ISRN_CASE(Le) ISRN_CASE(Gt) ISRN_CASE(Ge)
#undef ISRN_CASE
  }
  return fn(std::integral_constant<CompareOp, CompareOp::Eq>{});
}

}  // namespace isrn
