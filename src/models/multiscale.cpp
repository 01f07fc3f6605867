#include "isrn/models/multiscale.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "isrn/ops/shape.hpp"

namespace isrn::models {

std::vector<ScaleRun> multiscale_plan(int64_t image_h, int64_t image_w, const MultiScaleConfig& config) {
  ISRN_CHECK(image_h > 0 && image_w > 0, "[multiscale] image size ", image_h, "x", image_w, " must be positive");
  ISRN_CHECK(config.max_size > 0, "[multiscale] max_size must be positive, got ", config.max_size);
  ISRN_CHECK(config.enlarge_log_base > 1 && config.enlarge_step > 1, "[multiscale] enlarge_log_base and "
             "enlarge_step must exceed 1");
  const double r = static_cast<double>(config.max_size) * config.max_size / (static_cast<double>(image_h) * image_w);
  std::vector<ScaleRun> runs;
  if (r > 1.0) {
    runs.push_back({1.0, false, SizeFilter::none});
    runs.push_back({1.0, true, SizeFilter::none});
    runs.push_back({0.5, false, SizeFilter::keep_large});
    const int enlarge = static_cast<int>(std::floor(std::log(r) / std::log(config.enlarge_log_base)));
    for (int t = 1; t <= enlarge; ++t) runs.push_back({std::pow(config.enlarge_step, t), false, SizeFilter::keep_small});
    runs.push_back({std::sqrt(r), false, SizeFilter::keep_small});
  } else {
    const double s0 = std::sqrt(r);
    runs.push_back({s0, false, SizeFilter::none});
    runs.push_back({s0, true, SizeFilter::none});
    runs.push_back({0.75 * s0, false, SizeFilter::keep_large});
    runs.push_back({0.5 * s0, false, SizeFilter::keep_large});
  }
  return runs;
}

Detections box_voting(const Tensor& boxes, const Tensor& scores, double vote_iou, int64_t keep) {
  ISRN_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(1) == 4, "[box_voting] boxes must be [N, 4], got ",
             boxes.defined() ? shape_str(boxes.shape()) : std::string("undefined"));
  ISRN_CHECK(scores.defined() && scores.dim() == 1 && scores.size(0) == boxes.size(0),
             "[box_voting] scores must be [", boxes.size(0), "], got ",
             scores.defined() ? shape_str(scores.shape()) : std::string("undefined"));
  ISRN_CHECK(keep >= 0, "[box_voting] keep must be non-negative, got ", keep);
  const std::vector<double> b = boxes.detach().to(Device::cpu()).to(DType::Float64).contiguous().to_vector<double>();
  const std::vector<double> s = scores.detach().to(Device::cpu()).to(DType::Float64).contiguous().to_vector<double>();
  const size_t n = s.size();
  std::vector<size_t> pool(n);
  std::iota(pool.begin(), pool.end(), size_t{0});
  // Stable, so equal scores keep their input order, as numpy's argsort(kind="stable") would.
  std::stable_sort(pool.begin(), pool.end(), [&](size_t i, size_t j) { return s[i] > s[j]; });
  const auto area = [&](size_t i) { return (b[4 * i + 2] - b[4 * i] + 1) * (b[4 * i + 3] - b[4 * i + 1] + 1); };
  std::vector<float> out_boxes, out_scores;
  std::vector<size_t> rest;
  while (!pool.empty() && static_cast<int64_t>(out_scores.size()) < keep) {
    const size_t lead = pool.front();
    double sum_w = 0, acc[4] = {0, 0, 0, 0}, best = -1;
    size_t members = 0;
    rest.clear();
    for (size_t i : pool) {
      const double iw = std::max(0.0, std::min(b[4 * lead + 2], b[4 * i + 2]) - std::max(b[4 * lead], b[4 * i]) + 1);
      const double ih =
          std::max(0.0, std::min(b[4 * lead + 3], b[4 * i + 3]) - std::max(b[4 * lead + 1], b[4 * i + 1]) + 1);
      const double inter = iw * ih;
      const double iou = inter / (area(lead) + area(i) - inter);
      if (iou >= vote_iou || i == lead) {
        ++members;
        sum_w += s[i];
        for (int k = 0; k < 4; ++k) acc[k] += s[i] * b[4 * i + k];
        best = std::max(best, s[i]);
      } else {
        rest.push_back(i);
      }
    }
    pool.swap(rest);
    if (members <= 1) continue;  // the released code's quirk: a lone box is dropped
    for (int k = 0; k < 4; ++k) out_boxes.push_back(static_cast<float>(acc[k] / sum_w));
    out_scores.push_back(static_cast<float>(best));
  }
  const int64_t m = static_cast<int64_t>(out_scores.size());
  return {from_vector(out_boxes, Shape{m, 4}), from_vector(out_scores, Shape{m})};
}

Detections detect_at_scale(Detector& detector, const data::Image& image, double scale, bool flip, Device device,
                           StageTimes* times) {
  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  ISRN_CHECK(scale > 0 && std::isfinite(scale), "[detect_at_scale] scale must be positive, got ", scale);
  ISRN_CHECK(!image.empty(), "[detect_at_scale] empty image");
  Clock::time_point start = Clock::now();
  const int64_t h = std::max<int64_t>(1, std::llround(image.height * scale));
  const int64_t w = std::max<int64_t>(1, std::llround(image.width * scale));
  data::Image input = (h == image.height && w == image.width) ? image : data::resize_bilinear(image, h, w);
  if (flip) input = data::flip_horizontal(input);
  const Tensor batch = data::to_tensor(input).unsqueeze(0).to(device);
  wait_for(batch);
  StageTimes spent;
  spent.preprocess = seconds_since(start);

  Detections d = std::move(detect_prepared(detector, batch, {scale}, &spent).front());
  start = Clock::now();
  d.boxes = d.boxes.to(Device::cpu()).to(DType::Float32).contiguous();
  d.scores = d.scores.to(Device::cpu()).to(DType::Float32).contiguous();
  if (flip && d.boxes.size(0) > 0) {
    float* p = d.boxes.data_ptr<float>();
    const float width = static_cast<float>(image.width);
    for (int64_t i = 0; i < d.boxes.size(0); ++i, p += 4) {
      const float x1 = p[0], x2 = p[2];
      p[0] = width - x2 - 1;
      p[2] = width - x1 - 1;
    }
  }
  spent.postprocess += seconds_since(start);
  if (times) *times += spent;
  return d;
}

Detections detect_multiscale(Detector& detector, const data::Image& image, const MultiScaleConfig& config,
                             Device device, StageTimes* times) {
  std::vector<float> boxes, scores;
  StageTimes runs;
  for (const ScaleRun& run : multiscale_plan(image.height, image.width, config)) {
    const Detections d = detect_at_scale(detector, image, run.scale, run.flip, device, &runs);
    const auto start = std::chrono::steady_clock::now();
    const float* b = d.boxes.data_ptr<float>();
    const float* s = d.scores.data_ptr<float>();
    for (int64_t i = 0; i < d.scores.size(0); ++i) {
      const double w = b[4 * i + 2] - b[4 * i] + 1, h = b[4 * i + 3] - b[4 * i + 1] + 1;
      if (run.filter == SizeFilter::keep_large && !(std::max(w, h) > config.shrink_min_side)) continue;
      if (run.filter == SizeFilter::keep_small && !(std::min(w, h) < config.enlarge_max_side)) continue;
      boxes.insert(boxes.end(), b + 4 * i, b + 4 * i + 4);
      scores.push_back(s[i]);
    }
    runs.postprocess += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  const auto start = std::chrono::steady_clock::now();
  const int64_t n = static_cast<int64_t>(scores.size());
  Detections merged = box_voting(from_vector(boxes, Shape{n, 4}), from_vector(scores, Shape{n}), config.vote_iou,
                                 config.keep);
  float* p = merged.boxes.data_ptr<float>();
  const float max_x = static_cast<float>(image.width - 1), max_y = static_cast<float>(image.height - 1);
  for (int64_t i = 0; i < merged.boxes.size(0); ++i, p += 4) {
    p[0] = std::clamp(p[0], 0.0f, max_x);
    p[1] = std::clamp(p[1], 0.0f, max_y);
    p[2] = std::clamp(p[2], 0.0f, max_x);
    p[3] = std::clamp(p[3], 0.0f, max_y);
  }
  runs.postprocess += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (times) *times += runs;
  return merged;
}

}  // namespace isrn::models
