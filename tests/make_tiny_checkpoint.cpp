// make_tiny_checkpoint OUT [SEED]: writes a small detector checkpoint for the program tests (isrn-detect): the
// ResNet-18 layout at 1/16 of the channels, every parameter drawn from a seeded N(0, 0.3) (GroupNorm γ from
// N(1, 0.3)) so that its scores spread out instead of all sitting at the initial prior of 0.01, and no score
// threshold, so every image gets detections. The same seed writes the same weights.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "isrn/models/isrn.hpp"
#include "isrn/nn/init.hpp"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: make_tiny_checkpoint OUT [SEED]\n");
    return 2;
  }
  try {
    const uint64_t seed = argc == 3 ? std::strtoull(argv[2], nullptr, 10) : 1;
    isrn::models::DetectorConfig config;
    config.backbone.depth = 18;
    config.backbone.width_mult = 1.0 / 16.0;
    config.infer.score_threshold = 0.0;
    isrn::Generator gen(seed);
    isrn::models::Detector detector(config, gen);
    for (auto& p : detector.named_parameters_with_roles()) {
      const bool gamma = p.role == isrn::nn::ParamRole::norm && p.name.ends_with("weight");
      isrn::nn::init::normal_(p.tensor, gen, gamma ? 1.0 : 0.0, 0.3);
    }
    isrn::models::save_checkpoint(argv[1], detector);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_tiny_checkpoint: %s\n", e.what());
    return 1;
  }
  return 0;
}
