// The WIDER evaluation arithmetic on hand-made ground truth: hand-computed AP, the protocol's odd rules (dropped
// detections, argmax matching, MATLAB's rounded IoU, skipped zero-face images), the known answers of
// design/WIDER_EVAL.md that need no data, prediction-file parsing and the reports. The cases on the official
// .mat files and the cross-check against the Python reference are in test_wider_mat.cpp.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>

#include "isrn/eval/wider_eval.hpp"
#include "test_util.hpp"

using namespace isrn;
using namespace isrn::eval;

namespace {

const Arithmetic kBoth[] = {Arithmetic::matlab, Arithmetic::float64};

std::string arithmetic_name(Arithmetic a) { return a == Arithmetic::matlab ? "matlab" : "float64"; }

EvalOptions with(Arithmetic a, bool all_images = false) {
  EvalOptions o;
  o.arithmetic = a;
  o.all_images = all_images;
  return o;
}

Detection at(const FaceBox& f, double score) { return {f.x, f.y, f.w, f.h, score}; }

void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

// The hand-computed case (both images, all settings "only"):
//   image a: F0 (0,0,10,10) counts, F1 (100,0,10,10) counts, F2 (200,0,10,10) ignored
//   image b: F3 (0,0,20,20) counts                                        -> 3 faces count
//   detections by score: 1.0 on F0 (recalls it), 0.8 a false positive, 0.7 on F0 again (false positive: F0 is
//   recalled), 0.65 on F2 (dropped: its face is ignored), 0.6 on F3 (recalls it), 0.0 a false positive.
//   Scores already span [0, 1], so normalisation leaves them (up to single rounding) and each falls in its own bin.
//   (detections, recalled) as the threshold falls: (1,1) (2,1) (3,1) (3,1) (4,2) (5,2)
//   -> (recall, precision): (1/3, 1) (1/3, 1/2) (1/3, 1/3) (2/3, 1/2) (2/3, 2/5)
//   VOC envelope: 1 at recall 1/3, 1/2 at recall 2/3, 0 at 1: AP = 1/3 * 1 + 1/3 * 1/2 = 0.5.
//   Were the 0.65 detection a false positive instead of dropped, the 2/3 step would have precision 2/5: AP 7/15.
GroundTruth hand_truth() {
  GroundTruth gt;
  gt.settings = {"only"};
  gt.images.push_back({"ev/a", {{0, 0, 10, 10}, {100, 0, 10, 10}, {200, 0, 10, 10}}, {{0, 1}}});
  gt.images.push_back({"ev/b", {{0, 0, 20, 20}}, {{0}}});
  return gt;
}

Predictions hand_predictions() {
  Predictions p;
  // Deliberately not in score order: the evaluator sorts.
  p["ev/a"] = {{50, 50, 10, 10, 0.8}, {200, 0, 10, 10, 0.65}, {0, 0, 10, 10, 1.0}, {0, 0, 10, 10, 0.7}};
  p["ev/b"] = {{100, 100, 5, 5, 0.0}, {0, 0, 20, 20, 0.6}};
  return p;
}

// A random scene: non-overlapping faces on a grid, detections = jittered faces, misses and false positives.
struct Scene {
  GroundTruth truth;
  Predictions predictions;
};

Scene random_scene(uint64_t seed, int images) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Scene scene;
  scene.truth.settings = {"big", "all"};
  for (int i = 0; i < images; ++i) {
    GroundTruthImage im;
    im.id = "e" + std::to_string(i % 3) + "/img" + std::to_string(i);
    im.keep.resize(2);
    std::vector<Detection>& dets = scene.predictions[im.id];
    const int faces = 1 + static_cast<int>(u(rng) * 7);
    for (int k = 0; k < faces; ++k) {
      const double size = 6 + u(rng) * 60;
      const FaceBox f{100.0 * k + u(rng) * 20, 50 + u(rng) * 30, std::round(size), std::round(size * 1.2)};
      FaceBox rounded{std::round(f.x), std::round(f.y), f.w, f.h};
      im.faces.push_back(rounded);
      if (size > 25) im.keep[0].push_back(k);
      im.keep[1].push_back(k);
      if (u(rng) < 0.25) continue;  // missed
      const double jx = (u(rng) - 0.5) * 0.3 * size, jy = (u(rng) - 0.5) * 0.3 * size;
      dets.push_back({rounded.x + jx, rounded.y + jy, rounded.w * (0.85 + 0.3 * u(rng)), rounded.h, u(rng)});
    }
    for (int k = 0; k < 2; ++k) dets.push_back({u(rng) * 700, 300 + u(rng) * 100, 10 + u(rng) * 40, 20, u(rng) * 0.7});
    scene.truth.images.push_back(std::move(im));
  }
  return scene;
}

void check_same_result(const EvalResult& a, const EvalResult& b) {
  REQUIRE(a.settings.size() == b.settings.size());
  for (size_t s = 0; s < a.settings.size(); ++s) {
    CHECK(a.settings[s].ap == b.settings[s].ap);
    CHECK(a.settings[s].faces == b.settings[s].faces);
    for (int t = 0; t < kThresholdCount; ++t) {
      CHECK(a.settings[s].curve[t].detections == b.settings[s].curve[t].detections);
      CHECK(a.settings[s].curve[t].recalled == b.settings[s].curve[t].recalled);
    }
  }
}

}  // namespace

TEST_CASE("wider_eval: hand-computed AP on a tiny set") {
  for (Arithmetic a : kBoth) {
    CAPTURE(arithmetic_name(a));
    const EvalResult r = evaluate(hand_truth(), hand_predictions(), with(a));
    REQUIRE(r.settings.size() == 1);
    const SettingResult& s = r.setting("only");
    CHECK(r.images == 2);
    CHECK(r.detections == 6);
    CHECK(s.images == 2);
    CHECK(s.faces == 3);
    // 1e-12: AP is 1/3 + (2/3 - 1/3) / 2 in double arithmetic.
    CHECK(s.ap == doctest::Approx(0.5).epsilon(1e-12));
    REQUIRE(s.curve.size() == static_cast<size_t>(kThresholdCount));
    CHECK(s.curve.front().threshold == doctest::Approx(0.999));
    CHECK(s.curve.back().threshold == 0.0);
    // Only the 1.0 detection is above 0.999; at threshold 0 all six are in, the dropped one uncounted.
    CHECK(s.curve.front().detections == 1);
    CHECK(s.curve.front().recalled == 1);
    CHECK(s.curve.back().detections == 5);
    CHECK(s.curve.back().recalled == 2);
    CHECK(s.curve.back().precision == doctest::Approx(0.4));
    CHECK(s.curve.back().recall == doctest::Approx(2.0 / 3.0));
    // At threshold 0.649 (t = 351) the dropped 0.65 detection is in: still 3 counted, 1 recalled.
    CHECK(s.curve[350].detections == 3);
    CHECK(s.curve[350].recalled == 1);
    CHECK(r.warnings.empty());
    CHECK(summary_line(r) == "only 0.5000");
  }
}

TEST_CASE("wider_eval: shuffled prediction lines and an affine rescale of the scores give the same result") {
  const Scene scene = random_scene(7, 40);
  for (Arithmetic a : kBoth) {
    CAPTURE(arithmetic_name(a));
    const EvalResult base = evaluate(scene.truth, scene.predictions, with(a));
    CHECK(base.settings[0].ap > 0.2);
    CHECK(base.settings[1].ap > 0.2);
    Predictions shuffled = scene.predictions;
    std::mt19937_64 rng(99);
    for (auto& [id, dets] : shuffled) std::shuffle(dets.begin(), dets.end(), rng);
    check_same_result(base, evaluate(scene.truth, shuffled, with(a)));

    // min-max normalisation cancels a positive affine rescale exactly when every step is exact: scores on a 1/64
    // grid. MATLAB starts its running max/min at realmin/realmax('single'), so any such rescale is cancelled; the
    // Python ports start at max 0 / min 1, so there it holds only while the scores stay within [0, 1].
    Predictions grid = scene.predictions;
    for (auto& [id, dets] : grid)
      for (Detection& d : dets) d.score = std::floor(d.score * 64) / 64;
    const auto rescaled = [&](double scale, double shift) {
      Predictions out = grid;
      for (auto& [id, dets] : out)
        for (Detection& d : dets) d.score = scale * d.score + shift;
      return out;
    };
    const EvalResult on_grid = evaluate(scene.truth, grid, with(a));
    check_same_result(on_grid, evaluate(scene.truth, rescaled(0.5, 0.25), with(a)));
    const EvalResult shifted = evaluate(scene.truth, rescaled(3, 7), with(a));
    if (a == Arithmetic::matlab) {
      check_same_result(on_grid, shifted);
    } else {
      // min = 1 instead of 7 squeezes the scores into the top third of the thresholds.
      CHECK(shifted.settings[1].curve[300].detections != on_grid.settings[1].curve[300].detections);
    }
  }
}

TEST_CASE("wider_eval: ground truth as predictions gives AP 1, and an exact duplicate face costs one recall") {
  // Every face found with a random score and nothing else: precision 1 at every threshold, recall reaches 1.
  Scene scene = random_scene(3, 30);
  Predictions perfect;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  int64_t faces = 0;
  for (const GroundTruthImage& im : scene.truth.images) {
    for (const FaceBox& f : im.faces) perfect[im.id].push_back(at(f, u(rng)));
    faces += static_cast<int64_t>(im.faces.size());
  }
  for (Arithmetic a : kBoth) {
    CAPTURE(arithmetic_name(a));
    const EvalResult r = evaluate_all_faces({}, {}, with(a));  // no image: nothing scored, NaN, a warning
    CHECK(r.images == 0);
    CHECK(std::isnan(r.settings[0].ap));
    std::vector<ImageFaces> truth;
    for (const GroundTruthImage& im : scene.truth.images) truth.push_back({im.id, im.faces});
    const EvalResult all = evaluate_all_faces(truth, perfect, with(a));
    CHECK(all.settings[0].name == "all");
    CHECK(all.settings[0].faces == faces);
    // 1e-12: AP sums the recall steps, which add up to 1 up to rounding.
    CHECK(all.settings[0].ap == doctest::Approx(1.0).epsilon(1e-12));

    // WIDER val has one exactly duplicated face (WIDER_EVAL.md A.6): both detections match the first copy
    // (argmax takes the first maximum), so the second is a false positive and the second copy is never
    // recalled. With the duplicate's second detection scored lowest, precision is 1 up to recall (n-1)/n and
    // AP = (n-1)/n exactly; this is why ground truth as predictions gives 0.9999 and not 1 on WIDER val.
    std::vector<ImageFaces> with_duplicate = truth;
    Predictions dup_predictions = perfect;
    with_duplicate[0].faces.push_back(with_duplicate[0].faces[0]);
    dup_predictions[with_duplicate[0].id].push_back(at(with_duplicate[0].faces[0], -1.0));
    const EvalResult dup = evaluate_all_faces(with_duplicate, dup_predictions, with(a));
    const double n = static_cast<double>(faces + 1);
    // 1e-12: the sum of the VOC steps adds up to (n-1)/n in double arithmetic.
    CHECK(dup.settings[0].ap == doctest::Approx((n - 1) / n).epsilon(1e-12));
    CHECK(dup.settings[0].curve.back().recalled == faces);
    CHECK(dup.settings[0].curve.back().detections == faces + 1);
  }
}

TEST_CASE("wider_eval: constant scores give AP 0 and a warning") {
  Scene scene = random_scene(11, 12);
  for (auto& [id, dets] : scene.predictions)
    for (Detection& d : dets) d.score = 0.9;
  for (Arithmetic a : kBoth) {
    CAPTURE(arithmetic_name(a));
    const EvalResult r = evaluate(scene.truth, scene.predictions, with(a));
    for (const SettingResult& s : r.settings) {
      CHECK(s.ap == 0.0);
      CHECK(s.curve.back().detections == 0);  // NaN scores pass no threshold
    }
    REQUIRE(r.warnings.size() == 2);
    CHECK(r.warnings[0].find("are equal") != std::string::npos);
    CHECK(r.warnings[1].find("NaN") != std::string::npos);
    CHECK(summary_line(r) == "big 0.0000 all 0.0000");
  }

  // The MATLAB oddity: norm_score.m starts its maximum at realmin('single') > 0, so all-zero scores do not
  // divide by zero there (they normalise to 0, which passes the last threshold, 0.000); the Python ports start at
  // max = 0 and get NaN.
  for (auto& [id, dets] : scene.predictions)
    for (Detection& d : dets) d.score = 0.0;
  const EvalResult matlab = evaluate(scene.truth, scene.predictions, with(Arithmetic::matlab));
  CHECK(matlab.settings[1].ap > 0.0);
  CHECK(matlab.settings[1].curve.back().detections > 0);
  CHECK(matlab.settings[1].curve[kThresholdCount - 2].detections == 0);
  CHECK(std::any_of(matlab.warnings.begin(), matlab.warnings.end(),
                    [](const std::string& w) { return w.find("realmin") != std::string::npos; }));
  CHECK(evaluate(scene.truth, scene.predictions, with(Arithmetic::float64)).settings[1].ap == 0.0);
}

TEST_CASE("wider_eval: a detection matched to an ignored face is dropped even when it covers a kept face") {
  // F0 ignored, F1 counts and overlaps F0 at IoU 0.82; the detection is F0 exactly: its argmax is F0.
  GroundTruth gt;
  gt.settings = {"s"};
  gt.images.push_back({"e/a", {{0, 0, 20, 20}, {2, 0, 20, 20}}, {{1}}});
  Predictions p;
  p["e/a"] = {{0, 0, 20, 20, 0.9}, {500, 500, 10, 10, 0.1}};
  for (Arithmetic a : kBoth) {
    CAPTURE(arithmetic_name(a));
    const SettingResult s = evaluate(gt, p, with(a)).settings[0];
    CHECK(s.faces == 1);
    CHECK(s.curve.back().detections == 1);  // the false positive only
    CHECK(s.curve.back().recalled == 0);
    CHECK(s.ap == 0.0);
  }
  // Counted in another setting, the same detection recalls F0 instead.
  gt.images[0].keep = {{0, 1}};
  const SettingResult s = evaluate(gt, p).settings[0];
  CHECK(s.curve.back().recalled == 1);
  CHECK(s.curve.back().detections == 2);
}

TEST_CASE("wider_eval: MATLAB arithmetic rounds the IoU to an integer and takes the first face at or above 0.5") {
  // F0 (0,0,10,10) ignored, F1 (1,0,10,10) counts; the detection is F1 exactly. In double arithmetic its IoU is
  // 1 with F1 and 110/132 = 0.83 with F0, so it recalls F1. In MATLAB's int32 arithmetic both IoUs round to 1 and
  // max() returns the first, F0, an ignored face: the detection is dropped (WIDER_EVAL.md A.8).
  GroundTruth gt;
  gt.settings = {"s"};
  gt.images.push_back({"e/a", {{0, 0, 10, 10}, {1, 0, 10, 10}}, {{1}}});
  Predictions p;
  p["e/a"] = {{1, 0, 10, 10, 0.9}, {300, 300, 10, 10, 0.2}};
  const SettingResult f = evaluate(gt, p, with(Arithmetic::float64)).settings[0];
  CHECK(f.curve.back().recalled == 1);
  CHECK(f.ap == doctest::Approx(1.0));
  const SettingResult m = evaluate(gt, p, with(Arithmetic::matlab)).settings[0];
  CHECK(m.curve.back().recalled == 0);
  CHECK(m.curve.back().detections == 1);
  CHECK(m.ap == 0.0);

  // Rounded coordinates. Face (0,0,10,10) has corners 0..10, area 11*11 = 121 with the +1 convention.
  // Detection x = 3.5, w = 10 (corners 3.5..13.5): double IoU = 7.5*11 / (121 + 121 - 82.5) = 0.517, a match;
  // int32 rounds 3.5 to 4 (half away from zero): inter 7*11 = 77, union 242 - 77 = 165, 0.467 rounds to 0: no match.
  // (A second, far-away detection keeps the scores from being constant.)
  gt.images[0] = {"e/a", {{0, 0, 10, 10}}, {{0}}};
  p["e/a"] = {{3.5, 0, 10, 10, 0.9}, {300, 300, 10, 10, 0.2}};
  CHECK(evaluate(gt, p, with(Arithmetic::float64)).settings[0].curve.back().recalled == 1);
  CHECK(evaluate(gt, p, with(Arithmetic::matlab)).settings[0].curve.back().recalled == 0);
  // x = 2.4 rounds to 2: inter 9*11 = 99, union 242 - 99 = 143, 0.69 rounds to 1; double IoU 0.64: both match.
  p["e/a"] = {{2.4, 0, 10, 10, 0.9}, {300, 300, 10, 10, 0.2}};
  CHECK(evaluate(gt, p, with(Arithmetic::float64)).settings[0].curve.back().recalled == 1);
  CHECK(evaluate(gt, p, with(Arithmetic::matlab)).settings[0].curve.back().recalled == 1);
}

TEST_CASE("wider_eval: only images with predictions are scored unless all_images is set") {
  GroundTruth gt = hand_truth();
  gt.images.push_back({"ev/c", {{0, 0, 30, 30}, {50, 0, 30, 30}}, {{0, 1}}});
  const Predictions p = hand_predictions();  // nothing for ev/c
  const EvalResult slice = evaluate(gt, p);
  CHECK(slice.images == 2);
  CHECK(slice.settings[0].faces == 3);
  CHECK(slice.settings[0].ap == doctest::Approx(0.5));
  // Official: ev/c is scored with no detections, its two faces join the recall denominator (5 faces):
  // (recall, precision) = (1/5, 1) ... (2/5, 1/2) ...: AP = 1/5 + 1/5 * 1/2 = 0.3.
  const EvalResult all = evaluate(gt, p, with(Arithmetic::matlab, true));
  CHECK(all.images == 3);
  CHECK(all.settings[0].faces == 5);
  CHECK(all.settings[0].ap == doctest::Approx(0.3).epsilon(1e-12));
  // Entries that name no ground-truth image are ignored with a warning.
  Predictions stray = p;
  stray["other/x"] = {{0, 0, 10, 10, 0.5}};
  const EvalResult r = evaluate(gt, stray);
  check_same_result(slice, r);
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].find("other/x") != std::string::npos);
}

TEST_CASE("wider_eval: zero-face images and settings without faces") {
  // A zero-face image is skipped with its detections (evaluation.m: isempty(gt_bbx) -> continue), so its
  // detections are not false positives; they still take part in the global score normalisation.
  GroundTruth gt = hand_truth();
  gt.images.push_back({"ev/empty", {}, {{}}});
  Predictions p = hand_predictions();
  p["ev/empty"] = {{0, 0, 50, 50, 0.95}, {60, 0, 50, 50, 0.75}};
  const EvalResult r = evaluate(gt, p);
  CHECK(r.images == 3);
  CHECK(r.settings[0].faces == 3);
  CHECK(r.settings[0].ap == doctest::Approx(0.5));
  CHECK(r.settings[0].curve.back().detections == 5);

  // A face-less setting: recall is 0/0 and AP NaN, as in MATLAB; summary prints "nan", JSON null.
  GroundTruth none = hand_truth();
  none.settings = {"only", "none"};
  for (GroundTruthImage& im : none.images) im.keep.push_back({});
  const EvalResult n = evaluate(none, hand_predictions());
  CHECK(n.settings[0].ap == doctest::Approx(0.5));
  CHECK(n.settings[1].faces == 0);
  CHECK(std::isnan(n.settings[1].ap));
  CHECK(summary_line(n) == "only 0.5000 none nan");
  REQUIRE(n.warnings.size() == 1);
  CHECK(n.warnings[0].find("setting none") != std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(summary_json(n, {}));
  CHECK(j["settings"][1]["ap"].is_null());
  CHECK(j["settings"][0]["ap"].get<double>() == doctest::Approx(0.5));
  // The detections of an image whose faces all are ignored in a setting are dropped when they hit a face.
  GroundTruth ignored = hand_truth();
  ignored.images[1].keep = {{}};
  const SettingResult s = evaluate(ignored, hand_predictions()).settings[0];
  CHECK(s.faces == 2);
  CHECK(s.curve.back().detections == 4);  // the 0.6 detection on F3 is dropped
}

TEST_CASE("wider_eval: bad ground truth, detections and names raise errors") {
  GroundTruth gt = hand_truth();
  gt.images[0].keep = {{0, 3}};
  CHECK_THROWS_WITH_AS(evaluate(gt, {}), doctest::Contains("keep index 3 is outside its 3 faces"), Error);
  gt = hand_truth();
  gt.images[0].keep = {{1, 1}};
  CHECK_THROWS_WITH_AS(evaluate(gt, {}), doctest::Contains("face 1 is listed twice"), Error);
  gt = hand_truth();
  gt.images[1].id = "ev/a";
  CHECK_THROWS_WITH_AS(evaluate(gt, {}), doctest::Contains("'ev/a' appears twice"), Error);
  gt = hand_truth();
  gt.images[1].keep.push_back({});
  CHECK_THROWS_WITH_AS(evaluate(gt, {}), doctest::Contains("has 2 keep lists for 1 settings"), Error);
  gt = hand_truth();
  gt.images[1].faces[0].w = std::nan("");
  CHECK_THROWS_WITH_AS(evaluate(gt, {}), doctest::Contains("'ev/b' face 0 has a non-finite"), Error);
  gt.settings.clear();
  CHECK_THROWS_WITH_AS(evaluate(gt, {}), doctest::Contains("names no setting"), Error);
  Predictions p = hand_predictions();
  p["ev/b"][1].score = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(evaluate(hand_truth(), p), doctest::Contains("'ev/b' detection 1 has a non-finite"), Error);
  CHECK_THROWS_WITH_AS(evaluate(hand_truth(), hand_predictions()).setting("hard"),
                       doctest::Contains("no setting 'hard'"), Error);
  CHECK_THROWS_WITH_AS(restrict_to_events(hand_truth(), {"ev", "nope"}), doctest::Contains("unknown event 'nope'"),
                       Error);
  GroundTruth two = hand_truth();
  two.images.push_back({"other/x", {{0, 0, 5, 5}}, {{0}}});
  const GroundTruth only_ev = restrict_to_events(two, {"ev"});
  REQUIRE(only_ev.images.size() == 2);
  CHECK(only_ev.images[1].id == "ev/b");
}

TEST_CASE("wider_eval: prediction files and folders") {
  test::TempDir dir("isrn_wider_pred");
  const std::string good = dir.file("ev/img_1.txt");
  // CRLF line ends, trailing spaces (RetinaFace's writer), a '+' sign, an exponent, trailing blank lines.
  write_text(good, "img_1\r\n2\r\n1 2 3 4 0.5 \r\n+10.5\t20 3e1 40 -0.25\r\n\r\n\n");
  const PredictionFile f = read_prediction_file(good);
  CHECK(f.name == "img_1");
  REQUIRE(f.detections.size() == 2);
  CHECK(f.detections[0].x == 1);
  CHECK(f.detections[0].score == 0.5);
  CHECK(f.detections[1].x == 10.5);
  CHECK(f.detections[1].w == 30);
  CHECK(f.detections[1].score == -0.25);
  write_text(dir.file("ev/img_2.txt"), "img_2.jpg\n0\n");
  CHECK(read_prediction_file(dir.file("ev/img_2.txt")).detections.empty());

  const std::pair<std::string, std::string> bad[] = {
      {"", "bad.txt:1: expected the image name"},
      {"name\n", "bad.txt:2: expected the number of boxes, found the end"},
      {"name\nthree\n", "bad.txt:2: expected the number of boxes (an integer >= 0), found 'three'"},
      {"name\n-1\n", "bad.txt:2: expected the number of boxes"},
      {"name\n2.0\n", "bad.txt:2: expected the number of boxes"},
      {"name\n2\n1 2 3 4 0.5\n", "bad.txt:4: expected box 2 of the 2 announced on line 2"},
      {"name\n1\n1 2 3 4 0.5\n5 6 7 8 0.1\n", "bad.txt:4: line 2 announces 1 boxes, but more lines follow"},
      {"name\n1\n1 2 3 0.5\n", "bad.txt:3: expected 5 numbers (x y w h score), found 4 fields"},
      {"name\n1\n1 2 3 4 0.5 7\n", "found 6 fields"},
      {"name\n1\n1 2 x 4 0.5\n", "bad.txt:3: 'x' is not a number"},
      {"name\n1\n1 2 3 4 0.5.1\n", "'0.5.1' is not a number"},
      {"name\n1\n1 2 3 4 nan\n", "bad.txt:3: non-finite value 'nan'"},
      {"name\n2\n1 2 3 4 0.5\n\n1 2 3 4 0.5\n", "bad.txt:4: expected 5 numbers"},
  };
  for (const auto& [text, message] : bad) {
    CAPTURE(text);
    write_text(dir.file("bad.txt"), text);
    CHECK_THROWS_WITH_AS(read_prediction_file(dir.file("bad.txt")), doctest::Contains(message.c_str()), Error);
  }
  CHECK_THROWS_WITH_AS(read_prediction_file(dir.file("absent.txt")), doctest::Contains("absent.txt"), Error);

  // The folder: <event>/<name>.txt; a stray top-level file, a non-.txt file and a file whose first line names
  // another image are reported; bad.txt at the top level is skipped, not parsed.
  write_text(dir.file("ev2/img_3.txt"), "other_name\n1\n5 5 10 10 0.7\n");
  write_text(dir.file("ev2/notes.md"), "not a prediction\n");
  const PredictionFolder folder = read_prediction_folder(dir.path.string());
  REQUIRE(folder.predictions.size() == 3);
  CHECK(folder.predictions.count("ev/img_1"));
  CHECK(folder.predictions.count("ev/img_2"));
  CHECK(folder.predictions.at("ev2/img_3").size() == 1);
  REQUIRE(folder.warnings.size() == 2);
  CHECK(folder.warnings[0].find("2 entries") != std::string::npos);
  CHECK(folder.warnings[1].find("names 'other_name'") != std::string::npos);
  write_text(dir.file("ev3/broken.txt"), "broken\n1\n");
  CHECK_THROWS_WITH_AS(read_prediction_folder(dir.path.string()), doctest::Contains("broken.txt:3"), Error);
  CHECK_THROWS_WITH_AS(read_prediction_folder(dir.file("nowhere")), doctest::Contains("nowhere: not a folder"),
                       Error);
}

TEST_CASE("wider_eval: PR curves as CSV and SVG, summary as JSON") {
  const Scene scene = random_scene(21, 20);
  const EvalResult r = evaluate(scene.truth, scene.predictions);
  test::TempDir dir("isrn_wider_report");
  write_pr_curve_csv(r, dir.file("pr.csv"));
  write_pr_curve_svg(r, dir.file("pr.svg"), "a <title> & more");
  write_summary_json(r, with(Arithmetic::float64, true), dir.file("summary.json"));

  std::ifstream csv(dir.file("pr.csv"));
  std::string line;
  REQUIRE(std::getline(csv, line));
  CHECK(line == "setting,threshold,detections,recalled,precision,recall");
  size_t rows = 0;
  while (std::getline(csv, line)) {
    const size_t s = rows / kThresholdCount, t = rows % kThresholdCount;
    REQUIRE(s < r.settings.size());
    const PrPoint& p = r.settings[s].curve[t];
    char name[32];
    double threshold = 0, precision = 0, recall = 0;
    long long detections = 0, recalled = 0;
    std::replace(line.begin(), line.end(), ',', ' ');
    REQUIRE(std::sscanf(line.c_str(), "%31s %lf %lld %lld %lf %lf", name, &threshold, &detections, &recalled,
                        &precision, &recall) == 6);
    CHECK(std::string(name) == r.settings[s].name);
    CHECK(threshold == doctest::Approx(p.threshold));
    CHECK(detections == p.detections);
    CHECK(recalled == p.recalled);
    // %.10g in the file: 1e-9 relative.
    if (std::isnan(p.precision)) {
      CHECK(std::isnan(precision));
    } else {
      CHECK(precision == doctest::Approx(p.precision).epsilon(1e-9));
    }
    CHECK(recall == doctest::Approx(p.recall).epsilon(1e-9));
    ++rows;
  }
  CHECK(rows == r.settings.size() * kThresholdCount);

  std::ifstream svg_in(dir.file("pr.svg"));
  const std::string svg((std::istreambuf_iterator<char>(svg_in)), std::istreambuf_iterator<char>());
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++polylines;
  CHECK(polylines == r.settings.size());
  char legend[64];
  std::snprintf(legend, sizeof legend, "big AP %.4f", r.settings[0].ap);
  CHECK(svg.find(legend) != std::string::npos);
  CHECK(svg.find("a &lt;title&gt; &amp; more") != std::string::npos);

  std::ifstream json_in(dir.file("summary.json"));
  const nlohmann::json j = nlohmann::json::parse(json_in);
  CHECK(j["arithmetic"] == "float64");
  CHECK(j["all_images"] == true);
  CHECK(j["images"] == r.images);
  REQUIRE(j["settings"].size() == 2);
  CHECK(j["settings"][1]["name"] == "all");
  CHECK(j["settings"][1]["ap"].get<double>() == r.settings[1].ap);
  CHECK(j["settings"][1]["faces"] == r.settings[1].faces);
  CHECK_THROWS_WITH_AS(write_pr_curve_csv(r, dir.file("no/such/folder/pr.csv")), doctest::Contains("pr.csv"), Error);
}
