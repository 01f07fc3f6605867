#pragma once
// The training state that a model checkpoint does not hold: the optimizer's momentum buffers and
// learning rates, and the progress of the run (iteration, epoch, position in the epoch, random
// generators), in a companion safetensors file so that a resumed run continues exactly.
#include <cstdint>
#include <map>
#include <string>

#include "isrn/optim/sgd.hpp"
#include "isrn/tensor.hpp"

namespace isrn::optim {

struct TrainingProgress {
  int64_t iteration = 0;         // optimizer steps taken
  int64_t epoch = 0;             // the epoch in progress
  int64_t batches_in_epoch = 0;  // batches of that epoch already consumed
  std::map<std::string, Generator::Snapshot> generators;
  std::map<std::string, std::string> extra;  // anything else the program wants back (text)
  bool operator==(const TrainingProgress&) const = default;
};

inline constexpr const char* kTrainingStateFormat = "isrn-training-state";
inline constexpr const char* kTrainingStateFormatVersion = "1";

// "run/ckpt_000100.safetensors" → "run/ckpt_000100.train.safetensors".
std::string training_state_path(const std::string& checkpoint_path);

// Written atomically. Momentum buffers are stored per group and parameter; those not yet created are
// recorded as absent.
void save_training_state(const std::string& path, const SGD& optimizer, const TrainingProgress& progress);
// Restores the learning rates and momentum buffers into an optimizer built over the same parameters
// (group count, parameter count and shapes must match, else an Error names the first difference),
// and returns the progress.
TrainingProgress load_training_state(const std::string& path, SGD& optimizer);

}  // namespace isrn::optim
