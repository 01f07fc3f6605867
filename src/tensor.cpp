// Tensor metadata, factories, views (with their gradients), copies and printing.
#include "isrn/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "backend.hpp"
#include "isrn/autograd/grad_mode.hpp"
#include "isrn/autograd/node.hpp"
#include "isrn/ops/elementwise.hpp"

namespace isrn {

using autograd::record;

namespace {

void check_rank(const Shape& shape, const char* op) {
  ISRN_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), "[", op, "] tensors have at most ", kMaxDims,
             " dimensions, got shape ", shape_str(shape));
  for (int64_t s : shape)
    ISRN_CHECK(s >= 0, "[", op, "] negative size in shape ", shape_str(shape));
}

// A new handle onto the same storage with other geometry (no autograd meta).
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// The strides that let `shape` view the (possibly strided) tensor without a copy, if any
// (the algorithm of PyTorch's computeStride).
std::optional<Shape> view_strides(const Shape& old_shape, const Shape& old_strides, const Shape& shape) {
  Shape strides(shape.size());
  if (shape_numel(old_shape) == 0 || old_shape.empty()) return contiguous_strides(shape);
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return strides;
}

Shape infer_shape(const Shape& requested, int64_t numel, const char* op, const Shape& from) {
  Shape shape = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      ISRN_CHECK(infer < 0, "[", op, "] only one dimension can be -1, got ", shape_str(requested));
      infer = static_cast<int64_t>(i);
    } else {
      ISRN_CHECK(shape[i] >= 0, "[", op, "] invalid size in ", shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    ISRN_CHECK(known > 0 && numel % known == 0, "[", op, "] cannot infer -1 in ", shape_str(requested),
               " for ", numel, " elements");
    shape[infer] = numel / known;
  }
  ISRN_CHECK(shape_numel(shape) == numel, "[", op, "] shape ", shape_str(requested), " is invalid for ",
             "a tensor of shape ", shape_str(from), " (", numel, " elements)");
  check_rank(shape, op);
  return shape;
}

}  // namespace

// --- metadata ------------------------------------------------------------------------------------

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  const auto& sh = shape();
  const auto& st = strides();
  for (size_t i = sh.size(); i-- > 0;) {
    if (sh[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(storage()->data()) + offset() * static_cast<int64_t>(element_size());
}

// --- factories -----------------------------------------------------------------------------------

Tensor empty(const Shape& shape, TensorOptions options) {
  check_rank(shape, "empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(options.dtype_), options.device_,
                                            options.pinned_memory_ ? HostMemory::Pinned : HostMemory::Pageable);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = options.dtype_;
  return Tensor(std::move(impl));
}

Tensor full(const Shape& shape, double value, TensorOptions options) {
  Tensor t = empty(shape, options);
  ISRN_DISPATCH(t.device(), fill, t, value);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions options) { return full(shape, 0.0, options); }
Tensor ones(const Shape& shape, TensorOptions options) { return full(shape, 1.0, options); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor full_like(const Tensor& t, double value) {
  return full(t.shape(), value, TensorOptions(t.dtype()).device(t.device()));
}
Tensor scalar_tensor(double value, TensorOptions options) { return full({}, value, options); }

Tensor arange(double start, double end, double step, TensorOptions options) {
  ISRN_CHECK(step != 0.0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
             "[arange] needs finite bounds and a non-zero step, got start=", start, " end=", end,
             " step=", step);
  const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  Tensor host = empty({n}, TensorOptions(DType::Float64));
  double* p = host.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = start + static_cast<double>(i) * step;
  return host.to(options.dtype_).to(options.device_);
}
Tensor arange(int64_t end, TensorOptions options) { return arange(0.0, static_cast<double>(end), 1.0, options); }

Tensor rand(const Shape& shape, TensorOptions options, Generator* gen, double low, double high) {
  Generator& g = gen ? *gen : default_generator();
  Tensor host = empty(shape, TensorOptions(DType::Float64));
  double* p = host.data_ptr<double>();
  for (int64_t i = 0, n = host.numel(); i < n; ++i) p[i] = low + (high - low) * g.uniform();
  return host.to(options.dtype_).to(options.device_);
}

Tensor randn(const Shape& shape, TensorOptions options, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  Tensor host = empty(shape, TensorOptions(DType::Float64));
  double* p = host.data_ptr<double>();
  for (int64_t i = 0, n = host.numel(); i < n; ++i) p[i] = g.normal();
  return host.to(options.dtype_).to(options.device_);
}

// --- views -----------------------------------------------------------------------------------------

Tensor Tensor::view(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), "view", this->shape());
  auto strides = view_strides(this->shape(), this->strides(), shape);
  ISRN_CHECK(strides.has_value(), "[view] cannot view a tensor of shape ", shape_str(this->shape()),
             " with strides ", shape_str(this->strides()), " as ", shape_str(shape),
             ": its memory is not laid out for it (use reshape, which copies)");
  const Shape in_shape = this->shape();
  return record(make_view(*this, shape, *strides, offset()), "view", {*this},
                [in_shape](const Tensor& g) { return std::vector<Tensor>{g.reshape(in_shape)}; });
}

Tensor Tensor::reshape(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), "reshape", this->shape());
  if (view_strides(this->shape(), this->strides(), shape)) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  const int64_t n = dim();
  ISRN_CHECK(static_cast<int64_t>(dims.size()) == n, "[permute] expects ", n, " dims for shape ",
             shape_str(shape()), ", got ", dims.size());
  Shape shape(n), strides(n);
  std::vector<int64_t> inverse(n, -1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t d = wrap_dim(dims[i], n, "permute");
    ISRN_CHECK(inverse[d] < 0, "[permute] dim ", d, " appears twice");
    inverse[d] = i;
    shape[i] = this->shape()[d];
    strides[i] = this->strides()[d];
  }
  return record(make_view(*this, shape, strides, offset()), "permute", {*this},
                [inverse](const Tensor& g) { return std::vector<Tensor>{g.permute(inverse)}; });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(d0, dim(), "transpose")], dims[wrap_dim(d1, dim(), "transpose")]);
  return permute(dims);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  ISRN_CHECK(step >= 1, "[slice] step must be positive, got ", step);
  const int64_t len = shape()[d];
  if (start < 0) start += len;
  if (end < 0) end += len;
  start = std::clamp<int64_t>(start, 0, len);
  end = std::clamp<int64_t>(end, start, len);
  Shape shape = this->shape(), strides = this->strides();
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  const Shape in_shape = this->shape();
  const TensorOptions opts = TensorOptions(dtype()).device(device());
  return record(make_view(*this, shape, strides, offset() + start * this->strides()[d]), "slice", {*this},
                [in_shape, opts, d, start, end, step](const Tensor& g) {
                  Tensor gx = zeros(in_shape, opts);
                  gx.slice(d, start, end, step).copy_(g);
                  return std::vector<Tensor>{gx};
                });
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  const int64_t len = shape()[d];
  if (start < 0) start += len;
  ISRN_CHECK(start >= 0 && length >= 0 && start + length <= len, "[narrow] range [", start, ", ",
             start + length, ") is outside dimension ", d, " of size ", len);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  const int64_t len = shape()[d];
  ISRN_CHECK(index >= -len && index < len, "[select] index ", index, " is out of range for dimension ", d,
             " of size ", len);
  if (index < 0) index += len;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& requested) const {
  const int64_t n = static_cast<int64_t>(requested.size());
  ISRN_CHECK(n >= dim(), "[expand] cannot expand shape ", shape_str(shape()), " to fewer dimensions ",
             shape_str(requested));
  check_rank(Shape(requested.size(), 1), "expand");
  Shape shape(n), strides(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t src = i - (n - dim());
    const int64_t want = requested[i];
    if (src < 0) {
      ISRN_CHECK(want >= 0, "[expand] -1 is not allowed for a new leading dimension");
      shape[i] = want;
      continue;
    }
    const int64_t have = this->shape()[src];
    if (want == -1 || want == have) {
      shape[i] = have;
      strides[i] = this->strides()[src];
    } else {
      ISRN_CHECK(have == 1, "[expand] cannot expand dimension ", src, " of size ", have, " to ", want,
                 " (shape ", shape_str(this->shape()), " to ", shape_str(requested), ")");
      shape[i] = want;
    }
  }
  const Shape in_shape = this->shape();
  return record(make_view(*this, shape, strides, offset()), "expand", {*this},
                [in_shape](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in_shape)}; });
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape shape = this->shape();
  shape.erase(shape.begin() + d);
  return reshape(shape);
}

Tensor Tensor::squeeze() const {
  Shape shape;
  for (int64_t s : this->shape())
    if (s != 1) shape.push_back(s);
  return reshape(shape);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape shape = this->shape();
  shape.insert(shape.begin() + d, 1);
  return reshape(shape);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim, dim(), "flatten");
  end_dim = wrap_dim(end_dim, dim(), "flatten");
  ISRN_CHECK(start_dim <= end_dim, "[flatten] start_dim ", start_dim, " is after end_dim ", end_dim);
  Shape shape(this->shape().begin(), this->shape().begin() + start_dim);
  int64_t merged = 1;
  for (int64_t i = start_dim; i <= end_dim; ++i) merged *= this->shape()[i];
  shape.push_back(merged);
  shape.insert(shape.end(), this->shape().begin() + end_dim + 1, this->shape().end());
  return reshape(shape);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

// --- copies ----------------------------------------------------------------------------------------

namespace {
// A contiguous copy of `src` with another dtype and/or device, no autograd. `out_options` may ask for
// pinned memory; `non_blocking` is Tensor::to's.
Tensor copy_to(const Tensor& src, DType dtype, Device device, TensorOptions out_options = {},
               bool non_blocking = false) {
  Tensor out = empty(src.shape(), out_options.dtype(dtype).device(device));
  if (src.numel() == 0) return out;
  if (src.device() == device) {
    ISRN_DISPATCH(device, copy, src, out);
    return out;
  }
  // Across devices: make the source contiguous with the target dtype on its own device, then move bytes.
  Tensor staged = src;
  if (!src.is_contiguous() || src.dtype() != dtype) {
    staged = empty(src.shape(), TensorOptions(dtype).device(src.device()));
    ISRN_DISPATCH(src.device(), copy, src, staged);
  }
  const size_t nbytes = out.numel() * dtype_size(dtype);
  if (non_blocking && device.is_cuda() && staged.storage()->pinned()) {
    staged.storage()->copy_to_device_async(out.raw_data(), device, staged.raw_data(), nbytes);
  } else {
    copy_bytes(out.raw_data(), device, staged.raw_data(), src.device(), nbytes);
  }
  return out;
}
}  // namespace

Tensor Tensor::clone() const {
  return record(copy_to(*this, dtype(), device()), "clone", {*this},
                [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor Tensor::to(Device target) const { return to(target, /*non_blocking=*/false); }

Tensor Tensor::to(Device target, bool non_blocking) const {
  if (target == device()) return *this;
  const Device from = device();
  return record(copy_to(*this, dtype(), target, {}, non_blocking), "to_device", {*this},
                [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
}

bool Tensor::is_pinned() const { return storage()->pinned(); }

Tensor Tensor::pin_memory() const {
  ISRN_CHECK(device().is_cpu(), "[pin_memory] pinned memory is host memory; the tensor is on ", device());
  if (is_pinned()) return *this;
  return record(copy_to(*this, dtype(), device(), TensorOptions().pinned_memory(true)), "pin_memory", {*this},
                [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  const DType from = dtype();
  Tensor out = copy_to(*this, target, device());
  if (!is_floating(target) || !is_floating(from)) return out;  // no gradient through integer casts
  return record(out, "to_dtype", {*this}, [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), strides(), offset());
}

Tensor& Tensor::copy_(const Tensor& src) {
  ISRN_CHECK(!(requires_grad() && is_leaf() && GradMode::is_enabled()),
             "[copy_] in-place write to a leaf that requires grad (wrap it in NoGradGuard)");
  ISRN_CHECK(src.device() == device(), "[copy_] source is on ", src.device(), ", destination on ", device());
  Tensor source = src;
  if (src.shape() != shape()) {
    ISRN_CHECK(broadcast_shapes(src.shape(), shape(), "copy_") == shape(), "[copy_] cannot copy shape ",
               shape_str(src.shape()), " into ", shape_str(shape()));
    source = src.detach().expand(shape());
  }
  if (numel() > 0) ISRN_DISPATCH(device(), copy, source, *this);
  return *this;
}

Tensor& Tensor::fill_(double value) {
  ISRN_CHECK(!(requires_grad() && is_leaf() && GradMode::is_enabled()),
             "[fill_] in-place write to a leaf that requires grad (wrap it in NoGradGuard)");
  if (numel() > 0) ISRN_DISPATCH(device(), fill, *this, value);
  return *this;
}

// --- autograd accessors -------------------------------------------------------------------------------

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  ISRN_CHECK(is_leaf() || requires_grad, "[set_requires_grad] only leaves can stop requiring grad; use detach()");
  ISRN_CHECK(!requires_grad || is_floating(dtype()), "[set_requires_grad] only floating tensors can require "
             "grad, this one is ", dtype_name(dtype()));
  impl_->requires_grad = requires_grad;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& g = checked().grad;
  return g ? Tensor(g) : Tensor();
}

void Tensor::set_grad(const Tensor& grad) {
  if (grad.defined())
    ISRN_CHECK(grad.shape() == shape() && grad.dtype() == dtype() && grad.device() == device(),
               "[set_grad] gradient ", shape_str(grad.shape()), " ", grad.dtype(), " on ", grad.device(),
               " does not match tensor ", shape_str(shape()), " ", dtype(), " on ", device());
  impl_->grad = grad.defined() ? grad.impl() : nullptr;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  Tensor g = gradient;
  if (!g.defined()) {
    ISRN_CHECK(numel() == 1, "[backward] a gradient must be given for a non-scalar output of shape ",
               shape_str(shape()));
    g = ones_like(*this);
  }
  autograd::run_backward({*this}, {g}, retain_graph);
}

// --- printing ------------------------------------------------------------------------------------------

std::string Tensor::str() const {
  std::ostringstream os;
  if (!defined()) return "tensor(undefined)";
  const Tensor host = to(Device::cpu()).contiguous().to(DType::Float64);
  const double* p = host.data_ptr<double>();
  const Shape& sh = shape();
  const int64_t n = numel();
  const bool summarize = n > 1000;
  const bool integral = !is_floating(dtype());
  os << "tensor(";
  std::function<void(int64_t, int64_t)> rec = [&](int64_t d, int64_t base) {
    if (d == static_cast<int64_t>(sh.size())) {
      if (dtype() == DType::Bool) os << (p[base] != 0 ? "true" : "false");
      else if (integral) os << static_cast<int64_t>(p[base]);
      else os << std::setprecision(6) << p[base];
      return;
    }
    const int64_t len = sh[d];
    const int64_t inner = shape_numel(Shape(sh.begin() + d + 1, sh.end()));
    os << "[";
    for (int64_t i = 0; i < len; ++i) {
      if (summarize && len > 6 && i == 3) {
        os << "..., ";
        i = len - 3;
      }
      rec(d + 1, base + i * inner);
      if (i + 1 < len) os << (d + 1 == static_cast<int64_t>(sh.size()) ? ", " : ",\n" + std::string(8 + d, ' '));
    }
    os << "]";
  };
  rec(0, 0);
  os << ", shape=" << shape_str(sh) << ", dtype=" << dtype() << ", device=" << device();
  if (requires_grad()) os << ", requires_grad";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace isrn
