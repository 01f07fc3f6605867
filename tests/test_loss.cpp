#include <cmath>
#include <limits>

#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

// Independent references in double, written the textbook way on the host.
double ref_log_sigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }

double ref_focal(double x, double t, double w, double alpha, double gamma) {
  const double p = x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
  const double ce = -t * ref_log_sigmoid(x) - (1.0 - t) * ref_log_sigmoid(-x);
  const double p_t = p * t + (1.0 - p) * (1.0 - t);
  const double alpha_t = alpha >= 0 ? alpha * t + (1.0 - alpha) * (1.0 - t) : 1.0;
  return w * alpha_t * ce * std::pow(1.0 - p_t, gamma);
}

Tensor reduce_ref(const std::vector<double>& loss, const Shape& shape, Reduction r) {
  if (r == Reduction::None) return from_vector(loss, shape);
  double s = 0.0;
  for (double v : loss) s += v;
  if (r == Reduction::Mean) s /= static_cast<double>(loss.size());
  return from_vector<double>({s}, {});
}

const char* reduction_name(Reduction r) {
  return r == Reduction::None ? "none" : r == Reduction::Sum ? "sum" : "mean";
}

}  // namespace

TEST_CASE("sigmoid_focal_loss: fused forward matches a naive double reference and the composite") {
  const Shape shape{7, 13};
  for (Device d : test::devices()) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      Tensor logits = test::random(shape, 1, -8.0, 8.0, dt);
      Tensor hard = gt(test::random(shape, 2), 0.3).to(dt);  // about a third positives
      Tensor soft = test::random(shape, 3, 0.0, 1.0, dt);
      Tensor weights = mul(gt(test::random(shape, 4), -0.6).to(dt), test::random(shape, 5, 0.5, 2.0, dt));
      for (const Tensor& targets : {hard, soft}) {
        for (const auto& [alpha, gamma] : std::vector<std::pair<double, double>>{
                 {0.25, 2.0}, {-1.0, 2.0}, {0.0, 1.0}, {1.0, 0.0}, {0.5, 0.5}, {0.25, 2.5}}) {
          for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
            for (bool weighted : {false, true}) {
              CAPTURE(d);
              CAPTURE(dt);
              CAPTURE(alpha);
              CAPTURE(gamma);
              CAPTURE(reduction_name(r));
              CAPTURE(weighted);
              const auto x = test::values(logits), t = test::values(targets), w = test::values(weights);
              std::vector<double> expected(x.size());
              for (size_t i = 0; i < x.size(); ++i)
                expected[i] = ref_focal(x[i], t[i], weighted ? w[i] : 1.0, alpha, gamma);
              Tensor wd = weighted ? weights.to(d) : Tensor();
              Tensor loss = sigmoid_focal_loss(logits.to(d), targets.to(d), wd, alpha, gamma, r);
              // float64: a handful of roundings per element; float32: per-element float math (≈10 ε
              // relative) and a sum of 91 terms.
              const double tol = dt == DType::Float64 ? 1e-12 : 2e-5;
              check_close(loss, reduce_ref(expected, shape, r), tol, tol, "fused vs naive");
              check_close(loss, sigmoid_focal_loss_composite(logits.to(d), targets.to(d), wd, alpha, gamma, r), tol,
                          tol, "fused vs composite");
            }
          }
        }
      }
    }
  }
}

TEST_CASE("sigmoid_focal_loss: gradient by central differences and against the composite") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Shape shape{5, 6};
    Tensor logits = test::random(shape, 11, -4.0, 4.0);
    Tensor hard = gt(test::random(shape, 12), 0.0).to(DType::Float64).to(d);
    Tensor soft = test::random(shape, 13, 0.0, 1.0).to(d);
    Tensor weights = test::random(shape, 14, 0.0, 2.0).to(d);
    for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
      CAPTURE(reduction_name(r));
      test::gradcheck([&](const std::vector<Tensor>& in) { return sigmoid_focal_loss(in[0], hard, weights, 0.25, 2.0, r); },
                      {logits}, d, 1e-6, 1e-8, 1e-6, "hard targets");
      test::gradcheck([&](const std::vector<Tensor>& in) { return sigmoid_focal_loss(in[0], soft, Tensor(), -1.0, 1.5, r); },
                      {logits}, d, 1e-6, 1e-8, 1e-6, "soft targets, no alpha");
    }
    // Non-contiguous logits: a transposed view of a [6, 5] leaf.
    test::gradcheck(
        [&](const std::vector<Tensor>& in) {
          return sigmoid_focal_loss(in[0].transpose(0, 1), soft, Tensor(), 0.25, 2.0, Reduction::None);
        },
        {test::random({6, 5}, 15, -3.0, 3.0)}, d, 1e-6, 1e-8, 1e-6, "transposed logits");

    // Fused and composite gradients agree in both dtypes, on an upstream gradient that is not all ones.
    for (DType dt : {DType::Float64, DType::Float32}) {
      CAPTURE(dt);
      Tensor x = test::random({40, 9}, 16, -10.0, 10.0, dt).to(d);
      Tensor t = test::random({40, 9}, 17, 0.0, 1.0, dt).to(d);
      Tensor up = test::random({40, 9}, 18, -1.0, 1.0, dt).to(d);
      auto grad_of = [&](bool fused) {
        Tensor xl = x.clone().set_requires_grad(true);
        Tensor l = fused ? sigmoid_focal_loss(xl, t, Tensor(), 0.25, 2.0, Reduction::None)
                         : sigmoid_focal_loss_composite(xl, t, Tensor(), 0.25, 2.0, Reduction::None);
        sum(mul(l, up)).backward();
        return xl.grad();
      };
      // Gradients are O(1); float32 differs in the order of ≈20 float operations.
      const double tol = dt == DType::Float64 ? 1e-12 : 1e-5;
      check_close(grad_of(true), grad_of(false), tol, tol, "fused vs composite gradient");
    }
  }
}

TEST_CASE("sigmoid_focal_loss: logits at ±300 are finite and exact") {
  for (Device d : test::devices()) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      CAPTURE(d);
      CAPTURE(dt);
      // Saturated cases have closed forms: a confident hit costs 0, a confident miss costs α_t·|x|
      // with (1 − p_t)^γ = 1, and its gradient is −α (positive) or 1 − α (negative). A soft target of
      // 0.5 gives ce = 150, 1 − p_t = 0.5 and α_t = 0.5.
      Tensor x = from_vector<double>({300, -300, 300, -300, 300, -300}, {6}).to(dt).to(d).set_requires_grad(true);
      Tensor t = from_vector<double>({1, 1, 0, 0, 0.5, 0.5}, {6}).to(dt).to(d);
      Tensor loss = sigmoid_focal_loss(x, t, Tensor(), 0.25, 2.0, Reduction::None);
      check_close(loss, {0.0, 75.0, 225.0, 0.0, 18.75, 18.75}, 0, 0, "loss at ±300");
      sum(loss).backward();
      // Soft targets at ±300: d/dx = α_t·[(p − t)·m² + 2·ce·m·p·q·(1 − 2t)] = 0.5·(±0.5)·0.25.
      check_close(x.grad(), {0.0, -0.25, 0.75, 0.0, 0.0625, -0.0625}, 0, 0, "gradient at ±300");
      // The composite is finite there too (it is the oracle of the CUDA kernel's extreme cases).
      Tensor xc = x.detach().clone().set_requires_grad(true);
      Tensor lc = sigmoid_focal_loss_composite(xc, t, Tensor(), 0.25, 2.0, Reduction::Sum);
      lc.backward();
      check_close(lc, {337.5}, 1e-6, 0, "composite at ±300");
      check_close(xc.grad(), {0.0, -0.25, 0.75, 0.0, 0.0625, -0.0625}, 1e-6, 1e-30, "composite gradient at ±300");

      // Confident hits have tiny losses (≈1e-21 at |x| = 16); 1 − p_t is computed as σ(∓x) rather than
      // 1 − σ(±x), so they keep full relative precision even in float32 (rtol 1e-5, no atol).
      const std::vector<double> xs = {8, 12, 16, -8, -12, -16}, ts = {1, 1, 1, 0, 0, 0};
      std::vector<double> expected;
      for (size_t i = 0; i < xs.size(); ++i) expected.push_back(ref_focal(xs[i], ts[i], 1.0, 0.25, 2.0));
      Tensor hits = sigmoid_focal_loss(from_vector(xs, {6}).to(dt).to(d), from_vector(ts, {6}).to(dt).to(d), Tensor(),
                                       0.25, 2.0, Reduction::None);
      check_close(hits, expected, 1e-5, 0, "confident hits, relative precision");
    }
  }
}

TEST_CASE("sigmoid_focal_loss: zero weights drop elements, weights broadcast") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor x = from_vector<double>({0.3, -300.0, 2.0, 300.0, -1.5, 4.0}, {3, 2}, d).set_requires_grad(true);
    Tensor t = from_vector<double>({1, 1, 0, 0, 1, 0}, {3, 2}, d);
    Tensor w = from_vector<double>({1, 0, 1, 0, 1, 1}, {3, 2}, d);
    Tensor loss = sigmoid_focal_loss(x, t, w, 0.25, 2.0, Reduction::Sum);
    loss.backward();
    // The kept elements alone (0, 2, 4, 5) give the same sum; the dropped ones, confident misses at
    // ±300 with losses 75 and 225, contribute nothing and get zero gradient.
    Tensor kept_x = from_vector<double>({0.3, 2.0, -1.5, 4.0}, {4}, d);
    Tensor kept_t = from_vector<double>({1, 0, 1, 0}, {4}, d);
    check_close(loss, sigmoid_focal_loss(kept_x, kept_t, Tensor(), 0.25, 2.0, Reduction::Sum), 1e-15, 0, "dropped");
    const auto g = x.grad().to_vector<double>();
    CHECK(g[1] == 0.0);
    CHECK(g[3] == 0.0);
    CHECK(g[0] != 0.0);

    // Per-row weights [3, 1] broadcast over the columns.
    Tensor row_w = from_vector<double>({2, 0, 1}, {3, 1}, d);
    check_close(sigmoid_focal_loss(x.detach(), t, row_w, 0.25, 2.0, Reduction::None),
                sigmoid_focal_loss(x.detach(), t, row_w.expand({3, 2}).contiguous(), 0.25, 2.0, Reduction::None), 0, 0,
                "broadcast weights");
  }
}

TEST_CASE("sigmoid_focal_loss: empty inputs") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor x = zeros({0, 3}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    Tensor t = zeros({0, 3}, TensorOptions(DType::Float64).device(d));
    Tensor s = sigmoid_focal_loss(x, t, Tensor(), 0.25, 2.0, Reduction::Sum);
    CHECK(s.item<double>() == 0.0);
    CHECK(sigmoid_focal_loss(x, t, Tensor(), 0.25, 2.0, Reduction::None).shape() == Shape{0, 3});
    CHECK(std::isnan(sigmoid_focal_loss(x, t, Tensor(), 0.25, 2.0, Reduction::Mean).item<double>()));  // 0/0, as PyTorch
    s.backward();
    CHECK(x.grad().shape() == Shape{0, 3});
  }
}

TEST_CASE("sigmoid_focal_loss: bad input raises isrn::Error naming the problem") {
  Tensor x = zeros({4, 2}), t = zeros({4, 2});
  CHECK_THROWS_WITH_AS(sigmoid_focal_loss(x, zeros({4, 3}), Tensor()),
                       doctest::Contains("[sigmoid_focal_loss] targets must have the shape of logits"), Error);
  CHECK_THROWS_WITH_AS(sigmoid_focal_loss(x, zeros({4, 2}, DType::Float64), Tensor()),
                       doctest::Contains("'targets' must be float32"), Error);
  CHECK_THROWS_WITH_AS(sigmoid_focal_loss(x, t, zeros({3})), doctest::Contains("broadcast"), Error);
  CHECK_THROWS_WITH_AS(sigmoid_focal_loss(x, t, zeros({2, 4, 2})), doctest::Contains("do not broadcast"), Error);
  CHECK_THROWS_WITH_AS(sigmoid_focal_loss(x, t, Tensor(), 0.25, -1.0), doctest::Contains("gamma must be"), Error);
  CHECK_THROWS_WITH_AS(sigmoid_focal_loss(x, t, Tensor(), 1.5, 2.0), doctest::Contains("alpha must be"), Error);
  CHECK_THROWS_WITH_AS(sigmoid_focal_loss(zeros({2}, DType::Int64), zeros({2}, DType::Int64), Tensor()),
                       doctest::Contains("'logits' must be float32 or float64"), Error);
  Tensor tg = zeros({4, 2}).set_requires_grad(true);
  CHECK_THROWS_WITH_AS(sigmoid_focal_loss(x, tg, Tensor()), doctest::Contains("gradients for the logits only"), Error);
  CHECK_THROWS_WITH_AS(sigmoid_focal_loss_composite(x, t, Tensor(), 2.0, 2.0, Reduction::Sum),
                       doctest::Contains("[sigmoid_focal_loss_composite] alpha"), Error);
  if (cuda_available()) {
    CHECK_THROWS_WITH_AS(sigmoid_focal_loss(x, t.to(Device::cuda()), Tensor()), doctest::Contains("'targets' is on cuda"),
                         Error);
  }
}

TEST_CASE("smooth_l1_loss: forward against a naive reference, gradient by central differences") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor a = test::random({6, 4}, 21, -1.0, 1.0), b = test::random({6, 4}, 22, -1.0, 1.0);
    const auto va = test::values(a), vb = test::values(b);
    for (double beta : {1.0 / 9.0, 1.0, 0.0}) {
      CAPTURE(beta);
      std::vector<double> expected(va.size());
      for (size_t i = 0; i < va.size(); ++i) {
        const double z = std::abs(va[i] - vb[i]);
        expected[i] = z < beta ? 0.5 * z * z / beta : z - 0.5 * beta;
      }
      for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
        CAPTURE(reduction_name(r));
        check_close(smooth_l1_loss(a.to(d), b.to(d), beta, r), reduce_ref(expected, {6, 4}, r), 1e-14, 1e-15,
                    "smooth l1");
        // The seeded differences stay ≥ 1e-3 away from 0 and from ±β, so central differences never
        // straddle a kink.
        test::gradcheck([&](const std::vector<Tensor>& in) { return smooth_l1_loss(in[0], in[1], beta, r); }, {a, b},
                        d, 1e-6, 1e-8, 1e-6, "smooth l1 gradient");
      }
    }
    for (size_t i = 0; i < va.size(); ++i) {
      const double z = std::abs(va[i] - vb[i]);
      REQUIRE(z > 1e-3);
      REQUIRE(std::abs(z - 1.0 / 9.0) > 1e-3);
      REQUIRE(std::abs(z - 1.0) > 1e-3);
    }
  }
  CHECK_THROWS_WITH_AS(smooth_l1_loss(zeros({2}), zeros({2}), -0.5), doctest::Contains("[smooth_l1_loss] beta"), Error);
  CHECK_THROWS_WITH_AS(smooth_l1_loss(zeros({2}), zeros({3})), doctest::Contains("target must have the shape"), Error);
}

TEST_CASE("binary_cross_entropy_with_logits: naive reference, ±300, weights and gradient") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor x = test::random({5, 3}, 31, -6.0, 6.0), t = test::random({5, 3}, 32, 0.0, 1.0);
    Tensor w = test::random({3}, 33, 0.0, 2.0);  // per-column weights broadcast over rows
    const auto vx = test::values(x), vt = test::values(t), vw = test::values(w);
    std::vector<double> expected(vx.size());
    for (size_t i = 0; i < vx.size(); ++i)
      expected[i] = -vw[i % 3] * (vt[i] * ref_log_sigmoid(vx[i]) + (1 - vt[i]) * ref_log_sigmoid(-vx[i]));
    for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
      CAPTURE(reduction_name(r));
      check_close(binary_cross_entropy_with_logits(x.to(d), t.to(d), w.to(d), r), reduce_ref(expected, {5, 3}, r),
                  1e-13, 1e-15, "bce");
    }
    test::gradcheck([](const std::vector<Tensor>& in) {
      return binary_cross_entropy_with_logits(in[0], in[1], in[2], Reduction::None);
    }, {x, t, w}, d, 1e-6, 1e-8, 1e-6, "bce gradient");
    for (DType dt : {DType::Float64, DType::Float32}) {
      CAPTURE(dt);
      Tensor xe = from_vector<double>({300, -300, 300, -300}, {4}).to(dt).to(d).set_requires_grad(true);
      Tensor te = from_vector<double>({1, 1, 0, 0.25}, {4}).to(dt).to(d);
      Tensor l = binary_cross_entropy_with_logits(xe, te, Tensor(), Reduction::None);
      // log1p(e^−300) ≈ 5e-131 is below float32's range and rounds to 0 next to 300 in float64.
      check_close(l, {0.0, 300.0, 300.0, 75.0}, 0, 1e-100, "bce at ±300");
      sum(l).backward();
      check_close(xe.grad(), {0.0, -1.0, 1.0, -0.25}, 0, 1e-100, "bce gradient at ±300");
    }
  }
}
