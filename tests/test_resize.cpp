// resize (bilinear, nearest) against naive double-precision interpolation written here from
// PyTorch's documented index rules.
#include <cmath>

#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

// For one output position: two source positions and their weights.
struct Taps {
  int64_t i0, i1;
  double l0, l1;
};

// Bilinear source coordinate: align_corners maps the corner pixels onto each other,
// src = dst * (in-1)/(out-1) (0 when out = 1); otherwise pixel centres, src = (dst+0.5)*in/out - 0.5,
// clamped at 0. The right neighbour is clamped to the last pixel.
Taps bilinear_taps(int64_t dst, int64_t in, int64_t out, bool align_corners) {
  double src;
  if (align_corners)
    src = out > 1 ? static_cast<double>(dst) * static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
  else
    src = std::max(0.0, (static_cast<double>(dst) + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5);
  const int64_t i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
  const double frac = src - static_cast<double>(i0);
  return {i0, std::min(i0 + 1, in - 1), 1.0 - frac, frac};
}

// PyTorch 'nearest': floor(dst * in / out), in exact integer arithmetic.
int64_t nearest_index(int64_t dst, int64_t in, int64_t out) { return std::min(dst * in / out, in - 1); }

std::vector<double> reference_resize(const std::vector<double>& x, const Shape& s, int64_t OH, int64_t OW,
                                     ResizeMode mode, bool align_corners) {
  std::vector<double> y;
  for (int64_t plane = 0; plane < s[0] * s[1]; ++plane)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        const double* p = x.data() + plane * s[2] * s[3];
        if (mode == ResizeMode::Nearest) {
          y.push_back(p[nearest_index(oh, s[2], OH) * s[3] + nearest_index(ow, s[3], OW)]);
        } else {
          const Taps h = bilinear_taps(oh, s[2], OH, align_corners), w = bilinear_taps(ow, s[3], OW, align_corners);
          y.push_back(h.l0 * (w.l0 * p[h.i0 * s[3] + w.i0] + w.l1 * p[h.i0 * s[3] + w.i1]) +
                      h.l1 * (w.l0 * p[h.i1 * s[3] + w.i0] + w.l1 * p[h.i1 * s[3] + w.i1]));
        }
      }
  return y;
}

struct ResizeCase {
  Shape x;
  int64_t out_h, out_w;
};

// Up, down, equal, non-integer ratios, exact doubling, size 1 on either side, and one large enough
// to run threaded.
const std::vector<ResizeCase> kCases = {
    {{2, 3, 4, 5}, 8, 10},  {{2, 3, 4, 5}, 7, 13}, {{1, 2, 9, 7}, 4, 3},   {{1, 2, 6, 6}, 6, 6},
    {{1, 1, 5, 8}, 1, 1},   {{1, 2, 1, 1}, 3, 4},  {{1, 2, 13, 11}, 5, 17}, {{2, 40, 33, 31}, 65, 62},
};

}  // namespace

TEST_CASE("resize: bilinear (both align_corners) and nearest match the reference (float64 and float32)") {
  for (int threads : {1, 3}) {
    const int saved = get_num_threads();
    set_num_threads(threads);
    for (Device d : test::devices()) {
      uint64_t seed = 0;
      for (const ResizeCase& c : kCases) {
        const Tensor x = test::random(c.x, ++seed);
        for (ResizeMode mode : {ResizeMode::Bilinear, ResizeMode::Nearest}) {
          for (bool align_corners : {false, true}) {
            if (mode == ResizeMode::Nearest && align_corners) continue;
            CAPTURE(threads);
            CAPTURE(d);
            CAPTURE(shape_str(c.x));
            CAPTURE(c.out_h);
            CAPTURE(c.out_w);
            CAPTURE(static_cast<int>(mode));
            CAPTURE(align_corners);
            const auto ref = reference_resize(test::values(x), c.x, c.out_h, c.out_w, mode, align_corners);
            // float64: a convex combination of four values, a few ulps from the reference's own rounding.
            check_close(resize(x.to(d), c.out_h, c.out_w, mode, align_corners), ref, 1e-14, 1e-14, "float64");
            // float32 computes the source coordinate in float (as PyTorch): off by ~in·eps, which moves
            // a weight by as much and the output by up to twice that (neighbours differ by < 2).
            const double coordinate_error = static_cast<double>(std::max(c.x[2], c.x[3])) * 0x1.0p-23;
            check_close(resize(x.to(DType::Float32).to(d), c.out_h, c.out_w, mode, align_corners), ref, 0,
                        4 * coordinate_error + 1e-7, "float32");
          }
        }
      }
    }
    set_num_threads(saved);
  }
}

TEST_CASE("resize: the gradient is the adjoint (race-free when threaded) and passes gradcheck") {
  for (int threads : {1, 3}) {
    const int saved = get_num_threads();
    set_num_threads(threads);
    for (Device d : test::devices()) {
      uint64_t seed = 50;
      for (const ResizeCase& c : kCases) {
        for (ResizeMode mode : {ResizeMode::Bilinear, ResizeMode::Nearest}) {
          for (bool align_corners : {false, true}) {
            if (mode == ResizeMode::Nearest && align_corners) continue;
            CAPTURE(threads);
            CAPTURE(shape_str(c.x));
            CAPTURE(static_cast<int>(mode));
            CAPTURE(align_corners);
            // <resize(x), g> = <x, resize_backward(g)> for every x pins resize_backward down exactly:
            // evaluate it on the basis x = e_i, i.e. scatter the reference's weights.
            const Tensor g = test::random({c.x[0], c.x[1], c.out_h, c.out_w}, ++seed);
            const auto gv = test::values(g);
            std::vector<double> expected(shape_numel(c.x), 0.0);
            const int64_t H = c.x[2], W = c.x[3], plane_out = c.out_h * c.out_w;
            for (int64_t plane = 0; plane < c.x[0] * c.x[1]; ++plane)
              for (int64_t oh = 0; oh < c.out_h; ++oh)
                for (int64_t ow = 0; ow < c.out_w; ++ow) {
                  const double gg = gv[plane * plane_out + oh * c.out_w + ow];
                  double* e = expected.data() + plane * H * W;
                  if (mode == ResizeMode::Nearest) {
                    e[nearest_index(oh, H, c.out_h) * W + nearest_index(ow, W, c.out_w)] += gg;
                    continue;
                  }
                  const Taps h = bilinear_taps(oh, H, c.out_h, align_corners);
                  const Taps w = bilinear_taps(ow, W, c.out_w, align_corners);
                  e[h.i0 * W + w.i0] += h.l0 * w.l0 * gg;
                  e[h.i0 * W + w.i1] += h.l0 * w.l1 * gg;
                  e[h.i1 * W + w.i0] += h.l1 * w.l0 * gg;
                  e[h.i1 * W + w.i1] += h.l1 * w.l1 * gg;
                }
            // Each input gathers at most a few dozen weighted terms: 1e-13 absolute.
            check_close(resize_backward(g.to(d), c.x, mode, align_corners), expected, 1e-13, 1e-13, "resize_backward");
          }
        }
      }
    }
    set_num_threads(saved);
  }
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (bool align_corners : {false, true}) {
      test::gradcheck(
          [align_corners](const std::vector<Tensor>& in) { return resize(in[0], 7, 4, ResizeMode::Bilinear, align_corners); },
          {test::random({1, 2, 3, 5}, 61)}, d);
      // The gradient op is linear in grad_y with the forward resize as its own gradient.
      test::gradcheck(
          [align_corners](const std::vector<Tensor>& in) {
            return resize_backward(in[0], {1, 2, 3, 5}, ResizeMode::Bilinear, align_corners);
          },
          {test::random({1, 2, 7, 4}, 62)}, d);
    }
    test::gradcheck([](const std::vector<Tensor>& in) { return resize(in[0], 5, 9, ResizeMode::Nearest); },
                    {test::random({2, 1, 3, 4}, 63)}, d);
  }
}

TEST_CASE("resize: non-contiguous input, empty batch and bad inputs") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor x = test::random({2, 6, 5, 3}, 71).to(d).permute({0, 3, 1, 2});  // [2, 3, 6, 5] view
    REQUIRE(!x.is_contiguous());
    check_close(resize(x, 9, 4, ResizeMode::Bilinear, true), resize(x.contiguous(), 9, 4, ResizeMode::Bilinear, true),
                0, 0, "permuted input");
    Tensor e = zeros({0, 2, 4, 4}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    const Tensor y = resize(e, 8, 8, ResizeMode::Nearest);
    CHECK(y.shape() == Shape{0, 2, 8, 8});
    sum(y).backward();
    CHECK(e.grad().shape() == Shape{0, 2, 4, 4});
  }
  const Tensor x = test::random({1, 2, 4, 4}, 72);
  CHECK_THROWS_WITH_AS(resize(test::random({2, 4, 4}, 1), 8, 8, ResizeMode::Bilinear),
                       doctest::Contains("[resize] expects a 4-D NCHW input, got shape [2, 4, 4]"), Error);
  CHECK_THROWS_WITH_AS(resize(x, 0, 8, ResizeMode::Bilinear), doctest::Contains("[resize] output size must be positive"),
                       Error);
  CHECK_THROWS_WITH_AS(resize(x, 8, 8, ResizeMode::Nearest, true),
                       doctest::Contains("[resize] align_corners applies to bilinear only"), Error);
  CHECK_THROWS_WITH_AS(resize(x.to(DType::Int32), 8, 8, ResizeMode::Nearest), doctest::Contains("must be float32 or float64"),
                       Error);
  CHECK_THROWS_WITH_AS(resize_backward(test::random({1, 3, 8, 8}, 1), x.shape(), ResizeMode::Bilinear, false),
                       doctest::Contains("[resize_backward] grad_y of shape [1, 3, 8, 8] does not come from an input"),
                       Error);
}
