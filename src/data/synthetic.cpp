#include "isrn/data/synthetic.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <exception>
#include <filesystem>
#include <mutex>
#include <numbers>
#include <thread>

#include "isrn/core/error.hpp"
#include "isrn/io/file.hpp"
#include "isrn/tensor.hpp"

namespace isrn::data {

namespace {

constexpr float kPi = std::numbers::pi_v<float>;

// splitmix64's finalizer: a bijection of 64-bit words that scatters neighbouring inputs.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double uniform() { return gen_.uniform(); }
  float range(double lo, double hi) { return static_cast<float>(lo + (hi - lo) * gen_.uniform()); }
  // Inclusive; hi - lo stays far below 2^32, so the modulo bias is negligible.
  int64_t integer(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(gen_.next_u64() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool chance(double p) { return gen_.uniform() < p; }
  float log_uniform(double lo, double hi) { return static_cast<float>(std::exp(range(std::log(lo), std::log(hi)))); }
  float normal(double mean, double sd) { return static_cast<float>(mean + sd * gen_.normal()); }
  uint64_t bits() { return gen_.next_u64(); }
  int sign() { return chance(0.5) ? 1 : -1; }

 private:
  Generator gen_;
};

struct Rgb {
  float r = 0, g = 0, b = 0;
};
Rgb operator*(Rgb c, float k) { return {c.r * k, c.g * k, c.b * k}; }
Rgb operator+(Rgb a, Rgb b) { return {a.r + b.r, a.g + b.g, a.b + b.b}; }
Rgb mix(Rgb a, Rgb b, float t) { return a * (1 - t) + b * t; }

Rgb random_colour(Rng& r) { return {r.range(0, 255), r.range(0, 255), r.range(0, 255)}; }

// From light to dark; a face draws one and jitters it.
constexpr std::array<Rgb, 10> kSkinTones = {{{255, 224, 196},
                                             {241, 194, 167},
                                             {236, 200, 160},
                                             {224, 172, 138},
                                             {214, 160, 120},
                                             {198, 134, 103},
                                             {170, 112, 82},
                                             {141, 85, 54},
                                             {110, 68, 45},
                                             {80, 51, 36}}};
constexpr std::array<Rgb, 7> kHairColours = {
    {{25, 20, 18}, {45, 32, 25}, {70, 48, 32}, {115, 80, 50}, {200, 170, 110}, {160, 158, 155}, {140, 62, 32}}};

Rgb skin_tone(Rng& r) {
  const Rgb base = kSkinTones[static_cast<size_t>(r.integer(0, kSkinTones.size() - 1))];
  const float k = r.range(0.9, 1.08);
  return {std::min(255.f, base.r * k * r.range(0.96, 1.04)), std::min(255.f, base.g * k * r.range(0.96, 1.04)),
          std::min(255.f, base.b * k * r.range(0.96, 1.04))};
}

Rgb hair_colour(Rng& r) {
  if (r.chance(0.05)) return random_colour(r);  // dyed
  const Rgb base = kHairColours[static_cast<size_t>(r.integer(0, kHairColours.size() - 1))];
  return base * r.range(0.85, 1.15);
}

// A float raster over [x0, x0 + width) × [y0, y0 + height) of the scene. The scene itself is opaque
// RGB; a face is painted on a premultiplied RGBA layer so that it can be blurred as a whole, edges
// included, before it is composited.
struct Canvas {
  int64_t x0 = 0, y0 = 0, width = 0, height = 0;
  int channels = 3;
  std::vector<float> px;

  Canvas(int64_t x, int64_t y, int64_t w, int64_t h, bool alpha)
      : x0(x), y0(y), width(w), height(h), channels(alpha ? 4 : 3), px(static_cast<size_t>(w * h * (alpha ? 4 : 3))) {}
  float* at(int64_t x, int64_t y) { return px.data() + ((y - y0) * width + (x - x0)) * channels; }
  void blend(int64_t x, int64_t y, Rgb c, float a) {
    float* p = at(x, y);
    p[0] += (c.r - p[0]) * a;
    p[1] += (c.g - p[1]) * a;
    p[2] += (c.b - p[2]) * a;
    if (channels == 4) p[3] += (1 - p[3]) * a;
  }
};

// The pixel rows and columns a shape centred at (cx, cy) with half extents (ex, ey) can touch.
struct Span {
  int64_t x1, y1, x2, y2;
};
Span span(const Canvas& c, float cx, float cy, float ex, float ey) {
  return {std::max(c.x0, static_cast<int64_t>(std::floor(cx - ex - 1))),
          std::max(c.y0, static_cast<int64_t>(std::floor(cy - ey - 1))),
          std::min(c.x0 + c.width, static_cast<int64_t>(std::ceil(cx + ex + 1))),
          std::min(c.y0 + c.height, static_cast<int64_t>(std::ceil(cy + ey + 1)))};
}

struct Ellipse {
  float cx, cy, rx, ry, angle;
};

// Half extents of the axis-aligned box around an ellipse rotated by `angle`.
std::array<float, 2> ellipse_extents(float rx, float ry, float angle) {
  const float c = std::cos(angle), s = std::sin(angle);
  return {std::sqrt(rx * rx * c * c + ry * ry * s * s), std::sqrt(rx * rx * s * s + ry * ry * c * c)};
}

// Signed distance in pixels, approximated by f/|∇f| for f = u² + v² − 1, which is exact on the outline;
// coverage 0.5 − d then antialiases the edge over one pixel.
inline float ellipse_distance(float u, float v, float irx, float iry) {
  const float f = u * u + v * v - 1;
  const float g = 2 * std::sqrt(u * u * irx * irx + v * v * iry * iry);
  return f / std::max(g, 1e-6f);
}

// A shape thinner than a pixel covers only part of the pixels it touches: scaling by the shape's width
// keeps a 0.3-pixel eyebrow faint instead of a solid pixel.
inline float thin_factor(float half_a, float half_b) { return std::min(1.f, 2 * half_a) * std::min(1.f, 2 * half_b); }

// The pixel columns of row y whose centres lie in the ellipse e grown by one pixel (every pixel the
// antialiased edge can touch), clipped to [s.x1, s.x2): the roots of a quadratic in x.
std::array<int64_t, 2> ellipse_row(const Ellipse& e, const Span& s, float cs, float sn, int64_t y) {
  const float grx = e.rx + 1, gry = e.ry + 1;
  const float ix = 1 / (grx * grx), iy = 1 / (gry * gry);
  const float dy = static_cast<float>(y) + 0.5f - e.cy;
  const float A = cs * cs * ix + sn * sn * iy, B = 2 * dy * cs * sn * (ix - iy), C = dy * dy * (sn * sn * ix + cs * cs * iy) - 1;
  const float disc = B * B - 4 * A * C;
  if (disc < 0) return {0, 0};
  const float root = std::sqrt(disc);
  const float lo = e.cx + (-B - root) / (2 * A) - 0.5f, hi = e.cx + (-B + root) / (2 * A) - 0.5f;
  return {std::max(s.x1, static_cast<int64_t>(std::floor(lo))), std::min(s.x2, static_cast<int64_t>(std::ceil(hi)) + 1)};
}

// Paints an ellipse with colour shade(u, v), (u, v) the ellipse-normalized coordinates (the outline is
// u² + v² = 1).
template <typename Shade>
void paint_ellipse(Canvas& c, const Ellipse& e, float opacity, Shade&& shade) {
  if (e.rx <= 0.02f || e.ry <= 0.02f || opacity <= 0) return;
  const auto [ex, ey] = ellipse_extents(e.rx, e.ry, e.angle);
  const Span s = span(c, e.cx, e.cy, ex, ey);
  const float cs = std::cos(e.angle), sn = std::sin(e.angle), irx = 1 / e.rx, iry = 1 / e.ry;
  const float alpha = opacity * thin_factor(e.rx, e.ry);
  for (int64_t y = s.y1; y < s.y2; ++y) {
    const float dy = static_cast<float>(y) + 0.5f - e.cy;
    const auto [xa, xb] = ellipse_row(e, s, cs, sn, y);
    for (int64_t x = xa; x < xb; ++x) {
      const float dx = static_cast<float>(x) + 0.5f - e.cx;
      const float u = (dx * cs + dy * sn) * irx, v = (-dx * sn + dy * cs) * iry;
      const float cover = std::clamp(0.5f - ellipse_distance(u, v, irx, iry), 0.f, 1.f);
      if (cover > 0) c.blend(x, y, shade(u, v), cover * alpha);
    }
  }
}

void paint_ellipse(Canvas& c, const Ellipse& e, float opacity, Rgb colour) {
  paint_ellipse(c, e, opacity, [colour](float, float) { return colour; });
}

// An elliptical ring of `thickness` pixels inside the outline of e.
void paint_ring(Canvas& c, const Ellipse& e, float thickness, float opacity, Rgb colour) {
  if (e.rx <= 0.02f || e.ry <= 0.02f || opacity <= 0) return;
  const float irx = e.rx - thickness, iry = e.ry - thickness;
  if (irx <= 0.3f || iry <= 0.3f) return paint_ellipse(c, e, opacity, colour);
  const auto [ex, ey] = ellipse_extents(e.rx, e.ry, e.angle);
  const Span s = span(c, e.cx, e.cy, ex, ey);
  const float cs = std::cos(e.angle), sn = std::sin(e.angle);
  const float alpha = opacity * std::min(1.f, thickness);
  for (int64_t y = s.y1; y < s.y2; ++y) {
    const float dy = static_cast<float>(y) + 0.5f - e.cy;
    const auto [xa, xb] = ellipse_row(e, s, cs, sn, y);
    for (int64_t x = xa; x < xb; ++x) {
      const float dx = static_cast<float>(x) + 0.5f - e.cx;
      const float lx = dx * cs + dy * sn, ly = -dx * sn + dy * cs;
      const float outer = std::clamp(0.5f - ellipse_distance(lx / e.rx, ly / e.ry, 1 / e.rx, 1 / e.ry), 0.f, 1.f);
      const float inner = std::clamp(0.5f - ellipse_distance(lx / irx, ly / iry, 1 / irx, 1 / iry), 0.f, 1.f);
      const float cover = outer - inner;
      if (cover > 0) c.blend(x, y, colour, cover * alpha);
    }
  }
}

struct Rect {
  float cx, cy, hx, hy, angle;  // centre, half extents, rotation
};

// Paints a rotated rectangle with colour shade(u, v), (u, v) ∈ [−1, 1]² across it.
template <typename Shade>
void paint_rect(Canvas& c, const Rect& r, float opacity, Shade&& shade) {
  if (r.hx <= 0.02f || r.hy <= 0.02f || opacity <= 0) return;
  const float cs = std::cos(r.angle), sn = std::sin(r.angle);
  const float ex = std::abs(r.hx * cs) + std::abs(r.hy * sn), ey = std::abs(r.hx * sn) + std::abs(r.hy * cs);
  const Span s = span(c, r.cx, r.cy, ex, ey);
  const float alpha = opacity * thin_factor(r.hx, r.hy);
  for (int64_t y = s.y1; y < s.y2; ++y) {
    const float dy = static_cast<float>(y) + 0.5f - r.cy;
    for (int64_t x = s.x1; x < s.x2; ++x) {
      const float dx = static_cast<float>(x) + 0.5f - r.cx;
      const float lx = dx * cs + dy * sn, ly = -dx * sn + dy * cs;
      const float d = std::max(std::abs(lx) - r.hx, std::abs(ly) - r.hy);
      const float cover = std::clamp(0.5f - d, 0.f, 1.f);
      if (cover > 0) c.blend(x, y, shade(lx / r.hx, ly / r.hy), cover * alpha);
    }
  }
}

void paint_rect(Canvas& c, const Rect& r, float opacity, Rgb colour) {
  paint_rect(c, r, opacity, [colour](float, float) { return colour; });
}

bool inside(const Ellipse& e, float x, float y) {
  const float dx = x - e.cx, dy = y - e.cy, cs = std::cos(e.angle), sn = std::sin(e.angle);
  const float u = (dx * cs + dy * sn) / e.rx, v = (-dx * sn + dy * cs) / e.ry;
  return u * u + v * v <= 1;
}
bool inside(const Rect& r, float x, float y) {
  const float dx = x - r.cx, dy = y - r.cy, cs = std::cos(r.angle), sn = std::sin(r.angle);
  return std::abs(dx * cs + dy * sn) <= r.hx && std::abs(-dx * sn + dy * cs) <= r.hy;
}

// A triangle wave of period 1 in [−1, 1], peaking at whole t: the per-pixel ripples and stripes need a
// periodic shape, not a sine's exactness, and std::sin per pixel cost a third of a scene.
inline float wave(float t) { return 4 * std::abs(t - std::floor(t) - 0.5f) - 1; }

// A surface texture for shapes: flat, stripes across u, or a gradient, in shape coordinates.
struct Texture {
  int kind = 0;
  Rgb a, b;
  float frequency = 1;
  Rgb operator()(float u, float v) const {
    if (kind == 1) return wave(u * frequency) > 0 ? a : b;
    if (kind == 2) return mix(a, b, std::clamp(0.5f + 0.5f * v, 0.f, 1.f));
    return a;
  }
};
Texture random_texture(Rng& r) {
  Texture t;
  const double p = r.uniform();
  t.kind = p < 0.6 ? 0 : p < 0.8 ? 1 : 2;
  t.a = random_colour(r);
  t.b = random_colour(r);
  t.frequency = r.range(0.5, 4);  // stripes across a shape
  return t;
}

// Face-normalized coordinates: (u, v) ∈ [−1, 1]² spans the face ellipse (u across, v down), rotated by
// the face's roll.
struct Frame {
  float cx, cy, a, b, cs, sn, roll;
  float x(float u, float v) const { return cx + u * a * cs - v * b * sn; }
  float y(float u, float v) const { return cy + u * a * sn + v * b * cs; }
  // An ellipse at face position (u, v) with semi-axes (ru·a, rv·b), turned by `turn` on top of the roll.
  Ellipse ellipse(float u, float v, float ru, float rv, float turn = 0) const {
    return {x(u, v), y(u, v), ru * a, rv * b, roll + turn};
  }
  // The same with semi-axes in pixels (for round features that stay round whatever the aspect).
  Ellipse ellipse_px(float u, float v, float rx, float ry, float turn = 0) const {
    return {x(u, v), y(u, v), rx, ry, roll + turn};
  }
  Rect rect(float u, float v, float hu, float hv, float turn = 0) const {
    return {x(u, v), y(u, v), hu * a, hv * b, roll + turn};
  }
};

// ---------------------------------------------------------------------------------------------------
// Background: a smooth colour field (gradient plus two octaves of value noise), sometimes a band of
// stripes or checks, then random shapes.

void paint_base(Canvas& c, Rng& r) {
  const int64_t W = c.width, H = c.height;
  const Rgb c0 = random_colour(r), c1 = random_colour(r);
  const float angle = r.range(0, 2 * kPi), gx = std::cos(angle), gy = std::sin(angle);
  const float span_len = std::abs(gx) * W + std::abs(gy) * H;
  const float origin = std::min(0.f, gx * W) + std::min(0.f, gy * H);
  // Value noise: random offsets on coarse grids, interpolated with smoothstep weights.
  struct Octave {
    float cell;
    int64_t gw, gh;
    std::vector<Rgb> grid;
  };
  std::array<Octave, 2> octaves;
  const float amplitude = r.range(10, 70);
  for (int k = 0; k < 2; ++k) {
    Octave& o = octaves[k];
    o.cell = k == 0 ? r.range(48, 200) : r.range(8, 40);
    o.gw = static_cast<int64_t>(W / o.cell) + 2;
    o.gh = static_cast<int64_t>(H / o.cell) + 2;
    const float amp = k == 0 ? amplitude : amplitude * 0.4f;
    o.grid.resize(static_cast<size_t>(o.gw * o.gh));
    for (Rgb& g : o.grid) {
      const float lum = r.range(-amp, amp);  // mostly luminance, a little colour
      g = {lum + r.range(-amp, amp) * 0.3f, lum + r.range(-amp, amp) * 0.3f, lum + r.range(-amp, amp) * 0.3f};
    }
  }
  auto smooth = [](float t) { return t * t * (3 - 2 * t); };
  std::array<std::vector<int64_t>, 2> col_index;
  std::array<std::vector<float>, 2> col_weight;
  for (int k = 0; k < 2; ++k) {
    col_index[k].resize(static_cast<size_t>(W));
    col_weight[k].resize(static_cast<size_t>(W));
    for (int64_t x = 0; x < W; ++x) {
      const float f = (static_cast<float>(x) + 0.5f) / octaves[k].cell;
      col_index[k][static_cast<size_t>(x)] = static_cast<int64_t>(f);
      col_weight[k][static_cast<size_t>(x)] = smooth(f - std::floor(f));
    }
  }
  // Per row, each octave's grid row is interpolated vertically once; a pixel then needs one
  // horizontal interpolation per octave.
  std::array<std::vector<Rgb>, 2> grid_row{std::vector<Rgb>(static_cast<size_t>(octaves[0].gw)),
                                           std::vector<Rgb>(static_cast<size_t>(octaves[1].gw))};
  const float inv_span = 1 / span_len;
  for (int64_t y = 0; y < H; ++y) {
    for (int k = 0; k < 2; ++k) {
      const Octave& o = octaves[k];
      const float f = (static_cast<float>(y) + 0.5f) / o.cell;
      const int64_t iy = static_cast<int64_t>(f);
      const float wy = smooth(f - std::floor(f));
      const Rgb* top = o.grid.data() + iy * o.gw;
      for (int64_t i = 0; i < o.gw; ++i) grid_row[k][static_cast<size_t>(i)] = mix(top[i], top[i + o.gw], wy);
    }
    float* p = c.at(0, y);
    for (int64_t x = 0; x < W; ++x, p += 3) {
      const float t = std::clamp((gx * static_cast<float>(x) + gy * static_cast<float>(y) - origin) * inv_span, 0.f, 1.f);
      Rgb v = mix(c0, c1, t);
      for (int k = 0; k < 2; ++k) {
        const size_t ix = static_cast<size_t>(col_index[k][static_cast<size_t>(x)]);
        v = v + mix(grid_row[k][ix], grid_row[k][ix + 1], col_weight[k][static_cast<size_t>(x)]);
      }
      p[0] = v.r;
      p[1] = v.g;
      p[2] = v.b;
    }
  }
}

// Stripes or checks over a random band of the image (a wall, a shirt, a fence).
void paint_pattern(Canvas& c, Rng& r) {
  const int64_t W = c.width, H = c.height;
  const bool checks = r.chance(0.4);
  const Rgb a = random_colour(r), b = random_colour(r);
  const float period = r.range(6, 60), angle = r.range(0, kPi), cs = std::cos(angle), sn = std::sin(angle);
  const float opacity = r.range(0.3, 1);
  const int64_t x1 = r.integer(0, W / 2), x2 = r.integer(x1 + 1, W), y1 = r.integer(0, H / 2), y2 = r.integer(y1 + 1, H);
  for (int64_t y = y1; y < y2; ++y)
    for (int64_t x = x1; x < x2; ++x) {
      const float u = static_cast<float>(x) * cs + static_cast<float>(y) * sn;
      float t;
      if (checks) {
        const float v = -static_cast<float>(x) * sn + static_cast<float>(y) * cs;
        t = ((static_cast<int64_t>(std::floor(u / period)) + static_cast<int64_t>(std::floor(v / period))) & 1) ? 1.f : 0.f;
      } else {
        // The wave times a quarter period is the signed distance in pixels to the nearest stripe edge:
        // a one-pixel soft edge.
        t = std::clamp(0.5f + wave(u / period) * 0.25f * period, 0.f, 1.f);
      }
      c.blend(x, y, mix(a, b, t), opacity);
    }
}

void paint_background_shapes(Canvas& c, Rng& r, int count) {
  const float longest = static_cast<float>(std::max(c.width, c.height));
  for (int i = 0; i < count; ++i) {
    const float size = r.log_uniform(6, std::max(7.f, 0.7f * longest));
    const float cx = r.range(0, static_cast<double>(c.width)), cy = r.range(0, static_cast<double>(c.height));
    const float aspect = r.log_uniform(0.25, 4), angle = r.range(0, kPi);
    const float hx = 0.5f * size * std::sqrt(aspect), hy = 0.5f * size / std::sqrt(aspect);
    const Texture tex = random_texture(r);
    const float opacity = r.range(0.5, 1);
    const double kind = r.uniform();
    if (kind < 0.4) {
      paint_rect(c, {cx, cy, hx, hy, angle}, opacity, tex);
    } else if (kind < 0.75) {
      paint_ellipse(c, {cx, cy, hx, hy, angle}, opacity, tex);
    } else if (kind < 0.9) {  // a bar or a pole
      paint_rect(c, {cx, cy, hx * 2, r.range(1, 6), angle}, opacity, tex);
    } else {
      const float squash = r.range(0.7, 1.0);
      const float thickness = r.range(1.5, std::max(2.0, hx * 0.3));
      paint_ring(c, {cx, cy, hx, hx * squash, angle}, thickness, opacity, tex.a);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Distractors: things a face detector must learn to reject. None has two eyes above a mouth.

void paint_distractor(Canvas& c, Rng& r, float min_size, float max_size) {
  const float size = r.log_uniform(min_size, max_size);
  const float cx = r.range(0, static_cast<double>(c.width)), cy = r.range(0, static_cast<double>(c.height));
  const float a = 0.5f * size / std::sqrt(r.range(1.05, 1.5)), b = a * r.range(1.05, 1.5);
  const float angle = r.normal(0, 0.3);
  const double kind = r.uniform();
  const Rgb skin = skin_tone(r);
  auto shaded = [](Rgb base, float k) {
    return [base, k](float u, float v) { return base * (1 - k * (u * u + v * v)); };
  };
  if (kind < 0.25) {  // a bare skin-coloured ellipse, or a head seen from behind (all hair)
    if (r.chance(0.5)) {
      paint_ellipse(c, {cx, cy, a, b, angle}, 1, shaded(skin, 0.2f));
    } else {
      paint_ellipse(c, {cx, cy, a * 1.1f, b * 1.05f, angle}, 1, shaded(hair_colour(r), 0.25f));
    }
  } else if (kind < 0.5) {  // a skin-coloured blob: hands, arms, knees
    const int parts = static_cast<int>(r.integer(2, 4));
    for (int i = 0; i < parts; ++i) {
      // Braced lists evaluate left to right; function arguments do not, so each draw gets its own statement.
      const Ellipse part{cx + r.range(-a, a), cy + r.range(-b, b), a * r.range(0.3, 0.8), b * r.range(0.2, 0.6),
                         r.range(0, kPi)};
      const float tint = r.range(0.9, 1.05);
      paint_ellipse(c, part, 1, shaded(skin * tint, 0.15f));
    }
  } else if (kind < 0.75) {  // an ellipse with dark dots that are not a face's layout
    const Rgb base = r.chance(0.5) ? skin : random_colour(r);
    paint_ellipse(c, {cx, cy, a, b, angle}, 1, shaded(base, 0.2f));
    const int dots = static_cast<int>(r.integer(1, 5));
    // All dots in one horizontal band or one vertical column: never eyes over a mouth.
    const bool column = r.chance(0.5);
    const float band = r.range(-0.5, 0.5);
    for (int i = 0; i < dots; ++i) {
      const float t = r.range(-0.7, 0.7);
      const float u = column ? band : t, v = column ? t : band;
      const float cs = std::cos(angle), sn = std::sin(angle);
      const float dot = r.range(0.06, 0.15) * a;
      paint_ellipse(c, {cx + u * a * cs - v * b * sn, cy + u * a * sn + v * b * cs, dot, dot, 0}, 1,
                    Rgb{30, 25, 25} * r.range(0.5, 1.5));
    }
  } else {  // round objects: a ball with a highlight, a clock or a wheel
    const Rgb colour = random_colour(r);
    if (r.chance(0.5)) {
      const float hx = r.range(-0.5, 0.5), hy = r.range(-0.5, 0.5);
      paint_ellipse(c, {cx, cy, a, a, 0}, 1, [colour, hx, hy](float u, float v) {
        const float d = (u - hx) * (u - hx) + (v - hy) * (v - hy);
        return mix(colour, Rgb{255, 255, 255}, std::clamp(0.6f - d, 0.f, 0.6f));
      });
    } else {
      paint_ellipse(c, {cx, cy, a, a, 0}, 1, random_colour(r));
      paint_ring(c, {cx, cy, a, a, 0}, std::max(1.f, a * r.range(0.08, 0.25)), 1, colour);
      paint_rect(c, {cx, cy, a * 0.6f, std::max(0.5f, a * 0.05f), r.range(0, kPi)}, 1, colour);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Faces.

struct PlacedFace {
  Frame frame;
  float size;  // sqrt(w·h) of the unrotated face box
  Box box;     // labelled box: integer corners, clipped to the image
  uint64_t seed;
};

// What a face and its body share, drawn from the face's own seed by both passes.
struct Look {
  Rgb skin, hair;
  int hair_style;  // 0 bald, 1 short, 2 long
};
Look draw_look(Rng& r) {
  Look look;
  look.skin = skin_tone(r);
  look.hair = hair_colour(r);
  const double h = r.uniform();
  look.hair_style = h < 0.1 ? 0 : h < 0.6 ? 1 : 2;
  return look;
}

float box_area(const Box& b) { return std::max(0.f, b.x2 - b.x1) * std::max(0.f, b.y2 - b.y1); }
float intersection(const Box& a, const Box& b) {
  return std::max(0.f, std::min(a.x2, b.x2) - std::max(a.x1, b.x1)) *
         std::max(0.f, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
}

// Integer corners of [lo, hi) clipped to [0, limit), at least one pixel wide.
std::array<float, 2> pixel_span(float lo, float hi, int64_t limit) {
  int64_t a = std::clamp<int64_t>(std::lround(lo), 0, limit), b = std::clamp<int64_t>(std::lround(hi), 0, limit);
  if (b <= a) {
    a = std::min(a, limit - 1);
    b = a + 1;
  }
  return {static_cast<float>(a), static_cast<float>(b)};
}

std::vector<PlacedFace> place_faces(const SyntheticConfig& cfg, Rng& r, int64_t W, int64_t H) {
  const int64_t n = r.integer(cfg.min_faces, cfg.max_faces);
  const float cap = 0.9f * static_cast<float>(std::min(W, H));
  std::vector<float> sizes(static_cast<size_t>(n));
  for (float& s : sizes) s = std::min(cap, r.log_uniform(cfg.min_face_size, cfg.max_face_size));
  // Large faces first: they need the most room, and small ones fit between them.
  std::sort(sizes.begin(), sizes.end(), std::greater<>());
  std::vector<PlacedFace> placed;
  for (float s : sizes) {
    const float aspect = r.range(cfg.min_face_aspect, cfg.max_face_aspect);
    const float a = 0.5f * s / std::sqrt(aspect), b = 0.5f * s * std::sqrt(aspect);
    const float roll = std::clamp(r.normal(0, 0.12), -0.45f, 0.45f);  // about 7° typical, at most 26°
    const auto [ex, ey] = ellipse_extents(a, b, roll);
    // A face cut by the border keeps at least 60 % of its box inside.
    const float keep = r.chance(cfg.border_cut_prob) ? 0.2f : 1.0f;
    const uint64_t seed = r.bits();
    for (int attempt = 0; attempt < 30; ++attempt) {
      auto centre = [&](float e, int64_t limit) {
        const float lo = std::min(keep * e, 0.5f * static_cast<float>(limit));
        const float hi = std::max(static_cast<float>(limit) - keep * e, 0.5f * static_cast<float>(limit));
        return r.range(lo, hi);
      };
      const float cx = centre(ex, W), cy = centre(ey, H);
      const auto [x1, x2] = pixel_span(cx - ex, cx + ex, W);
      const auto [y1, y2] = pixel_span(cy - ey, cy + ey, H);
      const Box box{x1, y1, x2, y2};
      bool fits = true;
      for (const PlacedFace& other : placed) {
        const float inter = intersection(box, other.box);
        if (inter > cfg.max_overlap * box_area(other.box) || inter > cfg.max_overlap * box_area(box)) {
          fits = false;
          break;
        }
      }
      if (!fits) continue;
      placed.push_back({{cx, cy, a, b, std::cos(roll), std::sin(roll), roll}, s, box, seed});
      break;
    }
  }
  return placed;
}

// Neck and torso below the face, drawn before every face so that no body covers a face.
void paint_body(Canvas& scene, const PlacedFace& face) {
  Rng look_rng(face.seed);
  const Look look = draw_look(look_rng);
  Rng r(mix64(face.seed ^ 0xb0d1));
  const Frame& f = face.frame;
  const Texture clothes = random_texture(r);
  const float torso_width = r.range(1.9, 2.6), torso_height = r.range(1.5, 2.0);
  paint_ellipse(scene, f.ellipse(0, 2.7f, torso_width, torso_height), 1,
                [clothes](float u, float v) { return clothes(u, v) * (1 - 0.2f * u * u); });
  paint_rect(scene, f.rect(0, 1.0f, 0.42f, 0.5f), 1, [skin = look.skin](float u, float) {
    return skin * (0.72f + 0.1f * (1 - u * u));
  });
}

// How much of the face ellipse `covered` hides, from a 10 × 10 grid of points inside the ellipse.
template <typename Covered>
float covered_fraction(const Frame& f, Covered&& covered) {
  int total = 0, hit = 0;
  for (int i = 0; i < 10; ++i)
    for (int j = 0; j < 10; ++j) {
      const float u = -0.9f + 0.2f * i, v = -0.9f + 0.2f * j;
      if (u * u + v * v > 1) continue;
      ++total;
      hit += covered(f.x(u, v), f.y(u, v)) ? 1 : 0;
    }
  return total ? static_cast<float>(hit) / static_cast<float>(total) : 0.f;
}

// Separable box blur of a premultiplied layer, three passes (close to a Gaussian of
// σ = sqrt(((2·radius + 1)² − 1) / 4)). Outside the layer counts as transparent. Both directions keep
// running sums over whole rows at a time (all four channels of every column together), so the cost does
// not depend on the radius and the memory is walked in order.
void blur_layer(Canvas& layer, int radius) {
  const int64_t W = layer.width, H = layer.height, row = W * 4;
  const float norm = 1.0f / static_cast<float>(2 * radius + 1);
  std::vector<float> padded(static_cast<size_t>((W + 2 * radius + 2) * 4));
  std::vector<float> source(layer.px.size()), sums(static_cast<size_t>(row)), zeros(static_cast<size_t>(row));
  for (int p = 0; p < 3; ++p) {
    // Horizontal: each row is copied between zero margins, then one running sum per channel.
    for (int64_t y = 0; y < H; ++y) {
      float* line = layer.px.data() + y * row;
      std::copy(line, line + row, padded.begin() + (radius + 1) * 4);
      float sum[4] = {0, 0, 0, 0};
      for (int64_t i = 0; i <= radius; ++i)
        for (int ch = 0; ch < 4; ++ch) sum[ch] += padded[static_cast<size_t>((radius + 1 + i) * 4 + ch)];
      for (int64_t x = 0; x < W; ++x) {
        const float* add = padded.data() + (x + 2 * radius + 2) * 4;  // enters at x + radius + 1
        const float* drop = padded.data() + (x + 1) * 4;              // leaves at x − radius
        for (int ch = 0; ch < 4; ++ch) {
          line[x * 4 + ch] = sum[ch] * norm;
          sum[ch] += add[ch] - drop[ch];
        }
      }
    }
    // Vertical: one running sum per column and channel, advanced a whole row at a time.
    std::copy(layer.px.begin(), layer.px.end(), source.begin());
    std::fill(sums.begin(), sums.end(), 0.f);
    for (int64_t i = 0; i <= std::min<int64_t>(radius, H - 1); ++i)
      for (int64_t k = 0; k < row; ++k) sums[static_cast<size_t>(k)] += source[static_cast<size_t>(i * row + k)];
    for (int64_t y = 0; y < H; ++y) {
      float* dst = layer.px.data() + y * row;
      const float* add = y + radius + 1 < H ? source.data() + (y + radius + 1) * row : zeros.data();
      const float* drop = y - radius >= 0 ? source.data() + (y - radius) * row : zeros.data();
      float* sum = sums.data();
      for (int64_t k = 0; k < row; ++k) {
        dst[k] = sum[k] * norm;
        sum[k] += add[k] - drop[k];
      }
    }
  }
}

void composite(Canvas& scene, const Canvas& layer) {
  for (int64_t y = 0; y < layer.height; ++y) {
    const float* src = layer.px.data() + y * layer.width * 4;
    float* dst = scene.at(layer.x0, layer.y0 + y);
    for (int64_t x = 0; x < layer.width; ++x, src += 4, dst += 3) {
      const float keep = 1 - std::min(1.f, src[3]);
      dst[0] = dst[0] * keep + src[0];
      dst[1] = dst[1] * keep + src[1];
      dst[2] = dst[2] * keep + src[2];
    }
  }
}

// Paints one face (hair, ears, skin, eyes, brows, nose, mouth, extras, lighting, blur) and its occluder;
// returns its WIDER attributes.
FaceAttributes paint_face(Canvas& scene, const PlacedFace& face, const SyntheticConfig& cfg, bool extreme_light) {
  Rng look_rng(face.seed);
  const Look look = draw_look(look_rng);
  Rng r(mix64(face.seed ^ 0xfacef));
  const Frame& f = face.frame;
  const float a = f.a, b = f.b;
  FaceAttributes attr;

  const bool profile = r.chance(cfg.profile_prob);
  float yaw = std::clamp(r.normal(0, 0.12), -0.3f, 0.3f);
  if (profile) {
    const float side = static_cast<float>(r.sign());
    yaw = side * r.range(0.45, 0.85);
  }
  const bool open_mouth = r.chance(0.1);
  const float light = r.chance(0.7) ? r.range(0, 0.3) : r.range(0.3, 0.6);
  const float light_angle = r.range(0, 2 * kPi);
  const bool blurred = r.chance(cfg.blur_prob);
  const bool heavy_blur = blurred && r.chance(0.4);
  const float sigma = blurred ? face.size * (heavy_blur ? r.range(0.035, 0.07) : r.range(0.012, 0.03)) : 0.f;
  // Three box passes of width 2·radius + 1 have variance ((2·radius + 1)² − 1) / 4 = σ².
  const int radius = blurred ? std::max(1, static_cast<int>(std::lround((std::sqrt(4 * sigma * sigma + 1) - 1) / 2))) : 0;

  // The layer holds everything drawn in the face's frame: hair reaches 1.25 a across and from 1.25 b
  // above to 1.7 b below the centre; blur spreads it by three radii.
  float lx1 = 1e30f, ly1 = 1e30f, lx2 = -1e30f, ly2 = -1e30f;
  for (float u : {-1.3f, 1.3f})
    for (float v : {-1.3f, 1.8f}) {
      lx1 = std::min(lx1, f.x(u, v)), lx2 = std::max(lx2, f.x(u, v));
      ly1 = std::min(ly1, f.y(u, v)), ly2 = std::max(ly2, f.y(u, v));
    }
  const float margin = 3.f * static_cast<float>(radius) + 2;
  const int64_t x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(lx1 - margin)));
  const int64_t y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(ly1 - margin)));
  const int64_t x1 = std::min(scene.width, static_cast<int64_t>(std::ceil(lx2 + margin)));
  const int64_t y1 = std::min(scene.height, static_cast<int64_t>(std::ceil(ly2 + margin)));
  if (x1 <= x0 || y1 <= y0) return attr;
  Canvas layer(x0, y0, x1 - x0, y1 - y0, true);

  const Rgb skin = look.skin, hair = look.hair;
  auto rounded = [](Rgb base, float k) { return [base, k](float u, float v) { return base * (1 - k * (u * u + v * v)); }; };
  // Strands: a faint vertical ripple on the hair.
  auto strands = [hair](float u, float v) { return hair * (0.85f + 0.15f * wave(u * 3.7f + v * 0.5f)); };
  const float hair_shift = -0.25f * yaw;  // a turned head shows more hair on the far side

  if (look.hair_style == 1) {
    paint_ellipse(layer, f.ellipse(hair_shift, -0.14f, 1.1f, 1.0f), 1, strands);
  } else if (look.hair_style == 2) {
    paint_ellipse(layer, f.ellipse(hair_shift, 0.1f, 1.2f, 1.15f), 1, strands);
    paint_rect(layer, f.rect(hair_shift, 0.95f, 1.12f, 0.6f), 1, strands);
  }
  if (look.hair_style != 2) {  // ears; long hair covers them, a turned head hides the far one
    for (int side : {-1, 1})
      if (static_cast<float>(side) * yaw < 0.3f)
        paint_ellipse(layer, f.ellipse(0.95f * static_cast<float>(side), 0.05f, 0.13f, 0.22f), 1, skin * 0.88f);
  }
  paint_ellipse(layer, f.ellipse(0, 0, 1, 1), 1, rounded(skin, 0.22f));
  if (r.chance(0.3))
    for (int side : {-1, 1})
      paint_ellipse(layer, f.ellipse(0.5f * static_cast<float>(side) + 0.3f * yaw, 0.28f, 0.2f, 0.12f), 0.18f,
                    Rgb{200, 60, 60});

  // Beard before the mouth, so the lips show through.
  const bool beard = r.chance(0.1);
  if (beard) paint_ellipse(layer, f.ellipse(0.2f * yaw, 0.72f, 0.72f, 0.36f), 0.9f, strands);
  const bool moustache = beard || r.chance(0.05);

  // Eyes: socket shadow, sclera, iris, pupil; the eye on the side the head turns to foreshortens and
  // hides behind the nose line in a profile.
  const bool closed = r.chance(0.08);
  const float eye_scale = r.range(0.85, 1.15);
  const Rgb iris = r.chance(0.7) ? Rgb{70, 45, 30} * r.range(0.6, 1.2) : Rgb{60, 100, 140} * r.range(0.7, 1.2);
  const float brow_raise = open_mouth ? 0.07f : r.range(-0.02, 0.03);
  const Rgb brow = hair * 0.7f;
  for (int side : {-1, 1}) {
    const float s = static_cast<float>(side);
    const float fore = std::clamp(1 - 0.9f * std::max(0.f, s * yaw), 0.f, 1.f);
    if (fore < 0.35f) continue;
    const float u = 0.36f * s + 0.3f * yaw;
    const float v = -0.05f;
    paint_ellipse(layer, f.ellipse(u, v, 0.24f * fore * eye_scale, 0.13f * eye_scale), 0.25f, skin * 0.6f);
    if (closed) {
      paint_ellipse(layer, f.ellipse(u, v + 0.02f, 0.17f * fore * eye_scale, 0.015f), 0.9f, Rgb{40, 25, 20});
    } else {
      paint_ellipse(layer, f.ellipse(u, v, 0.17f * fore * eye_scale, 0.075f * eye_scale), 1, Rgb{235, 230, 222});
      const float iris_r = 0.065f * a * eye_scale;
      paint_ellipse(layer, f.ellipse_px(u + 0.05f * yaw, v, iris_r * fore, iris_r), 1, iris);
      paint_ellipse(layer, f.ellipse_px(u + 0.05f * yaw, v, 0.45f * iris_r * fore, 0.45f * iris_r), 1, Rgb{10, 8, 8});
    }
    paint_ellipse(layer, f.ellipse(u, -0.3f - brow_raise, 0.21f * fore, 0.04f, 0.12f * s), 0.9f, brow);
  }
  // Nose: a shaded ridge and two nostrils.
  const float nose_u = 0.42f * yaw;
  paint_ellipse(layer, f.ellipse(nose_u + 0.04f, 0.16f, 0.08f, 0.2f), 0.4f, skin * 0.75f);
  for (int side : {-1, 1})
    paint_ellipse(layer, f.ellipse(nose_u + 0.065f * static_cast<float>(side), 0.33f, 0.04f, 0.03f), 0.6f, skin * 0.35f);
  // Mouth.
  const float mouth_u = 0.3f * yaw, mouth_v = 0.56f;
  const Rgb lips = mix(skin, Rgb{170, 60, 65}, r.range(0.3, 0.6));
  if (open_mouth) {
    paint_ellipse(layer, f.ellipse(mouth_u, mouth_v, 0.25f, 0.15f), 1, Rgb{70, 20, 25});
    paint_ellipse(layer, f.ellipse(mouth_u, mouth_v - 0.09f, 0.19f, 0.045f), 1, Rgb{235, 232, 225});
  } else {
    paint_ellipse(layer, f.ellipse(mouth_u, mouth_v, 0.29f, 0.065f), 0.9f, lips);
    paint_ellipse(layer, f.ellipse(mouth_u, mouth_v, 0.26f, 0.013f), 0.8f, lips * 0.45f);
  }
  if (moustache) paint_ellipse(layer, f.ellipse(mouth_u, 0.44f, 0.3f, 0.06f), 0.95f, strands);
  if (look.hair_style != 0 && r.chance(0.35))  // fringe over the forehead
    paint_ellipse(layer, f.ellipse(hair_shift, -0.82f, 0.85f, 0.32f), 1, strands);
  if (r.chance(0.12)) {  // glasses, sometimes dark
    const bool dark = r.chance(0.3);
    const Rgb frame_colour = Rgb{30, 30, 35} * r.range(0.5, 3);
    for (int side : {-1, 1}) {
      const float s = static_cast<float>(side);
      const float fore = std::clamp(1 - 0.9f * std::max(0.f, s * yaw), 0.f, 1.f);
      if (fore < 0.35f) continue;
      const Ellipse lens = f.ellipse(0.36f * s + 0.3f * yaw, -0.04f, 0.25f * fore, 0.17f);
      if (dark) paint_ellipse(layer, lens, 0.92f, Rgb{20, 20, 25});
      paint_ring(layer, lens, std::max(0.6f, 0.045f * a), 1, frame_colour);
    }
    paint_rect(layer, f.rect(0.3f * yaw, -0.06f, 0.12f, 0.02f), 1, frame_colour);
  }
  if (r.chance(0.08)) {  // a hat
    const Rgb colour = random_colour(r);
    paint_ellipse(layer, f.ellipse(hair_shift, -0.95f, 1.05f, 0.45f), 1, rounded(colour, 0.3f));
    paint_rect(layer, f.rect(hair_shift, -0.62f, 1.25f, 0.06f), 1, colour * 0.8f);
  }

  // Lighting: a linear gradient across the face in its own frame (light from one side), applied to the
  // whole layer as light falls on everything there. Linear in x and y, so it is stepped along each row.
  const float lx = std::cos(light_angle) * light, ly = std::sin(light_angle) * light;
  const float kx = (lx * f.cs / a) - (ly * f.sn / b), ky = (lx * f.sn / a) + (ly * f.cs / b);
  for (int64_t y = 0; y < layer.height; ++y) {
    float* p = layer.px.data() + y * layer.width * 4;
    const float py = static_cast<float>(layer.y0 + y) + 0.5f - f.cy;
    for (int64_t x = 0; x < layer.width; ++x, p += 4) {
      const float px = static_cast<float>(layer.x0 + x) + 0.5f - f.cx;
      const float k = std::clamp(1 + kx * px + ky * py, 0.2f, 2.0f);
      p[0] *= k;
      p[1] *= k;
      p[2] *= k;
    }
  }
  if (radius > 0) blur_layer(layer, radius);
  composite(scene, layer);

  // Occluder in front of the face: a mask, an object entering from a side, or a hand.
  float covered = 0;
  if (r.chance(cfg.occlusion_prob)) {
    const double kind = r.uniform();
    if (kind < 0.25 && !profile) {
      const Rect mask = f.rect(0.3f * yaw, 0.5f, 0.85f, 0.42f);
      const Rgb colour = r.chance(0.5) ? Rgb{235, 238, 240} : r.chance(0.5) ? Rgb{150, 190, 225} : random_colour(r);
      paint_rect(scene, mask, 1, rounded(colour, 0.15f));
      covered = covered_fraction(f, [&](float x, float y) { return inside(mask, x, y); });
    } else {
      // Try positions until the hidden share of the face is 15–75 %: enough to matter, not all of it.
      for (int attempt = 0; attempt < 8; ++attempt) {
        const float dir = r.range(0, 2 * kPi), dist = r.range(0.5, 1.3);
        const float ox = f.cx + std::cos(dir) * dist * 2 * a, oy = f.cy + std::sin(dir) * dist * 2 * b;
        const float hx = r.range(0.4, 1.2) * a, hy = r.range(0.4, 1.2) * b, angle = r.range(0, kPi);
        const bool hand = kind > 0.75;
        const bool round = !hand && r.chance(0.5);
        const Rect rect{ox, oy, hx, hy, angle};
        const Ellipse ell{ox, oy, hx, hy, angle};
        const float frac = covered_fraction(f, [&](float x, float y) {
          return round || hand ? inside(ell, x, y) : inside(rect, x, y);
        });
        if (frac < 0.15f || frac > 0.75f) continue;
        covered = frac;
        if (hand) {
          const Rgb hand_skin = skin_tone(r);
          paint_ellipse(scene, ell, 1, rounded(hand_skin, 0.2f));
          for (int finger = 0; finger < 4; ++finger) {  // fingers reaching towards the face centre
            const float t = (static_cast<float>(finger) - 1.5f) * 0.35f;
            const float fx = ox + std::cos(dir + kPi + t) * hx * 1.1f, fy = oy + std::sin(dir + kPi + t) * hy * 1.1f;
            paint_rect(scene, {fx, fy, 0.45f * hx, 0.1f * hy, dir + t}, 1, hand_skin * 0.95f);
          }
        } else if (round) {
          paint_ellipse(scene, ell, 1, random_texture(r));
        } else {
          paint_rect(scene, rect, 1, random_texture(r));
        }
        break;
      }
    }
  }

  attr.blur = blurred ? (heavy_blur || sigma >= 0.035f * face.size ? 2 : 1) : 0;
  attr.expression = open_mouth ? 1 : 0;
  attr.illumination = extreme_light || light > 0.45f ? 1 : 0;
  attr.occlusion = covered <= 0 ? 0 : covered <= 0.3f ? 1 : 2;
  attr.pose = std::abs(yaw) > 0.45f || std::abs(f.roll) > 0.35f ? 1 : 0;
  return attr;
}

}  // namespace

void validate(const SyntheticConfig& c) {
  auto in_range = [](auto v, auto lo, auto hi) { return v >= lo && v <= hi; };
  ISRN_CHECK(in_range(c.min_image_size, 16, 16384), "[synthetic] min_image_size ", c.min_image_size,
             " is outside 16..16384");
  ISRN_CHECK(in_range(c.max_image_size, c.min_image_size, 16384), "[synthetic] max_image_size ", c.max_image_size,
             " is outside min_image_size (", c.min_image_size, ")..16384");
  // Placement compares each face with those placed before it: a few thousand faces is the sensible limit
  // (WIDER's most crowded image has 709).
  ISRN_CHECK(in_range(c.min_faces, 0, 2000), "[synthetic] min_faces ", c.min_faces, " is outside 0..2000");
  ISRN_CHECK(in_range(c.max_faces, c.min_faces, 2000), "[synthetic] max_faces ", c.max_faces,
             " is outside min_faces (", c.min_faces, ")..2000");
  ISRN_CHECK(in_range(c.min_face_size, 4.f, 16384.f), "[synthetic] min_face_size ", c.min_face_size,
             " is outside 4..16384");
  ISRN_CHECK(in_range(c.max_face_size, c.min_face_size, 16384.f), "[synthetic] max_face_size ", c.max_face_size,
             " is outside min_face_size (", c.min_face_size, ")..16384");
  ISRN_CHECK(in_range(c.min_face_aspect, 0.5f, 3.f), "[synthetic] min_face_aspect ", c.min_face_aspect,
             " is outside 0.5..3");
  ISRN_CHECK(in_range(c.max_face_aspect, c.min_face_aspect, 3.f), "[synthetic] max_face_aspect ", c.max_face_aspect,
             " is outside min_face_aspect (", c.min_face_aspect, ")..3");
  ISRN_CHECK(in_range(c.max_overlap, 0.f, 1.f), "[synthetic] max_overlap ", c.max_overlap, " is outside 0..1");
  using Named = std::pair<const char*, double>;
  for (const auto& [name, p] : {Named{"border_cut_prob", c.border_cut_prob}, Named{"blur_prob", c.blur_prob},
                                Named{"occlusion_prob", c.occlusion_prob}, Named{"profile_prob", c.profile_prob},
                                Named{"body_prob", c.body_prob}})
    ISRN_CHECK(in_range(p, 0.0, 1.0), "[synthetic] ", name, " ", p, " is not a probability");
  ISRN_CHECK(in_range(c.min_distractors, 0, 10000), "[synthetic] min_distractors ", c.min_distractors,
             " is outside 0..10000");
  ISRN_CHECK(in_range(c.max_distractors, c.min_distractors, 10000), "[synthetic] max_distractors ",
             c.max_distractors, " is outside min_distractors (", c.min_distractors, ")..10000");
  ISRN_CHECK(in_range(c.min_background_shapes, 0, 10000), "[synthetic] min_background_shapes ",
             c.min_background_shapes, " is outside 0..10000");
  ISRN_CHECK(in_range(c.max_background_shapes, c.min_background_shapes, 10000), "[synthetic] max_background_shapes ",
             c.max_background_shapes, " is outside min_background_shapes (", c.min_background_shapes, ")..10000");
  ISRN_CHECK(in_range(c.max_noise, 0.f, 128.f), "[synthetic] max_noise ", c.max_noise, " is outside 0..128");
}

uint64_t scene_seed(uint64_t seed, uint64_t index) { return mix64(seed ^ mix64(index + 0x632be59bd9b4e019ULL)); }

uint64_t validation_seed(uint64_t seed) { return mix64(seed ^ 0x76616c6964617465ULL); }

Sample generate_scene(const SyntheticConfig& config, uint64_t seed, std::vector<FaceAttributes>* attributes) {
  validate(config);
  // One stream per purpose, so that changing one part of the config (the face count, say) leaves the
  // rest of the scene as it was: a scene without faces is the same background.
  auto stream = [seed](uint64_t k) { return mix64(seed + k * 0x9e3779b97f4a7c15ULL); };
  Rng layout(stream(1)), background(stream(2)), distractors(stream(3)), faces(stream(4));
  const uint64_t noise_seed = stream(5);

  const int64_t H = layout.integer(config.min_image_size, config.max_image_size);
  const int64_t W = layout.integer(config.min_image_size, config.max_image_size);
  const bool extreme_light = layout.chance(0.05);
  const float gain = extreme_light ? (layout.chance(0.5) ? layout.range(0.3, 0.5) : layout.range(1.5, 1.8))
                                   : layout.range(0.8, 1.15);
  const float bias = layout.range(-15, 15);
  const float noise = layout.range(0, config.max_noise);

  Canvas scene(0, 0, W, H, false);
  paint_base(scene, background);
  if (background.chance(0.35)) paint_pattern(scene, background);
  paint_background_shapes(scene, background,
                          static_cast<int>(background.integer(config.min_background_shapes, config.max_background_shapes)));

  const float cap = 0.9f * static_cast<float>(std::min(W, H));
  const int64_t n_distractors = distractors.integer(config.min_distractors, config.max_distractors);
  for (int64_t i = 0; i < n_distractors; ++i)
    paint_distractor(scene, distractors, std::min(cap, std::max(6.f, config.min_face_size)),
                     std::min(cap, 0.8f * config.max_face_size));

  const std::vector<PlacedFace> placed = place_faces(config, faces, W, H);
  std::vector<bool> body(placed.size());
  for (size_t i = 0; i < placed.size(); ++i) body[i] = faces.chance(config.body_prob);
  for (size_t i = 0; i < placed.size(); ++i)
    if (body[i]) paint_body(scene, placed[i]);
  Sample sample;
  std::vector<FaceAttributes> attrs;
  for (const PlacedFace& face : placed) {
    attrs.push_back(paint_face(scene, face, config, extreme_light));
    sample.boxes.push_back(face.box);
  }

  // Exposure and sensor noise over everything, then 8 bits.
  sample.image = Image(H, W);
  uint8_t* out = sample.image.pixels.data();
  const float* in = scene.px.data();
  const float scale = noise / static_cast<float>(1 << 20);
  for (int64_t i = 0; i < H * W; ++i) {
    const uint64_t h = mix64(noise_seed ^ (static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL));
    for (int ch = 0; ch < 3; ++ch) {
      const float n = static_cast<float>(static_cast<int64_t>((h >> (21 * ch)) & 0x1fffff) - (1 << 20)) * scale;
      const float v = std::clamp(in[i * 3 + ch] * gain + bias + n, 0.f, 255.f);
      out[i * 3 + ch] = static_cast<uint8_t>(v + 0.5f);
    }
  }
  sample.id = "synthetic/seed_" + std::to_string(seed);
  if (attributes) *attributes = std::move(attrs);
  return sample;
}

SyntheticDataset::SyntheticDataset(SyntheticConfig config, uint64_t seed, size_t size)
    : config_(std::move(config)), seed_(seed), size_(size) {
  validate(config_);
}

Sample SyntheticDataset::get(size_t index) const { return get(index, nullptr); }

Sample SyntheticDataset::get(size_t index, std::vector<FaceAttributes>* attributes) const {
  ISRN_CHECK(index < size_, "[SyntheticDataset] index ", index, " is out of range for ", size_, " scenes");
  Sample s = generate_scene(config_, scene_seed(seed_, index), attributes);
  s.id = "synthetic/" + std::to_string(index);
  return s;
}

namespace {

struct Written {
  std::string path;  // "event/name.jpg"
  int event = 0;
  std::vector<Box> boxes;
  std::vector<FaceAttributes> attributes;
};

constexpr std::array<const char*, 3> kEvents = {"0--Synthetic_Few", "1--Synthetic_Group", "2--Synthetic_Crowd"};
constexpr std::array<const char*, 3> kEventStems = {"0_Synthetic_Few", "1_Synthetic_Group", "2_Synthetic_Crowd"};

int event_of(size_t faces) { return faces <= 3 ? 0 : faces <= 10 ? 1 : 2; }

// Generates and writes one split on `threads` threads; returns the records in index order.
std::vector<Written> write_split(const WiderExport& options, const std::string& split, uint64_t seed, size_t count) {
  namespace fs = std::filesystem;
  const fs::path images = fs::path(options.out_dir) / ("WIDER_" + split) / "images";
  for (const char* event : kEvents) fs::create_directories(images / event);
  const SyntheticDataset data(options.config, seed, count);
  std::vector<Written> records(count);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (size_t i = next++; i < count && !failed; i = next++) {
      try {
        std::vector<FaceAttributes> attrs;
        Sample s = data.get(i, &attrs);
        Written& w = records[i];
        w.event = event_of(s.boxes.size());
        w.path = std::string(kEvents[w.event]) + "/" + kEventStems[w.event] + "_" + std::to_string(i) + ".jpg";
        write_image((images / w.path).string(), s.image, options.jpeg_quality);
        w.boxes = std::move(s.boxes);
        w.attributes = std::move(attrs);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < options.threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);

  // The official files list each event's images together, events in order.
  std::vector<size_t> order(count);
  for (size_t i = 0; i < count; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return records[a].event < records[b].event; });
  std::string text;
  for (size_t i : order) {
    const Written& w = records[i];
    text += w.path + "\n" + std::to_string(w.boxes.size()) + "\n";
    // Lines end with a space, as every line of the official files does.
    if (w.boxes.empty()) text += "0 0 0 0 0 0 0 0 0 0 \n";
    for (size_t k = 0; k < w.boxes.size(); ++k) {
      const Box& b = w.boxes[k];
      const FaceAttributes& a = w.attributes[k];
      text += detail::concat(static_cast<int64_t>(b.x1), ' ', static_cast<int64_t>(b.y1), ' ',
                             static_cast<int64_t>(b.x2 - b.x1), ' ', static_cast<int64_t>(b.y2 - b.y1), ' ', int(a.blur),
                             ' ', int(a.expression), ' ', int(a.illumination), " 0 ", int(a.occlusion), ' ', int(a.pose),
                             " \n");
    }
  }
  const fs::path split_dir = fs::path(options.out_dir) / "wider_face_split";
  fs::create_directories(split_dir);
  io::write_file_atomic((split_dir / ("wider_face_" + split + "_bbx_gt.txt")).string(), text, "[write_synthetic_wider] ");
  return records;
}

}  // namespace

WiderExportCounts write_synthetic_wider(const WiderExport& options) {
  ISRN_CHECK(!options.out_dir.empty(), "[write_synthetic_wider] the output folder is not set");
  ISRN_CHECK(options.jpeg_quality >= 1 && options.jpeg_quality <= 100, "[write_synthetic_wider] JPEG quality ",
             options.jpeg_quality, " is outside 1..100");
  ISRN_CHECK(options.threads >= 1 && options.threads <= 1024, "[write_synthetic_wider] threads ", options.threads,
             " is outside 1..1024");
  validate(options.config);
  WiderExportCounts counts;
  for (const Written& w : write_split(options, "train", options.seed, options.train)) {
    ++counts.train_images;
    counts.train_faces += w.boxes.size();
  }
  for (const Written& w : write_split(options, "val", validation_seed(options.seed), options.val)) {
    ++counts.val_images;
    counts.val_faces += w.boxes.size();
  }
  return counts;
}

}  // namespace isrn::data
