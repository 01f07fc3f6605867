// The SRN multi-scale test (SPEC §9): the scale plan against the SPEC's worked example, box voting on
// hand-computed cases, the flip and scale mappings of a single run, and the merged result's bounds.
#include <cmath>
#include <vector>

#include "isrn/models/multiscale.hpp"
#include "test_util.hpp"

using namespace isrn;

TEST_CASE("multiscale plan: the SPEC §9 example and the large-image case") {
  // 1024×768 with M = 2100: r = 5.61, T = floor(log_2.25 5.61) = 2 → 1, 1 flipped, 0.5, 1.5, 2.25, √r = 2.37.
  const auto runs = models::multiscale_plan(768, 1024);
  REQUIRE(runs.size() == 6);
  const double expected[] = {1.0, 1.0, 0.5, 1.5, 2.25, 2100.0 / std::sqrt(1024.0 * 768.0)};
  for (size_t i = 0; i < runs.size(); ++i) CHECK(runs[i].scale == doctest::Approx(expected[i]).epsilon(1e-12));
  CHECK(runs[1].flip);
  CHECK(runs[2].filter == models::SizeFilter::keep_large);
  CHECK(runs[3].filter == models::SizeFilter::keep_small);
  CHECK(runs[5].filter == models::SizeFilter::keep_small);
  CHECK(runs[0].filter == models::SizeFilter::none);
  // 3000×2000 > M²: s0 = 2100/√(6e6) < 1, runs s0, s0 flipped, 0.75 s0, 0.5 s0.
  const auto big = models::multiscale_plan(2000, 3000);
  REQUIRE(big.size() == 4);
  const double s0 = 2100.0 / std::sqrt(6e6);
  CHECK(big[0].scale == doctest::Approx(s0));
  CHECK(big[1].flip);
  CHECK(big[2].scale == doctest::Approx(0.75 * s0));
  CHECK(big[3].scale == doctest::Approx(0.5 * s0));
  CHECK(big[3].filter == models::SizeFilter::keep_large);
  CHECK_THROWS_WITH_AS(models::multiscale_plan(0, 10), doctest::Contains("[multiscale]"), Error);
}

TEST_CASE("box voting: groups at IoU ≥ 0.5 become score-weighted means with the max score; lone boxes go") {
  // Boxes 0 and 1 overlap with IoU (+1) = 10·11 / (11·11 + 11·11 − 10·11) = 110/132 = 0.83; box 2 is
  // alone; boxes 3 and 4 overlap (IoU = 1) but score lower than box 2.
  const Tensor boxes = from_vector<double>({0, 0, 10, 10, 1, 0, 11, 10, 50, 50, 60, 60, 100, 100, 120, 120, 100, 100,
                                            120, 120},
                                           Shape{5, 4});
  const Tensor scores = from_vector<double>({0.9, 0.6, 0.8, 0.5, 0.3}, Shape{5});
  const models::Detections d = models::box_voting(boxes, scores, 0.5, 750);
  REQUIRE(d.scores.size(0) == 2);
  const std::vector<double> b = test::values(d.boxes), s = test::values(d.scores);
  // (0.9·0 + 0.6·1) / 1.5 = 0.4 and (0.9·10 + 0.6·11) / 1.5 = 10.4.
  CHECK(b[0] == doctest::Approx(0.4));
  CHECK(b[1] == doctest::Approx(0.0));
  CHECK(b[2] == doctest::Approx(10.4));
  CHECK(b[3] == doctest::Approx(10.0));
  CHECK(s[0] == doctest::Approx(0.9));
  CHECK(b[4] == doctest::Approx(100.0));
  CHECK(s[1] == doctest::Approx(0.5));
  // keep limits the merged boxes; an empty input gives an empty result.
  CHECK(models::box_voting(boxes, scores, 0.5, 1).scores.size(0) == 1);
  CHECK(models::box_voting(zeros({0, 4}), zeros({0}), 0.5, 750).scores.size(0) == 0);
  CHECK_THROWS_WITH_AS(models::box_voting(zeros({3, 4}), zeros({2})), doctest::Contains("[box_voting] scores"), Error);
}

TEST_CASE("detect_at_scale: flipping twice is the identity; boxes map back by (x' − (s − 1)/2)/s") {
  Generator gen(2);
  models::Detector det(test::tiny_detector_config(), gen);
  test::randomize_parameters(det, 3);
  const data::Image img = test::textured_image(40, 56, 4);
  // Running the mirrored image with flip = true feeds the network the original pixels, so the boxes
  // are exactly the mirror (x → W − 1 − x) of the plain run's.
  const models::Detections plain = models::detect_at_scale(det, img, 1.0, false, Device::cpu());
  const models::Detections mirrored = models::detect_at_scale(det, data::flip_horizontal(img), 1.0, true, Device::cpu());
  REQUIRE(plain.scores.size(0) > 0);
  REQUIRE(mirrored.scores.size(0) == plain.scores.size(0));
  const std::vector<double> a = test::values(plain.boxes), m = test::values(mirrored.boxes);
  for (size_t i = 0; i < a.size(); i += 4) {
    CHECK(m[i] == doctest::Approx(55.0 - a[i + 2]));
    CHECK(m[i + 2] == doctest::Approx(55.0 - a[i]));
    CHECK(m[i + 1] == doctest::Approx(a[i + 1]));
  }
  test::check_close(mirrored.scores, plain.scores, 0, 0, "scores");
  // Scale 2: the network sees the 80×112 resize; its raw boxes b' map to (b' − 0.5) / 2.
  const models::Detections scaled = models::detect_at_scale(det, img, 2.0, false, Device::cpu());
  const Tensor input = data::to_tensor(data::resize_bilinear(img, 80, 112)).unsqueeze(0);
  const models::Detections raw = det.detect(input).front();
  REQUIRE(raw.scores.size(0) == scaled.scores.size(0));
  const std::vector<double> r = test::values(raw.boxes), sc = test::values(scaled.boxes);
  for (size_t i = 0; i < r.size(); ++i) CHECK(sc[i] == doctest::Approx((r[i] - 0.5) / 2.0).epsilon(1e-5));
}

TEST_CASE("detect_multiscale: merged boxes lie in the image, at most `keep`, sorted by group leader") {
  Generator gen(5);
  models::Detector det(test::tiny_detector_config(), gen);
  test::randomize_parameters(det, 6);
  const data::Image img = test::textured_image(36, 44, 7);
  models::MultiScaleConfig config;
  config.max_size = 64;  // r = 64² / (36·44) = 2.59: runs 1, 1 flipped, 0.5, 1.5, 1.61
  config.keep = 20;
  const models::Detections d = models::detect_multiscale(det, img, config, Device::cpu());
  CHECK(d.scores.size(0) <= 20);
  CHECK(d.scores.size(0) > 0);
  const std::vector<double> b = test::values(d.boxes);
  for (size_t i = 0; i < b.size(); i += 4) {
    CHECK(b[i] >= 0);
    CHECK(b[i + 1] >= 0);
    CHECK(b[i + 2] <= 43);
    CHECK(b[i + 3] <= 35);
  }
}
