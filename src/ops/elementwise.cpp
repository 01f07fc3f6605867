// Front ends of the elementwise ops: validate, broadcast, allocate, dispatch, record the gradient.
#include "isrn/ops/elementwise.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "backend.hpp"
#include "isrn/autograd/node.hpp"
#include "isrn/ops/reduce.hpp"

namespace isrn {

using autograd::record;

namespace {

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Pow: return "pow";
    case UnaryOp::Clamp: return "clamp";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Softplus: return "softplus";
    case UnaryOp::LogSigmoid: return "log_sigmoid";
  }
  return "unary";
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
  }
  return "binary";
}

const char* compare_name(CompareOp op) {
  switch (op) {
    case CompareOp::Eq: return "eq";
    case CompareOp::Ne: return "ne";
    case CompareOp::Lt: return "lt";
    case CompareOp::Le: return "le";
    case CompareOp::Gt: return "gt";
    case CompareOp::Ge: return "ge";
  }
  return "compare";
}

// Same device and dtype for a binary op; the error names the op and both operands.
void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  ISRN_CHECK(a.defined() && b.defined(), "[", op, "] undefined operand");
  ISRN_CHECK(a.device() == b.device(), "[", op, "] operands are on different devices: ", a.device(), " and ",
             b.device());
  ISRN_CHECK(a.dtype() == b.dtype(), "[", op, "] operands have different dtypes: ", a.dtype(), " and ",
             b.dtype(), " (convert one with .to(dtype))");
}

bool is_integral_safe(UnaryOp op) {
  return op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Relu || op == UnaryOp::Clamp;
}

// The values of an integer (or bool) dtype as doubles; int64's upper end is the largest double below
// 2^63, since 2^63 - 1 itself has no double.
std::pair<double, double> integer_range(DType t) {
  switch (t) {
    case DType::Int32: return {-2147483648.0, 2147483647.0};
    case DType::Int64: return {-0x1p63, 0x1p63 - 1024.0};
    case DType::UInt8: return {0.0, 255.0};
    default: return {0.0, 1.0};
  }
}

// Whether `value` converts to the integer dtype `t` without change.
bool integer_holds(DType t, double value) {
  const auto [lo, hi] = integer_range(t);
  return std::trunc(value) == value && value >= lo && value <= hi;
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x, double p0, double p1) {
  const char* name = unary_name(op);
  ISRN_CHECK(x.defined(), "[", name, "] undefined input");
  ISRN_CHECK(is_floating(x.dtype()) || (is_integral_safe(op) && x.dtype() != DType::Bool), "[", name,
             "] does not support dtype ", x.dtype());
  if (op == UnaryOp::Clamp && !is_floating(x.dtype())) {
    // An integer result lies in [ceil(lo), floor(hi)]; bounds beyond the dtype (±inf included) are
    // saturated so that the kernels' conversion to the element type is defined.
    const auto [lo, hi] = integer_range(x.dtype());
    p0 = std::clamp(std::ceil(p0), lo, hi);
    p1 = std::clamp(std::floor(p1), lo, hi);
  }
  Tensor out = empty(x.shape(), TensorOptions(x.dtype()).device(x.device()));
  if (out.numel() > 0) ISRN_DISPATCH(x.device(), unary, op, x, p0, p1, out);
  if (!autograd::needs_grad({&x})) return out;
  Tensor xs = x.detach(), ys = out.detach();
  return record(out, name, {x}, [op, xs, ys, p0, p1](const Tensor& g) {
    Tensor gx = empty_like(xs);
    if (gx.numel() > 0) ISRN_DISPATCH(xs.device(), unary_backward, op, g, xs, ys, p0, p1, gx);
    return std::vector<Tensor>{gx};
  });
}

Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::Log, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::Sqrt, x); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::Abs, x); }
Tensor pow(const Tensor& x, double exponent) { return unary(UnaryOp::Pow, x, exponent); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  ISRN_CHECK(!(lo > hi), "[clamp] lower bound ", lo, " is above upper bound ", hi);
  return unary(UnaryOp::Clamp, x, lo, hi);
}
Tensor relu(const Tensor& x) { return unary(UnaryOp::Relu, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::Sigmoid, x); }
Tensor softplus(const Tensor& x) { return unary(UnaryOp::Softplus, x); }
Tensor log_sigmoid(const Tensor& x) { return unary(UnaryOp::LogSigmoid, x); }

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_pair(name, a, b);
  ISRN_CHECK(a.dtype() != DType::Bool, "[", name, "] does not support bool operands");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(shape, TensorOptions(a.dtype()).device(a.device()));
  if (out.numel() > 0) ISRN_DISPATCH(a.device(), binary, op, a.detach().expand(shape), b.detach().expand(shape), out);
  if (!autograd::needs_grad({&a, &b})) return out;
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  Tensor as = a.detach(), bs = b.detach();
  return record(out, name, {a, b}, [op, as, bs, ga, gb](const Tensor& g) {
    Tensor da, db;
    switch (op) {
      case BinaryOp::Add:
        da = g;
        db = g;
        break;
      case BinaryOp::Sub:
        da = g;
        if (gb) db = neg(g);
        break;
      case BinaryOp::Mul:
        if (ga) da = mul(g, bs);
        if (gb) db = mul(g, as);
        break;
      case BinaryOp::Div:
        if (ga) da = div(g, bs);
        if (gb) db = neg(div(mul(g, as), mul(bs, bs)));
        break;
      case BinaryOp::Maximum:
      case BinaryOp::Minimum: {
        // The gradient goes to the winner; a tie splits it in halves (as PyTorch).
        const CompareOp win = op == BinaryOp::Maximum ? CompareOp::Gt : CompareOp::Lt;
        Tensor zero = zeros({}, TensorOptions(g.dtype()).device(g.device()));
        Tensor half_g = mul(g, 0.5);
        Tensor tie = compare(CompareOp::Eq, as, bs);
        if (ga) da = where(compare(win, as, bs), g, where(tie, half_g, zero));
        if (gb) db = where(compare(win, bs, as), g, where(tie, half_g, zero));
        break;
      }
    }
    if (!ga) da = Tensor();
    if (!gb) db = Tensor();
    return std::vector<Tensor>{da.defined() ? sum_to(da, as.shape()) : da,
                               db.defined() ? sum_to(db, bs.shape()) : db};
  });
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Minimum, a, b); }

namespace {
Tensor binary_with_scalar(BinaryOp op, const Tensor& a, double s) {
  const char* name = binary_name(op);
  ISRN_CHECK(a.defined(), "[", name, "] undefined operand");
  ISRN_CHECK(a.dtype() != DType::Bool, "[", name, "] does not support bool operands");
  if (!is_floating(a.dtype())) {
    // The result keeps the integer dtype, so a scalar it cannot hold would be truncated silently.
    ISRN_CHECK(integer_holds(a.dtype(), s), "[", name, "] scalar ", s, " cannot be used with an ", a.dtype(),
               " tensor (the result keeps the tensor's dtype; convert the tensor with .to(DType::Float32) first)");
    ISRN_CHECK(!(op == BinaryOp::Div && s == 0.0), "[", name, "] integer division by zero");
  }
  Tensor out = empty(a.shape(), TensorOptions(a.dtype()).device(a.device()));
  if (out.numel() > 0) ISRN_DISPATCH(a.device(), binary_scalar, op, a, s, out);
  return record(out, name, {a}, [op, s](const Tensor& g) {
    if (op == BinaryOp::Mul) return std::vector<Tensor>{mul(g, s)};
    if (op == BinaryOp::Div) return std::vector<Tensor>{div(g, s)};
    return std::vector<Tensor>{g};
  });
}
}  // namespace

Tensor add(const Tensor& a, double b) { return binary_with_scalar(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, double b) { return binary_with_scalar(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, double b) { return binary_with_scalar(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, double b) { return binary_with_scalar(BinaryOp::Div, a, b); }

Tensor compare(CompareOp op, const Tensor& a, const Tensor& b) {
  const char* name = compare_name(op);
  check_pair(name, a, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(shape, TensorOptions(DType::Bool).device(a.device()));
  if (out.numel() > 0) ISRN_DISPATCH(a.device(), compare, op, a.detach().expand(shape), b.detach().expand(shape), out);
  return out;
}

namespace {
Tensor compare_scalar(CompareOp op, const Tensor& a, double b) {
  ISRN_CHECK(a.defined(), "[", compare_name(op), "] undefined operand");
  // An integer tensor against a scalar its dtype cannot hold (2.5, -1 for uint8) compares by value
  // in float64, exact for every int32/uint8/bool value and int64 up to 2^53.
  if (!is_floating(a.dtype()) && !integer_holds(a.dtype(), b))
    return compare(op, a.to(DType::Float64), full({}, b, TensorOptions(DType::Float64).device(a.device())));
  return compare(op, a, full({}, b, TensorOptions(a.dtype()).device(a.device())));
}
}  // namespace

Tensor eq(const Tensor& a, const Tensor& b) { return compare(CompareOp::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(CompareOp::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(CompareOp::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(CompareOp::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(CompareOp::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(CompareOp::Ge, a, b); }
Tensor eq(const Tensor& a, double b) { return compare_scalar(CompareOp::Eq, a, b); }
Tensor ne(const Tensor& a, double b) { return compare_scalar(CompareOp::Ne, a, b); }
Tensor lt(const Tensor& a, double b) { return compare_scalar(CompareOp::Lt, a, b); }
Tensor le(const Tensor& a, double b) { return compare_scalar(CompareOp::Le, a, b); }
Tensor gt(const Tensor& a, double b) { return compare_scalar(CompareOp::Gt, a, b); }
Tensor ge(const Tensor& a, double b) { return compare_scalar(CompareOp::Ge, a, b); }

Tensor logical_not(const Tensor& x) {
  ISRN_CHECK(x.defined() && x.dtype() == DType::Bool, "[logical_not] expects a bool tensor");
  return eq(x, 0.0);
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  ISRN_CHECK(cond.defined() && cond.dtype() == DType::Bool, "[where] condition must be a bool tensor",
             cond.defined() ? std::string(", got ") + std::string(dtype_name(cond.dtype())) : std::string());
  check_pair("where", a, b);
  ISRN_CHECK(cond.device() == a.device(), "[where] condition is on ", cond.device(), ", values on ", a.device());
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = empty(shape, TensorOptions(a.dtype()).device(a.device()));
  if (out.numel() > 0)
    ISRN_DISPATCH(a.device(), where, cond.expand(shape), a.detach().expand(shape), b.detach().expand(shape), out);
  if (!autograd::needs_grad({&a, &b})) return out;
  Tensor c = cond, as = a.detach(), bs = b.detach();
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return record(out, "where", {a, b}, [c, as, bs, ga, gb](const Tensor& g) {
    Tensor zero = zeros({}, TensorOptions(g.dtype()).device(g.device()));
    Tensor da = ga ? sum_to(where(c, g, zero), as.shape()) : Tensor();
    Tensor db = gb ? sum_to(where(c, zero, g), bs.shape()) : Tensor();
    return std::vector<Tensor>{da, db};
  });
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  ISRN_CHECK(lead >= 0, "[sum_to] cannot sum shape ", shape_str(x.shape()), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else if (shape[d - lead] == 1 && x.shape()[d] != 1) {
      dims.push_back(d);
    } else {
      ISRN_CHECK(shape[d - lead] == x.shape()[d], "[sum_to] cannot sum shape ", shape_str(x.shape()), " to ",
                 shape_str(shape));
    }
  }
  Tensor s = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  return s.reshape(shape);
}

}  // namespace isrn
