#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "isrn/io/json_config.hpp"
#include "test_util.hpp"

using namespace isrn;
using io::JsonConfig;

namespace {

const char* kGoodConfig = R"({
  // comments are allowed: configs get annotated
  "name": "isrn-r50",
  "model": {
    "depth": 50,
    "pretrained": false,
    "anchor": { "sizes": [16, 32, 64], "ratios": [1.25], "scale": 2 }
  },
  "train": { "lr": 0.01, "momentum": 0.9, "steps": [120000, 160000], "big": 9007199254740993 }
})";

// The expression must throw isrn::Error whose message holds every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL_CHECK("no error; expected one mentioning '", parts.front(), "'");
  } catch (const Error& e) {
    const std::string message = e.what();
    CAPTURE(message);
    for (const auto& p : parts) {
      CAPTURE(p);
      CHECK(message.find(p) != std::string::npos);
    }
  }
}

}  // namespace

TEST_CASE("json_config: typed reads of a good file, defaults and the saved text") {
  const JsonConfig cfg = JsonConfig::parse(kGoodConfig, "good.json");
  CHECK(cfg.get<std::string>("name") == "isrn-r50");
  CHECK(cfg.get<int64_t>("model.depth") == 50);
  CHECK(cfg.get<bool>("model.pretrained", true) == false);
  CHECK(cfg.get<std::vector<int64_t>>("model.anchor.sizes") == std::vector<int64_t>{16, 32, 64});
  CHECK(cfg.get<std::vector<double>>("model.anchor.ratios") == std::vector<double>{1.25});
  CHECK(cfg.get<double>("model.anchor.scale") == 2.0);  // an integer reads as a double
  CHECK(cfg.get<double>("train.lr") == 0.01);
  CHECK(cfg.get<double>("train.momentum", 0.0) == 0.9);
  CHECK(cfg.get<std::vector<double>>("train.steps") == std::vector<double>{120000, 160000});
  CHECK(cfg.get<int64_t>("train.big") == 9007199254740993);  // 2^53 + 1: not squeezed through a double
  // Absent keys, at any depth, give the default.
  CHECK(cfg.get<double>("train.weight_decay", 1e-4) == 1e-4);
  CHECK(cfg.get<std::string>("data.root", "/data") == "/data");
  CHECK(cfg.get<std::vector<int64_t>>("model.anchor.strides", {4, 8}) == std::vector<int64_t>{4, 8});
  CHECK(cfg.has("model.anchor.scale"));
  CHECK(!cfg.has("model.anchor.strides"));
  CHECK(!cfg.has("nothing.here"));
  CHECK(cfg.keys() == std::vector<std::string>{"model.anchor.ratios", "model.anchor.scale", "model.anchor.sizes",
                                               "model.depth", "model.pretrained", "name", "train.big",
                                               "train.lr", "train.momentum", "train.steps"});
  CHECK_NOTHROW(cfg.check_no_unknown_keys());

  // to_string keeps the file's order and re-reads to the same values (it goes into checkpoint metadata).
  const std::string text = cfg.to_string();
  CHECK(text.find("\"name\"") < text.find("\"model\""));
  CHECK(text.find("\"model\"") < text.find("\"train\""));
  const JsonConfig again = JsonConfig::parse(text, "again");
  CHECK(again.keys() == cfg.keys());
  CHECK(again.get<std::vector<int64_t>>("model.anchor.sizes") == std::vector<int64_t>{16, 32, 64});
  CHECK(again.get<int64_t>("train.big") == 9007199254740993);
  CHECK(again.get<double>("train.lr") == 0.01);

  // The record of what was read travels with a copy, and the copy's reads stay its own.
  const JsonConfig copy = cfg;
  CHECK_NOTHROW(copy.check_no_unknown_keys());
  const JsonConfig partial = JsonConfig::parse(R"({"a": 1, "b": 2})");
  const JsonConfig partial_copy = partial;
  CHECK(partial_copy.get<int64_t>("a") == 1);
  CHECK(partial_copy.get<int64_t>("b") == 2);
  CHECK_NOTHROW(partial_copy.check_no_unknown_keys());
  CHECK_THROWS_AS(partial.check_no_unknown_keys(), Error);

  // From a file.
  const auto path = std::filesystem::temp_directory_path() / ("isrn_json_config_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(path);
    out << kGoodConfig;
  }
  const JsonConfig from_file = JsonConfig::from_file(path.string());
  CHECK(from_file.get<int64_t>("model.depth") == 50);
  std::filesystem::remove(path);
  expect_error([&] { JsonConfig::from_file(path.string()); }, {path.string(), "cannot open"});
}

TEST_CASE("json_config: a key no code read is rejected by name") {
  const JsonConfig cfg = JsonConfig::parse(R"({"train": {"lr": 0.1, "momentom": 0.9, "steps": [3]}, "seed": 1})",
                                           "typo.json");
  CHECK(cfg.get<double>("train.lr") == 0.1);
  CHECK(cfg.get<double>("train.momentum", 0.5) == 0.5);  // the typo leaves the default in place...
  CHECK(cfg.get<std::vector<int64_t>>("train.steps") == std::vector<int64_t>{3});
  try {
    cfg.check_no_unknown_keys();  // ...which this catches
    FAIL_CHECK("the typo was not reported");
  } catch (const Error& e) {
    const std::string m = e.what();
    CAPTURE(m);
    CHECK(m.find("typo.json") != std::string::npos);
    CHECK(m.find("'train.momentom'") != std::string::npos);
    CHECK(m.find("'seed'") != std::string::npos);
    CHECK(m.find("train.lr") == std::string::npos);
    CHECK(m.find("train.steps") == std::string::npos);
  }
  CHECK(cfg.get<int64_t>("seed") == 1);
  expect_error([&] { cfg.check_no_unknown_keys(); }, {"'train.momentom'"});
  CHECK(cfg.get<double>("train.momentom") == 0.9);
  CHECK_NOTHROW(cfg.check_no_unknown_keys());

  // A key given twice: JSON parsers keep one silently, a config must not.
  expect_error([] { JsonConfig::parse(R"({"a": {"lr": 1, "lr": 2}})", "dup.json"); },
               {"dup.json", "duplicate key 'lr'"});
  CHECK_NOTHROW(JsonConfig::parse(R"({"a": {"lr": 1}, "b": {"lr": 2}})"));  // same name, different objects
}

TEST_CASE("json_config: a value of the wrong type names the key and both types") {
  const JsonConfig cfg = JsonConfig::parse(
      R"({"flag": true, "n": 3, "x": 1.5, "s": "text", "v": [1, 2.5, 3], "mixed": [1, "two"], "huge": 18446744073709551615,
          "nested": {"k": 1}, "nothing": null})",
      "types.json");
  expect_error([&] { cfg.get<int64_t>("flag"); }, {"types.json", "key 'flag'", "expected an integer, found boolean"});
  expect_error([&] { cfg.get<double>("flag", 0.0); }, {"key 'flag'", "expected a number, found boolean"});
  expect_error([&] { cfg.get<bool>("n"); }, {"key 'n'", "expected a boolean, found integer"});
  expect_error([&] { cfg.get<int64_t>("x", 0); }, {"key 'x'", "expected an integer, found floating-point number"});
  expect_error([&] { cfg.get<double>("s"); }, {"key 's'", "expected a number, found string"});
  expect_error([&] { cfg.get<std::string>("n"); }, {"key 'n'", "expected a string, found integer"});
  expect_error([&] { cfg.get<std::vector<double>>("x"); }, {"key 'x'", "expected an array of numbers, found floating"});
  expect_error([&] { cfg.get<std::vector<int64_t>>("v"); },
               {"key 'v'", "expected an array of integers, found floating-point number at element 1"});
  expect_error([&] { cfg.get<std::vector<double>>("mixed"); }, {"key 'mixed'", "found string at element 1"});
  expect_error([&] { cfg.get<int64_t>("huge"); }, {"key 'huge'", "beyond the int64 range"});
  expect_error([&] { cfg.get<int64_t>("nested"); }, {"key 'nested'", "expected an integer, found object"});
  expect_error([&] { cfg.get<std::string>("nothing"); }, {"key 'nothing'", "found null"});
  expect_error([&] { cfg.get<int64_t>("n.k", 0); }, {"key 'n.k'", "'n' is not an object (found integer)"});
  expect_error([&] { cfg.get<int64_t>("absent"); }, {"types.json", "required key 'absent' is missing"});
  expect_error([&] { cfg.get<int64_t>("nested..k", 0); }, {"key 'nested..k' has an empty component"});
  CHECK(cfg.get<std::vector<double>>("v") == std::vector<double>{1, 2.5, 3});
  CHECK(cfg.get<int64_t>("nested.k") == 1);
}

TEST_CASE("json_config: malformed JSON is reported with line and column") {
  // The stray ']' is on line 3, column 8.
  expect_error([] { JsonConfig::parse("{\n  \"a\": 1,\n  \"b\": ]\n}", "broken.json"); },
               {"broken.json", "invalid JSON", "line 3, column 8"});
  expect_error([] { JsonConfig::parse("{\"a\": 1", "short.json"); }, {"short.json", "invalid JSON", "line 1"});
  expect_error([] { JsonConfig::parse("", "empty.json"); }, {"empty.json", "invalid JSON"});
  expect_error([] { JsonConfig::parse("[1, 2]", "array.json"); },
               {"array.json", "the top level is not an object (found array)"});
}
