// Mixed precision: the bfloat16 type, bfloat16 tensors, the autocast switch and what it does to
// conv2d and its gradients, activation checkpointing under autocast, and the detector under autocast.
// (bfloat16 convolutions against the naive double loops: test_conv.cpp; training to the float32 loss:
// test_detector_learning.cpp.)
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <thread>

#include "isrn/autograd/autocast.hpp"
#include "isrn/autograd/checkpoint.hpp"
#include "isrn/io/safetensors.hpp"
#include "isrn/models/isrn.hpp"
#include "isrn/nn/module.hpp"
#include "isrn/ops/conv.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/matmul.hpp"
#include "isrn/ops/norm.hpp"
#include "isrn/ops/reduce.hpp"
#include "isrn/optim/sgd.hpp"
#include "golden.hpp"
#include "test_util.hpp"

using namespace isrn;

namespace {

float float_of_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
uint32_t bits_of_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

// Round to nearest, ties to even, decided in double arithmetic between the two bfloat16 neighbours
// (an independent formulation of the rule: no bit tricks on the rounding itself).
uint16_t reference_round(float f) {
  if (std::isnan(f)) return 0x7fc0;  // any NaN; the test only checks NaN-ness
  const uint32_t u = bits_of_float(f);
  const uint16_t down = static_cast<uint16_t>(u >> 16);  // toward zero in magnitude
  if ((u & 0xffffu) == 0) return down;
  const uint16_t up = static_cast<uint16_t>(down + 1);  // next magnitude (may become infinity)
  const double lo = float_of_bits(static_cast<uint32_t>(down) << 16);
  const double hi = (up & 0x7fffu) == 0x7f80u ? std::copysign(0x1.0p128, f)  // where rounding to infinity ties
                                              : static_cast<double>(float_of_bits(static_cast<uint32_t>(up) << 16));
  const double d_lo = std::abs(static_cast<double>(f) - lo), d_hi = std::abs(hi - static_cast<double>(f));
  if (d_lo < d_hi) return down;
  if (d_hi < d_lo) return up;
  return (down & 1u) == 0 ? down : up;
}

// Every element of `a` equals `b` bit for bit (the two computations must be the same arithmetic).
void check_identical(const Tensor& a, const Tensor& b, const std::string& what) {
  REQUIRE(a.dtype() == b.dtype());
  REQUIRE(a.shape() == b.shape());
  const auto av = test::values(a), bv = test::values(b);
  size_t differ = 0;
  for (size_t i = 0; i < av.size(); ++i) differ += !(av[i] == bv[i]);
  CHECK_MESSAGE(differ == 0, what, ": ", differ, " of ", av.size(), " elements differ");
}

// Relative L2 distance: the natural scale for a gradient computed at lower precision.
double relative_l2(const Tensor& a, const Tensor& b) {
  const auto av = test::values(a), bv = test::values(b);
  double num = 0, den = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    num += (av[i] - bv[i]) * (av[i] - bv[i]);
    den += bv[i] * bv[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace

TEST_CASE("bfloat16: rounding to nearest even, against a reference decided in double") {
  // Hand-made cases: ties both ways, the largest finite values, infinities, zeros, subnormals.
  const std::pair<uint32_t, uint16_t> cases[] = {
      {0x3f800000u, 0x3f80},  // 1.0 exact
      {0x3f808000u, 0x3f80},  // tie, even below
      {0x3f818000u, 0x3f82},  // tie, odd below: up
      {0x3f808001u, 0x3f81},  // just above the tie
      {0x3f807fffu, 0x3f80},  // just below the tie
      {0xbf818000u, 0xbf82},  // negative tie rounds in magnitude
      {0x7f7fffffu, 0x7f80},  // FLT_MAX rounds to infinity, as IEEE does
      {0x7f7f7fffu, 0x7f7f},  // stays the largest finite bfloat16
      {0x7f800000u, 0x7f80},  // +inf
      {0xff800000u, 0xff80},  // -inf
      {0x00000000u, 0x0000},  // +0
      {0x80000000u, 0x8000},  // -0 keeps its sign
      {0x00018000u, 0x0002},  // subnormal tie, odd below
      {0x00008000u, 0x0000},  // smallest subnormal tie, even below
  };
  for (const auto& [in, expected] : cases) {
    CAPTURE(in);
    CHECK(bfloat16(float_of_bits(in)).bits == expected);
    CHECK(reference_round(float_of_bits(in)) == expected);  // the reference agrees with the table too
  }
  // NaNs stay NaN (a quiet one), whatever their payload, even one that would round into infinity.
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff80ffffu, 0x7fffffffu}) {
    const bfloat16 b(float_of_bits(nan));
    CHECK(std::isnan(static_cast<float>(b)));
    CHECK((b.bits & 0x0040u) != 0);
  }
  // Random bit patterns over the whole float range.
  std::mt19937 rng(12345);
  int64_t mismatches = 0;
  for (int i = 0; i < 1 << 20; ++i) {
    const float f = float_of_bits(rng());
    if (std::isnan(f)) continue;
    mismatches += bfloat16(f).bits != reference_round(f);
  }
  CHECK(mismatches == 0);
  // Every bfloat16 widens exactly and rounds back to itself.
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const float wide = bfloat16::from_bits(static_cast<uint16_t>(b));
    if (std::isnan(wide)) continue;
    REQUIRE(bits_of_float(wide) == b << 16);
    REQUIRE(bfloat16(wide).bits == b);
  }
  // Other arithmetic types go through float32.
  CHECK(static_cast<float>(bfloat16(3)) == 3.0f);
  CHECK(static_cast<double>(bfloat16(0.1)) == static_cast<double>(static_cast<float>(bfloat16(0.1f))));
  CHECK(static_cast<int64_t>(bfloat16(-7.0f)) == -7);
}

TEST_CASE("bfloat16: rounding and convolutions agree with PyTorch's bfloat16 (golden files)") {
  // Rounding: bit for bit on every non-NaN pattern (ties, subnormals, the edge of infinity, random bits);
  // NaNs stay NaN (payloads are not compared: PyTorch and CUDA differ there too).
  const test::Golden r = test::load_golden("bf16_rounding");
  const auto float_bits = r["float_bits"].to_vector<int32_t>(), bf16_bits = r["bf16_bits"].to_vector<int32_t>();
  REQUIRE(float_bits.size() == bf16_bits.size());
  int64_t mismatches = 0;
  for (size_t i = 0; i < float_bits.size(); ++i) {
    const float f = float_of_bits(static_cast<uint32_t>(float_bits[i]));
    const bfloat16 b(f);
    if (std::isnan(f))
      mismatches += !std::isnan(static_cast<float>(b));
    else
      mismatches += b.bits != static_cast<uint16_t>(bf16_bits[i]);
  }
  CHECK(mismatches == 0);

  // Convolutions: PyTorch (oneDNN on the CPU) also sums in float32 and rounds once, in another order, so the
  // results may differ by one rounding each way: 2^-7 of the value, plus 1e-4 absolute for sums near zero
  // (their float32 sums of ~100 terms of size ~1 differ by ~1e-5).
  for (const char* name : {"3x3_s1_p1", "3x3_s2_p1", "1x1_deep", "3x3_dilation2"}) {
    CAPTURE(name);
    const test::Golden g = test::load_golden(std::string("bf16_conv_") + name);
    Conv2dParams p;
    const int64_t stride = static_cast<int64_t>(g.number("stride")), pad = static_cast<int64_t>(g.number("padding"));
    const int64_t dilation = static_cast<int64_t>(g.number("dilation"));
    p.stride = {stride, stride};
    p.padding = {pad, pad, pad, pad};
    p.dilation = {dilation, dilation};
    const DType bf = DType::BFloat16;
    for (Device d : test::devices()) {
      CAPTURE(d);
      const Tensor x = g["x"].to(bf).to(d), w = g["w"].to(bf).to(d), gy = g["gy"].to(bf).to(d);
      test::check_close(conv2d(x, w, Tensor(), p).to(DType::Float32), g["y"], 0x1.0p-7, 1e-4, "forward");
      test::check_close(conv2d_backward_input(gy, w, x.shape(), p).to(DType::Float32), g["dx"], 0x1.0p-7, 1e-4,
                        "input gradient");
      test::check_close(conv2d_backward_weight(gy, x, w.shape(), p).to(DType::Float32), g["dw"], 0x1.0p-7, 1e-4,
                        "weight gradient");
    }
  }
}

TEST_CASE("bfloat16 tensors: conversions, fill, printing and safetensors on every device") {
  const Tensor x = test::random({3, 5, 7}, 11, -100.0, 100.0, DType::Float32);  // float32
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor b = x.to(d).to(DType::BFloat16);
    CHECK(b.dtype() == DType::BFloat16);
    CHECK(b.element_size() == 2);
    const auto xv = test::values(x), bv = test::values(b);
    const float* px = x.data_ptr<float>();
    for (size_t i = 0; i < xv.size(); ++i) {
      REQUIRE(bv[i] == static_cast<double>(static_cast<float>(bfloat16(px[i]))));
    }
    // Strided views convert too, and back to float32 exactly.
    const Tensor t = b.transpose(0, 2);
    check_identical(t.to(DType::Float32), x.to(d).transpose(0, 2).to(DType::BFloat16).to(DType::Float32),
                    "transposed conversion");
    // Integer and float64 sources.
    CHECK(test::values(full({2}, 257.0, TensorOptions(DType::Int64).device(d)).to(DType::BFloat16)) ==
          std::vector<double>{256.0, 256.0});  // 257 needs 9 mantissa bits: ties to even, 256
    Tensor f = empty({4}, TensorOptions(DType::BFloat16).device(d));
    f.fill_(1.0 / 3.0);
    CHECK(test::values(f) == std::vector<double>(4, static_cast<double>(static_cast<float>(bfloat16(1.0f / 3.0f)))));
  }
  CHECK(x.to(DType::BFloat16).str().find("tensor(") == 0);

  test::TempDir dir("isrn_bf16");
  const std::string path = (dir.path / "bf16.safetensors").string();
  const Tensor b = x.to(DType::BFloat16);
  io::save_safetensors(path, {{"b", b}});
  const io::SafetensorsFile file = io::load_safetensors(path);
  REQUIRE(file.tensors.size() == 1);
  CHECK(file.tensors[0].second.dtype() == DType::BFloat16);
  check_identical(file.tensors[0].second, b, "safetensors round trip");
}

TEST_CASE("bfloat16 tensors: ops that compute only in float32/float64 refuse them by name") {
  const Tensor b = test::random({2, 4, 3, 3}, 5, -1.0, 1.0, DType::Float32).to(DType::BFloat16);
  CHECK_THROWS_WITH_AS(relu(b), doctest::Contains("bfloat16"), Error);
  CHECK_THROWS_WITH_AS(add(b, b), doctest::Contains("bfloat16"), Error);
  CHECK_THROWS_WITH_AS(sum(b), doctest::Contains("bfloat16"), Error);
  CHECK_THROWS_WITH_AS(group_norm(b, 2, Tensor(), Tensor(), 1e-5), doctest::Contains("bfloat16"), Error);
  // The optimizer keeps float32 master weights: a bfloat16 parameter is refused, naming the remedy.
  Tensor p = b.clone();
  p.set_requires_grad(true);
  CHECK_THROWS_WITH_AS(optim::SGD({optim::ParamGroup{{p}, 0.1}}), doctest::Contains("master weights"), Error);
  // conv2d takes bfloat16, but not mixed with float32 outside autocast.
  const Tensor w = test::random({3, 4, 3, 3}, 6, -1.0, 1.0, DType::Float32);
  CHECK_THROWS_WITH_AS(conv2d(b, w, Tensor(), Conv2dParams::same(3, 3)), doctest::Contains("bfloat16"), Error);
}

TEST_CASE("autocast: off by default, scoped, per thread, and only float32 or bfloat16") {
  CHECK(Autocast::compute_dtype() == DType::Float32);
  {
    AutocastGuard outer(DType::BFloat16);
    CHECK(Autocast::compute_dtype() == DType::BFloat16);
    DType seen_by_other_thread = DType::Bool;
    std::thread([&] { seen_by_other_thread = Autocast::compute_dtype(); }).join();
    CHECK(seen_by_other_thread == DType::Float32);
    {
      AutocastGuard inner(DType::Float32);
      CHECK(Autocast::compute_dtype() == DType::Float32);
    }
    CHECK(Autocast::compute_dtype() == DType::BFloat16);
  }
  CHECK(Autocast::compute_dtype() == DType::Float32);
  CHECK_THROWS_WITH_AS(AutocastGuard(DType::Float64), doctest::Contains("bfloat16"), Error);
  CHECK(Autocast::compute_dtype() == DType::Float32);
  CHECK(parse_precision("bf16") == DType::BFloat16);
  CHECK(parse_precision("fp32") == DType::Float32);
  CHECK(precision_name(DType::BFloat16) == "bf16");
  CHECK_THROWS_WITH_AS(parse_precision("fp16"), doctest::Contains("'fp16'"), Error);
}

TEST_CASE("autocast: conv2d computes on bfloat16 operands and returns float32, gradients included") {
  const Conv2dParams p = Conv2dParams::same(3, 3, 2);
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor x0 = test::random({2, 5, 11, 9}, 21, -1.0, 1.0, DType::Float32).to(d), w0 = test::random({7, 5, 3, 3}, 22, -1.0, 1.0, DType::Float32).to(d);
    const Tensor b0 = test::random({7}, 23, -1.0, 1.0, DType::Float32).to(d);
    const Tensor gy = test::random({2, 7, 6, 5}, 24, -1.0, 1.0, DType::Float32).to(d);

    // Under autocast: one float32 result, gradients for the float32 leaves.
    Tensor x = x0.clone(), w = w0.clone(), b = b0.clone();
    for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
    Tensor y;
    {
      AutocastGuard autocast(DType::BFloat16);
      y = conv2d(x, w, b, p);
    }
    CHECK(y.dtype() == DType::Float32);
    sum(mul(y, gy)).backward();  // outside the guard: the graph alone carries the precision
    for (const Tensor* t : {&x, &w, &b}) CHECK(t->grad().dtype() == DType::Float32);

    // The same arithmetic spelled out: casts, a bfloat16 convolution, the float32 bias after.
    Tensor x2 = x0.clone(), w2 = w0.clone(), b2 = b0.clone();
    for (Tensor* t : {&x2, &w2, &b2}) t->set_requires_grad(true);
    const Tensor y2 = add(conv2d(x2.to(DType::BFloat16), w2.to(DType::BFloat16), Tensor(), p).to(DType::Float32),
                          b2.view({1, 7, 1, 1}));
    sum(mul(y2, gy)).backward();
    check_identical(y, y2, "forward");
    check_identical(x.grad(), x2.grad(), "input gradient");
    check_identical(w.grad(), w2.grad(), "weight gradient");
    check_identical(b.grad(), b2.grad(), "bias gradient");

    // And close to float32: bfloat16 keeps 8 significant bits (relative rounding up to 2^-8 per operand),
    // so a sum of 45 products with random signs errs by a few 2^-8 of its scale; 2^-6 would catch a
    // dropped or doubled term, a wrong cast or a missed rounding-back.
    Tensor x3 = x0.clone(), w3 = w0.clone(), b3 = b0.clone();
    for (Tensor* t : {&x3, &w3, &b3}) t->set_requires_grad(true);
    const Tensor y3 = conv2d(x3, w3, b3, p);
    sum(mul(y3, gy)).backward();
    const double tol = 0x1.0p-6;
    CHECK(relative_l2(y, y3) < tol);
    CHECK(relative_l2(x.grad(), x3.grad()) < tol);
    CHECK(relative_l2(w.grad(), w3.grad()) < tol);
    CHECK(relative_l2(b.grad(), b3.grad()) < 1e-6);  // the bias gradient never leaves float32
    CHECK(relative_l2(y, y3) > 0);  // and it did compute in bfloat16

    // float64 is the reference dtype: never cast.
    AutocastGuard autocast(DType::BFloat16);
    const Tensor y64 = conv2d(x0.to(DType::Float64), w0.to(DType::Float64), Tensor(), p);
    CHECK(y64.dtype() == DType::Float64);
    check_identical(y64, conv2d(x0.to(DType::Float64), w0.to(DType::Float64), Tensor(), p), "float64");
  }
}

TEST_CASE("bfloat16 matmul: float32 accumulation and one rounding; under autocast, float32 in and out") {
  // Against double sums over the same bfloat16 values: each element within (2^-8 + 2^-18) of its terms'
  // magnitude (the final rounding, 2^-8 of the value, plus float32 sums of 33-40 terms, under 2^-18 of
  // the magnitude), as for the convolutions.
  const DType bf = DType::BFloat16;
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor a = test::random({3, 17, 33}, 71).to(bf), b = test::random({3, 33, 12}, 72).to(bf);
    const Tensor at = test::random({40, 9}, 73).to(bf), bt = test::random({11, 40}, 74).to(bf);
    struct Product {
      Tensor actual;
      std::vector<double> lhs, rhs;  // row-major [M, K] and [K, N] per batch
      int64_t batch, m, k, n;
    };
    auto values_of = [](const Tensor& t) { return test::values(t.contiguous()); };
    const std::vector<Product> products = {
        {matmul(a.to(d), b.to(d)), values_of(a), values_of(b), 3, 17, 33, 12},
        // transposed views on both sides: the kernels take them through their flags
        {matmul(at.to(d).transpose(0, 1), bt.to(d).transpose(0, 1)), values_of(at.transpose(0, 1)),
         values_of(bt.transpose(0, 1)), 1, 9, 40, 11}};
    for (const Product& p : products) {
      REQUIRE(p.actual.dtype() == bf);
      const auto got = test::values(p.actual);
      int64_t bad = 0;
      for (int64_t bi = 0; bi < p.batch; ++bi)
        for (int64_t i = 0; i < p.m; ++i)
          for (int64_t j = 0; j < p.n; ++j) {
            double sum = 0, magnitude = 0;
            for (int64_t kk = 0; kk < p.k; ++kk) {
              const double term = p.lhs[(bi * p.m + i) * p.k + kk] * p.rhs[(bi * p.k + kk) * p.n + j];
              sum += term;
              magnitude += std::abs(term);
            }
            bad += !(std::abs(got[(bi * p.m + i) * p.n + j] - sum) <= (0x1.0p-8 + 0x1.0p-18) * magnitude);
          }
      CHECK(bad == 0);
    }

    // Under autocast: the spelled-out casts, bit for bit, gradients included, float32 at both ends.
    const Tensor a0 = test::random({5, 33}, 75, -1.0, 1.0, DType::Float32).to(d);
    const Tensor b0 = test::random({33, 7}, 76, -1.0, 1.0, DType::Float32).to(d);
    const Tensor g = test::random({5, 7}, 77, -1.0, 1.0, DType::Float32).to(d);
    Tensor a1 = a0.clone(), b1 = b0.clone(), a2 = a0.clone(), b2 = b0.clone();
    for (Tensor* t : {&a1, &b1, &a2, &b2}) t->set_requires_grad(true);
    Tensor y1;
    {
      AutocastGuard autocast(DType::BFloat16);
      y1 = matmul(a1, b1);
    }
    CHECK(y1.dtype() == DType::Float32);
    sum(mul(y1, g)).backward();
    const Tensor y2 = matmul(a2.to(bf), b2.to(bf)).to(DType::Float32);
    sum(mul(y2, g)).backward();
    check_identical(y1, y2, "autocast matmul");
    check_identical(a1.grad(), a2.grad(), "autocast matmul, gradient of a");
    check_identical(b1.grad(), b2.grad(), "autocast matmul, gradient of b");
    CHECK(a1.grad().dtype() == DType::Float32);
    CHECK(relative_l2(y1, matmul(a0, b0)) < 0x1.0p-6);
  }
}

TEST_CASE("autocast: the graph of a conv2d is cast, bfloat16 convolution, cast back") {
  // The convolution node itself sees only bfloat16 operands, so what it saves for the backward pass
  // is bfloat16 (2 bytes an element, half of float32): the memory half of mixed precision.
  const Tensor x = test::random({1, 3, 6, 6}, 31, -1.0, 1.0, DType::Float32), w0 = test::random({4, 3, 3, 3}, 32, -1.0, 1.0, DType::Float32);
  Tensor w = w0.clone();
  w.set_requires_grad(true);
  AutocastGuard autocast(DType::BFloat16);
  const Tensor y = conv2d(x, w, Tensor(), Conv2dParams::same(3, 3));
  REQUIRE(y.grad_fn() != nullptr);
  CHECK(y.grad_fn()->name() == "to_dtype");  // bfloat16 → float32
  const auto& conv_node = y.grad_fn()->next_edges.at(0);
  REQUIRE(conv_node != nullptr);
  CHECK(conv_node->name() == "conv2d");
  bool weight_cast = false;
  for (const auto& next : conv_node->next_edges) weight_cast |= next && next->name() == "to_dtype";
  CHECK(weight_cast);  // float32 weight → bfloat16
}

TEST_CASE("autocast: activation checkpointing recomputes with the first run's precision") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor x0 = test::random({1, 4, 9, 9}, 41, -1.0, 1.0, DType::Float32).to(d), w0 = test::random({4, 4, 3, 3}, 42, -1.0, 1.0, DType::Float32).to(d);
    auto run = [&](bool checkpointed) {
      Tensor x = x0.clone(), w = w0.clone();
      x.set_requires_grad(true);
      w.set_requires_grad(true);
      auto block = [&](const Tensor& in) { return relu(conv2d(relu(conv2d(in, w, Tensor(), Conv2dParams::same(3, 3))), w, Tensor(), Conv2dParams::same(3, 3))); };
      Tensor y;
      {
        AutocastGuard autocast(DType::BFloat16);
        y = checkpointed ? autograd::checkpoint(block, x, {w}) : block(x);
      }
      sum(y).backward();  // outside the guard, as in the trainer
      return std::make_pair(x.grad(), w.grad());
    };
    const auto plain = run(false), ckpt = run(true);
    check_identical(ckpt.first, plain.first, "input gradient");
    check_identical(ckpt.second, plain.second, "weight gradient");
  }
}

TEST_CASE("autocast: gradients through a conv-GroupNorm-ReLU stack stay close to float32") {
  // Three convolutions with GroupNorm over groups of 4 channels × the whole map. Each bfloat16 rounding
  // errs by up to 2^-8 relative, and GroupNorm's backward subtracts means (cancellation), so the
  // gradients move by a few percent in relative L2: seen 5.6 / 4.7 / 0.4 / 2.9 / 5.3 %, and PyTorch
  // 1.13 with the same casts on this stack's shapes 5.2 / 4.4 / 0.5 / 3.0 / 5.0 %. 10 % still fails for
  // a wrong cast, a dropped term or an operand left unrounded (> 0 below).
  for (Device d : test::devices()) {
    CAPTURE(d);
    const auto opts = DType::Float32;
    const Tensor x = test::random({2, 3, 24, 20}, 61, -1.0, 1.0, opts).to(d);
    std::vector<Tensor> init = {test::random({16, 3, 3, 3}, 62, -0.5, 0.5, opts), test::random({16, 16, 3, 3}, 63, -0.2, 0.2, opts),
                                test::random({8, 16, 1, 1}, 64, -0.5, 0.5, opts), test::random({16}, 65, 0.5, 1.5, opts),
                                test::random({16}, 66, -0.5, 0.5, opts)};
    const Tensor r = test::random({2, 8, 12, 10}, 67, -1.0, 1.0, opts).to(d);
    auto grads = [&](DType precision) {
      std::vector<Tensor> p;
      for (const Tensor& t : init) {
        p.push_back(t.to(d).clone());
        p.back().set_requires_grad(true);
      }
      Tensor loss;
      {
        AutocastGuard autocast(precision);
        Tensor h = relu(group_norm(conv2d(x, p[0], Tensor(), Conv2dParams::same(3, 3)), 4, p[3], p[4], 1e-5));
        h = relu(group_norm(conv2d(h, p[1], Tensor(), Conv2dParams::same(3, 3, 2)), 4, p[3], p[4], 1e-5));
        loss = sum(mul(conv2d(h, p[2], Tensor(), Conv2dParams::same(1, 1)), r));
      }
      loss.backward();
      std::vector<Tensor> g;
      for (const Tensor& t : p) g.push_back(t.grad());
      return g;
    };
    const auto fp32 = grads(DType::Float32), bf16 = grads(DType::BFloat16);
    for (size_t i = 0; i < fp32.size(); ++i) {
      CAPTURE(i);
      CHECK(bf16[i].dtype() == DType::Float32);
      const double rel = relative_l2(bf16[i], fp32[i]);
      CHECK(rel < 0.10);
      CHECK(rel > 0);  // computed in bfloat16 indeed
    }
  }
}

TEST_CASE("autocast: the detector's loss stays within 1 % of float32, with float32 finite gradients") {
  // Only the loss is compared: at this tiny size the deepest levels are 1×1 maps whose GroupNorm groups hold
  // a single value, which amplifies any perturbation of its input by up to 1/sqrt(eps); float32 itself
  // moves the gradients by ~40 % for an input change of 1e-3 (measured), so per-parameter gradients
  // carry no signal about bfloat16 here (the conv-GroupNorm stack above and the training run in
  // test_detector_learning.cpp do). The loss is a mean over thousands of anchors and stays close.
  const models::DetectorConfig config = test::tiny_detector_config();
  for (Device d : test::devices()) {
    CAPTURE(d);
    Generator gen(3);
    models::Detector det(config, gen);
    det.to(d);
    const Tensor images = test::random({2, 3, 64, 64}, 51, -1.0, 1.0, DType::Float32).to(d);
    const std::vector<Tensor> boxes = {
        from_vector(std::vector<float>{4, 6, 30, 36, 40, 8, 60, 34}, Shape{2, 4}).to(d),
        from_vector(std::vector<float>{10, 12, 50, 60}, Shape{1, 4}).to(d)};
    auto loss_of = [&](DType precision) {
      det.zero_grad();
      models::DetectionLoss loss;
      {
        AutocastGuard autocast(precision);
        loss = det.loss(images, boxes);
      }
      loss.total.backward();
      for (const Tensor& p : det.parameters()) {
        REQUIRE(p.grad().dtype() == DType::Float32);
        const auto g = test::values(p.grad());
        for (double v : g) REQUIRE(std::isfinite(v));
      }
      return test::values(loss.total)[0];
    };
    const double fp32 = loss_of(DType::Float32), bf16 = loss_of(DType::BFloat16);
    MESSAGE("loss float32 ", fp32, ", bfloat16 ", bf16);
    CHECK(std::abs(bf16 - fp32) < 0.01 * std::abs(fp32));
    CHECK(bf16 != fp32);
  }
}
