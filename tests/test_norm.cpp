#include <algorithm>
#include <cmath>

#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

// Independent reference: two-pass mean and biased variance per (n, group) in double, then the affine
// and the optional ReLU, on the host.
Tensor naive_group_norm(const Tensor& x, int64_t groups, const Tensor& gamma, const Tensor& beta, double eps,
                        bool relu) {
  const auto v = test::values(x.contiguous());
  const int64_t n = x.size(0), c = x.size(1), plane = x.numel() / std::max<int64_t>(n * c, 1);
  const int64_t cg = c / groups, size = cg * plane;
  const std::vector<double> g = gamma.defined() ? test::values(gamma) : std::vector<double>(c, 1.0);
  const std::vector<double> b = beta.defined() ? test::values(beta) : std::vector<double>(c, 0.0);
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < groups; ++k) {
      const int64_t base = (i * c + k * cg) * plane;
      double m = 0.0, var = 0.0;
      for (int64_t j = 0; j < size; ++j) m += v[base + j];
      m /= static_cast<double>(size);
      for (int64_t j = 0; j < size; ++j) var += (v[base + j] - m) * (v[base + j] - m);
      var /= static_cast<double>(size);
      for (int64_t j = 0; j < size; ++j) {
        const int64_t ch = k * cg + j / plane;
        double y = (v[base + j] - m) / std::sqrt(var + eps) * g[ch] + b[ch];
        if (relu) y = std::max(y, 0.0);
        out[base + j] = y;
      }
    }
  return from_vector(out, x.shape());
}

struct GnCase {
  Shape shape;
  int64_t groups;
};

// Shapes with no spatial dims, one to three spatial dims, single-channel groups, and groups larger
// than the kernel's 16384-element chunk (so chunked statistics and planes are exercised).
const std::vector<GnCase> kCases = {{{3, 6, 5, 7}, 3}, {{2, 4}, 2},       {{1, 8, 3, 4, 5}, 4},
                                    {{2, 12, 1}, 12},  {{2, 6, 11}, 1},   {{1, 4, 130, 131}, 2}};

}  // namespace

TEST_CASE("group_norm: fused forward matches a naive double reference and the composite") {
  for (Device d : test::devices()) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      // float64: both sides accumulate in double, only rounding differs (≈1e-15 relative); 1e-11 leaves
      // room for the shifted one-pass variance. float32: statistics over up to 3.4e4 elements may be
      // accumulated in float on other backends, error ≈ √D·ε ≈ 2e-5 on O(1) outputs.
      const double tol = dt == DType::Float64 ? 1e-11 : 2e-5;
      for (const auto& [shape, groups] : kCases) {
        for (int affine = 0; affine < 2; ++affine) {
          for (bool relu : {false, true}) {
            CAPTURE(d);
            CAPTURE(dt);
            CAPTURE(shape_str(shape));
            CAPTURE(affine);
            CAPTURE(relu);
            const int64_t c = shape[1];
            Tensor x = test::random(shape, 11 + c, -2.0, 3.0, dt);
            Tensor gamma = affine ? test::random({c}, 21, 0.5, 1.5, dt) : Tensor();
            Tensor beta = affine ? test::random({c}, 22, -0.5, 0.5, dt) : Tensor();
            Tensor expected = naive_group_norm(x, groups, gamma, beta, 1e-5, relu);
            Tensor xd = x.to(d), gd = affine ? gamma.to(d) : Tensor(), bd = affine ? beta.to(d) : Tensor();
            Tensor y = group_norm(xd, groups, gd, bd, 1e-5, relu);
            CHECK(y.dtype() == dt);
            CHECK(y.device() == d);
            check_close(y, expected, tol, tol, "fused vs naive");
            Tensor composite = group_norm_composite(xd, groups, gd, bd, 1e-5);
            if (relu) composite = isrn::relu(composite);
            check_close(y, composite, tol, tol, "fused vs composite");
          }
        }
      }
    }
  }
}

TEST_CASE("group_norm: a large mean offset, constant groups and non-contiguous input") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    // Mean 1e4 with spread 1: a naive E[x²] − E[x]² in float would lose every digit of the variance.
    Tensor x = add(test::random({2, 4, 9, 10}, 5, -1.0, 1.0), 1e4);
    check_close(group_norm(x.to(d), 2, Tensor(), Tensor()), naive_group_norm(x, 2, Tensor(), Tensor(), 1e-5, false),
                1e-9, 1e-9, "offset mean, float64");
    Tensor xf = x.to(DType::Float32);
    // float32 inputs near 1e4 are spaced 1e-3 apart; the reference sees the same rounded inputs, so
    // only the statistics' rounding remains: mean error ≈ 1e4·ε ≈ 1e-3 of a unit spread at worst.
    check_close(group_norm(xf.to(d), 2, Tensor(), Tensor()), naive_group_norm(xf, 2, Tensor(), Tensor(), 1e-5, false),
                2e-3, 2e-3, "offset mean, float32");

    // A constant group has variance 0: the output is β exactly (0·rstd), never NaN.
    Tensor constant = full({1, 2, 3}, 7.0, TensorOptions(DType::Float64).device(d));
    Tensor beta = from_vector<double>({0.25, -1.0}, {2}, d);
    check_close(group_norm(constant, 2, Tensor(), beta), {0.25, 0.25, 0.25, -1.0, -1.0, -1.0}, 0, 0, "constant");

    // A transposed view ([C, N, H] storage read as [N, C, H]) gives the result of its contiguous copy.
    Tensor base = test::random({6, 3, 5}, 9);
    Tensor view = base.to(d).transpose(0, 1);
    REQUIRE(!view.is_contiguous());
    check_close(group_norm(view, 3, Tensor(), Tensor()), naive_group_norm(base.transpose(0, 1), 3, Tensor(), Tensor(),
                                                                           1e-5, false),
                1e-12, 1e-12, "transposed input");
  }
}

TEST_CASE("group_norm: gradients of x, gamma and beta by central differences") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor x = test::random({2, 6, 3, 2}, 31, -2.0, 2.0);
    Tensor gamma = test::random({6}, 32, 0.5, 1.5);
    Tensor beta = test::random({6}, 33, -0.5, 0.5);
    test::gradcheck([](const std::vector<Tensor>& in) { return group_norm(in[0], 3, in[1], in[2]); },
                    {x, gamma, beta}, d, 1e-6, 1e-7, 1e-6, "affine");
    test::gradcheck([](const std::vector<Tensor>& in) { return group_norm(in[0], 2, Tensor(), Tensor()); }, {x}, d,
                    1e-6, 1e-7, 1e-6, "no affine");
    // Gamma alone, beta alone, and a transposed output so the incoming gradient is non-contiguous.
    test::gradcheck([](const std::vector<Tensor>& in) { return group_norm(in[0], 6, in[1], Tensor()).transpose(0, 1); },
                    {x, gamma}, d, 1e-6, 1e-7, 1e-6, "gamma only, strided grad_y");
    test::gradcheck([](const std::vector<Tensor>& in) { return group_norm(in[0], 1, Tensor(), in[1]); }, {x, beta}, d,
                    1e-6, 1e-7, 1e-6, "beta only");
    // fuse_relu: the seeded inputs keep every pre-activation at least 1e-3 from the kink (checked
    // below), so the ±1e-6 differences never cross it.
    Tensor pre = group_norm_composite(x, 3, gamma, beta);
    REQUIRE(min(abs(pre)).item<double>() > 1e-3);
    test::gradcheck([](const std::vector<Tensor>& in) { return group_norm(in[0], 3, in[1], in[2], 1e-5, true); },
                    {x, gamma, beta}, d, 1e-6, 1e-7, 1e-6, "fused relu");
    // No spatial dims, N = 3 (dγ and dβ reduce over N).
    test::gradcheck([](const std::vector<Tensor>& in) { return group_norm(in[0], 2, in[1], in[2]); },
                    {test::random({3, 4}, 34), test::random({4}, 35), test::random({4}, 36)}, d, 1e-6, 1e-7, 1e-6,
                    "2-d");
  }
}

TEST_CASE("group_norm: fused backward matches the composite's autograd on large groups") {
  for (Device d : test::devices()) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      CAPTURE(d);
      CAPTURE(dt);
      // Chunked planes and groups (plane 17030 > 16384) and dγ/dβ summed over N = 3.
      const Shape shape{3, 4, 130, 131};
      Tensor x = test::random(shape, 41, -1.0, 2.0, dt).to(d);
      Tensor gamma = test::random({4}, 42, 0.5, 1.5, dt).to(d);
      Tensor beta = test::random({4}, 43, -0.5, 0.5, dt).to(d);
      Tensor upstream = test::random(shape, 44, -1.0, 1.0, dt).to(d);
      auto grads = [&](bool fused, bool relu) {
        Tensor xl = x.clone().set_requires_grad(true), gl = gamma.clone().set_requires_grad(true),
               bl = beta.clone().set_requires_grad(true);
        Tensor y = fused ? group_norm(xl, 2, gl, bl, 1e-5, relu) : group_norm_composite(xl, 2, gl, bl);
        if (!fused && relu) y = isrn::relu(y);
        sum(mul(y, upstream)).backward();
        return std::vector<Tensor>{xl.grad(), gl.grad(), bl.grad()};
      };
      for (bool relu : {false, true}) {
        CAPTURE(relu);
        const auto fused = grads(true, relu), composite = grads(false, relu);
        // dx entries are O(1e-2); dγ, dβ sum 1.5e5 terms of O(1). float64: rounding only. float32: the
        // composite itself sums in float32 rows accumulated in double, so both sides are within
        // ≈1e-6 relative; dγ/dβ, being large sums, get a relative tolerance.
        const double rtol = dt == DType::Float64 ? 1e-9 : 1e-4;
        const double atol = dt == DType::Float64 ? 1e-12 : 1e-6;
        check_close(fused[0], composite[0], rtol, atol, "dx");
        check_close(fused[1], composite[1], rtol, atol * 1e3, "dgamma");
        check_close(fused[2], composite[2], rtol, atol * 1e3, "dbeta");
      }
    }
  }
}

TEST_CASE("group_norm: results do not depend on the number of threads") {
  // The kernel sums fixed-size chunks in a fixed order, so one thread and many give identical bits.
  Tensor x = test::random({1, 4, 130, 131}, 51, -1.0, 2.0, DType::Float32).set_requires_grad(true);
  Tensor gamma = test::random({4}, 52, 0.5, 1.5, DType::Float32).set_requires_grad(true);
  const int threads = get_num_threads();
  auto run = [&] {
    x.set_grad(Tensor());
    gamma.set_grad(Tensor());
    Tensor y = group_norm(x, 2, gamma, Tensor());
    sum(mul(y, y)).backward();
    return std::vector<std::vector<float>>{y.to_vector<float>(), x.grad().to_vector<float>(),
                                           gamma.grad().to_vector<float>()};
  };
  set_num_threads(1);
  const auto one = run();
  set_num_threads(std::max(threads, 3));
  const auto many = run();
  set_num_threads(threads);
  CHECK(one[0] == many[0]);
  CHECK(one[1] == many[1]);
  CHECK(one[2] == many[2]);
}

TEST_CASE("group_norm: empty inputs") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor x = zeros({0, 4, 3}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    Tensor gamma = ones({4}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    Tensor beta = zeros({4}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    Tensor y = group_norm(x, 2, gamma, beta);
    CHECK(y.shape() == Shape{0, 4, 3});
    sum(y).backward();
    CHECK(x.grad().shape() == Shape{0, 4, 3});
    check_close(gamma.grad(), {0, 0, 0, 0}, 0, 0, "dgamma of an empty batch");
    check_close(beta.grad(), {0, 0, 0, 0}, 0, 0, "dbeta of an empty batch");
    CHECK(group_norm(zeros({2, 4, 0}, TensorOptions().device(d)), 4, Tensor(), Tensor()).shape() == Shape{2, 4, 0});
  }
}

TEST_CASE("group_norm: bad input raises isrn::Error naming the problem") {
  Tensor x = zeros({2, 6, 3});
  CHECK_THROWS_WITH_AS(group_norm(zeros({6}), 2, Tensor(), Tensor()), doctest::Contains("at least 2 dimensions"),
                       Error);
  CHECK_THROWS_WITH_AS(group_norm(x, 4, Tensor(), Tensor()), doctest::Contains("not divisible by groups"), Error);
  CHECK_THROWS_WITH_AS(group_norm(x, 0, Tensor(), Tensor()), doctest::Contains("groups must be positive"), Error);
  CHECK_THROWS_WITH_AS(group_norm(x, 3, zeros({5}), Tensor()), doctest::Contains("gamma must have shape [C]"), Error);
  CHECK_THROWS_WITH_AS(group_norm(x, 3, Tensor(), zeros({6}, DType::Float64)),
                       doctest::Contains("'beta' must be float32"), Error);
  CHECK_THROWS_WITH_AS(group_norm(zeros({2, 6}, DType::Int64), 3, Tensor(), Tensor()),
                       doctest::Contains("[group_norm] argument 'x' must be float32 or float64"), Error);
  CHECK_THROWS_WITH_AS(group_norm(x, 3, Tensor(), Tensor(), -1.0), doctest::Contains("eps must be"), Error);
  CHECK_THROWS_WITH_AS(group_norm_composite(x, 5, Tensor(), Tensor()),
                       doctest::Contains("[group_norm_composite] channels (6) are not divisible"), Error);
  if (cuda_available()) {
    CHECK_THROWS_WITH_AS(group_norm(x, 3, zeros({6}, TensorOptions().device(Device::cuda())), Tensor()),
                         doctest::Contains("argument 'gamma' is on cuda:0"), Error);
  }
}
