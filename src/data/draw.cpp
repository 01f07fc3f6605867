#include "isrn/data/draw.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "isrn/core/error.hpp"

// stb_easy_font is all static functions; the ones not used here would warn.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace isrn::data {

void fill_rect(Image& image, int64_t x1, int64_t y1, int64_t x2, int64_t y2, Color color) {
  x1 = std::clamp<int64_t>(x1, 0, image.width);
  x2 = std::clamp<int64_t>(x2, 0, image.width);
  y1 = std::clamp<int64_t>(y1, 0, image.height);
  y2 = std::clamp<int64_t>(y2, 0, image.height);
  for (int64_t y = y1; y < y2; ++y)
    for (int64_t x = x1; x < x2; ++x) {
      uint8_t* p = image.at(y, x);
      p[0] = color.r;
      p[1] = color.g;
      p[2] = color.b;
    }
}

void draw_box(Image& image, const Box& box, Color color, int thickness) {
  ISRN_CHECK(thickness >= 1, "[draw_box] thickness ", thickness, " must be positive");
  ISRN_CHECK(std::isfinite(box.x1) && std::isfinite(box.y1) && std::isfinite(box.x2) && std::isfinite(box.y2),
             "[draw_box] box (", box.x1, ", ", box.y1, ", ", box.x2, ", ", box.y2, ") has a non-finite corner");
  // Corners far outside the image are pulled in to just beyond the reach of the outline: what is drawn
  // stays the same, and the rounding below cannot overflow.
  const double t = thickness;
  auto edge = [t](float v, int64_t size) {
    return static_cast<int64_t>(std::lround(std::clamp(static_cast<double>(v), -t - 1, static_cast<double>(size) + t + 1)));
  };
  const int64_t x1 = edge(box.x1, image.width), x2 = edge(box.x2, image.width);
  const int64_t y1 = edge(box.y1, image.height), y2 = edge(box.y2, image.height);
  if (x2 <= x1 || y2 <= y1) return;
  fill_rect(image, x1, y1, x2, std::min(y1 + thickness, y2), color);
  fill_rect(image, x1, std::max(y2 - thickness, y1), x2, y2, color);
  fill_rect(image, x1, y1, std::min(x1 + thickness, x2), y2, color);
  fill_rect(image, std::max(x2 - thickness, x1), y1, x2, y2, color);
}

namespace {

struct Stroke {
  int64_t x1, y1, x2, y2;
};

// The font's strokes for `text` in font pixels (stb_easy_font emits each as an axis-aligned quad with
// integer corners, four vertices of 16 bytes: x, y, z as floats and a colour).
std::vector<Stroke> strokes(const std::string& text) {
  // stb_easy_font indexes its tables by character − 32 and knows nothing beyond '~'.
  std::string printable = text;
  for (char& c : printable)
    if (c != '\n' && (c < 32 || c > 126)) c = '?';
  // The widest glyphs use fewer than 32 segments; each segment is one 64-byte quad.
  std::vector<char> buffer(64 * 32 * (printable.size() + 1));
  const int quads = stb_easy_font_print(0, 0, printable.data(), nullptr, buffer.data(), static_cast<int>(buffer.size()));
  std::vector<Stroke> out(static_cast<size_t>(quads));
  for (int q = 0; q < quads; ++q) {
    const float* v0 = reinterpret_cast<const float*>(buffer.data() + q * 64);
    const float* v2 = reinterpret_cast<const float*>(buffer.data() + q * 64 + 32);
    out[static_cast<size_t>(q)] = {std::lround(v0[0]), std::lround(v0[1]), std::lround(v2[0]), std::lround(v2[1])};
  }
  return out;
}

}  // namespace

void draw_text(Image& image, const std::string& text, int64_t x, int64_t y, Color color, int scale) {
  ISRN_CHECK(scale >= 1, "[draw_text] scale ", scale, " must be positive");
  for (const Stroke& s : strokes(text))
    fill_rect(image, x + s.x1 * scale, y + s.y1 * scale, x + s.x2 * scale, y + s.y2 * scale, color);
}

TextSize text_size(const std::string& text, int scale) {
  ISRN_CHECK(scale >= 1, "[text_size] scale ", scale, " must be positive");
  TextSize size;
  for (const Stroke& s : strokes(text)) {
    size.width = std::max(size.width, s.x2 * scale);
    size.height = std::max(size.height, s.y2 * scale);
  }
  return size;
}

void draw_detections(Image& image, const std::vector<Box>& boxes, const std::vector<float>& scores, float threshold,
                     const DetectionStyle& style) {
  ISRN_CHECK(boxes.size() == scores.size(), "[draw_detections] ", boxes.size(), " boxes but ", scores.size(),
             " scores");
  std::vector<size_t> order(boxes.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  const int64_t pad = style.text_scale;
  for (size_t i : order) {
    if (!(scores[i] >= threshold)) continue;  // NaN scores are not drawn
    const Box& box = boxes[i];
    draw_box(image, box, style.box, style.thickness);
    char label[32];
    std::snprintf(label, sizeof label, "%.2f", static_cast<double>(scores[i]));
    const TextSize size = text_size(label, style.text_scale);
    const int64_t w = size.width + 2 * pad, h = size.height + 2 * pad;
    const int64_t x = std::lround(std::clamp(static_cast<double>(box.x1), -1e9, 1e9));
    const int64_t top = std::lround(std::clamp(static_cast<double>(box.y1), -1e9, 1e9));
    const int64_t y = top - h >= 0 ? top - h : top;
    fill_rect(image, x, y, x + w, y + h, style.box);
    draw_text(image, label, x + pad, y + pad, style.label_text, style.text_scale);
  }
}

}  // namespace isrn::data
