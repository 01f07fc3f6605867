// End-to-end benchmarks of the detector: one full training step (forward, both steps' targets and losses,
// backward, SGD update) and single-scale detection with its post-processing, for
//   small_cpu  ResNet-18 layout, width 0.25, 256x256, batch 2 (train and detect), on the CPU;
//   small_cpu_bf16  the same under mixed precision, isrn alone (Debian's PyTorch 1.13 cannot autocast this
//             network on the CPU): bfloat16 on the CPU is the GPU's arithmetic, emulated and slower than
//             float32, but its memory tells the GPU's story at a size a CPU can run;
//   paper_gpu  ResNet-50 layout, width 1, 1024x1024, batch 4 (train) and 1 (detect), on the GPU (CUDA builds);
//   paper_gpu_bf16  the same under mixed precision (AutocastGuard(BFloat16) around the forward pass).
//   paper_gpu_tf32  the same in float32 with TF32 tensor cores allowed (set_allow_tf32), as PyTorch's allow_tf32.
// Weights are the SPEC initialization from a fixed seed, the images a fixed random batch with a few faces
// each. Besides the time, each case reports memory: on the CPU the process's peak resident set (VmHWM) and that
// peak above the resident set before the case built anything; on the GPU the caching allocator's peak
// allocated and reserved bytes from the first step on.
// bench/compare_e2e.py runs each case in its own process next to the same network in PyTorch.
#include "bench_e2e.hpp"

#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "isrn/isrn.hpp"

namespace isrn::bench {

namespace {

struct E2ECase {
  const char* label;
  int depth;
  double width_mult;
  int64_t size;
  int64_t train_batch, detect_batch;
  const char* device;
  DType compute_dtype;  // the autocast compute dtype of the forward pass
  bool tf32 = false;    // TF32 tensor cores allowed for float32 convolutions and matmuls
};

const E2ECase kCases[] = {
    {"small_cpu", 18, 0.25, 256, 2, 2, "cpu", DType::Float32},
    {"small_cpu_bf16", 18, 0.25, 256, 2, 2, "cpu", DType::BFloat16},
    {"paper_gpu", 50, 1.0, 1024, 4, 1, "cuda", DType::Float32},
    {"paper_gpu_bf16", 50, 1.0, 1024, 4, 1, "cuda", DType::BFloat16},
    {"paper_gpu_tf32", 50, 1.0, 1024, 4, 1, "cuda", DType::Float32, true},
};

// The case's TF32 switch for a scope (FP32 math otherwise, whatever the process had).
struct Tf32Scope {
  bool before = cuda::allow_tf32();
  explicit Tf32Scope(const E2ECase& c) { cuda::set_allow_tf32(c.tf32); }
  ~Tf32Scope() { cuda::set_allow_tf32(before); }
  Tf32Scope(const Tf32Scope&) = delete;
  Tf32Scope& operator=(const Tf32Scope&) = delete;
};

const E2ECase& find_case(const std::string& label) {
  for (const E2ECase& c : kCases)
    if (label == c.label) return c;
  ISRN_CHECK(false, "[bench_e2e] unknown case '", label, "' (small_cpu, small_cpu_bf16, paper_gpu, paper_gpu_bf16, paper_gpu_tf32)");
  return kCases[0];
}

constexpr uint64_t kSeed = 20241122;

// Faces (x1, y1, x2, y2) on a 256x256 image, 11 to 110 px, scaled with the image size; image b of a batch
// takes list b % 3.
const std::vector<std::vector<float>> kFaces = {
    {20, 30, 52, 70, 100, 60, 164, 140, 180, 170, 200, 195, 40, 150, 150, 250},
    {10, 10, 26, 30, 60, 80, 120, 150, 150, 20, 240, 130},
    {120, 120, 131, 134, 30, 180, 90, 250},
};

std::vector<Tensor> gt_boxes(const E2ECase& c, int64_t batch) {
  std::vector<Tensor> out;
  const float s = static_cast<float>(c.size) / 256.0f;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<float> faces = kFaces[static_cast<size_t>(b % 3)];
    for (float& v : faces) v *= s;
    out.push_back(from_vector(faces, Shape{static_cast<int64_t>(faces.size() / 4), 4}));
  }
  return out;
}

models::DetectorConfig detector_config(const E2ECase& c) {
  models::DetectorConfig config;
  config.backbone.depth = c.depth;
  config.backbone.width_mult = c.width_mult;
  return config.resolved();
}

// The detector (SPEC init from the seed) and the inputs, all drawn on the CPU so every device sees the
// same numbers.
struct Setup {
  std::unique_ptr<models::Detector> detector;
  Tensor train_images, detect_images;
  std::vector<Tensor> gt;
};

Setup make_setup(const E2ECase& c) {
  Setup s;
  Generator gen(kSeed);
  s.detector = std::make_unique<models::Detector>(detector_config(c), gen);
  Generator data_gen(kSeed + 1);
  // Roughly normalized pixels: uniform in [-2, 2).
  s.train_images = sub(mul(rand({c.train_batch, 3, c.size, c.size}, {}, &data_gen), 4.0), 2.0);
  s.detect_images = s.train_images.narrow(0, 0, c.detect_batch).contiguous();
  s.gt = gt_boxes(c, c.train_batch);
  return s;
}

void to_device(Setup& s, Device device) {
  s.detector->to(device);
  s.train_images = s.train_images.to(device);
  s.detect_images = s.detect_images.to(device);
  for (Tensor& g : s.gt) g = g.to(device);
}

double scalar_of(const Tensor& t) { return t.detach().to(Device::cpu()).to(DType::Float64).item<double>(); }

// Host-side wait for everything queued on the tensor's device.
void wait(const Tensor& t) {
  if (t.device().is_cuda()) (void)t.detach().flatten().narrow(0, 0, 1).to(Device::cpu());
}

struct TrainStep {
  models::Detector& detector;
  optim::SGD sgd;
  DType compute_dtype;
  TrainStep(models::Detector& d, DType compute)
      : detector(d),
        sgd(nn::parameter_groups(d, /*lr=*/0.01, /*momentum=*/0.9, /*weight_decay=*/1e-4)),
        compute_dtype(compute) {
    detector.train();
  }
  // What the trainer does per iteration, minus the data loading and logging.
  double operator()(const Tensor& images, const std::vector<Tensor>& gt) {
    const models::DetectionLoss loss = [&] {
      AutocastGuard autocast(compute_dtype);
      return detector.loss(images, gt);
    }();
    const double total = scalar_of(loss.total);  // the trainer reads it before the update too
    sgd.zero_grad();
    loss.total.backward();
    sgd.step();
    return total;
  }
};

int64_t proc_status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size()));
  return -1;
}

// The resident set before the first case of this process built anything: the program and its libraries.
int64_t rss_at_start_kib() {
  static const int64_t kib = proc_status_kib("VmRSS");
  return kib;
}

// CPU: the process's peak resident set (VmHWM: setup, every run of the case, allocator retention included, as
// a user of the library would see it) and that peak above the resident set at start (what the model, its
// inputs and the steps needed), and the peak of the bytes held by tensors (host_memory_stats: what the GPU's
// peak_allocated counts, free of the allocator's retention). GPU: the caching allocator's peaks from the first
// step on.
struct MemoryProbe {
  Device device;
  explicit MemoryProbe(Device d) : device(d) {
    if (device.is_cuda()) cuda::reset_peak_stats(device.index);
    else reset_host_peak_memory();
  }
  void report(benchmark::State& state) const {
    constexpr double kMiB = 1.0 / (1024.0 * 1024.0);
    if (device.is_cuda()) {
      const cuda::MemoryStats m = cuda::memory_stats(device.index);
      state.counters["peak_allocated_MiB"] = static_cast<double>(m.peak_active_bytes) * kMiB;
      state.counters["peak_reserved_MiB"] = static_cast<double>(m.peak_reserved_bytes) * kMiB;
    } else {
      const int64_t peak = proc_status_kib("VmHWM");
      state.counters["peak_rss_MiB"] = static_cast<double>(peak) / 1024.0;
      state.counters["rss_above_start_MiB"] = static_cast<double>(peak - rss_at_start_kib()) / 1024.0;
      state.counters["peak_allocated_MiB"] = static_cast<double>(host_memory_stats().peak_active_bytes) * kMiB;
    }
  }
};

void run_train_step(benchmark::State& state, const E2ECase* c) {
  const Device device = Device::parse(c->device);
  const Tf32Scope tf32(*c);
  (void)rss_at_start_kib();
  Setup s = make_setup(*c);
  to_device(s, device);
  TrainStep step(*s.detector, c->compute_dtype);
  const MemoryProbe probe(device);
  step(s.train_images, s.gt);  // warm-up
  wait(s.detector->parameters().front());
  double loss = 0;
  for (auto _ : state) {
    loss = step(s.train_images, s.gt);
    wait(s.detector->parameters().front());
  }
  probe.report(state);
  state.counters["loss"] = loss;
}

void run_detect(benchmark::State& state, const E2ECase* c) {
  const Device device = Device::parse(c->device);
  const Tf32Scope tf32(*c);
  (void)rss_at_start_kib();
  Setup s = make_setup(*c);
  to_device(s, device);
  int64_t kept = 0;
  AutocastGuard autocast(c->compute_dtype);
  const MemoryProbe probe(device);
  std::vector<models::Detections> d = s.detector->detect(s.detect_images);  // warm-up
  wait(d.back().scores);
  for (auto _ : state) {
    d = s.detector->detect(s.detect_images);
    wait(d.back().scores);
  }
  for (const models::Detections& x : d) kept += x.scores.size(0);
  probe.report(state);
  state.counters["detections"] = static_cast<double>(kept);
}

const bool registered = [] {
  for (const E2ECase& c : kCases) {
    if (std::string(c.device) == "cuda" && !ISRN_WITH_CUDA) continue;
    benchmark::RegisterBenchmark((std::string("e2e/train_step/") + c.label).c_str(), run_train_step, &c)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((std::string("e2e/detect/") + c.label).c_str(), run_detect, &c)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  return true;
}();

}  // namespace

void export_e2e_case(const std::string& label, const std::string& dir) {
  const E2ECase& c = find_case(label);
  Setup s = make_setup(c);
  models::save_checkpoint(dir + "/" + label + "_weights.safetensors", *s.detector);
  io::NamedTensors inputs{{"images", s.train_images}, {"detect_images", s.detect_images}};
  for (size_t b = 0; b < s.gt.size(); ++b) inputs.emplace_back("gt_boxes_" + std::to_string(b), s.gt[b]);
  io::save_safetensors(dir + "/" + label + "_inputs.safetensors", inputs,
                       {{"seed", std::to_string(kSeed)}, {"case", label}});
}

void profile_e2e_case(const std::string& label, const std::string& device_name, int64_t warmup, int64_t steps,
                      size_t top) {
  using Clock = std::chrono::steady_clock;
  const E2ECase& c = find_case(label);
  const Device device = Device::parse(device_name);
  const Tf32Scope tf32(c);
  Setup s = make_setup(c);
  to_device(s, device);
  TrainStep step(*s.detector, c.compute_dtype);
  for (int64_t i = 0; i < warmup; ++i) step(s.train_images, s.gt);
  wait(s.detector->parameters().front());

  // The same work as TrainStep, split into its phases (Detector::loss is forward + detection_loss).
  double phase[4] = {0, 0, 0, 0};
  const char* names[4] = {"forward", "targets + loss", "zero_grad + backward", "SGD step"};
  const auto minor_faults = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<int64_t>(u.ru_minflt);
  };
  const int64_t faults_before = minor_faults();
  {
    profiler::Session session;
    for (int64_t i = 0; i < steps; ++i) {
      Clock::time_point t0 = Clock::now();
      models::DetectorOutput out;
      {
        profiler::Scope scope("phase: forward");
        AutocastGuard autocast(c.compute_dtype);
        out = s.detector->forward(s.train_images);
        wait(out.step2_deltas);
      }
      Clock::time_point t1 = Clock::now();
      models::DetectionLoss loss;
      {
        profiler::Scope scope("phase: targets + loss");
        loss = models::detection_loss(out.step1_logits, out.step1_deltas, out.step2_logits, out.step2_deltas,
                                      out.anchors, s.gt, s.detector->config().loss);
        (void)scalar_of(loss.total);
      }
      Clock::time_point t2 = Clock::now();
      {
        profiler::Scope scope("phase: backward");
        step.sgd.zero_grad();
        loss.total.backward();
        wait(s.detector->parameters().front());
      }
      Clock::time_point t3 = Clock::now();
      {
        profiler::Scope scope("phase: SGD step");
        step.sgd.step();
        wait(s.detector->parameters().front());
      }
      Clock::time_point t4 = Clock::now();
      const Clock::time_point marks[5] = {t0, t1, t2, t3, t4};
      for (int p = 0; p < 4; ++p) phase[p] += std::chrono::duration<double, std::milli>(marks[p + 1] - marks[p]).count();
    }
  }
  const int64_t faults = minor_faults() - faults_before;
  const profiler::Report report = profiler::report();
  std::printf("training step of %s on %s (%d threads), %lld profiled steps after %lld warm-up\n", label.c_str(),
              device_name.c_str(), get_num_threads(), static_cast<long long>(steps), static_cast<long long>(warmup));
  double total = 0;
  for (double p : phase) total += p;
  for (int p = 0; p < 4; ++p)
    std::printf("  %-22s %10.3f ms  %5.1f%%\n", names[p], phase[p] / static_cast<double>(steps), 100.0 * phase[p] / total);
  std::printf("  %-22s %10.3f ms\n", "step", total / static_cast<double>(steps));
  // First touches of freshly mapped memory: each costs the kernel a page zeroing.
  std::printf("  minor page faults per step: %lld\n\n", static_cast<long long>(faults / std::max<int64_t>(1, steps)));
  std::printf("%s", profiler::format(report, top, steps).c_str());
}

}  // namespace isrn::bench
