// Detector anchors, two-step targets, loss assembly and single-scale post-processing. References are
// written here from the SPEC's formulas in double precision, independently of the library's kernels.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "isrn/models/anchors.hpp"
#include "isrn/models/loss.hpp"
#include "isrn/models/postprocess.hpp"
#include "isrn/models/targets.hpp"
#include "test_util.hpp"

using namespace isrn;
using namespace isrn::models;
using test::check_close;

namespace {

constexpr double kSqrt2 = 1.4142135623730951;

double ref_iou(const double* a, const double* b, bool plus_one = false) {
  const double e = plus_one ? 1.0 : 0.0;
  auto side = [e](double lo, double hi) { return std::max(hi - lo + e, 0.0); };
  const double inter = side(std::max(a[0], b[0]), std::min(a[2], b[2])) * side(std::max(a[1], b[1]), std::min(a[3], b[3]));
  const double uni = side(a[0], a[2]) * side(a[1], a[3]) + side(b[0], b[2]) * side(b[1], b[3]) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

// SPEC §6.3 with the variances (0.1, 0.1, 0.2, 0.2).
std::vector<double> ref_encode(const std::vector<double>& box, const std::vector<double>& ref) {
  const double wr = ref[2] - ref[0], hr = ref[3] - ref[1];
  const double wb = box[2] - box[0], hb = box[3] - box[1];
  return {((box[0] + box[2]) / 2 - (ref[0] + ref[2]) / 2) / wr / 0.1,
          ((box[1] + box[3]) / 2 - (ref[1] + ref[3]) / 2) / hr / 0.1, std::log(wb / wr) / 0.2,
          std::log(hb / hr) / 0.2};
}
std::vector<double> ref_decode(const std::vector<double>& d, const std::vector<double>& ref) {
  const double wr = ref[2] - ref[0], hr = ref[3] - ref[1];
  const double cx = d[0] * 0.1 * wr + (ref[0] + ref[2]) / 2, cy = d[1] * 0.1 * hr + (ref[1] + ref[3]) / 2;
  const double w = std::exp(d[2] * 0.2) * wr, h = std::exp(d[3] * 0.2) * hr;
  return {cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2};
}

// RetinaNet focal loss, α = 0.25, γ = 2, straight from SPEC §8.
double ref_focal(double logit, int label) {
  const double p = 1.0 / (1.0 + std::exp(-logit));
  return label == 1 ? -0.25 * (1 - p) * (1 - p) * std::log(p) : -0.75 * p * p * std::log(1 - p);
}
double ref_smooth_l1(double d, double beta = 1.0 / 9.0) {
  const double a = std::abs(d);
  return a < beta ? 0.5 * a * a / beta : a - 0.5 * beta;
}

// The labels of SPEC §6.1 with the best-anchor rule, from a full IoU matrix.
struct RefAssignment {
  std::vector<int64_t> labels, matched;
};
RefAssignment ref_assign(const std::vector<double>& boxes, const std::vector<double>& gt, double neg, double pos,
                         bool rule) {
  const size_t n = boxes.size() / 4, g = gt.size() / 4;
  RefAssignment r{std::vector<int64_t>(n, 0), std::vector<int64_t>(n, -1)};
  std::vector<double> best_of_gt(g, 0.0);
  std::vector<std::vector<double>> iou(n, std::vector<double>(g));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < g; ++j) {
      iou[i][j] = ref_iou(&boxes[4 * i], &gt[4 * j]);
      best_of_gt[j] = std::max(best_of_gt[j], iou[i][j]);
    }
  for (size_t i = 0; i < n; ++i) {
    if (g == 0) continue;
    size_t arg = 0;
    for (size_t j = 1; j < g; ++j)
      if (iou[i][j] > iou[i][arg]) arg = j;
    bool positive = iou[i][arg] >= pos;
    for (size_t j = 0; j < g && rule; ++j) positive = positive || (best_of_gt[j] > 0 && iou[i][j] == best_of_gt[j]);
    r.labels[i] = positive ? 1 : (iou[i][arg] < neg ? 0 : -1);
    r.matched[i] = positive ? static_cast<int64_t>(arg) : -1;
  }
  return r;
}

std::vector<int64_t> ints(const Tensor& t) { return t.to(Device::cpu()).to_vector<int64_t>(); }

Tensor boxes_on(const std::vector<double>& v, Device d, DType dt = DType::Float64) {
  return from_vector(v, {static_cast<int64_t>(v.size() / 4), 4}).to(dt).to(d);
}

AnchorSet hand_anchors(const std::vector<double>& boxes, std::vector<int> levels, std::vector<int64_t> counts,
                       Device d, DType dt = DType::Float64) {
  AnchorSet s;
  s.boxes = boxes_on(boxes, d, dt);
  s.levels = std::move(levels);
  s.counts = std::move(counts);
  return s;
}

}  // namespace

TEST_CASE("detector anchors: feature-map sizes and anchor counts") {
  const AnchorConfig config;
  const auto sizes = feature_map_sizes(1024, 1024, config);
  REQUIRE(sizes.size() == 6);
  const int64_t widths[] = {256, 128, 64, 32, 16, 8};
  for (size_t i = 0; i < 6; ++i) CHECK(sizes[i] == MapSize{widths[i], widths[i]});
  // 1000 halves (ceil) to 500 250 125 63 32 16 8 and 750 to 375 188 94 47 24 12 6: levels 2..7 take
  // the second to the seventh of these.
  const auto odd = feature_map_sizes(1000, 750, config);
  const MapSize expected_odd[] = {{250, 188}, {125, 94}, {63, 47}, {32, 24}, {16, 12}, {8, 6}};
  for (size_t i = 0; i < 6; ++i) CHECK(odd[i] == expected_odd[i]);
  for (const MapSize& m : feature_map_sizes(1, 3, config)) CHECK(m == MapSize{1, 1});

  for (Device d : test::devices()) {
    CAPTURE(d);
    const AnchorSet set = generate_anchors(1024, 1024, config, TensorOptions(d));
    CHECK(set.size() == 174720);
    CHECK(set.boxes.device() == d);
    CHECK(set.levels == std::vector<int>{2, 3, 4, 5, 6, 7});
    CHECK(set.counts == std::vector<int64_t>{131072, 32768, 8192, 2048, 512, 128});
    // The three STC levels hold 98.5% of the anchors (SPEC §5).
    const double stc_share = test::values(sum(set.level_mask({2, 3, 4})))[0] / 174720.0;
    CHECK(stc_share == doctest::Approx(0.985).epsilon(0.001));
  }
  CHECK_THROWS_WITH_AS(level_of_stride(12), doctest::Contains("powers of two"), Error);
  AnchorConfig bad;
  bad.scales = {};
  CHECK_THROWS_WITH_AS(feature_map_sizes(10, 10, bad), doctest::Contains("[feature_map_sizes] the anchor config has no scales"), Error);
  CHECK_THROWS_WITH_AS(feature_map_sizes(0, 10, config), doctest::Contains("image size must be positive"), Error);
}

TEST_CASE("detector anchors: Detectron shapes, the origin anchor and the flattening order") {
  const AnchorConfig config;
  // SPEC §5.2 table: "+1" widths × heights of a = 0, and the rounded base of a = 1 scaled by 2√2.
  const double base_w[] = {4, 7, 14, 29, 57, 114}, base_h[] = {5, 9, 18, 36, 71, 142};
  const int64_t strides[] = {4, 8, 16, 32, 64, 128};
  for (size_t i = 0; i < 6; ++i) {
    const auto c = test::values(cell_anchors(strides[i], config));
    CAPTURE(strides[i]);
    CHECK(c[2] - c[0] + 1 == doctest::Approx(2 * base_w[i]));
    CHECK(c[3] - c[1] + 1 == doctest::Approx(2 * base_h[i]));
    CHECK(c[6] - c[4] + 1 == doctest::Approx(2 * kSqrt2 * base_w[i]));
    CHECK(c[7] - c[5] + 1 == doctest::Approx(2 * kSqrt2 * base_h[i]));
    // Centred on the first cell's centre pixel (S − 1)/2.
    CHECK((c[0] + c[2]) / 2 == doctest::Approx((strides[i] - 1) / 2.0));
  }
  // Level 2, location (0, 0): centre 1.5, 8×10 and 11.31×14.14 in "+1" pixels.
  const auto origin = test::values(cell_anchors(4, config));
  check_close(from_vector(origin), std::vector<double>{-2, -3, 5, 6, 1.5 - (4 * kSqrt2 * 2 - 1) / 2,
                                                       1.5 - (5 * kSqrt2 * 2 - 1) / 2, 1.5 + (4 * kSqrt2 * 2 - 1) / 2,
                                                       1.5 + (5 * kSqrt2 * 2 - 1) / 2},
              0, 1e-12, "level-2 origin anchors");

  AnchorConfig ideal = config;
  ideal.plus_one_corners = false;
  const auto c = test::values(cell_anchors(4, ideal));
  // SPEC §5.2: 7.16×8.94 and 10.12×12.65 at stride 4, centred at (x + 0.5)·S in continuous coordinates.
  CHECK(c[2] - c[0] == doctest::Approx(8 / std::sqrt(1.25)));
  CHECK(c[3] - c[1] == doctest::Approx(8 * std::sqrt(1.25)));
  CHECK(c[6] - c[4] == doctest::Approx(8 * kSqrt2 / std::sqrt(1.25)));
  CHECK(c[7] - c[5] == doctest::Approx(8 * kSqrt2 * std::sqrt(1.25)));
  CHECK((c[0] + c[2]) / 2 == doctest::Approx(2.0));

  // Every anchor of an odd-sized image against a naive per-location loop: index (y·W + x)·A + a.
  for (bool plus_one : {true, false}) {
    AnchorConfig cfg = config;
    cfg.plus_one_corners = plus_one;
    for (Device d : test::devices()) {
      CAPTURE(d);
      CAPTURE(plus_one);
      const AnchorSet set = generate_anchors(37, 23, cfg, TensorOptions(DType::Float64).device(d));
      std::vector<double> expected;
      for (int64_t stride : cfg.strides) {
        // ceil(37 / stride), ceil(23 / stride) for power-of-two strides equal the step-by-step halving.
        const int64_t mh = (37 + stride - 1) / stride, mw = (23 + stride - 1) / stride;
        const auto cell = test::values(cell_anchors(stride, cfg));
        for (int64_t y = 0; y < mh; ++y)
          for (int64_t x = 0; x < mw; ++x)
            for (int64_t a = 0; a < 2; ++a)
              for (int k = 0; k < 4; ++k) expected.push_back(cell[4 * a + k] + static_cast<double>(((k % 2) ? y : x) * stride));
      }
      check_close(set.boxes, from_vector(expected, {static_cast<int64_t>(expected.size() / 4), 4}), 0, 1e-12,
                  "anchors of a 37x23 image");
      // The float32 default rounds once from those values.
      check_close(generate_anchors(37, 23, cfg, TensorOptions(d)).boxes.to(DType::Float64),
                  from_vector(expected, {static_cast<int64_t>(expected.size() / 4), 4}), 1e-7, 1e-6, "float32 anchors");
    }
  }
  CHECK_THROWS_WITH_AS(generate_anchors(8, 8, config, TensorOptions(DType::Int64)),
                       doctest::Contains("[generate_anchors] anchors must be float32 or float64"), Error);
}

TEST_CASE("detector assign: thresholds, the ignore band and zero ground truth") {
  // IoUs with the GT [0,0,10,10]: 1, 0.5, 0.35, 0.2, 0 (exact in binary floating point where they
  // meet a threshold: 0.5 ≥ 0.5 must hold in float32 too).
  const std::vector<double> anchors = {0, 0, 10, 10, 0, 0, 10, 5, 0, 0, 10, 3.5, 0, 0, 10, 2, 50, 50, 60, 60};
  const MatchConfig mc;
  for (DType dt : {DType::Float32, DType::Float64})
    for (Device d : test::devices()) {
      CAPTURE(d);
      CAPTURE(dt);
      const Tensor a = boxes_on(anchors, d, dt), g = boxes_on({0, 0, 10, 10}, d, dt);
      const Assignment s1 = assign(a, g, mc.step1);
      CHECK(s1.labels.device() == d);
      CHECK(ints(s1.labels) == std::vector<int64_t>{1, -1, -1, 0, 0});
      CHECK(ints(s1.matched_gt) == std::vector<int64_t>{0, -1, -1, -1, -1});
      const Assignment s2 = assign(a, g, mc.step2);
      CHECK(ints(s2.labels) == std::vector<int64_t>{1, 1, 0, 0, 0});
      CHECK(ints(s2.matched_gt) == std::vector<int64_t>{0, 0, -1, -1, -1});
      const Assignment none = assign(a, empty({0, 4}, TensorOptions(dt).device(d)), mc.step1);
      CHECK(ints(none.labels) == std::vector<int64_t>(5, 0));
      CHECK(ints(none.matched_gt) == std::vector<int64_t>(5, -1));
    }
  CHECK_THROWS_WITH_AS(assign(boxes_on(anchors, Device::cpu()), boxes_on({0, 0, 1, 1}, Device::cpu()), {0.6, 0.5}),
                       doctest::Contains("[assign] the negative threshold"), Error);
  CHECK_THROWS_WITH_AS(assign(boxes_on(anchors, Device::cpu()), boxes_on({0, 0, 1, 1}, Device::cpu(), DType::Float32),
                              mc.step1),
                       doctest::Contains("[match_anchors]"), Error);
}

TEST_CASE("detector assign: every GT claims its best anchors, ties included, in both steps") {
  // GT 0 overlaps B0 and B1 with IoU 0.2 each (a tie, below both positive thresholds) and B2 with 0.1;
  // GT 1 overlaps no anchor and claims none.
  const std::vector<double> anchors = {0, 0, 10, 2, 0, 8, 10, 10, 0, 0, 10, 1, 50, 50, 60, 60};
  const std::vector<double> gts = {0, 0, 10, 10, 100, 100, 110, 110};
  const MatchConfig mc;
  // Expectations built once, outside the loops: GCC 12.2 at -O2/-O3 -march=native (AVX-512) compiled a
  // braced std::vector<int64_t>{1, 1, 0, 0} built inside this loop nest into {1, 1, 1, 1} (its SLP
  // vectorizer; the build now passes -fno-tree-slp-vectorize to GCC < 13 with ISRN_NATIVE).
  const std::vector<int64_t> claimed_labels{1, 1, 0, 0}, claimed_gt{0, 0, -1, -1}, no_rule_labels(4, 0);
  for (DType dt : {DType::Float32, DType::Float64})
    for (Device d : test::devices()) {
      CAPTURE(d);
      CAPTURE(dt);
      const Tensor a = boxes_on(anchors, d, dt), g = boxes_on(gts, d, dt);
      for (const MatchThresholds& t : {mc.step1, mc.step2}) {
        const Assignment s = assign(a, g, t);
        CHECK(ints(s.labels) == claimed_labels);
        CHECK(ints(s.matched_gt) == claimed_gt);
        // One GT per chunk walks the chunked path.
        const Assignment chunked = assign(a, g, t, true, false, 4);
        CHECK(ints(chunked.labels) == claimed_labels);
        CHECK(ints(chunked.matched_gt) == claimed_gt);
        const Assignment plain = assign(a, g, t, false);
        CHECK(ints(plain.labels) == no_rule_labels);
      }
    }
}

TEST_CASE("detector assign: random boxes and generated anchors against a full-matrix reference") {
  Generator gen(77);
  std::vector<double> boxes, gts;
  for (int i = 0; i < 61; ++i) {
    if (i % 10 == 9) {  // exact duplicates make exact ties for the best-anchor rule
      const std::vector<double> earlier(boxes.end() - 8, boxes.end() - 4);
      boxes.insert(boxes.end(), earlier.begin(), earlier.end());
      continue;
    }
    const double x = gen.uniform() * 80, y = gen.uniform() * 80;
    boxes.insert(boxes.end(), {x, y, x + 4 + gen.uniform() * 30, y + 4 + gen.uniform() * 30});
  }
  for (int i = 0; i < 9; ++i) {
    const double x = gen.uniform() * 80, y = gen.uniform() * 80;
    gts.insert(gts.end(), {x, y, x + 4 + gen.uniform() * 30, y + 4 + gen.uniform() * 30});
  }
  // Faces of 8 to 120 px in a 256×256 image against its 10,920 generated anchors.
  std::vector<double> faces;
  for (int i = 0; i < 6; ++i) {
    const double s = 8 + gen.uniform() * 112, x = gen.uniform() * (256 - s), y = gen.uniform() * (256 - s);
    faces.insert(faces.end(), {x, y, x + s * 0.8, y + s});
  }
  const MatchConfig mc;
  for (Device d : test::devices()) {
    CAPTURE(d);
    const AnchorSet generated = generate_anchors(256, 256, AnchorConfig{}, TensorOptions(DType::Float64).device(d));
    const std::vector<double> generated_host = test::values(generated.boxes);
    for (const MatchThresholds& t : {mc.step1, mc.step2}) {
      const RefAssignment ref = ref_assign(boxes, gts, t.negative_below, t.positive_at_least, true);
      for (int64_t chunk : {int64_t{61}, int64_t{61 * 4}, kAssignChunkElements}) {
        const Assignment s = assign(boxes_on(boxes, d), boxes_on(gts, d), t, true, false, chunk);
        CHECK(ints(s.labels) == ref.labels);
        CHECK(ints(s.matched_gt) == ref.matched);
      }
      const RefAssignment ref_faces = ref_assign(generated_host, faces, t.negative_below, t.positive_at_least, true);
      const Assignment s = assign(generated.boxes, boxes_on(faces, d), t);
      CHECK(ints(s.labels) == ref_faces.labels);
      CHECK(ints(s.matched_gt) == ref_faces.matched);
    }
  }
}

TEST_CASE("detector two-step targets: STC filtering and STR refinement") {
  // Level 2 (STC): a0 overlaps GT 0 (IoU 0.82), a1 and a2 overlap nothing. Level 5 (STR): a3 overlaps
  // GT 1 only with IoU 0.25 (positive at step 1 by the best-anchor rule alone), a4 overlaps nothing.
  const std::vector<double> anchors = {1, 1, 21, 21, 30, 0, 50, 20, 30, 30, 50, 50, 60, 0, 100, 40, 200, 200, 240, 240};
  const std::vector<double> gt0 = {0, 0, 20, 20}, gt1 = {70, 10, 90, 30};
  const std::vector<double> a0(anchors.begin(), anchors.begin() + 4), a3(anchors.begin() + 12, anchors.begin() + 16),
      a4(anchors.begin() + 16, anchors.end());
  // a0's step-1 deltas would move it to IoU 0.11 with GT 0 if STC levels were refined (they are not);
  // a3's step-1 deltas land exactly on GT 1.
  const std::vector<double> enc_gt1_a3 = ref_encode(gt1, a3);
  const std::vector<double> d4 = {0.3, -0.2, 0.1, 0.05};
  std::vector<double> deltas1 = {5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  deltas1.insert(deltas1.end(), enc_gt1_a3.begin(), enc_gt1_a3.end());
  deltas1.insert(deltas1.end(), d4.begin(), d4.end());
  const std::vector<double> logits1 = {-10, -6, 0, -10, -8};  // p1: 4.5e-5, 0.0025, 0.5, 4.5e-5, 3.4e-4

  std::vector<double> gts = gt0;
  gts.insert(gts.end(), gt1.begin(), gt1.end());
  std::vector<double> refined = anchors;
  const std::vector<double> r4 = ref_decode(d4, a4);
  std::copy(gt1.begin(), gt1.end(), refined.begin() + 12);
  std::copy(r4.begin(), r4.end(), refined.begin() + 16);
  const std::vector<double> enc_gt0_a0 = ref_encode(gt0, a0);  // (-0.5, -0.5, 0, 0)
  std::vector<double> reg1(20, 0.0), reg2(20, 0.0);
  std::copy(enc_gt1_a3.begin(), enc_gt1_a3.end(), reg1.begin() + 12);
  std::copy(enc_gt0_a0.begin(), enc_gt0_a0.end(), reg2.begin());  // row 3: GT 1 against itself, 0

  for (Device d : test::devices()) {
    CAPTURE(d);
    const AnchorSet set = hand_anchors(anchors, {2, 5}, {3, 2}, d);
    const Tensor l1 = from_vector(logits1).to(d), dl1 = boxes_on(deltas1, d);
    const ImageTargets t = two_step_targets(set, l1, dl1, boxes_on(gts, d));
    // Tolerance: the targets go through one encode/decode in double; 1e-12 absolute is far above that
    // rounding and far below any wrong label or wrong reference box.
    check_close(t.cls1_labels, std::vector<double>{1, 0, 0, 1, 0}, 0, 0, "cls1 labels");
    check_close(t.cls1_weights, std::vector<double>{1, 1, 1, 0, 0}, 0, 0, "cls1 weights (STC levels only)");
    check_close(t.reg1_weights, std::vector<double>{0, 0, 0, 1, 0}, 0, 0, "reg1 weights (STR positives)");
    check_close(t.reg1_targets, from_vector(reg1, {5, 4}), 0, 1e-12, "reg1 targets");
    check_close(t.refined_boxes, from_vector(refined, {5, 4}), 0, 1e-12, "refined boxes");
    check_close(t.cls2_labels, std::vector<double>{1, 0, 0, 1, 0}, 0, 0, "cls2 labels");
    // a1: an STC negative with p1 < 0.01 is dropped; a0 (positive, p1 tiny) and a4 (STR level) stay.
    check_close(t.cls2_weights, std::vector<double>{1, 0, 1, 1, 1}, 0, 0, "cls2 weights");
    check_close(t.reg2_weights, std::vector<double>{1, 0, 0, 1, 0}, 0, 0, "reg2 weights");
    check_close(t.reg2_targets, from_vector(reg2, {5, 4}), 0, 1e-12, "reg2 targets");

    // No faces: everything negative, and the STC filter now drops a0 as well.
    const ImageTargets none = two_step_targets(set, l1, dl1, empty({0, 4}, TensorOptions(DType::Float64).device(d)));
    check_close(none.cls1_labels, std::vector<double>(5, 0.0), 0, 0, "no-face cls1 labels");
    check_close(none.cls1_weights, std::vector<double>{1, 1, 1, 0, 0}, 0, 0, "no-face cls1 weights");
    check_close(none.cls2_weights, std::vector<double>{0, 0, 1, 1, 1}, 0, 0, "no-face cls2 weights");
    check_close(none.reg2_weights, std::vector<double>(5, 0.0), 0, 0, "no-face reg2 weights");
    check_close(none.reg2_targets, std::vector<double>(20, 0.0), 0, 0, "no-face reg2 targets");

    CHECK_THROWS_WITH_AS(two_step_targets(set, l1.narrow(0, 0, 4), dl1, boxes_on(gts, d)),
                         doctest::Contains("[two_step_targets] step-1 logits must have shape [5]"), Error);
    CHECK_THROWS_WITH_AS(two_step_targets(set, l1.to(DType::Float32), dl1, boxes_on(gts, d)),
                         doctest::Contains("[two_step_targets] step-1 predictions and anchors must share one dtype"),
                         Error);
    CHECK_THROWS_WITH_AS(two_step_targets(set, l1, dl1, boxes_on(gts, d, DType::Float32)),
                         doctest::Contains("[two_step_targets] ground truth must match the anchors' dtype"), Error);
    CHECK_THROWS_WITH_AS(two_step_targets(set, l1, dl1, boxes_on(gts, d).reshape({4, 2})),
                         doctest::Contains("[two_step_targets] ground truth must have shape [G, 4]"), Error);
  }
}

namespace {

// Two anchors (one STC level-2, one STR level-5), two images: image 0 has a face on anchor 0, image 1
// one on anchor 1 (IoU 0.786 at step 1, 0.78 after refinement).
struct TinyLossCase {
  std::vector<double> anchors = {0, 0, 10, 10, 20, 0, 40, 20};
  std::vector<double> gt0 = {0, 0, 10, 10}, gt1 = {21, 1, 41, 22};
  std::vector<double> cls1 = {0.3, -1.2, -6, 0.7};  // image 1, anchor 0: p1 = 0.0025 < θ
  std::vector<double> d1 = {0.2, -0.1, 0.05, 0.1, 0.3, 0.2, -0.1, 0.25, 0.1, 0.1, 0.1, 0.1, -0.2, 0.15, 0.3, -0.1};
  std::vector<double> cls2 = {1.1, -0.4, 0.8, -0.9};
  std::vector<double> d2 = {0.05, -0.3, 0.2, 0.02, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.4, -0.2, 0.1, 0.3};

  // The four terms by hand (SPEC §8): which anchors enter which term is worked out in the comments.
  std::array<double, 4> expected() const {
    // Step 1 cls (STC level: anchor 0 only): image 0 positive, image 1 negative; N = 1.
    const double cls1_term = ref_focal(cls1[0], 1) + ref_focal(cls1[2], 0);
    // Step 1 reg (STR level: anchor 1 only): image 1 positive against the anchor; N = 1.
    const std::vector<double> a1(anchors.begin() + 4, anchors.end());
    const std::vector<double> t1 = ref_encode(gt1, a1);
    double reg1_term = 0;
    for (int k = 0; k < 4; ++k) reg1_term += ref_smooth_l1(d1[12 + k] - t1[k]);
    // Step 2: image 0 anchor 0 positive (target 0), anchor 1 refined away from the face, negative; image 1
    // anchor 0 negative and STC-filtered, anchor 1 positive against its refined box; N = 2.
    const double cls2_term = (ref_focal(cls2[0], 1) + ref_focal(cls2[1], 0) + ref_focal(cls2[3], 1)) / 2;
    const std::vector<double> refined = ref_decode({d1[12], d1[13], d1[14], d1[15]}, a1);
    const std::vector<double> t2 = ref_encode(gt1, refined);
    double reg2_term = 0;
    for (int k = 0; k < 4; ++k) reg2_term += ref_smooth_l1(d2[k]) + ref_smooth_l1(d2[12 + k] - t2[k]);
    return {cls1_term, cls2_term, reg1_term, reg2_term / 2};
  }
};

}  // namespace

TEST_CASE("detector loss: a two-anchor batch against the formulas") {
  const TinyLossCase c;
  const auto e = c.expected();
  for (DType dt : {DType::Float64, DType::Float32})
    for (Device d : test::devices()) {
      CAPTURE(d);
      CAPTURE(dt);
      const AnchorSet set = hand_anchors(c.anchors, {2, 5}, {1, 1}, d, dt);
      auto t = [&](const std::vector<double>& v, Shape s) { return from_vector(v, s).to(dt).to(d); };
      const DetectionLoss loss = detection_loss(t(c.cls1, {2, 2}), t(c.d1, {2, 2, 4}), t(c.cls2, {2, 2}),
                                                t(c.d2, {2, 2, 4}), set, {boxes_on(c.gt0, d, dt), boxes_on(c.gt1, d, dt)});
      CHECK(loss.num_pos1_cls == 1);
      CHECK(loss.num_pos1_reg == 1);
      CHECK(loss.num_pos2 == 2);
      // float64: only summation order differs (1e-12); float32: a few ulps of each logit and delta.
      const double tol = dt == DType::Float64 ? 1e-12 : 2e-5;
      check_close(loss.stc_cls1, std::vector<double>{e[0]}, tol, tol, "stc_cls1");
      check_close(loss.stc_cls2, std::vector<double>{e[1]}, tol, tol, "stc_cls2");
      check_close(loss.str_reg1, std::vector<double>{e[2]}, tol, tol, "str_reg1");
      check_close(loss.str_reg2, std::vector<double>{e[3]}, tol, tol, "str_reg2");
      check_close(loss.total, std::vector<double>{e[0] + e[1] + e[2] + e[3]}, tol, tol, "total");

      // The head's outputs arrive as permuted views ([B, A·4, H, W] → [B, A, 4]): non-contiguous
      // predictions must give the same loss.
      auto strided = [&](const std::vector<double>& v, Shape s) {
        return t(v, s).transpose(1, 2).contiguous().transpose(1, 2);
      };
      const Tensor cls_view = t({c.cls1[0], c.cls1[2], c.cls1[1], c.cls1[3]}, {2, 2}).transpose(0, 1);
      const DetectionLoss from_views = detection_loss(cls_view, strided(c.d1, {2, 2, 4}), t(c.cls2, {2, 2}),
                                                      strided(c.d2, {2, 2, 4}), set,
                                                      {boxes_on(c.gt0, d, dt), boxes_on(c.gt1, d, dt)});
      REQUIRE_FALSE(cls_view.is_contiguous());
      check_close(from_views.total, std::vector<double>{e[0] + e[1] + e[2] + e[3]}, tol, tol, "total from views");

      // No faces anywhere: the normalizers fall back to 1 and only negatives remain.
      const Tensor none = empty({0, 4}, TensorOptions(dt).device(d));
      const DetectionLoss empty_loss = detection_loss(t(c.cls1, {2, 2}), t(c.d1, {2, 2, 4}), t(c.cls2, {2, 2}),
                                                      t(c.d2, {2, 2, 4}), set, {none, none});
      CHECK(empty_loss.num_pos2 == 0);
      check_close(empty_loss.stc_cls1, std::vector<double>{ref_focal(c.cls1[0], 0) + ref_focal(c.cls1[2], 0)}, tol, tol,
                  "no-face stc_cls1");
      // Step 2: anchor 0 of both images is STC-filtered only where p1 < 0.01 (image 1).
      check_close(empty_loss.stc_cls2,
                  std::vector<double>{ref_focal(c.cls2[0], 0) + ref_focal(c.cls2[1], 0) + ref_focal(c.cls2[3], 0)}, tol,
                  tol, "no-face stc_cls2");
      check_close(empty_loss.str_reg1, std::vector<double>{0.0}, 0, 0, "no-face str_reg1");
      check_close(empty_loss.str_reg2, std::vector<double>{0.0}, 0, 0, "no-face str_reg2");

      CHECK_THROWS_WITH_AS(detection_loss(t(c.cls1, {2, 2}), t(c.d1, {2, 2, 4}), t(c.cls2, {2, 2}),
                                          t(c.d2, {2, 8}), set, {none, none}),
                           doctest::Contains("[detection_loss] 'step2_box_deltas' must have shape [2, 2, 4]"), Error);
      CHECK_THROWS_WITH_AS(detection_loss(t(c.cls1, {2, 2}), t(c.d1, {2, 2, 4}), t(c.cls2, {2, 2}),
                                          t(c.d2, {2, 2, 4}), set, {none}),
                           doctest::Contains("[detection_loss] 1 ground-truth sets for a batch of 2"), Error);
    }
}

TEST_CASE("detector loss: gradients reach the predictions only through the loss terms") {
  const TinyLossCase c;
  for (Device d : test::devices()) {
    CAPTURE(d);
    const AnchorSet set = hand_anchors(c.anchors, {2, 5}, {1, 1}, d);
    const std::vector<Tensor> gts = {boxes_on(c.gt0, d), boxes_on(c.gt1, d)};
    const Tensor d1 = from_vector(c.d1, {2, 2, 4});
    // Step-1 deltas held fixed: they also move the step-2 targets (the refined boxes), a dependence the
    // loss deliberately detaches, so central differences through them would see what backward must not.
    test::gradcheck(
        [&](const std::vector<Tensor>& in) {
          return detection_loss(in[0], d1.to(d), in[1], in[2], set, gts).total;
        },
        {from_vector(c.cls1, {2, 2}), from_vector(c.cls2, {2, 2}), from_vector(c.d2, {2, 2, 4})}, d, 1e-6, 1e-7, 1e-6,
        "total wrt cls1, cls2, d2");
    // The step-1 regression term alone, whose targets do not depend on the predictions.
    test::gradcheck([&](const std::vector<Tensor>& in) {
      return detection_loss(from_vector(c.cls1, {2, 2}).to(d), in[0], from_vector(c.cls2, {2, 2}).to(d),
                            from_vector(c.d2, {2, 2, 4}).to(d), set, gts).str_reg1;
    }, {d1}, d, 1e-6, 1e-7, 1e-6, "str_reg1 wrt d1");
    // And the whole loss sends the step-1 deltas exactly str_reg1's gradient: nothing through the refined boxes.
    Tensor d1_total = d1.to(d).clone().detach().set_requires_grad(true);
    detection_loss(from_vector(c.cls1, {2, 2}).to(d), d1_total, from_vector(c.cls2, {2, 2}).to(d),
                   from_vector(c.d2, {2, 2, 4}).to(d), set, gts).total.backward();
    Tensor d1_reg1 = d1.to(d).clone().detach().set_requires_grad(true);
    detection_loss(from_vector(c.cls1, {2, 2}).to(d), d1_reg1, from_vector(c.cls2, {2, 2}).to(d),
                   from_vector(c.d2, {2, 2, 4}).to(d), set, gts).str_reg1.backward();
    check_close(d1_total.grad(), d1_reg1.grad(), 0, 1e-15, "d1 gradient of total vs str_reg1");
    CHECK(test::values(abs(d1_total.grad())).at(12) > 0.0);  // image 1, anchor 1 is a step-1 STR positive
  }
}

TEST_CASE("detector postprocess: STC filter, STR decoding, top-k, NMS and the scale mapping") {
  // Level 2: a0, a1 (IoU 0.83 with a0 in +1 pixels), a2 (p1 = 0.0025: STC-filtered despite the top
  // step-2 score). Level 5: a3 (refined by step 1, then decoded by step 2), a4 (tiny score, kept: no
  // threshold by default).
  const std::vector<double> anchors = {0, 0, 10, 10, 1, 0, 11, 10, 50, 50, 60, 60, 100, 100, 140, 140, 200, 200, 240, 240};
  const std::vector<double> cls1 = {0, 0, -6, -10, 0}, cls2 = {3, 2, 5, 1, -20};
  // a0's step-1 deltas would move it if STC levels were refined.
  const std::vector<double> d1 = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0.5, -0.5, 0.3, 0.2, 0, 0, 0, 0};
  const std::vector<double> d2 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.2, 0.1, -0.1, 0.3, 0, 0, 0, 0};
  const std::vector<double> a3(anchors.begin() + 12, anchors.begin() + 16);
  const std::vector<double> b3 = ref_decode({0.2, 0.1, -0.1, 0.3}, ref_decode({0.5, -0.5, 0.3, 0.2}, a3));
  auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
  std::vector<double> all_boxes = {0, 0, 10, 10};
  all_boxes.insert(all_boxes.end(), b3.begin(), b3.end());
  all_boxes.insert(all_boxes.end(), {200, 200, 240, 240});
  const std::vector<double> all_scores = {sig(3), sig(1), sig(-20)};
  for (DType dt : {DType::Float64, DType::Float32})
    for (Device d : test::devices()) {
      CAPTURE(d);
      CAPTURE(dt);
      // float32: the decode chain and sigmoid hold about 1e-7 relative.
      const double rtol = dt == DType::Float64 ? 1e-12 : 1e-6;
      const AnchorSet set = hand_anchors(anchors, {2, 5}, {3, 2}, d, dt);
      auto t = [&](const std::vector<double>& v, Shape s) { return from_vector(v, s).to(dt).to(d); };
      auto run = [&](const InferenceConfig& cfg, double scale = 1.0) {
        return detect_single_scale(t(cls1, {5}), t(d1, {5, 4}), t(cls2, {5}), t(d2, {5, 4}), set, cfg, scale);
      };
      const Detections all = run({});
      CHECK(all.boxes.device() == d);
      check_close(all.boxes, from_vector(all_boxes, {3, 4}), rtol, 1e-9, "boxes");
      check_close(all.scores, from_vector(all_scores), rtol, 0, "scores");

      InferenceConfig cfg;
      cfg.score_threshold = 0.05;
      check_close(run(cfg).scores, std::vector<double>{sig(3), sig(1)}, rtol, 0, "score threshold");
      cfg = {};
      cfg.pre_nms_top_n = 2;  // a0 and a1 before NMS, which then removes a1
      check_close(run(cfg).boxes, std::vector<double>{0, 0, 10, 10}, rtol, 0, "top-k before NMS");
      cfg = {};
      cfg.keep_top_n = 2;
      check_close(run(cfg).scores, std::vector<double>{sig(3), sig(1)}, rtol, 0, "keep top n");
      cfg = {};
      cfg.stc_theta = 0.001;  // now a2's p1 = 0.0025 passes, and its score leads
      check_close(run(cfg).boxes.narrow(0, 0, 1), std::vector<double>{50, 50, 60, 60}, rtol, 0, "looser STC");
      // Scale 2: x = (x' − 0.5) / 2.
      std::vector<double> mapped = all_boxes;
      for (double& v : mapped) v = (v - 0.5) / 2;
      check_close(run({}, 2.0).boxes, from_vector(mapped, {3, 4}), rtol, 1e-9, "scale mapping");
      // Nothing scores above 0: an empty [0, 4] result.
      const Detections none = detect_single_scale(t(cls1, {5}), t(d1, {5, 4}), full({5}, -1e4, TensorOptions(dt).device(d)),
                                                  t(d2, {5, 4}), set);
      CHECK(none.boxes.shape() == Shape{0, 4});
      CHECK(none.scores.numel() == 0);
      CHECK_THROWS_WITH_AS(detect_single_scale(t(cls1, {5}), t(d1, {5, 4}), t(cls2, {5}), t(d2, {4, 5}), set),
                           doctest::Contains("[detect_single_scale] 'step2_box_deltas' must have shape [5, 4]"), Error);
      CHECK_THROWS_WITH_AS(run({}, 0.0), doctest::Contains("[detect_single_scale] scale must be finite and positive"),
                           Error);
    }
}
