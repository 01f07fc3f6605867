// Indexing: index_select / index_add along one dim, gather / scatter_add, and the flat indices of
// a mask. The add kernels use atomicAdd, so repeated indices sum in an unspecified order.
#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>

#include "cuda/allocator.hpp"
#include "cuda/elementwise.cuh"

namespace isrn::cuda {

namespace {

// t's strides with `dim` zeroed: the kernels add index * (t's stride along dim) themselves.
Shape strides_without_dim(const Tensor& t, int64_t dim) {
  Shape s = t.strides();
  if (dim < static_cast<int64_t>(s.size())) s[dim] = 0;
  return s;
}

int64_t stride_along(const Tensor& t, int64_t dim) { return dim < t.dim() ? t.stride(dim) : 0; }

// Pseudo-operand strides that walk a 1-D index (element stride `stride`) along `dim` of a rank-nd shape.
Shape index_walk(int64_t nd, int64_t dim, int64_t stride) {
  Shape s(nd, 0);
  if (dim < nd) s[dim] = stride;
  return s;
}

template <typename Fn>
void dispatch_index(const Tensor& index, const char* op, Fn&& fn) {
  switch (index.dtype()) {
    case DType::Int64: fn(int64_t{}); break;
    case DType::Int32: fn(int32_t{}); break;
    default: ISRN_CHECK(false, "[", op, "] index must be int64 or int32, got ", dtype_name(index.dtype()));
  }
}

template <typename T, typename I>
struct IndexSelectFn {  // operands: out, x (dim zeroed), index walk
  T* out;
  const T* x;
  const I* index;
  int64_t x_dim_stride;
  __device__ void operator()(const int64_t (&off)[3]) const {
    out[off[0]] = x[off[1] + static_cast<int64_t>(index[off[2]]) * x_dim_stride];
  }
};

template <typename T, typename I>
struct IndexAddFn {  // operands: grad_out, grad_x (dim zeroed), index walk
  T* grad_x;
  const T* grad_out;
  const I* index;
  int64_t gx_dim_stride;
  __device__ void operator()(const int64_t (&off)[3]) const {
    atomicAdd(grad_x + off[1] + static_cast<int64_t>(index[off[2]]) * gx_dim_stride, grad_out[off[0]]);
  }
};

template <typename T, typename I>
struct GatherFn {  // operands: out, index, x (dim zeroed)
  T* out;
  const I* index;
  const T* x;
  int64_t x_dim_stride;
  __device__ void operator()(const int64_t (&off)[3]) const {
    out[off[0]] = x[off[2] + static_cast<int64_t>(index[off[1]]) * x_dim_stride];
  }
};

template <typename T, typename I>
struct ScatterAddFn {  // operands: grad_out, index, grad_x (dim zeroed)
  T* grad_x;
  const I* index;
  const T* grad_out;
  int64_t gx_dim_stride;
  __device__ void operator()(const int64_t (&off)[3]) const {
    atomicAdd(grad_x + off[2] + static_cast<int64_t>(index[off[1]]) * gx_dim_stride, grad_out[off[0]]);
  }
};

}  // namespace

void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) {
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  const int64_t index_stride = index.dim() > 0 ? index.stride(0) : 0;
  dispatch_all(x.dtype(), "index_select", [&](auto tag) {
    using T = decltype(tag);
    dispatch_index(index, "index_select", [&](auto index_tag) {
      using I = decltype(index_tag);
      const IndexSelectFn<T, I> fn{static_cast<T*>(out.raw_data()), static_cast<const T*>(x.raw_data()),
                                   static_cast<const I*>(index.raw_data()), stride_along(x, dim)};
      launch_elementwise<3>("index_select_kernel", out.shape(),
                            {out.strides(), strides_without_dim(x, dim), index_walk(out.dim(), dim, index_stride)}, fn);
    });
  });
}

void index_add(const Tensor& grad_out, int64_t dim, const Tensor& index, Tensor& grad_x) {
  if (grad_out.numel() == 0) return;
  DeviceGuard guard(grad_x.device().index);
  const int64_t index_stride = index.dim() > 0 ? index.stride(0) : 0;
  dispatch_floating(grad_x.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    dispatch_index(index, "index_add", [&](auto index_tag) {
      using I = decltype(index_tag);
      const IndexAddFn<T, I> fn{static_cast<T*>(grad_x.raw_data()), static_cast<const T*>(grad_out.raw_data()),
                                static_cast<const I*>(index.raw_data()), stride_along(grad_x, dim)};
      launch_elementwise<3>("index_add_kernel", grad_out.shape(),
                            {grad_out.strides(), strides_without_dim(grad_x, dim),
                             index_walk(grad_out.dim(), dim, index_stride)},
                            fn);
    });
  });
}

void gather(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) {
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  dispatch_all(x.dtype(), "gather", [&](auto tag) {
    using T = decltype(tag);
    dispatch_index(index, "gather", [&](auto index_tag) {
      using I = decltype(index_tag);
      const GatherFn<T, I> fn{static_cast<T*>(out.raw_data()), static_cast<const I*>(index.raw_data()),
                              static_cast<const T*>(x.raw_data()), stride_along(x, dim)};
      launch_elementwise<3>("gather_kernel", index.shape(), {out.strides(), index.strides(), strides_without_dim(x, dim)},
                            fn);
    });
  });
}

void scatter_add(const Tensor& grad_out, int64_t dim, const Tensor& index, Tensor& grad_x) {
  if (index.numel() == 0) return;
  DeviceGuard guard(grad_x.device().index);
  dispatch_floating(grad_x.dtype(), "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    dispatch_index(index, "scatter_add", [&](auto index_tag) {
      using I = decltype(index_tag);
      const ScatterAddFn<T, I> fn{static_cast<T*>(grad_x.raw_data()), static_cast<const I*>(index.raw_data()),
                                  static_cast<const T*>(grad_out.raw_data()), stride_along(grad_x, dim)};
      launch_elementwise<3>("scatter_add_kernel", index.shape(),
                            {grad_out.strides(), index.strides(), strides_without_dim(grad_x, dim)}, fn);
    });
  });
}

Tensor nonzero_flat(const Tensor& mask) {
  const Device device = mask.device();
  const TensorOptions int64_on_device = TensorOptions(DType::Int64).device(device);
  const int64_t n = mask.numel();
  if (n == 0) return empty({0}, int64_on_device);
  DeviceGuard guard(device.index);
  const cudaStream_t stream = current_stream();
  Tensor selected = empty({n}, int64_on_device);
  Tensor count = empty({1}, int64_on_device);
  const thrust::counting_iterator<int64_t> positions(0);
  const bool* flags = mask.data_ptr<bool>();
  int64_t* out = selected.data_ptr<int64_t>();
  int64_t* found = count.data_ptr<int64_t>();
  size_t bytes = 0;
  ISRN_CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, bytes, positions, flags, out, found, n, stream));
  Tensor temp = empty({static_cast<int64_t>(bytes)}, TensorOptions(DType::UInt8).device(device));
  ISRN_CUDA_CHECK(cub::DeviceSelect::Flagged(temp.raw_data(), bytes, positions, flags, out, found, n, stream));
  const int64_t kept = count.item<int64_t>();  // the size of the result: one synchronizing read
  if (kept == n) return selected;
  Tensor result = empty({kept}, int64_on_device);
  if (kept > 0)
    ISRN_CUDA_CHECK(cudaMemcpyAsync(result.raw_data(), out, kept * sizeof(int64_t), cudaMemcpyDeviceToDevice, stream));
  return result;
}

}  // namespace isrn::cuda
