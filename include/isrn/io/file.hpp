#pragma once
// Files written atomically: the bytes go to a temporary file beside the target, are flushed to disk,
// and only then renamed over it, so a reader (or a crash) never sees a half-written file.
#include <cstddef>
#include <string>

namespace isrn::io {

class AtomicFile {
 public:
  // Creates `path`.tmp.<pid>; `what` prefixes every error message (e.g. "[save_safetensors] ").
  AtomicFile(std::string path, std::string what);
  ~AtomicFile();  // without commit(), the temporary file is removed and the target is left as it was
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(const std::string& bytes) { write(bytes.data(), bytes.size()); }
  // fsync, close, rename over the target, fsync the folder.
  void commit();

 private:
  [[noreturn]] void fail(const std::string& step, int err);

  std::string path_, tmp_, what_;
  int fd_ = -1;
};

// The whole of `bytes` as `path`, atomically.
void write_file_atomic(const std::string& path, const std::string& bytes, const std::string& what = "[write_file] ");
// The whole file; an Error names the path and the reason.
std::string read_file(const std::string& path, const std::string& what = "[read_file] ");

}  // namespace isrn::io
