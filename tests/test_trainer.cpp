// The training program's library part: its JSON configuration, a short run whose loss falls, exact
// resume (N straight = N/2 + resume + N/2, bit for bit), the non-finite-loss guard that leaves the last
// checkpoint untouched, unreadable samples skipped, a stop request, and the evaluation on held-out images.
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "isrn/io/file.hpp"
#include "isrn/train/trainer.hpp"
#include "test_util.hpp"

using namespace isrn;
namespace fs = std::filesystem;

namespace {

train::TrainConfig tiny_train_config() {
  train::TrainConfig c;
  c.detector.backbone.depth = 18;
  c.detector.backbone.width_mult = 1.0 / 16.0;
  c.augment.size = 64;
  c.augment.das_anchor_sizes = {8, 16, 32, 64, 128, 256};
  c.optim.batch = 2;
  c.optim.lr = 0.01;
  c.optim.epochs = 100;
  c.optim.milestones = {90};
  c.optim.warmup_epochs = 0.5;
  c.run.workers = 0;
  c.run.checkpoint_every = 4;
  c.run.keep_last = 2;
  c.synthetic.scenes.min_image_size = 64;
  c.synthetic.scenes.max_image_size = 96;
  c.synthetic.scenes.min_faces = 1;
  c.synthetic.scenes.max_faces = 3;
  c.synthetic.scenes.min_face_size = 12;
  c.synthetic.scenes.max_face_size = 40;
  return c;
}

data::SyntheticDataset tiny_data(const train::TrainConfig& c, size_t n, uint64_t seed = 3) {
  return data::SyntheticDataset(c.synthetic.scenes, seed, n);
}

// The tiny config trained on 6 generated images for `iterations` into a fresh folder: the first leg of the
// cases that then resume it.
struct FinishedRun {
  train::TrainConfig c = tiny_train_config();
  const data::SyntheticDataset train_set = tiny_data(c, 6);
  test::TempDir dir;
  train::TrainOptions options;

  FinishedRun(const std::string& prefix, int64_t iterations) : dir(prefix) {
    options.out_dir = dir.path.string();
    options.max_iters = iterations;
    train::Trainer(c, train_set, nullptr, options).run();
  }
};

// Every index listed throws the Error a corrupt image would.
class FlakyDataset : public data::Dataset {
 public:
  FlakyDataset(const data::Dataset& inner, std::set<size_t> broken) : inner_(inner), broken_(std::move(broken)) {}
  size_t size() const override { return inner_.size(); }
  data::Sample get(size_t i) const override {
    ISRN_CHECK(!broken_.count(i), "[read_image] broken_", i, ".jpg: cannot decode: corrupt JPEG data");
    return inner_.get(i);
  }

 private:
  const data::Dataset& inner_;
  std::set<size_t> broken_;
};

std::vector<std::pair<std::string, Tensor>> weights_of(models::Detector& det) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, t] : det.state_dict()) out.emplace_back(name, t.to(Device::cpu()).clone());
  return out;
}

}  // namespace

TEST_CASE("train config: SPEC defaults, JSON round trip, detector and training keys in one file, typos named") {
  const train::TrainConfig d;
  CHECK(d.optim.lr == 1e-2);
  CHECK(d.optim.momentum == 0.9);
  CHECK(d.optim.weight_decay == 1e-4);
  CHECK(d.optim.batch == 32);
  CHECK(d.optim.epochs == 260);
  CHECK(d.optim.milestones == std::vector<double>{230, 250});
  CHECK(d.optim.warmup_epochs == 5);
  CHECK(d.augment.size == 1024);
  CHECK(d.augment.das_prob == 0.5);
  const train::TrainConfig c = tiny_train_config();
  const train::TrainConfig back = train::TrainConfig::from_json(io::JsonConfig::parse(c.to_json()));
  CHECK(back.to_json() == c.to_json());
  CHECK(models::same_config(back.detector, c.detector.resolved()));
  const train::TrainConfig mixed = train::TrainConfig::from_json(
      io::JsonConfig::parse(R"({"model": {"backbone": {"depth": 34}}, "optim": {"lr": 0.02}, "train": {"seed": 9}})"));
  CHECK(mixed.detector.backbone.depth == 34);
  CHECK(mixed.optim.lr == 0.02);
  CHECK(mixed.run.seed == 9);
  CHECK_THROWS_WITH_AS(train::TrainConfig::from_json(io::JsonConfig::parse(R"({"optim": {"learning_rate": 1}})")),
                       doctest::Contains("optim.learning_rate"), Error);
  CHECK_THROWS_WITH_AS(train::TrainConfig::from_json(io::JsonConfig::parse(R"({"optim": {"milestones": [5, 2]}})")),
                       doctest::Contains("optim.milestones"), Error);
  CHECK_THROWS_WITH_AS(train::TrainConfig::from_json(io::JsonConfig::parse(R"({"augment": {"flip_prob": 2}})")),
                       doctest::Contains("flip_prob"), Error);
}

TEST_CASE("trainer: a short run's loss falls; logs, checkpoints (last K), loss curve and evaluation are written") {
  train::TrainConfig c = tiny_train_config();
  c.augment.das_prob = 0;  // the SRN path alone keeps the faces at a size the tiny model learns quickly
  c.optim.lr = 0.02;
  const data::SyntheticDataset train_set = tiny_data(c, 8);
  const data::SyntheticDataset val_set = tiny_data(c, 3, 99);
  test::TempDir dir("isrn_trainer_run");
  train::TrainOptions options;
  options.out_dir = dir.path.string();
  options.max_iters = 60;
  train::Trainer trainer(c, train_set, &val_set, options);
  const train::TrainResult r = trainer.run();
  CHECK(r.iterations == 60);
  CHECK(!r.interrupted);
  REQUIRE(r.evaluation.has_value());
  CHECK(r.evaluation->settings.front().faces > 0);
  // The log has one record per iteration, the evaluation record last.
  std::vector<double> losses, cls;
  std::istringstream log(io::read_file(dir.file("train_log.jsonl")));
  std::string line;
  int evals = 0;
  while (std::getline(log, line)) {
    if (line.find("\"eval\"") != std::string::npos) {
      ++evals;
      continue;
    }
    const size_t at = line.find("\"loss\":");
    REQUIRE(at != std::string::npos);
    losses.push_back(std::stod(line.substr(at + 7)));
    const size_t c1 = line.find("\"stc_cls1\":"), c2 = line.find("\"stc_cls2\":");
    REQUIRE((c1 != std::string::npos && c2 != std::string::npos));
    cls.push_back(std::stod(line.substr(c1 + 11)) + std::stod(line.substr(c2 + 11)));
  }
  REQUIRE(losses.size() == 60);
  CHECK(evals == 1);
  // Over 60 steps on freshly augmented batches the classification terms halve (measured 2.0 → 1.2) while
  // the box regression only starts to move, so the total falls by less (measured 5.8 → 5.0).
  double first = 0, last = 0, first_cls = 0, last_cls = 0;
  for (int i = 0; i < 15; ++i) {
    first += losses[i] / 15;
    last += losses[45 + i] / 15;
    first_cls += cls[i] / 15;
    last_cls += cls[45 + i] / 15;
  }
  MESSAGE("mean loss, iterations 1-15: ", first, " (classification ", first_cls, "), 46-60: ", last,
          " (classification ", last_cls, ")");
  CHECK(last < 0.95 * first);
  CHECK(last_cls < 0.7 * first_cls);
  // keep_last = 2 of the checkpoints at 4, 8, ..., 56 and 60.
  CHECK(train::latest_checkpoint(dir.path.string()) == dir.file("checkpoints/ckpt_000000060.safetensors"));
  CHECK(fs::exists(dir.file("checkpoints/ckpt_000000056.safetensors")));
  CHECK(!fs::exists(dir.file("checkpoints/ckpt_000000052.safetensors")));
  CHECK(!fs::exists(dir.file("checkpoints/ckpt_000000052.train.safetensors")));
  CHECK(fs::exists(dir.file("loss.svg")));
  CHECK(io::read_file(dir.file("loss.svg")).find("<polyline") != std::string::npos);
  CHECK(train::TrainConfig::from_file(dir.file("config.json")).to_json() == c.to_json());
  // A fresh start into a folder that holds another run's checkpoints is refused.
  CHECK_THROWS_WITH_AS(train::Trainer(c, train_set, nullptr, options).run(), doctest::Contains("--resume"), Error);
}

TEST_CASE("trainer: N iterations straight equal N/2, a resume, and N/2 more, bit for bit") {
  train::TrainConfig c = tiny_train_config();
  c.run.workers = 2;  // the threaded loader resumes as exactly as the inline one
  const data::SyntheticDataset train_set = tiny_data(c, 7);  // 3 batches per epoch: the resume crosses an epoch
  test::TempDir straight_dir("isrn_trainer_straight"), split_dir("isrn_trainer_split");
  train::TrainOptions options;
  options.out_dir = straight_dir.path.string();
  options.max_iters = 8;
  train::Trainer straight(c, train_set, nullptr, options);
  straight.run();

  options.out_dir = split_dir.path.string();
  options.max_iters = 4;
  {
    train::Trainer first_half(c, train_set, nullptr, options);
    CHECK(first_half.run().iterations == 4);
  }
  options.max_iters = 8;
  options.resume = true;
  train::Trainer second_half(c, train_set, nullptr, options);
  const train::TrainResult r = second_half.run();
  CHECK(r.resumed_from == 4);
  CHECK(r.iterations == 8);
  const auto a = weights_of(straight.detector()), b = weights_of(second_half.detector());
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    test::check_close(b[i].second, a[i].second, 0, 0, a[i].first);
  }
  // The log was cut back to the checkpoint and continued: one record per iteration, none twice.
  std::istringstream log(io::read_file(split_dir.file("train_log.jsonl")));
  std::string line;
  int records = 0;
  while (std::getline(log, line)) records += line.find("\"loss\":") != std::string::npos;
  CHECK(records == 8);
}

TEST_CASE("trainer: a non-finite loss stops the run before the update; the last checkpoint is untouched") {
  FinishedRun run("isrn_trainer_nan", 4);
  auto& [c, train_set, dir, options] = run;
  const std::string ckpt = dir.file("checkpoints/ckpt_000000004.safetensors");
  const std::string before = io::read_file(ckpt);
  // An absurd rate overflows the weights within a few steps.
  c.optim.lr = 1e12;
  c.optim.warmup_epochs = 0;
  c.run.checkpoint_every = 1000;  // no checkpoint of the diverging weights before the loss overflows
  options.max_iters = 40;
  options.resume = true;
  train::Trainer blowing_up(c, train_set, nullptr, options);
  CHECK_THROWS_WITH_AS(blowing_up.run(), doctest::Contains("the loss is not finite"), Error);
  CHECK(io::read_file(ckpt) == before);
  CHECK(train::latest_checkpoint(dir.path.string()) == ckpt);
}

TEST_CASE("trainer: unreadable samples are skipped and counted; a stop request saves and returns") {
  const train::TrainConfig c = tiny_train_config();
  const data::SyntheticDataset inner = tiny_data(c, 6);
  const FlakyDataset flaky(inner, {1, 4});
  test::TempDir dir("isrn_trainer_flaky");
  train::TrainOptions options;
  options.out_dir = dir.path.string();
  options.max_iters = 10;
  options.on_iteration = [](const train::IterationRecord& r, int64_t) {
    if (r.iteration == 3) train::Trainer::request_stop();
  };
  train::Trainer trainer(c, flaky, nullptr, options);
  const train::TrainResult r = trainer.run();
  train::Trainer::clear_stop();
  CHECK(r.interrupted);
  CHECK(r.iterations == 3);
  CHECK(r.last_checkpoint == dir.file("checkpoints/ckpt_000000003.safetensors"));
  REQUIRE(!r.skipped.empty());
  CHECK(r.skipped.front().message.find("broken_") != std::string::npos);
  CHECK_THROWS_WITH_AS(train::Trainer(c, tiny_data(c, 1), nullptr, options), doctest::Contains("fewer than one batch"),
                       Error);
}

TEST_CASE("trainer: on resume a log line cut short is dropped, a complete record of the wrong shape is refused") {
  FinishedRun run("isrn_trainer_log", 2);
  auto& [c, train_set, dir, options] = run;
  const std::string log_path = dir.file("train_log.jsonl");
  const std::string log = io::read_file(log_path);

  // A crash while appending leaves a torn last line: the resumed run drops it and goes on.
  io::write_file_atomic(log_path, log + R"({"iteration": 3, "epo)", "[test] ");
  options.resume = true;
  options.max_iters = 3;
  CHECK(train::Trainer(c, train_set, nullptr, options).run().iterations == 3);
  CHECK(io::read_file(log_path).find("\"epo\n") == std::string::npos);

  // A record someone edited into another shape would vanish from the loss curve: refused, naming the line.
  io::write_file_atomic(log_path, R"({"iteration": "one", "loss": 1})" "\n" + log, "[test] ");
  options.max_iters = 4;
  CHECK_THROWS_WITH_AS(train::Trainer(c, train_set, nullptr, options).run(),
                       doctest::Contains("train_log.jsonl:1: malformed log record"), Error);
}
