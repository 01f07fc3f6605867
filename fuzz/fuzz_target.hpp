#pragma once
// Shared by every fuzz target. A target feeds arbitrary bytes to one of isrn's readers; the reader may refuse
// them only with isrn::Error. Any other exception, a crash, a sanitizer report or a broken invariant is a bug,
// and the target aborts so that libFuzzer (or the corpus replay in CTest) reports the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include <unistd.h>

#include "isrn/core/error.hpp"

namespace isrn::fuzz {

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz target: %s\n", what.c_str());
  std::abort();
}

// Runs `body`; isrn::Error is the one accepted way to refuse an input. ISRN_FUZZ_SHOW_ERRORS=1 prints each
// refusal, to see whether seeds are accepted and what a corpus exercises.
template <typename Body>
void accept_only_isrn_errors(Body&& body) {
  static const bool show_errors = std::getenv("ISRN_FUZZ_SHOW_ERRORS") != nullptr;
  try {
    body();
    if (show_errors) std::fprintf(stderr, "accepted\n");
  } catch (const Error& e) {
    if (show_errors) std::fprintf(stderr, "refused: %s\n", e.what());
  } catch (const std::exception& e) {
    fail(std::string("escaped ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    fail("escaped a non-standard exception");
  }
}

// The readers that take a path see the bytes through a file of this process's own (one per process, so
// parallel fuzzing jobs do not share it), rewritten for each input and removed when the process ends.
class InputFile {
 public:
  explicit InputFile(const std::string& suffix)
      : path_((std::filesystem::temp_directory_path() / ("isrn_fuzz_" + std::to_string(::getpid()) + suffix))
                  .string()) {}
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile() { std::remove(path_.c_str()); }

  const std::string& write(const uint8_t* data, size_t size) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) fail("cannot write " + path_);
    return path_;
  }

 private:
  std::string path_;
};

#define ISRN_FUZZ_EXPECT(condition, message) \
  do {                                       \
    if (!(condition)) ::isrn::fuzz::fail(std::string(#condition ": ") + (message)); \
  } while (0)

}  // namespace isrn::fuzz
