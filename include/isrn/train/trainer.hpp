#pragma once
// The training loop of isrn-train, as a library class so that programs and tests drive the same code:
// SGD with warm-up and step decay, JSONL logging, atomic checkpoints with their training state every N
// iterations (the last K kept), exact resume, a clean stop on request (Ctrl-C), a guard that stops on
// a non-finite loss before anything is written, and evaluation on a held-out set with the WIDER
// protocol's arithmetic.
//
// Output folder:
//   config.json                                 the full configuration of the run
//   train_log.jsonl                             one record per logged iteration (and per evaluation)
//   checkpoints/ckpt_<iteration>.safetensors     weights + config (models::save_checkpoint)
//   checkpoints/ckpt_<iteration>.train.safetensors   optimizer and progress (optim::save_training_state)
//   loss.svg                                    the loss terms over the run, written at the end
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "isrn/data/dataset.hpp"
#include "isrn/data/loader.hpp"
#include "isrn/eval/wider_eval.hpp"
#include "isrn/optim/lr_schedule.hpp"
#include "isrn/optim/sgd.hpp"
#include "isrn/train/config.hpp"

namespace isrn::train {

struct IterationRecord {
  int64_t iteration = 0;  // 1-based: the number of optimizer steps taken after this one
  int64_t epoch = 0;
  double lr = 0;
  double total = 0, stc_cls1 = 0, stc_cls2 = 0, str_reg1 = 0, str_reg2 = 0, seg = 0;
  int64_t num_pos1_cls = 0, num_pos1_reg = 0, num_pos2 = 0;
  double images_per_second = 0;  // over the last logged interval
  double elapsed_seconds = 0;    // since this process started training
};

struct TrainOptions {
  std::string out_dir;
  Device device = Device::cpu();
  int64_t max_iters = -1;  // -1: the schedule's epochs × batches per epoch
  bool resume = false;     // continue from the newest checkpoint in out_dir (a fresh start when there is none)
  // Called after every iteration (for a progress bar); total_iters is the run's length.
  std::function<void(const IterationRecord&, int64_t total_iters)> on_iteration;
  // Called with each evaluation's result.
  std::function<void(const eval::EvalResult&, int64_t iteration)> on_evaluation;
};

struct TrainResult {
  int64_t iterations = 0;        // steps taken in total (including those before a resume)
  int64_t resumed_from = 0;      // 0 on a fresh start
  bool interrupted = false;      // stopped by request_stop()
  std::string last_checkpoint;   // path of the newest checkpoint written or resumed from
  std::optional<eval::EvalResult> evaluation;  // the final one, when a validation set was given
  std::vector<data::SkippedSample> skipped;    // unreadable samples skipped by the loader
};

class Trainer {
 public:
  // `train_set` (and `val_set`, optional) must outlive the trainer.
  Trainer(TrainConfig config, const data::Dataset& train_set, const data::Dataset* val_set, TrainOptions options);
  ~Trainer();

  // Trains to the end of the schedule (or max_iters). A non-finite loss throws an Error naming the iteration
  // and the terms, before the step, so the model and every checkpoint on disk stay as they were.
  TrainResult run();

  // Asks every running trainer to save a checkpoint and return after its current iteration. Safe to call
  // from a signal handler.
  static void request_stop();
  static void clear_stop();

  models::Detector& detector() { return *detector_; }
  int64_t total_iterations() const { return total_iters_; }
  int64_t batches_per_epoch() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<models::Detector> detector_;
  int64_t total_iters_ = 0;
  static std::atomic<bool> stop_requested_;
};

// Single-scale detection over a data set (batch 1, each image at its own size) scored with the WIDER
// protocol's arithmetic, every face counting (one setting, "all"). `predictions`, when given, receives the
// detections by image id.
eval::EvalResult evaluate_detector(models::Detector& detector, const data::Dataset& dataset, Device device,
                                   eval::Predictions* predictions = nullptr);

// The loss terms over the iterations as a self-contained SVG (log-scale loss axis).
std::string loss_curve_svg(const std::vector<IterationRecord>& records);

// The newest checkpoint in <out_dir>/checkpoints that has its training state beside it, or "".
std::string latest_checkpoint(const std::string& out_dir);

}  // namespace isrn::train
