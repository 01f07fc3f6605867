#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "isrn/io/safetensors.hpp"
#include "test_util.hpp"

using namespace isrn;
using io::NamedTensors;
namespace fs = std::filesystem;

namespace {

// A file built by hand: length prefix, header text as given (no padding added), then the data bytes.
std::string raw_file(const std::string& header, const std::string& data) {
  const uint64_t n = header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

template <typename T>
std::string bytes_of(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// Loading `path` must throw isrn::Error whose message names the file and the problem.
void expect_load_error(const std::string& path, const std::string& problem) {
  CAPTURE(problem);
  try {
    io::load_safetensors(path);
    FAIL_CHECK("no error for a malformed file: ", problem);
  } catch (const Error& e) {
    const std::string message = e.what();
    CAPTURE(message);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find(problem) != std::string::npos);
  }
}

// The temporary files save_safetensors leaves behind when something goes wrong (none, it should be).
int leftover_temporaries(const fs::path& dir) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) ++n;
  return n;
}

// Logical values in row-major order, whatever the dtype, for exact comparisons (all test values are
// exact in float64 except the int64 extremes, which are compared separately through to_vector).
std::vector<double> logical(const Tensor& t) { return test::values(t); }

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, 0-d, empty and non-contiguous tensors") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    test::TempDir dir("isrn_safetensors");
    Generator gen(7);
    Tensor f32 = rand({5, 7}, TensorOptions(DType::Float32).device(d), &gen, -3, 3).transpose(0, 1);  // strided
    Tensor f64 = randn({4, 9}, TensorOptions(DType::Float64).device(d), &gen).slice(1, 1, 8, 3);   // step 3
    Tensor i32 = from_vector<int32_t>({std::numeric_limits<int32_t>::min(), -1, 0, 7,
                                       std::numeric_limits<int32_t>::max(), 3},
                                      {2, 3}, d);
    Tensor i64 = from_vector<int64_t>({std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 5},
                                      {3}, d);
    Tensor u8 = from_vector<uint8_t>({0, 1, 128, 255}, {2, 2}, d).transpose(0, 1);
    Tensor flags = from_vector<bool>({true, false, false, true, true}, {5}, d);
    Tensor scalar = scalar_tensor(-0.375, TensorOptions(DType::Float64).device(d));
    Tensor nothing = empty({0, 4}, TensorOptions(DType::Int64).device(d));
    Tensor broadcast = from_vector<float>({1.5f, -2.5f}, {2, 1}, d).expand({2, 3});  // stride 0
    REQUIRE(!f32.is_contiguous());
    REQUIRE(!f64.is_contiguous());
    REQUIRE(!u8.is_contiguous());
    REQUIRE(!broadcast.is_contiguous());
    // Deliberately not in alphabetical order: the file keeps the given order.
    const NamedTensors saved = {{"z.f32", f32},   {"a.f64", f64},         {"i32", i32},
                                {"i64", i64},     {"u8", u8},             {"flags", flags},
                                {"scalar", scalar}, {"nothing", nothing}, {"broadcast", broadcast}};
    const io::Metadata meta = {{"format_version", "1"}, {"config", "{\"lr\": 0.01}"}, {"empty", ""}};
    const std::string path = dir.file("all.safetensors");
    io::save_safetensors(path, saved, meta);

    const io::SafetensorsFile loaded = io::load_safetensors(path);
    CHECK(loaded.metadata == meta);
    REQUIRE(loaded.tensors.size() == saved.size());
    for (size_t i = 0; i < saved.size(); ++i) {
      const auto& [name, original] = saved[i];
      const auto& [loaded_name, t] = loaded.tensors[i];
      CAPTURE(name);
      CHECK(loaded_name == name);
      CHECK(t.device() == Device::cpu());
      CHECK(t.dtype() == original.dtype());
      CHECK(t.shape() == original.shape());
      CHECK(t.is_contiguous());
      if (t.dtype() != DType::Int64) CHECK(logical(t) == logical(original));
    }
    CHECK(loaded.at("i64").to_vector<int64_t>() == i64.to_vector<int64_t>());
    CHECK(loaded.at("scalar").dim() == 0);
    CHECK(loaded.at("scalar").item<double>() == -0.375);
    CHECK(loaded.at("nothing").numel() == 0);
    CHECK(loaded.at("flags").to_vector<bool>() == std::vector<bool>{true, false, false, true, true});
    CHECK(loaded.path == path);
    CHECK_THROWS_WITH_AS(loaded.at("absent"), doctest::Contains((path + ": no tensor 'absent'").c_str()), Error);
  }
}

TEST_CASE("safetensors: the byte layout follows the format") {
  test::TempDir dir("isrn_safetensors");
  const std::string path = dir.file("layout.safetensors");
  io::save_safetensors(path,
                       {{"b", from_vector<int32_t>({1, -2}, {2})},
                        {"a", scalar_tensor(3.5, DType::Float64)},
                        {"e", empty({0}, DType::UInt8)},
                        {"m", from_vector<bool>({true, false, true}, {3})}},
                       {{"k", "v"}});
  const std::string file = test::read_bytes(path);
  REQUIRE(file.size() >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(file[i]);  // little-endian, decoded by hand
  CHECK(n % 8 == 0);
  REQUIRE(8 + n <= file.size());
  const std::string header = file.substr(8, n);
  CHECK(header.front() == '{');
  const size_t json_end = header.find_last_of('}');
  REQUIRE(json_end != std::string::npos);
  CHECK(json_end + 8 > n);  // padding is shorter than 8 bytes
  for (size_t i = json_end + 1; i < n; ++i) CHECK(header[i] == ' ');
  // Given order, metadata first: readers do not care, but a stable order keeps files diffable.
  CHECK(header.find("\"__metadata__\"") < header.find("\"b\""));
  CHECK(header.find("\"b\"") < header.find("\"a\""));

  const auto j = nlohmann::json::parse(header);
  CHECK(j.size() == 5);
  CHECK(j["__metadata__"] == nlohmann::json({{"k", "v"}}));
  CHECK(j["b"]["dtype"] == "I32");
  CHECK(j["b"]["shape"] == nlohmann::json::array({2}));
  CHECK(j["b"]["data_offsets"] == nlohmann::json::array({0, 8}));
  CHECK(j["a"]["dtype"] == "F64");
  CHECK(j["a"]["shape"] == nlohmann::json::array());
  CHECK(j["a"]["data_offsets"] == nlohmann::json::array({8, 16}));
  CHECK(j["e"]["dtype"] == "U8");
  CHECK(j["e"]["shape"] == nlohmann::json::array({0}));
  CHECK(j["e"]["data_offsets"] == nlohmann::json::array({16, 16}));
  CHECK(j["m"]["dtype"] == "BOOL");
  CHECK(j["m"]["data_offsets"] == nlohmann::json::array({16, 19}));
  const double three_and_a_half = 3.5;
  const std::string expected_data = bytes_of(std::vector<int32_t>{1, -2}) +
                                    std::string(reinterpret_cast<const char*>(&three_and_a_half), 8) +
                                    std::string("\x01\x00\x01", 3);
  CHECK(file.substr(8 + n) == expected_data);
}

TEST_CASE("safetensors: reads the fixture written by Python (golden_io.write_safetensors)") {
  const std::string path = std::string(ISRN_GOLDEN_DIR) + "/safetensors_fixture.safetensors";
  const io::SafetensorsFile f = io::load_safetensors(path);
  CHECK(f.metadata == io::Metadata{{"format", "isrn-test-fixture"}, {"version", "1"}});
  // The Python writer sorts by name and lays the data out in that order.
  std::vector<std::string> names;
  for (const auto& [name, t] : f.tensors) names.push_back(name);
  CHECK(names == std::vector<std::string>{"bool", "empty", "f32", "f64", "i32", "i64", "scalar", "u8"});

  // The same values as data_tools/make_safetensors_fixture.py, recomputed here.
  std::vector<float> f32(12);
  for (int i = 0; i < 12; ++i) f32[i] = 0.5f * static_cast<float>(i) - 1.0f;
  CHECK(f.at("f32").shape() == Shape{3, 4});
  CHECK(f.at("f32").to_vector<float>() == f32);
  CHECK(f.at("f64").shape() == Shape{1, 3});
  CHECK(f.at("f64").to_vector<double>() == std::vector<double>{1e300, -2.5, 0.1});
  CHECK(f.at("i32").to_vector<int32_t>() ==
        std::vector<int32_t>{std::numeric_limits<int32_t>::min(), 0, std::numeric_limits<int32_t>::max()});
  CHECK(f.at("i64").shape() == Shape{2, 1});
  CHECK(f.at("i64").to_vector<int64_t>() ==
        std::vector<int64_t>{std::numeric_limits<int64_t>::min(), (int64_t{1} << 62) + 1});
  CHECK(f.at("u8").to_vector<uint8_t>() == std::vector<uint8_t>{0, 51, 102, 153, 204, 255});
  CHECK(f.at("bool").shape() == Shape{2, 3});
  CHECK(f.at("bool").to_vector<bool>() == std::vector<bool>{true, false, true, false, false, true});
  CHECK(f.at("scalar").shape() == Shape{});
  CHECK(f.at("scalar").item<float>() == 7.25f);
  CHECK(f.at("empty").shape() == Shape{0, 3});
  CHECK(f.at("empty").dtype() == DType::Float32);
}

TEST_CASE("safetensors: every malformation is an error naming the file and the problem") {
  test::TempDir dir("isrn_safetensors");
  int counter = 0;
  auto case_file = [&](const std::string& bytes) {
    const std::string p = dir.file("bad" + std::to_string(counter++) + ".safetensors");
    test::write_bytes(p, bytes);
    return p;
  };
  const std::string eight = bytes_of(std::vector<float>{1, 2});  // 8 data bytes

  // Sanity: the hand-built layout itself is accepted, so the failures below come from the one change each makes.
  {
    const auto ok = io::load_safetensors(
        case_file(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight)));
    CHECK(ok.at("x").to_vector<float>() == std::vector<float>{1, 2});
  }
  expect_load_error(dir.file("does_not_exist.safetensors"), "cannot open");
  expect_load_error(case_file("\x05\x00\x00"), "shorter than the 8-byte header length");
  expect_load_error(case_file(std::string(8, '\0')), "not valid JSON");  // header length 0: empty JSON
  {
    std::string f = raw_file("{}", "");
    f[0] = static_cast<char>(100);  // claims 100 header bytes, the file has 2
    expect_load_error(case_file(f), "header length 100 goes beyond the file");
  }
  {
    std::string f = raw_file("{}", "");
    std::memset(f.data(), 0xff, 8);  // 2^64 - 1: must not overflow the bound check
    expect_load_error(case_file(f), "goes beyond the file");
  }
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"F32",)", eight)), "not valid JSON");
  expect_load_error(case_file(raw_file("[1, 2]", "")), "not an object");
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", eight)),
                    "unknown dtype 'F16'");
  expect_load_error(case_file(raw_file(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", eight)), "no string 'dtype'");
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight)),
                    "needs 12 bytes but data_offsets [0,8] span 8");
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight)),
                    "shape entry -2 is not a non-negative integer");
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"U8","shape":[1,1,1,1,1,1,8],"data_offsets":[0,8]}})", eight)),
                    "7 dimensions");
  expect_load_error(
      case_file(raw_file(R"({"x":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", eight)),
      "too large");
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight)),
                    "end before they begin");
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", eight)),
                    "are not two non-negative integers");
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight)),
                    "are not two non-negative integers");
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[64,72]}})", eight)),
                    "end beyond the 8-byte data section");
  expect_load_error(
      case_file(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         eight + eight)),
      "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
  // Truncated: a well-formed header whose data was cut short (e.g. a copy interrupted midway).
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"F64","shape":[4],"data_offsets":[0,32]}})", eight)),
                    "end beyond the 8-byte data section (truncated file");
  expect_load_error(case_file(raw_file(R"({"x":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})",
                                       std::string("\x01\x02", 2))),
                    "BOOL element 1 holds byte 2");
  expect_load_error(case_file(raw_file(R"({"__metadata__":{"epoch":3}})", "")), "metadata 'epoch'");
  expect_load_error(case_file(raw_file(R"({"x":[1,2]})", "")), "tensor 'x': entry is a JSON array");
  expect_load_error(dir.path.string(), "not a regular file");
}

TEST_CASE("safetensors: a failed save leaves no partial file and the old file intact") {
  test::TempDir dir("isrn_safetensors");
  const std::string path = dir.file("ckpt.safetensors");
  const Tensor old_value = from_vector<float>({1, 2, 3}, {3});
  io::save_safetensors(path, {{"w", old_value}}, {{"step", "1"}});
  const std::string old_bytes = test::read_bytes(path);
  auto old_file_intact = [&] {
    CHECK(test::read_bytes(path) == old_bytes);
    CHECK(io::load_safetensors(path).at("w").to_vector<float>() == std::vector<float>{1, 2, 3});
    CHECK(leftover_temporaries(dir.path) == 0);
  };

  // Refused before any file is created.
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"w", Tensor()}}), doctest::Contains("tensor 'w' is undefined"),
                       Error);
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"w", old_value}, {"w", old_value}}),
                       doctest::Contains("'w' appears twice"), Error);
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"__metadata__", old_value}}), doctest::Contains("reserved"),
                       Error);
  old_file_intact();

  // The OS refuses midway: a file-size limit below the checkpoint makes write(2) fail with EFBIG
  // after the temporary file exists (portable to root, unlike a read-only directory).
  {
    struct rlimit saved {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    struct rlimit low = saved;
    low.rlim_cur = 4096;
    auto* previous_handler = ::signal(SIGXFSZ, SIG_IGN);  // else the kernel kills the process instead
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &low) == 0);
    std::string message;
    try {
      io::save_safetensors(path, {{"w", zeros({100000})}});
    } catch (const Error& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::signal(SIGXFSZ, previous_handler);
    CAPTURE(message);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find(std::strerror(EFBIG)) != std::string::npos);
    old_file_intact();
  }

  // The destination is a directory: the rename fails, the directory and its content survive.
  {
    const fs::path sub = dir.path / "a_directory";
    fs::create_directories(sub / "inside");
    try {
      io::save_safetensors(sub.string(), {{"w", old_value}});
      FAIL_CHECK("saving over a directory succeeded");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(sub.string()) != std::string::npos);
      CHECK(std::string(e.what()).find(std::strerror(EISDIR)) != std::string::npos);
    }
    CHECK(fs::is_directory(sub / "inside"));
    old_file_intact();
  }

  // The parent directory does not exist: nothing can be created.
  {
    const std::string nowhere = dir.file("missing_dir/ckpt.safetensors");
    CHECK_THROWS_WITH_AS(io::save_safetensors(nowhere, {{"w", old_value}}), doctest::Contains(nowhere.c_str()), Error);
    CHECK(!fs::exists(dir.path / "missing_dir"));
    old_file_intact();
  }

  // A successful save replaces the old file as a whole.
  io::save_safetensors(path, {{"w2", from_vector<int64_t>({9}, {1})}});
  const auto replaced = io::load_safetensors(path);
  REQUIRE(replaced.tensors.size() == 1);
  CHECK(replaced.tensors[0].first == "w2");
  CHECK(replaced.metadata.empty());
  CHECK(leftover_temporaries(dir.path) == 0);
}

TEST_CASE("safetensors: load_into reports missing, unexpected and mismatched tensors") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    auto destinations = [&] {
      Tensor w = zeros({2, 3}, TensorOptions().device(d));
      w.set_requires_grad(true);  // a parameter: the copy must happen under NoGradGuard
      return NamedTensors{{"conv.weight", w},
                          {"conv.bias", zeros({3}, TensorOptions().device(d))},
                          {"bn.count", zeros({}, TensorOptions(DType::Int64).device(d))},
                          {"head.weight", zeros({4}, TensorOptions().device(d))}};
    };
    const Tensor weight = from_vector<float>({1, -2, 3, -4, 5, -6}, {2, 3});
    const NamedTensors file = {{"conv.weight", weight},
                               {"conv.bias", from_vector<float>({1, 2, 3, 4}, {4})},  // wrong shape
                               {"bn.count", scalar_tensor(5, DType::Float64)},       // wrong dtype
                               {"old.layer", zeros({1})}};

    // Strict: the full report in the message, and nothing copied.
    const NamedTensors strict_dst = destinations();
    try {
      io::load_into(strict_dst, file, /*strict=*/true);
      FAIL_CHECK("strict load_into accepted a mismatching file");
    } catch (const Error& e) {
      const std::string m = e.what();
      CAPTURE(m);
      CHECK(m.find("missing from the file: 'head.weight'") != std::string::npos);
      CHECK(m.find("unexpected in the file: 'old.layer'") != std::string::npos);
      CHECK(m.find("mismatched 'conv.bias': expected float32 [3], found float32 [4]") != std::string::npos);
      CHECK(m.find("mismatched 'bn.count': expected int64 [], found float64 []") != std::string::npos);
    }
    CHECK(test::values(strict_dst[0].second) == std::vector<double>(6, 0.0));

    // Non-strict: the matching tensor is copied in place, on the destination's device; the rest is reported.
    const NamedTensors dst = destinations();
    const void* storage_before = dst[0].second.raw_data();
    const io::LoadReport report = io::load_into(dst, file, /*strict=*/false);
    CHECK(!report.ok());
    CHECK(report.missing == std::vector<std::string>{"head.weight"});
    CHECK(report.unexpected == std::vector<std::string>{"old.layer"});
    REQUIRE(report.mismatched.size() == 2);
    CHECK(report.mismatched[0].name == "conv.bias");
    CHECK(report.mismatched[0].expected == "float32 [3]");
    CHECK(report.mismatched[0].found == "float32 [4]");
    CHECK(report.mismatched[1].name == "bn.count");
    const Tensor& w = dst[0].second;
    CHECK(w.raw_data() == storage_before);
    CHECK(w.device() == d);
    CHECK(w.requires_grad());
    CHECK(test::values(w) == test::values(weight));
    CHECK(test::values(dst[1].second) == std::vector<double>(3, 0.0));

    // Strict and matching, through a file: everything arrives.
    test::TempDir dir("isrn_safetensors");
    const std::string path = dir.file("model.safetensors");
    const NamedTensors source = {{"conv.weight", weight},
                                 {"conv.bias", from_vector<float>({0.5f, 0.25f, -1}, {3}, d)},
                                 {"bn.count", scalar_tensor(41, TensorOptions(DType::Int64).device(d))},
                                 {"head.weight", from_vector<float>({9, 8, 7, 6}, {4}, d)}};
    io::save_safetensors(path, source);
    const NamedTensors fresh = destinations();
    const io::LoadReport all = io::load_into(fresh, io::load_safetensors(path).tensors, /*strict=*/true);
    CHECK(all.ok());
    CHECK(all.str() == "all tensors matched");
    for (size_t i = 0; i < fresh.size(); ++i) {
      CAPTURE(fresh[i].first);
      CHECK(fresh[i].second.device() == d);
      CHECK(test::values(fresh[i].second) == test::values(source[i].second));
    }

    CHECK_THROWS_WITH_AS(io::load_into({{"a", zeros({1})}, {"a", zeros({1})}}, {}, false),
                         doctest::Contains("destination 'a' appears twice"), Error);
    CHECK_THROWS_WITH_AS(io::load_into({}, {{"a", zeros({1})}, {"a", zeros({1})}}, false),
                         doctest::Contains("source tensor 'a' appears twice"), Error);
  }
}
