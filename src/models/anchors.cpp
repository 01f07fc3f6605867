// Anchor generation. Only the A cell anchors of each level are computed on the host (a handful of
// numbers); the grid of shifts is built with tensor ops on the target device.
#include "isrn/models/anchors.hpp"

#include <cmath>

#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/shape.hpp"

namespace isrn::models {

namespace {

void check_config(const char* op, const AnchorConfig& config) {
  ISRN_CHECK(!config.strides.empty(), "[", op, "] the anchor config has no strides");
  ISRN_CHECK(!config.scales.empty(), "[", op, "] the anchor config has no scales");
  for (double s : config.scales)
    ISRN_CHECK(std::isfinite(s) && s > 0.0, "[", op, "] anchor scales must be finite and positive, got ", s);
  ISRN_CHECK(std::isfinite(config.ratio) && config.ratio > 0.0, "[", op,
             "] the anchor ratio must be finite and positive, got ", config.ratio);
  for (int64_t s : config.strides) (void)level_of_stride(s);
}

}  // namespace

int level_of_stride(int64_t stride) {
  ISRN_CHECK(stride >= 1 && (stride & (stride - 1)) == 0, "[anchors] strides must be powers of two, got ", stride);
  int level = 0;
  while ((int64_t{1} << level) < stride) ++level;
  return level;
}

Tensor AnchorSet::level_boxes(size_t i) const {
  ISRN_CHECK(i < counts.size(), "[AnchorSet] run ", i, " out of range (", counts.size(), " runs)");
  int64_t start = 0;
  for (size_t j = 0; j < i; ++j) start += counts[j];
  return boxes.narrow(0, start, counts[i]);
}

Tensor AnchorSet::level_mask(const std::vector<int>& selected) const {
  ISRN_CHECK(boxes.defined(), "[AnchorSet] no boxes");
  ISRN_CHECK(levels.size() == counts.size(), "[AnchorSet] ", levels.size(), " levels for ", counts.size(), " runs");
  int64_t total = 0;
  std::vector<Tensor> parts;
  for (size_t i = 0; i < counts.size(); ++i) {
    total += counts[i];
    bool on = false;
    for (int l : selected) on = on || l == levels[i];
    parts.push_back(full({counts[i]}, on ? 1.0 : 0.0, TensorOptions(boxes.dtype()).device(boxes.device())));
  }
  ISRN_CHECK(total == boxes.size(0), "[AnchorSet] the runs hold ", total, " anchors but there are ", boxes.size(0),
             " boxes");
  if (parts.empty()) return zeros({0}, TensorOptions(boxes.dtype()).device(boxes.device()));
  return cat(parts, 0);
}

std::vector<MapSize> feature_map_sizes(int64_t image_h, int64_t image_w, const AnchorConfig& config) {
  check_config("feature_map_sizes", config);
  ISRN_CHECK(image_h > 0 && image_w > 0, "[feature_map_sizes] the image size must be positive, got ", image_h, "x",
             image_w);
  std::vector<MapSize> out;
  for (int64_t stride : config.strides) {
    MapSize m{image_h, image_w};
    for (int l = level_of_stride(stride); l > 0; --l) {
      m.height = (m.height + 1) / 2;
      m.width = (m.width + 1) / 2;
    }
    out.push_back(m);
  }
  return out;
}

Tensor cell_anchors(int64_t stride, const AnchorConfig& config) {
  check_config("cell_anchors", config);
  (void)level_of_stride(stride);
  const double s = static_cast<double>(stride);
  std::vector<double> v;
  for (double scale : config.scales) {
    double w, h, cx, cy, half_w, half_h;
    if (config.plus_one_corners) {
      // Detectron's _ratio_enum then _scale_enum: the base window's size is rounded (nearbyint rounds
      // half to even under the default rounding mode, as numpy.round) before the scale multiplies it.
      const double ws = std::nearbyint(std::sqrt(s * s / config.ratio));
      const double hs = std::nearbyint(ws * config.ratio);
      w = ws * scale;
      h = hs * scale;
      cx = cy = 0.5 * (s - 1.0);
      half_w = 0.5 * (w - 1.0);
      half_h = 0.5 * (h - 1.0);
    } else {
      w = scale * s / std::sqrt(config.ratio);
      h = scale * s * std::sqrt(config.ratio);
      cx = cy = 0.5 * s;
      half_w = 0.5 * w;
      half_h = 0.5 * h;
    }
    v.insert(v.end(), {cx - half_w, cy - half_h, cx + half_w, cy + half_h});
  }
  return from_vector(v, {config.anchors_per_location(), 4});
}

AnchorSet generate_anchors(int64_t image_h, int64_t image_w, const AnchorConfig& config, TensorOptions options) {
  ISRN_CHECK(is_floating(options.dtype_), "[generate_anchors] anchors must be float32 or float64, got ",
             options.dtype_);
  AnchorSet set;
  set.map_sizes = feature_map_sizes(image_h, image_w, config);
  const int64_t a = config.anchors_per_location();
  const TensorOptions f64 = TensorOptions(DType::Float64).device(options.device_);
  std::vector<Tensor> per_level;
  for (size_t i = 0; i < config.strides.size(); ++i) {
    const int64_t stride = config.strides[i];
    const MapSize m = set.map_sizes[i];
    // Built in float64 so the shifts are exact before the one rounding to the requested dtype.
    const Tensor xs = mul(arange(0.0, static_cast<double>(m.width), 1.0, f64), static_cast<double>(stride));
    const Tensor ys = mul(arange(0.0, static_cast<double>(m.height), 1.0, f64), static_cast<double>(stride));
    const Tensor sx = xs.reshape({1, m.width}).expand({m.height, m.width});
    const Tensor sy = ys.reshape({m.height, 1}).expand({m.height, m.width});
    const Tensor shifts = stack({sx, sy, sx, sy}, 2).reshape({m.height * m.width, 1, 4});
    const Tensor cell = cell_anchors(stride, config).to(options.device_).reshape({1, a, 4});
    per_level.push_back(add(shifts, cell).reshape({m.height * m.width * a, 4}).to(options.dtype_));
    set.levels.push_back(level_of_stride(stride));
    set.counts.push_back(m.height * m.width * a);
  }
  set.boxes = cat(per_level, 0);
  return set;
}

}  // namespace isrn::models
