// conv2d and its two gradient convolutions against naive double-precision loops written here.
#include <cmath>
#include <limits>

#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

struct ConvCase {
  const char* name;
  Shape x, w;  // NCHW, [Co, Ci, KH, KW]
  Conv2dParams p;
};

Conv2dParams make(int64_t sh, int64_t sw, std::array<int64_t, 4> pad, int64_t dh = 1, int64_t dw = 1) {
  Conv2dParams p;
  p.stride = {sh, sw};
  p.padding = pad;
  p.dilation = {dh, dw};
  return p;
}

// Shapes chosen to be multiples of no block size (panels of 8/12/16/32, tiles, cache blocks); K above
// 256 in some cases so the GEMM's depth blocking is crossed, and J above 1000 so several tiles are.
std::vector<ConvCase> cases() {
  return {
      {"1x1 s1 (pointwise GEMM)", {2, 13, 9, 11}, {7, 13, 1, 1}, make(1, 1, {0, 0, 0, 0})},
      {"1x1 s2", {2, 5, 9, 12}, {6, 5, 1, 1}, make(2, 2, {0, 0, 0, 0})},
      {"1x1 with padding", {1, 3, 5, 6}, {4, 3, 1, 1}, make(1, 1, {1, 0, 0, 2})},
      {"3x3 s1 p1", {2, 5, 11, 9}, {9, 5, 3, 3}, make(1, 1, {1, 1, 1, 1})},
      {"3x3 s2 p1", {2, 4, 13, 10}, {5, 4, 3, 3}, make(2, 2, {1, 1, 1, 1})},
      {"3x3 s2 no pad", {1, 3, 10, 13}, {3, 3, 3, 3}, make(2, 2, {0, 0, 0, 0})},
      {"7x7 s1 p3", {1, 3, 15, 13}, {6, 3, 7, 7}, make(1, 1, {3, 3, 3, 3})},
      {"7x7 s2 p3", {2, 3, 17, 14}, {5, 3, 7, 7}, make(2, 2, {3, 3, 3, 3})},
      {"1x3 pad left/right", {2, 6, 7, 10}, {5, 6, 1, 3}, make(1, 1, {0, 0, 1, 1})},
      {"3x1 pad top/bottom", {2, 6, 10, 7}, {5, 6, 3, 1}, make(1, 1, {1, 1, 0, 0})},
      {"1x5 pad left/right", {1, 4, 6, 13}, {3, 4, 1, 5}, make(1, 1, {0, 0, 2, 2})},
      {"5x1 pad top/bottom", {1, 4, 13, 6}, {3, 4, 5, 1}, make(1, 1, {2, 2, 0, 0})},
      {"asymmetric padding", {2, 3, 9, 8}, {4, 3, 3, 2}, make(1, 1, {0, 2, 3, 1})},
      {"dilation 2", {1, 4, 13, 12}, {5, 4, 3, 3}, make(1, 1, {2, 2, 2, 2}, 2, 2)},
      {"dilation (2,3) stride (2,1)", {2, 3, 14, 15}, {4, 3, 3, 2}, make(2, 1, {1, 2, 0, 3}, 2, 3)},
      {"kernel wider than the input", {1, 2, 3, 3}, {3, 2, 5, 5}, make(1, 1, {2, 2, 2, 2})},
      {"padding larger than the kernel", {1, 2, 4, 5}, {2, 2, 2, 2}, make(3, 2, {4, 3, 5, 4})},
      {"deep K, several tiles", {2, 37, 29, 37}, {19, 37, 3, 3}, make(1, 1, {1, 1, 1, 1})},
      // The next three are above the kernels' threading threshold (2^20 multiply-adds), so the 3-thread run
      // splits output channels (one tile, one row) and the col2im gradient's channel groups.
      {"many channels, small map (split rows)", {1, 70, 6, 9}, {45, 70, 3, 3}, make(1, 1, {1, 1, 1, 1})},
      {"pointwise, many tiles", {3, 33, 41, 43}, {21, 33, 1, 1}, make(1, 1, {0, 0, 0, 0})},
      // Rows of 24+ outputs take the implicit GEMM in float32 too (float64 takes it from 12).
      {"3x3 s1 p1, rows of 29", {2, 6, 7, 29}, {10, 6, 3, 3}, make(1, 1, {1, 1, 1, 1})},
      {"7x7 s1 p3, rows of 61", {1, 3, 9, 61}, {5, 3, 7, 7}, make(1, 1, {3, 3, 3, 3})},
      {"1x5, rows of 30, bottom padding", {1, 4, 5, 30}, {3, 4, 1, 5}, make(1, 1, {0, 1, 2, 2})},
      {"dilation 2, rows of 33", {1, 3, 9, 33}, {4, 3, 3, 3}, make(1, 1, {2, 2, 2, 2}, 2, 2)},
      {"deep and wide", {2, 24, 15, 61}, {17, 24, 3, 3}, make(1, 1, {1, 1, 1, 1})},
      {"one output row, channels split", {1, 100, 1, 120}, {30, 100, 1, 3}, make(1, 1, {0, 0, 1, 1})},
      // Strided implicit GEMM (through the input's stride phases), also for float32's 32-wide blocks.
      {"3x3 s2, rows of 25", {1, 5, 9, 50}, {6, 5, 3, 3}, make(2, 2, {1, 1, 1, 1})},
      {"5x5 s3, rows of 24, asymmetric padding", {1, 2, 11, 72}, {3, 2, 5, 5}, make(3, 3, {2, 1, 2, 0})},
      // Stride 2: the col2im gradient, with a packed w^T (batch 9) and with channel groups (deep).
      {"3x3 s2, batch 9", {9, 3, 11, 10}, {4, 3, 3, 3}, make(2, 2, {1, 1, 1, 1})},
      {"3x3 s2, deep", {1, 40, 31, 29}, {18, 40, 3, 3}, make(2, 2, {1, 1, 1, 1})},
      {"one input channel", {4, 1, 40, 41}, {6, 1, 3, 3}, make(1, 1, {1, 1, 1, 1})},
      // Images of ~12 MB (float32) / ~20 MB (float64) padded-and-transposed: the weight gradient
      // takes them in several chunks and output-row bands.
      {"large images, 1x1", {3, 40, 256, 200}, {3, 40, 1, 1}, make(1, 1, {0, 0, 0, 0})},
      // 17 MB (float32) padded images: the implicit forward takes one image per chunk.
      {"large images, padded 1x1", {2, 64, 256, 256}, {1, 64, 1, 1}, make(1, 1, {1, 1, 1, 1})},
  };
}

Shape out_shape(const ConvCase& c) {
  return {c.x[0], c.w[0], c.p.out_h(c.x[2], c.w[2]), c.p.out_w(c.x[3], c.w[3])};
}

// Input position of tap k for output o, or -1 outside the image.
int64_t input_index(int64_t o, int64_t k, int64_t stride, int64_t pad_before, int64_t dilation, int64_t size) {
  const int64_t i = o * stride - pad_before + k * dilation;
  return i >= 0 && i < size ? i : -1;
}

// Exact-ish sums with their scale: value = Σ terms (in double), magnitude = Σ |terms|.
struct Sums {
  std::vector<double> value, magnitude;
};

// The seven loops of the definition, in double.
Sums reference_forward(const ConvCase& c, const std::vector<double>& x, const std::vector<double>& w,
                       const std::vector<double>* b) {
  const Shape y = out_shape(c);
  const int64_t N = c.x[0], Ci = c.x[1], H = c.x[2], W = c.x[3], Co = c.w[0], KH = c.w[2], KW = c.w[3];
  Sums out{std::vector<double>(shape_numel(y)), std::vector<double>(shape_numel(y))};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t co = 0; co < Co; ++co)
      for (int64_t oh = 0; oh < y[2]; ++oh)
        for (int64_t ow = 0; ow < y[3]; ++ow) {
          double s = b ? (*b)[co] : 0.0, m = std::abs(s);
          for (int64_t ci = 0; ci < Ci; ++ci)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = input_index(oh, kh, c.p.stride[0], c.p.padding[0], c.p.dilation[0], H);
                const int64_t iw = input_index(ow, kw, c.p.stride[1], c.p.padding[2], c.p.dilation[1], W);
                if (ih < 0 || iw < 0) continue;
                const double term = x[((n * Ci + ci) * H + ih) * W + iw] * w[((co * Ci + ci) * KH + kh) * KW + kw];
                s += term;
                m += std::abs(term);
              }
          out.value[((n * Co + co) * y[2] + oh) * y[3] + ow] = s;
          out.magnitude[((n * Co + co) * y[2] + oh) * y[3] + ow] = m;
        }
  return out;
}

// dx and dw of sum(y * gy), by the same loops, scattering instead of gathering.
void reference_backward(const ConvCase& c, const std::vector<double>& x, const std::vector<double>& w,
                        const std::vector<double>& gy, Sums& dx, Sums& dw) {
  const Shape y = out_shape(c);
  const int64_t N = c.x[0], Ci = c.x[1], H = c.x[2], W = c.x[3], Co = c.w[0], KH = c.w[2], KW = c.w[3];
  dx = {std::vector<double>(shape_numel(c.x), 0.0), std::vector<double>(shape_numel(c.x), 0.0)};
  dw = {std::vector<double>(shape_numel(c.w), 0.0), std::vector<double>(shape_numel(c.w), 0.0)};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t co = 0; co < Co; ++co)
      for (int64_t oh = 0; oh < y[2]; ++oh)
        for (int64_t ow = 0; ow < y[3]; ++ow) {
          const double g = gy[((n * Co + co) * y[2] + oh) * y[3] + ow];
          for (int64_t ci = 0; ci < Ci; ++ci)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = input_index(oh, kh, c.p.stride[0], c.p.padding[0], c.p.dilation[0], H);
                const int64_t iw = input_index(ow, kw, c.p.stride[1], c.p.padding[2], c.p.dilation[1], W);
                if (ih < 0 || iw < 0) continue;
                const int64_t xi = ((n * Ci + ci) * H + ih) * W + iw, wi = ((co * Ci + ci) * KH + kh) * KW + kw;
                dx.value[xi] += g * w[wi];
                dx.magnitude[xi] += std::abs(g * w[wi]);
                dw.value[wi] += g * x[xi];
                dw.magnitude[wi] += std::abs(g * x[xi]);
              }
        }
}

// A floating-point sum of n terms errs by at most about n·eps·Σ|terms| in any order (and typically
// by sqrt(n)·eps·Σ|terms|), so each element is held to `eps_multiple`·eps·Σ|terms| of its own sum:
// tight where the terms are few or small, fair to a sum of 150,000 terms, and blind to no element.
void check_sums(const Tensor& actual, const Sums& expected, double eps, double eps_multiple, const std::string& what) {
  const auto a = test::values(actual);
  REQUIRE(a.size() == expected.value.size());
  double worst = 0.0;
  int64_t worst_at = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    const double allowed = eps_multiple * eps * expected.magnitude[i] + 1e-300;
    const double excess = std::abs(a[i] - expected.value[i]) / allowed;
    if (!(excess <= 1.0) && (worst_at < 0 || excess > worst || std::isnan(excess))) {
      worst = excess;
      worst_at = static_cast<int64_t>(i);
    }
  }
  if (worst_at >= 0)
    FAIL_CHECK(what << ": element " << worst_at << " is " << a[worst_at] << ", expected " << expected.value[worst_at]
                    << " (allowed " << eps_multiple << " eps of the terms' magnitude " << expected.magnitude[worst_at]
                    << ")");
}

// Runs `body` with the CPU kernels on `threads` threads, restoring the previous count.
template <typename Fn>
void with_threads(int threads, Fn&& body) {
  const int saved = get_num_threads();
  set_num_threads(threads);
  body();
  set_num_threads(saved);
}

}  // namespace

TEST_CASE("conv2d: forward and both gradient convolutions match the naive loops (float64 and float32)") {
  // One and three threads: three splits every parallel decomposition unevenly.
  for (int threads : {1, 3}) {
    with_threads(threads, [&] {
      for (Device d : test::devices()) {
        uint64_t seed = 100;
        for (const ConvCase& c : cases()) {
          const std::string name = c.name;
          CAPTURE(threads);
          CAPTURE(d);
          CAPTURE(name);
          const Tensor x = test::random(c.x, ++seed), w = test::random(c.w, ++seed);
          const Tensor b = test::random({c.w[0]}, ++seed), gy = test::random(out_shape(c), ++seed);
          const auto xv = test::values(x), wv = test::values(w), bv = test::values(b), gv = test::values(gy);
          const Sums y_ref = reference_forward(c, xv, wv, &bv);
          Sums dx_ref, dw_ref;
          reference_backward(c, xv, wv, gv, dx_ref, dw_ref);

          // float64 within 8 eps of each sum's magnitude, float32 within 16 (see check_sums): the kernels
          // sum in their own order, in blocks, so they differ from the loops by rounding only. (Seen:
          // up to ~3 eps in float64; float32 also carries the rounding of its inputs.)
          const double e64 = 0x1.0p-52, e32 = 0x1.0p-23;
          check_sums(conv2d(x.to(d), w.to(d), b.to(d), c.p), y_ref, e64, 8, "forward f64");
          check_sums(conv2d_backward_input(gy.to(d), w.to(d), c.x, c.p), dx_ref, e64, 8, "backward input f64");
          check_sums(conv2d_backward_weight(gy.to(d), x.to(d), c.w, c.p), dw_ref, e64, 8, "backward weight f64");
          const DType f = DType::Float32;
          check_sums(conv2d(x.to(f).to(d), w.to(f).to(d), b.to(f).to(d), c.p), y_ref, e32, 16, "forward f32");
          check_sums(conv2d_backward_input(gy.to(f).to(d), w.to(f).to(d), c.x, c.p), dx_ref, e32, 16,
                     "backward input f32");
          check_sums(conv2d_backward_weight(gy.to(f).to(d), x.to(f).to(d), c.w, c.p), dw_ref, e32, 16,
                     "backward weight f32");
        }
      }
    });
  }
}

TEST_CASE("conv2d: bfloat16 operands are convolved with float32 accumulation and rounded once") {
  // Mixed precision's arithmetic on every backend: exact products of bfloat16 operands, float32 sums, one
  // rounding of the result to bfloat16. Against the double loops over the same (bfloat16) values, an
  // element may err by the final rounding (bfloat16 keeps 8 significant bits: 2^-8 of its value, at most
  // 2^-8 of the terms' magnitude) plus the float32 summation (16·2^-23 = 2^-19 of the magnitude, as
  // above): (2^-8 + 2^-18) of the magnitude bounds both. A wrong term or an unrounded operand exceeds it;
  // with random signs a second rounding does too, the values being far below their terms' magnitude.
  const DType bf = DType::BFloat16;
  for (Device d : test::devices()) {
    uint64_t seed = 300;
    for (const ConvCase& c : cases()) {
      const std::string name = c.name;
      CAPTURE(d);
      CAPTURE(name);
      const Tensor x = test::random(c.x, ++seed).to(bf), w = test::random(c.w, ++seed).to(bf);
      const Tensor gy = test::random(out_shape(c), ++seed).to(bf);
      const auto xv = test::values(x), wv = test::values(w), gv = test::values(gy);
      Sums dx_ref, dw_ref;
      reference_backward(c, xv, wv, gv, dx_ref, dw_ref);
      const Tensor y = conv2d(x.to(d), w.to(d), Tensor(), c.p);
      const Tensor dx = conv2d_backward_input(gy.to(d), w.to(d), c.x, c.p);
      const Tensor dw = conv2d_backward_weight(gy.to(d), x.to(d), c.w, c.p);
      for (const Tensor* t : {&y, &dx, &dw}) REQUIRE(t->dtype() == bf);
      const double e = 0x1.0p-8 + 0x1.0p-18;
      check_sums(y, reference_forward(c, xv, wv, nullptr), e, 1, "forward bf16");
      check_sums(dx, dx_ref, e, 1, "backward input bf16");
      check_sums(dw, dw_ref, e, 1, "backward weight bf16");
    }
    // A bias is added in float32 and the sum rounded once (the kernels themselves take no bfloat16 bias).
    const ConvCase c = cases()[3];
    const Tensor x = test::random(c.x, 401).to(bf), w = test::random(c.w, 402).to(bf);
    const Tensor b = test::random({c.w[0]}, 403).to(bf);
    const auto bv = test::values(b);
    check_sums(conv2d(x.to(d), w.to(d), b.to(d), c.p), reference_forward(c, test::values(x), test::values(w), &bv),
               0x1.0p-8 + 0x1.0p-18, 1, "forward bf16 with bias");
  }
}

TEST_CASE("conv2d: forward without bias and the bias gradient as a sum over N, H, W") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const ConvCase c{"3x3", {3, 4, 7, 6}, {5, 4, 3, 3}, make(1, 2, {1, 0, 2, 1})};
    const Tensor x = test::random(c.x, 1), w = test::random(c.w, 2), gy = test::random(out_shape(c), 3);
    check_sums(conv2d(x.to(d), w.to(d), Tensor(), c.p), reference_forward(c, test::values(x), test::values(w), nullptr),
               0x1.0p-52, 8, "no bias");
    Tensor b = test::random({5}, 4).to(d).set_requires_grad(true);
    conv2d(x.to(d), w.to(d), b, c.p).backward(gy.to(d));
    const auto g = test::values(gy);
    std::vector<double> expected(5, 0.0);
    const int64_t plane = out_shape(c)[2] * out_shape(c)[3];
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t co = 0; co < 5; ++co)
        for (int64_t i = 0; i < plane; ++i) expected[co] += g[(n * 5 + co) * plane + i];
    check_close(b.grad(), expected, 1e-12, 1e-12, "bias gradient");
  }
}

TEST_CASE("conv2d: gradcheck of input, weight and bias over kernel shapes, strides, padding and dilation") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const std::vector<ConvCase> small = {
        {"3x3 s1 p1", {2, 2, 5, 4}, {3, 2, 3, 3}, make(1, 1, {1, 1, 1, 1})},
        {"3x3 s2 asymmetric", {1, 2, 6, 5}, {2, 2, 3, 3}, make(2, 2, {0, 1, 1, 0})},
        {"1x3", {1, 3, 3, 5}, {2, 3, 1, 3}, make(1, 1, {0, 0, 1, 1})},
        {"5x1", {1, 2, 6, 3}, {2, 2, 5, 1}, make(1, 1, {2, 2, 0, 0})},
        {"1x1", {2, 3, 3, 4}, {2, 3, 1, 1}, make(1, 1, {0, 0, 0, 0})},
        {"dilated", {1, 2, 6, 6}, {2, 2, 2, 3}, make(1, 2, {1, 1, 2, 1}, 2, 2)},
    };
    for (const ConvCase& c : small) {
      const std::string name = c.name;
      CAPTURE(name);
      const Conv2dParams p = c.p;
      test::gradcheck([p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); },
                      {test::random(c.x, 11), test::random(c.w, 12), test::random({c.w[0]}, 13)}, d, 1e-6, 1e-7,
                      1e-6, c.name);
    }
  }
}

TEST_CASE("conv2d: the gradient convolutions are differentiable (gradcheck of backward_input and backward_weight)") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const ConvCase c{"3x2 s2", {2, 2, 5, 6}, {3, 2, 3, 2}, make(2, 1, {1, 0, 1, 1})};
    const Conv2dParams p = c.p;
    const Shape x_shape = c.x, w_shape = c.w;
    test::gradcheck(
        [p, x_shape](const std::vector<Tensor>& in) { return conv2d_backward_input(in[0], in[1], x_shape, p); },
        {test::random(out_shape(c), 21), test::random(c.w, 22)}, d, 1e-6, 1e-7, 1e-6, "backward_input");
    test::gradcheck(
        [p, w_shape](const std::vector<Tensor>& in) { return conv2d_backward_weight(in[0], in[1], w_shape, p); },
        {test::random(out_shape(c), 23), test::random(c.x, 24)}, d, 1e-6, 1e-7, 1e-6, "backward_weight");
  }
}

TEST_CASE("conv2d: non-contiguous input, weight, bias and upstream gradient give the contiguous results") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Conv2dParams p = make(1, 1, {1, 1, 0, 2});
    // x: an NHWC tensor seen as NCHW; w: a strided slice; b: every other element; gy: transposed.
    const Tensor x_nhwc = test::random({2, 7, 6, 3}, 31).to(d);
    const Tensor x = x_nhwc.permute({0, 3, 1, 2});
    const Tensor w_big = test::random({8, 3, 3, 3}, 32).to(d);
    const Tensor w = w_big.slice(0, 0, 8, 2);
    const Tensor b = test::random({8}, 33).to(d).slice(0, 1, 8, 2);
    REQUIRE(!x.is_contiguous());
    REQUIRE(!w.is_contiguous());
    REQUIRE(!b.is_contiguous());
    const Tensor y = conv2d(x, w, b, p);
    check_close(y, conv2d(x.contiguous(), w.contiguous(), b.contiguous(), p), 0, 0, "forward");

    const Tensor gy = test::random({2, 4, y.size(3), y.size(2)}, 34).to(d).transpose(2, 3);
    REQUIRE(!gy.is_contiguous());
    Tensor xl = x.contiguous().detach().set_requires_grad(true), wl = w.contiguous().detach().set_requires_grad(true);
    Tensor xn = x.detach().set_requires_grad(true), wn = w.detach().set_requires_grad(true);
    conv2d(xl, wl, Tensor(), p).backward(gy.contiguous());
    conv2d(xn, wn, Tensor(), p).backward(gy);
    check_close(xn.grad(), xl.grad(), 0, 0, "dx through a non-contiguous upstream gradient");
    check_close(wn.grad(), wl.grad(), 0, 0, "dw through a non-contiguous upstream gradient");
  }
}

TEST_CASE("conv2d: an empty batch gives empty outputs and zero weight and bias gradients") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor x = zeros({0, 3, 8, 8}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    Tensor w = test::random({4, 3, 3, 3}, 41).to(d).set_requires_grad(true);
    Tensor b = test::random({4}, 42).to(d).set_requires_grad(true);
    const Tensor y = conv2d(x, w, b, Conv2dParams::same(3, 3, 2));
    CHECK(y.shape() == Shape{0, 4, 4, 4});
    sum(y).backward();
    CHECK(x.grad().shape() == Shape{0, 3, 8, 8});
    check_close(w.grad(), std::vector<double>(4 * 3 * 3 * 3, 0.0), 0, 0, "dw of an empty batch");
    check_close(b.grad(), std::vector<double>(4, 0.0), 0, 0, "db of an empty batch");
  }
}

TEST_CASE("conv2d: NaN and infinity reach exactly the outputs whose window covers them") {
  // Padding and the packed tiles' unused lanes must never mix into a result: a poisoned input element
  // may only change outputs that read it.
  for (Device d : test::devices()) {
    CAPTURE(d);
    const ConvCase c{"3x3 s1 p1", {1, 2, 9, 37}, {3, 2, 3, 3}, make(1, 1, {1, 1, 1, 1})};
    for (double poison : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
      std::vector<double> xv = test::values(test::random(c.x, 51));
      const int64_t ph = 4, pw = 20;
      xv[(1 * 9 + ph) * 37 + pw] = poison;  // channel 1
      const Tensor x = from_vector(xv, c.x).to(d);
      const Tensor w = test::random(c.w, 52, 0.5, 1.0).to(d);  // positive: inf stays inf, not NaN
      const auto y = test::values(conv2d(x, w, Tensor(), c.p));
      for (int64_t co = 0; co < 3; ++co)
        for (int64_t oh = 0; oh < 9; ++oh)
          for (int64_t ow = 0; ow < 37; ++ow) {
            const bool covered = std::abs(oh - ph) <= 1 && std::abs(ow - pw) <= 1;
            const double v = y[(co * 9 + oh) * 37 + ow];
            CAPTURE(poison);
            CAPTURE(oh);
            CAPTURE(ow);
            CHECK(std::isfinite(v) != covered);
          }
    }
  }
}

TEST_CASE("conv2d: bad inputs are refused with messages that name the op and the shapes") {
  const Tensor x = test::random({1, 3, 8, 8}, 61), w = test::random({4, 3, 3, 3}, 62);
  const Conv2dParams p = Conv2dParams::same(3, 3);
  CHECK_THROWS_WITH_AS(conv2d(test::random({3, 8, 8}, 1), w, Tensor(), p),
                       doctest::Contains("[conv2d] expects a 4-D NCHW input, got shape [3, 8, 8]"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, test::random({4, 3, 3}, 1), Tensor(), p), doctest::Contains("[conv2d] expects a 4-D weight"),
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(x, test::random({4, 2, 3, 3}, 1), Tensor(), p),
                       doctest::Contains("[conv2d] input has 3 channels"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, test::random({5}, 1), p), doctest::Contains("[conv2d] bias must have shape [4]"),
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(x, test::random({4, 3, 11, 3}, 1), Tensor(), Conv2dParams{}),
                       doctest::Contains("does not fit the padded input"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x.to(DType::Float32), w, Tensor(), p), doctest::Contains("[conv2d] input is float32 but weight is float64"),
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(x.to(DType::Int64), w.to(DType::Int64), Tensor(), p),
                       doctest::Contains("must be float32, bfloat16 or float64"), Error);
  Conv2dParams bad = p;
  bad.stride = {0, 1};
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), bad), doctest::Contains("[conv2d] stride must be at least 1"), Error);
  bad = p;
  bad.padding = {1, -1, 1, 1};
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), bad), doctest::Contains("padding must not be negative"), Error);
  bad = p;
  bad.dilation = {1, 0};
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), bad), doctest::Contains("dilation must be at least 1"), Error);
  CHECK_THROWS_WITH_AS(conv2d_backward_input(test::random({1, 4, 7, 8}, 1), w, {1, 3, 8, 8}, p),
                       doctest::Contains("[conv2d_backward_input] grad_y has shape [1, 4, 7, 8]"), Error);
  CHECK_THROWS_WITH_AS(conv2d_backward_weight(test::random({1, 4, 8, 8}, 1), x, {4, 3, 3}, p),
                       doctest::Contains("[conv2d_backward_weight] w_shape must be 4-D"), Error);
  CHECK_THROWS_WITH_AS(conv2d_backward_weight(test::random({2, 4, 8, 8}, 1), x, {4, 3, 3, 3}, p),
                       doctest::Contains("[conv2d_backward_weight] grad_y has shape [2, 4, 8, 8]"), Error);
}
