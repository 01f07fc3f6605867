#pragma once
// Elementwise ops with NumPy broadcasting. Binary ops need both inputs on one device and of one
// dtype (no silent promotion); the scalar forms keep the tensor's dtype, so with an integer tensor
// the scalar must be an integer that dtype holds (comparisons with any other scalar compare by
// value). Integer division truncates toward zero; a zero divisor raises isrn::Error on the CPU.
// maximum, minimum, clamp and relu propagate NaN (as PyTorch).
#include "isrn/tensor.hpp"

namespace isrn {

enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Sqrt, Abs, Pow /*p0 = exponent*/, Clamp /*[p0, p1]*/, Relu, Sigmoid, Softplus,
  LogSigmoid
};
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Maximum, Minimum };
enum class CompareOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge };

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
// Clamps to [lo, hi]; pass ±infinity for a one-sided clamp. The gradient is 1 on [lo, hi] (as PyTorch).
Tensor clamp(const Tensor& x, double lo, double hi);
// cond ? a : b, broadcasting all three; the gradient flows to the chosen side.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// Activations. softplus and log_sigmoid are exact and finite for inputs of any magnitude.
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor log_sigmoid(const Tensor& x);

// Comparisons return bool tensors and record no gradient.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
Tensor logical_not(const Tensor& x);  // bool → bool

// Generic forms behind the named ones (useful to tests that sweep every op).
Tensor unary(UnaryOp op, const Tensor& x, double p0 = 0.0, double p1 = 0.0);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor compare(CompareOp op, const Tensor& a, const Tensor& b);

// Sums a broadcast gradient back down to `shape` (the inverse of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return div(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator-(double a, const Tensor& b) { return add(neg(b), a); }

}  // namespace isrn
