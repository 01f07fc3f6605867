// Reductions: sum and mean over any set of dims with and without keepdim, max/min/argmax/argmin
// with indices (first index among ties, NaN wins), for every dtype, strided, 0-d and empty inputs,
// the threaded paths, gradients by central differences and bad input.
#include <cmath>
#include <limits>
#include <set>

#include "reference.hpp"

using namespace isrn;
using test::check_close;
using test::HostTensor;
using LD = long double;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// The output shape of a reduction over `dims` (wrapped), with or without kept dims.
Shape reduced_shape(const Shape& in, const std::set<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(in.size()); ++d) {
    if (!dims.count(d)) out.push_back(in[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

std::set<int64_t> wrapped(const std::vector<int64_t>& dims, int64_t ndim) {
  std::set<int64_t> out;
  for (int64_t d : dims) out.insert(d < 0 ? d + ndim : d);
  if (dims.empty())
    for (int64_t d = 0; d < ndim; ++d) out.insert(d);
  return out;
}

// Long double sums per output element, and the largest Σ|x| of any output (for the error bound).
struct SumReference {
  Tensor sums;
  double max_abs_sum = 0;
  int64_t count = 0;  // elements per output
};

SumReference sum_reference(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const HostTensor hx(x);
  const std::set<int64_t> red = wrapped(dims, x.dim());
  const Shape out_shape = reduced_shape(x.shape(), red, false);
  const int64_t outputs = shape_numel(out_shape);
  std::vector<LD> total(static_cast<size_t>(outputs), 0), absolute(static_cast<size_t>(outputs), 0);
  for (int64_t f = 0; f < hx.numel(); ++f) {
    const auto idx = test::unravel(f, x.shape());
    std::vector<int64_t> out_idx;
    for (int64_t d = 0; d < x.dim(); ++d)
      if (!red.count(d)) out_idx.push_back(idx[d]);
    const int64_t o = test::ravel(out_idx, out_shape);
    total[o] += hx.data[f];
    absolute[o] += std::fabs(static_cast<LD>(hx.data[f]));
  }
  SumReference r;
  HostTensor out(reduced_shape(x.shape(), red, keepdim), 0.0);
  for (int64_t o = 0; o < outputs; ++o) {
    out.data[o] = static_cast<double>(total[o]);
    r.max_abs_sum = std::max(r.max_abs_sum, static_cast<double>(absolute[o]));
  }
  r.sums = out.tensor();
  r.count = outputs == 0 ? 0 : x.numel() / outputs;
  return r;
}

// First extremum along `dim` (NaN wins at its first occurrence), as values and indices.
std::pair<Tensor, Tensor> extremum_reference(const Tensor& x, int64_t dim, bool is_max, bool keepdim) {
  const HostTensor hx(x);
  const int64_t nd = x.dim();
  if (nd == 0) return {hx.tensor(), scalar_tensor(0, DType::Int64)};
  dim = dim < 0 ? dim + nd : dim;
  const Shape out_shape = reduced_shape(x.shape(), {dim}, keepdim);
  Shape flat_out = reduced_shape(x.shape(), {dim}, false);
  HostTensor values(out_shape, 0.0), indices(out_shape, 0.0);
  for (int64_t o = 0; o < shape_numel(flat_out); ++o) {
    auto idx = test::unravel(o, flat_out);
    idx.insert(idx.begin() + dim, 0);
    double best = hx(idx);
    int64_t at = 0;
    for (int64_t j = 1; j < x.size(dim) && !std::isnan(best); ++j) {
      idx[dim] = j;
      const double v = hx(idx);
      if (std::isnan(v) || (is_max ? v > best : v < best)) {
        best = v;
        at = j;
      }
    }
    values.data[o] = best;
    indices.data[o] = static_cast<double>(at);
  }
  return {values.tensor(), indices.tensor()};
}

double ulp(DType dt) { return dt == DType::Float32 ? 0x1p-23 : 0x1p-52; }

}  // namespace

TEST_CASE("reduce: sum over any dims, with and without keepdim, for strided inputs and all dtypes") {
  const std::vector<std::vector<int64_t>> dim_sets{{}, {0}, {2}, {0, 2}, {-1, 1}, {0, 1, 2}, {1}};
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::UInt8, DType::Bool}) {
      CAPTURE(dt);
      const double hi = dt == DType::Bool ? 1.99 : (dt == DType::UInt8 ? 255.99 : 100);
      const double lo = (dt == DType::Bool || dt == DType::UInt8) ? 0 : -100;
      const Tensor base = test::random({9, 7, 5}, 1, lo, hi).to(dt).to(d);
      for (const Tensor& x : {base.permute({2, 1, 0}).contiguous().permute({2, 1, 0}), test::spread(base)}) {
        for (const auto& dims : dim_sets) {
          for (bool keepdim : {false, true}) {
            CAPTURE(dims.size());
            CAPTURE(keepdim);
            const Tensor s = sum(x, dims, keepdim);
            const SumReference ref = sum_reference(x, dims, keepdim);
            if (is_floating(dt)) {
              CHECK(s.dtype() == dt);
              // Accumulated in double (float32 too), then rounded once to the dtype: one ulp of the
              // result plus n·2⁻⁵³·Σ|x| for the double accumulation.
              check_close(s, ref.sums, ulp(dt), ref.count * 0x1p-53 * ref.max_abs_sum, "float sum");
            } else {
              CHECK(s.dtype() == DType::Int64);  // integer and bool inputs sum to int64, exactly
              check_close(s, ref.sums, 0, 0, "integer sum");
            }
          }
        }
      }
    }
    // A 4-D case with two separated dims.
    const Tensor x4 = test::random({3, 4, 5, 6}, 2).to(d);
    check_close(sum(x4, {1, 3}, true), sum_reference(x4, {1, 3}, true).sums, 1e-15, 1e-14, "4-D sum");
  }
}

TEST_CASE("reduce: sum's threaded paths, one long row and many rows") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      const Tensor row = test::random({150001}, 1, -1, 1).to(dt).to(d);
      const SumReference r = sum_reference(row, {}, false);
      check_close(sum(row), r.sums, ulp(dt), r.count * 0x1p-53 * r.max_abs_sum * 4, "long row");
      const Tensor rows = test::random({400, 301}, 2, -1, 1).to(dt).to(d);
      const SumReference rr = sum_reference(rows, {1}, false);
      check_close(sum(rows, {1}), rr.sums, ulp(dt), rr.count * 0x1p-53 * rr.max_abs_sum, "many rows");
    }
    // int64 sums of a long row are exact.
    const Tensor ints = test::random({200003}, 3, 0, 1000).to(DType::Int64).to(d);
    check_close(sum(ints), sum_reference(ints, {}, false).sums, 0, 0, "long int row");
  }
}

TEST_CASE("reduce: mean, and sums and means of 0-d and empty tensors") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      const Tensor x = test::random({4, 6, 5}, 1).to(dt).to(d);
      for (const auto& dims : std::vector<std::vector<int64_t>>{{}, {1}, {0, 2}}) {
        const SumReference r = sum_reference(x, dims, true);
        const HostTensor hs(r.sums);
        HostTensor expected = hs;
        for (double& v : expected.data) v /= static_cast<double>(r.count);
        // The sum's bound plus one more rounding for the division.
        check_close(mean(x, dims, true), expected.tensor(), 2 * ulp(dt), r.count * 0x1p-53 * r.max_abs_sum, "mean");
      }
      const TensorOptions o = TensorOptions(dt).device(d);
      CHECK(sum(scalar_tensor(2.5, o)).to(DType::Float64).item<double>() == 2.5);
      CHECK(sum(scalar_tensor(2.5, o), {0}).to(DType::Float64).item<double>() == 2.5);
      CHECK(mean(scalar_tensor(2.5, o)).to(DType::Float64).item<double>() == 2.5);
      // Empty reductions: a sum over nothing is 0, a mean over nothing is NaN (as PyTorch).
      check_close(sum(empty({3, 0}, o), {1}), {0, 0, 0}, 0, 0, "sum over an empty dim");
      CHECK(sum(empty({0, 4}, o), {1}).shape() == Shape{0});
      CHECK(sum(empty({0, 4}, o)).to(DType::Float64).item<double>() == 0.0);
      CHECK(std::isnan(mean(empty({0}, o)).to(DType::Float64).item<double>()));
      CHECK(sum(empty({2, 0, 3}, o), {1}, true).shape() == Shape{2, 1, 3});
    }
  }
}

TEST_CASE("reduce: sum and mean gradients") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (bool keepdim : {false, true}) {
      CAPTURE(keepdim);
      auto f = [keepdim](const std::vector<Tensor>& in) { return sum(in[0].transpose(0, 2), {0, 2}, keepdim); };
      test::gradcheck(f, {test::random({3, 4, 2}, 1)}, d);
      auto g = [keepdim](const std::vector<Tensor>& in) { return mean(in[0], {-1}, keepdim); };
      test::gradcheck(g, {test::random({3, 5}, 2)}, d);
    }
    auto all = [](const std::vector<Tensor>& in) { return mul(sum(in[0]), mean(in[0])); };
    test::gradcheck(all, {test::random({2, 3}, 3)}, d);
  }
}

TEST_CASE("reduce: max and min along a dim, with the first index among ties and NaN winning") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::UInt8}) {
      CAPTURE(dt);
      // Few distinct values: every row has ties for its extremum.
      const Tensor base = test::random({6, 8, 5}, 1, 0, 3.99).to(DType::Int64).to(dt).to(d);
      for (const Tensor& x : {base, test::spread(base), base.transpose(0, 2).contiguous().transpose(0, 2)}) {
        for (int64_t dim : {0, 1, 2, -1}) {
          for (bool keepdim : {false, true}) {
            CAPTURE(dim);
            CAPTURE(keepdim);
            for (bool is_max : {true, false}) {
              const ValuesIndices r = is_max ? max(x, dim, keepdim) : min(x, dim, keepdim);
              const auto [values, indices] = extremum_reference(x, dim, is_max, keepdim);
              CHECK(r.values.dtype() == dt);
              CHECK(r.indices.dtype() == DType::Int64);
              check_close(r.values, values, 0, 0, "extremum values");
              check_close(r.indices, indices, 0, 0, "extremum indices");
              check_close(is_max ? argmax(x, dim, keepdim) : argmin(x, dim, keepdim), indices, 0, 0, "arg");
            }
          }
        }
      }
    }
    // NaN wins wherever it is, at its first index; a row without NaN is unaffected.
    const Tensor n = from_vector<double>({1, kNaN, 3, kNaN, 5, 2, 9, 0}, {2, 4}, d);
    check_close(max(n, 1).values, {kNaN, 9}, 0, 0, "max with NaN");
    check_close(max(n, 1).indices, {1, 2}, 0, 0, "index of the first NaN");
    check_close(min(n, 1).indices, {1, 3}, 0, 0, "min with NaN");
    CHECK(std::isnan(max(n).item<double>()));
    // Infinities and signed zero.
    check_close(max(from_vector<double>({-INFINITY, -INFINITY}, {2}, d), 0).indices, {0.0}, 0, 0, "-inf ties");
    // Whole-tensor forms and a 0-d input.
    const Tensor x = from_vector<float>({3, -1, 7, 7, -5, 0}, {2, 3}, d);
    CHECK(max(x).item<float>() == 7.0f);
    CHECK(min(x).item<float>() == -5.0f);
    CHECK(max(x).dim() == 0);
    const ValuesIndices s = max(scalar_tensor(4, TensorOptions().device(d)), 0);
    CHECK(s.values.item<float>() == 4.0f);
    CHECK(s.indices.item<int64_t>() == 0);
    // A kept dim of size zero is fine; reducing an empty dim is not.
    CHECK(max(empty({0, 3}, TensorOptions().device(d)), 1).values.shape() == Shape{0});
  }
}

TEST_CASE("reduce: max and min gradients go to the first extremum only") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (bool keepdim : {false, true}) {
      CAPTURE(keepdim);
      auto g = [keepdim](const std::vector<Tensor>& in) { return max(in[0].transpose(0, 1), 1, keepdim).values; };
      test::gradcheck(g, {test::random({4, 3}, 1)}, d);
      auto h = [keepdim](const std::vector<Tensor>& in) { return min(in[0], -1, keepdim).values; };
      test::gradcheck(h, {test::random({2, 3, 4}, 2)}, d);
    }
    auto whole = [](const std::vector<Tensor>& in) { return mul(max(in[0]), min(in[0])); };
    test::gradcheck(whole, {test::random({3, 3}, 3)}, d);
    Tensor t = from_vector<double>({3, 1, 3, 0, 0, 2}, {2, 3}, d).set_requires_grad(true);
    sum(max(t, 1).values).backward();
    check_close(t.grad(), {1, 0, 0, 0, 0, 1}, 0, 0, "max gradient at the first of tied maxima");
    t.set_grad(Tensor());
    sum(min(t, 1).values).backward();
    check_close(t.grad(), {0, 1, 0, 1, 0, 0}, 0, 0, "min gradient at the first of tied minima");
    CHECK(!argmax(t, 0).requires_grad());
  }
}

TEST_CASE("reduce: bad input") {
  const Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH_AS(sum(x, {1, -1}), doctest::Contains("[sum] dim 1 listed twice"), Error);
  CHECK_THROWS_WITH_AS(sum(x, {2}), doctest::Contains("[sum] dim 2 is out of range"), Error);
  CHECK_THROWS_WITH_AS(mean(zeros({2}, DType::Int32)), doctest::Contains("[mean] expects a float32 or float64 tensor"),
                       Error);
  CHECK_THROWS_WITH_AS(max(empty({2, 0}), 1), doctest::Contains("[max] cannot reduce an empty dimension 1"), Error);
  CHECK_THROWS_WITH_AS(min(empty({0})), doctest::Contains("[min] cannot reduce an empty dimension"), Error);
  CHECK_THROWS_WITH_AS(max(zeros({2}, DType::Bool), 0), doctest::Contains("[max] does not support bool"), Error);
  CHECK_THROWS_WITH_AS(argmin(x, -3), doctest::Contains("[min] dim -3 is out of range"), Error);
  CHECK_THROWS_WITH_AS(sum(Tensor()), doctest::Contains("[sum] undefined input"), Error);
}
