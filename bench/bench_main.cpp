// isrn_bench: Google Benchmark's main, plus the thread count the CPU kernels use in the run's context
// (set it with ISRN_NUM_THREADS or OMP_NUM_THREADS; compare_pytorch.py sets the latter).
//
// Two modes of its own, taken before Google Benchmark sees the arguments:
//   isrn_bench --profile [--e2e_case=small_cpu] [--profile_steps=5] [--profile_device=cpu] [--profile_top=15]
//              [--profile_shapes]
//       the per-op time profile of the case's training step (the largest ops, and its phases); with
//       --profile_shapes each kernel row is split by the shapes of its operands
//   isrn_bench --e2e_export=DIR [--e2e_case=small_cpu]
//       the case's weights and inputs for bench/compare_e2e.py
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_e2e.hpp"
#include "isrn/isrn.hpp"

namespace {

// Removes --name or --name=value from argv; returns whether it was there, with its value.
bool take_flag(int& argc, char** argv, const char* name, std::string* value) {
  const std::string flag = std::string("--") + name;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool bare = arg == flag, with_value = arg.rfind(flag + "=", 0) == 0;
    if (!bare && !with_value) continue;
    if (value && with_value) *value = arg.substr(flag.size() + 1);
    for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
    --argc;
    return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string e2e_case = "small_cpu", export_dir, steps = "5", device = "cpu";
  take_flag(argc, argv, "e2e_case", &e2e_case);
  take_flag(argc, argv, "profile_steps", &steps);
  take_flag(argc, argv, "profile_device", &device);
  std::string top = "15";
  take_flag(argc, argv, "profile_top", &top);
  const bool shapes = take_flag(argc, argv, "profile_shapes", nullptr);
  const bool profile = take_flag(argc, argv, "profile", nullptr);
  const bool do_export = take_flag(argc, argv, "e2e_export", &export_dir);
  try {
    if (do_export) {
      isrn::bench::export_e2e_case(e2e_case, export_dir.empty() ? "." : export_dir);
      return 0;
    }
    if (profile) {
      isrn::profiler::record_shapes(shapes);
      isrn::bench::profile_e2e_case(e2e_case, device, /*warmup=*/2, std::stoll(steps), std::stoul(top));
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "isrn_bench: %s\n", e.what());
    return 1;
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("isrn_threads", std::to_string(isrn::get_num_threads()));
  benchmark::AddCustomContext("isrn_cuda", isrn::cuda_available() ? "available" : "absent");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
