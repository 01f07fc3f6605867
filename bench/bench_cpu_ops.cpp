// CPU benchmarks of the convolution, pooling and resize ops at the detector's shapes, scaled so each
// case runs well under a second on a 2-core machine. (SPEC.md §2-4: at 1024² the maps are 256²..8² and
// the channels 16..2048; the scaled cases keep each layer's channels and kernel and shrink the map.)
//
// A case's name carries all its parameters, so bench/compare_pytorch.py rebuilds the same workload
// from the name alone: op/label/N1_C3_H256_W256_... Counters: FLOP/s for the convolutions, bytes/s
// for the memory-bound pooling and resize.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "isrn/isrn.hpp"

namespace {

using namespace isrn;

struct ConvCase {
  const char* label;
  int64_t n, c, h, w, co, kh, kw, stride;
  std::array<int64_t, 4> pad;  // top, bottom, left, right
  int64_t dilation = 1;
};

// The detector's convolutions (ISRN stem, ResNet-50 bottlenecks, FPN, RFE branches, C6), batch 1.
const std::vector<ConvCase> kConvCases = {
    {"stem_7x7", 1, 3, 256, 256, 16, 7, 7, 1, {3, 3, 3, 3}},
    {"blockB_3x3_s2", 1, 16, 256, 256, 32, 3, 3, 2, {1, 1, 1, 1}},
    {"layer1_3x3", 1, 64, 64, 64, 64, 3, 3, 1, {1, 1, 1, 1}},
    {"layer1_1x1_reduce", 1, 256, 64, 64, 64, 1, 1, 1, {0, 0, 0, 0}},
    {"layer1_1x1_expand", 1, 64, 64, 64, 256, 1, 1, 1, {0, 0, 0, 0}},
    {"layer2_3x3_s2", 1, 128, 64, 64, 128, 3, 3, 2, {1, 1, 1, 1}},
    {"fpn_head_3x3", 1, 256, 32, 32, 256, 3, 3, 1, {1, 1, 1, 1}},
    {"rfe_1x3", 1, 64, 32, 32, 64, 1, 3, 1, {0, 0, 1, 1}},
    {"rfe_3x1", 1, 64, 32, 32, 64, 3, 1, 1, {1, 1, 0, 0}},
    {"rfe_1x5", 1, 64, 32, 32, 64, 1, 5, 1, {0, 0, 2, 2}},
    {"rfe_5x1", 1, 64, 32, 32, 64, 5, 1, 1, {2, 2, 0, 0}},
    {"c6_3x3_s2", 1, 2048, 8, 8, 1024, 3, 3, 2, {1, 1, 1, 1}},
};

std::string conv_name(const char* op, const ConvCase& c) {
  return std::string(op) + "/" + c.label + "/N" + std::to_string(c.n) + "_C" + std::to_string(c.c) + "_H" +
         std::to_string(c.h) + "_W" + std::to_string(c.w) + "_Co" + std::to_string(c.co) + "_K" +
         std::to_string(c.kh) + "x" + std::to_string(c.kw) + "_S" + std::to_string(c.stride) + "_P" +
         std::to_string(c.pad[0]) + "x" + std::to_string(c.pad[1]) + "x" + std::to_string(c.pad[2]) + "x" +
         std::to_string(c.pad[3]) + "_D" + std::to_string(c.dilation);
}

Conv2dParams conv_params(const ConvCase& c) {
  Conv2dParams p;
  p.stride = {c.stride, c.stride};
  p.padding = c.pad;
  p.dilation = {c.dilation, c.dilation};
  return p;
}

enum class ConvPass { Forward, BackwardInput, BackwardWeight };

void run_conv(benchmark::State& state, ConvCase c, ConvPass pass) {
  NoGradGuard no_grad;
  Generator gen(7);
  const Conv2dParams p = conv_params(c);
  const Shape x_shape{c.n, c.c, c.h, c.w}, w_shape{c.co, c.c, c.kh, c.kw};
  const int64_t oh = p.out_h(c.h, c.kh), ow = p.out_w(c.w, c.kw);
  const Tensor x = randn(x_shape, {}, &gen), w = randn(w_shape, {}, &gen), b = randn({c.co}, {}, &gen);
  const Tensor gy = randn({c.n, c.co, oh, ow}, {}, &gen);
  for (auto _ : state) {
    Tensor out;
    switch (pass) {
      case ConvPass::Forward: out = conv2d(x, w, b, p); break;
      case ConvPass::BackwardInput: out = conv2d_backward_input(gy, w, x_shape, p); break;
      case ConvPass::BackwardWeight: out = conv2d_backward_weight(gy, x, w_shape, p); break;
    }
    benchmark::DoNotOptimize(out.raw_data());
  }
  const double flops = 2.0 * c.n * c.co * oh * ow * c.c * c.kh * c.kw;
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

struct PoolCase {
  const char* label;
  int64_t n, c, h, w, k, stride, pad;
  bool ceil_mode;
};

// ISRN stem pool (3/2/1 after the 32-channel block) and a ceil-mode pool on an odd map.
const std::vector<PoolCase> kPoolCases = {
    {"stem_pool", 1, 32, 256, 256, 3, 2, 1, false},
    {"ceil_2x2", 1, 64, 127, 127, 2, 2, 0, true},
};

std::string pool_name(const char* op, const PoolCase& c) {
  return std::string(op) + "/" + c.label + "/N" + std::to_string(c.n) + "_C" + std::to_string(c.c) + "_H" +
         std::to_string(c.h) + "_W" + std::to_string(c.w) + "_K" + std::to_string(c.k) + "_S" +
         std::to_string(c.stride) + "_P" + std::to_string(c.pad) + "_ceil" + (c.ceil_mode ? "1" : "0");
}

void run_pool(benchmark::State& state, PoolCase c, bool backward) {
  NoGradGuard no_grad;
  Generator gen(8);
  Pool2dParams p;
  p.kernel = {c.k, c.k};
  p.stride = {c.stride, c.stride};
  p.padding = {c.pad, c.pad};
  p.ceil_mode = c.ceil_mode;
  const Tensor x = randn({c.n, c.c, c.h, c.w}, {}, &gen);
  const PoolResult r = max_pool2d_with_indices(x, p);
  const Tensor gy = randn(r.values.shape(), {}, &gen);
  // The backward as training runs it (through autograd, indices known valid), not the public
  // max_pool2d_backward, which also checks caller-supplied indices.
  Tensor xg = x.detach().set_requires_grad(true);
  const Tensor y = [&] {
    EnableGradGuard grad_on;
    return max_pool2d(xg, p);
  }();
  for (auto _ : state) {
    Tensor out;
    if (backward) {
      xg.set_grad(Tensor());
      y.backward(gy, /*retain_graph=*/true);
      out = xg.grad();
    } else {
      out = max_pool2d_with_indices(x, p).values;
    }
    benchmark::DoNotOptimize(out.raw_data());
  }
  // Forward reads x and writes values and indices; backward reads both and writes x's gradient.
  const int64_t bytes = x.numel() * 4 + r.values.numel() * (4 + 8);
  state.SetBytesProcessed(state.iterations() * bytes);
}

struct ResizeCase {
  const char* label;
  int64_t n, c, h, w, out_h, out_w;
  ResizeMode mode;
  bool align_corners;
};

// FPN top-down upsampling (bilinear, align_corners) at two levels, nearest as the alternative, and an
// image downscale as in the augmentation pipeline.
const std::vector<ResizeCase> kResizeCases = {
    {"fpn_up_32", 1, 256, 32, 32, 64, 64, ResizeMode::Bilinear, true},
    {"fpn_up_64", 1, 256, 64, 64, 128, 128, ResizeMode::Bilinear, true},
    {"fpn_up_nearest", 1, 256, 32, 32, 64, 64, ResizeMode::Nearest, false},
    {"image_down", 1, 3, 512, 512, 300, 300, ResizeMode::Bilinear, false},
};

std::string resize_name(const char* op, const ResizeCase& c) {
  return std::string(op) + "/" + c.label + "/N" + std::to_string(c.n) + "_C" + std::to_string(c.c) + "_H" +
         std::to_string(c.h) + "_W" + std::to_string(c.w) + "_to" + std::to_string(c.out_h) + "x" +
         std::to_string(c.out_w) + "_" + (c.mode == ResizeMode::Bilinear ? "bilinear" : "nearest") + "_ac" +
         (c.align_corners ? "1" : "0");
}

void run_resize(benchmark::State& state, ResizeCase c, bool backward) {
  NoGradGuard no_grad;
  Generator gen(9);
  const Tensor x = randn({c.n, c.c, c.h, c.w}, {}, &gen);
  const Tensor gy = randn({c.n, c.c, c.out_h, c.out_w}, {}, &gen);
  for (auto _ : state) {
    Tensor out = backward ? resize_backward(gy, x.shape(), c.mode, c.align_corners)
                          : resize(x, c.out_h, c.out_w, c.mode, c.align_corners);
    benchmark::DoNotOptimize(out.raw_data());
  }
  state.SetBytesProcessed(state.iterations() * (x.numel() + gy.numel()) * 4);
}

// Wall-clock time: the kernels run on several threads, and CPU time would add theirs up.
void configure(benchmark::internal::Benchmark* b) { b->Unit(benchmark::kMillisecond)->UseRealTime(); }

const bool registered = [] {
  for (const ConvCase& c : kConvCases) {
    configure(benchmark::RegisterBenchmark(conv_name("conv2d_forward", c).c_str(), run_conv, c, ConvPass::Forward));
    // The stem's input is the image: nothing needs its gradient.
    if (c.c != 3)
      configure(benchmark::RegisterBenchmark(conv_name("conv2d_backward_input", c).c_str(), run_conv, c, ConvPass::BackwardInput));
    configure(benchmark::RegisterBenchmark(conv_name("conv2d_backward_weight", c).c_str(), run_conv, c, ConvPass::BackwardWeight));
  }
  for (const PoolCase& c : kPoolCases) {
    configure(benchmark::RegisterBenchmark(pool_name("max_pool2d_forward", c).c_str(), run_pool, c, false));
    configure(benchmark::RegisterBenchmark(pool_name("max_pool2d_backward", c).c_str(), run_pool, c, true));
  }
  for (const ResizeCase& c : kResizeCases) {
    configure(benchmark::RegisterBenchmark(resize_name("resize_forward", c).c_str(), run_resize, c, false));
    configure(benchmark::RegisterBenchmark(resize_name("resize_backward", c).c_str(), run_resize, c, true));
  }
  return true;
}();

}  // namespace
