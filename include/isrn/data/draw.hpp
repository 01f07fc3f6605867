#pragma once
// Drawing on images for the pictures people look at: box outlines, small text (detection scores) and
// both together for a detector's output. Everything is clipped to the image, so boxes that leave it
// (or lie entirely outside) are safe to draw.
#include <cstdint>
#include <string>
#include <vector>

#include "isrn/data/image.hpp"
#include "isrn/data/sample.hpp"

namespace isrn::data {

struct Color {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Color&) const = default;
};

// Every pixel of [x1, x2) × [y1, y2) (integer corners, any order of magnitude, clipped to the image).
void fill_rect(Image& image, int64_t x1, int64_t y1, int64_t x2, int64_t y2, Color color);

// The outline of `box`, `thickness` pixels wide and drawn inward, so the outline stays inside the
// labelled area. The corners are rounded to the nearest pixel edge: a box (x1, y1, x2, y2) covers the
// pixels [round(x1), round(x2)) × [round(y1), round(y2)), the convention of Box (x2 = x + w).
void draw_box(Image& image, const Box& box, Color color, int thickness = 2);

// Text in stb_easy_font's 1-pixel-stroke font, each font pixel a scale × scale block; (x, y) is the top
// left corner. Characters outside printable ASCII are drawn as '?'; '\n' starts a new line.
void draw_text(Image& image, const std::string& text, int64_t x, int64_t y, Color color, int scale = 1);

// The extent of draw_text's strokes for `text` at `scale`, measured from (x, y).
struct TextSize {
  int64_t width = 0, height = 0;
};
TextSize text_size(const std::string& text, int scale = 1);

// Each box whose score is at least `threshold`, outlined, with its score ("0.93") on a filled label
// above it (inside the box top when there is no room above). Lower scores are drawn first so that the
// labels of the best boxes stay readable where boxes overlap.
struct DetectionStyle {
  Color box{0, 255, 0};
  Color label_text{0, 0, 0};
  int thickness = 2;
  int text_scale = 1;
};
void draw_detections(Image& image, const std::vector<Box>& boxes, const std::vector<float>& scores, float threshold,
                     const DetectionStyle& style = {});

}  // namespace isrn::data
