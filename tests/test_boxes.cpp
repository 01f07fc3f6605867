#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

// Random boxes in a 100×100 field with sides in [1, 40), as a host vector of (x1, y1, x2, y2). Every
// `duplicate_every`-th box repeats an earlier one exactly (IoU 1 and exact ties).
std::vector<double> random_boxes(int64_t n, uint64_t seed, int64_t duplicate_every = 0) {
  Generator gen(seed);
  std::vector<double> b(4 * n);
  for (int64_t i = 0; i < n; ++i) {
    if (duplicate_every > 0 && i > 0 && i % duplicate_every == 0) {
      const int64_t src = static_cast<int64_t>(gen.uniform() * static_cast<double>(i));
      std::copy_n(b.begin() + 4 * src, 4, b.begin() + 4 * i);
      continue;
    }
    const double x = gen.uniform() * 100, y = gen.uniform() * 100;
    b[4 * i] = x;
    b[4 * i + 1] = y;
    b[4 * i + 2] = x + 1 + gen.uniform() * 39;
    b[4 * i + 3] = y + 1 + gen.uniform() * 39;
  }
  return b;
}

// Independent IoU: straight from the definition, in double, no precomputed areas.
double ref_iou(const double* a, const double* b, bool plus_one) {
  const double e = plus_one ? 1.0 : 0.0;
  auto side = [e](double lo, double hi) { return std::max(hi - lo + e, 0.0); };
  const double inter = side(std::max(a[0], b[0]), std::min(a[2], b[2])) * side(std::max(a[1], b[1]), std::min(a[3], b[3]));
  const double uni = side(a[0], a[2]) * side(a[1], a[3]) + side(b[0], b[2]) * side(b[1], b[3]) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

std::vector<double> ref_iou_matrix(const std::vector<double>& a, const std::vector<double>& b, bool plus_one) {
  const size_t n = a.size() / 4, m = b.size() / 4;
  std::vector<double> out(n * m);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < m; ++j) out[i * m + j] = ref_iou(&a[4 * i], &b[4 * j], plus_one);
  return out;
}

// Greedy NMS by the book: visit in (score descending, index ascending) order, keep a box unless an
// already kept box overlaps it with IoU > threshold.
std::vector<int64_t> ref_nms(const std::vector<double>& boxes, const std::vector<double>& scores, double threshold,
                             bool plus_one) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::sort(order.begin(), order.end(), [&](int64_t i, int64_t j) {
    return scores[i] != scores[j] ? scores[i] > scores[j] : i < j;
  });
  std::vector<int64_t> kept;
  for (int64_t i : order) {
    bool keep = true;
    for (int64_t k : kept)
      if (ref_iou(&boxes[4 * i], &boxes[4 * k], plus_one) > threshold) {
        keep = false;
        break;
      }
    if (keep) kept.push_back(i);
  }
  return kept;
}

Tensor boxes_tensor(const std::vector<double>& b, DType dt, Device d) {
  return from_vector(b, {static_cast<int64_t>(b.size() / 4), 4}).to(dt).to(d);
}

}  // namespace

TEST_CASE("box_iou: matches the definition, with and without the +1 convention") {
  for (Device d : test::devices()) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      for (bool plus_one : {false, true}) {
        CAPTURE(d);
        CAPTURE(dt);
        CAPTURE(plus_one);
        auto a = random_boxes(37, 1, 5), b = random_boxes(23, 2);
        // Special rows: a copy of b[0] (IoU 1), a far box (IoU 0), a zero-width box, an inverted box.
        a.insert(a.end(), b.begin(), b.begin() + 4);
        a.insert(a.end(), {500, 500, 510, 510, 10, 10, 10, 30, 30, 30, 20, 20});
        std::vector<double> rounded = test::values(boxes_tensor(a, dt, Device::cpu()));
        std::vector<double> rounded_b = test::values(boxes_tensor(b, dt, Device::cpu()));
        Tensor iou = box_iou(boxes_tensor(a, dt, d), boxes_tensor(b, dt, d), plus_one);
        CHECK(iou.shape() == Shape{41, 23});
        CHECK(iou.dtype() == dt);
        // float64: a few roundings on values ≤ 1; float32: the same in float (≈1e-6).
        const double tol = dt == DType::Float64 ? 1e-14 : 2e-6;
        check_close(iou, ref_iou_matrix(rounded, rounded_b, plus_one), tol, tol, "iou");
        const auto v = test::values(iou);
        CHECK(v[37 * 23 + 0] == 1.0);
        for (int64_t j = 0; j < 23; ++j) CHECK(v[38 * 23 + j] == 0.0);
      }
    }
    // Non-contiguous inputs: boxes stored as the columns of a [4, N] tensor, read through a transpose.
    auto a = random_boxes(9, 3), b = random_boxes(6, 4);
    Tensor columns = boxes_tensor(a, DType::Float64, d).transpose(0, 1).contiguous().transpose(0, 1);
    REQUIRE(!columns.is_contiguous());
    check_close(box_iou(columns, boxes_tensor(b, DType::Float64, d)).reshape({-1}), ref_iou_matrix(a, b, false), 1e-14,
                1e-14, "strided boxes");
    // Two empty boxes: a zero union gives IoU 0, not NaN; with +1 widths the same point is a 1×1 box.
    Tensor point = from_vector<double>({5, 5, 5, 5}, {1, 4}, d);
    check_close(box_iou(point, point), {0.0}, 0, 0, "empty boxes");
    check_close(box_iou(point, point, true), {1.0}, 0, 0, "a point with +1 widths");
    // Empty sets give empty matrices.
    CHECK(box_iou(boxes_tensor({}, DType::Float64, d), boxes_tensor(b, DType::Float64, d)).shape() == Shape{0, 6});
    CHECK(box_iou(boxes_tensor(a, DType::Float32, d), boxes_tensor({}, DType::Float32, d)).shape() == Shape{9, 0});
  }
}

TEST_CASE("encode_boxes / decode_boxes: the documented convention, round trip and the clamp") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    // By hand: reference w 10, h 20, centre (5, 10); box w 20, h 40, centre (15, 25).
    // dx = (15 − 5)/10/0.1 = 10, dy = (25 − 10)/20/0.1 = 7.5, dw = dh = log 2 / 0.2.
    Tensor ref = from_vector<double>({0, 0, 10, 20}, {1, 4}, d);
    Tensor box = from_vector<double>({5, 5, 25, 45}, {1, 4}, d);
    const double l2 = std::log(2.0) / 0.2;
    check_close(encode_boxes(box, ref), {10, 7.5, l2, l2}, 1e-15, 0, "encode by hand");
    check_close(decode_boxes(encode_boxes(box, ref), ref), {5, 5, 25, 45}, 1e-15, 1e-14, "decode by hand");
    // Unit variances give the raw Faster R-CNN deltas.
    check_close(encode_boxes(box, ref, {1, 1, 1, 1}), {1, 0.75, std::log(2.0), std::log(2.0)}, 1e-15, 0, "raw deltas");

    for (DType dt : {DType::Float64, DType::Float32}) {
      CAPTURE(dt);
      const auto g = random_boxes(300, 7, 4), r = random_boxes(300, 8);
      Tensor gd = boxes_tensor(g, dt, d), rd = boxes_tensor(r, dt, d);
      Tensor deltas = encode_boxes(gd, rd);
      // Round trip: float64 keeps ≈1e-13 of coordinates ≤ 140; float32 loses a few ulps of 140 (≈1e-5)
      // through log and exp.
      const double tol = dt == DType::Float64 ? 1e-12 : 1e-4;
      check_close(decode_boxes(deltas, rd), gd, tol, tol, "decode(encode(g, r), r) = g");
      // The delta formula itself, against a naive double computation on the same rounded inputs.
      const auto gv = test::values(gd), rv = test::values(rd);
      std::vector<double> expected;
      for (size_t i = 0; i < gv.size(); i += 4) {
        const double wr = rv[i + 2] - rv[i], hr = rv[i + 3] - rv[i + 1];
        const double wg = gv[i + 2] - gv[i], hg = gv[i + 3] - gv[i + 1];
        expected.push_back(((gv[i] + gv[i + 2]) / 2 - (rv[i] + rv[i + 2]) / 2) / wr / 0.1);
        expected.push_back(((gv[i + 1] + gv[i + 3]) / 2 - (rv[i + 1] + rv[i + 3]) / 2) / hr / 0.1);
        expected.push_back(std::log(wg / wr) / 0.2);
        expected.push_back(std::log(hg / hr) / 0.2);
      }
      // Deltas reach ≈±1000 (a 40-px offset over a 1-px reference, ÷0.1): relative tolerance. In float32
      // the centre difference of coordinates ≈140 carries ≈1e-5 absolute error, ÷(w_r ≥ 1)÷0.1 → 1e-4.
      check_close(deltas, expected, dt == DType::Float64 ? 1e-12 : 2e-5, dt == DType::Float64 ? 1e-12 : 2e-4,
                  "encode vs naive");
    }

    // The clamp: dw·v2 = 10 exceeds log(1000/16) and is cut there; negative log-scales are not clamped.
    Tensor wild = from_vector<double>({0, 0, 50, -50}, {1, 4}, d);
    const double limit = std::log(1000.0 / 16.0);
    const double w = std::exp(limit) * 10, h = std::exp(-10.0) * 20;
    check_close(decode_boxes(wild, ref), {5 - w / 2, 10 - h / 2, 5 + w / 2, 10 + h / 2}, 1e-14, 1e-12, "clamped");
    check_close(decode_boxes(wild, ref, {0.1, 0.1, 0.2, 0.2}, 1.0),
                {5 - 5 * std::exp(1.0), 10 - h / 2, 5 + 5 * std::exp(1.0), 10 + h / 2}, 1e-14, 1e-12, "custom clamp");
    // Strided inputs: boxes in columns 0–3 and references in columns 4–7 of one [N, 8] tensor.
    const auto g = random_boxes(20, 9), r = random_boxes(20, 10);
    std::vector<double> packed;
    for (size_t i = 0; i < 20; ++i) {
      packed.insert(packed.end(), g.begin() + 4 * i, g.begin() + 4 * i + 4);
      packed.insert(packed.end(), r.begin() + 4 * i, r.begin() + 4 * i + 4);
    }
    Tensor both = from_vector(packed, {20, 8}, d);
    Tensor gs = both.narrow(1, 0, 4), rs = both.narrow(1, 4, 4);
    REQUIRE(!gs.is_contiguous());
    check_close(encode_boxes(gs, rs), encode_boxes(gs.contiguous(), rs.contiguous()), 0, 0, "strided encode");
    check_close(decode_boxes(rs, gs), decode_boxes(rs.contiguous(), gs.contiguous()), 0, 0, "strided decode");
    // Empty sets.
    Tensor none = zeros({0, 4}, TensorOptions(DType::Float64).device(d));
    CHECK(encode_boxes(none, none).shape() == Shape{0, 4});
    CHECK(decode_boxes(none, none).shape() == Shape{0, 4});
  }
}

TEST_CASE("nms: greedy suppression against a naive reference, with duplicates and tied scores") {
  for (Device d : test::devices()) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      for (bool plus_one : {false, true}) {
        for (double threshold : {0.0, 0.3, 0.5, 0.7}) {
          CAPTURE(d);
          CAPTURE(dt);
          CAPTURE(plus_one);
          CAPTURE(threshold);
          const auto boxes = random_boxes(257, 21 + static_cast<uint64_t>(threshold * 10), 6);
          // Scores on a grid of 16 levels: many exact ties, broken by the lower index.
          Generator gen(31);
          std::vector<double> scores(257);
          for (auto& s : scores) s = std::floor(gen.uniform() * 16) / 16;
          // The reference sees the values after rounding to dt. float32 IoUs are computed in float,
          // so an IoU within ≈1e-7 of the threshold could flip; none of these seeded boxes is that close.
          Tensor bt = boxes_tensor(boxes, dt, d), st = from_vector(scores).to(dt).to(d);
          const auto expected = ref_nms(test::values(bt.to(Device::cpu())), test::values(st), threshold, plus_one);
          Tensor kept = nms(bt, st, threshold, plus_one);
          CHECK(kept.dtype() == DType::Int64);
          CHECK(kept.to_vector<int64_t>() == expected);
        }
      }
    }
    // Threshold ≥ 1 keeps everything in score order; a negative threshold keeps only the top box.
    const auto boxes = random_boxes(40, 41, 3);
    std::vector<double> scores(40);
    for (size_t i = 0; i < scores.size(); ++i) scores[i] = static_cast<double>((i * 7) % 5);
    Tensor bt = boxes_tensor(boxes, DType::Float64, d), st = from_vector(scores).to(d);
    CHECK(nms(bt, st, 1.0).to_vector<int64_t>() == ref_nms(boxes, scores, 1.0, false));
    CHECK(nms(bt, st, 1.0).numel() == 40);
    CHECK(nms(bt, st, -0.5).to_vector<int64_t>() == std::vector<int64_t>{ref_nms(boxes, scores, 1.0, false)[0]});
    // Duplicated boxes: only the best-scored copy survives (ties: the lowest index).
    Tensor dup = from_vector<double>({0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10, 20, 20, 30, 30}, {4, 4}, d);
    CHECK(nms(dup, from_vector<double>({0.5, 0.9, 0.9, 0.1}, {4}, d), 0.5).to_vector<int64_t>() ==
          std::vector<int64_t>{1, 3});
    // NaN scores are visited last (after −inf), so they can neither suppress nor outrank real boxes.
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    CHECK(nms(dup, from_vector<double>({nan, 0.2, -inf, 0.1}, {4}, d), 0.5).to_vector<int64_t>() ==
          std::vector<int64_t>{1, 3});
    CHECK(nms(dup, from_vector<double>({nan, nan, nan, 0.1}, {4}, d), 0.5).to_vector<int64_t>() ==
          std::vector<int64_t>{3, 0});
    // Empty input.
    Tensor empty_kept = nms(zeros({0, 4}, TensorOptions(DType::Float64).device(d)),
                            zeros({0}, TensorOptions(DType::Float64).device(d)), 0.5);
    CHECK(empty_kept.shape() == Shape{0});
    CHECK(empty_kept.dtype() == DType::Int64);
  }
}

TEST_CASE("nms: many boxes (the blocked parallel sweep) against the naive reference") {
  // 6000 small boxes spread over a wide field: few overlaps, so most boxes are kept, most of the O(n²)
  // pairs are visited, and the sweeps after each 256-box block are large enough to run in parallel.
  Generator gen(51);
  const int64_t n = 6000;
  std::vector<double> boxes(4 * n), scores(n);
  for (int64_t i = 0; i < n; ++i) {
    const double x = gen.uniform() * 2000, y = gen.uniform() * 2000, s = 5 + gen.uniform() * 30;
    boxes[4 * i] = x;
    boxes[4 * i + 1] = y;
    boxes[4 * i + 2] = x + s;
    boxes[4 * i + 3] = y + s * (0.8 + 0.4 * gen.uniform());
    scores[i] = std::floor(gen.uniform() * 1000) / 1000;
  }
  const auto expected = ref_nms(boxes, scores, 0.4, true);
  for (Device d : test::devices()) {
    CAPTURE(d);
    CHECK(nms(boxes_tensor(boxes, DType::Float64, d), from_vector(scores).to(d), 0.4, true).to_vector<int64_t>() ==
          expected);
  }
}

TEST_CASE("match_anchors: agrees with the full IoU matrix, ties resolved to the lowest index") {
  for (Device d : test::devices()) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      for (bool plus_one : {false, true}) {
        CAPTURE(d);
        CAPTURE(dt);
        CAPTURE(plus_one);
        // 3001 anchors × 9 GT (two GT duplicated: argmax ties), anchors with duplicates (best-anchor
        // ties) and some far away (all IoUs 0: argmax 0, max 0).
        auto anchors = random_boxes(3001, 61, 7);
        for (int k = 0; k < 4; ++k) anchors.insert(anchors.end(), {900.0 + k, 900, 910.0 + k, 910});
        auto gt = random_boxes(7, 62);
        gt.insert(gt.end(), gt.begin() + 4, gt.begin() + 8);
        gt.insert(gt.end(), gt.begin(), gt.begin() + 4);
        Tensor at = boxes_tensor(anchors, dt, d), gtt = boxes_tensor(gt, dt, d);
        const auto av = test::values(at), gv = test::values(gtt);
        const int64_t na = static_cast<int64_t>(av.size() / 4), ng = static_cast<int64_t>(gv.size() / 4);
        const auto full = ref_iou_matrix(av, gv, plus_one);
        std::vector<double> amax(na, -1), gbest_iou(ng, -1);
        std::vector<int64_t> aarg(na, -1), gbest(ng, -1);
        for (int64_t a = 0; a < na; ++a)
          for (int64_t g = 0; g < ng; ++g) {
            const double v = full[a * ng + g];
            if (v > amax[a]) amax[a] = v, aarg[a] = g;
            if (v > gbest_iou[g]) gbest_iou[g] = v, gbest[g] = a;
          }
        AnchorMatch m = match_anchors(at, gtt, plus_one);
        // float32 IoUs computed in float vs the reference in double: ≈1e-6. A near-tie between two
        // different GTs closer than that could flip an argmax; the seeded data has none (checked by
        // the exact index comparison passing in float64 and float32 alike).
        const double tol = dt == DType::Float64 ? 1e-14 : 2e-6;
        check_close(m.anchor_max_iou, amax, tol, tol, "anchor max IoU");
        CHECK(m.anchor_argmax.to_vector<int64_t>() == aarg);
        check_close(m.gt_best_iou, gbest_iou, tol, tol, "gt best IoU");
        CHECK(m.gt_best_anchor.to_vector<int64_t>() == gbest);
        // The duplicated GT rows 7, 8 copy rows 1, 0: no anchor may prefer the copy.
        const auto args = m.anchor_argmax.to_vector<int64_t>();
        CHECK(std::none_of(args.begin(), args.end(), [](int64_t v) { return v == 7 || v == 8; }));
        // And the far anchors see IoU 0 everywhere: argmax 0.
        CHECK(args[na - 1] == 0);
        CHECK(test::values(m.anchor_max_iou).back() == 0.0);
      }
    }
  }
}

TEST_CASE("match_anchors: no ground truth, no anchors") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor anchors = boxes_tensor(random_boxes(5, 71), DType::Float32, d);
    Tensor none = zeros({0, 4}, TensorOptions(DType::Float32).device(d));
    AnchorMatch m = match_anchors(anchors, none);
    check_close(m.anchor_max_iou, {0, 0, 0, 0, 0}, 0, 0, "max IoU without GT");
    CHECK(m.anchor_argmax.to_vector<int64_t>() == std::vector<int64_t>(5, -1));
    CHECK(m.gt_best_anchor.shape() == Shape{0});
    CHECK(m.gt_best_iou.shape() == Shape{0});
    AnchorMatch e = match_anchors(none, anchors);
    CHECK(e.anchor_max_iou.shape() == Shape{0});
    CHECK(e.anchor_argmax.shape() == Shape{0});
    CHECK(e.gt_best_anchor.to_vector<int64_t>() == std::vector<int64_t>(5, -1));
    check_close(e.gt_best_iou, {0, 0, 0, 0, 0}, 0, 0, "best IoU without anchors");
  }
}

TEST_CASE("box ops: bad input raises isrn::Error naming the problem") {
  Tensor b = zeros({3, 4});
  CHECK_THROWS_WITH_AS(box_iou(zeros({3, 5}), b), doctest::Contains("[box_iou] argument 'a' must have shape [N, 4]"),
                       Error);
  CHECK_THROWS_WITH_AS(box_iou(b, zeros({3, 4}, DType::Float64)), doctest::Contains("'b' must be float32"), Error);
  CHECK_THROWS_WITH_AS(box_iou(zeros({3, 4}, DType::Int64), zeros({3, 4}, DType::Int64)),
                       doctest::Contains("must be float32 or float64"), Error);
  CHECK_THROWS_WITH_AS(encode_boxes(b, zeros({2, 4})), doctest::Contains("[encode_boxes] boxes and reference"), Error);
  CHECK_THROWS_WITH_AS(encode_boxes(b, b, {0.1, 0.1, 0.0, 0.2}), doctest::Contains("variances must be"), Error);
  CHECK_THROWS_WITH_AS(decode_boxes(zeros({4}), b), doctest::Contains("[decode_boxes] argument 'deltas'"), Error);
  CHECK_THROWS_WITH_AS(nms(b, zeros({2}), 0.5), doctest::Contains("[nms] scores must have shape [N] = [3]"), Error);
  CHECK_THROWS_WITH_AS(nms(b, zeros({3}), std::nan("")), doctest::Contains("iou_threshold is NaN"), Error);
  CHECK_THROWS_WITH_AS(match_anchors(b, zeros({2, 3})), doctest::Contains("[match_anchors] argument 'gt'"), Error);
  if (cuda_available()) {
    CHECK_THROWS_WITH_AS(nms(b, zeros({3}, TensorOptions().device(Device::cuda())), 0.5),
                         doctest::Contains("'scores' is on cuda"), Error);
  }
}
