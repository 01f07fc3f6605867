// CUDA-only checks of the detector's heavy kernels (conv, GroupNorm, focal loss, boxes): each CUDA
// kernel against a float64 reference written here, against the naive CUDA oracle where one exists,
// and against the CPU kernel of the same kernel_list.inc entry. Every case skips, with the reason,
// when no GPU is present.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "backend.hpp"
#include "isrn/config.hpp"
#include "isrn/cuda/conv.hpp"
#include "test_util.hpp"
#if ISRN_WITH_CUDA
#include "cuda/conv_cudnn.hpp"
#include "cuda/conv_reference.hpp"
#endif

using namespace isrn;
using test::check_close;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const Device kCuda = Device::cuda(0);

Tensor on_cuda(const Tensor& t) { return t.to(kCuda); }
// A CUDA output pre-filled with NaN, so an element a kernel forgets to write fails the check.
Tensor nan_cuda(const Shape& shape, DType dtype = DType::Float32) {
  return full(shape, kNaN, TensorOptions(dtype).device(kCuda));
}

// A float64 reference value with the sum of the absolute values of its terms: a sum of K float32
// products has a rounding error below K·2^-24 of that sum, far less in practice.
struct Reference {
  std::vector<double> value, scale;
};

// |actual − value| ≤ rtol · scale + atol elementwise (NaN never passes).
void check_scaled(const Tensor& actual, const Reference& ref, double rtol, double atol, const std::string& what) {
  const std::vector<double> a = test::values(actual);
  REQUIRE_MESSAGE(a.size() == ref.value.size(), what, ": ", a.size(), " values, expected ", ref.value.size());
  int64_t worst = -1;
  double worst_excess = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double excess = std::abs(a[i] - ref.value[i]) - (rtol * ref.scale[i] + atol);
    if (!(excess <= 0.0) && (worst < 0 || !(excess <= worst_excess))) {
      worst = static_cast<int64_t>(i);
      worst_excess = excess;
    }
  }
  if (worst >= 0)
    FAIL_CHECK(what << ": element " << worst << " is " << a[worst] << ", expected " << ref.value[worst]
                    << " (term scale " << ref.scale[worst] << ", rtol " << rtol << ")");
}

void check_exact(const Tensor& actual, const std::vector<double>& expected, const std::string& what) {
  const std::vector<double> a = test::values(actual);
  REQUIRE_MESSAGE(a.size() == expected.size(), what, ": ", a.size(), " values, expected ", expected.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != expected[i]) {
      FAIL_CHECK(what << ": element " << i << " is " << a[i] << ", expected " << expected[i]);
      return;
    }
  }
}

// =================================================================================================
// Convolution
// =================================================================================================

struct ConvCase {
  std::string name;
  int64_t n, c, h, w, co, kh, kw;
  Conv2dParams p;
  int64_t oh() const { return p.out_h(h, kh); }
  int64_t ow() const { return p.out_w(w, kw); }
  Shape x_shape() const { return {n, c, h, w}; }
  Shape w_shape() const { return {co, c, kh, kw}; }
  Shape y_shape() const { return {n, co, oh(), ow()}; }
};

ConvCase conv_case(std::string name, int64_t n, int64_t c, int64_t h, int64_t w, int64_t co, int64_t kh, int64_t kw,
                   int64_t stride, std::array<int64_t, 4> pad, int64_t dilation = 1) {
  Conv2dParams p;
  p.stride = {stride, stride};
  p.padding = pad;
  p.dilation = {dilation, dilation};
  return {std::move(name), n, c, h, w, co, kh, kw, p};
}

// Input position of output (o) and kernel tap (k) along one axis.
int64_t tap(int64_t o, int64_t k, int64_t stride, int64_t pad, int64_t dilation) { return o * stride - pad + k * dilation; }

Reference ref_conv_forward(const ConvCase& cc, const std::vector<double>& x, const std::vector<double>& w,
                           const std::vector<double>* bias) {
  const int64_t oh = cc.oh(), ow = cc.ow();
  Reference r;
  r.value.assign(cc.n * cc.co * oh * ow, 0.0);
  r.scale.assign(r.value.size(), 0.0);
  for (int64_t n = 0; n < cc.n; ++n)
    for (int64_t o = 0; o < cc.co; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double v = bias ? (*bias)[o] : 0.0, s = bias ? std::abs((*bias)[o]) : 0.0;
          for (int64_t c = 0; c < cc.c; ++c)
            for (int64_t a = 0; a < cc.kh; ++a) {
              const int64_t ih = tap(i, a, cc.p.stride[0], cc.p.padding[0], cc.p.dilation[0]);
              if (ih < 0 || ih >= cc.h) continue;
              for (int64_t b = 0; b < cc.kw; ++b) {
                const int64_t iw = tap(j, b, cc.p.stride[1], cc.p.padding[2], cc.p.dilation[1]);
                if (iw < 0 || iw >= cc.w) continue;
                const double t = x[((n * cc.c + c) * cc.h + ih) * cc.w + iw] * w[((o * cc.c + c) * cc.kh + a) * cc.kw + b];
                v += t;
                s += std::abs(t);
              }
            }
          const int64_t k = ((n * cc.co + o) * oh + i) * ow + j;
          r.value[k] = v;
          r.scale[k] = s;
        }
  return r;
}

// Both gradients at once, by scattering every forward term's partial derivatives.
void ref_conv_backward(const ConvCase& cc, const std::vector<double>& x, const std::vector<double>& w,
                       const std::vector<double>& gy, Reference& gx, Reference& gw) {
  const int64_t oh = cc.oh(), ow = cc.ow();
  gx.value.assign(cc.n * cc.c * cc.h * cc.w, 0.0);
  gx.scale.assign(gx.value.size(), 0.0);
  gw.value.assign(cc.co * cc.c * cc.kh * cc.kw, 0.0);
  gw.scale.assign(gw.value.size(), 0.0);
  for (int64_t n = 0; n < cc.n; ++n)
    for (int64_t o = 0; o < cc.co; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const double g = gy[((n * cc.co + o) * oh + i) * ow + j];
          for (int64_t c = 0; c < cc.c; ++c)
            for (int64_t a = 0; a < cc.kh; ++a) {
              const int64_t ih = tap(i, a, cc.p.stride[0], cc.p.padding[0], cc.p.dilation[0]);
              if (ih < 0 || ih >= cc.h) continue;
              for (int64_t b = 0; b < cc.kw; ++b) {
                const int64_t iw = tap(j, b, cc.p.stride[1], cc.p.padding[2], cc.p.dilation[1]);
                if (iw < 0 || iw >= cc.w) continue;
                const int64_t xi = ((n * cc.c + c) * cc.h + ih) * cc.w + iw, wi = ((o * cc.c + c) * cc.kh + a) * cc.kw + b;
                gx.value[xi] += g * w[wi];
                gx.scale[xi] += std::abs(g * w[wi]);
                gw.value[wi] += g * x[xi];
                gw.scale[wi] += std::abs(g * x[xi]);
              }
            }
        }
}

// Every kernel shape the detector uses (SPEC §15), plus the tile-shape and split-K regimes of the
// own implicit GEMM: few output channels (the heads), C_out ≥ 128 on a large map (128×128 tiles
// filling the GPU), and large K on tiny maps (split-K in the forward pass).
std::vector<ConvCase> detector_conv_cases() {
  return {
      conv_case("1x1 s1 (bottleneck, lateral)", 2, 64, 13, 11, 96, 1, 1, 1, {0, 0, 0, 0}),
      conv_case("1x1 s2 (projection shortcut)", 2, 24, 15, 17, 48, 1, 1, 2, {0, 0, 0, 0}),
      conv_case("3x3 s1 p1", 2, 32, 17, 19, 40, 3, 3, 1, {1, 1, 1, 1}),
      conv_case("3x3 s2 p1", 3, 16, 15, 15, 24, 3, 3, 2, {1, 1, 1, 1}),
      conv_case("7x7 s2 p3 (stem)", 2, 3, 37, 35, 16, 7, 7, 2, {3, 3, 3, 3}),
      conv_case("1x3 (RFE)", 2, 20, 9, 14, 20, 1, 3, 1, {0, 0, 1, 1}),
      conv_case("3x1 (RFE)", 2, 20, 14, 9, 20, 3, 1, 1, {1, 1, 0, 0}),
      conv_case("1x5 (RFE)", 1, 12, 7, 23, 12, 1, 5, 1, {0, 0, 2, 2}),
      conv_case("5x1 (RFE)", 1, 12, 23, 7, 12, 5, 1, 1, {2, 2, 0, 0}),
      conv_case("3x3 dilation 2", 2, 8, 16, 13, 8, 3, 3, 1, {2, 2, 2, 2}, 2),
      conv_case("3x3 s2 asymmetric padding", 2, 10, 16, 15, 12, 3, 3, 2, {0, 1, 1, 0}),
      conv_case("5x3 s2 asymmetric padding and dilation", 1, 6, 19, 18, 7, 5, 3, 2, {3, 1, 0, 2}, 2),
      conv_case("head cls (C_out 2)", 2, 64, 12, 10, 2, 3, 3, 1, {1, 1, 1, 1}),
      conv_case("head reg (C_out 8)", 2, 64, 9, 12, 8, 3, 3, 1, {1, 1, 1, 1}),
      conv_case("P7-like: 256 ch on 4x4 (split-K forward)", 2, 256, 4, 4, 256, 3, 3, 1, {1, 1, 1, 1}),
      conv_case("large tile: C_out 128 on 96x96", 2, 8, 96, 96, 128, 3, 3, 1, {1, 1, 1, 1}),
      conv_case("kernel larger than the padded input on one axis", 1, 3, 2, 9, 5, 3, 3, 1, {0, 1, 1, 1}),
  };
}

// Odd random shapes: nothing a multiple of a tile size.
std::vector<ConvCase> random_conv_cases(int count, uint64_t seed) {
  Generator gen(seed);
  auto pick = [&](int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(gen.uniform() * double(hi - lo + 1)); };
  std::vector<ConvCase> out;
  const int64_t sizes[] = {1, 3, 5, 7};
  while (static_cast<int>(out.size()) < count) {
    const int64_t kh = sizes[pick(0, 3)], kw = sizes[pick(0, 3)], stride = pick(1, 2), dil = pick(1, 2);
    const std::array<int64_t, 4> pad{pick(0, kh - 1), pick(0, kh - 1), pick(0, kw - 1), pick(0, kw - 1)};
    ConvCase cc = conv_case("random", pick(1, 3), pick(1, 24), pick(1, 23), pick(1, 23), pick(1, 48), kh, kw, stride,
                            pad, dil);
    if (cc.oh() < 1 || cc.ow() < 1) continue;
    cc.name = "random " + std::to_string(out.size()) + " " + shape_str(cc.x_shape()) + " w " + shape_str(cc.w_shape()) +
              " s" + std::to_string(stride) + " d" + std::to_string(dil);
    out.push_back(cc);
  }
  return out;
}

#if ISRN_WITH_CUDA
// Sets the convolution backend and the transform switch for a scope.
struct ScopedConvSwitches {
  cuda::ConvBackend backend_before = cuda::conv_backend();
  bool transforms_before = cuda::allow_conv_transforms();
  ScopedConvSwitches(cuda::ConvBackend backend, bool transforms) {
    cuda::set_conv_backend(backend);
    cuda::set_allow_conv_transforms(transforms);
  }
  ~ScopedConvSwitches() {
    cuda::set_conv_backend(backend_before);
    cuda::set_allow_conv_transforms(transforms_before);
  }
  ScopedConvSwitches(const ScopedConvSwitches&) = delete;
  ScopedConvSwitches& operator=(const ScopedConvSwitches&) = delete;
};

// Runs the forward and both backward passes of one implementation family on CUDA.
struct ConvImpl {
  std::string name;
  void (*forward)(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&, Tensor&);
  void (*backward_input)(const Tensor&, const Tensor&, const Conv2dParams&, Tensor&);
  void (*backward_weight)(const Tensor&, const Tensor&, const Conv2dParams&, Tensor&);
  double rtol;  // relative to the term scale
};

std::vector<ConvImpl> cuda_conv_impls() {
  // FP32 accumulation of K products errs by well under 1e-4 of Σ|terms| for every K used here
  // (≤ 2·10^4: the worst case K·2^-24 is 1.2e-3, the random-walk estimate √K·2^-24 below 1e-5);
  // the naive oracle accumulates in float64 and only rounds its result.
  std::vector<ConvImpl> impls = {
      {"own implicit GEMM", cuda::own::conv2d_forward, cuda::own::conv2d_backward_input,
       cuda::own::conv2d_backward_weight, 1e-4},
      {"naive CUDA oracle", cuda::reference::conv2d_forward, cuda::reference::conv2d_backward_input,
       cuda::reference::conv2d_backward_weight, 1e-6},
      {"dispatched (backend switch)", cuda::conv2d_forward, cuda::conv2d_backward_input, cuda::conv2d_backward_weight,
       1e-4},
  };
#if ISRN_WITH_CUDNN
  // cuDNN must run every float32/float64 problem itself (no fallback to the own kernels here).
  impls.push_back({"cuDNN",
                   [](const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, Tensor& y) {
                     REQUIRE(cuda::cudnn_conv::conv2d_forward(x, w, b, p, y));
                   },
                   [](const Tensor& gy, const Tensor& w, const Conv2dParams& p, Tensor& gx) {
                     REQUIRE(cuda::cudnn_conv::conv2d_backward_input(gy, w, p, gx));
                   },
                   [](const Tensor& gy, const Tensor& x, const Conv2dParams& p, Tensor& gw) {
                     REQUIRE(cuda::cudnn_conv::conv2d_backward_weight(gy, x, p, gw));
                   },
                   1e-4});
  // The Benchmark backend: whichever of the two it measured faster, each first call timing both.
  impls.push_back({"measured choice (Benchmark backend)",
                   [](const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, Tensor& y) {
                     ScopedConvSwitches benchmark(cuda::ConvBackend::Benchmark, false);
                     cuda::conv2d_forward(x, w, b, p, y);
                   },
                   [](const Tensor& gy, const Tensor& w, const Conv2dParams& p, Tensor& gx) {
                     ScopedConvSwitches benchmark(cuda::ConvBackend::Benchmark, false);
                     cuda::conv2d_backward_input(gy, w, p, gx);
                   },
                   [](const Tensor& gy, const Tensor& x, const Conv2dParams& p, Tensor& gw) {
                     ScopedConvSwitches benchmark(cuda::ConvBackend::Benchmark, false);
                     cuda::conv2d_backward_weight(gy, x, p, gw);
                   },
                   1e-4});
#endif
  return impls;
}

void check_conv_case(const ConvCase& cc, uint64_t seed, bool with_bias, bool strided_grad, DType dtype = DType::Float32) {
  CAPTURE(cc.name);
  CAPTURE(with_bias);
  const Tensor x = test::random(cc.x_shape(), seed, -1, 1, dtype);
  const Tensor w = test::random(cc.w_shape(), seed + 1, -1, 1, dtype);
  const Tensor b = with_bias ? test::random({cc.co}, seed + 2, -1, 1, dtype) : Tensor();
  const Tensor gy = test::random(cc.y_shape(), seed + 3, -1, 1, dtype);
  // The same values laid out [N, OH, C_out, OW] and viewed back as NCHW: a non-contiguous input.
  auto strided = [](const Tensor& t) { return t.permute({0, 2, 1, 3}).contiguous().permute({0, 2, 1, 3}); };
  const std::vector<double> xv = test::values(x), wv = test::values(w), gyv = test::values(gy);
  const std::vector<double> bv = with_bias ? test::values(b) : std::vector<double>();
  const Reference y_ref = ref_conv_forward(cc, xv, wv, with_bias ? &bv : nullptr);
  Reference gx_ref, gw_ref;
  ref_conv_backward(cc, xv, wv, gyv, gx_ref, gw_ref);

  const Tensor xd = on_cuda(x), wd = on_cuda(w), bd = with_bias ? on_cuda(b) : Tensor();
  const Tensor gyd = strided_grad ? strided(on_cuda(gy)) : on_cuda(gy);
  REQUIRE(gyd.is_contiguous() != strided_grad);
  // float64: the same bounds with 2^-53 for 2^-24 (K·2^-53 < 1e-13 for every K here).
  const double scale = dtype == DType::Float64 ? 1e-7 : 1.0;
  for (const ConvImpl& impl : cuda_conv_impls()) {
    CAPTURE(impl.name);
    Tensor y = nan_cuda(cc.y_shape(), dtype), gx = nan_cuda(cc.x_shape(), dtype), gw = nan_cuda(cc.w_shape(), dtype);
    impl.forward(xd, wd, bd, cc.p, y);
    impl.backward_input(gyd, wd, cc.p, gx);
    impl.backward_weight(gyd, xd, cc.p, gw);
    check_scaled(y, y_ref, impl.rtol * scale, 0.0, impl.name + " forward");
    check_scaled(gx, gx_ref, impl.rtol * scale, 0.0, impl.name + " backward input");
    check_scaled(gw, gw_ref, impl.rtol * scale, 0.0, impl.name + " backward weight");
  }
  // The CPU kernels of the same entries.
  Tensor y = empty(cc.y_shape(), dtype), gx = empty(cc.x_shape(), dtype), gw = empty(cc.w_shape(), dtype);
  cpu::conv2d_forward(x.contiguous(), w, b, cc.p, y);
  // The CPU kernels take contiguous operands (the conv2d front end makes them so).
  cpu::conv2d_backward_input(gy, w, cc.p, gx);
  cpu::conv2d_backward_weight(gy, x, cc.p, gw);
  check_scaled(y, y_ref, 1e-4 * scale, 0.0, "cpu forward");
  check_scaled(gx, gx_ref, 1e-4 * scale, 0.0, "cpu backward input");
  check_scaled(gw, gw_ref, 1e-4 * scale, 0.0, "cpu backward weight");
}
#endif

}  // namespace

TEST_CASE("cuda conv2d: every detector kernel shape, all implementations against a float64 reference") {
  ISRN_REQUIRE_CUDA();
#if ISRN_WITH_CUDA
  uint64_t seed = 100;
  for (const ConvCase& cc : detector_conv_cases()) {
    check_conv_case(cc, seed, true, false);
    seed += 10;
  }
#endif
}

TEST_CASE("cuda conv2d: random odd shapes, no bias, strided gradient input") {
  ISRN_REQUIRE_CUDA();
#if ISRN_WITH_CUDA
  uint64_t seed = 500;
  for (const ConvCase& cc : random_conv_cases(10, 77)) {
    check_conv_case(cc, seed, false, seed % 20 == 0);
    seed += 10;
  }
#endif
}

TEST_CASE("cuda conv2d: float64") {
  ISRN_REQUIRE_CUDA();
#if ISRN_WITH_CUDA
  check_conv_case(conv_case("3x3 s2 asymmetric, float64", 2, 5, 11, 12, 6, 3, 3, 2, {1, 0, 0, 1}), 900, true, false,
                  DType::Float64);
  check_conv_case(conv_case("1x5 float64", 1, 4, 6, 13, 3, 1, 5, 1, {0, 0, 2, 2}), 910, false, true, DType::Float64);
#endif
}

TEST_CASE("cuda conv2d: empty batch writes zero weight gradients; empty input channels give the bias") {
  ISRN_REQUIRE_CUDA();
#if ISRN_WITH_CUDA
  for (const ConvImpl& impl : cuda_conv_impls()) {
    CAPTURE(impl.name);
    const Conv2dParams p = Conv2dParams::same(3, 3);
    Tensor x = on_cuda(zeros({0, 4, 5, 5})), gy = on_cuda(zeros({0, 3, 5, 5}));
    Tensor gw = nan_cuda({3, 4, 3, 3});
    impl.backward_weight(gy, x, p, gw);
    check_close(gw, zeros({3, 4, 3, 3}), 0, 0, impl.name + " empty-batch weight gradient");
    Tensor x0 = on_cuda(zeros({1, 0, 4, 4})), w0 = on_cuda(zeros({2, 0, 3, 3}));
    Tensor b = on_cuda(from_vector<float>({1.5f, -2.0f}));
    Tensor y = nan_cuda({1, 2, 4, 4});
    impl.forward(x0, w0, b, p, y);
    check_close(y.select(0, 0).select(1, 0).select(1, 0), {1.5, -2.0}, 0, 0, impl.name + " bias only");
  }
#endif
}

TEST_CASE("cuda conv2d: bfloat16 on both backends matches the CPU's float32 arithmetic within one rounding") {
  // The CPU widens bfloat16 operands and convolves in float32 (test_conv.cpp checks it against double
  // loops); cuDNN convolves them on tensor cores, isrn's own kernels widen like the CPU. Either must equal
  // the CPU's float32 result rounded once: within 2^-8 relative (one bfloat16 rounding; bfloat16 keeps 8
  // significant bits), and 1e-4 absolute for the float32 sums' other order, which matters where sums
  // cancel (1e-3 for the weight gradient's sums of ~2,000 products).
  ISRN_REQUIRE_CUDA();
  const cuda::ConvBackend before = cuda::conv_backend();
  std::vector<cuda::ConvBackend> backends = {cuda::ConvBackend::Own};
  if (cuda::conv_cudnn_built()) backends.push_back(cuda::ConvBackend::Cudnn);
  const DType bf = DType::BFloat16, f32 = DType::Float32;
  struct Case {
    Shape x, w;
    Conv2dParams p;
    // Channel counts in multiples of 8, as every convolution of the detector but the stem's: cuDNN's
    // tensor-core kernels take these. Others it may hand back to the own kernels, which is allowed.
    bool detector_like;
  };
  Conv2dParams asym;
  asym.padding = {0, 2, 1, 0};
  const Case cases[] = {{{2, 16, 33, 31}, {24, 16, 3, 3}, Conv2dParams::same(3, 3), true},
                        {{1, 64, 20, 18}, {32, 64, 1, 1}, Conv2dParams::same(1, 1), true},
                        {{2, 8, 27, 29}, {16, 8, 3, 3}, Conv2dParams::same(3, 3, 2), true},
                        {{1, 12, 15, 17}, {8, 12, 1, 5}, Conv2dParams::same(1, 5), false},
                        {{1, 6, 13, 11}, {5, 6, 3, 3}, asym, false}};
  for (cuda::ConvBackend backend : backends) {
    cuda::set_conv_backend(backend);
    uint64_t seed = 1200;
    for (const Case& c : cases) {
      CAPTURE(static_cast<int>(backend));
      CAPTURE(shape_str(c.x));
      const Tensor x = test::random(c.x, ++seed).to(bf), w = test::random(c.w, ++seed).to(bf);
      const Shape y_shape{c.x[0], c.w[0], c.p.out_h(c.x[2], c.w[2]), c.p.out_w(c.x[3], c.w[3])};
      const Tensor gy = test::random(y_shape, ++seed).to(bf);
      const Tensor cuda_x = x.to(Device::cuda(0)), cuda_w = w.to(Device::cuda(0)), cuda_gy = gy.to(Device::cuda(0));
      test::check_close(conv2d(cuda_x, cuda_w, Tensor(), c.p).to(f32),
                        conv2d(x.to(f32), w.to(f32), Tensor(), c.p), 0x1.0p-8, 1e-4, "forward");
      test::check_close(conv2d_backward_input(cuda_gy, cuda_w, c.x, c.p).to(f32),
                        conv2d_backward_input(gy.to(f32), w.to(f32), c.x, c.p), 0x1.0p-8, 1e-4, "backward input");
      test::check_close(conv2d_backward_weight(cuda_gy, cuda_x, c.w, c.p).to(f32),
                        conv2d_backward_weight(gy.to(f32), x.to(f32), c.w, c.p), 0x1.0p-8, 1e-3, "backward weight");
#if ISRN_WITH_CUDNN
      if (backend == cuda::ConvBackend::Cudnn) {
        // The speed of mixed precision: cuDNN runs the detector's kinds of shapes itself rather than
        // handing them back to the own kernels (which would only widen to float32).
        Tensor y = empty(y_shape, TensorOptions(bf).device(Device::cuda(0)));
        Tensor gx = empty(c.x, TensorOptions(bf).device(Device::cuda(0)));
        Tensor gw = empty(c.w, TensorOptions(bf).device(Device::cuda(0)));
        const bool ran[] = {cuda::cudnn_conv::conv2d_forward(cuda_x, cuda_w, Tensor(), c.p, y),
                            cuda::cudnn_conv::conv2d_backward_input(cuda_gy, cuda_w, c.p, gx),
                            cuda::cudnn_conv::conv2d_backward_weight(cuda_gy, cuda_x, c.p, gw)};
        if (c.detector_like) {
          CHECK(ran[0]);
          CHECK(ran[1]);
          CHECK(ran[2]);
        } else {
          MESSAGE("cuDNN ran forward/input/weight itself: ", ran[0], "/", ran[1], "/", ran[2]);
        }
      }
#endif
    }
  }
  cuda::set_conv_backend(before);
}

TEST_CASE("cuda conv2d: backend switch") {
  ISRN_REQUIRE_CUDA();
  const cuda::ConvBackend before = cuda::conv_backend();
  const bool transforms_before = cuda::allow_conv_transforms();
  CHECK(!transforms_before);  // direct summation by default
  cuda::set_conv_backend(cuda::ConvBackend::Auto);
  CHECK(cuda::conv_backend() == cuda::ConvBackend::Auto);
  cuda::set_conv_backend(cuda::ConvBackend::Own);
  CHECK(cuda::conv_backend() == cuda::ConvBackend::Own);
  for (cuda::ConvBackend needs_cudnn : {cuda::ConvBackend::Cudnn, cuda::ConvBackend::Benchmark}) {
    if (cuda::conv_cudnn_built()) {
      cuda::set_conv_backend(needs_cudnn);
      CHECK(cuda::conv_backend() == needs_cudnn);
    } else {
      CHECK_THROWS_WITH_AS(cuda::set_conv_backend(needs_cudnn), doctest::Contains("no cuDNN"), Error);
    }
  }
  cuda::set_allow_conv_transforms(true);
  CHECK(cuda::allow_conv_transforms());
  cuda::set_allow_conv_transforms(transforms_before);
  cuda::set_conv_backend(before);
}

TEST_CASE("cuda conv2d: the Benchmark backend keeps one path per problem; FFT/Winograd only when allowed") {
  ISRN_REQUIRE_CUDA();
#if ISRN_WITH_CUDNN
  // Large enough for cuDNN's transform algorithms to be candidates (3x3, 64 channels, 40x40).
  const std::vector<ConvCase> cases = {conv_case("3x3 s1 p1, 64 channels", 2, 64, 40, 40, 64, 3, 3, 1, {1, 1, 1, 1}),
                                       conv_case("1x1 s1", 2, 64, 20, 20, 128, 1, 1, 1, {0, 0, 0, 0}),
                                       conv_case("3x3 s2 p1", 2, 32, 33, 31, 48, 3, 3, 2, {1, 1, 1, 1})};
  uint64_t seed = 1600;
  for (const ConvCase& cc : cases) {
    CAPTURE(cc.name);
    const Tensor x = on_cuda(test::random(cc.x_shape(), ++seed, -1, 1, DType::Float32));
    const Tensor w = on_cuda(test::random(cc.w_shape(), ++seed, -1, 1, DType::Float32));
    const Tensor gy = on_cuda(test::random(cc.y_shape(), ++seed, -1, 1, DType::Float32));
    auto run = [&](auto&& forward, auto&& backward_input, auto&& backward_weight) {
      Tensor y = nan_cuda(cc.y_shape()), gx = nan_cuda(cc.x_shape()), gw = nan_cuda(cc.w_shape());
      forward(y);
      backward_input(gx);
      backward_weight(gw);
      return std::vector<Tensor>{y, gx, gw};
    };
    auto dispatched = [&] {
      return run([&](Tensor& y) { cuda::conv2d_forward(x, w, Tensor(), cc.p, y); },
                 [&](Tensor& gx) { cuda::conv2d_backward_input(gy, w, cc.p, gx); },
                 [&](Tensor& gw) { cuda::conv2d_backward_weight(gy, x, cc.p, gw); });
    };
    const std::vector<Tensor> own = run([&](Tensor& y) { cuda::own::conv2d_forward(x, w, Tensor(), cc.p, y); },
                                        [&](Tensor& gx) { cuda::own::conv2d_backward_input(gy, w, cc.p, gx); },
                                        [&](Tensor& gw) { cuda::own::conv2d_backward_weight(gy, x, cc.p, gw); });
    auto cudnn_direct = [&] {
      return run([&](Tensor& y) { REQUIRE(cuda::cudnn_conv::conv2d_forward(x, w, Tensor(), cc.p, y)); },
                 [&](Tensor& gx) { REQUIRE(cuda::cudnn_conv::conv2d_backward_input(gy, w, cc.p, gx)); },
                 [&](Tensor& gw) { REQUIRE(cuda::cudnn_conv::conv2d_backward_weight(gy, x, cc.p, gw)); });
    };
    const std::vector<Tensor> cudnn = cudnn_direct();
    {
      // Each pass equals, bit for bit, one of the two paths (both are deterministic), and the same
      // one on every later call: the first call measured, the others reuse its choice.
      ScopedConvSwitches benchmark(cuda::ConvBackend::Benchmark, false);
      const std::vector<Tensor> first = dispatched();
      for (int again = 0; again < 2; ++again) {
        const std::vector<Tensor> later = dispatched();
        for (size_t pass = 0; pass < 3; ++pass)
          CHECK_MESSAGE(test::values(later[pass]) == test::values(first[pass]), "a later call, pass ", pass);
      }
      for (size_t pass = 0; pass < 3; ++pass) {
        CAPTURE(pass);
        const auto got = test::values(first[pass]);
        CHECK((got == test::values(own[pass]) || got == test::values(cudnn[pass])));
      }
    }
    // FFT/Winograd allowed: cuDNN still runs every pass. Their error scales with the whole tensor's
    // magnitude (the transforms mix all of a tile's or plane's values), not with each output's own terms,
    // so the bound is 1e-4 of the largest term scale: two orders above float32 FFT/Winograd rounding
    // (~1e-6), far below a wrong algorithm's error (of the order of the values themselves).
    const std::vector<double> xv = test::values(x), wv = test::values(w), gyv = test::values(gy);
    const Reference y_ref = ref_conv_forward(cc, xv, wv, nullptr);
    Reference gx_ref, gw_ref;
    ref_conv_backward(cc, xv, wv, gyv, gx_ref, gw_ref);
    auto check_globally = [](const Tensor& got, Reference ref, const std::string& what) {
      const double largest = *std::max_element(ref.scale.begin(), ref.scale.end());
      std::fill(ref.scale.begin(), ref.scale.end(), largest);
      check_scaled(got, ref, 1e-4, 0.0, what);
    };
    {
      ScopedConvSwitches transforms(cuda::ConvBackend::Cudnn, true);
      const std::vector<Tensor> fast = cudnn_direct();
      check_globally(fast[0], y_ref, "forward, transforms allowed");
      check_globally(fast[1], gx_ref, "backward input, transforms allowed");
      check_globally(fast[2], gw_ref, "backward weight, transforms allowed");
      ScopedConvSwitches measured(cuda::ConvBackend::Benchmark, true);
      const std::vector<Tensor> chosen = dispatched();
      check_globally(chosen[0], y_ref, "forward, measured with transforms allowed");
      check_globally(chosen[1], gx_ref, "backward input, measured with transforms allowed");
      check_globally(chosen[2], gw_ref, "backward weight, measured with transforms allowed");
    }
    // Off again: the direct-sum choice comes back (the switch is part of the cached problem), bit for bit.
    const std::vector<Tensor> direct_again = cudnn_direct();
    for (size_t pass = 0; pass < 3; ++pass)
      CHECK_MESSAGE(test::values(direct_again[pass]) == test::values(cudnn[pass]), "transforms off again, pass ", pass);
  }
#else
  MESSAGE("skipped: this build has no cuDNN");
#endif
}

// =================================================================================================
// GroupNorm
// =================================================================================================

namespace {

struct GroupNormForward {
  std::vector<double> y, mean, rstd, xhat;
};

struct GroupNormBackward {
  std::vector<double> dx, dgamma, dbeta;
  double dx_scale = 0;                            // max size of dx's terms: the backward pass's magnitude
  std::vector<double> dgamma_scale, dbeta_scale;  // Σ|terms| per channel
};

GroupNormForward ref_group_norm_forward(const Shape& shape, int64_t groups, const std::vector<double>& x,
                                        const std::vector<double>* gamma, const std::vector<double>* beta, double eps,
                                        bool relu) {
  const int64_t n = shape[0], c = shape[1], hw = shape_numel(shape) / (n * c), cpg = c / groups, len = cpg * hw;
  GroupNormForward r;
  r.y.resize(x.size());
  r.xhat.resize(x.size());
  r.mean.resize(n * groups);
  r.rstd.resize(n * groups);
  for (int64_t s = 0; s < n * groups; ++s) {
    const int64_t base = s * len;
    double m = 0, v = 0;
    for (int64_t i = 0; i < len; ++i) m += x[base + i];
    m /= len;
    for (int64_t i = 0; i < len; ++i) v += (x[base + i] - m) * (x[base + i] - m);
    v /= len;
    const double rs = 1.0 / std::sqrt(v + eps);
    r.mean[s] = m;
    r.rstd[s] = rs;
    for (int64_t i = 0; i < len; ++i) {
      const int64_t k = base + i, ch = (s % groups) * cpg + i / hw;
      const double g = gamma ? (*gamma)[ch] : 1.0, b = beta ? (*beta)[ch] : 0.0;
      r.xhat[k] = (x[k] - m) * rs;
      const double z = r.xhat[k] * g + b;
      r.y[k] = relu ? std::max(z, 0.0) : z;
    }
  }
  return r;
}

// The fused ReLU's mask is taken from the forward output the backward kernel is given (`masked_by`),
// so an output that rounds to the other side of 0 cannot make the reference disagree.
GroupNormBackward ref_group_norm_backward(const Shape& shape, int64_t groups, const GroupNormForward& fwd,
                                          const std::vector<double>* gamma, const std::vector<double>& dy,
                                          const std::vector<double>* masked_by) {
  const int64_t n = shape[0], c = shape[1], hw = shape_numel(shape) / (n * c), cpg = c / groups, len = cpg * hw;
  GroupNormBackward r;
  r.dx.resize(dy.size());
  r.dgamma.assign(c, 0.0);
  r.dbeta.assign(c, 0.0);
  r.dgamma_scale.assign(c, 0.0);
  r.dbeta_scale.assign(c, 0.0);
  std::vector<double> dz(dy.size());
  for (int64_t s = 0; s < n * groups; ++s) {
    const int64_t base = s * len;
    double sum_g = 0, sum_gx = 0;  // Σ γ dz and Σ γ dz x̂ over the group
    for (int64_t i = 0; i < len; ++i) {
      const int64_t k = base + i, ch = (s % groups) * cpg + i / hw;
      const double g = gamma ? (*gamma)[ch] : 1.0;
      dz[k] = masked_by && !((*masked_by)[k] > 0) ? 0.0 : dy[k];
      sum_g += g * dz[k];
      sum_gx += g * dz[k] * fwd.xhat[k];
      r.dgamma[ch] += dz[k] * fwd.xhat[k];
      r.dgamma_scale[ch] += std::abs(dz[k] * fwd.xhat[k]);
      r.dbeta[ch] += dz[k];
      r.dbeta_scale[ch] += std::abs(dz[k]);
    }
    for (int64_t i = 0; i < len; ++i) {
      const int64_t k = base + i, ch = (s % groups) * cpg + i / hw;
      const double g = gamma ? (*gamma)[ch] : 1.0;
      r.dx[k] = fwd.rstd[s] * (g * dz[k] - sum_g / len - fwd.xhat[k] * sum_gx / len);
      // The scale of the terms that cancel, not of the result: tiny groups (2 elements) make dx a
      // near-exact cancellation of O(rstd·γ·dz) terms, which float32 resolves to ε of those terms.
      r.dx_scale = std::max(r.dx_scale, fwd.rstd[s] * (std::abs(g * dz[k]) + std::abs(sum_g / len) +
                                                       std::abs(fwd.xhat[k] * sum_gx / len)));
    }
  }
  return r;
}

Reference with_scale(const std::vector<double>& value, double scale) {
  return {value, std::vector<double>(value.size(), scale)};
}

void check_group_norm(const Shape& shape, int64_t groups, bool affine, bool relu, DType dtype, uint64_t seed) {
  CAPTURE(shape_str(shape));
  CAPTURE(groups);
  CAPTURE(affine);
  CAPTURE(relu);
  // An offset mean tests that the statistics do not lose the variance to cancellation.
  const Tensor x = test::random(shape, seed, 2.0, 5.0, dtype);
  const int64_t c = shape[1];
  const Tensor gamma = affine ? test::random({c}, seed + 1, 0.5, 1.5, dtype) : Tensor();
  const Tensor beta = affine ? test::random({c}, seed + 2, -0.5, 0.5, dtype) : Tensor();
  const Tensor dy = test::random(shape, seed + 3, -1, 1, dtype);
  const double eps = 1e-5;
  const std::vector<double> gv = affine ? test::values(gamma) : std::vector<double>(),
                            bv = affine ? test::values(beta) : std::vector<double>(), dyv = test::values(dy);
  const std::vector<double>* gp = affine ? &gv : nullptr;
  const GroupNormForward ref = ref_group_norm_forward(shape, groups, test::values(x), gp, affine ? &bv : nullptr, eps, relu);
  // float32: inputs and outputs are rounded to 2^-24 relative and the statistics are float64, so
  // 1e-5 of an O(1) output (x̂ ∈ [−2, 2]) is ample; float64: 1e-10.
  const double tol = dtype == DType::Float64 ? 1e-10 : 1e-5;
  const int64_t n = shape[0];
  const Tensor xd = on_cuda(x), gd = affine ? on_cuda(gamma) : Tensor(), bd = affine ? on_cuda(beta) : Tensor();
  Tensor y = nan_cuda(shape, dtype), mean = nan_cuda({n, groups}, dtype), rstd = nan_cuda({n, groups}, dtype);
  cuda::group_norm_forward(xd, gd, bd, groups, eps, relu, y, mean, rstd);
  check_scaled(y, with_scale(ref.y, 4.0), tol, 0.0, "cuda forward y");
  check_close(mean, from_vector(ref.mean, {n, groups}), tol, 0.0, "cuda forward mean");
  check_close(rstd, from_vector(ref.rstd, {n, groups}), tol, 0.0, "cuda forward rstd");
  const std::vector<double> yv = test::values(y);
  const GroupNormBackward bref = ref_group_norm_backward(shape, groups, ref, gp, dyv, relu ? &yv : nullptr);
  Tensor dx = nan_cuda(shape, dtype);
  Tensor dgamma = affine ? nan_cuda({c}, dtype) : Tensor(), dbeta = affine ? nan_cuda({c}, dtype) : Tensor();
  cuda::group_norm_backward(on_cuda(dy), xd, y, gd, mean, rstd, groups, relu, dx, dgamma, dbeta);
  // dx = rstd·(γ dz − mean(γ dz) − x̂·mean(γ dz x̂)): float32 coefficients applied to float32 data
  // err by a few 2^-24 of the largest term, bounded by the largest |dx| times a small factor.
  check_scaled(dx, with_scale(bref.dx, bref.dx_scale * 10), tol, 0.0, "cuda backward dx");
  if (affine) {
    check_scaled(dgamma, {bref.dgamma, bref.dgamma_scale}, tol, 0.0, "cuda backward dgamma");
    check_scaled(dbeta, {bref.dbeta, bref.dbeta_scale}, tol, 0.0, "cuda backward dbeta");
  }
  if (dtype == DType::Float32) {  // the CPU kernel of the same entry, same tolerances
    Tensor yc = empty(shape), mc = empty({n, groups}), rc = empty({n, groups});
    cpu::group_norm_forward(x, gamma, beta, groups, eps, relu, yc, mc, rc);
    check_scaled(yc, with_scale(ref.y, 4.0), tol, 0.0, "cpu forward y");
    const std::vector<double> ycv = test::values(yc);
    const GroupNormBackward cref = ref_group_norm_backward(shape, groups, ref, gp, dyv, relu ? &ycv : nullptr);
    Tensor dxc = empty(shape), dgc = affine ? empty({c}) : Tensor(), dbc = affine ? empty({c}) : Tensor();
    cpu::group_norm_backward(dy, x, yc, gamma, mc, rc, groups, relu, dxc, dgc, dbc);
    check_scaled(dxc, with_scale(cref.dx, cref.dx_scale * 10), tol, 0.0, "cpu backward dx");
  }
}

}  // namespace

TEST_CASE("cuda group_norm: small (one warp per group) and large (chunked) groups, float4 and scalar paths") {
  ISRN_REQUIRE_CUDA();
  const DType f = DType::Float32;
  check_group_norm({2, 32, 7, 9}, 8, true, false, f, 1);      // small groups, odd plane
  check_group_norm({2, 256, 8, 8}, 16, true, true, f, 2);     // P7-like, fused ReLU
  check_group_norm({2, 64, 48, 48}, 16, true, false, f, 3);   // chunked, float4 path
  check_group_norm({2, 64, 48, 48}, 16, false, true, f, 4);   // no affine, fused ReLU
  check_group_norm({3, 32, 37, 41}, 4, true, true, f, 5);     // chunked, odd plane: scalar path
  check_group_norm({1, 16, 130, 130}, 16, true, false, f, 6); // one channel per group, many chunks
  check_group_norm({2, 6}, 3, true, false, f, 7);             // no spatial dimensions
  check_group_norm({2, 8, 5, 6, 7}, 2, true, true, f, 8);     // 3-D spatial
  check_group_norm({2, 64, 48, 48}, 16, true, true, DType::Float64, 9);
  check_group_norm({2, 12, 5, 7}, 3, true, true, DType::Float64, 10);
}

TEST_CASE("cuda group_norm: a P2-size map (performance shape) matches the reference") {
  ISRN_REQUIRE_CUDA();
  check_group_norm({2, 256, 64, 64}, 16, true, true, DType::Float32, 11);
}

// =================================================================================================
// Sigmoid focal loss
// =================================================================================================

namespace {

double log_sigmoid_ref(double x) { return x < 0 ? x - std::log1p(std::exp(x)) : -std::log1p(std::exp(-x)); }

// The RetinaNet definition written directly: FL = −α_t (1 − p_t)^γ · BCE(x, t), with
// p_t = p·t + (1−p)(1−t) and α_t = α·t + (1−α)(1−t) (no weighting when α < 0).
double focal_ref(double x, double t, double w, double alpha, double gamma) {
  const double p = std::exp(log_sigmoid_ref(x)), one_minus_p = std::exp(log_sigmoid_ref(-x));
  const double bce = -(t * log_sigmoid_ref(x) + (1 - t) * log_sigmoid_ref(-x));
  const double one_minus_pt = t * one_minus_p + (1 - t) * p;
  const double at = alpha >= 0 ? alpha * t + (1 - alpha) * (1 - t) : 1.0;
  return w * at * std::pow(one_minus_pt, gamma) * bce;
}

void check_focal(const Shape& shape, double lo, double hi, bool soft, bool weighted, double alpha, double gamma,
                 uint64_t seed, bool compare_cpu) {
  CAPTURE(shape_str(shape));
  CAPTURE(lo);
  CAPTURE(alpha);
  CAPTURE(gamma);
  const Tensor logits = test::random(shape, seed, lo, hi, DType::Float32);
  std::vector<double> tv = test::values(test::random(shape, seed + 1, 0, 1, DType::Float32));
  if (!soft)
    for (double& t : tv) t = t < 0.7 ? 0.0 : 1.0;
  const Tensor targets = from_vector(std::vector<float>(tv.begin(), tv.end()), shape);
  std::vector<double> wv(tv.size(), 1.0);
  Tensor weights;
  if (weighted) {
    wv = test::values(test::random(shape, seed + 2, 0, 2, DType::Float32));
    for (size_t i = 0; i < wv.size(); i += 5) wv[i] = 0.0;  // ignored anchors
    weights = from_vector(std::vector<float>(wv.begin(), wv.end()), shape);
  }
  const std::vector<double> xv = test::values(logits);
  Reference loss_ref, grad_ref;
  double total = 0, total_scale = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    const double l = focal_ref(xv[i], tv[i], wv[i], alpha, gamma);
    // Central difference of the float64 definition, h relative to the logit's magnitude.
    const double h = 1e-6 * std::max(1.0, std::abs(xv[i]));
    const double g = (focal_ref(xv[i] + h, tv[i], wv[i], alpha, gamma) - focal_ref(xv[i] - h, tv[i], wv[i], alpha, gamma)) / (2 * h);
    loss_ref.value.push_back(l);
    loss_ref.scale.push_back(std::abs(l));
    grad_ref.value.push_back(g);
    grad_ref.scale.push_back(std::abs(g) + std::abs(wv[i]));
    total += l;
    total_scale += std::abs(l);
  }
  const Tensor xd = on_cuda(logits), td = on_cuda(targets), wd = weighted ? on_cuda(weights) : Tensor();
  // float32 log/exp/pow are within a few ulp: 2e-5 relative; the gradient is checked against a
  // finite difference (truncation ~1e-10 relative) on a scale that includes |w|, since near p = t
  // it is a difference of O(w) terms.
  Tensor loss = nan_cuda(shape), grad = nan_cuda(shape);
  cuda::sigmoid_focal_loss(xd, td, wd, alpha, gamma, loss, grad);
  check_scaled(loss, loss_ref, 2e-5, 1e-30, "cuda elementwise loss");
  check_scaled(grad, grad_ref, 1e-4, 1e-6, "cuda gradient");
  Tensor sum = nan_cuda({}), grad2 = nan_cuda(shape);
  cuda::sigmoid_focal_loss(xd, td, wd, alpha, gamma, sum, grad2);
  check_scaled(sum, {{total}, {total_scale}}, 2e-5, 0.0, "cuda summed loss");
  check_close(grad2, grad, 0, 0, "cuda gradient, summed mode");
  Tensor sum_again = nan_cuda({}), no_grad;
  cuda::sigmoid_focal_loss(xd, td, wd, alpha, gamma, sum_again, no_grad);
  CHECK_MESSAGE(sum_again.item<float>() == sum.item<float>(), "the summed loss is deterministic");
  if (compare_cpu) {
    Tensor lc = empty(shape), gc = empty(shape);
    cpu::sigmoid_focal_loss(logits, targets, weights, alpha, gamma, lc, gc);
    check_scaled(lc, loss_ref, 2e-5, 1e-30, "cpu elementwise loss");
    check_scaled(gc, grad_ref, 1e-4, 1e-6, "cpu gradient");
  }
}

}  // namespace

TEST_CASE("cuda sigmoid_focal_loss: elementwise, summed and gradient against the float64 definition") {
  ISRN_REQUIRE_CUDA();
  check_focal({1000}, -6, 6, false, false, 0.25, 2.0, 1, true);
  check_focal({3, 77, 5}, -6, 6, true, true, 0.25, 2.0, 2, true);
  check_focal({4097}, -20, 20, false, true, 0.25, 1.5, 3, true);
  check_focal({513}, -4, 4, true, false, 0.5, 0.0, 4, true);   // γ = 0: weighted BCE
  check_focal({257}, -4, 4, false, false, -1.0, 2.0, 5, true);  // α < 0: no class weighting
  check_focal({200000}, -8, 8, false, true, 0.25, 2.0, 6, true); // many blocks in the sum
}

TEST_CASE("cuda sigmoid_focal_loss: logits at ±300 stay finite") {
  ISRN_REQUIRE_CUDA();
  const Tensor x = on_cuda(from_vector<float>({300, -300, 300, -300, 0}));
  const Tensor t = on_cuda(from_vector<float>({1, 0, 0, 1, 1}));
  Tensor loss = nan_cuda({5}), grad = nan_cuda({5});
  cuda::sigmoid_focal_loss(x, t, Tensor(), 0.25, 2.0, loss, grad);
  // Confident and right: no loss, no gradient. Confident and wrong: α_t·|x| with gradient ±α_t.
  // x = 0, t = 1: 0.25 · 0.5² · log 2.
  check_close(loss, {0.0, 0.0, 0.75 * 300, 0.25 * 300, 0.25 * 0.25 * std::log(2.0)}, 1e-6, 1e-30, "loss");
  const double g0 = 0.25 * (2 * 0.5 * (-1) * 0.25 * std::log(2.0) + 0.25 * (-0.5));
  check_close(grad, {0.0, 0.0, 0.75, -0.25, g0}, 1e-5, 1e-30, "gradient");
  Tensor empty_sum = nan_cuda({}), none;
  cuda::sigmoid_focal_loss(on_cuda(zeros({0})), on_cuda(zeros({0})), Tensor(), 0.25, 2.0, empty_sum, none);
  CHECK(empty_sum.item<float>() == 0.0f);
}

TEST_CASE("cuda sigmoid_focal_loss: per-anchor weights broadcast over classes (a stride-0 view)") {
  ISRN_REQUIRE_CUDA();
  const Tensor x = on_cuda(test::random({9, 4}, 31, -5, 5, DType::Float32));
  const Tensor t = on_cuda(test::random({9, 4}, 32, 0, 1, DType::Float32));
  const Tensor w_anchor = on_cuda(test::random({9, 1}, 33, 0, 2, DType::Float32));
  const Tensor w_view = w_anchor.expand({9, 4});
  REQUIRE(w_view.stride(1) == 0);
  Tensor l_view = nan_cuda({9, 4}), g_view = nan_cuda({9, 4}), l_full = nan_cuda({9, 4}), g_full = nan_cuda({9, 4});
  cuda::sigmoid_focal_loss(x, t, w_view, 0.25, 2.0, l_view, g_view);
  cuda::sigmoid_focal_loss(x, t, w_view.contiguous(), 0.25, 2.0, l_full, g_full);
  check_close(l_view, l_full, 0, 0, "loss, broadcast weights");
  check_close(g_view, g_full, 0, 0, "gradient, broadcast weights");
}

// =================================================================================================
// Boxes
// =================================================================================================

namespace {

// The IoU as the kernels evaluate it (include/isrn/kernels/box.hpp: an inverted side counts as 0,
// a zero union gives 0; every operation rounded in T, no FMA), so thresholds and ties compare
// identically.
template <typename T>
T side_ref(T lo, T hi, T one) {
  return std::max(hi - lo + one, T(0));
}
template <typename T>
T iou_ref(const T* a, const T* b, T one) {
  const T area_a = side_ref(a[0], a[2], one) * side_ref(a[1], a[3], one);
  const T area_b = side_ref(b[0], b[2], one) * side_ref(b[1], b[3], one);
  const T inter = side_ref(std::max(a[0], b[0]), std::min(a[2], b[2]), one) *
                  side_ref(std::max(a[1], b[1]), std::min(a[3], b[3]), one);
  const T uni = area_a + area_b - inter;
  return uni > T(0) ? inter / uni : T(0);
}

// Random boxes on an integer pixel grid (so IoUs tie and sit exactly on thresholds), sizes in
// [min_size, max_size).
std::vector<float> random_boxes(int64_t n, uint64_t seed, double canvas, double min_size, double max_size) {
  Generator gen(seed);
  std::vector<float> out;
  for (int64_t i = 0; i < n; ++i) {
    const double w = std::floor(min_size + gen.uniform() * (max_size - min_size));
    const double h = std::floor(min_size + gen.uniform() * (max_size - min_size));
    const double x = std::floor(gen.uniform() * canvas), y = std::floor(gen.uniform() * canvas);
    out.insert(out.end(), {float(x), float(y), float(x + w), float(y + h)});
  }
  return out;
}

// Greedy NMS as the contract states it: score descending, ties by index, NaN scores last;
// suppress when the IoU, compared in double, exceeds the threshold.
std::vector<int64_t> nms_ref(const std::vector<float>& boxes, const std::vector<float>& scores, double threshold,
                             bool plus_one) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (std::isnan(scores[a]) != std::isnan(scores[b])) return std::isnan(scores[b]);
    return scores[a] > scores[b];
  });
  std::vector<int64_t> kept;
  std::vector<char> removed(scores.size(), 0);
  const float one = plus_one ? 1.0f : 0.0f;
  for (size_t i = 0; i < order.size(); ++i) {
    if (removed[i]) continue;
    kept.push_back(order[i]);
    for (size_t j = i + 1; j < order.size(); ++j)
      if (!removed[j] && double(iou_ref(&boxes[4 * order[i]], &boxes[4 * order[j]], one)) > threshold) removed[j] = 1;
  }
  return kept;
}

void check_nms(int64_t n, uint64_t seed, int score_levels, double threshold, bool plus_one, bool with_nan = false) {
  CAPTURE(n);
  CAPTURE(plus_one);
  CAPTURE(threshold);
  const std::vector<float> boxes = random_boxes(n, seed, 1024, 8, 160);
  Generator gen(seed + 1);
  std::vector<float> scores(n);
  // Few distinct levels make many exact ties, which must keep the lower index first; −0 and +0 tie.
  for (float& s : scores) s = float(std::floor(gen.uniform() * score_levels)) / float(score_levels);
  if (n > 2) scores[n / 2] = -0.0f;
  if (with_nan)
    for (int64_t i = 0; i < n; i += 7) scores[i] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<int64_t> expected = nms_ref(boxes, scores, threshold, plus_one);
  const Tensor bt = from_vector(boxes, {n, 4}), st = from_vector(scores, {n});
  const Tensor kept = cuda::nms(on_cuda(bt), on_cuda(st), threshold, plus_one);
  CHECK(kept.device() == kCuda);
  CHECK(kept.dtype() == DType::Int64);
  const std::vector<int64_t> got = kept.to_vector<int64_t>();
  CHECK_MESSAGE(got == expected, "cuda kept ", got.size(), " boxes, the reference ", expected.size());
  CHECK(cpu::nms(bt, st, threshold, plus_one).to_vector<int64_t>() == expected);
}

}  // namespace

TEST_CASE("cuda box_iou, encode_boxes, decode_boxes against float64 references") {
  ISRN_REQUIRE_CUDA();
  const int64_t n = 67, m = 131;
  std::vector<float> a = random_boxes(n, 1, 100, 0, 30), b = random_boxes(m, 2, 100, 0, 30);
  a.insert(a.end(), {5, 5, 5, 5});      // a degenerate box: IoU 0 (not NaN) without +1
  a.insert(a.end(), {40, 40, 30, 45});  // an inverted side counts as 0
  const int64_t na = n + 2;
  const Tensor at = from_vector(a, {na, 4});
  // b stored transposed, so the kernels read a strided view.
  const Tensor bt = from_vector(b, {m, 4}).transpose(0, 1).contiguous().transpose(0, 1);
  const Tensor bd = on_cuda(bt.transpose(0, 1).contiguous()).transpose(0, 1);
  REQUIRE(!bd.is_contiguous());
  for (bool plus_one : {false, true}) {
    CAPTURE(plus_one);
    Tensor out = nan_cuda({na, m});
    cuda::box_iou(on_cuda(at), bd, plus_one, out);
    std::vector<double> ref;
    const double one = plus_one ? 1 : 0;
    for (int64_t i = 0; i < na; ++i)
      for (int64_t j = 0; j < m; ++j) {
        const double ax1 = a[4 * i], ay1 = a[4 * i + 1], ax2 = a[4 * i + 2], ay2 = a[4 * i + 3];
        const double bx1 = b[4 * j], by1 = b[4 * j + 1], bx2 = b[4 * j + 2], by2 = b[4 * j + 3];
        const double iw = std::max(0.0, std::min(ax2, bx2) - std::max(ax1, bx1) + one);
        const double ih = std::max(0.0, std::min(ay2, by2) - std::max(ay1, by1) + one);
        const double area_a = std::max(0.0, ax2 - ax1 + one) * std::max(0.0, ay2 - ay1 + one);
        const double uni = area_a + (bx2 - bx1 + one) * (by2 - by1 + one) - iw * ih;
        ref.push_back(uni > 0 ? iw * ih / uni : 0.0);
      }
    // Integer coordinates below 2^24 make every float32 step exact but the division: 1 ulp.
    check_close(out, from_vector(ref, {na, m}), 1e-6, 1e-7, "box_iou");
    Tensor cpu_out = empty({na, m});
    cpu::box_iou(at, bt, plus_one, cpu_out);
    check_close(out, cpu_out, 0, 0, "box_iou cuda vs cpu (same rounded operations)");
  }

  // Encode then decode against the formulas of SPEC §6.3 in float64.
  const int64_t k = 300;
  const std::vector<float> boxes = random_boxes(k, 3, 500, 4, 200), refs = random_boxes(k, 4, 500, 4, 200);
  const std::array<double, 4> var{0.1, 0.1, 0.2, 0.2};
  const Tensor gt = from_vector(boxes, {k, 4}), rt = from_vector(refs, {k, 4});
  Tensor deltas = nan_cuda({k, 4});
  cuda::encode_boxes(on_cuda(gt), on_cuda(rt), var, deltas);
  std::vector<double> enc;
  for (int64_t i = 0; i < k; ++i) {
    const double wr = refs[4 * i + 2] - refs[4 * i], hr = refs[4 * i + 3] - refs[4 * i + 1];
    const double wg = boxes[4 * i + 2] - boxes[4 * i], hg = boxes[4 * i + 3] - boxes[4 * i + 1];
    enc.push_back(((boxes[4 * i] + wg / 2) - (refs[4 * i] + wr / 2)) / wr / var[0]);
    enc.push_back(((boxes[4 * i + 1] + hg / 2) - (refs[4 * i + 1] + hr / 2)) / hr / var[1]);
    enc.push_back(std::log(wg / wr) / var[2]);
    enc.push_back(std::log(hg / hr) / var[3]);
  }
  // float32 rounding of centres up to 700 px before a division by widths ≥ 4: 1e-4 absolute.
  check_close(deltas, from_vector(enc, {k, 4}), 1e-5, 1e-4, "encode_boxes");
  Tensor enc_cpu = empty({k, 4});
  cpu::encode_boxes(gt, rt, var, enc_cpu);
  check_close(deltas, enc_cpu, 1e-5, 1e-4, "encode cuda vs cpu");
  Tensor decoded = nan_cuda({k, 4});
  cuda::decode_boxes(deltas, on_cuda(rt), var, 4.135166556742356, decoded);
  check_close(decoded, gt, 1e-5, 1e-3, "decode(encode(g)) = g");
  // The clamp: dw·v2 above max_log_scale decodes to exp(max_log_scale)·w_r.
  const Tensor big = on_cuda(from_vector<float>({0, 0, 100, 100}, {1, 4}));
  const Tensor ref1 = on_cuda(from_vector<float>({0, 0, 10, 20}, {1, 4}));
  Tensor clamped = nan_cuda({1, 4});
  cuda::decode_boxes(big, ref1, var, std::log(4.0), clamped);
  check_close(clamped, {5 - 20, 10 - 40, 5 + 20, 10 + 40}, 1e-6, 1e-5, "decode clamps dw and dh");
}

TEST_CASE("cuda nms: ties, NaN scores, thresholds and both IoU conventions against a greedy reference") {
  ISRN_REQUIRE_CUDA();
  check_nms(1, 1, 10, 0.5, false);
  check_nms(63, 2, 5, 0.4, true);
  check_nms(64, 3, 5, 0.4, false, true);
  check_nms(65, 4, 3, 0.3, true, true);
  check_nms(2000, 5, 50, 0.4, true);
  check_nms(3001, 6, 1000, 0.5, false, true);
  const Tensor none = cuda::nms(on_cuda(zeros({0, 4})), on_cuda(zeros({0})), 0.5, false);
  CHECK(none.numel() == 0);
  CHECK(none.device() == kCuda);
}

TEST_CASE("cuda nms: 40,000 boxes (a 200 MB mask) against the reference and the CPU kernel") {
  ISRN_REQUIRE_CUDA();
  check_nms(40000, 7, 100000, 0.4, true);
}

TEST_CASE("cuda nms: too many boxes for the on-device sweep is an error") {
  ISRN_REQUIRE_CUDA();
  const int64_t n = 6001 * 64;
  CHECK_THROWS_WITH_AS(cuda::nms(on_cuda(zeros({n, 4})), on_cuda(zeros({n})), 0.5, false),
                       doctest::Contains("[nms] at most"), Error);
}

TEST_CASE("cuda match_anchors: per-anchor best GT and per-GT best anchor with ties, no [A, G] matrix") {
  ISRN_REQUIRE_CUDA();
  for (bool plus_one : {false, true}) {
    CAPTURE(plus_one);
    // Anchors on a grid, every anchor twice (so each GT's best anchor is tied with its copy and
    // the lower index must win), and 1,100 GT boxes (several GT tiles of the kernel).
    std::vector<float> anchors;
    for (int y = 0; y < 40; ++y)
      for (int x = 0; x < 60; ++x)
        for (int s : {8, 16, 8})
          anchors.insert(anchors.end(), {float(x * 8), float(y * 8), float(x * 8 + s), float(y * 8 + s * 1.25f)});
    const int64_t a = static_cast<int64_t>(anchors.size() / 4);
    const int64_t g = 1100;
    std::vector<float> gt = random_boxes(g, 11, 480, 2, 60);
    for (int i = 0; i < 8; ++i) gt[4 * 50 + i % 4] = gt[4 * 49 + i % 4];  // two identical GTs: argmax ties
    const Tensor at = from_vector(anchors, {a, 4}), gtt = from_vector(gt, {g, 4});
    const float one = plus_one ? 1.0f : 0.0f;
    std::vector<double> max_iou(a, -1), argmax(a, -1), best_iou(g, -1), best_anchor(g, -1);
    for (int64_t i = 0; i < a; ++i)
      for (int64_t j = 0; j < g; ++j) {
        const float v = iou_ref(&anchors[4 * i], &gt[4 * j], one);
        if (argmax[i] < 0 || v > max_iou[i]) {
          max_iou[i] = v;
          argmax[i] = double(j);
        }
        if (best_anchor[j] < 0 || v > best_iou[j]) {
          best_iou[j] = v;
          best_anchor[j] = double(i);
        }
      }
    AnchorMatch m;
    m.anchor_max_iou = nan_cuda({a});
    m.anchor_argmax = on_cuda(full({a}, -7, TensorOptions(DType::Int64)));
    m.gt_best_anchor = on_cuda(full({g}, -7, TensorOptions(DType::Int64)));
    m.gt_best_iou = nan_cuda({g});
    cuda::match_anchors(on_cuda(at), on_cuda(gtt), plus_one, m);
    check_exact(m.anchor_max_iou, max_iou, "anchor_max_iou");
    check_exact(m.anchor_argmax, argmax, "anchor_argmax");
    check_exact(m.gt_best_iou, best_iou, "gt_best_iou");
    check_exact(m.gt_best_anchor, best_anchor, "gt_best_anchor (lowest index among ties)");
    AnchorMatch c;
    c.anchor_max_iou = empty({a});
    c.anchor_argmax = empty({a}, DType::Int64);
    c.gt_best_anchor = empty({g}, DType::Int64);
    c.gt_best_iou = empty({g});
    cpu::match_anchors(at, gtt, plus_one, c);
    check_exact(c.gt_best_anchor, best_anchor, "cpu gt_best_anchor");
    check_exact(c.anchor_argmax, argmax, "cpu anchor_argmax");
  }
  // No ground truth: every anchor unmatched; no anchors: every GT without a best anchor.
  AnchorMatch m;
  m.anchor_max_iou = nan_cuda({3});
  m.anchor_argmax = on_cuda(full({3}, 5, TensorOptions(DType::Int64)));
  m.gt_best_anchor = on_cuda(empty({0}, DType::Int64));
  m.gt_best_iou = nan_cuda({0});
  cuda::match_anchors(on_cuda(from_vector<float>({0, 0, 1, 1, 0, 0, 2, 2, 1, 1, 3, 3}, {3, 4})),
                      on_cuda(zeros({0, 4})), false, m);
  check_exact(m.anchor_argmax, {-1, -1, -1}, "no GT: argmax");
  check_exact(m.anchor_max_iou, {0, 0, 0}, "no GT: max IoU");
  AnchorMatch e;
  e.anchor_max_iou = nan_cuda({0});
  e.anchor_argmax = on_cuda(empty({0}, DType::Int64));
  e.gt_best_anchor = on_cuda(full({2}, 5, TensorOptions(DType::Int64)));
  e.gt_best_iou = nan_cuda({2});
  cuda::match_anchors(on_cuda(zeros({0, 4})), on_cuda(from_vector<float>({0, 0, 1, 1, 0, 0, 2, 2}, {2, 4})), false, e);
  check_exact(e.gt_best_anchor, {-1, -1}, "no anchors: best anchor");
  check_exact(e.gt_best_iou, {0, 0}, "no anchors: best IoU");
}
