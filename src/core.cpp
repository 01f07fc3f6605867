// Errors, shapes, devices, storage and the random generator: the small pieces under Tensor. (Threads:
// cpu/thread_pool.cpp.)
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "backend.hpp"
#include "isrn/config.hpp"
#include "isrn/cuda/runtime.hpp"
#include "isrn/autograd/grad_mode.hpp"

namespace isrn {

namespace detail {
void throw_error(const char* file, int line, const std::string& message) {
  (void)file;
  (void)line;
  throw Error(message);
}
}  // namespace detail

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t lo = -std::max<int64_t>(ndim, 1), hi = std::max<int64_t>(ndim, 1) - 1;
  ISRN_CHECK(dim >= lo && dim <= hi, "[", op, "] dim ", dim, " is out of range for a tensor of ", ndim,
             " dimensions (expected ", lo, "..", hi, ")");
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    ISRN_CHECK(da == db || da == 1 || db == 1, "[", op, "] shapes ", shape_str(a), " and ", shape_str(b),
               " do not broadcast (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    char* end = nullptr;
    const long idx = std::strtol(text.c_str() + 5, &end, 10);
    if (end && *end == '\0' && end != text.c_str() + 5 && idx >= 0) return Device::cuda(static_cast<int>(idx));
  }
  ISRN_CHECK(false, "[device] cannot parse device '", text, "' (expected cpu, cuda or cuda:N)");
  return Device::cpu();
}

bool cuda_built() { return ISRN_WITH_CUDA != 0; }
int cuda_device_count() { return cuda_runtime::device_count(); }
bool cuda_available() { return cuda_device_count() > 0; }

namespace {
thread_local bool grad_enabled = true;
constexpr size_t kCpuAlignment = 64;
}  // namespace
bool GradMode::is_enabled() { return grad_enabled; }
void GradMode::set_enabled(bool enabled) { grad_enabled = enabled; }

namespace {
std::atomic<size_t> host_active_bytes{0}, host_peak_bytes{0};

void count_host_allocation(size_t nbytes) {
  const size_t now = host_active_bytes.fetch_add(nbytes, std::memory_order_relaxed) + nbytes;
  size_t peak = host_peak_bytes.load(std::memory_order_relaxed);
  while (now > peak && !host_peak_bytes.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void* allocate_host(size_t nbytes) {
  const size_t rounded = (std::max<size_t>(nbytes, 1) + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
  void* data = std::aligned_alloc(kCpuAlignment, rounded);
  ISRN_CHECK(data != nullptr, "[storage] out of host memory allocating ", nbytes, " bytes");
  return data;
}
}  // namespace

Storage::Storage(size_t nbytes, Device device, HostMemory host) : nbytes_(nbytes), device_(device) {
  ISRN_CHECK(host == HostMemory::Pageable || device.is_cpu(), "[storage] pinned memory is host memory, but ",
             device, " was asked for");
  if (device.is_cpu()) {
    if (host == HostMemory::Pinned) {
      data_ = cuda_runtime::allocate_pinned(nbytes);
      pinned_ = data_ != nullptr;
    }
    if (data_ == nullptr) data_ = allocate_host(nbytes);
    count_host_allocation(nbytes);
  } else {
    data_ = cuda_runtime::allocate(nbytes, device.index);
  }
}

Storage::~Storage() {
  try {
    if (read_done_ != nullptr) {
      cuda_runtime::wait_event(read_done_);
      cuda_runtime::destroy_event(read_done_);
    }
    if (device_.is_cuda()) cuda_runtime::deallocate(data_, device_.index);
  } catch (...) {  // destructors never throw; a failed wait or free is reported by the runtime
  }
  if (pinned_) cuda_runtime::deallocate_pinned(data_);
  else if (device_.is_cpu()) std::free(data_);
  if (device_.is_cpu()) host_active_bytes.fetch_sub(nbytes_, std::memory_order_relaxed);
}

HostMemoryStats host_memory_stats() {
  return {host_active_bytes.load(std::memory_order_relaxed), host_peak_bytes.load(std::memory_order_relaxed)};
}

void reset_host_peak_memory() {
  host_peak_bytes.store(host_active_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

void Storage::copy_to_device_async(void* dst, Device dst_device, const void* src, size_t nbytes) {
  const auto* begin = static_cast<const char*>(data_);
  const auto* from = static_cast<const char*>(src);
  ISRN_CHECK(pinned_ && dst_device.is_cuda() && from >= begin && from + nbytes <= begin + nbytes_,
             "[storage] an asynchronous copy reads pinned host memory into a CUDA device (pinned: ", pinned_,
             ", to ", dst_device, ")");
  if (nbytes == 0) return;
  if (read_done_ != nullptr && read_done_device_ != dst_device.index) {
    // An event is recorded on its own device's streams only.
    cuda_runtime::wait_event(read_done_);
    cuda_runtime::destroy_event(read_done_);
    read_done_ = nullptr;
  }
  cuda_runtime::copy_to_device_async(dst, dst_device.index, src, nbytes, read_done_);
  read_done_device_ = dst_device.index;
}

void Storage::wait_for_device_reads() const {
  if (read_done_ != nullptr) cuda_runtime::wait_event(read_done_);
}

namespace cuda {
PinnedBuffer::PinnedBuffer() = default;
PinnedBuffer::PinnedBuffer(size_t nbytes)
    : storage_(nbytes == 0 ? nullptr : std::make_unique<Storage>(nbytes, Device::cpu(), HostMemory::Pinned)) {}
PinnedBuffer::~PinnedBuffer() = default;
PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept = default;
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept = default;
void* PinnedBuffer::data() const { return storage_ ? storage_->data() : nullptr; }
size_t PinnedBuffer::size() const { return storage_ ? storage_->nbytes() : 0; }
bool PinnedBuffer::pinned() const { return storage_ && storage_->pinned(); }
}  // namespace cuda

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
  } else {
    cuda_runtime::memcpy(dst, dst_device, src, src_device, nbytes);
  }
}

double Generator::normal() {  // Marsaglia polar method
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2.0 * uniform() - 1.0;
    v = 2.0 * uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double m = std::sqrt(-2.0 * std::log(s) / s);
  spare_ = v * m;
  has_spare_ = true;
  return u * m;
}

Generator& default_generator() {
  static Generator gen;
  return gen;
}
void manual_seed(uint64_t seed) { default_generator() = Generator(seed); }

void check_same_device(const char* op, Device device,
                       std::initializer_list<std::pair<const char*, const Tensor*>> args) {
  for (const auto& [name, t] : args) {
    if (!t->defined()) continue;
    ISRN_CHECK(t->device() == device, "[", op, "] argument '", name, "' is on ", t->device(),
               " but the op runs on ", device, ": move all arguments to one device");
  }
}

void check_dtype(const char* op, const char* arg, const Tensor& t, DType expected) {
  ISRN_CHECK(t.dtype() == expected, "[", op, "] argument '", arg, "' must be ", dtype_name(expected),
             ", got ", dtype_name(t.dtype()));
}

void check_floating(const char* op, const char* arg, const Tensor& t, bool allow_bfloat16) {
  const bool ok = t.dtype() == DType::Float32 || t.dtype() == DType::Float64 ||
                  (allow_bfloat16 && t.dtype() == DType::BFloat16);
  ISRN_CHECK(ok, "[", op, "] argument '", arg, "' must be float32", allow_bfloat16 ? ", bfloat16" : "",
             " or float64, got ", dtype_name(t.dtype()));
}

void check_dim(const char* op, const char* arg, const Tensor& t, int64_t ndim) {
  ISRN_CHECK(t.dim() == ndim, "[", op, "] argument '", arg, "' must have ", ndim, " dimensions, got shape ",
             shape_str(t.shape()));
}

}  // namespace isrn
