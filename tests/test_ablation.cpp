// The SPEC §12 ablations behind switches: the SE block against a naive double reference and finite
// differences, the box-level mask target on hand-made boxes, and the detector with both switches on
// (parameters, loss term, gradients, config round trip; off by default so checkpoints are unchanged).
#include <cmath>
#include <vector>

#include "isrn/models/isrn.hpp"
#include "isrn/ops/reduce.hpp"
#include "test_util.hpp"

using namespace isrn;

namespace {

models::DetectorConfig tiny_ablation_config() {
  models::DetectorConfig c = test::tiny_detector_config();
  c.ablation.se = true;
  c.ablation.se_reduction = 4;
  c.ablation.seg_branch = true;
  return c;
}

}  // namespace

TEST_CASE("se block: forward equals x · sigmoid(W2 relu(W1 mean(x) + b1) + b2), and its gradient") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Generator gen(5);
    models::SEBlock se(8, 4, DType::Float64, gen);
    test::randomize_parameters(se, 6);
    se.to(d);
    const Tensor x = test::random({2, 8, 3, 5}, 7);
    const Tensor y = se.forward(x.to(d));
    // Naive reference in double on the host.
    const std::vector<double> xv = test::values(x), w1 = test::values(se.fc1->weight), b1 = test::values(se.fc1->bias),
                              w2 = test::values(se.fc2->weight), b2 = test::values(se.fc2->bias);
    std::vector<double> expected(xv.size());
    for (int n = 0; n < 2; ++n) {
      double pooled[8], hidden[2], gate[8];
      for (int c = 0; c < 8; ++c) {
        pooled[c] = 0;
        for (int i = 0; i < 15; ++i) pooled[c] += xv[(n * 8 + c) * 15 + i] / 15.0;
      }
      for (int h = 0; h < 2; ++h) {
        double s = b1[h];
        for (int c = 0; c < 8; ++c) s += w1[h * 8 + c] * pooled[c];
        hidden[h] = s > 0 ? s : 0;
      }
      for (int c = 0; c < 8; ++c) {
        double s = b2[c];
        for (int h = 0; h < 2; ++h) s += w2[c * 2 + h] * hidden[h];
        gate[c] = 1.0 / (1.0 + std::exp(-s));
      }
      for (int c = 0; c < 8; ++c)
        for (int i = 0; i < 15; ++i) expected[(n * 8 + c) * 15 + i] = xv[(n * 8 + c) * 15 + i] * gate[c];
    }
    // Float64 throughout: only summation order differs from the reference.
    test::check_close(y, expected, 1e-12, 1e-14, "se forward");
    test::gradcheck([&](const std::vector<Tensor>& in) { return se.forward(in[0]); }, {x}, d, 1e-6, 1e-7, 1e-6,
                    "se");
  }
  CHECK_THROWS_WITH_AS(models::SEBlock(8, 16), doctest::Contains("[se] reduction 16"), Error);
}

TEST_CASE("box_mask_targets: cells whose centre lies inside a face box") {
  // Stride 4 on a 5×6 map: cell centres at 2, 6, 10, 14, 18(, 22). Box x 5..15, y 0..7 covers the
  // centres x ∈ {6, 10, 14} and y ∈ {2, 6}; a box touching no centre marks nothing.
  const std::vector<Tensor> gt{from_vector<float>({5, 0, 15, 7, 19, 19, 21, 21}, Shape{2, 4}),
                               from_vector<float>({}, Shape{0, 4})};
  const Tensor m = models::box_mask_targets(gt, 5, 6, 4, TensorOptions(DType::Float32));
  REQUIRE(m.shape() == Shape{2, 1, 5, 6});
  const std::vector<double> v = test::values(m);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 6; ++x) {
      CAPTURE(y);
      CAPTURE(x);
      CHECK(v[y * 6 + x] == ((x >= 1 && x <= 3 && y <= 1) ? 1.0 : 0.0));
      CHECK(v[30 + y * 6 + x] == 0.0);
    }
  CHECK_THROWS_WITH_AS(models::box_mask_targets({from_vector<float>({1, 2, 3}, Shape{3})}, 4, 4, 4, {}),
                       doctest::Contains("must be [G, 4]"), Error);
}

TEST_CASE("detector ablations: SE and seg switches add their modules, a loss term and gradients") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Generator gen(9);
    models::Detector det(tiny_ablation_config(), gen);
    det.to(d);
    bool has_se = false, has_seg = false;
    for (auto& [name, p] : det.named_parameters()) {
      has_se |= name == "se_step2.5.fc2.weight";
      has_seg |= name == "seg.pred.weight";
    }
    CHECK(has_se);
    CHECK(has_seg);
    const Tensor x = test::random({2, 3, 64, 48}, 3, -2.0, 2.0, DType::Float32).to(d);
    const std::vector<Tensor> gt{from_vector<float>({8, 8, 30, 36}, Shape{1, 4}, d), from_vector<float>({}, Shape{0, 4}, d)};
    const models::DetectionLoss loss = det.loss(x, gt);
    REQUIRE(loss.seg.defined());
    const double seg = test::values(loss.seg)[0];
    // BCE of an untrained branch: p ≈ 0.5 everywhere gives ≈ log 2; anything near 0 would mean no target.
    CHECK(seg > 0.3);
    CHECK(seg < 2.0);
    const double parts = test::values(loss.stc_cls1)[0] + test::values(loss.stc_cls2)[0] +
                         test::values(loss.str_reg1)[0] + test::values(loss.str_reg2)[0] + seg;
    CHECK(test::values(loss.total)[0] == doctest::Approx(parts).epsilon(1e-5));
    det.zero_grad();
    loss.total.backward();
    for (auto& [name, p] : det.named_parameters()) {
      CAPTURE(name);
      REQUIRE(p.grad().defined());
      for (double v : test::values(p.grad())) REQUIRE(std::isfinite(v));
    }
    // detect() runs through the same modules.
    const auto dets = det.detect(x);
    CHECK(dets.size() == 2);
  }
}

TEST_CASE("detector ablations: off by default, JSON round trip, bad values rejected") {
  models::Detector plain(models::DetectorConfig{});
  CHECK(plain.se_step1 == nullptr);
  CHECK(plain.seg == nullptr);
  models::DetectorConfig c = tiny_ablation_config();
  c.ablation.seg_mode = models::SegMode::residual;
  c.ablation.seg_weight = 0.5;
  const models::DetectorConfig back =
      models::DetectorConfig::from_json(io::JsonConfig::parse(c.resolved().to_json()));
  CHECK(models::same_config(back, c.resolved()));
  CHECK(back.ablation.seg_mode == models::SegMode::residual);
  CHECK_THROWS_WITH_AS(models::DetectorConfig::from_json(io::JsonConfig::parse(R"({"ablation": {"seg_mode": "add"}})")),
                       doctest::Contains("ablation.seg_mode"), Error);
  CHECK_THROWS_WITH_AS(models::DetectorConfig::from_json(io::JsonConfig::parse(R"({"ablation": {"se_reduction": 0}})")),
                       doctest::Contains("ablation.se_reduction"), Error);
  CHECK_THROWS_WITH_AS(models::DetectorConfig::from_json(io::JsonConfig::parse(R"({"ablation": {"se_on": true}})")),
                       doctest::Contains("ablation.se_on"), Error);
}
