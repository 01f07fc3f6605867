#pragma once
// The end-to-end cases (bench_e2e.cpp) as seen by isrn_bench's main: the export of one case's weights and
// inputs for bench/compare_e2e.py, and the per-op profile of its training step.
#include <cstdint>
#include <string>

namespace isrn::bench {

// Writes <dir>/<label>_weights.safetensors (a detector checkpoint) and <dir>/<label>_inputs.safetensors
// (images [B, 3, S, S] for training, detect_images for inference, gt_boxes_<b> [G_b, 4]) of the case
// `label` ("small_cpu", "paper_gpu"), built on the CPU exactly as the benchmark builds it.
void export_e2e_case(const std::string& label, const std::string& dir);

// Runs `warmup` training steps of case `label` on `device`, then `steps` more with the profiler on, and
// prints the phase times and the `top` largest ops to stdout.
void profile_e2e_case(const std::string& label, const std::string& device, int64_t warmup, int64_t steps,
                      size_t top);

}  // namespace isrn::bench
