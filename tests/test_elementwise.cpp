// The elementwise ops: every UnaryOp, BinaryOp and CompareOp against long double references, with
// broadcasting, strided and empty operands, integer dtypes, extreme inputs (the activations at
// ±300 and beyond), NaN propagation, gradients by central differences and bad input.
#include <cmath>
#include <limits>

#include "reference.hpp"

using namespace isrn;
using test::check_close;
using test::HostTensor;
using LD = long double;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

const UnaryOp kUnaryOps[] = {UnaryOp::Neg,   UnaryOp::Exp,  UnaryOp::Log,     UnaryOp::Sqrt,     UnaryOp::Abs,
                             UnaryOp::Pow,   UnaryOp::Clamp, UnaryOp::Relu,   UnaryOp::Sigmoid,  UnaryOp::Softplus,
                             UnaryOp::LogSigmoid};
const BinaryOp kBinaryOps[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Maximum,
                               BinaryOp::Minimum};
const CompareOp kCompareOps[] = {CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Le, CompareOp::Gt,
                                 CompareOp::Ge};

// Units in the last place, relative: results within a few roundings of the exact value.
double ulps(DType dt, double n) { return n * (dt == DType::Float32 ? 0x1p-23 : 0x1p-52); }
// Below the normal range only absolute accuracy exists: two of the smallest subnormals.
double tiny(DType dt) {
  return 2.0 * (dt == DType::Float32 ? std::numeric_limits<float>::denorm_min()
                                     : std::numeric_limits<double>::denorm_min());
}

LD sigmoid_ld(LD x) { return 1.0L / (1.0L + std::exp(-x)); }

LD unary_reference(UnaryOp op, LD x, LD p0, LD p1) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Abs: return std::fabs(x);
    case UnaryOp::Pow: return std::pow(x, p0);
    case UnaryOp::Clamp: return std::isnan(x) ? x : std::min(std::max(x, p0), p1);
    case UnaryOp::Relu: return std::isnan(x) ? x : (x > 0 ? x : 0.0L);
    case UnaryOp::Sigmoid: return sigmoid_ld(x);
    case UnaryOp::Softplus: return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
    case UnaryOp::LogSigmoid: return x < 0 ? x - std::log1p(std::exp(x)) : -std::log1p(std::exp(-x));
  }
  return 0;
}

// d op / dx, in the tails as well: sigmoid' = e^{-|x|} / (1 + e^{-|x|})² keeps relative accuracy.
LD unary_derivative(UnaryOp op, LD x, LD p0, LD p1) {
  switch (op) {
    case UnaryOp::Neg: return -1;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return 1.0L / x;
    case UnaryOp::Sqrt: return 0.5L / std::sqrt(x);
    case UnaryOp::Abs: return x > 0 ? 1 : (x < 0 ? -1 : 0);
    case UnaryOp::Pow: return p0 == 0 ? 0.0L : p0 * std::pow(x, p0 - 1);
    case UnaryOp::Clamp: return x >= p0 && x <= p1 ? 1 : 0;
    case UnaryOp::Relu: return x > 0 ? 1 : 0;
    case UnaryOp::Sigmoid: {
      const LD e = std::exp(-std::fabs(x));
      return e / ((1 + e) * (1 + e));
    }
    case UnaryOp::Softplus: return sigmoid_ld(x);
    case UnaryOp::LogSigmoid: return sigmoid_ld(-x);
  }
  return 0;
}

struct UnaryCase {
  UnaryOp op;
  double lo, hi, p0, p1;
};

// Input ranges inside each op's domain; clamp bounds inside the range.
const UnaryCase kUnaryCases[] = {
    {UnaryOp::Neg, -5, 5, 0, 0},          {UnaryOp::Exp, -20, 20, 0, 0},       {UnaryOp::Log, 1e-3, 1e3, 0, 0},
    {UnaryOp::Sqrt, 0, 100, 0, 0},        {UnaryOp::Abs, -5, 5, 0, 0},         {UnaryOp::Pow, 0.1, 4, 2, 0},
    {UnaryOp::Pow, 0.1, 4, 0.5, 0},       {UnaryOp::Pow, 0.1, 4, -1.5, 0},     {UnaryOp::Pow, -4, 4, 3, 0},
    {UnaryOp::Pow, -4, 4, 0, 0},          {UnaryOp::Clamp, -3, 3, -1, 0.5},    {UnaryOp::Relu, -3, 3, 0, 0},
    {UnaryOp::Sigmoid, -40, 40, 0, 0},    {UnaryOp::Softplus, -40, 40, 0, 0},  {UnaryOp::LogSigmoid, -40, 40, 0, 0}};

Tensor unary_expected(UnaryOp op, const Tensor& x, double p0, double p1, bool derivative) {
  HostTensor h(x);
  for (double& v : h.data)
    v = static_cast<double>(derivative ? unary_derivative(op, v, p0, p1) : unary_reference(op, v, p0, p1));
  return h.tensor();
}

// Value of an operand at an output position under NumPy broadcasting.
double broadcast_at(const HostTensor& h, const std::vector<int64_t>& out_idx) {
  std::vector<int64_t> idx(h.shape.size());
  const size_t lead = out_idx.size() - h.shape.size();
  for (size_t d = 0; d < h.shape.size(); ++d) idx[d] = h.shape[d] == 1 ? 0 : out_idx[lead + d];
  return h(idx);
}

LD binary_reference(BinaryOp op, LD a, LD b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Maximum: return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b);
    case BinaryOp::Minimum: return std::isnan(a) || std::isnan(b) ? NAN : std::min(a, b);
  }
  return 0;
}

// Integer arithmetic as the dtype does it: computed in int64, wrapped to the dtype's width,
// division truncating toward zero.
double integer_reference(BinaryOp op, int64_t a, int64_t b, DType dt) {
  int64_t r = 0;
  switch (op) {
    case BinaryOp::Add: r = a + b; break;
    case BinaryOp::Sub: r = a - b; break;
    case BinaryOp::Mul: r = a * b; break;
    case BinaryOp::Div: r = a / b; break;
    case BinaryOp::Maximum: r = std::max(a, b); break;
    case BinaryOp::Minimum: r = std::min(a, b); break;
  }
  if (dt == DType::UInt8) return static_cast<double>(static_cast<uint8_t>(r));
  if (dt == DType::Int32) return static_cast<double>(static_cast<int32_t>(r));
  return static_cast<double>(r);
}

bool compare_reference(CompareOp op, double a, double b) {
  switch (op) {
    case CompareOp::Eq: return a == b;
    case CompareOp::Ne: return a != b;
    case CompareOp::Lt: return a < b;
    case CompareOp::Le: return a <= b;
    case CompareOp::Gt: return a > b;
    case CompareOp::Ge: return a >= b;
  }
  return false;
}

// Expected result of a broadcasting op from a per-element function of the two operand values.
template <typename Fn>
Tensor broadcast_expected(const Tensor& a, const Tensor& b, Fn&& fn) {
  const HostTensor ha(a), hb(b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), "test");
  HostTensor out(shape, 0.0);
  for (int64_t f = 0; f < out.numel(); ++f) {
    const auto idx = test::unravel(f, shape);
    out.data[f] = fn(broadcast_at(ha, idx), broadcast_at(hb, idx));
  }
  return out.tensor();
}

// Operand pairs that exercise broadcasting, strides, 0-d and empty tensors.
std::vector<std::pair<Tensor, Tensor>> operand_pairs(DType dt, Device d, double lo, double hi) {
  auto r = [&](const Shape& s, uint64_t seed) { return test::random(s, seed, lo, hi).to(dt).to(d); };
  return {
      {r({3, 1, 5}, 1), r({4, 1}, 2)},                                  // both broadcast
      {r({6, 4}, 3).transpose(0, 1), test::spread(r({4, 6}, 4))},        // both strided
      {r({}, 5), r({2, 3}, 6)},                                           // 0-d with 2-D
      {r({7}, 7), r({}, 8)},                                              // 2-D... and 0-d on the right
      {r({0, 5}, 9), r({1, 5}, 10)},                                      // empty
      {r({300, 400}, 11).slice(1, 0, 400, 2), r({300, 1}, 12)},           // threaded, strided, broadcast
  };
}

}  // namespace

TEST_CASE("elementwise: every unary op against a long double reference, forward and derivative") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      for (const UnaryCase& c : kUnaryCases) {
        CAPTURE(static_cast<int>(c.op));
        CAPTURE(c.p0);
        // Pow with a non-integer exponent needs a positive base; the integer ones take any sign.
        const Tensor x = test::random({37, 29}, 100 + static_cast<uint64_t>(c.op), c.lo, c.hi).to(dt).to(d);
        // Within 4 ulps: the libm functions err by about one ulp and the stable activation
        // formulas add two or three roundings.
        const double rtol = ulps(dt, 4);
        check_close(unary(c.op, x, c.p0, c.p1), unary_expected(c.op, x, c.p0, c.p1, false), rtol, tiny(dt), "forward");
        check_close(unary(c.op, test::spread(x), c.p0, c.p1), unary_expected(c.op, x, c.p0, c.p1, false), rtol,
                    tiny(dt), "forward strided");
        Tensor xg = x.clone().set_requires_grad(true);
        sum(unary(c.op, xg, c.p0, c.p1)).backward();
        check_close(xg.grad(), unary_expected(c.op, x, c.p0, c.p1, true), rtol, tiny(dt), "derivative");
      }
    }
  }
}

TEST_CASE("elementwise: the named unary functions are the generic ops") {
  const Tensor x = test::random({9}, 1, 0.5, 2);
  CHECK(neg(x).to_vector<double>() == unary(UnaryOp::Neg, x).to_vector<double>());
  CHECK(exp(x).to_vector<double>() == unary(UnaryOp::Exp, x).to_vector<double>());
  CHECK(log(x).to_vector<double>() == unary(UnaryOp::Log, x).to_vector<double>());
  CHECK(sqrt(x).to_vector<double>() == unary(UnaryOp::Sqrt, x).to_vector<double>());
  CHECK(abs(x).to_vector<double>() == unary(UnaryOp::Abs, x).to_vector<double>());
  CHECK(pow(x, 1.5).to_vector<double>() == unary(UnaryOp::Pow, x, 1.5).to_vector<double>());
  CHECK(clamp(x, 1, 1.5).to_vector<double>() == unary(UnaryOp::Clamp, x, 1, 1.5).to_vector<double>());
  CHECK(relu(x).to_vector<double>() == unary(UnaryOp::Relu, x).to_vector<double>());
  CHECK(sigmoid(x).to_vector<double>() == unary(UnaryOp::Sigmoid, x).to_vector<double>());
  CHECK(softplus(x).to_vector<double>() == unary(UnaryOp::Softplus, x).to_vector<double>());
  CHECK(log_sigmoid(x).to_vector<double>() == unary(UnaryOp::LogSigmoid, x).to_vector<double>());
}

TEST_CASE("elementwise: sigmoid, softplus and log_sigmoid are exact and finite at ±300 and beyond") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      // Far tails (float32 results there are subnormal or zero, which is their correct rounding),
      // the float32 exp overflow point 88.7, and the float64 one 709.8.
      std::vector<double> xs{-300, 300, -1e4, 1e4, -88.8, 88.8, -100, 100, -709.9, 709.9, -745, 745,
                             -40,  40,  -17,  17,  -1e-30, 1e-30, 0};
      const Tensor x = from_vector(xs, {static_cast<int64_t>(xs.size())}, d).to(dt);
      for (UnaryOp op : {UnaryOp::Sigmoid, UnaryOp::Softplus, UnaryOp::LogSigmoid}) {
        CAPTURE(static_cast<int>(op));
        const Tensor y = unary(op, x);
        for (double v : test::values(y)) CHECK(std::isfinite(v));
        check_close(y, unary_expected(op, x, 0, 0, false), ulps(dt, 4), tiny(dt), "extreme forward");
        Tensor xg = x.clone().set_requires_grad(true);
        sum(unary(op, xg)).backward();
        for (double v : test::values(xg.grad())) CHECK(std::isfinite(v));
        check_close(xg.grad(), unary_expected(op, x, 0, 0, true), ulps(dt, 4), tiny(dt), "extreme derivative");
      }
      // Exact values the formulas must reach: softplus(300) = 300, log_sigmoid(-300) = -300,
      // sigmoid(±inf) = 1 and 0, softplus(-inf) = 0, log_sigmoid(inf) = 0, and NaN passes through.
      const Tensor special = from_vector<double>({kInf, -kInf, kNaN}, {3}, d).to(dt);
      check_close(sigmoid(special), {1, 0, kNaN}, 0, 0, "sigmoid at inf");
      check_close(softplus(special), {kInf, 0, kNaN}, 0, 0, "softplus at inf");
      check_close(log_sigmoid(special), {0, -kInf, kNaN}, 0, 0, "log_sigmoid at inf");
      CHECK(softplus(full({1}, 300, TensorOptions(dt).device(d))).to(DType::Float64).item<double>() == 300.0);
      CHECK(log_sigmoid(full({1}, -300, TensorOptions(dt).device(d))).to(DType::Float64).item<double>() == -300.0);
    }
  }
}

TEST_CASE("elementwise: NaN propagates through clamp, relu, maximum and minimum (as PyTorch)") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      const Tensor x = from_vector<double>({kNaN, 1.0, -2.0, kNaN}, {4}, d).to(dt);
      const Tensor y = from_vector<double>({1.0, kNaN, 0.0, kNaN}, {4}, d).to(dt);
      check_close(clamp(x, 0, 0.5), {kNaN, 0.5, 0, kNaN}, 0, 0, "clamp");
      check_close(relu(x), {kNaN, 1, 0, kNaN}, 0, 0, "relu");
      check_close(maximum(x, y), {kNaN, kNaN, 0, kNaN}, 0, 0, "maximum");
      check_close(minimum(x, y), {kNaN, kNaN, -2, kNaN}, 0, 0, "minimum");
      check_close(maximum(y, x), {kNaN, kNaN, 0, kNaN}, 0, 0, "maximum swapped");
      check_close(sqrt(from_vector<double>({-1}, {1}, d).to(dt)), {kNaN}, 0, 0, "sqrt of a negative");
      check_close(log(from_vector<double>({0, -1}, {2}, d).to(dt)), {-kInf, kNaN}, 0, 0, "log at 0 and below");
    }
  }
}

TEST_CASE("elementwise: clamp bounds, one-sided clamps and the inclusive gradient") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor x = from_vector<double>({-3, -1, 0, 0.5, 2}, {5}, d);
    check_close(clamp(x, -1, 0.5), {-1, -1, 0, 0.5, 0.5}, 0, 0, "two-sided");
    check_close(clamp(x, -kInf, 0), {-3, -1, 0, 0, 0}, 0, 0, "upper only");
    check_close(clamp(x, 0, kInf), {0, 0, 0, 0.5, 2}, 0, 0, "lower only");
    // As PyTorch: the gradient passes on the closed interval, bounds included.
    Tensor xg = x.clone().set_requires_grad(true);
    sum(clamp(xg, -1, 0.5)).backward();
    check_close(xg.grad(), {0, 1, 1, 1, 0}, 0, 0, "clamp gradient");
    CHECK_THROWS_WITH_AS(clamp(x, 1, 0), doctest::Contains("[clamp] lower bound 1 is above upper bound 0"), Error);
  }
}

TEST_CASE("elementwise: integer dtypes for the integer-safe unary ops, with fractional and infinite clamp bounds") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor i32 = from_vector<int32_t>({-5, 0, 1, 2, 3, 7}, {6}, d);
    check_close(neg(i32), {5, 0, -1, -2, -3, -7}, 0, 0, "neg int32");
    check_close(abs(i32), {5, 0, 1, 2, 3, 7}, 0, 0, "abs int32");
    check_close(relu(i32), {0, 0, 1, 2, 3, 7}, 0, 0, "relu int32");
    CHECK(relu(i32).dtype() == DType::Int32);
    // Integer results of clamping to [0.5, 2.5]: the integers in that interval are 1 and 2.
    check_close(clamp(i32, 0.5, 2.5), {1, 1, 1, 2, 2, 2}, 0, 0, "fractional bounds");
    check_close(clamp(i32, -kInf, 2), {-5, 0, 1, 2, 2, 2}, 0, 0, "-inf lower bound");
    check_close(clamp(i32, 1, kInf), {1, 1, 1, 2, 3, 7}, 0, 0, "+inf upper bound");
    check_close(clamp(i32, -1e20, 1e20), {-5, 0, 1, 2, 3, 7}, 0, 0, "bounds beyond int32");
    const Tensor u8 = from_vector<uint8_t>({0, 9, 200}, {3}, d);
    check_close(clamp(u8, -4, 100), {0, 9, 100}, 0, 0, "uint8 clamp with a negative bound");
    check_close(neg(u8), {0, 247, 56}, 0, 0, "uint8 negation wraps (as PyTorch)");
    const Tensor i64 = from_vector<int64_t>({-4, 4}, {2}, d);
    check_close(clamp(i64, -kInf, 0), {-4, 0}, 0, 0, "int64 one-sided");
    for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Pow, UnaryOp::Sigmoid, UnaryOp::Softplus,
                       UnaryOp::LogSigmoid})
      CHECK_THROWS_WITH_AS(unary(op, i32, 2.0), doctest::Contains("does not support dtype int32"), Error);
    CHECK_THROWS_WITH_AS(neg(from_vector<bool>({true}, {1}, d)), doctest::Contains("[neg] does not support dtype bool"),
                         Error);
  }
}

TEST_CASE("elementwise: pow special exponents") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor x = from_vector<double>({-2, 0, 3}, {3}, d);
    check_close(pow(x, 0), {1, 1, 1}, 0, 0, "x^0 = 1, also 0^0");
    check_close(pow(x, 1), {-2, 0, 3}, 0, 0, "x^1");
    check_close(pow(x, 2), {4, 0, 9}, 0, 0, "x^2 of a negative base");
    check_close(pow(x, -1), {-0.5, kInf, 1.0 / 3.0}, 1e-16, 0, "x^-1");
    check_close(pow(x, 0.5), {kNaN, 0, std::sqrt(3.0)}, 1e-16, 0, "fractional power of a negative base");
    Tensor xg = x.clone().set_requires_grad(true);
    sum(pow(xg, 0)).backward();
    check_close(xg.grad(), {0, 0, 0}, 0, 0, "d x^0 = 0 everywhere, 0 included");
    Tensor xz = from_vector<double>({0}, {1}, d).set_requires_grad(true);
    sum(pow(xz, 2)).backward();
    check_close(xz.grad(), {0.0}, 0, 0, "d x^2 at 0");
  }
}

TEST_CASE("elementwise: gradients of every differentiable unary op by central differences") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (const UnaryCase& c : kUnaryCases) {
      CAPTURE(static_cast<int>(c.op));
      CAPTURE(c.p0);
      // Inputs kept off the kinks (0 for abs/relu, the clamp bounds) and in a moderate range so the
      // finite differences are well conditioned; a transposed view for a non-contiguous input.
      Tensor x = test::random({3, 4}, 7, 0.2, 1.0);
      if (c.lo < 0) x = where(lt(test::random({3, 4}, 8), 0.0), neg(x), x);
      if (c.op == UnaryOp::Clamp) x = mul(x, 2.0);
      auto f = [c](const std::vector<Tensor>& in) { return unary(c.op, in[0].transpose(0, 1), c.p0, c.p1); };
      test::gradcheck(f, {x}, d);
    }
  }
}

TEST_CASE("elementwise: every binary op with broadcasting, strides, 0-d and empty operands, all numeric dtypes") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      for (BinaryOp op : kBinaryOps) {
        CAPTURE(static_cast<int>(op));
        for (const auto& [a, b] : operand_pairs(dt, d, -10, 10)) {
          const Tensor out = binary(op, a, b);
          CHECK(out.dtype() == dt);
          // One correctly rounded IEEE operation: half an ulp; one ulp stated.
          check_close(out, broadcast_expected(a, b, [op](double x, double y) {
                        return static_cast<double>(binary_reference(op, x, y));
                      }), ulps(dt, 1), 0, "binary");
        }
      }
    }
    for (DType dt : {DType::Int32, DType::Int64, DType::UInt8}) {
      CAPTURE(dt);
      for (BinaryOp op : kBinaryOps) {
        CAPTURE(static_cast<int>(op));
        // Divisors kept away from zero: integer division by zero is tested on its own.
        for (const auto& [a, b] : operand_pairs(dt, d, 1, 100)) {
          const Tensor out = binary(op, a, b);
          CHECK(out.dtype() == dt);
          check_close(out, broadcast_expected(a, b, [op, dt](double x, double y) {
                        return integer_reference(op, static_cast<int64_t>(x), static_cast<int64_t>(y), dt);
                      }), 0, 0, "integer binary");
        }
      }
    }
    // Signed operands: truncating division and wrapping uint8 subtraction.
    check_close(div(from_vector<int32_t>({-7, 7, -7}, {3}, d), from_vector<int32_t>({2, -2, -2}, {3}, d)), {-3, -3, 3},
                0, 0, "truncating division");
    check_close(sub(from_vector<uint8_t>({1}, {1}, d), from_vector<uint8_t>({2}, {1}, d)), {255}, 0, 0, "uint8 wraps");
  }
}

TEST_CASE("elementwise: integer division by zero is an error, not a crash") {
  const Tensor a = from_vector<int32_t>({6, 7, 8});
  CHECK_THROWS_WITH_AS(div(a, from_vector<int32_t>({1, 0, 2})), doctest::Contains("[div] integer division by zero"),
                       Error);
  CHECK_THROWS_WITH_AS(div(from_vector<uint8_t>({6}), from_vector<uint8_t>({0})),
                       doctest::Contains("[div] integer division by zero"), Error);
  CHECK_THROWS_WITH_AS(div(from_vector<int64_t>({6}), scalar_tensor(0, DType::Int64).expand({1})),
                       doctest::Contains("[div] integer division by zero"), Error);
  CHECK_THROWS_WITH_AS(div(a, 0.0), doctest::Contains("[div] integer division by zero"), Error);
  // The one overflowing quotient wraps instead of trapping.
  const int32_t lowest = std::numeric_limits<int32_t>::min();
  check_close(div(from_vector<int32_t>({lowest}), from_vector<int32_t>({-1})), {static_cast<double>(lowest)}, 0, 0,
              "INT_MIN / -1");
  // Floating division by zero follows IEEE.
  check_close(div(from_vector<double>({1, -1, 0}), from_vector<double>({0, 0, 0})), {kInf, -kInf, kNaN}, 0, 0,
              "float division by zero");
}

TEST_CASE("elementwise: binary ops with a scalar keep the dtype") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor x = from_vector<double>({-1.5, 0, 2}, {3}, d);
    check_close(add(x, 0.25), {-1.25, 0.25, 2.25}, 0, 0, "add");
    check_close(sub(x, 0.25), {-1.75, -0.25, 1.75}, 0, 0, "sub");
    check_close(mul(x, -2.0), {3, -0, -4}, 0, 0, "mul");
    check_close(div(x, 4.0), {-0.375, 0, 0.5}, 0, 0, "div");
    check_close(2.0 - x, {3.5, 2, 0}, 0, 0, "scalar minus tensor");
    check_close(3.0 * x, {-4.5, 0, 6}, 0, 0, "scalar times tensor");
    const Tensor f = from_vector<float>({0.1f}, {1}, d);
    CHECK(add(f, 0.2).dtype() == DType::Float32);
    CHECK(add(f, 0.2).item<float>() == 0.1f + 0.2f);  // the scalar is rounded to float32 first, as PyTorch
    const Tensor i = from_vector<int32_t>({-7, 5}, {2}, d);
    check_close(add(i, 3.0), {-4, 8}, 0, 0, "int add");
    check_close(div(i, 2.0), {-3, 2}, 0, 0, "int div truncates");
    CHECK(mul(i, 2.0).dtype() == DType::Int32);
    // A scalar the integer dtype cannot hold is refused rather than silently truncated.
    CHECK_THROWS_WITH_AS(mul(i, 0.5), doctest::Contains("[mul] scalar 0.5 cannot be used with an int32 tensor"), Error);
    CHECK_THROWS_WITH_AS(add(from_vector<uint8_t>({1}, {1}, d), -1.0),
                         doctest::Contains("[add] scalar -1 cannot be used with an uint8 tensor"), Error);
    CHECK_THROWS_WITH_AS(add(from_vector<bool>({true}, {1}, d), 1.0), doctest::Contains("[add] does not support bool"),
                         Error);
    // Gradients of the scalar forms.
    auto fn = [](const std::vector<Tensor>& in) {
      return add(sub(mul(div(in[0], 3.0), -2.0), 0.5), 1.0);
    };
    test::gradcheck(fn, {test::random({4}, 1)}, d);
  }
}

TEST_CASE("elementwise: binary gradients, broadcasting reduced back to each operand") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (BinaryOp op : kBinaryOps) {
      CAPTURE(static_cast<int>(op));
      // b is shifted away from a (no maximum/minimum ties) and from zero (for division).
      auto f = [op](const std::vector<Tensor>& in) { return binary(op, in[0].transpose(0, 1), add(in[1], 2.5)); };
      test::gradcheck(f, {test::random({4, 3}, 1), test::random({1, 4}, 2)}, d);
      auto g = [op](const std::vector<Tensor>& in) { return binary(op, in[0], in[1]); };
      test::gradcheck(g, {test::random({}, 3, 2, 3), test::random({2, 3}, 4, -1, 1)}, d);
    }
    // Ties in maximum/minimum split the gradient in halves (as PyTorch).
    Tensor a = from_vector<double>({1, 2, 3}, {3}, d).set_requires_grad(true);
    Tensor b = from_vector<double>({1, 5, 0}, {3}, d).set_requires_grad(true);
    sum(maximum(a, b)).backward();
    check_close(a.grad(), {0.5, 0, 1}, 0, 0, "maximum d a");
    check_close(b.grad(), {0.5, 1, 0}, 0, 0, "maximum d b");
    a.set_grad(Tensor());
    b.set_grad(Tensor());
    sum(minimum(a, b)).backward();
    check_close(a.grad(), {0.5, 1, 0}, 0, 0, "minimum d a");
    check_close(b.grad(), {0.5, 0, 1}, 0, 0, "minimum d b");
    // Only the operand that requires grad receives one.
    Tensor c = from_vector<double>({2, 4}, {2}, d).set_requires_grad(true);
    sum(div(from_vector<double>({1, 1}, {2}, d), c)).backward();
    check_close(c.grad(), {-0.25, -1.0 / 16}, 0, 0, "d (1/c)");
  }
}

TEST_CASE("elementwise: every comparison, all dtypes, NaN, broadcasting and scalar forms") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::UInt8, DType::Bool}) {
      CAPTURE(dt);
      for (CompareOp op : kCompareOps) {
        CAPTURE(static_cast<int>(op));
        // Few distinct values so that equal pairs occur.
        for (const auto& [a, b] : operand_pairs(dt, d, 0, dt == DType::Bool ? 1.99 : 3.99)) {
          const Tensor out = compare(op, a, b);
          CHECK(out.dtype() == DType::Bool);
          check_close(out, broadcast_expected(a, b, [op](double x, double y) { return compare_reference(op, x, y) ? 1.0 : 0.0; }),
                      0, 0, "compare");
        }
      }
    }
    const Tensor n = from_vector<double>({kNaN, 1, kNaN}, {3}, d), m = from_vector<double>({kNaN, kNaN, 1}, {3}, d);
    CHECK(eq(n, m).to_vector<bool>() == std::vector<bool>{false, false, false});
    CHECK(ne(n, m).to_vector<bool>() == std::vector<bool>{true, true, true});
    CHECK(lt(n, m).to_vector<bool>() == std::vector<bool>{false, false, false});
    CHECK(ge(n, m).to_vector<bool>() == std::vector<bool>{false, false, false});
    // Named forms and scalar forms.
    const Tensor x = from_vector<double>({1, 2, 3}, {3}, d);
    CHECK(eq(x, 2.0).to_vector<bool>() == std::vector<bool>{false, true, false});
    CHECK(ne(x, 2.0).to_vector<bool>() == std::vector<bool>{true, false, true});
    CHECK(lt(x, 2.0).to_vector<bool>() == std::vector<bool>{true, false, false});
    CHECK(le(x, 2.0).to_vector<bool>() == std::vector<bool>{true, true, false});
    CHECK(gt(x, 2.0).to_vector<bool>() == std::vector<bool>{false, false, true});
    CHECK(ge(x, 2.0).to_vector<bool>() == std::vector<bool>{false, true, true});
    CHECK(eq(x, x).to_vector<bool>() == std::vector<bool>{true, true, true});
    CHECK(le(x, from_vector<double>({2}, {1}, d)).to_vector<bool>() == std::vector<bool>{true, true, false});
    // Integer tensors against scalars they cannot hold compare by value, not by a truncated scalar.
    const Tensor i = from_vector<int32_t>({1, 2, 3}, {3}, d);
    CHECK(lt(i, 2.5).to_vector<bool>() == std::vector<bool>{true, true, false});
    CHECK(le(i, 2.5).to_vector<bool>() == std::vector<bool>{true, true, false});
    CHECK(gt(i, 2.5).to_vector<bool>() == std::vector<bool>{false, false, true});
    CHECK(ge(i, 2.5).to_vector<bool>() == std::vector<bool>{false, false, true});
    CHECK(eq(i, 2.5).to_vector<bool>() == std::vector<bool>{false, false, false});
    CHECK(ne(i, 2.5).to_vector<bool>() == std::vector<bool>{true, true, true});
    CHECK(gt(i, -1e20).to_vector<bool>() == std::vector<bool>{true, true, true});
    const Tensor u = from_vector<uint8_t>({0, 255}, {2}, d);
    CHECK(eq(u, -1.0).to_vector<bool>() == std::vector<bool>{false, false});
    CHECK(gt(u, -1.0).to_vector<bool>() == std::vector<bool>{true, true});
    CHECK(lt(u, 256.0).to_vector<bool>() == std::vector<bool>{true, true});
    CHECK(eq(u, 255.0).to_vector<bool>() == std::vector<bool>{false, true});
    // Comparisons record no gradient.
    Tensor g = from_vector<double>({1}, {1}, d).set_requires_grad(true);
    CHECK(!lt(g, 0.0).requires_grad());
    CHECK(logical_not(from_vector<bool>({true, false}, {2}, d)).to_vector<bool>() == std::vector<bool>{false, true});
  }
  CHECK_THROWS_WITH_AS(logical_not(zeros({2})), doctest::Contains("[logical_not] expects a bool tensor"), Error);
  CHECK_THROWS_WITH_AS(lt(zeros({2}), zeros({2}, DType::Int32)), doctest::Contains("[lt] operands have different dtypes"),
                       Error);
  CHECK_THROWS_WITH_AS(eq(zeros({2}), zeros({3})), doctest::Contains("[eq] shapes [2] and [3] do not broadcast"), Error);
}

TEST_CASE("elementwise: where broadcasts all three operands and routes the gradient") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8, DType::Bool}) {
      CAPTURE(dt);
      const Tensor cond = test::spread(lt(test::random({4, 1, 3}, 1), 0.0).to(d));
      const Tensor a = test::random({5, 1}, 2, 0, 1.99).to(dt).to(d);
      const Tensor b = test::random({4, 1, 1}, 3, 0, 1.99).to(dt).to(d).transpose(0, 2).transpose(0, 2);
      const HostTensor hc(cond), ha(a), hb(b);
      const Shape shape{4, 5, 3};
      HostTensor ref(shape, 0.0);
      for (int64_t f = 0; f < ref.numel(); ++f) {
        const auto idx = test::unravel(f, shape);
        ref.data[f] = broadcast_at(hc, idx) != 0 ? broadcast_at(ha, idx) : broadcast_at(hb, idx);
      }
      const Tensor out = where(cond, a, b);
      CHECK(out.dtype() == dt);
      check_close(out, ref.tensor(), 0, 0, "where");
    }
    const Tensor c = from_vector<bool>({true, false, true, false, false, true}, {2, 3}, d);
    auto f = [c](const std::vector<Tensor>& in) { return where(c, in[0], in[1].transpose(0, 1)); };
    test::gradcheck(f, {test::random({1, 3}, 4), test::random({3, 2}, 5)}, d);
    Tensor a = full({3}, 1.0, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    sum(where(from_vector<bool>({true, false, true}, {3}, d), a, zeros({3}, TensorOptions(DType::Float64).device(d))))
        .backward();
    check_close(a.grad(), {1, 0, 1}, 0, 0, "where gradient");
    CHECK(where(empty({0, 3}, TensorOptions(DType::Bool).device(d)), zeros({3}, TensorOptions().device(d)), ones({1}, TensorOptions().device(d)))
              .shape() == Shape{0, 3});
  }
  CHECK_THROWS_WITH_AS(where(zeros({2}), zeros({2}), zeros({2})), doctest::Contains("[where] condition must be a bool tensor, got float32"),
                       Error);
  CHECK_THROWS_WITH_AS(where(zeros({2}, DType::Bool), zeros({2}), zeros({2}, DType::Float64)),
                       doctest::Contains("[where] operands have different dtypes"), Error);
  CHECK_THROWS_WITH_AS(where(zeros({3}, DType::Bool), zeros({2}), zeros({2})), doctest::Contains("[where] shapes"), Error);
}

TEST_CASE("elementwise: empty tensors pass through every op") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor e = empty({0, 4}, TensorOptions().device(d));
    for (UnaryOp op : kUnaryOps) CHECK(unary(op, e, 1.0, 2.0).shape() == Shape{0, 4});
    for (BinaryOp op : kBinaryOps) CHECK(binary(op, e, ones({1, 4}, TensorOptions().device(d))).shape() == Shape{0, 4});
    for (CompareOp op : kCompareOps) CHECK(compare(op, e, e).shape() == Shape{0, 4});
    Tensor x = empty({0, 4}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    sum(mul(sigmoid(x), 2.0)).backward();
    CHECK(x.grad().shape() == Shape{0, 4});
  }
}

TEST_CASE("elementwise: binary ops refuse mismatched operands") {
  const Tensor a = zeros({2, 3});
  CHECK_THROWS_WITH_AS(add(a, zeros({2, 3}, DType::Float64)),
                       doctest::Contains("[add] operands have different dtypes: float32 and float64"), Error);
  CHECK_THROWS_WITH_AS(mul(a, zeros({4})), doctest::Contains("[mul] shapes [2, 3] and [4] do not broadcast"), Error);
  CHECK_THROWS_WITH_AS(maximum(zeros({1}, DType::Bool), zeros({1}, DType::Bool)),
                       doctest::Contains("[maximum] does not support bool operands"), Error);
  CHECK_THROWS_WITH_AS(sub(a, Tensor()), doctest::Contains("[sub] undefined operand"), Error);
  CHECK_THROWS_WITH_AS(exp(Tensor()), doctest::Contains("[exp] undefined input"), Error);
  if (cuda_available())
    CHECK_THROWS_WITH_AS(div(a, a.to(Device::cuda())), doctest::Contains("[div] operands are on different devices"), Error);
}

TEST_CASE("elementwise: sum_to reduces broadcast dimensions") {
  const Tensor g = arange(0.0, 24.0, 1.0, DType::Float64).reshape({2, 3, 4});
  check_close(sum_to(g, {3, 1}), {0 + 1 + 2 + 3 + 12 + 13 + 14 + 15, 4 + 5 + 6 + 7 + 16 + 17 + 18 + 19,
                                  8 + 9 + 10 + 11 + 20 + 21 + 22 + 23}, 0, 0, "to [3, 1]");
  CHECK(sum_to(g, {}).item<double>() == 276);
  CHECK(sum_to(g, {2, 3, 4}).storage() == g.storage());
  check_close(sum_to(g, {1, 1, 4}), {60, 66, 72, 78}, 0, 0, "to [1, 1, 4]");
  CHECK_THROWS_WITH_AS(sum_to(g, {5}), doctest::Contains("[sum_to] cannot sum shape [2, 3, 4] to [5]"), Error);
  CHECK_THROWS_WITH_AS(sum_to(zeros({3}), {1, 3}), doctest::Contains("[sum_to] cannot sum shape [3] to [1, 3]"), Error);
}
