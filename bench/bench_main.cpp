// isrn_bench: Google Benchmark's main, plus the thread count the CPU kernels use in the run's context
// (set it with OMP_NUM_THREADS; compare_pytorch.py does).
#include <benchmark/benchmark.h>

#include <string>

#include "isrn/isrn.hpp"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("isrn_threads", std::to_string(isrn::get_num_threads()));
  benchmark::AddCustomContext("isrn_cuda", isrn::cuda_available() ? "available" : "absent");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
