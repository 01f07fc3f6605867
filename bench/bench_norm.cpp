// CPU GroupNorm benchmarks at the detector's shapes (16 groups; the 16-channel stem layers make it
// per-channel).
// bench/compare_pytorch.py already knows the "group_norm_{forward,backward}/<label>/N_C_H_W_G" names.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "isrn/isrn.hpp"

namespace {

using namespace isrn;

struct NormCase {
  const char* label;
  int64_t n, c, h, w, groups;
};

const std::vector<NormCase> kNormCases = {
    {"stem_16", 1, 16, 256, 256, 16},
    {"layer1_256", 1, 256, 64, 64, 16},
    {"head_256", 1, 256, 32, 32, 16},
    {"layer4_2048", 1, 2048, 8, 8, 16},
};

std::string norm_name(const char* op, const NormCase& c) {
  return std::string(op) + "/" + c.label + "/N" + std::to_string(c.n) + "_C" + std::to_string(c.c) + "_H" +
         std::to_string(c.h) + "_W" + std::to_string(c.w) + "_G" + std::to_string(c.groups);
}

void run_norm(benchmark::State& state, NormCase c, bool backward) {
  Generator gen(11);
  Tensor x = randn({c.n, c.c, c.h, c.w}, {}, &gen);
  Tensor gamma = randn({c.c}, {}, &gen), beta = randn({c.c}, {}, &gen);
  const Tensor gy = randn(x.shape(), {}, &gen);
  if (backward) {
    x.set_requires_grad(true);
    gamma.set_requires_grad(true);
    beta.set_requires_grad(true);
  }
  for (auto _ : state) {
    if (backward) {
      // Times the forward too: the backward kernel needs the forward's saved statistics.
      group_norm(x, c.groups, gamma, beta).backward(gy);
      benchmark::DoNotOptimize(x.grad().raw_data());
    } else {
      NoGradGuard no_grad;
      Tensor y = group_norm(x, c.groups, gamma, beta);
      benchmark::DoNotOptimize(y.raw_data());
    }
  }
  // Forward reads x and writes y (two passes over x for the statistics are not counted).
  state.SetBytesProcessed(state.iterations() * x.numel() * 4 * (backward ? 4 : 2));
}

const bool registered = [] {
  for (const NormCase& c : kNormCases) {
    benchmark::RegisterBenchmark(norm_name("group_norm_forward", c).c_str(), run_norm, c, false)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(norm_name("group_norm_backward", c).c_str(), run_norm, c, true)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  return true;
}();

}  // namespace
