#pragma once
// Tensor: a shared handle {storage, offset, shape, strides, dtype, device, autograd meta}.
// Copying a Tensor copies the handle, not the data (like torch::Tensor). Views share storage.
#include <cstdint>
#include <cstring>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "isrn/core/device.hpp"
#include "isrn/core/dtype.hpp"
#include "isrn/core/error.hpp"
#include "isrn/core/shape.hpp"
#include "isrn/core/storage.hpp"

namespace isrn {

namespace autograd {
class Node;
}

class Tensor;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;
  DType dtype = DType::Float32;

  // Autograd meta. grad_fn is set on results of recorded ops; leaves that require grad get an
  // accumulator node lazily (held weakly here, strongly by the graph, so no cycle forms).
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  std::weak_ptr<autograd::Node> grad_accumulator;
};

// Options for the factories: dtype, device and (for CPU tensors) page-locked memory, chainable:
// `TensorOptions().dtype(DType::Int64)`.
struct TensorOptions {
  DType dtype_ = DType::Float32;
  Device device_ = Device::cpu();
  bool pinned_memory_ = false;
  TensorOptions() = default;
  TensorOptions(DType t) : dtype_(t) {}
  TensorOptions(Device d) : device_(d) {}
  TensorOptions dtype(DType t) const { auto o = *this; o.dtype_ = t; return o; }
  TensorOptions device(Device d) const { auto o = *this; o.device_ = d; return o; }
  // Page-locked host memory, which host-to-device copies read directly (see Tensor::pin_memory).
  TensorOptions pinned_memory(bool pinned) const { auto o = *this; o.pinned_memory_ = pinned; return o; }
};

// A seeded random source. Factories draw on the CPU and copy to the target device, so a seed gives
// the same numbers on every device.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0x853c49e6748fea9bULL) { seed_(seed); }
  // Reseeding also forgets a cached normal() draw, so a seed alone determines every later number.
  void seed_(uint64_t seed) {
    state_ = seed ? seed : 0x9e3779b97f4a7c15ULL;
    has_spare_ = false;
  }
  uint64_t next_u64() {  // splitmix64: tiny, fast, statistically fine for initialization and tests
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal();
  uint64_t state() const { return state_; }
  void set_state(uint64_t s) {
    state_ = s;
    has_spare_ = false;
  }
  // Everything that determines the numbers to come (normal() caches every second draw), for
  // resuming a run exactly.
  struct Snapshot {
    uint64_t state = 0;
    bool has_spare = false;
    double spare = 0.0;
    bool operator==(const Snapshot&) const = default;
  };
  Snapshot snapshot() const { return {state_, has_spare_, spare_}; }
  void restore(const Snapshot& s) {
    state_ = s.state;
    has_spare_ = s.has_spare;
    spare_ = s.spare;
  }

 private:
  uint64_t state_ = 0;
  bool has_spare_ = false;
  double spare_ = 0.0;
};
Generator& default_generator();
void manual_seed(uint64_t seed);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }

  // --- metadata -----------------------------------------------------------------------------
  const Shape& shape() const { return checked().shape; }
  const Shape& strides() const { return checked().strides; }
  int64_t dim() const { return static_cast<int64_t>(checked().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(checked().shape); }
  DType dtype() const { return checked().dtype; }
  Device device() const { return checked().storage->device(); }
  int64_t offset() const { return checked().offset; }
  bool is_contiguous() const;
  size_t element_size() const { return dtype_size(dtype()); }
  const std::shared_ptr<Storage>& storage() const { return checked().storage; }

  // Pointer to the first element (storage + offset). Checks the element type against the dtype.
  template <typename T>
  T* data_ptr() const {
    ISRN_CHECK(dtype() == dtype_v<T>, "[data_ptr] tensor has dtype ", dtype(), ", accessed as ",
               dtype_name(dtype_v<T>));
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;

  // Copies to the host if needed and returns the single element / all elements in logical order.
  template <typename T>
  T item() const;
  template <typename T>
  std::vector<T> to_vector() const;

  // --- views (share storage; differentiable) -------------------------------------------------
  Tensor view(const Shape& shape) const;      // must be expressible without copying
  Tensor reshape(const Shape& shape) const;   // a view when possible, else a copy
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;

  // --- copies and conversion ----------------------------------------------------------------
  Tensor to(Device device) const;
  // With non_blocking, a copy from pinned CPU memory to a CUDA device is enqueued and the call returns
  // at once (as PyTorch's non_blocking=true): the device's later work sees the data, and the storage
  // is kept (its release waits) until the copy has read it, but writing to the source before then is a
  // race. Every other copy completes before returning, as without the flag.
  Tensor to(Device device, bool non_blocking) const;
  Tensor to(DType dtype) const;
  // A copy in page-locked host memory (the tensor itself when it is pinned already). On a machine
  // without a GPU the copy is in ordinary memory and is_pinned() is false.
  Tensor pin_memory() const;
  bool is_pinned() const;
  Tensor clone() const;
  Tensor detach() const;  // shares storage, no autograd history
  // In-place writes: not recorded by autograd; refused on a leaf that requires grad while grad
  // mode is on (optimizers write under NoGradGuard).
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // --- autograd ------------------------------------------------------------------------------
  bool requires_grad() const { return checked().requires_grad; }
  Tensor& set_requires_grad(bool requires_grad);
  Tensor grad() const;
  void set_grad(const Tensor& grad);
  bool is_leaf() const { return checked().grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return checked().grad_fn; }
  // Backpropagates from this tensor. Without `gradient`, the tensor must hold one element.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  std::string str() const;

 private:
  const TensorImpl& checked() const {
    ISRN_CHECK(impl_ != nullptr, "[tensor] operation on an undefined tensor");
    return *impl_;
  }
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// --- factories -------------------------------------------------------------------------------
Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor scalar_tensor(double value, TensorOptions options = {});  // 0-dimensional
// [start, end) in steps of `step`.
Tensor arange(double start, double end, double step = 1.0, TensorOptions options = DType::Int64);
Tensor arange(int64_t end, TensorOptions options = DType::Int64);
// Uniform in [low, high) and standard normal, from a generator (the default one if none given).
Tensor rand(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr,
            double low = 0.0, double high = 1.0);
Tensor randn(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);
// Copies host values into a new tensor of the given shape (the data's type gives the dtype).
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());
template <typename T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{static_cast<int64_t>(values.size())});
}

// --- template definitions --------------------------------------------------------------------
template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(Device::cpu()).contiguous();
  ISRN_CHECK(host.dtype() == dtype_v<T>, "[to_vector] tensor has dtype ", host.dtype(),
             ", asked for ", dtype_name(dtype_v<T>));
  const T* p = host.data_ptr<T>();
  return std::vector<T>(p, p + host.numel());
}

template <typename T>
T Tensor::item() const {
  ISRN_CHECK(numel() == 1, "[item] expects a tensor with one element, got shape ", shape_str(shape()));
  return to_vector<T>()[0];
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  ISRN_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "[from_vector] ",
             values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, TensorOptions(dtype_v<T>));
  if (!values.empty()) {
    if constexpr (std::is_same_v<T, bool>) {
      bool* p = t.data_ptr<bool>();
      for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
    } else {
      std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
    }
  }
  return device.is_cpu() ? t : t.to(device);
}

}  // namespace isrn
