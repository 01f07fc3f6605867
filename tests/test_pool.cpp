// max_pool2d against a naive double-precision window scan written here.
#include <cmath>
#include <limits>

#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

Pool2dParams pool(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool ceil_mode) {
  Pool2dParams p;
  p.kernel = {kh, kw};
  p.stride = {sh, sw};
  p.padding = {ph, pw};
  p.ceil_mode = ceil_mode;
  return p;
}

// PyTorch's rule, restated: floor or ceil of (in + 2 pad - kernel) / stride, plus one; in ceil mode a
// last window that would start at or past in + pad (inside the right padding) is dropped.
int64_t expected_size(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const double span = static_cast<double>(in + 2 * p - k) / static_cast<double>(s);
  int64_t out = static_cast<int64_t>(ceil_mode ? std::ceil(span) : std::floor(span)) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

struct Pooled {
  std::vector<double> values;
  std::vector<int64_t> indices;
};

// Scans each window in row-major order over the cells inside the input; a larger value or any NaN
// takes over (so the first maximum wins, and the last NaN).
Pooled reference_pool(const std::vector<double>& x, const Shape& s, const Pool2dParams& p) {
  const int64_t OH = expected_size(s[2], p.kernel[0], p.stride[0], p.padding[0], p.ceil_mode);
  const int64_t OW = expected_size(s[3], p.kernel[1], p.stride[1], p.padding[1], p.ceil_mode);
  Pooled r;
  for (int64_t plane = 0; plane < s[0] * s[1]; ++plane)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double best = -std::numeric_limits<double>::infinity();
        int64_t best_at = -1;
        for (int64_t i = 0; i < p.kernel[0]; ++i)
          for (int64_t j = 0; j < p.kernel[1]; ++j) {
            const int64_t h = oh * p.stride[0] - p.padding[0] + i, w = ow * p.stride[1] - p.padding[1] + j;
            if (h < 0 || h >= s[2] || w < 0 || w >= s[3]) continue;
            const double v = x[(plane * s[2] + h) * s[3] + w];
            if (best_at < 0) best_at = h * s[3] + w;
            if (v > best || std::isnan(v)) {
              best = v;
              best_at = h * s[3] + w;
            }
          }
        r.values.push_back(best);
        r.indices.push_back(best_at);
      }
  return r;
}

std::vector<double> as_doubles(const std::vector<int64_t>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace

TEST_CASE("max_pool2d: output sizes follow PyTorch, ceil mode included") {
  // Values checked against torch.nn.functional.max_pool2d by hand: the last ceil-mode window must
  // start inside the input or the left padding.
  CHECK(pool(2, 2, 2, 2, 0, 0, false).out_h(7) == 3);
  CHECK(pool(2, 2, 2, 2, 0, 0, true).out_h(7) == 4);
  CHECK(pool(3, 3, 2, 2, 1, 1, false).out_h(8) == 4);
  CHECK(pool(3, 3, 2, 2, 1, 1, true).out_h(8) == 5);  // (4) * 2 = 8 < 8 + 1: kept
  CHECK(pool(2, 2, 2, 2, 1, 1, true).out_h(5) == 3);  // the 4th window would start at 6 >= 5 + 1: dropped
  CHECK(pool(3, 3, 3, 3, 0, 0, true).out_w(10) == 4);
  for (int64_t in = 1; in <= 13; ++in)
    for (int64_t k = 1; k <= 4; ++k)
      for (int64_t s = 1; s <= 3; ++s)
        for (int64_t p = 0; 2 * p <= k; ++p)
          for (bool ceil_mode : {false, true}) {
            if (in + 2 * p < k) continue;
            CAPTURE(in);
            CAPTURE(k);
            CAPTURE(s);
            CAPTURE(p);
            CAPTURE(ceil_mode);
            CHECK(pool(k, k, s, s, p, p, ceil_mode).out_h(in) == expected_size(in, k, s, p, ceil_mode));
          }
}

TEST_CASE("max_pool2d: values and indices match the window scan (float64 and float32)") {
  const std::vector<std::pair<Shape, Pool2dParams>> cases = {
      {{2, 3, 9, 11}, pool(3, 3, 2, 2, 1, 1, false)},  // the ResNet stem pool
      {{2, 3, 9, 11}, pool(3, 3, 2, 2, 1, 1, true)},
      {{1, 2, 7, 9}, pool(2, 2, 2, 2, 0, 0, true)},    // odd sizes: ceil adds a clipped window
      {{1, 2, 5, 5}, pool(2, 2, 2, 2, 1, 1, true)},    // ceil window that would start in the padding
      {{1, 3, 10, 8}, pool(3, 2, 2, 1, 1, 0, false)},  // non-square kernel and stride
      {{2, 2, 6, 7}, pool(2, 3, 1, 2, 1, 1, true)},
      {{1, 1, 4, 4}, pool(4, 4, 4, 4, 2, 2, true)},    // kernel as large as the input, half padding
      {{3, 37, 33, 35}, pool(3, 3, 2, 2, 1, 1, true)}, // large enough to run threaded
  };
  for (Device d : test::devices()) {
    uint64_t seed = 1;
    for (const auto& [shape, p] : cases) {
      CAPTURE(d);
      CAPTURE(shape_str(shape));
      const Tensor x64 = test::random(shape, ++seed);
      for (DType t : {DType::Float64, DType::Float32}) {
        // The reference scans the very values the op sees (float32: the rounded copies): the maximum
        // is one of them, so values and indices must match exactly.
        const Tensor x = x64.to(t);
        const Pooled ref = reference_pool(test::values(x), shape, p);
        const PoolResult r = max_pool2d_with_indices(x.to(d), p);
        REQUIRE(r.values.shape() == Shape{shape[0], shape[1], p.out_h(shape[2]), p.out_w(shape[3])});
        CHECK(r.indices.dtype() == DType::Int64);
        CHECK(r.values.dtype() == t);
        check_close(r.values, ref.values, 0, 0, "values");
        check_close(r.indices, as_doubles(ref.indices), 0, 0, "indices");
        check_close(max_pool2d(x.to(d), p), r.values, 0, 0, "max_pool2d == with_indices().values");
      }
    }
  }
}

TEST_CASE("max_pool2d: NaN wins its windows, -inf windows point at their first cell, ties go to the first") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    // One 4x4 plane, 2x2 windows stride 2: [NaN window, -inf window; tie window, two-NaN window].
    const std::vector<double> x = {1,    nan,  -inf, -inf,  //
                                   2,    3,    -inf, -inf,  //
                                   5,    5,    nan,  1,     //
                                   4,    5,    2,    nan};
    const Tensor t = from_vector(x, {1, 1, 4, 4}).to(d);
    const PoolResult r = max_pool2d_with_indices(t, pool(2, 2, 2, 2, 0, 0, false));
    const Pooled ref = reference_pool(x, {1, 1, 4, 4}, pool(2, 2, 2, 2, 0, 0, false));
    check_close(r.values, ref.values, 0, 0, "values");
    check_close(r.indices, as_doubles(ref.indices), 0, 0, "indices");
    const auto idx = r.indices.to_vector<int64_t>();
    CHECK(idx == std::vector<int64_t>{1, 2, 8, 15});  // first NaN alone, first -inf, first 5, last NaN
  }
}

TEST_CASE("max_pool2d: gradient goes to the chosen cell, summed where windows overlap; gradcheck") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Shape shape{2, 2, 7, 6};
    const Pool2dParams p = pool(3, 3, 2, 1, 1, 1, true);  // overlapping windows
    const Tensor x = test::random(shape, 71);
    const Tensor gy = test::random({2, 2, p.out_h(7), p.out_w(6)}, 72);
    const Pooled ref = reference_pool(test::values(x), shape, p);
    std::vector<double> expected(shape_numel(shape), 0.0);
    const auto g = test::values(gy);
    const int64_t outputs = p.out_h(7) * p.out_w(6);
    for (size_t o = 0; o < g.size(); ++o) expected[(o / outputs) * 42 + ref.indices[o]] += g[o];
    Tensor xl = x.to(d).set_requires_grad(true);
    max_pool2d(xl, p).backward(gy.to(d));
    check_close(xl.grad(), expected, 1e-15, 0, "dx");
    // Random values in [-1, 1) sit far (≫ 1e-6) from ties, so central differences see a linear map.
    test::gradcheck([p](const std::vector<Tensor>& in) { return max_pool2d(in[0], p); }, {x}, d);
  }
}

TEST_CASE("max_pool2d: non-contiguous input, empty batch, and the backward op on its own") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Pool2dParams p = pool(3, 3, 2, 2, 1, 1, false);
    const Tensor nhwc = test::random({2, 9, 8, 3}, 81).to(d);
    const Tensor x = nhwc.permute({0, 3, 1, 2});
    REQUIRE(!x.is_contiguous());
    const PoolResult a = max_pool2d_with_indices(x, p), b = max_pool2d_with_indices(x.contiguous(), p);
    check_close(a.values, b.values, 0, 0, "values of a permuted input");
    check_close(a.indices, b.indices, 0, 0, "indices of a permuted input");

    Tensor empty_x = zeros({0, 3, 8, 8}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    const Tensor y = max_pool2d(empty_x, p);
    CHECK(y.shape() == Shape{0, 3, 4, 4});
    sum(y).backward();
    CHECK(empty_x.grad().shape() == Shape{0, 3, 8, 8});

    const Tensor gy = test::random(a.values.shape(), 82).to(d);
    Tensor via_autograd = x.contiguous().detach().set_requires_grad(true);
    max_pool2d(via_autograd, p).backward(gy);
    check_close(max_pool2d_backward(gy.transpose(2, 3).contiguous().transpose(2, 3), a.indices, x.shape(), p),
                via_autograd.grad(), 0, 0, "backward op with a non-contiguous grad_y");
  }
}

TEST_CASE("max_pool2d: bad inputs are refused with messages naming the op and the problem") {
  const Tensor x = test::random({1, 2, 6, 6}, 91);
  CHECK_THROWS_WITH_AS(max_pool2d(test::random({2, 6, 6}, 1), Pool2dParams{}),
                       doctest::Contains("[max_pool2d] expects a 4-D NCHW input, got shape [2, 6, 6]"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(x, pool(2, 2, 2, 2, 2, 0, false)),
                       doctest::Contains("[max_pool2d] padding must be at most half the kernel size"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(x, pool(0, 2, 2, 2, 0, 0, false)),
                       doctest::Contains("[max_pool2d] kernel and stride must be at least 1"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(x, pool(7, 7, 1, 1, 0, 0, false)), doctest::Contains("is too small for"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(x.to(DType::Int64), Pool2dParams{}), doctest::Contains("must be float32 or float64"),
                       Error);
  const PoolResult r = max_pool2d_with_indices(x, Pool2dParams{});
  const Pool2dParams p{};
  CHECK_THROWS_WITH_AS(max_pool2d_backward(r.values, r.indices.to(DType::Int32), x.shape(), p),
                       doctest::Contains("[max_pool2d_backward] argument 'indices' must be int64"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d_backward(r.values, r.indices.slice(3, 0, 2), x.shape(), p),
                       doctest::Contains("[max_pool2d_backward] indices have shape"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d_backward(r.values, r.indices, x.shape(), pool(3, 3, 1, 1, 1, 1, false)),
                       doctest::Contains("does not come from an input of shape [1, 2, 6, 6] pooled with"), Error);
  // Outside the plane, and inside the plane but outside the output's own window: both refused, on
  // every device (the GPU's gradient only looks inside each window).
  for (Device d : test::devices()) {
    CAPTURE(d);
    CHECK_THROWS_WITH_AS(max_pool2d_backward(r.values.to(d), full(r.indices.shape(), 36.0, DType::Int64).to(d),
                                             x.shape(), p),
                         doctest::Contains("[max_pool2d_backward] index 36 at output 0 lies outside its pooling window"),
                         Error);
    CHECK_THROWS_WITH_AS(max_pool2d_backward(r.values.to(d), full(r.indices.shape(), 0.0, DType::Int64).to(d),
                                             x.shape(), p),
                         doctest::Contains("index 0 at output 1 lies outside its pooling window (rows 0..1, columns 2..3"),
                         Error);
  }
}
