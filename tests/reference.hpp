#pragma once
// Naive host-side references for the op tests: double copies of tensors with row-major index
// arithmetic, written without any isrn op so that they are independent of the code under test.
#include <cstdint>
#include <vector>

#include "test_util.hpp"

namespace isrn::test {

inline std::vector<int64_t> unravel(int64_t flat, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

inline int64_t ravel(const std::vector<int64_t>& idx, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return flat;
}

// A tensor's values on the host in row-major order, addressable by multi-index.
struct HostTensor {
  Shape shape;
  std::vector<double> data;

  explicit HostTensor(const Tensor& t) : shape(t.shape()), data(values(t)) {}
  HostTensor(Shape s, double fill) : shape(std::move(s)), data(static_cast<size_t>(shape_numel(shape)), fill) {}

  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  double& operator()(const std::vector<int64_t>& idx) { return data[static_cast<size_t>(ravel(idx, shape))]; }
  double operator()(const std::vector<int64_t>& idx) const { return data[static_cast<size_t>(ravel(idx, shape))]; }
  Tensor tensor(DType dtype = DType::Float64, Device device = Device::cpu()) const {
    return from_vector(data, shape).to(dtype).to(device);
  }
};

// Uniform random integers in [lo, hi) as an index tensor of the given dtype.
inline Tensor random_indices(const Shape& shape, int64_t lo, int64_t hi, uint64_t seed, DType dtype,
                             Device device = Device::cpu()) {
  Generator gen(seed);
  std::vector<int64_t> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = lo + static_cast<int64_t>(gen.uniform() * static_cast<double>(hi - lo));
  return from_vector(v, shape).to(dtype).to(device);
}

// The same values as x with a non-contiguous layout: every element sits at an even position of a
// buffer twice as long in the last dimension (no autograd; for forward checks).
inline Tensor spread(const Tensor& x) {
  if (x.dim() == 0) return x;
  Shape wide = x.shape();
  wide.back() *= 2;
  Tensor buffer = zeros(wide, TensorOptions(x.dtype()).device(x.device()));
  Tensor view = buffer.slice(-1, 0, wide.back(), 2);
  view.copy_(x.detach());
  return view;
}

}  // namespace isrn::test
