// The training-state companion file: momentum buffers, learning rates, progress and generator
// snapshots survive a save/load exactly, a resumed run continues bit for bit, and mismatched or
// damaged files are refused without touching the optimizer.
#include <cmath>
#include <filesystem>
#include <fstream>

#include "isrn/optim/state.hpp"
#include "test_util.hpp"

using namespace isrn;
using namespace isrn::optim;

namespace {

Tensor gradient_at(int step, const Shape& shape, uint64_t salt) {
  return test::random(shape, 1000 * salt + static_cast<uint64_t>(step));
}

}  // namespace

TEST_CASE("training state: save → load into a fresh optimizer resumes the same trajectory exactly") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    test::TempDir dir("isrn_training_state");
    Tensor w = test::random({3, 4}, 1).to(d).set_requires_grad(true);
    Tensor b = test::random({4}, 2).to(d).set_requires_grad(true);
    Tensor unused = test::random({2}, 3).to(d).set_requires_grad(true);  // never gets a gradient: no buffer
    SGD straight({ParamGroup{{w}, 0.1, 0.9, 1e-3}, ParamGroup{{b, unused}, 0.2, 0.9, 0.0}});
    auto step = [&](SGD& opt, Tensor& pw, Tensor& pb, int i) {
      pw.set_grad(gradient_at(i, {3, 4}, 1).to(d));
      pb.set_grad(gradient_at(i, {4}, 2).to(d));
      opt.step();
    };
    for (int i = 0; i < 3; ++i) step(straight, w, b, i);
    straight.set_lr(1, 0.05);

    Generator gen(77);
    (void)gen.normal();  // leaves a cached second draw, which must survive too
    TrainingProgress progress;
    progress.iteration = 3;
    progress.epoch = 1;
    progress.batches_in_epoch = 2;
    progress.generators["data"] = gen.snapshot();
    progress.extra["note"] = "résumé \"quoted\"";
    const std::string path = dir.file("state.safetensors");
    save_training_state(path, straight, progress);

    Tensor w2 = w.detach().clone().set_requires_grad(true), b2 = b.detach().clone().set_requires_grad(true);
    Tensor unused2 = unused.detach().clone().set_requires_grad(true);
    SGD resumed({ParamGroup{{w2}, 0.1, 0.9, 1e-3}, ParamGroup{{b2, unused2}, 0.2, 0.9, 0.0}});
    const TrainingProgress back = load_training_state(path, resumed);
    CHECK(back == progress);
    CHECK(resumed.lr(1) == 0.05);
    CHECK(!resumed.momentum_buffer(1, 1).defined());
    Generator restored;
    restored.restore(back.generators.at("data"));
    CHECK(restored.normal() == gen.normal());
    CHECK(restored.next_u64() == gen.next_u64());

    for (int i = 3; i < 6; ++i) {
      step(straight, w, b, i);
      step(resumed, w2, b2, i);
    }
    test::check_close(w2, w, 0, 0, "resumed weight");
    test::check_close(b2, b, 0, 0, "resumed bias");
  }
}

TEST_CASE("training state: mismatched optimizers and damaged files are refused, the optimizer untouched") {
  test::TempDir dir("isrn_training_state_bad");
  Tensor w = test::random({3}, 1).set_requires_grad(true);
  SGD opt({w}, 0.1, 0.9);
  w.set_grad(test::random({3}, 2));
  opt.step();
  const std::string path = dir.file("s.safetensors");
  save_training_state(path, opt, {});

  Tensor other = test::random({4}, 3).set_requires_grad(true);
  SGD wrong_shape({other}, 0.3, 0.9);
  CHECK_THROWS_WITH_AS(load_training_state(path, wrong_shape), doctest::Contains("the parameter is"), Error);
  CHECK(wrong_shape.lr(0) == 0.3);
  CHECK(!wrong_shape.momentum_buffer(0, 0).defined());
  SGD two_groups({ParamGroup{{w}, 0.1, 0.9}, ParamGroup{{other}, 0.1, 0.9}});
  CHECK_THROWS_WITH_AS(load_training_state(path, two_groups), doctest::Contains("1 parameter groups"), Error);

  // A truncated file and a model checkpoint in place of a training state.
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 5);
  CHECK_THROWS_AS(load_training_state(path, opt), Error);
  const std::string not_state = dir.file("weights.safetensors");
  io::save_safetensors(not_state, {{"w", w}}, {{"format", "isrn-detector"}});
  CHECK_THROWS_WITH_AS(load_training_state(not_state, opt), doctest::Contains("expected 'isrn-training-state'"), Error);
  CHECK(training_state_path("run/ckpt_000100.safetensors") == "run/ckpt_000100.train.safetensors");
  CHECK(training_state_path("model.bin") == "model.bin.train.safetensors");
}

TEST_CASE("training state: a progress record with values of the wrong kind is refused before the optimizer changes") {
  test::TempDir dir("isrn_training_state_kinds");
  Tensor w = test::random({3}, 1).set_requires_grad(true);
  SGD opt({w}, 0.1, 0.9);
  const std::string path = dir.file("s.safetensors");
  const std::string good_groups = R"("groups": [{"lr": 0.5, "params": 1}])";
  const auto write = [&](const std::string& record) {
    io::save_safetensors(path, {},
                         {{"format", kTrainingStateFormat}, {"format_version", kTrainingStateFormatVersion},
                          {"progress", record}});
  };
  const std::string rest = R"("generators": {}, "extra": {}, )";

  // The record a writer of this format produces loads; then each field is spoiled in turn. nlohmann's get<>
  // would read -1 as 2^64 - 1 and 2.5 as 2 without a word.
  write(R"({"iteration": 7, "epoch": 1, "batches_in_epoch": 0, )" + rest + good_groups + "}");
  CHECK(load_training_state(path, opt).iteration == 7);
  CHECK(opt.lr(0) == 0.5);
  opt.set_lr(0, 0.1);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"iteration": -1, "epoch": 1, "batches_in_epoch": 0, )" + rest + good_groups + "}",
       "progress 'iteration' is -1"},
      {R"({"iteration": 2.5, "epoch": 1, "batches_in_epoch": 0, )" + rest + good_groups + "}",
       "progress 'iteration' is 2.5"},
      {R"({"iteration": 1, "epoch": "1", "batches_in_epoch": 0, )" + rest + good_groups + "}",
       "progress 'epoch' is \"1\""},
      {R"({"iteration": 1, "epoch": 1, "batches_in_epoch": 0, "generators": {"g": {"state": -5, "has_spare": false, "spare": 0}}, "extra": {}, )" +
           good_groups + "}",
       "generator 'g'"},
      {R"({"iteration": 1, "epoch": 1, "batches_in_epoch": 0, )" + rest + R"("groups": [7]})", "malformed progress record"},
      {R"({"iteration": 1, "epoch": 1, "batches_in_epoch": 0, )" + rest + R"("groups": [{"lr": -0.5, "params": 1}]})",
       "a group's lr is -0.5"},
      {R"({"iteration": 1, "epoch": 1, "batches_in_epoch": 0, )" + rest + R"("groups": {"lr": 0.5}})",
       "'groups' is a JSON object"},
      {R"({"iteration": 1e999})", "malformed progress record"},
  };
  for (const auto& [record, message] : bad) {
    CAPTURE(record);
    write(record);
    CHECK_THROWS_WITH_AS(load_training_state(path, opt), doctest::Contains(message.c_str()), Error);
    CHECK(opt.lr(0) == 0.1);
  }
}
