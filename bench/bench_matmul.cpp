// CPU matmul benchmarks: square and detector-shaped products (a 1x1 convolution's GEMM, the FPN
// lateral). bench/compare_pytorch.py already knows the "matmul/<label>/B{batch}_M{m}_K{k}_N{n}" names.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "isrn/isrn.hpp"

namespace {

using namespace isrn;

struct MatmulCase {
  const char* label;
  int64_t batch, m, k, n;  // batch 1 benchmarks the 2-D form
};

const std::vector<MatmulCase> kMatmulCases = {
    {"square_512", 1, 512, 512, 512},
    {"square_1024", 1, 1024, 1024, 1024},
    {"pointwise_256x64x4096", 1, 64, 256, 4096},   // layer1 1x1 reduce as a GEMM
    {"lateral_2048x256x1024", 1, 256, 2048, 1024}, // C5 lateral 1x1 at 32x32
    {"batched_8x256", 8, 256, 256, 256},
};

void run_matmul(benchmark::State& state, MatmulCase c) {
  NoGradGuard no_grad;
  Generator gen(10);
  const Shape a_shape = c.batch == 1 ? Shape{c.m, c.k} : Shape{c.batch, c.m, c.k};
  const Shape b_shape = c.batch == 1 ? Shape{c.k, c.n} : Shape{c.batch, c.k, c.n};
  const Tensor a = randn(a_shape, {}, &gen), b = randn(b_shape, {}, &gen);
  for (auto _ : state) {
    Tensor out = matmul(a, b);
    benchmark::DoNotOptimize(out.raw_data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * c.batch * c.m * c.k * c.n, benchmark::Counter::kIsIterationInvariantRate);
}

const bool registered = [] {
  for (const MatmulCase& c : kMatmulCases) {
    const std::string name = std::string("matmul/") + c.label + "/B" + std::to_string(c.batch) + "_M" +
                             std::to_string(c.m) + "_K" + std::to_string(c.k) + "_N" + std::to_string(c.n);
    benchmark::RegisterBenchmark(name.c_str(), run_matmul, c)->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  return true;
}();

}  // namespace
