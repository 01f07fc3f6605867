#include "isrn/io/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "isrn/autograd/grad_mode.hpp"
#include "isrn/io/file.hpp"

namespace isrn::io {

// The format is little-endian; so are x86-64 and aarch64, which lets the tensor bytes go to disk as they are.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

using json = nlohmann::ordered_json;  // keeps the header in the order the tensors were given

constexpr const char* kMetadataKey = "__metadata__";

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int32: return "I32";
    case DType::Int64: return "I64";
    case DType::UInt8: return "U8";
    case DType::Bool: return "BOOL";
    case DType::BFloat16: return "BF16";
  }
  return "?";
}

bool parse_dtype(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kinds[] = {{"F32", DType::Float32}, {"F64", DType::Float64},
                                                        {"I32", DType::Int32},   {"I64", DType::Int64},
                                                        {"U8", DType::UInt8},    {"BOOL", DType::Bool},
                                                        {"BF16", DType::BFloat16}};
  for (const auto& [name, dtype] : kinds) {
    if (s == name) {
      *out = dtype;
      return true;
    }
  }
  return false;
}

std::string os_error(int err) { return std::strerror(err); }

// Owns a file descriptor so that every early exit closes it.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { close(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int close() {
    int rc = 0;
    if (fd_ >= 0) rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Reads exactly `size` bytes at `offset`. Returns 0, the errno, or -1 when the file ends first.
int read_all(int fd, void* data, size_t size, uint64_t offset) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return -1;
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

std::string describe(DType dtype, const Shape& shape) {
  return std::string(dtype_name(dtype)) + " " + shape_str(shape);
}

}  // namespace

// --- save -----------------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  const std::string where = "[save_safetensors] " + path + ": ";
  // Everything that can fail without the OS is checked and serialized before a file is created.
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  std::set<std::string> seen;
  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header[kMetadataKey] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    ISRN_CHECK(name != kMetadataKey, where, "'", kMetadataKey, "' is reserved for the metadata, not a tensor name");
    ISRN_CHECK(seen.insert(name).second, where, "tensor name '", name, "' appears twice");
    ISRN_CHECK(tensor.defined(), where, "tensor '", name, "' is undefined");
    Tensor h = tensor.detach().to(Device::cpu()).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(h.numel()) * h.element_size();
    header[name] = json{{"dtype", safetensors_dtype(h.dtype())},
                        {"shape", h.shape()},
                        {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    host.push_back(std::move(h));
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // names or metadata that are not valid UTF-8
    ISRN_CHECK(false, where, "cannot encode the header: ", e.what());
  }
  // Readers may map the data and view it in place: 8-byte alignment keeps every dtype aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  io::AtomicFile file(path, "[save_safetensors] ");
  file.write(&header_len, sizeof header_len);
  file.write(text);
  for (const Tensor& h : host)
    if (h.numel() > 0) file.write(h.raw_data(), static_cast<size_t>(h.numel()) * h.element_size());
  file.commit();
}

// --- load -----------------------------------------------------------------------------------------

const Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  detail::throw_error(__FILE__, __LINE__, detail::concat("[safetensors] ", path, ": no tensor '", name, "'"));
}

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string where = "[load_safetensors] " + path + ": ";
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ISRN_CHECK(fd.get() >= 0, where, "cannot open: ", os_error(errno));
  struct stat st {};
  ISRN_CHECK(::fstat(fd.get(), &st) == 0, where, "cannot stat: ", os_error(errno));
  ISRN_CHECK(S_ISREG(st.st_mode), where, "not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  ISRN_CHECK(file_size >= 8, where, "file is ", file_size, " bytes, shorter than the 8-byte header length");

  uint64_t header_len = 0;
  int err = read_all(fd.get(), &header_len, 8, 0);
  ISRN_CHECK(err == 0, where, "cannot read the header length: ", err < 0 ? "file ended" : os_error(err));
  ISRN_CHECK(header_len <= file_size - 8, where, "header length ", header_len, " goes beyond the file (",
             file_size, " bytes)");
  std::string text(header_len, '\0');
  err = read_all(fd.get(), text.data(), header_len, 8);
  ISRN_CHECK(err == 0, where, "cannot read the header: ", err < 0 ? "file ended" : os_error(err));

  json header;
  try {
    header = json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number beyond double's
    ISRN_CHECK(false, where, "header is not valid JSON: ", e.what());
  }
  ISRN_CHECK(header.is_object(), where, "header is a JSON ", header.type_name(), ", not an object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  SafetensorsFile out;
  out.path = path;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == kMetadataKey) {
      ISRN_CHECK(v.is_object(), where, "'", kMetadataKey, "' is a JSON ", v.type_name(), ", not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        ISRN_CHECK(m.value().is_string(), where, "metadata '", m.key(), "' is a JSON ", m.value().type_name(),
                   ", not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = where + "tensor '" + name + "': ";
    ISRN_CHECK(v.is_object(), what, "entry is a JSON ", v.type_name(), ", not an object");
    ISRN_CHECK(v.contains("dtype") && v["dtype"].is_string(), what, "no string 'dtype'");
    ISRN_CHECK(v.contains("shape") && v["shape"].is_array(), what, "no array 'shape'");
    ISRN_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array(), what, "no array 'data_offsets'");
    Entry e{name, DType::Float32, {}, 0, 0};
    const std::string dtype = v["dtype"].get<std::string>();
    ISRN_CHECK(parse_dtype(dtype, &e.dtype), what, "unknown dtype '", dtype,
               "' (isrn reads F32, F64, BF16, I32, I64, U8, BOOL)");
    ISRN_CHECK(v["shape"].size() <= static_cast<size_t>(kMaxDims), what, "shape has ", v["shape"].size(),
               " dimensions, isrn tensors have at most ", kMaxDims);
    uint64_t bytes = dtype_size(e.dtype);
    for (const json& d : v["shape"]) {
      ISRN_CHECK(d.is_number_unsigned(), what, "shape entry ", d.dump(), " is not a non-negative integer");
      const uint64_t size = d.get<uint64_t>();
      ISRN_CHECK(size <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                     !__builtin_mul_overflow(bytes, size, &bytes),
                 what, "shape ", v["shape"].dump(), " is too large");
      e.shape.push_back(static_cast<int64_t>(size));
    }
    const json& offsets = v["data_offsets"];
    ISRN_CHECK(offsets.size() == 2 && offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned(), what,
               "data_offsets ", offsets.dump(), " are not two non-negative integers");
    e.begin = offsets[0].get<uint64_t>();
    e.end = offsets[1].get<uint64_t>();
    ISRN_CHECK(e.begin <= e.end, what, "data_offsets ", offsets.dump(), " end before they begin");
    ISRN_CHECK(e.end - e.begin == bytes, what, "shape ", shape_str(e.shape), " of ", dtype, " needs ", bytes,
               " bytes but data_offsets ", offsets.dump(), " span ", e.end - e.begin);
    ISRN_CHECK(e.end <= data_size, what, "data_offsets ", offsets.dump(), " end beyond the ", data_size,
               "-byte data section (truncated file or out-of-range offsets)");
    entries.push_back(std::move(e));
  }
  // Two tensors must not share bytes: a writer bug or a crafted file, either way not a checkpoint.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  // Empty tensors own no bytes, so they overlap nothing wherever their offsets point.
  const Entry* last = nullptr;  // the non-empty tensor reaching furthest so far
  for (const Entry& cur : entries) {
    if (cur.begin == cur.end) continue;
    ISRN_CHECK(last == nullptr || cur.begin >= last->end, where, "tensors '", last->name, "' [", last->begin, ", ",
               last->end, ") and '", cur.name, "' [", cur.begin, ", ", cur.end, ") overlap");
    if (last == nullptr || cur.end > last->end) last = &cur;
  }

  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, TensorOptions(e.dtype));
    if (e.end > e.begin) {
      err = read_all(fd.get(), t.raw_data(), e.end - e.begin, data_start + e.begin);
      ISRN_CHECK(err == 0, where, "tensor '", e.name, "': cannot read its data: ",
                 err < 0 ? "file ended" : os_error(err));
    }
    if (e.dtype == DType::Bool) {
      // A bool holding anything but 0 or 1 is undefined behaviour in C++: refuse it here.
      const auto* bytes = static_cast<const uint8_t*>(t.raw_data());
      for (int64_t i = 0; i < t.numel(); ++i)
        ISRN_CHECK(bytes[i] <= 1, where, "tensor '", e.name, "': BOOL element ", i, " holds byte ",
                   int(bytes[i]), ", not 0 or 1");
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

// --- applying a file to named destinations ----------------------------------------------------------

std::string LoadReport::str() const {
  if (ok()) return "all tensors matched";
  std::ostringstream os;
  const char* sep = "";
  for (const auto& name : missing) {
    os << sep << "missing from the file: '" << name << "'";
    sep = "\n";
  }
  for (const auto& name : unexpected) {
    os << sep << "unexpected in the file: '" << name << "'";
    sep = "\n";
  }
  for (const auto& m : mismatched) {
    os << sep << "mismatched '" << m.name << "': expected " << m.expected << ", found " << m.found;
    sep = "\n";
  }
  return os.str();
}

LoadReport load_into(const NamedTensors& destinations, const NamedTensors& source, bool strict) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : source) {
    ISRN_CHECK(t.defined(), "[load_into] source tensor '", name, "' is undefined");
    ISRN_CHECK(by_name.emplace(name, &t).second, "[load_into] source tensor '", name, "' appears twice");
  }
  LoadReport report;
  std::set<std::string> wanted;
  std::vector<std::pair<const Tensor*, const Tensor*>> copies;  // destination, source
  for (const auto& [name, dst] : destinations) {
    ISRN_CHECK(dst.defined(), "[load_into] destination '", name, "' is undefined");
    ISRN_CHECK(wanted.insert(name).second, "[load_into] destination '", name, "' appears twice");
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      report.missing.push_back(name);
      continue;
    }
    const Tensor& src = *it->second;
    if (src.dtype() != dst.dtype() || src.shape() != dst.shape()) {
      report.mismatched.push_back({name, describe(dst.dtype(), dst.shape()), describe(src.dtype(), src.shape())});
      continue;
    }
    copies.emplace_back(&dst, &src);
  }
  for (const auto& [name, t] : source)
    if (!wanted.count(name)) report.unexpected.push_back(name);
  ISRN_CHECK(!strict || report.ok(), "[load_into] strict load failed:\n", report.str());

  NoGradGuard no_grad;
  for (const auto& [dst, src] : copies) {
    Tensor d = *dst;  // copy_ is non-const; the handle shares the destination's storage
    d.copy_(src->to(d.device()));
  }
  return report;
}

}  // namespace isrn::io
