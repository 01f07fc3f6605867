#include "isrn/data/augment.hpp"

#include <algorithm>
#include <cmath>

#include "isrn/core/error.hpp"

namespace isrn::data {

namespace {

double uniform(Generator& rng, double lo, double hi) { return lo + (hi - lo) * rng.uniform(); }

// Inclusive; the spans here are image sizes, far below 2^32, so the modulo bias is negligible.
int64_t integer(Generator& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng.next_u64() % static_cast<uint64_t>(hi - lo + 1));
}

bool positive(const Box& b) { return b.width() > 0 && b.height() > 0; }

// round(n · scale), at least one pixel: the size cv2.resize(fx = scale) would give.
int64_t scaled_extent(int64_t n, double scale) {
  return std::max<int64_t>(1, std::llround(static_cast<double>(n) * scale));
}

void rgb_to_hsv(const float* rgb, float& h, float& s, float& v) {
  const float r = rgb[0], g = rgb[1], b = rgb[2];
  const float hi = std::max({r, g, b}), lo = std::min({r, g, b}), d = hi - lo;
  v = hi;
  s = hi > 0 ? d / hi : 0;
  if (d <= 0) {
    h = 0;
  } else if (hi == r) {
    h = 60 * (g - b) / d;
    if (h < 0) h += 360;
  } else if (hi == g) {
    h = 60 * ((b - r) / d + 2);
  } else {
    h = 60 * ((r - g) / d + 4);
  }
}

void hsv_to_rgb(float h, float s, float v, float* rgb) {
  const float c = v * s, sector = h / 60;
  const float x = c * (1 - std::abs(std::fmod(sector, 2.0f) - 1)), m = v - c;
  const int k = std::clamp(static_cast<int>(sector), 0, 5);
  const float table[6][3] = {{c, x, 0}, {x, c, 0}, {0, c, x}, {0, x, c}, {x, 0, c}, {c, 0, x}};
  for (int i = 0; i < 3; ++i) rgb[i] = table[k][i] + m;
}

Box scale_box(const Box& b, double sx, double sy) {
  return {static_cast<float>(b.x1 * sx), static_cast<float>(b.y1 * sy), static_cast<float>(b.x2 * sx),
          static_cast<float>(b.y2 * sy)};
}

// The boxes kept by centre_inside, clipped to the window and moved to its coordinates.
std::vector<Box> boxes_in_window(const std::vector<Box>& boxes, const Window& w) {
  std::vector<Box> out;
  const float l = static_cast<float>(w.left), t = static_cast<float>(w.top);
  const float r = static_cast<float>(w.left + w.width), b = static_cast<float>(w.top + w.height);
  for (const Box& box : boxes) {
    if (!centre_inside(box, w)) continue;
    out.push_back({std::clamp(box.x1, l, r) - l, std::clamp(box.y1, t, b) - t, std::clamp(box.x2, l, r) - l,
                   std::clamp(box.y2, t, b) - t});
  }
  return out;
}

void check_window(const Window& w, const char* op) {
  ISRN_CHECK(w.width > 0 && w.height > 0, "[", op, "] window ", w.width, "x", w.height, " must have a positive size");
}

// A patch offset along one axis (SPEC §10.2 step 6): anywhere that keeps the face inside when the patch
// is smaller than the image, anywhere that keeps the image inside the patch when it is not.
int64_t das_offset(Generator& rng, int64_t image, float face1, float face2, int64_t patch) {
  double lo, hi;
  if (patch >= image) {
    lo = static_cast<double>(image - patch);
    hi = 0;
  } else if (face2 - face1 <= static_cast<float>(patch)) {
    lo = static_cast<double>(face2) - static_cast<double>(patch);
    hi = face1;
  } else {  // a face larger than the patch: the patch lies within the face
    lo = face1;
    hi = static_cast<double>(face2) - static_cast<double>(patch);
  }
  return static_cast<int64_t>(std::floor(uniform(rng, lo, hi)));
}

}  // namespace

void validate(const AugmentConfig& c) {
  auto probability = [](const char* name, double p) {
    ISRN_CHECK(p >= 0 && p <= 1, "[augment] ", name, " ", p, " is not a probability");
  };
  ISRN_CHECK(c.size >= 1 && c.size <= 16384, "[augment] size ", c.size, " is outside 1..16384");
  probability("brightness_prob", c.brightness_prob);
  probability("contrast_prob", c.contrast_prob);
  probability("saturation_prob", c.saturation_prob);
  probability("hue_prob", c.hue_prob);
  probability("contrast_last_prob", c.contrast_last_prob);
  probability("expand_prob", c.expand_prob);
  probability("full_side_crop_prob", c.full_side_crop_prob);
  probability("das_prob", c.das_prob);
  probability("flip_prob", c.flip_prob);
  ISRN_CHECK(c.brightness_delta >= 0 && c.brightness_delta <= 255, "[augment] brightness_delta ", c.brightness_delta,
             " is outside 0..255");
  ISRN_CHECK(c.contrast_lower > 0 && c.contrast_lower <= c.contrast_upper, "[augment] contrast range [",
             c.contrast_lower, ", ", c.contrast_upper, "] must be positive and ordered");
  ISRN_CHECK(c.saturation_lower >= 0 && c.saturation_lower <= c.saturation_upper, "[augment] saturation range [",
             c.saturation_lower, ", ", c.saturation_upper, "] must be non-negative and ordered");
  ISRN_CHECK(c.hue_delta >= 0 && c.hue_delta <= 180, "[augment] hue_delta ", c.hue_delta, " is outside 0..180");
  ISRN_CHECK(c.expand_max_ratio >= 1 && c.expand_max_ratio <= 16, "[augment] expand_max_ratio ", c.expand_max_ratio,
             " is outside 1..16");
  ISRN_CHECK(c.min_crop_scale > 0 && c.min_crop_scale <= 1, "[augment] min_crop_scale ", c.min_crop_scale,
             " is outside (0, 1]");
  ISRN_CHECK(c.crop_max_tries >= 1, "[augment] crop_max_tries ", c.crop_max_tries, " must be at least 1");
  ISRN_CHECK(c.das_max_tries >= 1, "[augment] das_max_tries ", c.das_max_tries, " must be at least 1");
  ISRN_CHECK(!c.das_anchor_sizes.empty(), "[augment] das_anchor_sizes is empty");
  for (float s : c.das_anchor_sizes)
    ISRN_CHECK(std::isfinite(s) && s > 0, "[augment] das_anchor_sizes holds ", s, ", not a positive size");
  ISRN_CHECK(c.das_max_area >= 1, "[augment] das_max_area ", c.das_max_area, " must be at least 1");
  ISRN_CHECK(c.das_accept_iou >= 0 && c.das_accept_iou <= 1, "[augment] das_accept_iou ", c.das_accept_iou,
             " is outside 0..1");
  ISRN_CHECK(c.min_face_size >= 0, "[augment] min_face_size ", c.min_face_size, " is negative");
}

// ---- Photometric ----------------------------------------------------------------------------------

Photometric draw_photometric(const AugmentConfig& c, Generator& rng) {
  Photometric p;
  if (rng.uniform() < c.brightness_prob) p.brightness = static_cast<float>(uniform(rng, -c.brightness_delta, c.brightness_delta));
  if (rng.uniform() < c.contrast_prob) p.contrast = static_cast<float>(uniform(rng, c.contrast_lower, c.contrast_upper));
  if (rng.uniform() < c.saturation_prob)
    p.saturation = static_cast<float>(uniform(rng, c.saturation_lower, c.saturation_upper));
  if (rng.uniform() < c.hue_prob) p.hue = static_cast<float>(uniform(rng, -c.hue_delta, c.hue_delta));
  p.contrast_last = rng.uniform() < c.contrast_last_prob;
  return p;
}

void apply_photometric(Image& image, const Photometric& p) {
  const bool brightness = p.brightness != 0, contrast = p.contrast != 1;
  const bool hsv = p.saturation != 1 || p.hue != 0;
  if (!brightness && !contrast && !hsv) return;
  auto scale = [&](float* c) {
    for (int i = 0; i < 3; ++i) c[i] = std::clamp(c[i] * p.contrast, 0.f, 255.f);
  };
  uint8_t* px = image.pixels.data();
  for (int64_t i = 0; i < image.height * image.width; ++i, px += 3) {
    float c[3] = {static_cast<float>(px[0]), static_cast<float>(px[1]), static_cast<float>(px[2])};
    if (brightness)
      for (float& v : c) v = std::clamp(v + p.brightness, 0.f, 255.f);
    if (contrast && !p.contrast_last) scale(c);
    if (hsv) {
      float h, s, v;
      rgb_to_hsv(c, h, s, v);
      s = std::min(1.f, s * p.saturation);
      h += p.hue;
      h -= 360 * std::floor(h / 360);  // hue wraps around the colour circle
      hsv_to_rgb(h, s, v, c);
    }
    if (contrast && p.contrast_last) scale(c);
    for (int k = 0; k < 3; ++k) px[k] = static_cast<uint8_t>(std::clamp(c[k], 0.f, 255.f) + 0.5f);
  }
}

// ---- Geometry -------------------------------------------------------------------------------------

Sample expand(const Sample& sample, int64_t height, int64_t width, int64_t top, int64_t left,
              const std::array<uint8_t, 3>& fill) {
  const Image& in = sample.image;
  ISRN_CHECK(top >= 0 && left >= 0 && top + in.height <= height && left + in.width <= width, "[expand] a ",
             in.height, "x", in.width, " image at (top ", top, ", left ", left, ") does not fit a ", height, "x",
             width, " canvas");
  Sample out;
  out.id = sample.id;
  out.image = Image(height, width);
  for (int64_t i = 0; i < height * width; ++i) std::copy(fill.begin(), fill.end(), out.image.pixels.data() + i * 3);
  for (int64_t y = 0; y < in.height; ++y) std::copy_n(in.at(y, 0), in.width * 3, out.image.at(top + y, left));
  const float dx = static_cast<float>(left), dy = static_cast<float>(top);
  for (const Box& b : sample.boxes) out.boxes.push_back({b.x1 + dx, b.y1 + dy, b.x2 + dx, b.y2 + dy});
  return out;
}

Sample random_expand(const Sample& sample, const AugmentConfig& c, Generator& rng) {
  if (!(rng.uniform() < c.expand_prob)) return sample;
  const double ratio = uniform(rng, 1.0, c.expand_max_ratio);
  const int64_t H = sample.image.height, W = sample.image.width;
  const int64_t height = std::max(H, static_cast<int64_t>(static_cast<double>(H) * ratio));
  const int64_t width = std::max(W, static_cast<int64_t>(static_cast<double>(W) * ratio));
  const int64_t top = integer(rng, 0, height - H);
  const int64_t left = integer(rng, 0, width - W);
  return expand(sample, height, width, top, left, c.mean_pixel);
}

bool centre_inside(const Box& box, const Window& w) {
  const float cx = 0.5f * (box.x1 + box.x2), cy = 0.5f * (box.y1 + box.y2);
  return cx > static_cast<float>(w.left) && cx < static_cast<float>(w.left + w.width) &&
         cy > static_cast<float>(w.top) && cy < static_cast<float>(w.top + w.height);
}

Sample crop(const Sample& sample, const Window& window, const std::array<uint8_t, 3>& fill) {
  check_window(window, "crop");
  const Image& in = sample.image;
  Sample out;
  out.id = sample.id;
  out.image = Image(window.height, window.width);
  for (int64_t y = 0; y < window.height; ++y) {
    const int64_t sy = window.top + y;
    for (int64_t x = 0; x < window.width; ++x) {
      const int64_t sx = window.left + x;
      const bool inside = sy >= 0 && sy < in.height && sx >= 0 && sx < in.width;
      std::copy_n(inside ? in.at(sy, sx) : fill.data(), 3, out.image.at(y, x));
    }
  }
  out.boxes = boxes_in_window(sample.boxes, window);
  return out;
}

Sample random_square_crop(const Sample& sample, const AugmentConfig& c, Generator& rng) {
  const int64_t H = sample.image.height, W = sample.image.width, shorter = std::min(H, W);
  if (shorter <= 0) return sample;
  for (int attempt = 0; attempt < c.crop_max_tries; ++attempt) {
    int64_t side = shorter;
    if (!(rng.uniform() < c.full_side_crop_prob))
      side = std::max<int64_t>(1, static_cast<int64_t>(uniform(rng, c.min_crop_scale, 1.0) * static_cast<double>(shorter)));
    const Window window{integer(rng, 0, W - side), integer(rng, 0, H - side), side, side};
    // Without boxes there is nothing to lose: the first patch is as good as any.
    const bool keeps = sample.boxes.empty() || std::any_of(sample.boxes.begin(), sample.boxes.end(),
                                                           [&](const Box& b) { return centre_inside(b, window); });
    if (keeps) return crop(sample, window, c.mean_pixel);
  }
  return sample;
}

Sample flip(const Sample& sample) {
  Sample out;
  out.id = sample.id;
  out.image = flip_horizontal(sample.image);
  const float W = static_cast<float>(sample.image.width);
  for (const Box& b : sample.boxes) out.boxes.push_back({W - b.x2, b.y1, W - b.x1, b.y2});
  return out;
}

Sample random_flip(const Sample& sample, const AugmentConfig& c, Generator& rng) {
  return rng.uniform() < c.flip_prob ? flip(sample) : sample;
}

Sample resize_to(const Sample& sample, int64_t size) {
  ISRN_CHECK(size > 0, "[resize_to] size ", size, " must be positive");
  ISRN_CHECK(!sample.image.empty(), "[resize_to] ", sample.id, ": empty image");
  Sample out;
  out.id = sample.id;
  out.image = resize_bilinear(sample.image, size, size);
  const double sx = static_cast<double>(size) / static_cast<double>(sample.image.width);
  const double sy = static_cast<double>(size) / static_cast<double>(sample.image.height);
  for (const Box& b : sample.boxes) out.boxes.push_back(scale_box(b, sx, sy));
  return out;
}

// ---- Data-anchor-sampling -------------------------------------------------------------------------

double das_scale(float face_size, int64_t height, int64_t width, const AugmentConfig& c, Generator& rng) {
  ISRN_CHECK(std::isfinite(face_size) && face_size > 0, "[das_scale] face size ", face_size, " must be positive");
  const std::vector<float>& anchors = c.das_anchor_sizes;
  ISRN_CHECK(!anchors.empty(), "[das_scale] das_anchor_sizes is empty");
  size_t nearest = 0;
  for (size_t i = 1; i < anchors.size(); ++i)
    if (std::abs(anchors[i] - face_size) < std::abs(anchors[nearest] - face_size)) nearest = i;
  const size_t target = static_cast<size_t>(integer(rng, 0, static_cast<int64_t>(std::min(anchors.size() - 1, nearest + 1))));
  // SPEC §10.2 step 4 draws the target size uniformly; the PyTorch ports draw its log uniformly
  // (anchor · 2^U[−1, 1]) over the same range.
  const double size = uniform(rng, 0.5 * anchors[target], 2.0 * anchors[target]);
  double scale = size / face_size;
  const double area = static_cast<double>(height) * static_cast<double>(width);
  if (area * scale * scale > c.das_max_area) scale = std::sqrt(c.das_max_area / area);
  return scale;
}

bool das_accepts(const std::vector<Box>& boxes, const Window& w, float iou) {
  const float l = static_cast<float>(w.left), t = static_cast<float>(w.top);
  const float r = static_cast<float>(w.left + w.width), b = static_cast<float>(w.top + w.height);
  const float patch_area = (r - l) * (b - t);
  for (const Box& box : boxes) {
    if (!positive(box)) continue;  // a degenerate box is no face to anchor a patch on
    if (box.x1 >= l && box.y1 >= t && box.x2 <= r && box.y2 <= b) return true;
    const float inter = std::max(0.f, std::min(box.x2, r) - std::max(box.x1, l)) *
                        std::max(0.f, std::min(box.y2, b) - std::max(box.y1, t));
    if (inter / (box.width() * box.height() + patch_area - inter) > iou) return true;
  }
  return false;
}

Sample scale_and_crop(const Sample& sample, double scale, const Window& window, const std::array<uint8_t, 3>& fill) {
  check_window(window, "scale_and_crop");
  ISRN_CHECK(std::isfinite(scale) && scale > 0, "[scale_and_crop] scale ", scale, " must be positive");
  ISRN_CHECK(!sample.image.empty(), "[scale_and_crop] ", sample.id, ": empty image");
  const int64_t H = sample.image.height, W = sample.image.width;
  const int64_t h = scaled_extent(H, scale), w = scaled_extent(W, scale);
  Sample out;
  out.id = sample.id;
  out.image = resize_window_bilinear(sample.image, h, w, window.top, window.left, window.height, window.width, fill);
  // The exact per-axis factors of the rounded size, which is what the pixels were resized by.
  const double sx = static_cast<double>(w) / static_cast<double>(W), sy = static_cast<double>(h) / static_cast<double>(H);
  std::vector<Box> scaled;
  for (const Box& b : sample.boxes) scaled.push_back(scale_box(b, sx, sy));
  out.boxes = boxes_in_window(scaled, window);
  return out;
}

Sample data_anchor_sample(const Sample& sample, const AugmentConfig& c, Generator& rng) {
  std::vector<size_t> faces;
  for (size_t i = 0; i < sample.boxes.size(); ++i)
    if (positive(sample.boxes[i])) faces.push_back(i);
  if (faces.empty() || sample.image.empty()) return sample;
  const Box& face = sample.boxes[faces[static_cast<size_t>(integer(rng, 0, static_cast<int64_t>(faces.size()) - 1))]];
  const int64_t H = sample.image.height, W = sample.image.width;
  const double scale = das_scale(std::sqrt(face.width() * face.height()), H, W, c, rng);
  const int64_t h = scaled_extent(H, scale), w = scaled_extent(W, scale);
  const double sx = static_cast<double>(w) / static_cast<double>(W), sy = static_cast<double>(h) / static_cast<double>(H);
  std::vector<Box> scaled;
  for (const Box& b : sample.boxes) scaled.push_back(scale_box(b, sx, sy));
  const Box f = scale_box(face, sx, sy);
  for (int attempt = 0; attempt < c.das_max_tries; ++attempt) {
    const int64_t left = das_offset(rng, w, f.x1, f.x2, c.size);
    const int64_t top = das_offset(rng, h, f.y1, f.y2, c.size);
    const Window window{left, top, c.size, c.size};
    if (das_accepts(scaled, window, c.das_accept_iou)) return scale_and_crop(sample, scale, window, c.mean_pixel);
  }
  // No acceptable patch: the sample as it came (rather than the rescaled image, which may be as large
  // as das_max_area and would only be shrunk back by the final resize).
  return sample;
}

void drop_small_boxes(std::vector<Box>& boxes, float min_size) {
  std::erase_if(boxes, [min_size](const Box& b) {
    return !(b.width() > 0 && b.height() > 0 && b.width() >= min_size && b.height() >= min_size);
  });
}

// ---- The pipeline -----------------------------------------------------------------------------------

Sample augment(const Sample& sample, const AugmentConfig& c, Generator& rng) {
  validate(c);
  ISRN_CHECK(!sample.image.empty(), "[augment] ", sample.id, ": empty image");
  Sample s = sample;
  apply_photometric(s.image, draw_photometric(c, rng));
  const bool has_face = std::any_of(s.boxes.begin(), s.boxes.end(), positive);
  if (has_face && rng.uniform() < c.das_prob) {
    s = data_anchor_sample(s, c, rng);
  } else {
    s = random_expand(s, c, rng);
    s = random_square_crop(s, c, rng);
  }
  s = random_flip(s, c, rng);
  if (s.image.height != c.size || s.image.width != c.size) s = resize_to(s, c.size);
  drop_small_boxes(s.boxes, c.min_face_size);
  return s;
}

}  // namespace isrn::data
