#include "isrn/train/trainer.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "isrn/autograd/autocast.hpp"
#include "isrn/autograd/grad_mode.hpp"
#include "isrn/core/profiler.hpp"
#include "isrn/data/augment.hpp"
#include "isrn/io/file.hpp"
#include "isrn/nn/module.hpp"
#include "isrn/ops/shape.hpp"
#include "isrn/optim/state.hpp"

namespace fs = std::filesystem;

namespace isrn::train {

std::atomic<bool> Trainer::stop_requested_{false};

namespace {

constexpr const char* kCheckpointPrefix = "ckpt_";
constexpr const char* kCheckpointSuffix = ".safetensors";
constexpr const char* kStateSuffix = ".train.safetensors";

std::string checkpoint_name(int64_t iteration) {
  char name[64];
  std::snprintf(name, sizeof name, "%s%09lld%s", kCheckpointPrefix, static_cast<long long>(iteration),
                kCheckpointSuffix);
  return name;
}

// Checkpoints (not their state files) in the folder, oldest first: the zero-padded iteration sorts by name.
std::vector<fs::path> list_checkpoints(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(kCheckpointPrefix) && name.ends_with(kCheckpointSuffix) && !name.ends_with(kStateSuffix) &&
        name.find(".tmp.") == std::string::npos)
      out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json record_json(const IterationRecord& r) {
  return {{"iteration", r.iteration},     {"epoch", r.epoch},       {"lr", r.lr},
          {"loss", r.total},              {"stc_cls1", r.stc_cls1}, {"stc_cls2", r.stc_cls2},
          {"str_reg1", r.str_reg1},       {"str_reg2", r.str_reg2}, {"seg", r.seg},
          {"num_pos1_cls", r.num_pos1_cls}, {"num_pos1_reg", r.num_pos1_reg}, {"num_pos2", r.num_pos2},
          {"images_per_second", r.images_per_second}, {"elapsed_seconds", r.elapsed_seconds}};
}

IterationRecord record_from_json(const nlohmann::json& j) {
  IterationRecord r;
  r.iteration = j.at("iteration").get<int64_t>();
  r.epoch = j.at("epoch").get<int64_t>();
  r.lr = j.at("lr").get<double>();
  r.total = j.at("loss").get<double>();
  r.stc_cls1 = j.at("stc_cls1").get<double>();
  r.stc_cls2 = j.at("stc_cls2").get<double>();
  r.str_reg1 = j.at("str_reg1").get<double>();
  r.str_reg2 = j.at("str_reg2").get<double>();
  r.seg = j.at("seg").get<double>();
  r.num_pos1_cls = j.at("num_pos1_cls").get<int64_t>();
  r.num_pos1_reg = j.at("num_pos1_reg").get<int64_t>();
  r.num_pos2 = j.at("num_pos2").get<int64_t>();
  r.images_per_second = j.at("images_per_second").get<double>();
  r.elapsed_seconds = j.at("elapsed_seconds").get<double>();
  return r;
}

// The loader's position, which the training state keeps as text among its extras.
int64_t extra_integer(const optim::TrainingProgress& progress, const std::string& key, const std::string& checkpoint) {
  const auto it = progress.extra.find(key);
  const std::string where = optim::training_state_path(checkpoint);
  ISRN_CHECK(it != progress.extra.end(), "[train] ", where, ": no '", key, "' in the training state");
  int64_t value = 0;
  const char* end = it->second.data() + it->second.size();
  const auto [stop, error] = std::from_chars(it->second.data(), end, value);
  ISRN_CHECK(error == std::errc() && stop == end && value >= 0, "[train] ", where, ": '", key, "' is '", it->second,
             "', not a non-negative integer");
  return value;
}

}  // namespace

std::string latest_checkpoint(const std::string& out_dir) {
  const std::vector<fs::path> all = list_checkpoints(fs::path(out_dir) / "checkpoints");
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (fs::exists(optim::training_state_path(it->string()))) return it->string();
  return "";
}

struct Trainer::Impl {
  TrainConfig config;
  const data::Dataset& train_set;
  const data::Dataset* val_set;
  TrainOptions options;
  std::unique_ptr<data::DataLoader> loader;
  std::unique_ptr<optim::SGD> sgd;
  std::unique_ptr<optim::WarmupMultiStep> schedule;
  std::vector<IterationRecord> records;

  Impl(TrainConfig c, const data::Dataset& train, const data::Dataset* val, TrainOptions o)
      : config(std::move(c)), train_set(train), val_set(val), options(std::move(o)) {}
};

Trainer::Trainer(TrainConfig config, const data::Dataset& train_set, const data::Dataset* val_set, TrainOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), train_set, val_set, std::move(options))) {
  Impl& m = *impl_;
  const OptimConfig& o = m.config.optim;
  ISRN_CHECK(!m.options.out_dir.empty(), "[train] no output folder given");
  ISRN_CHECK(static_cast<int64_t>(train_set.size()) >= o.batch, "[train] the training set has ", train_set.size(),
             " images, fewer than one batch of ", o.batch);
  if (m.options.device.type == DeviceType::CUDA)
    ISRN_CHECK(cuda_device_count() > m.options.device.index, "[train] device ", m.options.device,
               " is not available (", cuda_device_count(), " CUDA devices)");
  Generator init(m.config.run.seed);
  models::DetectorConfig detector_config = m.config.detector;
  detector_config.backbone.activation_checkpointing = m.config.run.activation_checkpointing;
  detector_ = std::make_unique<models::Detector>(detector_config, init);

  data::LoaderConfig lc;
  lc.batch_size = o.batch;
  lc.num_workers = m.config.run.workers;
  lc.prefetch = m.config.run.prefetch;
  lc.shuffle = true;
  lc.drop_last = true;  // every step sees a full batch, so the schedule's arithmetic holds
  lc.seed = m.config.run.seed;
  // On a GPU the batch goes up from page-locked memory while the host goes on (see the step below).
  lc.pin_memory = m.options.device.is_cuda();
  const data::AugmentConfig augment = m.config.augment;
  m.loader = std::make_unique<data::DataLoader>(
      train_set, lc, [augment](data::Sample s, Generator& rng) { return data::augment(s, augment, rng); });

  const double bpe = static_cast<double>(m.loader->batches_per_epoch());
  total_iters_ = m.options.max_iters >= 0 ? m.options.max_iters
                                          : static_cast<int64_t>(std::ceil(o.epochs * bpe));
  std::vector<int64_t> milestones;
  for (double e : o.milestones) milestones.push_back(static_cast<int64_t>(std::llround(e * bpe)));
  m.schedule = std::make_unique<optim::WarmupMultiStep>(o.lr, milestones, o.gamma, o.warmup_factor,
                                                        static_cast<int64_t>(std::llround(o.warmup_epochs * bpe)));
}

Trainer::~Trainer() = default;

int64_t Trainer::batches_per_epoch() const { return impl_->loader->batches_per_epoch(); }

void Trainer::request_stop() { stop_requested_.store(true); }
void Trainer::clear_stop() { stop_requested_.store(false); }

TrainResult Trainer::run() {
  Impl& m = *impl_;
  models::Detector& det = *detector_;
  const fs::path out(m.options.out_dir);
  const fs::path ckpt_dir = out / "checkpoints";
  fs::create_directories(ckpt_dir);
  const std::string log_path = (out / "train_log.jsonl").string();
  TrainResult result;

  // Resume: weights on the CPU first (the checkpoint's own config must be this run's), then the device.
  optim::TrainingProgress progress;
  std::string resume_from = m.options.resume ? latest_checkpoint(m.options.out_dir) : "";
  if (!resume_from.empty()) {
    const io::SafetensorsFile file = io::load_safetensors(resume_from);
    auto it = file.metadata.find("config");
    ISRN_CHECK(it != file.metadata.end(), "[train] ", resume_from, ": no config in the checkpoint");
    const models::DetectorConfig stored =
        models::DetectorConfig::from_json(io::JsonConfig::parse(it->second, resume_from + " (config)"));
    ISRN_CHECK(models::same_config(stored, m.config.detector.resolved()), "[train] ", resume_from,
               " was trained with another detector configuration; resume with the run's own config.json");
    models::load_weights(resume_from, det, /*strict=*/true);
  }
  det.to(m.options.device);
  det.train();
  m.sgd = std::make_unique<optim::SGD>(
      nn::parameter_groups(det, m.config.optim.lr, m.config.optim.momentum, m.config.optim.weight_decay));
  int64_t iteration = 0;
  if (!resume_from.empty()) {
    progress = optim::load_training_state(optim::training_state_path(resume_from), *m.sgd);
    iteration = progress.iteration;
    data::LoaderState ls;
    ls.epoch = progress.epoch;
    ls.batch = progress.batches_in_epoch;
    ls.position = extra_integer(progress, "loader_position", resume_from);
    ls.dataset_size = extra_integer(progress, "dataset_size", resume_from);
    m.loader->resume(ls);
    result.resumed_from = iteration;
    result.last_checkpoint = resume_from;
    // The log keeps what led to the checkpoint; records of iterations after it are replayed.
    std::ifstream in(log_path);
    std::string line, kept;
    for (int64_t line_number = 1; std::getline(in, line); ++line_number) {
      if (line.empty()) continue;
      // A line cut short by a crash does not parse and is dropped; a complete record with wrong fields is
      // someone's edit, and resuming over it would lose the loss curve silently.
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) continue;
      try {
        if (!j.contains("iteration") || j.at("iteration").get<int64_t>() > iteration) continue;
        if (!j.contains("eval")) m.records.push_back(record_from_json(j));
      } catch (const nlohmann::json::exception& e) {
        ISRN_CHECK(false, "[train] ", log_path, ":", line_number, ": malformed log record: ", e.what());
      }
      kept += line + "\n";
    }
    io::write_file_atomic(log_path, kept, "[train] ");
  } else {
    ISRN_CHECK(list_checkpoints(ckpt_dir).empty(), "[train] ", ckpt_dir.string(), " already holds checkpoints of "
               "another run: resume it (--resume) or choose another output folder");
    m.loader->start_epoch(0);
    io::write_file_atomic(log_path, "", "[train] ");
  }
  io::write_file_atomic((out / "config.json").string(), m.config.to_json(), "[train] ");
  std::ofstream log(log_path, std::ios::app);
  ISRN_CHECK(log.good(), "[train] cannot append to ", log_path);

  auto save = [&](int64_t iter) {
    const std::string path = (ckpt_dir / checkpoint_name(iter)).string();
    models::save_checkpoint(path, det);
    const data::LoaderState ls = m.loader->state();
    optim::TrainingProgress p;
    p.iteration = iter;
    p.epoch = ls.epoch;
    p.batches_in_epoch = ls.batch;
    p.extra["loader_position"] = std::to_string(ls.position);
    p.extra["dataset_size"] = std::to_string(ls.dataset_size);
    optim::save_training_state(optim::training_state_path(path), *m.sgd, p);
    result.last_checkpoint = path;
    std::vector<fs::path> all = list_checkpoints(ckpt_dir);
    while (static_cast<int64_t>(all.size()) > m.config.run.keep_last) {
      std::error_code ec;
      fs::remove(optim::training_state_path(all.front().string()), ec);
      fs::remove(all.front(), ec);
      all.erase(all.begin());
    }
  };
  auto run_evaluation = [&](int64_t iter) {
    if (!m.val_set) return;
    eval::EvalResult r = evaluate_detector(det, *m.val_set, m.options.device);
    det.train();
    const eval::SettingResult& all = r.settings.front();
    log << nlohmann::json{{"iteration", iter}, {"eval", {{"ap", all.ap}, {"images", all.images}, {"faces", all.faces}}}}
               .dump()
        << "\n";
    log.flush();
    if (m.options.on_evaluation) m.options.on_evaluation(r, iter);
    result.evaluation = std::move(r);
  };

  const auto start = std::chrono::steady_clock::now();
  auto last_log_time = start;
  int64_t images_since_log = 0;
  const double bpe = static_cast<double>(m.loader->batches_per_epoch());
  const double eval_every = m.config.run.eval_every_epochs;
  data::Batch batch;
  int64_t empty_epochs = 0;
  const DType compute_dtype = parse_precision(m.config.run.precision);
  while (iteration < total_iters_) {
    if (stop_requested_.load()) {
      save(iteration);
      result.interrupted = true;
      break;
    }
    bool got_batch;
    {
      profiler::Scope wait("train: wait for the next batch");  // the time the loader threads did not hide
      got_batch = m.loader->next(batch);
    }
    if (!got_batch) {
      // Every sample of an epoch unreadable would otherwise spin here forever.
      ISRN_CHECK(++empty_epochs < 2, "[train] two epochs in a row without a single readable batch");
      m.loader->start_epoch(m.loader->state().epoch + 1);
      continue;
    }
    empty_epochs = 0;
    const double lr = m.schedule->lr_at(iteration);
    for (size_t g = 0; g < m.sgd->num_groups(); ++g) m.sgd->set_lr(g, lr);
    std::vector<Tensor> boxes;
    for (const Tensor& b : batch.boxes) boxes.push_back(b.to(m.options.device));
    const models::DetectionLoss loss = [&] {
      AutocastGuard autocast(compute_dtype);  // the forward only: see autocast.hpp
      // Enqueued without waiting: the forward's kernels follow it on the same stream, and the loader
      // rewrites the buffer only after the copy has read it.
      return det.loss(batch.images.to(m.options.device, /*non_blocking=*/true), boxes);
    }();
    IterationRecord r;
    r.iteration = iteration + 1;
    r.epoch = m.loader->state().epoch;
    r.lr = lr;
    {
      // One copy to the host for all the terms: on a GPU each read is a synchronization.
      NoGradGuard no_grad;
      const Tensor seg = loss.seg.defined() ? loss.seg : zeros_like(loss.total);
      const std::vector<double> terms =
          stack({loss.total, loss.stc_cls1, loss.stc_cls2, loss.str_reg1, loss.str_reg2, seg}, 0)
              .to(Device::cpu())
              .to(DType::Float64)
              .to_vector<double>();
      r.total = terms[0];
      r.stc_cls1 = terms[1];
      r.stc_cls2 = terms[2];
      r.str_reg1 = terms[3];
      r.str_reg2 = terms[4];
      r.seg = terms[5];
    }
    r.num_pos1_cls = loss.num_pos1_cls;
    r.num_pos1_reg = loss.num_pos1_reg;
    r.num_pos2 = loss.num_pos2;
    ISRN_CHECK(std::isfinite(r.total), "[train] the loss is not finite at iteration ", r.iteration, " (stc_cls1 ",
               r.stc_cls1, ", stc_cls2 ", r.stc_cls2, ", str_reg1 ", r.str_reg1, ", str_reg2 ", r.str_reg2,
               "); stopped before the update, the last checkpoint (", result.last_checkpoint.empty() ? "none" :
               result.last_checkpoint, ") is untouched. Lower optim.lr or set optim.clip_grad_norm.");
    m.sgd->zero_grad();
    loss.total.backward();
    if (m.config.optim.clip_grad_norm > 0) optim::clip_grad_norm(det.parameters(), m.config.optim.clip_grad_norm);
    m.sgd->step();
    ++iteration;
    images_since_log += batch.size();

    const auto now = std::chrono::steady_clock::now();
    r.elapsed_seconds = std::chrono::duration<double>(now - start).count();
    const double interval = std::chrono::duration<double>(now - last_log_time).count();
    r.images_per_second = interval > 0 ? static_cast<double>(images_since_log) / interval : 0;
    if (iteration % m.config.run.log_every == 0 || iteration == total_iters_) {
      log << record_json(r).dump() << "\n";
      log.flush();
      last_log_time = now;
      images_since_log = 0;
    }
    m.records.push_back(r);
    if (m.options.on_iteration) m.options.on_iteration(r, total_iters_);
    if (iteration % m.config.run.checkpoint_every == 0 && iteration < total_iters_) save(iteration);
    if (eval_every > 0) {
      const int64_t every = std::max<int64_t>(1, static_cast<int64_t>(std::llround(eval_every * bpe)));
      if (iteration % every == 0 && iteration < total_iters_) run_evaluation(iteration);
    }
  }
  if (!result.interrupted) {
    save(iteration);
    run_evaluation(iteration);
  }
  result.iterations = iteration;
  result.skipped = m.loader->skipped();
  if (!m.records.empty()) io::write_file_atomic((out / "loss.svg").string(), loss_curve_svg(m.records), "[train] ");
  return result;
}

eval::EvalResult evaluate_detector(models::Detector& detector, const data::Dataset& dataset, Device device,
                                   eval::Predictions* predictions) {
  std::vector<eval::ImageFaces> truth;
  eval::Predictions preds;
  std::vector<std::string> warnings;
  for (size_t i = 0; i < dataset.size(); ++i) {
    data::Sample s;
    try {
      s = dataset.get(i);
    } catch (const Error& e) {
      warnings.push_back(std::string("skipped an unreadable image: ") + e.what());
      continue;
    }
    eval::ImageFaces faces{s.id, {}};
    for (const data::Box& b : s.boxes) faces.faces.push_back({b.x1, b.y1, b.width(), b.height()});
    truth.push_back(std::move(faces));
    const models::Detections d = detector.detect(data::to_tensor(s.image).unsqueeze(0).to(device)).front();
    const Tensor boxes = d.boxes.to(Device::cpu()).to(DType::Float64).contiguous();
    const Tensor scores = d.scores.to(Device::cpu()).to(DType::Float64).contiguous();
    const double* pb = boxes.data_ptr<double>();
    const double* ps = scores.data_ptr<double>();
    std::vector<eval::Detection>& out = preds[s.id];
    for (int64_t k = 0; k < scores.size(0); ++k)
      out.push_back({pb[4 * k], pb[4 * k + 1], pb[4 * k + 2] - pb[4 * k], pb[4 * k + 3] - pb[4 * k + 1], ps[k]});
  }
  eval::EvalResult r = eval::evaluate_all_faces(truth, preds);
  r.warnings.insert(r.warnings.end(), warnings.begin(), warnings.end());
  if (predictions) *predictions = std::move(preds);
  return r;
}

std::string loss_curve_svg(const std::vector<IterationRecord>& records) {
  const double width = 800, height = 480, left = 70, right = 170, top = 30, bottom = 50;
  const double pw = width - left - right, ph = height - top - bottom;
  struct Series {
    const char* name;
    const char* colour;
    double IterationRecord::*field;
  };
  const Series series[] = {{"total", "#000000", &IterationRecord::total},
                           {"stc_cls1", "#1f77b4", &IterationRecord::stc_cls1},
                           {"stc_cls2", "#ff7f0e", &IterationRecord::stc_cls2},
                           {"str_reg1", "#2ca02c", &IterationRecord::str_reg1},
                           {"str_reg2", "#d62728", &IterationRecord::str_reg2}};
  double lo = 1e300, hi = -1e300;
  int64_t first = records.front().iteration, last = records.back().iteration;
  for (const IterationRecord& r : records)
    for (const Series& s : series)
      if (r.*s.field > 0 && std::isfinite(r.*s.field)) {
        lo = std::min(lo, r.*s.field);
        hi = std::max(hi, r.*s.field);
      }
  if (!(lo < hi)) {
    lo = 1e-3;
    hi = 10;
  }
  const double llo = std::floor(std::log10(lo)), lhi = std::ceil(std::log10(hi));
  const auto x_of = [&](int64_t it) {
    return left + (last > first ? pw * static_cast<double>(it - first) / static_cast<double>(last - first) : 0);
  };
  const auto y_of = [&](double v) { return top + ph * (lhi - std::log10(v)) / std::max(1.0, lhi - llo); };
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">isrn-train: loss terms (log scale)</text>\n";
  for (double e = llo; e <= lhi; e += 1) {
    const double y = y_of(std::pow(10.0, e));
    svg << "<line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + pw << "\" y2=\"" << y
        << "\" stroke=\"#dddddd\"/>\n<text x=\"" << left - 8 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">1e"
        << e << "</text>\n";
  }
  svg << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
      << "\" fill=\"none\" stroke=\"black\"/>\n";
  svg << "<text x=\"" << left << "\" y=\"" << height - 15 << "\">iteration " << first << "</text>\n<text x=\""
      << left + pw << "\" y=\"" << height - 15 << "\" text-anchor=\"end\">" << last << "</text>\n";
  int legend = 0;
  for (const Series& s : series) {
    svg << "<polyline fill=\"none\" stroke=\"" << s.colour << "\" stroke-width=\"1.2\" points=\"";
    // At most ~2000 points: more only blur the line and grow the file.
    const size_t step = std::max<size_t>(1, records.size() / 2000);
    for (size_t i = 0; i < records.size(); i += step) {
      const double v = records[i].*s.field;
      if (v > 0 && std::isfinite(v)) svg << x_of(records[i].iteration) << "," << y_of(v) << " ";
    }
    svg << "\"/>\n";
    const double ly = top + 10 + 18 * legend++;
    svg << "<line x1=\"" << left + pw + 12 << "\" y1=\"" << ly << "\" x2=\"" << left + pw + 32 << "\" y2=\"" << ly
        << "\" stroke=\"" << s.colour << "\" stroke-width=\"2\"/>\n<text x=\"" << left + pw + 38 << "\" y=\""
        << ly + 4 << "\">" << s.name << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace isrn::train
