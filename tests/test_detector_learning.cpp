// Learning: the tiny detector trained from scratch on a handful of generated images. The full loss
// must fall steadily (each quarter of the run lower on average than the one before) and the trained
// detector must then find the faces it was trained on (recall ≥ 0.9 at IoU 0.5 among its confident
// detections, with few confident false positives).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "isrn/autograd/autocast.hpp"
#include "isrn/models/isrn.hpp"
#include "isrn/nn/module.hpp"
#include "isrn/optim/lr_schedule.hpp"
#include "isrn/optim/sgd.hpp"
#include "test_util.hpp"

using namespace isrn;

namespace {

struct Scene {
  Tensor image;              // [3, H, W], roughly zero-mean
  std::vector<float> boxes;  // x1, y1, x2, y2 per face
};

// A face: a skin-toned ellipse with two dark eyes and a mouth, on a noisy, striped background.
Scene make_scene(int64_t h, int64_t w, int faces, Generator& gen) {
  Scene s;
  s.image = zeros({3, h, w});
  float* px = s.image.data_ptr<float>();
  const double stripe = 3 + 6 * gen.uniform();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        px[(c * h + y) * w + x] =
            static_cast<float>(-0.6 + 0.3 * std::sin((x + y) / stripe + c) + 0.25 * gen.normal());
  for (int f = 0; f < faces; ++f) {
    const double size = 14 + 18 * gen.uniform();
    const double bw = size / 1.25, bh = size;
    double x1 = 0, y1 = 0;
    // Keep faces apart so each box is unambiguous.
    for (int attempt = 0; attempt < 100; ++attempt) {
      x1 = gen.uniform() * (w - bw - 1);
      y1 = gen.uniform() * (h - bh - 1);
      bool clear = true;
      for (size_t k = 0; k < s.boxes.size(); k += 4)
        clear &= x1 > s.boxes[k + 2] + 2 || x1 + bw < s.boxes[k] - 2 || y1 > s.boxes[k + 3] + 2 ||
                 y1 + bh < s.boxes[k + 1] - 2;
      if (clear) break;
    }
    const double cx = x1 + bw / 2, cy = y1 + bh / 2;
    const double tone = 0.4 + 0.8 * gen.uniform();
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const double u = (x + 0.5 - cx) / (bw / 2), v = (y + 0.5 - cy) / (bh / 2);
        if (u * u + v * v > 1) continue;
        const bool eye = ((u + 0.35) * (u + 0.35) + (v + 0.25) * (v + 0.25) < 0.03) ||
                         ((u - 0.35) * (u - 0.35) + (v + 0.25) * (v + 0.25) < 0.03);
        const bool mouth = std::abs(u) < 0.35 && std::abs(v - 0.45) < 0.08;
        const double base[3] = {tone + 0.6, tone + 0.2, tone - 0.1};
        for (int c = 0; c < 3; ++c)
          px[(c * h + y) * w + x] = static_cast<float>(eye || mouth ? -1.5 : base[c]);
      }
    s.boxes.insert(s.boxes.end(), {static_cast<float>(x1), static_cast<float>(y1), static_cast<float>(x1 + bw),
                                   static_cast<float>(y1 + bh)});
  }
  return s;
}

double iou(const float* a, const float* b) {
  const double iw = std::max(0.0f, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const double ih = std::max(0.0f, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const double inter = iw * ih;
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

}  // namespace

TEST_CASE("detector learning: the loss falls and the trained detector finds its training faces") {
  const int64_t kImages = 6, kH = 56, kW = 72, kIters = 240;
  Generator data_gen(2024);
  std::vector<Tensor> images;
  std::vector<Tensor> gt;
  int64_t total_faces = 0;
  for (int64_t i = 0; i < kImages; ++i) {
    const int faces = 2 + static_cast<int>(i % 3);
    Scene s = make_scene(kH, kW, faces, data_gen);
    images.push_back(s.image);
    gt.push_back(from_vector(s.boxes, Shape{faces, 4}));
    total_faces += faces;
  }
  const Tensor batch = stack(images, 0);

  const models::DetectorConfig config = test::tiny_detector_config();
  Generator init_gen(7);
  models::Detector det(config, init_gen);
  optim::SGD sgd(nn::parameter_groups(det, 0.02, 0.9, 1e-4));
  const optim::WarmupMultiStep schedule(0.02, {180}, 0.1, 1.0 / 3.0, 10);

  const auto start = std::chrono::steady_clock::now();
  std::vector<double> losses;
  for (int64_t it = 0; it < kIters; ++it) {
    for (size_t g = 0; g < sgd.num_groups(); ++g) sgd.set_lr(g, schedule.lr_at(it));
    const models::DetectionLoss loss = det.loss(batch, gt);
    const double value = test::values(loss.total)[0];
    REQUIRE(std::isfinite(value));
    losses.push_back(value);
    sgd.zero_grad();
    loss.total.backward();
    sgd.step();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double quarter[4] = {0, 0, 0, 0};
  for (int64_t it = 0; it < kIters; ++it) quarter[it * 4 / kIters] += losses[static_cast<size_t>(it)] / (kIters / 4);
  MESSAGE("loss by quarter: ", quarter[0], " ", quarter[1], " ", quarter[2], " ", quarter[3], " (", kIters,
          " iterations in ", seconds, " s)");
  CHECK(quarter[1] < quarter[0]);
  CHECK(quarter[2] < quarter[1]);
  CHECK(quarter[3] < quarter[2]);
  CHECK(quarter[3] < 0.5 * quarter[0]);

  // Confident detections (score ≥ 0.5) must cover the faces, and not by sheer number.
  const std::vector<models::Detections> dets = det.detect(batch);
  int64_t found = 0, confident = 0;
  for (int64_t i = 0; i < kImages; ++i) {
    const Tensor& boxes = dets[static_cast<size_t>(i)].boxes;
    const std::vector<double> scores = test::values(dets[static_cast<size_t>(i)].scores);
    const float* b = boxes.data_ptr<float>();
    const float* g = gt[static_cast<size_t>(i)].data_ptr<float>();
    int64_t n_conf = 0;
    while (n_conf < static_cast<int64_t>(scores.size()) && scores[static_cast<size_t>(n_conf)] >= 0.5) ++n_conf;
    confident += n_conf;
    for (int64_t f = 0; f < gt[static_cast<size_t>(i)].size(0); ++f) {
      double best = 0;
      for (int64_t k = 0; k < n_conf; ++k) best = std::max(best, iou(b + 4 * k, g + 4 * f));
      if (best < 0.5)
        MESSAGE("image ", i, " face ", f, " (", g[4 * f], ", ", g[4 * f + 1], ", ", g[4 * f + 2], ", ", g[4 * f + 3],
                ") best IoU ", best);
      found += best >= 0.5;
    }
  }
  const double recall = static_cast<double>(found) / static_cast<double>(total_faces);
  MESSAGE("recall at IoU 0.5: ", found, "/", total_faces, " with ", confident, " confident detections");
  CHECK(recall >= 0.9);
  CHECK(confident <= 2 * total_faces);
}

namespace {

// A short SGD run of the tiny detector from a fixed initialization: the loss of every iteration.
std::vector<double> training_losses(const Tensor& batch, const std::vector<Tensor>& boxes, Device d,
                                    int64_t iterations, DType precision) {
  Generator init_gen(11);
  models::Detector det(test::tiny_detector_config(), init_gen);
  det.to(d);
  optim::SGD sgd(nn::parameter_groups(det, 0.02, 0.9, 1e-4));
  const optim::WarmupMultiStep schedule(0.02, {80}, 0.1, 1.0 / 3.0, 10);
  std::vector<double> losses;
  for (int64_t it = 0; it < iterations; ++it) {
    for (size_t g = 0; g < sgd.num_groups(); ++g) sgd.set_lr(g, schedule.lr_at(it));
    models::DetectionLoss loss;
    {
      AutocastGuard autocast(precision);
      loss = det.loss(batch, boxes);
    }
    losses.push_back(test::values(loss.total)[0]);
    REQUIRE(std::isfinite(losses.back()));
    sgd.zero_grad();
    loss.total.backward();
    sgd.step();
  }
  return losses;
}

// Four small synthetic images with two or three faces each, on device d: the batch and its boxes.
std::pair<Tensor, std::vector<Tensor>> small_training_set(Device d) {
  const int64_t kImages = 4, kH = 56, kW = 72;
  Generator data_gen(77);
  std::vector<Tensor> images, boxes;
  for (int64_t i = 0; i < kImages; ++i) {
    const int faces = 2 + static_cast<int>(i % 2);
    Scene s = make_scene(kH, kW, faces, data_gen);
    images.push_back(s.image);
    boxes.push_back(from_vector(s.boxes, Shape{faces, 4}).to(d));
  }
  return {stack(images, 0).to(d), boxes};
}

}  // namespace

TEST_CASE("detector learning: a training run repeats bit for bit on every device") {
  // Every kernel of a training step is deterministic (no atomics, fixed reduction orders, deterministic
  // cuDNN algorithms), so the same run gives the same losses to the last bit; on the GPU it did not
  // while upsampling and pooling gradients were added with atomics.
  for (Device d : test::devices()) {
    CAPTURE(d);
    const auto [batch, boxes] = small_training_set(d);
    const std::vector<double> first = training_losses(batch, boxes, d, 12, DType::Float32);
    const std::vector<double> second = training_losses(batch, boxes, d, 12, DType::Float32);
    for (size_t it = 0; it < first.size(); ++it) {
      CAPTURE(it);
      CHECK(first[it] == second[it]);
    }
  }
}

TEST_CASE("detector learning: bfloat16 mixed precision trains to the float32 loss") {
  // The same short run twice from the same initialization, once in float32 and once with the forward
  // pass under AutocastGuard(BFloat16) (as isrn-train's train.precision = "bf16" runs it), on every device.
  const int64_t kIters = 100;
  for (Device d : test::devices()) {
    CAPTURE(d);
    const auto set = small_training_set(d);  // named members: a lambda captures them below
    const Tensor& batch = set.first;
    const std::vector<Tensor>& boxes = set.second;
    auto train = [&](DType precision) {
      const std::vector<double> losses = training_losses(batch, boxes, d, kIters, precision);
      std::vector<double> quarter(4, 0.0);
      for (int64_t it = 0; it < kIters; ++it) quarter[static_cast<size_t>(it * 4 / kIters)] += losses[it] / (kIters / 4);
      return quarter;
    };
    const std::vector<double> fp32 = train(DType::Float32), bf16 = train(DType::BFloat16);
    MESSAGE("loss by quarter, float32: ", fp32[0], " ", fp32[1], " ", fp32[2], " ", fp32[3], "; bfloat16: ", bf16[0],
            " ", bf16[1], " ", bf16[2], " ", bf16[3]);
    // Both runs learn (the last quarter far below the first). The trajectories part within a few
    // iterations (different roundings flip ReLU and anchor-matching decisions, and the 100-iteration run
    // amplifies that), so only their level is compared: the first quarter within 25 %, and in every later
    // quarter the bfloat16 loss at most twice the float32 one plus 0.05. Seen: CPU 3.06 / 0.41 / 0.078 /
    // 0.015 (float32) and 3.11 / 0.39 / 0.059 / 0.021 (bfloat16); on an H100, runs of the nondeterministic
    // kernels since replaced gave float32 3.31-3.74 / 0.66-0.80 / 0.12-0.30 / 0.03-0.13 and bfloat16
    // 3.10-3.67 / 0.47-0.80 / 0.07-0.20 / 0.016-0.046.
    CHECK(std::abs(bf16[0] - fp32[0]) <= 0.25 * fp32[0]);
    for (size_t q = 1; q < 4; ++q) {
      CAPTURE(q);
      CHECK(bf16[q] <= 2 * fp32[q] + 0.05);
    }
    CHECK(fp32[3] < 0.3 * fp32[0]);
    CHECK(bf16[3] < 0.3 * bf16[0]);
  }
}
