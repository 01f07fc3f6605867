// isrn-train: trains the ISRN detector on WIDER FACE (--data) or on generated faces (--synthetic N), on the
// CPU or a GPU, with checkpoints, exact resume, a JSONL log and pictures of the result (isrn/train/trainer.hpp).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "isrn/core/error.hpp"
#include "isrn/core/profiler.hpp"
#include "isrn/core/threading.hpp"
#include "isrn/data/draw.hpp"
#include "isrn/data/synthetic.hpp"
#include "isrn/data/wider.hpp"
#include "isrn/train/trainer.hpp"

namespace fs = std::filesystem;
using namespace isrn;

namespace {

constexpr int kExitInterrupted = 130;

extern "C" void on_interrupt(int) {
  train::Trainer::request_stop();
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the program at once
}

std::string clock_text(double seconds) {
  if (!(seconds >= 0) || seconds > 360000) return "--:--";
  const long s = static_cast<long>(seconds + 0.5);
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(text, sizeof text, "%02ld:%02ld", s / 60, s % 60);
  return text;
}

// One line per update: redrawn in place on a terminal, every 1 % of the run otherwise (logs, pipes).
class ProgressBar {
 public:
  explicit ProgressBar(int64_t first_iteration) : first_(first_iteration), terminal_(::isatty(2) != 0) {}
  void update(const train::IterationRecord& r, int64_t total) {
    const int64_t every = std::max<int64_t>(1, total / 100);
    if (!terminal_ && r.iteration % every != 0 && r.iteration != total) return;
    const double done = static_cast<double>(r.iteration - first_);
    const double rate = r.elapsed_seconds > 0 ? done / r.elapsed_seconds : 0;
    const double eta = rate > 0 ? static_cast<double>(total - r.iteration) / rate : -1;
    const int width = 24;
    const int filled = static_cast<int>(width * static_cast<double>(r.iteration) / static_cast<double>(total));
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "%s[%s] %lld/%lld loss %.4f (stc %.3f/%.3f str %.3f/%.3f) lr %.2e %.1f img/s ETA %s%s",
                 terminal_ ? "\r" : "", bar.c_str(), static_cast<long long>(r.iteration),
                 static_cast<long long>(total), r.total, r.stc_cls1, r.stc_cls2, r.str_reg1, r.str_reg2, r.lr,
                 r.images_per_second, clock_text(eta).c_str(), terminal_ ? "  " : "\n");
    std::fflush(stderr);
  }
  void finish() {
    if (terminal_) std::fprintf(stderr, "\n");
  }

 private:
  int64_t first_;
  bool terminal_;
};

// The detections of the first few held-out images, drawn for people to look at.
std::vector<std::string> draw_examples(models::Detector& det, const data::Dataset& val, Device device,
                                       const fs::path& dir, size_t count) {
  fs::create_directories(dir);
  std::vector<std::string> written;
  for (size_t i = 0; i < std::min(count, val.size()); ++i) {
    data::Sample s = val.get(i);
    const models::Detections d = det.detect(data::to_tensor(s.image).unsqueeze(0).to(device)).front();
    data::draw_detections(s.image, data::boxes_from_tensor(d.boxes), d.scores.to(Device::cpu()).to_vector<float>(), 0.5f);
    const std::string path = (dir / ("val_" + std::to_string(i) + ".jpg")).string();
    data::write_image(path, s.image);
    written.push_back(path);
  }
  return written;
}

// --profile N: the op-by-op profile of N training iterations, taken after the run's first iteration (which
// allocates and warms up) and printed to stderr with the 15 largest ops per iteration.
class IterationProfile {
 public:
  explicit IterationProfile(int64_t iterations) : wanted_(iterations) {}
  // Stops at the last iteration too, so the final checkpoint and evaluation stay out of the profile.
  void after_iteration(int64_t iteration, int64_t total) {
    if (wanted_ <= 0 || done_) return;
    if (!started_) {
      started_ = true;
      profiler::reset();
      profiler::enable();
    } else if (++seen_ == wanted_ || iteration == total) {
      finish();
    }
  }
  // Prints what was gathered (also when the run ended before N iterations).
  void finish() {
    if (!started_ || done_) return;
    profiler::disable();
    done_ = true;
    std::fprintf(stderr, "\nprofile of %lld training iterations (per iteration; self time excludes nested rows):\n%s",
                 static_cast<long long>(seen_), profiler::format(profiler::report(), 15, seen_).c_str());
  }

 private:
  int64_t wanted_, seen_ = 0;
  bool started_ = false, done_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"isrn-train: train the ISRN face detector (SPEC defaults; see README)"};
  std::string config_path, data_dir, device_name = "cpu", out_dir = "runs/isrn", precision;
  int64_t synthetic = 0, max_iters = -1, batch = 0, seed = -1, workers = -1, profile = 0;
  int threads = 0;
  bool resume = false;
  app.add_option("--config", config_path, "JSON configuration (model, anchors, match, loss, infer, augment, optim, "
                                          "train, data); absent keys keep the SPEC defaults")
      ->check(CLI::ExistingFile);
  auto* data_opt = app.add_option("--data", data_dir, "WIDER FACE root in the official layout (WIDER_train/images, "
                                                      "wider_face_split/...); WIDER_val is evaluated when present")
                       ->check(CLI::ExistingDirectory);
  auto* synth_opt = app.add_option("--synthetic", synthetic, "train on N generated face scenes instead (and evaluate "
                                                             "on data.synthetic.val_images held-out ones)")
                        ->check(CLI::PositiveNumber);
  data_opt->excludes(synth_opt);
  app.add_option("--device", device_name, "cpu or cuda[:index]");
  app.add_option("--out", out_dir, "output folder (config, log, checkpoints, pictures)")->capture_default_str();
  app.add_flag("--resume", resume, "continue the run in --out from its newest checkpoint");
  app.add_option("--max-iters", max_iters, "stop after N iterations (default: the schedule's epochs)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", batch, "images per step (overrides optim.batch)")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads for the kernels (default: all cores)")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "seed of initialization, data order and augmentation (overrides train.seed)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--workers", workers, "data-loading threads (overrides train.workers)")->check(CLI::NonNegativeNumber);
  app.add_option("--precision", precision, "fp32, or bf16: mixed precision, convolutions on bfloat16 operands with "
                                           "float32 weights and statistics (overrides train.precision; for GPUs)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--profile", profile, "after the first iteration, profile the next N op by op and print the 15 "
                                       "largest ops per iteration")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    ISRN_CHECK(!data_dir.empty() || synthetic > 0, "give --data DIR (WIDER FACE layout) or --synthetic N");
    train::TrainConfig config = config_path.empty() ? train::TrainConfig{} : train::TrainConfig::from_file(config_path);
    if (batch > 0) config.optim.batch = batch;
    if (seed >= 0) config.run.seed = static_cast<uint64_t>(seed);
    if (workers >= 0) config.run.workers = workers;
    if (!precision.empty()) config.run.precision = precision;
    if (threads > 0) set_num_threads(threads);
    const Device device = Device::parse(device_name);
    if (config.run.precision == "bf16" && device.is_cpu())
      std::fprintf(stderr, "note: bf16 on the CPU widens each convolution's operands to float32: the same arithmetic "
                           "as a GPU's, but slower than fp32 here\n");

    std::unique_ptr<data::Dataset> train_set, val_set;
    if (!data_dir.empty()) {
      auto wider = std::make_unique<data::WiderDataset>(data_dir, "train");
      std::fprintf(stderr, "training on %zu WIDER FACE images (%lld faces) from %s\n", wider->size(),
                   static_cast<long long>(wider->stats().faces), data_dir.c_str());
      train_set = std::move(wider);
      if (fs::exists(fs::path(data_dir) / "wider_face_split" / "wider_face_val_bbx_gt.txt"))
        val_set = std::make_unique<data::WiderDataset>(data_dir, "val");
    } else {
      train_set = std::make_unique<data::SyntheticDataset>(config.synthetic.scenes, config.run.seed,
                                                           static_cast<size_t>(synthetic));
      // Held-out scenes come from another seed, so none of them was seen in training.
      if (config.synthetic.val_images > 0)
        val_set = std::make_unique<data::SyntheticDataset>(config.synthetic.scenes, config.run.seed ^ 0x5eedface5eedULL,
                                                           static_cast<size_t>(config.synthetic.val_images));
      std::fprintf(stderr, "training on %lld generated scenes, evaluating on %lld held-out ones\n",
                   static_cast<long long>(synthetic), static_cast<long long>(config.synthetic.val_images));
    }

    train::TrainOptions options;
    options.out_dir = out_dir;
    options.device = device;
    options.max_iters = max_iters;
    options.resume = resume;
    std::unique_ptr<ProgressBar> bar;
    IterationProfile iteration_profile(profile);
    options.on_iteration = [&bar, &iteration_profile](const train::IterationRecord& r, int64_t total) {
      if (!bar) bar = std::make_unique<ProgressBar>(r.iteration - 1);
      bar->update(r, total);
      iteration_profile.after_iteration(r.iteration, total);
    };
    options.on_evaluation = [&bar](const eval::EvalResult& r, int64_t iteration) {
      if (bar) bar->finish();
      const eval::SettingResult& s = r.settings.front();
      std::fprintf(stderr, "evaluation at iteration %lld: AP %.4f on %lld images, %lld faces\n",
                   static_cast<long long>(iteration), s.ap, static_cast<long long>(s.images),
                   static_cast<long long>(s.faces));
    };
    train::Trainer run(config, *train_set, val_set.get(), options);
    std::fprintf(stderr, "%lld parameters, %lld batches of %lld per epoch, %lld iterations, on %s\n",
                 static_cast<long long>(run.detector().num_parameters()),
                 static_cast<long long>(run.batches_per_epoch()), static_cast<long long>(config.optim.batch),
                 static_cast<long long>(run.total_iterations()), device_name.c_str());
    std::signal(SIGINT, on_interrupt);
    const train::TrainResult result = run.run();
    if (bar) bar->finish();
    iteration_profile.finish();
    for (const data::SkippedSample& s : result.skipped) std::fprintf(stderr, "skipped: %s\n", s.message.c_str());

    std::printf("log:         %s\n", (fs::path(out_dir) / "train_log.jsonl").string().c_str());
    std::printf("loss curve:  %s\n", (fs::path(out_dir) / "loss.svg").string().c_str());
    std::printf("checkpoint:  %s\n", result.last_checkpoint.c_str());
    if (result.interrupted) {
      std::printf("interrupted at iteration %lld; continue with --resume\n", static_cast<long long>(result.iterations));
      return kExitInterrupted;
    }
    if (result.evaluation) {
      const eval::EvalResult& r = *result.evaluation;
      const std::string stem = (fs::path(out_dir) / "pr").string();
      eval::write_pr_curve_csv(r, stem + ".csv");
      eval::write_pr_curve_svg(r, stem + ".svg", "isrn-train: held-out images");
      const std::vector<std::string> pictures = draw_examples(run.detector(), *val_set, device,
                                                              fs::path(out_dir) / "detections", 4);
      std::printf("PR curve:    %s.svg, %s.csv\n", stem.c_str(), stem.c_str());
      std::printf("detections:  %s ... (%zu pictures, boxes with score >= 0.5)\n",
                  pictures.empty() ? "-" : pictures.front().c_str(), pictures.size());
      const eval::SettingResult& s = r.settings.front();
      std::printf("held-out AP %.4f (%lld images, %lld faces; WIDER protocol arithmetic, every face counts)\n", s.ap,
                  static_cast<long long>(s.images), static_cast<long long>(s.faces));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "isrn-train: %s\n", e.what());
    return 1;
  }
}
