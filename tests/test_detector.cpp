// The ISRN detector (SPEC §1, Decisions table): forward shapes against an independently computed
// anchor count, the initial face probability, the loss and its gradient reaching every parameter,
// detection bounds, the JSON config (defaults, round trip, typos) and safetensors checkpoints.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "isrn/autograd/grad_mode.hpp"
#include "isrn/models/isrn.hpp"
#include "isrn/ops/reduce.hpp"
#include "test_util.hpp"

using namespace isrn;

namespace {

Tensor images_on(Device d, int64_t batch, int64_t h, int64_t w, uint64_t seed) {
  return test::random({batch, 3, h, w}, seed, -2.0, 2.0, DType::Float32).to(d);
}

// Σ over strides 4..128 of ceil(H/s)·ceil(W/s) locations, 2 anchors each: the halvings of a
// stride-2 conv with padding 1 round up.
int64_t expected_anchor_count(int64_t h, int64_t w) {
  int64_t total = 0;
  for (int64_t s = 4; s <= 128; s *= 2) total += ((h + s - 1) / s) * ((w + s - 1) / s) * 2;
  return total;
}

void randomize(nn::Module& m, uint64_t seed) {
  Generator gen(seed);
  for (auto& p : m.named_parameters_with_roles()) nn::init::normal_(p.tensor, gen, 0.0, 0.1);
}

}  // namespace

TEST_CASE("detector: forward shapes follow the anchors for each image size") {
  for (Device d : test::devices()) {
    Generator gen(1);
    models::Detector det(test::tiny_detector_config(), gen);
    det.to(d);
    for (auto [h, w] : {std::pair<int64_t, int64_t>{64, 48}, {96, 96}}) {
      CAPTURE(d);
      CAPTURE(h);
      CAPTURE(w);
      const Tensor x = images_on(d, 2, h, w, 7);
      const models::DetectorOutput out = det.forward(x);
      const int64_t a = expected_anchor_count(h, w);
      CHECK(out.anchors.size() == a);
      CHECK(out.anchors.boxes.device() == d);
      CHECK(out.step1_logits.shape() == Shape{2, a});
      CHECK(out.step2_logits.shape() == Shape{2, a});
      CHECK(out.step1_deltas.shape() == Shape{2, a, 4});
      CHECK(out.step2_deltas.shape() == Shape{2, a, 4});
      // The cache hands back the same anchors for the same (H, W, device), not a regenerated copy.
      const models::AnchorSet* first = &det.anchors_for(h, w, d);
      CHECK(first == &det.anchors_for(h, w, d));
      CHECK(first != &det.anchors_for(h + 4, w, d));
    }
    CHECK_THROWS_WITH_AS(det.forward(images_on(d, 1, 32, 32, 1).select(1, 0)), doctest::Contains("[detector]"),
                         Error);
  }
  // Children sit under the dotted prefixes the checkpoints rely on.
  models::Detector det(test::tiny_detector_config());
  int prefixes[4] = {0, 0, 0, 0};
  const char* names[4] = {"backbone.", "first_step.", "fpn.", "head."};
  for (auto& [name, t] : det.named_parameters())
    for (int i = 0; i < 4; ++i) prefixes[i] += name.rfind(names[i], 0) == 0;
  for (int i = 0; i < 4; ++i) CHECK_MESSAGE(prefixes[i] > 0, names[i]);
}

TEST_CASE("detector: the initial mean face probability is about 0.01 in both steps") {
  for (Device d : test::devices()) {
    Generator gen(2);
    models::Detector det(test::tiny_detector_config(), gen);
    det.to(d);
    const models::DetectorOutput out = det.forward(images_on(d, 2, 64, 48, 3));
    for (const Tensor& logits : {out.step1_logits, out.step2_logits}) {
      const double p = test::values(isrn::mean(sigmoid(logits)))[0];
      CAPTURE(p);
      // 1e-3: the N(0, 0.01) predictor weights over 16 GN-ReLU channels move the mean probability by
      // ~2e-4 (see the fpn_head case); a wrong prior (0.5, 0.99) or π = 0.02 would fail it.
      CHECK(std::abs(p - 0.01) < 1e-3);
    }
  }
}

TEST_CASE("detector: the loss is finite and its gradient reaches every parameter, with an image without faces") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Generator gen(3);
    models::Detector det(test::tiny_detector_config(), gen);
    det.to(d);
    const Tensor x = images_on(d, 2, 96, 96, 4);
    // A small and a large face in image 0 (the large one, 80x94, matches the 81x101 stride-32
    // anchors, a positive on the STR levels 5–7, so the step-1 regression reaches the first-step
    // convs of those levels); none in image 1.
    const std::vector<Tensor> gt{
        from_vector<float>({10, 8, 26, 28, 8, 1, 88, 95}, Shape{2, 4}, d),
        from_vector<float>({}, Shape{0, 4}, d)};
    const models::DetectionLoss loss = det.loss(x, gt);
    for (const Tensor& term : {loss.stc_cls1, loss.stc_cls2, loss.str_reg1, loss.str_reg2, loss.total}) {
      const double v = test::values(term)[0];
      CHECK(std::isfinite(v));
      CHECK(v >= 0.0);
    }
    CHECK(loss.num_pos1_cls > 0);
    CHECK(loss.num_pos1_reg > 0);
    CHECK(loss.num_pos2 > 0);
    // The focal loss over all the negatives at p ≈ 0.01 is far from zero; a term silently zeroed fails.
    CHECK(test::values(loss.stc_cls1)[0] > 1e-3);
    det.zero_grad();
    loss.total.backward();
    int64_t without_grad = 0;
    for (auto& [name, p] : det.named_parameters()) {
      const Tensor g = p.grad();
      if (!g.defined()) {
        ++without_grad;
        MESSAGE("no gradient: ", name);
        continue;
      }
      CHECK(g.shape() == p.shape());
      for (double v : test::values(g)) REQUIRE(std::isfinite(v));
    }
    CHECK(without_grad == 0);
  }
  models::Detector det(test::tiny_detector_config());
  CHECK_THROWS_WITH_AS(det.loss(images_on(Device::cpu(), 2, 32, 32, 1), {}), doctest::Contains("one ground-truth"),
                       Error);
}

TEST_CASE("detector: detect keeps at most `keep` boxes, sorted, near the anchors, without a graph") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    models::DetectorConfig c = test::tiny_detector_config();
    c.infer.keep_top_n = 5;
    c.infer.pre_nms_top_n = 40;
    Generator gen(4);
    models::Detector det(c, gen);
    det.to(d);
    det.train();
    const Tensor x = images_on(d, 3, 96, 96, 5);
    const std::vector<models::Detections> dets = det.detect(x);
    CHECK(det.is_training());  // detect restores the mode it found
    REQUIRE(dets.size() == 3);
    const models::AnchorSet& anchors = det.anchors_for(96, 96, d);
    const std::vector<double> a = test::values(anchors.boxes);
    double lo = 1e30, hi = -1e30;
    for (double v : a) lo = std::min(lo, v), hi = std::max(hi, v);
    const double margin = hi - lo;  // the initial deltas are tiny; a box outside this is a decoding bug
    for (const auto& det_i : dets) {
      const int64_t k = det_i.scores.defined() ? det_i.scores.size(0) : 0;
      CHECK(k <= 5);
      CHECK(k > 0);  // θ = 0.01 against p ≈ 0.01 still passes about half the anchors
      CHECK_FALSE(det_i.scores.requires_grad());
      CHECK(det_i.boxes.shape() == Shape{k, 4});
      const std::vector<double> s = test::values(det_i.scores), b = test::values(det_i.boxes);
      for (int64_t j = 0; j < k; ++j) {
        CHECK(s[j] > 0.0);
        CHECK(s[j] < 1.0);
        if (j > 0) CHECK(s[j] <= s[j - 1]);
        CHECK(b[4 * j + 2] > b[4 * j]);
        CHECK(b[4 * j + 3] > b[4 * j + 1]);
        for (int c2 = 0; c2 < 4; ++c2) {
          CHECK(std::isfinite(b[4 * j + c2]));
          CHECK(b[4 * j + c2] >= lo - margin);
          CHECK(b[4 * j + c2] <= hi + margin);
        }
      }
    }
  }
}

TEST_CASE("detector config: SPEC defaults, JSON round trip, typos rejected by name") {
  const models::DetectorConfig def = models::DetectorConfig::from_json(io::JsonConfig::parse("{}"));
  CHECK(def.backbone.depth == 50);
  CHECK(def.backbone.width_mult == 1.0);
  CHECK(def.backbone.stem == models::Stem::isrn);
  CHECK(def.backbone.norm.enabled());
  CHECK(def.backbone.norm.groups == 16);
  CHECK(def.fpn.upsample == ResizeMode::Bilinear);
  CHECK(def.fpn.p6_from == models::P6Source::lateral);
  CHECK(def.head.channels == 256);
  CHECK(def.head.num_anchors == 2);
  CHECK_FALSE(def.head.separate_step1_predictors);
  CHECK(def.loss.targets.match.step1.negative_below == 0.3);
  CHECK(def.loss.targets.match.step1.positive_at_least == 0.7);
  CHECK(def.loss.targets.match.step2.negative_below == 0.4);
  CHECK(def.loss.targets.match.step2.positive_at_least == 0.5);
  CHECK(def.loss.targets.stc_theta == 0.01);
  CHECK(def.loss.focal_alpha == 0.25);
  CHECK(def.loss.focal_gamma == 2.0);
  CHECK(def.loss.smooth_l1_beta == 1.0 / 9.0);
  CHECK(def.infer.stc_theta == 0.01);
  CHECK(def.infer.pre_nms_top_n == 2000);
  CHECK(def.infer.nms_iou == 0.4);
  CHECK(def.infer.keep_top_n == 750);
  CHECK(models::same_config(def, models::DetectorConfig{}.resolved()));

  const std::string text = R"({
    "model": {"backbone": {"depth": 18, "width_mult": 0.0625, "stem": "resnet"}, "norm": "none",
              "fpn": {"upsample": "nearest", "p6_from": "p5"}, "head": {"separate_step1_predictors": true}},
    "anchors": {"plus_one_corners": false},
    "match": {"step1": {"neg": 0.25, "pos": 0.65}, "step2": {"neg": 0.35, "pos": 0.55}},
    "stc": {"theta": 0.02}, "loss": {"alpha": 0.3, "gamma": 1.5, "smooth_l1_beta": 0.2},
    "infer": {"theta": 0.03, "top_k": 100, "nms": 0.45, "keep": 10}})";
  const models::DetectorConfig c = models::DetectorConfig::from_json(io::JsonConfig::parse(text));
  CHECK(c.backbone.depth == 18);
  CHECK(c.backbone.width_mult == 0.0625);
  CHECK(c.backbone.stem == models::Stem::resnet);
  CHECK_FALSE(c.backbone.norm.enabled());
  CHECK_FALSE(c.head.norm.enabled());  // derived: one norm switch for every part
  CHECK(c.head.channels == 16);        // derived from the width
  CHECK(c.fpn.upsample == ResizeMode::Nearest);
  CHECK(c.fpn.p6_from == models::P6Source::p5);
  CHECK(c.head.separate_step1_predictors);
  CHECK_FALSE(c.anchors.plus_one_corners);
  CHECK(c.loss.targets.match.step1.negative_below == 0.25);
  CHECK(c.loss.targets.match.step1.positive_at_least == 0.65);
  CHECK(c.loss.targets.match.step2.negative_below == 0.35);
  CHECK(c.loss.targets.match.step2.positive_at_least == 0.55);
  CHECK(c.loss.targets.stc_theta == 0.02);
  CHECK(c.loss.focal_alpha == 0.3);
  CHECK(c.loss.focal_gamma == 1.5);
  CHECK(c.loss.smooth_l1_beta == 0.2);
  CHECK(c.infer.stc_theta == 0.03);
  CHECK(c.infer.pre_nms_top_n == 100);
  CHECK(c.infer.nms_iou == 0.45);
  CHECK(c.infer.keep_top_n == 10);
  CHECK_FALSE(models::same_config(c, def));

  for (const models::DetectorConfig& original : {def, c}) {
    const std::string json = original.to_json();
    CAPTURE(json);
    const models::DetectorConfig back = models::DetectorConfig::from_json(io::JsonConfig::parse(json));
    CHECK(models::same_config(back, original));
    CHECK(back.to_json() == json);
  }
  // 1/9 and 0.1 have no short exact decimal: the text must still read back to the same double.
  CHECK(models::DetectorConfig::from_json(io::JsonConfig::parse(def.to_json())).loss.smooth_l1_beta == 1.0 / 9.0);

  CHECK_THROWS_WITH_AS(models::DetectorConfig::from_json(io::JsonConfig::parse(R"({"model": {"backbone": {"dpeth": 18}}})")),
                       doctest::Contains("model.backbone.dpeth"), Error);
  CHECK_THROWS_WITH_AS(models::DetectorConfig::from_json(io::JsonConfig::parse(R"({"infer": {"keep": 5, "nsm": 0.3}})")),
                       doctest::Contains("infer.nsm"), Error);
  CHECK_THROWS_WITH_AS(models::DetectorConfig::from_json(io::JsonConfig::parse(R"({"model": {"fpn": {"upsample": "bicubic"}}})")),
                       doctest::Contains("model.fpn.upsample"), Error);
  CHECK_THROWS_WITH_AS(models::DetectorConfig::from_json(io::JsonConfig::parse(R"({"infer": {"keep": "many"}})")),
                       doctest::Contains("infer.keep"), Error);
  // Numbers out of range are refused when read, naming the key and the range (the fuzzer's configs reached
  // model construction with a width of 1e9, and 2^32 + 18 read as depth 18).
  const std::vector<std::pair<std::string, std::string>> out_of_range = {
      {R"({"model": {"backbone": {"depth": 4294967314}}})", "'model.backbone.depth' must be 18, 34 or 50, got 4294967314"},
      {R"({"model": {"backbone": {"width_mult": 1e9}}})", "'model.backbone.width_mult' must be in (0, 16]"},
      {R"({"model": {"backbone": {"width_mult": 0}}})", "'model.backbone.width_mult' must be in (0, 16]"},
      {R"({"model": {"head": {"prior": 1}}})", "'model.head.prior' must be in (0, 1)"},
      {R"({"anchors": {"scales": []}})", "'anchors.scales' must list at least one scale"},
      {R"({"anchors": {"scales": [1, -2]}})", "'anchors.scales' must be finite and positive, got -2"},
      {R"({"anchors": {"ratio": 0}})", "'anchors.ratio' must be finite and positive"},
      {R"({"match": {"step2": {"neg": 0.8, "pos": 0.7}}})", "'match.step2.neg' must be at most its 'pos', got 0.8"},
      {R"({"match": {"step1": {"pos": 1.5}}})", "'match.step1.pos' must be in [0, 1], got 1.5"},
      {R"({"stc": {"theta": -0.1}})", "'stc.theta' must be in [0, 1]"},
      {R"({"infer": {"theta": 2}})", "'infer.theta' must be in [0, 1]"},
      {R"({"loss": {"alpha": 1.1}})", "'loss.alpha' must be in [0, 1]"},
      {R"({"loss": {"gamma": -1}})", "'loss.gamma' must be finite and non-negative"},
      {R"({"loss": {"smooth_l1_beta": -0.5}})", "'loss.smooth_l1_beta' must be finite and non-negative"},
      {R"({"infer": {"score_threshold": 1.01}})", "'infer.score_threshold' must be in [0, 1]"},
      {R"({"infer": {"nms": -0.2}})", "'infer.nms' must be in [0, 1]"},
      {R"({"infer": {"top_k": -1}})", "'infer.top_k' must be non-negative"},
      {R"({"infer": {"keep": -3}})", "'infer.keep' must be non-negative"},
  };
  for (const auto& [text, message] : out_of_range) {
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(models::DetectorConfig::from_json(io::JsonConfig::parse(text)),
                         doctest::Contains(message.c_str()), Error);
  }
  // The edges of each range are accepted.
  CHECK_NOTHROW(models::DetectorConfig::from_json(io::JsonConfig::parse(
      R"({"model": {"backbone": {"width_mult": 16}}, "match": {"step1": {"neg": 0.5, "pos": 0.5}},
          "stc": {"theta": 0}, "infer": {"theta": 1, "nms": 1, "score_threshold": 0, "top_k": 0, "keep": 0},
          "loss": {"alpha": 0, "gamma": 0, "smooth_l1_beta": 0}})")));
}

TEST_CASE("detector checkpoint: save → load_detector gives a bit-identical forward; partial loads report") {
  test::TempDir dir("isrn_detector");
  models::DetectorConfig c = test::tiny_detector_config();
  c.fpn.upsample = ResizeMode::Nearest;  // a non-default setting that must travel in the metadata
  c.infer.keep_top_n = 17;
  Generator gen(5);
  models::Detector det(c, gen);
  randomize(det, 55);  // non-zero biases too, so a model that skipped loading cannot match
  const std::string path = dir.file("det.safetensors");
  models::save_checkpoint(path, det);

  std::unique_ptr<models::Detector> loaded = models::load_detector(path);
  CHECK(models::same_config(loaded->config(), det.config()));
  CHECK(loaded->config().fpn.upsample == ResizeMode::Nearest);
  const Tensor x = images_on(Device::cpu(), 1, 64, 48, 6);
  const models::DetectorOutput a = det.forward(x), b = loaded->forward(x);
  CHECK(test::values(a.step1_logits) == test::values(b.step1_logits));
  CHECK(test::values(a.step2_logits) == test::values(b.step2_logits));
  CHECK(test::values(a.step1_deltas) == test::values(b.step1_deltas));
  CHECK(test::values(a.step2_deltas) == test::values(b.step2_deltas));
  // A freshly built model of the same config differs: the equality above is the loading's doing.
  models::Detector fresh(c);
  CHECK(test::values(fresh.forward(x).step2_logits) != test::values(a.step2_logits));
  CHECK(models::load_weights(path, fresh, true).ok());
  CHECK(test::values(fresh.forward(x).step2_logits) == test::values(a.step2_logits));

  // One model more (separate step-1 predictors): the file lacks them.
  models::DetectorConfig more = c;
  more.head.separate_step1_predictors = true;
  models::Detector bigger(more);
  const io::LoadReport missing = models::load_weights(path, bigger, false);
  CHECK(missing.unexpected.empty());
  CHECK(missing.missing.size() == 4);
  CHECK(std::find(missing.missing.begin(), missing.missing.end(), "head.cls_pred_step1.weight") !=
        missing.missing.end());
  CHECK_THROWS_WITH_AS(models::load_weights(path, bigger, true), doctest::Contains("head.cls_pred_step1"), Error);
  // The other way round: the file has tensors the model does not ask for.
  const std::string bigger_path = dir.file("bigger.safetensors");
  models::save_checkpoint(bigger_path, bigger);
  const io::LoadReport unexpected = models::load_weights(bigger_path, det, false);
  CHECK(unexpected.missing.empty());
  CHECK(unexpected.unexpected.size() == 4);

  // Foreign files and future versions are refused, naming the file.
  const std::string foreign = dir.file("foreign.safetensors");
  io::save_safetensors(foreign, det.state_dict(), {{"format", "something-else"}, {"format_version", "1"}});
  CHECK_THROWS_WITH_AS(models::load_detector(foreign), doctest::Contains(foreign.c_str()), Error);
  const std::string future = dir.file("future.safetensors");
  io::save_safetensors(future, det.state_dict(),
                       {{"format", "isrn-detector"}, {"format_version", "2"}, {"config", c.to_json()}});
  CHECK_THROWS_WITH_AS(models::load_weights(future, det, false), doctest::Contains("format_version"), Error);
  CHECK_THROWS_WITH_AS(models::load_detector(future), doctest::Contains(future.c_str()), Error);
}

TEST_CASE("detector: parameter count of the paper config (ResNet-50 layout, width 1)") {
  const auto start = std::chrono::steady_clock::now();
  Generator gen(6);
  models::Detector det(models::DetectorConfig{}, gen);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t total = det.num_parameters();
  const int64_t parts = det.backbone->num_parameters() + det.first_step->num_parameters() +
                        det.fpn->num_parameters() + det.head->num_parameters();
  MESSAGE("ISRN paper config: ", total, " parameters (backbone ", det.backbone->num_parameters(), ", first step ",
          det.first_step->num_parameters(), ", fpn ", det.fpn->num_parameters(), ", head ",
          det.head->num_parameters(), "), built in ", seconds, " s");
  CHECK(total == parts);
  // The head is shared by both steps: a second copy would add its count again.
  CHECK(det.head->num_parameters() < total / 4);
  // Rough bounds by hand: the ResNet-50 body ≈ 23.5M, its C6 conv (3x3, 2048 → 1024) ≈ 18.9M and
  // C7 (3x3, 1024 → 256) ≈ 2.4M, FPN ≈ 4.5M, first step ≈ 1.3M, shared head ≈ 2.8M: ≈ 53M. A ResNet-18
  // body, a half width or a head per step would leave this window.
  CHECK(total > 50'000'000);
  CHECK(total < 57'000'000);
}

TEST_CASE("detector: 1,200 faces in one image (WIDER's crowds): finite loss terms, positives in both steps") {
  // WIDER FACE train holds images with more than 1,000 faces; the anchor matching runs over them in chunks.
  Generator gen(21);
  std::vector<float> faces;
  for (int i = 0; i < 1200; ++i) {
    const double s = 8 + gen.uniform() * 12, x = gen.uniform() * (256 - s), y = gen.uniform() * (256 - s);
    faces.insert(faces.end(), {static_cast<float>(x), static_cast<float>(y), static_cast<float>(x + s * 0.8),
                               static_cast<float>(y + s)});
  }
  for (Device d : test::devices()) {
    CAPTURE(d);
    Generator init(22);
    models::Detector det(test::tiny_detector_config(), init);
    det.to(d);
    const Tensor x = test::random({1, 3, 256, 256}, 23, -2.0, 2.0, DType::Float32).to(d);
    const models::DetectionLoss loss = det.loss(x, {from_vector(faces, Shape{1200, 4}, d)});
    for (const Tensor& term : {loss.stc_cls1, loss.stc_cls2, loss.str_reg2, loss.total})
      CHECK(std::isfinite(test::values(term)[0]));
    // Every face claims its best anchor; faces sharing one can claim it once, so at least several hundred.
    CHECK(loss.num_pos1_cls >= 300);
    CHECK(loss.num_pos2 >= 300);
    const auto dets = det.detect(x);
    CHECK(dets.front().scores.size(0) <= 750);
  }
}
