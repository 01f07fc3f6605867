// isrn-detect: runs a trained ISRN detector over an image, a folder of images (recursively) or a list of image paths
// and writes the detections in the WIDER FACE prediction layout (<output>/<event>/<name>.txt, what isrn-eval reads)
// or as one JSON file per image, optionally with pictures of the boxes. It reports where its time goes (decode,
// preprocessing, network, post-processing, writing) after a warm-up. Unreadable images are reported, skipped and
// counted; the exit status says whether anything was skipped.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "isrn/autograd/autocast.hpp"
#include "isrn/core/error.hpp"
#include "isrn/core/threading.hpp"
#include "isrn/data/draw.hpp"
#include "isrn/data/image.hpp"
#include "isrn/eval/predictions.hpp"
#include "isrn/io/file.hpp"
#include "isrn/models/inference.hpp"
#include "isrn/models/isrn.hpp"
#include "isrn/models/multiscale.hpp"

namespace {

using namespace isrn;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Exit statuses (documented in --help and the README).
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;   // the run could not be done: model, device, input or output problem
constexpr int kExitUsage = 2;    // the command line is wrong
constexpr int kExitSkipped = 3;  // the run finished, but some images could not be read and were skipped

struct Options {
  std::string model, input, output, format = "wider", device = "cpu", timing_path, precision = "fp32";
  bool draw = false, multiscale = false;
  double score_threshold = 0.0;
  std::optional<int64_t> max_size;
  int64_t batch = 1;
  int threads = 0;  // 0: the default (ISRN_NUM_THREADS, OMP_NUM_THREADS or the number of cores)
  int warmup = 1;
};

// An integer flag's lower bound, with a message that says so (CLI11's own ranges print the type's limits).
CLI::Validator at_least(long long lowest) {
  return CLI::Validator(
      [lowest](std::string& text) -> std::string {
        long long value = 0;
        const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (err != std::errc() || end != text.data() + text.size()) return "expected an integer, got '" + text + "'";
        if (value < lowest) return "must be at least " + std::to_string(lowest) + ", got " + text;
        return {};
      },
      "");
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

std::string duration_text(double seconds) {
  const long long s = std::llround(seconds);
  char buf[48];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

// "[37/209] 2.1 images/s, ETA 1m20s" on standard error: rewritten in place on a terminal, otherwise a line every
// 10 s, so a log file stays short.
class Progress {
 public:
  explicit Progress(size_t total) : total_(total), enabled_(total > 1), tty_(isatty(2) != 0) {}

  void update(size_t done) {
    if (!enabled_) return;
    const double since_print = seconds_since(last_print_);
    if (done < total_ && since_print < (tty_ ? 0.25 : 10.0)) return;
    last_print_ = Clock::now();
    const double elapsed = seconds_since(start_);
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    char buf[160];
    std::snprintf(buf, sizeof buf, "[%zu/%zu] %.2f images/s, ETA %s", done, total_, rate,
                  rate > 0 ? duration_text(static_cast<double>(total_ - done) / rate).c_str() : "?");
    if (tty_) {
      std::fprintf(stderr, "\r%-60s", buf);
      if (done == total_) std::fputc('\n', stderr);
      line_open_ = done < total_;
    } else {
      std::fprintf(stderr, "%s\n", buf);
    }
    std::fflush(stderr);
  }

  // A message on its own line, even while a terminal progress line is open.
  void message(const std::string& text) {
    if (line_open_) std::fputc('\n', stderr);
    line_open_ = false;
    std::fprintf(stderr, "%s\n", text.c_str());
    std::fflush(stderr);
  }

 private:
  size_t total_;
  bool enabled_, tty_;
  bool line_open_ = false;
  Clock::time_point start_ = Clock::now(), last_print_ = Clock::now();
};

struct Totals {
  double decode = 0, preprocess = 0, network = 0, postprocess = 0, write = 0;
};

class Runner {
 public:
  Runner(const Options& options, models::Detector& detector, Device device)
      : options_(options), detector_(detector), device_(device), compute_dtype_(parse_precision(options.precision)) {
    multiscale_config_.max_size = options.max_size.value_or(multiscale_config_.max_size);
    batch_options_.max_size = options.max_size.value_or(0);
    batch_options_.device = device;
  }

  // Runs the images through the network (and the post-processing); the per-image stage times are added to
  // `timings`, attributing a batch's shared stages evenly to its images.
  std::vector<models::Detections> detect(const std::vector<const data::Image*>& images,
                                         std::vector<eval::ImageTiming>& timings) {
    AutocastGuard autocast(compute_dtype_);
    std::vector<models::Detections> result;
    if (options_.multiscale) {
      for (size_t i = 0; i < images.size(); ++i) {
        models::StageTimes t;
        result.push_back(models::detect_multiscale(detector_, *images[i], multiscale_config_, device_, &t));
        add(timings[i], t, 1.0);
      }
    } else {
      models::StageTimes t;
      result = models::detect_batch(detector_, images, batch_options_, &t);
      for (eval::ImageTiming& timing : timings) add(timing, t, 1.0 / static_cast<double>(images.size()));
    }
    return result;
  }

 private:
  static void add(eval::ImageTiming& timing, const models::StageTimes& t, double share) {
    timing.preprocess += 1e3 * share * t.preprocess;
    timing.network += 1e3 * share * t.network;
    timing.postprocess += 1e3 * share * t.postprocess;
  }

  const Options& options_;
  models::Detector& detector_;
  Device device_;
  DType compute_dtype_;  // --precision
  models::MultiScaleConfig multiscale_config_;
  models::BatchOptions batch_options_;
};

Device choose_device(const std::string& text) {
  const Device device = Device::parse(text);
  if (device.is_cuda()) {
    ISRN_CHECK(cuda_built(), "--device ", text, ": this build has no CUDA backend (configure with -DISRN_WITH_CUDA=ON "
               "on a machine with nvcc)");
    const int count = cuda_device_count();
    ISRN_CHECK(count > 0, "--device ", text, ": no CUDA device is visible");
    ISRN_CHECK(device.index < count, "--device ", text, ": only ", count, " CUDA device(s) are visible");
  }
  return device;
}

void print_report(const Totals& totals, size_t images, size_t skipped, int64_t detections, double wall,
                  const Options& options, Device device) {
  std::printf("isrn-detect: %zu images detected, %zu skipped, %lld detections with score >= %g\n", images, skipped,
              static_cast<long long>(detections), options.score_threshold);
  const std::string mode =
      options.multiscale ? "multi-scale (SPEC 9)" : "single scale, batch " + std::to_string(options.batch);
  std::printf("%s, %d CPU threads, %s, warm-up %d run(s) not counted\n", device.str().c_str(), get_num_threads(),
              mode.c_str(), options.warmup);
  const double n = images > 0 ? static_cast<double>(images) : 1.0;
  std::printf("%-12s %10s %10s\n", "stage", "total s", "ms/image");
  const auto row = [&](const char* name, double seconds) {
    std::printf("%-12s %10.3f %10.1f\n", name, seconds, 1e3 * seconds / n);
  };
  row("decode", totals.decode);
  row("preprocess", totals.preprocess);
  row("network", totals.network);
  row("postprocess", totals.postprocess);
  row("write", totals.write);
  std::printf("%-12s %10.3f %10.1f   %.2f images/s\n", "all", wall, 1e3 * wall / n,
              wall > 0 ? static_cast<double>(images) / wall : 0.0);
}

int run(const Options& options) {
  const Device device = choose_device(options.device);
  if (options.threads > 0) set_num_threads(options.threads);

  const std::vector<eval::InputImage> inputs = eval::collect_inputs(options.input);
  ISRN_CHECK(!inputs.empty(), options.input, ": no images (a folder is searched for .jpg, .jpeg, .png and .bmp files; "
             "a list names one image per line)");
  if (options.draw) {
    for (const eval::InputImage& input : inputs) {
      std::error_code same_ec;
      ISRN_CHECK(!fs::equivalent(fs::path(options.output) / (input.id + ".jpg"), input.path, same_ec),
                 "--draw would overwrite the input image ", input.path, "; choose another --output");
    }
  }
  std::unique_ptr<models::Detector> detector = models::load_detector(options.model);
  detector->to(device);
  detector->eval();
  std::error_code ec;
  fs::create_directories(options.output, ec);
  ISRN_CHECK(!ec && fs::is_directory(options.output), "--output ", options.output, ": cannot create the folder",
             ec ? ": " + ec.message() : std::string());
  Runner runner(options, *detector, device);

  // Warm-up: the first image that decodes, through the whole pipeline, not written and not timed (first-call
  // allocations, thread start-up, the CUDA caching allocator and cuDNN's algorithm choice happen here).
  if (options.warmup > 0) {
    for (const eval::InputImage& input : inputs) {
      data::Image image;
      try {
        image = data::read_image(input.path);
      } catch (const Error&) {
        continue;  // reported when the main pass reaches it
      }
      std::vector<eval::ImageTiming> ignored(1);
      for (int k = 0; k < options.warmup; ++k) runner.detect({&image}, ignored);
      break;
    }
  }

  Progress progress(inputs.size());
  Totals totals;
  size_t done = 0, detected = 0, skipped = 0;
  int64_t detections = 0;
  std::string timing_lines;
  const Clock::time_point start = Clock::now();
  const size_t batch = static_cast<size_t>(options.batch);
  for (size_t first = 0; first < inputs.size(); first += batch) {
    const size_t last = std::min(inputs.size(), first + batch);
    std::vector<data::Image> images;
    std::vector<const eval::InputImage*> sources;
    std::vector<eval::ImageTiming> timings;
    images.reserve(last - first);
    for (size_t i = first; i < last; ++i) {
      const Clock::time_point t = Clock::now();
      try {
        images.push_back(data::read_image(inputs[i].path));
      } catch (const Error& e) {
        ++skipped;
        // read_image's message names the file and the reason.
        progress.message("isrn-detect: skipped: " + one_line(e.what()));
        continue;
      }
      sources.push_back(&inputs[i]);
      timings.push_back({});
      timings.back().decode = 1e3 * seconds_since(t);
    }
    if (!images.empty()) {
      std::vector<const data::Image*> pointers;
      for (const data::Image& image : images) pointers.push_back(&image);
      const std::vector<models::Detections> results = runner.detect(pointers, timings);

      for (size_t j = 0; j < images.size(); ++j) {
        const eval::InputImage& input = *sources[j];
        Clock::time_point t = Clock::now();
        std::vector<eval::ScoredBox> boxes =
            eval::select_and_sort(eval::to_scored_boxes(results[j]), options.score_threshold);
        timings[j].postprocess += 1e3 * seconds_since(t);

        t = Clock::now();
        if (options.format == "wider") {
          eval::write_wider_prediction(options.output, input.id, boxes);
        } else {
          eval::write_detections_json(options.output, {input.path, input.id, images[j].width, images[j].height,
                                                       boxes, timings[j]});
        }
        if (options.draw) {
          const fs::path picture = fs::path(options.output) / (input.id + ".jpg");
          std::vector<data::Box> drawn;
          std::vector<float> scores;
          for (const eval::ScoredBox& b : boxes) {
            drawn.push_back({static_cast<float>(b.x1), static_cast<float>(b.y1), static_cast<float>(b.x2),
                             static_cast<float>(b.y2)});
            scores.push_back(static_cast<float>(b.score));
          }
          data::draw_detections(images[j], drawn, scores, -INFINITY);
          data::write_image(picture.string(), images[j], 90);
        }
        const double write_ms = 1e3 * seconds_since(t);

        const eval::ImageTiming& tm = timings[j];
        totals.decode += tm.decode / 1e3;
        totals.preprocess += tm.preprocess / 1e3;
        totals.network += tm.network / 1e3;
        totals.postprocess += tm.postprocess / 1e3;
        totals.write += write_ms / 1e3;
        detections += static_cast<int64_t>(boxes.size());
        ++detected;
        if (!options.timing_path.empty()) {
          const auto us = [](double ms) { return std::round(ms * 1e3) / 1e3; };  // to the microsecond
          const nlohmann::ordered_json line = {{"id", input.id},
                                               {"decode_ms", us(tm.decode)},
                                               {"preprocess_ms", us(tm.preprocess)},
                                               {"network_ms", us(tm.network)},
                                               {"postprocess_ms", us(tm.postprocess)},
                                               {"write_ms", us(write_ms)},
                                               {"detections", boxes.size()}};
          timing_lines += line.dump() + "\n";
        }
      }
    }
    done = last;
    progress.update(done);
  }
  const double wall = seconds_since(start);
  if (!options.timing_path.empty()) io::write_file_atomic(options.timing_path, timing_lines, "--timing: ");

  print_report(totals, detected, skipped, detections, wall, options, device);
  if (skipped > 0) {
    std::fprintf(stderr, "isrn-detect: %zu of %zu images could not be read and were skipped (exit status %d)\n",
                 skipped, inputs.size(), kExitSkipped);
    return kExitSkipped;
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Runs an ISRN detector checkpoint over images and writes the detections: in the WIDER FACE layout "
               "(<output>/<event>/<name>.txt: the name, the count, `x y w h score` lines by descending score; what "
               "isrn-eval reads) or as one JSON file per image (<output>/<event>/<name>.json). <event> is the image's "
               "folder name and <name> its file name without extension. A time report (decode, preprocessing, network, "
               "post-processing, writing; totals and per image, warm-up excluded) ends the output. Exit status: 0 "
               "done, 1 the run failed, 2 bad command line, 3 done but some images could not be read (each is named "
               "on standard error).",
               "isrn-detect"};
  Options o;
  app.add_option("--model", o.model, "detector checkpoint (safetensors written by the training program)")
      ->type_name("CKPT")
      ->required();
  app.add_option("--input", o.input,
                 "an image, a folder (searched recursively for .jpg/.jpeg/.png/.bmp), or a text file listing one image "
                 "path per line (relative paths are relative to the list's folder; blank lines and # comments skipped)")
      ->type_name("PATH")
      ->required();
  app.add_option("--output", o.output, "folder for the predictions (created if needed)")->type_name("DIR")->required();
  app.add_option("--format", o.format, "wider: <event>/<name>.txt prediction files; json: one <event>/<name>.json per "
                 "image with the boxes (x1 y1 x2 y2 score), image size and stage timings (default wider)")
      ->type_name("wider|json")
      ->check(CLI::IsMember({"wider", "json"}));
  app.add_flag("--draw", o.draw, "also write each image with its boxes and scores as <output>/<event>/<name>.jpg");
  app.add_option("--score-threshold", o.score_threshold,
                 "keep (write and draw) only detections with at least this score (default 0: everything the detector "
                 "returns, up to 750 per image, as the WIDER evaluation wants; e.g. 0.5 for readable pictures)")
      ->type_name("T")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--multiscale", o.multiscale,
               "the SRN multi-scale test (SPEC 9: several scales, flip, box voting) instead of one pass per image");
  app.add_option("--max-size", o.max_size,
                 "single scale: shrink images larger than M*M pixels to about M*M (default: no limit); multi-scale: "
                 "the largest run has about M*M pixels (default 2100)")
      ->type_name("M")
      ->check(at_least(1));
  app.add_option("--device", o.device, "cpu, cuda or cuda:N (default cpu)")->type_name("cpu|cuda");
  app.add_option("--batch", o.batch,
                 "images per network pass (single scale only; images of different sizes are zero-padded to the "
                 "largest, which can change their results slightly; default 1)")
      ->type_name("N")
      ->check(at_least(1));
  app.add_option("--precision", o.precision,
                 "fp32 (default), or bf16: convolutions on bfloat16 operands (mixed precision; for GPUs)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--threads", o.threads,
                 "CPU threads (default: ISRN_NUM_THREADS, OMP_NUM_THREADS or the number of cores)")
      ->type_name("N")
      ->check(at_least(1));
  app.add_option("--warmup", o.warmup, "untimed passes over the first readable image before timing starts (default 1)")
      ->type_name("K")
      ->check(at_least(0));
  app.add_option("--timing", o.timing_path, "also write per-image stage times in milliseconds as JSON lines to FILE")
      ->type_name("FILE");
  try {
    app.parse(argc, argv);
    if (o.multiscale && o.batch > 1)
      throw CLI::ValidationError("--batch", "applies to single-scale detection; --multiscale runs one image at a time");
    try {
      (void)Device::parse(o.device);
    } catch (const Error& e) {
      throw CLI::ValidationError("--device", one_line(e.what()));
    }
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "isrn-detect: " << one_line(e.what()) << " (see --help)\n";
    return kExitUsage;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "isrn-detect: " << one_line(e.what()) << "\n";
    return kExitFailed;
  }
}
