// Augmentation (SPEC §10): every geometric transform keeps each box on the pixels that were inside it,
// the keep rules on hand-made cases, photometric distortion against a double-precision reference, the
// data-anchor-sampling scale distribution, determinism, and samples without faces.
#include <algorithm>
#include <cmath>
#include <optional>

#include "isrn/data/augment.hpp"
#include "test_util.hpp"

using namespace isrn;
using namespace isrn::data;

namespace {

using Rgb8 = std::array<uint8_t, 3>;

constexpr Rgb8 kBackground{20, 90, 200};
constexpr Rgb8 kFill{124, 116, 104};  // AugmentConfig's default mean pixel

// A flat background with each box's pixels [x1, x2) × [y1, y2) painted a colour of its own.
struct Painted {
  Sample sample;
  std::vector<Rgb8> colours;
};

Painted painted(int64_t height, int64_t width, const std::vector<Box>& boxes) {
  Painted p;
  p.sample.image = Image(height, width);
  for (int64_t i = 0; i < height * width; ++i) std::copy(kBackground.begin(), kBackground.end(), p.sample.image.pixels.data() + i * 3);
  for (size_t k = 0; k < boxes.size(); ++k) {
    const Rgb8 c{static_cast<uint8_t>(230 - 23 * k), static_cast<uint8_t>(20 + 37 * k), static_cast<uint8_t>(60 + 71 * k)};
    p.colours.push_back(c);
    for (int64_t y = static_cast<int64_t>(boxes[k].y1); y < static_cast<int64_t>(boxes[k].y2); ++y)
      for (int64_t x = static_cast<int64_t>(boxes[k].x1); x < static_cast<int64_t>(boxes[k].x2); ++x)
        std::copy(c.begin(), c.end(), p.sample.image.at(y, x));
  }
  p.sample.boxes = boxes;
  p.sample.id = "test/painted";
  return p;
}

// Boxes apart from each other and from the border, sizes 9..40, on a 120 × 160 image.
Painted standard_painting() {
  return painted(120, 160, {{10, 12, 40, 52}, {60, 20, 75, 31}, {100, 60, 140, 100}, {20, 80, 29, 90}, {85, 90, 97, 112}});
}

bool is(const Image& im, int64_t y, int64_t x, const Rgb8& c) {
  const uint8_t* p = im.at(y, x);
  return p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
}

// The resampling margin for a resize by `scale`: bilinear mixes across one source pixel, which is
// `scale` output pixels wide, half of it inside the box; plus one pixel for box corners that are not
// whole pixels. So 2 px for shrinking and for scales up to 2, more only for larger upscales.
double margin_for(double scale) { return 1 + std::ceil(std::max(1.0, scale) / 2); }

// "A box drawn before the transform lands on the same pixels after it": for every output box, the input
// box whose colour is at its centre; every pixel at least `margin` inside the output box has that colour,
// and every pixel of that exact colour lies within `margin` of the output box. No two output boxes come
// from the same input box. Without a margin, it is margin_for(the scale seen on the boxes: the largest
// output/input size ratio, as clipping only shrinks a box). Returns, per output box, the input box index.
std::vector<size_t> check_boxes_follow_pixels(const Painted& in, const Sample& out,
                                              std::optional<double> margin = std::nullopt) {
  std::vector<size_t> source;
  const Image& im = out.image;
  double scale = 0;
  for (const Box& b : out.boxes) {
    CAPTURE(b.x1);
    CAPTURE(b.y1);
    CAPTURE(b.x2);
    CAPTURE(b.y2);
    REQUIRE(b.width() > 0);
    REQUIRE(b.height() > 0);
    const int64_t cx = std::clamp<int64_t>(static_cast<int64_t>(0.5f * (b.x1 + b.x2)), 0, im.width - 1);
    const int64_t cy = std::clamp<int64_t>(static_cast<int64_t>(0.5f * (b.y1 + b.y2)), 0, im.height - 1);
    size_t k = in.colours.size();
    for (size_t i = 0; i < in.colours.size(); ++i)
      if (is(im, cy, cx, in.colours[i])) k = i;
    REQUIRE_MESSAGE(k < in.colours.size(), "the centre of an output box holds no box colour");
    REQUIRE(std::find(source.begin(), source.end(), k) == source.end());
    source.push_back(k);
    const Box& a = in.sample.boxes[k];
    scale = std::max({scale, static_cast<double>(b.width() / a.width()), static_cast<double>(b.height() / a.height())});
  }
  const double m = margin ? *margin : margin_for(scale);
  CAPTURE(m);
  for (size_t j = 0; j < out.boxes.size(); ++j) {
    const Box& b = out.boxes[j];
    const Rgb8& colour = in.colours[source[j]];
    for (int64_t y = 0; y < im.height; ++y)
      for (int64_t x = 0; x < im.width; ++x) {
        const bool deep = x >= b.x1 + m && x + 1 <= b.x2 - m && y >= b.y1 + m && y + 1 <= b.y2 - m;
        const bool near = x + 1 > b.x1 - m && x < b.x2 + m && y + 1 > b.y1 - m && y < b.y2 + m;
        const bool coloured = is(im, y, x, colour);
        if (deep && !coloured) {
          FAIL_CHECK("pixel (", y, ", ", x, ") inside output box ", j, " lost its colour");
          return source;
        }
        if (coloured && !near) {
          FAIL_CHECK("pixel (", y, ", ", x, ") of input box ", source[j], "'s colour lies outside output box ", j);
          return source;
        }
      }
  }
  return source;
}

AugmentConfig no_photometric(AugmentConfig c = {}) {
  c.brightness_prob = c.contrast_prob = c.saturation_prob = c.hue_prob = 0;
  return c;
}

// Naive reference of one photometric pixel in double precision (HSV by the textbook formulas).
std::array<double, 3> reference_pixel(const uint8_t* px, const Photometric& p) {
  std::array<double, 3> c{double(px[0]), double(px[1]), double(px[2])};
  auto clamp255 = [](double v) { return std::min(255.0, std::max(0.0, v)); };
  auto contrast = [&] {
    for (double& v : c) v = clamp255(v * p.contrast);
  };
  for (double& v : c) v = clamp255(v + p.brightness);
  if (!p.contrast_last) contrast();
  if (p.saturation != 1 || p.hue != 0) {
    const double mx = std::max({c[0], c[1], c[2]}), mn = std::min({c[0], c[1], c[2]}), d = mx - mn;
    double h = 0;
    if (d > 0) {
      if (mx == c[0]) h = std::fmod(60 * (c[1] - c[2]) / d + 360, 360);
      else if (mx == c[1]) h = 60 * (c[2] - c[0]) / d + 120;
      else h = 60 * (c[0] - c[1]) / d + 240;
    }
    double s = mx > 0 ? d / mx : 0;
    s = std::min(1.0, s * p.saturation);
    h = std::fmod(std::fmod(h + p.hue, 360) + 360, 360);
    const double chroma = mx * s, hp = h / 60, x = chroma * (1 - std::abs(std::fmod(hp, 2) - 1)), m = mx - chroma;
    const int sector = std::min(5, static_cast<int>(hp));
    const double table[6][3] = {{chroma, x, 0}, {x, chroma, 0}, {0, chroma, x}, {0, x, chroma}, {x, 0, chroma}, {chroma, 0, x}};
    for (int i = 0; i < 3; ++i) c[i] = table[sector][i] + m;
  }
  if (p.contrast_last) contrast();
  return c;
}

Image random_image(int64_t h, int64_t w, uint64_t seed) {
  Image im(h, w);
  Generator gen(seed);
  for (auto& p : im.pixels) p = static_cast<uint8_t>(gen.next_u64() & 0xff);
  return im;
}

}  // namespace

TEST_CASE("augment: expand, crop, flip, resize and scale_and_crop keep each box on its pixels") {
  const Painted p = standard_painting();
  SUBCASE("expand: an integer shift, exact") {
    const Sample out = expand(p.sample, 150, 230, 17, 41, kFill);
    CHECK(out.image.height == 150);
    CHECK(out.image.width == 230);
    CHECK(check_boxes_follow_pixels(p, out, 0).size() == 5);
    CHECK(is(out.image, 0, 0, kFill));
    CHECK(is(out.image, 149, 229, kFill));
    CHECK(is(out.image, 17, 41, kBackground));
    CHECK_THROWS_WITH_AS(expand(p.sample, 150, 230, 40, 41, kFill), doctest::Contains("[expand] a 120x160 image"), Error);
  }
  SUBCASE("crop: windows inside, across boxes and beyond the image, exact") {
    struct Case {
      Window w;
      size_t kept;
    };
    for (const Case& c : std::vector<Case>{{{0, 0, 160, 120}, 5},
                                          {{30, 25, 100, 70}, 2},  // box 2 clipped at the right
                                          {{15, 20, 100, 90}, 4},  // box 0 clipped at the left, box 4 at the bottom
                                          {{-20, -30, 200, 180}, 5},
                                          {{50, 0, 60, 40}, 1}}) {
      CAPTURE(c.w.left);
      CAPTURE(c.w.top);
      const Sample out = crop(p.sample, c.w, kFill);
      CHECK(out.image.height == c.w.height);
      CHECK(out.image.width == c.w.width);
      CHECK(out.boxes.size() == c.kept);
      check_boxes_follow_pixels(p, out, 0);
      for (const Box& b : out.boxes) {  // clipped to the window
        CHECK(b.x1 >= 0);
        CHECK(b.y1 >= 0);
        CHECK(b.x2 <= static_cast<float>(c.w.width));
        CHECK(b.y2 <= static_cast<float>(c.w.height));
      }
    }
    CHECK(is(crop(p.sample, {-20, -30, 200, 180}, kFill).image, 0, 0, kFill));
  }
  SUBCASE("flip: exact, and twice is the identity") {
    const Sample out = flip(p.sample);
    CHECK(check_boxes_follow_pixels(p, out, 0) == std::vector<size_t>{0, 1, 2, 3, 4});
    const Sample back = flip(out);
    CHECK(back.image.pixels == p.sample.image.pixels);
    CHECK(back.boxes == p.sample.boxes);
  }
  SUBCASE("resize_to: down and up, non-square to square") {
    for (int64_t size : {64, 97, 300}) {
      CAPTURE(size);
      const Sample out = resize_to(p.sample, size);
      CHECK(out.image.height == size);
      CHECK(out.image.width == size);
      const double scale = std::max(size / 120.0, size / 160.0);
      CHECK(check_boxes_follow_pixels(p, out, margin_for(scale)).size() == 5);
    }
  }
  SUBCASE("scale_and_crop: the window of a rescaled image") {
    struct Case {
      double scale;
      Window w;
    };
    for (const Case& c : std::vector<Case>{{2.7, {50, 40, 200, 200}}, {0.4, {-10, -5, 80, 80}}, {1.0, {0, 0, 160, 120}},
                                          {3.3, {300, 180, 256, 256}}}) {
      CAPTURE(c.scale);
      const Sample out = scale_and_crop(p.sample, c.scale, c.w, kFill);
      CHECK(out.image.height == c.w.height);
      CHECK(out.image.width == c.w.width);
      check_boxes_follow_pixels(p, out, margin_for(c.scale));
      // The same as cropping the fully resized image.
      const int64_t h = std::llround(120 * c.scale), w = std::llround(160 * c.scale);
      Sample resized;
      resized.image = resize_bilinear(p.sample.image, h, w);
      for (const Box& b : p.sample.boxes)
        resized.boxes.push_back({b.x1 * float(w) / 160, b.y1 * float(h) / 120, b.x2 * float(w) / 160, b.y2 * float(h) / 120});
      const Sample reference = crop(resized, c.w, kFill);
      CHECK(out.image.pixels == reference.image.pixels);
      CHECK(out.boxes.size() == reference.boxes.size());
    }
  }
}

TEST_CASE("augment: the random transforms keep each box on its pixels, for many draws") {
  const Painted p = standard_painting();
  AugmentConfig config = no_photometric();
  config.size = 200;
  config.expand_prob = 1;
  for (uint64_t seed = 0; seed < 25; ++seed) {
    CAPTURE(seed);
    Generator rng(seed);
    const Sample expanded = random_expand(p.sample, config, rng);
    CHECK(expanded.image.height >= 120);
    CHECK(expanded.image.height <= 240);
    CHECK(expanded.boxes.size() == 5);
    check_boxes_follow_pixels(p, expanded, 0);

    const Sample cropped = random_square_crop(p.sample, config, rng);
    CHECK(cropped.image.height == cropped.image.width);
    CHECK(cropped.image.height >= 60);
    CHECK(cropped.image.height <= 120);
    CHECK(!cropped.boxes.empty());  // redrawn until a box survives
    check_boxes_follow_pixels(p, cropped, 0);

    const Sample das = data_anchor_sample(p.sample, config, rng);
    CHECK(das.image.height == 200);
    CHECK(das.image.width == 200);
    CHECK(!das.boxes.empty());
    check_boxes_follow_pixels(p, das);

    const Sample all = augment(p.sample, config, rng);
    CHECK(all.image.height == 200);
    CHECK(all.image.width == 200);
    check_boxes_follow_pixels(p, all);
    for (const Box& b : all.boxes) {
      CHECK(b.width() >= config.min_face_size);
      CHECK(b.height() >= config.min_face_size);
    }
  }
}

TEST_CASE("augment: the centre-in-patch keep rule on hand-made cases") {
  const Window w{10, 20, 50, 40};  // x in (10, 60), y in (20, 60)
  CHECK(centre_inside({20, 30, 30, 40}, w));
  CHECK(centre_inside({0, 30, 30, 40}, w));      // centre x 15: inside, though the box starts outside
  CHECK(!centre_inside({0, 30, 20, 40}, w));     // centre x 10: on the edge, not strictly inside
  CHECK(!centre_inside({50, 50, 80, 80}, w));    // centre (65, 65)
  CHECK(!centre_inside({30, 0, 40, 40}, w));     // centre y 20: on the edge
  CHECK(centre_inside({30, 0, 40, 41}, w));      // centre y 20.5
  Sample s;
  s.image = Image(100, 100, 7);
  s.boxes = {{0, 30, 30, 40}, {0, 30, 20, 40}, {50, 50, 66, 58}, {30, 25, 40, 35}};
  const Sample out = crop(s, w, kFill);
  // Box 0 clipped at the left edge; box 1 dropped; box 2 clipped at the right; box 3 moved only.
  REQUIRE(out.boxes.size() == 3);
  CHECK(out.boxes[0] == Box{0, 10, 20, 20});
  CHECK(out.boxes[1] == Box{40, 30, 50, 38});
  CHECK(out.boxes[2] == Box{20, 5, 30, 15});
  CHECK_THROWS_WITH_AS(crop(s, {0, 0, 0, 5}, kFill), doctest::Contains("[crop] window 0x5"), Error);

  // random_square_crop gives up after crop_max_tries and returns the sample unchanged when no patch can
  // keep a box: here the only box has its centre on the image border, never strictly inside a patch.
  Sample edge;
  edge.image = Image(80, 120, 3);
  edge.boxes = {{-10, 10, 10, 20}};  // centre x = 0: never strictly inside any patch
  AugmentConfig config;
  config.crop_max_tries = 7;
  Generator rng(5);
  const uint64_t before = rng.state();
  const Sample same = random_square_crop(edge, config, rng);
  CHECK(same.image.pixels == edge.image.pixels);
  CHECK(same.boxes == edge.boxes);
  CHECK(rng.state() != before);  // it did try
}

TEST_CASE("augment: das_accepts takes a patch with a face fully inside or overlapping it above the IoU") {
  const Window w{0, 0, 100, 100};
  CHECK(das_accepts({{10, 10, 30, 30}}, w, 0.7f));                     // fully inside
  CHECK(das_accepts({{0, 0, 100, 100}}, w, 0.7f));                     // the patch itself
  CHECK(!das_accepts({{90, 90, 130, 130}}, w, 0.7f));                  // partly outside, small IoU
  CHECK(das_accepts({{-5, -5, 100, 100}}, w, 0.7f));                   // IoU 0.907
  CHECK(!das_accepts({{-50, -50, 100, 100}}, w, 0.7f));                // IoU 0.444
  CHECK(das_accepts({{90, 90, 130, 130}, {40, 40, 50, 50}}, w, 0.7f)); // any box will do
  CHECK(!das_accepts({{20, 20, 20, 40}}, w, 0.7f));                    // a zero-width box is no face
  CHECK(!das_accepts({}, w, 0.7f));
}

TEST_CASE("augment: data-anchor-sampling draws the target size as PyramidBox does") {
  // A 40 px face: nearest anchor 32 (index 1), targets {16, 32, 64} equally likely, then the size
  // uniform on [s/2, 2s]: the size CDF is the mean of three uniform CDFs.
  struct Case {
    std::vector<float> anchors;
    float face;
    std::vector<float> targets;  // the anchors the algorithm may pick
  };
  const std::vector<Case> cases = {
      {{16, 32, 64, 128, 256, 512}, 40, {16, 32, 64}},
      {{8, 16, 32, 64, 128, 256}, 40, {8, 16, 32, 64}},           // SRN-matched list
      {{16, 32, 64, 128, 256, 512}, 1000, {16, 32, 64, 128, 256, 512}},  // the largest: every anchor
      {{16, 32, 64, 128, 256, 512}, 5, {16, 32}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.face);
    CAPTURE(c.anchors[0]);
    AugmentConfig config;
    config.das_anchor_sizes = c.anchors;
    Generator rng(11);
    const int n = 20000;
    std::vector<double> sizes;
    for (int i = 0; i < n; ++i) sizes.push_back(das_scale(c.face, 300, 400, config, rng) * c.face);
    auto expected_cdf = [&](double t) {
      double p = 0;
      for (float s : c.targets) p += std::clamp((t - 0.5 * s) / (1.5 * s), 0.0, 1.0);
      return p / static_cast<double>(c.targets.size());
    };
    // Each CDF value is a mean of 20000 Bernoulli draws: standard deviation at most 0.0035, so a
    // 0.015 bound (4 sd) fails only on a real difference of distribution.
    for (double t : {4.0, 6.0, 10.0, 16.0, 24.0, 32.0, 48.0, 64.0, 100.0, 128.0, 200.0, 300.0, 500.0, 800.0}) {
      CAPTURE(t);
      const double empirical =
          static_cast<double>(std::count_if(sizes.begin(), sizes.end(), [t](double s) { return s <= t; })) / n;
      CHECK(std::abs(empirical - expected_cdf(t)) < 0.015);
    }
    const auto [lo, hi] = std::minmax_element(sizes.begin(), sizes.end());
    CHECK(*lo >= 0.5 * c.targets.front() - 1e-3);
    CHECK(*hi <= 2.0 * c.targets.back() + 1e-3);
  }
  // The rescaled image is capped at das_max_area.
  AugmentConfig config;
  Generator rng(3);
  bool capped = false;
  for (int i = 0; i < 200; ++i) {
    const double scale = das_scale(8, 5000, 5000, config, rng);
    CHECK(5000.0 * 5000.0 * scale * scale <= config.das_max_area * (1 + 1e-9));
    capped = capped || std::abs(scale - 12000.0 / 5000.0) < 1e-9;
  }
  CHECK(capped);
  CHECK_THROWS_WITH_AS(das_scale(0, 10, 10, config, rng), doctest::Contains("[das_scale] face size 0"), Error);

  // Through data_anchor_sample, a single 40 px face comes out at the drawn size: mean of the three
  // uniform ranges (20 + 40 + 80) / 3 = 46.7; the standard error over 3000 draws is 0.5, bound 2.
  Sample one;
  one.image = Image(300, 400, 50);
  one.boxes = {{180, 130, 220, 170}};
  config.size = 256;
  double total = 0;
  int n = 0;
  for (int i = 0; i < 3000; ++i) {
    const Sample out = data_anchor_sample(one, config, rng);
    REQUIRE(out.image.height == 256);
    REQUIRE(out.boxes.size() == 1);
    total += std::sqrt(out.boxes[0].width() * out.boxes[0].height());
    ++n;
  }
  CHECK(std::abs(total / n - 46.67) < 2.0);
}

TEST_CASE("augment: photometric distortion matches a double-precision reference, in both orders") {
  const Image in = random_image(23, 31, 17);
  Sample s;
  s.image = in;
  s.boxes = {{1, 2, 10, 12}};
  std::vector<Photometric> cases;
  for (bool last : {false, true}) {
    cases.push_back({20, 1, 1, 0, last});
    cases.push_back({0, 1.4f, 1, 0, last});
    cases.push_back({0, 1, 0.6f, 0, last});
    cases.push_back({0, 1, 1.5f, 0, last});
    cases.push_back({0, 1, 1, 17, last});
    cases.push_back({0, 1, 1, -18, last});
    cases.push_back({-31, 0.55f, 1.3f, 11, last});
    cases.push_back({25, 1.45f, 0.7f, -9, last});
  }
  for (const Photometric& p : cases) {
    CAPTURE(p.brightness);
    CAPTURE(p.contrast);
    CAPTURE(p.saturation);
    CAPTURE(p.hue);
    CAPTURE(p.contrast_last);
    Image out = in;
    apply_photometric(out, p);
    // float arithmetic against double: they may round differently only where the exact value sits on
    // a half level (the saturation factor 1.5 makes exact halves common), and then by one level.
    for (int64_t i = 0; i < in.height * in.width; ++i) {
      const auto want = reference_pixel(in.pixels.data() + i * 3, p);
      for (int c = 0; c < 3; ++c) {
        const int got = out.pixels[static_cast<size_t>(i * 3 + c)];
        const bool half = std::abs(want[c] - std::floor(want[c]) - 0.5) < 0.01;
        if (got != std::lround(want[c]) && !(half && std::abs(got - want[c]) <= 0.51)) {
          FAIL_CHECK("pixel ", i, " channel ", c, " is ", got, ", expected ", want[c]);
          break;
        }
      }
    }
  }
  // The two orders differ where clamping interacts with the HSV parts.
  Image a = in, b = in;
  apply_photometric(a, {0, 1.5f, 1.5f, 10, false});
  apply_photometric(b, {0, 1.5f, 1.5f, 10, true});
  CHECK(a.pixels != b.pixels);
  // The neutral values change nothing.
  Image same = in;
  apply_photometric(same, Photometric{});
  CHECK(same.pixels == in.pixels);

  // Drawn parameters stay in the configured ranges; boxes are untouched by the distortion in augment.
  AugmentConfig config;
  Generator rng(9);
  int brightness = 0, contrast_last = 0;
  for (int i = 0; i < 2000; ++i) {
    const Photometric p = draw_photometric(config, rng);
    REQUIRE(std::abs(p.brightness) <= 32);
    REQUIRE(p.contrast >= 0.5f);
    REQUIRE(p.contrast <= 1.5f);
    REQUIRE(p.saturation >= 0.5f);
    REQUIRE(p.saturation <= 1.5f);
    REQUIRE(std::abs(p.hue) <= 18);
    brightness += p.brightness != 0;
    contrast_last += p.contrast_last;
  }
  // Probability 0.5 each: 1000 ± 22 (sd); bounds at 5 sd.
  CHECK(std::abs(brightness - 1000) < 110);
  CHECK(std::abs(contrast_last - 1000) < 110);
  // A square image of the training size, no DAS, expand or flip, and the full-side patch: the geometry
  // is the identity, so the boxes must come out as they went in.
  AugmentConfig only_photometric;
  only_photometric.size = 31;
  only_photometric.das_prob = only_photometric.expand_prob = only_photometric.flip_prob = 0;
  only_photometric.full_side_crop_prob = 1;
  only_photometric.min_face_size = 0;
  Sample square;
  square.image = random_image(31, 31, 4);
  square.boxes = {{1, 2, 10, 12}, {20, 5, 30, 29}};
  for (int i = 0; i < 20; ++i) {
    const Sample out = augment(square, only_photometric, rng);
    CHECK(out.boxes == square.boxes);
  }
}

TEST_CASE("augment: the same generator state gives the same output; another gives another") {
  const Painted p = standard_painting();
  AugmentConfig config;
  config.size = 128;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    Generator a(seed), b(seed), c(seed + 1000);
    const Sample x = augment(p.sample, config, a), y = augment(p.sample, config, b), z = augment(p.sample, config, c);
    CHECK(x.image.pixels == y.image.pixels);
    CHECK(x.boxes == y.boxes);
    CHECK(a.state() == b.state());
    CHECK(x.image.pixels != z.image.pixels);
    CHECK(x.id == p.sample.id);
  }
}

TEST_CASE("augment: samples without faces pass through every transform") {
  Sample empty;
  empty.image = random_image(50, 70, 8);
  empty.id = "test/empty";
  AugmentConfig config;
  config.size = 64;
  config.expand_prob = 1;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    Generator rng(seed);
    CHECK(random_expand(empty, config, rng).boxes.empty());
    const Sample cropped = random_square_crop(empty, config, rng);
    CHECK(cropped.boxes.empty());
    CHECK(cropped.image.height == cropped.image.width);  // no box to keep: the first patch is taken
    const Sample das = data_anchor_sample(empty, config, rng);
    CHECK(das.image.pixels == empty.image.pixels);  // nothing to anchor on: unchanged
    CHECK(flip(empty).boxes.empty());
    CHECK(crop(empty, {5, 5, 20, 20}, kFill).boxes.empty());
    CHECK(scale_and_crop(empty, 1.7, {0, 0, 30, 30}, kFill).boxes.empty());
    CHECK(resize_to(empty, 33).boxes.empty());
    const Sample out = augment(empty, config, rng);
    CHECK(out.boxes.empty());
    CHECK(out.image.height == 64);
    CHECK(out.image.width == 64);
  }
  Sample nothing;
  Generator rng(1);
  CHECK_THROWS_WITH_AS(augment(nothing, config, rng), doctest::Contains("[augment]"), Error);
  CHECK_THROWS_WITH_AS(resize_to(empty, 0), doctest::Contains("[resize_to] size 0"), Error);
}

TEST_CASE("augment: drop_small_boxes and the final minimum size") {
  std::vector<Box> boxes = {{0, 0, 10, 10}, {0, 0, 5, 10}, {0, 0, 10, 5.9f}, {3, 3, 3, 9}, {5, 5, 4, 9}, {0, 0, 6, 6}};
  drop_small_boxes(boxes, 6);
  CHECK(boxes == std::vector<Box>{{0, 0, 10, 10}, {0, 0, 6, 6}});
  std::vector<Box> degenerate = {{3, 3, 3, 9}, {1, 1, 2, 2}, {5, 5, 4, 9}};
  drop_small_boxes(degenerate, 0);  // zero and negative sizes go even without a minimum
  CHECK(degenerate == std::vector<Box>{{1, 1, 2, 2}});

  // A 40 px face squashed to a tenth is 4 px: dropped by the final rule, kept when the minimum is 0.
  Sample s;
  s.image = Image(400, 400, 9);
  s.boxes = {{100, 100, 140, 140}, {200, 200, 300, 300}};
  AugmentConfig config = no_photometric();
  config.size = 40;
  config.das_prob = config.expand_prob = config.flip_prob = 0;
  config.full_side_crop_prob = 1;
  Generator rng(2);
  CHECK(augment(s, config, rng).boxes.size() == 1);
  config.min_face_size = 0;
  CHECK(augment(s, config, rng).boxes.size() == 2);
}

TEST_CASE("augment: a bad configuration throws an Error naming the field") {
  Sample s;
  s.image = Image(10, 10, 1);
  auto expect = [&](auto change, const char* message) {
    AugmentConfig c;
    change(c);
    Generator rng(0);
    CAPTURE(message);
    CHECK_THROWS_WITH_AS(augment(s, c, rng), doctest::Contains(message), Error);
  };
  expect([](AugmentConfig& c) { c.size = 0; }, "[augment] size 0");
  expect([](AugmentConfig& c) { c.flip_prob = 1.5; }, "flip_prob 1.5 is not a probability");
  expect([](AugmentConfig& c) { c.das_prob = -1; }, "das_prob -1");
  expect([](AugmentConfig& c) { c.contrast_lower = 2; }, "contrast range [2, 1.5]");
  expect([](AugmentConfig& c) { c.hue_delta = 200; }, "hue_delta 200");
  expect([](AugmentConfig& c) { c.expand_max_ratio = 0.5f; }, "expand_max_ratio 0.5");
  expect([](AugmentConfig& c) { c.min_crop_scale = 0; }, "min_crop_scale 0");
  expect([](AugmentConfig& c) { c.crop_max_tries = 0; }, "crop_max_tries 0");
  expect([](AugmentConfig& c) { c.das_anchor_sizes.clear(); }, "das_anchor_sizes is empty");
  expect([](AugmentConfig& c) { c.das_anchor_sizes = {16, -2}; }, "das_anchor_sizes holds -2");
  expect([](AugmentConfig& c) { c.das_accept_iou = 2; }, "das_accept_iou 2");
  expect([](AugmentConfig& c) { c.min_face_size = -1; }, "min_face_size -1");
}
