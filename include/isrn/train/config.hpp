#pragma once
// The training program's configuration: one JSON file with the detector's sections (model, anchors,
// match, stc, loss, infer, ablation; see models::DetectorConfig) and the training ones below. Every
// default is SPEC's full ISRN run (260 epochs at batch 32 on WIDER FACE at 1024²); configs/ holds that
// and the short CPU demo. An unknown or mistyped key anywhere is rejected with its name.
#include <cstdint>
#include <string>
#include <vector>

#include "isrn/data/augment.hpp"
#include "isrn/data/synthetic.hpp"
#include "isrn/models/isrn.hpp"

namespace isrn::train {

// "optim": SGD and its schedule (SPEC Decisions, optimizer; report §3.4). Epoch counts are converted to
// iterations with the data set's batches per epoch.
struct OptimConfig {
  double lr = 1e-2;
  double momentum = 0.9;
  double weight_decay = 1e-4;  // not on GroupNorm parameters or biases
  int64_t batch = 32;
  double epochs = 260;
  std::vector<double> milestones{230, 250};  // epochs at which the rate is multiplied by gamma
  double gamma = 0.1;
  double warmup_epochs = 5;
  double warmup_factor = 1.0 / 3.0;
  double clip_grad_norm = 0;  // 0: off
};

// "train": the run itself.
struct RunConfig {
  uint64_t seed = 1;
  int64_t workers = 2;              // data-loading threads
  int64_t prefetch = 2;             // batches ready ahead
  int64_t checkpoint_every = 1000;  // iterations
  int64_t keep_last = 3;            // checkpoints kept
  double eval_every_epochs = 0;     // 0: only at the end (when a validation set is given)
  int64_t log_every = 1;            // iterations between JSONL records
  bool activation_checkpointing = false;  // recompute the backbone in the backward pass: less memory, more time
  // "fp32", or "bf16": the forward pass under AutocastGuard(BFloat16) - convolutions on bfloat16 operands,
  // everything else and the master weights float32 (isrn/autograd/autocast.hpp).
  std::string precision = "fp32";
};

// "data": the generated face set (--synthetic N) and the held-out part it is evaluated on.
struct SyntheticDataConfig {
  data::SyntheticConfig scenes;
  int64_t val_images = 50;
};

struct TrainConfig {
  models::DetectorConfig detector;
  data::AugmentConfig augment;
  OptimConfig optim;
  RunConfig run;
  SyntheticDataConfig synthetic;

  static TrainConfig from_json(const io::JsonConfig& json);  // rejects unknown keys
  static TrainConfig from_file(const std::string& path);
  std::string to_json() const;  // every field; from_json reads it back to an equal config
};

}  // namespace isrn::train
