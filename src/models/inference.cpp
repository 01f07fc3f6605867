#include "isrn/models/inference.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "isrn/autograd/grad_mode.hpp"

namespace isrn::models {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

StageTimes& StageTimes::operator+=(const StageTimes& other) {
  preprocess += other.preprocess;
  network += other.network;
  postprocess += other.postprocess;
  return *this;
}

double shrink_scale(int64_t height, int64_t width, int64_t max_size) {
  ISRN_CHECK(height > 0 && width > 0, "[shrink_scale] image size ", height, "x", width, " must be positive");
  ISRN_CHECK(max_size >= 0, "[shrink_scale] max_size must be non-negative, got ", max_size);
  if (max_size == 0) return 1.0;
  const double r = static_cast<double>(max_size) * max_size / (static_cast<double>(height) * width);
  return r >= 1.0 ? 1.0 : std::sqrt(r);
}

Tensor pad_batch(const std::vector<const data::Image*>& images) {
  ISRN_CHECK(!images.empty(), "[pad_batch] no images");
  int64_t h = 0, w = 0;
  for (const data::Image* image : images) {
    ISRN_CHECK(image != nullptr && !image->empty(), "[pad_batch] an image of the batch is empty");
    h = std::max(h, image->height);
    w = std::max(w, image->width);
  }
  const int64_t b = static_cast<int64_t>(images.size());
  Tensor batch = isrn::empty({b, 3, h, w}, DType::Float32);
  float* p = batch.data_ptr<float>();
  for (int64_t i = 0; i < b; ++i) {
    data::normalize_padded_into(*images[static_cast<size_t>(i)], p + i * 3 * h * w, h, w);
  }
  return batch;
}

Detections clip_detections(const Detections& detections, int64_t height, int64_t width) {
  ISRN_CHECK(height > 0 && width > 0, "[clip_detections] image size ", height, "x", width, " must be positive");
  ISRN_CHECK(detections.boxes.defined() && detections.boxes.dim() == 2 && detections.boxes.size(1) == 4,
             "[clip_detections] boxes must be [K, 4]");
  ISRN_CHECK(detections.scores.defined() && detections.scores.dim() == 1 &&
                 detections.scores.size(0) == detections.boxes.size(0),
             "[clip_detections] scores must be [", detections.boxes.size(0), "]");
  const std::vector<float> b =
      detections.boxes.detach().to(Device::cpu()).to(DType::Float32).contiguous().to_vector<float>();
  const std::vector<float> s =
      detections.scores.detach().to(Device::cpu()).to(DType::Float32).contiguous().to_vector<float>();
  const float max_x = static_cast<float>(width - 1), max_y = static_cast<float>(height - 1);
  std::vector<float> boxes, scores;
  boxes.reserve(b.size());
  scores.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const float x1 = std::clamp(b[4 * i], 0.0f, max_x), y1 = std::clamp(b[4 * i + 1], 0.0f, max_y);
    const float x2 = std::clamp(b[4 * i + 2], 0.0f, max_x), y2 = std::clamp(b[4 * i + 3], 0.0f, max_y);
    if (!(x2 > x1 && y2 > y1)) continue;
    boxes.insert(boxes.end(), {x1, y1, x2, y2});
    scores.push_back(s[i]);
  }
  const int64_t k = static_cast<int64_t>(scores.size());
  return {from_vector(boxes, Shape{k, 4}), from_vector(scores, Shape{k})};
}

void wait_for(const Tensor& t) {
  if (!t.defined() || t.numel() == 0 || t.device().is_cpu()) return;
  // A copy to the host returns once the stream has run everything queued before it.
  (void)t.detach().flatten().narrow(0, 0, 1).to(Device::cpu());
}

std::vector<Detections> detect_prepared(Detector& detector, const Tensor& batch, const std::vector<double>& scales,
                                        StageTimes* times) {
  ISRN_CHECK(batch.defined() && batch.dim() == 4 && batch.size(1) == 3,
             "[detect_prepared] batch must be [B, 3, H, W]");
  ISRN_CHECK(static_cast<int64_t>(scales.size()) == batch.size(0), "[detect_prepared] ", scales.size(),
             " scales for a batch of ", batch.size(0));
  const bool was_training = detector.is_training();
  detector.eval();
  struct RestoreMode {
    Detector& d;
    bool training;
    ~RestoreMode() { d.train(training); }
  } restore{detector, was_training};
  NoGradGuard no_grad;

  StageTimes spent;
  Clock::time_point start = Clock::now();
  const DetectorOutput out = detector.forward(batch);
  wait_for(out.step2_deltas);
  spent.network = seconds_since(start);

  start = Clock::now();
  std::vector<Detections> result;
  result.reserve(scales.size());
  for (size_t i = 0; i < scales.size(); ++i) {
    const int64_t b = static_cast<int64_t>(i);
    result.push_back(detect_single_scale(out.step1_logits.select(0, b), out.step1_deltas.select(0, b),
                                         out.step2_logits.select(0, b), out.step2_deltas.select(0, b), out.anchors,
                                         detector.config().infer, scales[i]));
  }
  if (!result.empty()) wait_for(result.back().scores);
  spent.postprocess = seconds_since(start);
  if (times) *times += spent;
  return result;
}

std::vector<Detections> detect_batch(Detector& detector, const std::vector<const data::Image*>& images,
                                     const BatchOptions& options, StageTimes* times) {
  ISRN_CHECK(!images.empty(), "[detect_batch] no images");
  for (const data::Image* image : images)
    ISRN_CHECK(image != nullptr && !image->empty(), "[detect_batch] an image of the batch is empty");

  Clock::time_point start = Clock::now();
  std::vector<double> scales;
  std::vector<data::Image> resized;  // only the images that shrink
  std::vector<const data::Image*> inputs;
  resized.reserve(images.size());
  for (const data::Image* image : images) {
    const double s = shrink_scale(image->height, image->width, options.max_size);
    scales.push_back(s);
    if (s == 1.0) {
      inputs.push_back(image);
      continue;
    }
    // Rounded as detect_at_scale rounds, so single- and multi-scale runs at one scale see the same pixels.
    const int64_t h = std::max<int64_t>(1, std::llround(image->height * s));
    const int64_t w = std::max<int64_t>(1, std::llround(image->width * s));
    resized.push_back(data::resize_bilinear(*image, h, w));
    inputs.push_back(&resized.back());
  }
  const Tensor batch = pad_batch(inputs).to(options.device);
  wait_for(batch);
  StageTimes spent;
  spent.preprocess = seconds_since(start);

  std::vector<Detections> raw = detect_prepared(detector, batch, scales, &spent);

  start = Clock::now();
  std::vector<Detections> result;
  result.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i)
    result.push_back(clip_detections(raw[i], images[i]->height, images[i]->width));
  spent.postprocess += seconds_since(start);
  if (times) *times += spent;
  return result;
}

}  // namespace isrn::models
