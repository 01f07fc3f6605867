// Box outlines, text and detection overlays: exact pixel sets, clipping, and the label rules.
#include "isrn/data/draw.hpp"
#include "test_util.hpp"

using namespace isrn;
using data::Box;
using data::Color;
using data::Image;

namespace {

constexpr Color kRed{255, 0, 0};
constexpr Color kGrey{40, 40, 40};

bool has(const Image& im, int64_t y, int64_t x, Color c) {
  const uint8_t* p = im.at(y, x);
  return p[0] == c.r && p[1] == c.g && p[2] == c.b;
}

// The painted pixels of `im` (those not equal to the background `bg`), as a mask.
std::vector<bool> painted(const Image& im, Color bg) {
  std::vector<bool> mask(static_cast<size_t>(im.height * im.width));
  for (int64_t y = 0; y < im.height; ++y)
    for (int64_t x = 0; x < im.width; ++x) mask[static_cast<size_t>(y * im.width + x)] = !has(im, y, x, bg);
  return mask;
}

Image flat(int64_t h, int64_t w, Color c) {
  Image im(h, w);
  for (int64_t i = 0; i < h * w; ++i) {
    im.pixels[static_cast<size_t>(3 * i)] = c.r;
    im.pixels[static_cast<size_t>(3 * i + 1)] = c.g;
    im.pixels[static_cast<size_t>(3 * i + 2)] = c.b;
  }
  return im;
}

}  // namespace

TEST_CASE("draw: box outlines are exactly `thickness` pixels wide, inside the box, clipped to the image") {
  struct Case {
    Box box;
    int thickness;
  };
  const std::vector<Case> cases = {
      {{5, 4, 17, 13}, 2},          {{5.4f, 3.6f, 16.6f, 13.2f}, 1},  // rounding to the nearest pixel edge
      {{-6, -3, 10, 8}, 3},         {{12, 9, 40, 30}, 2},              // leaving the image on two sides
      {{3, 3, 6, 5}, 4},            {{-1e30f, 2, 1e30f, 6}, 1},        // thicker than the box; huge corners
      {{30, 30, 40, 40}, 2},        {{7, 7, 7, 12}, 2},                // entirely outside; empty
  };
  for (const Case& c : cases) {
    CAPTURE(c.box.x1);
    CAPTURE(c.box.y1);
    CAPTURE(c.thickness);
    Image im = flat(20, 25, kGrey);
    data::draw_box(im, c.box, kRed, c.thickness);
    const double x1 = std::round(std::max(-1e9, double(c.box.x1))), x2 = std::round(std::min(1e9, double(c.box.x2)));
    const double y1 = std::round(c.box.y1), y2 = std::round(c.box.y2);
    for (int64_t y = 0; y < 20; ++y)
      for (int64_t x = 0; x < 25; ++x) {
        const bool inside = x >= x1 && x < x2 && y >= y1 && y < y2;
        const bool near_edge = x < x1 + c.thickness || x >= x2 - c.thickness || y < y1 + c.thickness ||
                               y >= y2 - c.thickness;
        const Color want = inside && near_edge ? kRed : kGrey;
        if (!has(im, y, x, want)) {
          FAIL_CHECK("pixel (", y, ", ", x, ") is wrong");
          return;
        }
      }
  }
  Image im = flat(4, 4, kGrey);
  CHECK_THROWS_WITH_AS(data::draw_box(im, {0, 0, 2, 2}, kRed, 0), doctest::Contains("[draw_box] thickness 0"), Error);
  CHECK_THROWS_WITH_AS(data::draw_box(im, {0, 0, NAN, 2}, kRed, 1), doctest::Contains("non-finite"), Error);
  data::fill_rect(im, 3, 3, 1, 1, kRed);  // reversed corners: empty
  CHECK(im.pixels == flat(4, 4, kGrey).pixels);
}

TEST_CASE("draw: text strokes stay inside text_size and scale by whole pixels") {
  for (const std::string text : {"0.93", "1.00", "face", "A\nB"}) {
    CAPTURE(text);
    const data::TextSize one = data::text_size(text, 1), three = data::text_size(text, 3);
    REQUIRE(one.width > 0);
    REQUIRE(one.height > 0);
    CHECK(three.width == 3 * one.width);
    CHECK(three.height == 3 * one.height);
    Image a = flat(40, 60, kGrey), b = flat(40 * 3, 60 * 3, kGrey);
    data::draw_text(a, text, 5, 7, kRed, 1);
    data::draw_text(b, text, 15, 21, kRed, 3);
    int64_t count = 0;
    int64_t max_x = -1, max_y = -1, min_x = 1 << 20, min_y = 1 << 20;
    for (int64_t y = 0; y < 40; ++y)
      for (int64_t x = 0; x < 60; ++x) {
        if (has(a, y, x, kGrey)) continue;
        REQUIRE(has(a, y, x, kRed));
        ++count;
        min_x = std::min(min_x, x), max_x = std::max(max_x, x), min_y = std::min(min_y, y), max_y = std::max(max_y, y);
        // At scale 3 each font pixel is a 3 × 3 block at three times the position.
        for (int dy = 0; dy < 3; ++dy)
          for (int dx = 0; dx < 3; ++dx) REQUIRE(has(b, 3 * y + dy, 3 * x + dx, kRed));
      }
    CHECK(count > 4);
    CHECK(min_x >= 5);
    CHECK(min_y >= 7);
    // The measured size is the strokes' extent: the last painted column/row is exactly at its edge.
    CHECK(max_x == 5 + one.width - 1);
    CHECK(max_y == 7 + one.height - 1);
    // Same number of painted pixels at scale 3: nine per font pixel.
    int64_t count3 = 0;
    for (bool p : painted(b, kGrey)) count3 += p;
    CHECK(count3 == 9 * count);
  }
  // Different text gives different strokes; unprintable characters draw as '?' instead of reading
  // outside the font's tables.
  Image p = flat(20, 40, kGrey), q = flat(20, 40, kGrey), r = flat(20, 40, kGrey);
  data::draw_text(p, "0.93", 1, 1, kRed);
  data::draw_text(q, "0.39", 1, 1, kRed);
  CHECK(p.pixels != q.pixels);
  data::draw_text(p = flat(20, 40, kGrey), "a\x01\xff", 1, 1, kRed);
  data::draw_text(r, "a??", 1, 1, kRed);
  CHECK(p.pixels == r.pixels);
  // Text running off the image is clipped, not an error.
  Image small = flat(5, 5, kGrey);
  data::draw_text(small, "0.93", 2, -3, kRed, 2);
  CHECK(data::text_size("", 1).width == 0);
  CHECK_THROWS_WITH_AS(data::draw_text(small, "x", 0, 0, kRed, 0), doctest::Contains("[draw_text] scale 0"), Error);
}

TEST_CASE("draw: draw_detections draws the boxes at or above the threshold, each with its score label") {
  const std::vector<Box> boxes = {{30, 40, 70, 90}, {100, 30, 140, 80}, {20, 2, 60, 30}};
  const std::vector<float> scores = {0.93f, 0.2f, 0.5f};
  data::DetectionStyle style;
  Image im = flat(120, 160, kGrey);
  data::draw_detections(im, boxes, scores, 0.5f, style);

  // Box 0 has room above it: its outline is as draw_box draws it and its label sits just above.
  Image only_box = flat(120, 160, kGrey);
  data::draw_box(only_box, boxes[0], style.box, style.thickness);
  for (int64_t y = 40; y < 90; ++y)
    for (int64_t x = 30; x < 70; ++x) REQUIRE(has(im, y, x, kGrey) == has(only_box, y, x, kGrey));
  const data::TextSize label = data::text_size("0.93", style.text_scale);
  const int64_t label_h = label.height + 2 * style.text_scale;
  CHECK(has(im, 40 - label_h, 30, style.box));             // label background, top left
  CHECK(has(im, 39, 30 + label.width + 1, style.box));     // bottom right
  CHECK(has(im, 40 - label_h - 1, 30, kGrey));             // nothing above the label
  int64_t text_pixels = 0;
  for (int64_t y = 40 - label_h; y < 40; ++y)
    for (int64_t x = 30; x < 30 + label.width + 2; ++x) text_pixels += has(im, y, x, style.label_text);
  // The label holds exactly the strokes of "0.93".
  Image text = flat(30, 60, kGrey);
  data::draw_text(text, "0.93", 0, 0, style.label_text, style.text_scale);
  int64_t want_text = 0;
  for (bool p : painted(text, kGrey)) want_text += p;
  CHECK(text_pixels == want_text);

  // Box 1 is below the threshold: nothing of it is drawn.
  for (int64_t y = 30; y < 80; ++y)
    for (int64_t x = 100; x < 140; ++x) REQUIRE(has(im, y, x, kGrey));
  // Box 2 has no room above (y1 = 2): the label goes inside the box, from its top edge down.
  CHECK(has(im, 2, 20, style.box));
  CHECK(has(im, 2 + label_h - 1, 20 + 1, style.box));

  CHECK_THROWS_WITH_AS(data::draw_detections(im, boxes, {0.1f}, 0.5f),
                       doctest::Contains("[draw_detections] 3 boxes but 1 scores"), Error);
  Image before = im;
  data::draw_detections(im, {}, {}, 0.0f);
  data::draw_detections(im, boxes, {NAN, NAN, NAN}, 0.0f);
  CHECK(im.pixels == before.pixels);
}
