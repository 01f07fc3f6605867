// conv2d, max_pool2d and resize against PyTorch: golden files from data_tools/golden_conv.py
// (float64 inputs, outputs and gradients under a random upstream gradient).
//
// Tolerance: float64 against float64, 1e-10 relative (plus 1e-12 absolute for values near zero).
// Both sides sum the same few hundred products in different orders, which differ by a few ulps
// (~1e-15); 1e-10 leaves a wide margin for that and none for a wrong tap, weight or index.
#include "golden.hpp"
#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {
constexpr double kRtol = 1e-10, kAtol = 1e-12;

int64_t meta(const test::Golden& g, const char* key) { return static_cast<int64_t>(g.number(key)); }

// A leaf that requires grad: a copy of a golden input on device d.
Tensor leaf(const Tensor& t, Device d) { return t.to(d).detach().set_requires_grad(true); }
}  // namespace

TEST_CASE("golden: conv2d forward and gradients for x, weight and bias match PyTorch") {
  const char* names[] = {"3x3_s1_p1",  "3x3_s2_p1",  "3x3_s2_nobias", "7x7_s1_p3",     "7x7_s2_p3_nobias",
                         "1x3_asym",   "3x1_asym",   "1x5_asym",      "5x1_asym",      "3x3_dilation2",
                         "1x1",        "1x1_nobias", "3x3_wide"};
  for (Device d : test::devices()) {
    for (const char* name : names) {
      CAPTURE(d);
      CAPTURE(name);
      const test::Golden g = test::load_golden(std::string("conv2d_") + name);
      Conv2dParams p;
      p.stride = {meta(g, "stride_h"), meta(g, "stride_w")};
      p.padding = {meta(g, "pad_top"), meta(g, "pad_bottom"), meta(g, "pad_left"), meta(g, "pad_right")};
      p.dilation = {meta(g, "dilation_h"), meta(g, "dilation_w")};
      const bool has_bias = meta(g, "bias") != 0;
      Tensor x = leaf(g["x"], d), w = leaf(g["weight"], d);
      Tensor b = has_bias ? leaf(g["bias"], d) : Tensor();
      const Tensor y = conv2d(x, w, b, p);
      check_close(y, g["y"], kRtol, kAtol, "y");
      y.backward(g["upstream"].to(d));
      check_close(x.grad(), g["grad_x"], kRtol, kAtol, "grad_x");
      check_close(w.grad(), g["grad_weight"], kRtol, kAtol, "grad_weight");
      if (has_bias) check_close(b.grad(), g["grad_bias"], kRtol, kAtol, "grad_bias");

      // float32 copies of the same inputs: single-precision sums of up to ~1,000 products of values
      // in [-1, 1] stay within 1e-4 of the float64 results.
      const DType f = DType::Float32;
      Tensor xf = leaf(g["x"].to(f), d), wf = leaf(g["weight"].to(f), d);
      Tensor bf = has_bias ? leaf(g["bias"].to(f), d) : Tensor();
      const Tensor yf = conv2d(xf, wf, bf, p);
      check_close(yf, g["y"], 1e-4, 1e-4, "y float32");
      yf.backward(g["upstream"].to(f).to(d));
      check_close(xf.grad(), g["grad_x"], 1e-4, 1e-4, "grad_x float32");
      check_close(wf.grad(), g["grad_weight"], 1e-4, 1e-4, "grad_weight float32");
    }
  }
}

TEST_CASE("golden: max_pool2d values, indices and gradient match PyTorch (ceil mode included)") {
  for (Device d : test::devices()) {
    for (const char* name : {"k3_s2_p1_ceil", "k2_s2_ceil", "k3_s2_p1"}) {
      CAPTURE(d);
      CAPTURE(name);
      const test::Golden g = test::load_golden(std::string("maxpool_") + name);
      Pool2dParams p;
      p.kernel = {meta(g, "kernel"), meta(g, "kernel")};
      p.stride = {meta(g, "stride"), meta(g, "stride")};
      p.padding = {meta(g, "padding"), meta(g, "padding")};
      p.ceil_mode = meta(g, "ceil_mode") != 0;
      Tensor x = leaf(g["x"], d);
      const PoolResult r = max_pool2d_with_indices(x, p);
      // Pooling selects inputs: values, indices and the scattered gradient are exact.
      check_close(r.values, g["y"], 0, 0, "y");
      check_close(r.indices, g["indices"], 0, 0, "indices");
      r.values.backward(g["upstream"].to(d));
      check_close(x.grad(), g["grad_x"], 0, 0, "grad_x");
    }
  }
}

TEST_CASE("golden: bilinear (both align_corners, up and down) and nearest resize match PyTorch") {
  for (Device d : test::devices()) {
    for (const char* name : {"bilinear_ac1_up", "bilinear_ac1_down", "bilinear_ac0_up", "bilinear_ac0_down",
                             "nearest_up", "nearest_down"}) {
      CAPTURE(d);
      CAPTURE(name);
      const test::Golden g = test::load_golden(std::string("resize_") + name);
      const ResizeMode mode = g.metadata.at("mode") == "bilinear" ? ResizeMode::Bilinear : ResizeMode::Nearest;
      Tensor x = leaf(g["x"], d);
      const Tensor y = resize(x, meta(g, "out_h"), meta(g, "out_w"), mode, meta(g, "align_corners") != 0);
      check_close(y, g["y"], kRtol, kAtol, "y");
      y.backward(g["upstream"].to(d));
      check_close(x.grad(), g["grad_x"], kRtol, kAtol, "grad_x");
    }
  }
}
