// Indexing: index_select / index_add along one dim, gather / scatter_add, and the flat indices of
// a mask. The add kernels are deterministic: each destination adds the values aimed at it in
// ascending source order (the CPU's order), found by sorting (destination, source) pairs, never with
// atomics, whose order changes from run to run.
#include <cub/device/device_radix_sort.cuh>
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
struct GatherFn {  // operands: out, index, x (dim zeroed)
  T* out;
  const I* index;
  const T* x;
  int64_t x_dim_stride;
  __device__ void operator()(const int64_t (&off)[3]) const {
    out[off[0]] = x[off[2] + static_cast<int64_t>(index[off[1]]) * x_dim_stride];
  }
};

// The sources of each destination, in ascending source order: (destination key, source) pairs sorted
// by key with a stable radix sort. Keys are destinations in [0, limit); an index out of range gets the
// key `limit`, which no destination searches for (the CPU twins refuse such indices; here they add
// nothing rather than write out of bounds).
using Key = unsigned long long;

struct SortedSources {
  Tensor keys;     // ascending
  Tensor sources;  // per key, what the apply kernel reads: a source position or an element offset
};

SortedSources sort_by_destination(const Tensor& keys, const Tensor& sources, int64_t limit) {
  const Device device = keys.device();
  const int64_t n = keys.numel();
  const TensorOptions int64_on_device = TensorOptions(DType::Int64).device(device);
  SortedSources sorted{empty({n}, int64_on_device), empty({n}, int64_on_device)};
  int end_bit = 1;
  while (end_bit < 63 && (int64_t{1} << end_bit) <= limit) ++end_bit;  // keys lie in [0, limit]
  const Key* keys_in = reinterpret_cast<const Key*>(keys.raw_data());
  Key* keys_out = reinterpret_cast<Key*>(sorted.keys.raw_data());
  const int64_t* sources_in = sources.data_ptr<int64_t>();
  int64_t* sources_out = sorted.sources.data_ptr<int64_t>();
  size_t bytes = 0;
  ISRN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in, keys_out, sources_in, sources_out, n, 0,
                                                  end_bit, current_stream()));
  Tensor temp = empty({static_cast<int64_t>(bytes)}, TensorOptions(DType::UInt8).device(device));
  ISRN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), bytes, keys_in, keys_out, sources_in, sources_out,
                                                  n, 0, end_bit, current_stream()));
  return sorted;
}

// The first of n ascending keys that is not below `key`.
__device__ __forceinline__ int64_t lower_bound(const Key* keys, int64_t n, Key key) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

template <typename I>
__device__ __forceinline__ Key destination_key(I value, int64_t size, int64_t base, int64_t stride, int64_t limit) {
  const int64_t v = static_cast<int64_t>(value);
  return static_cast<Key>(v >= 0 && v < size ? base + v * stride : limit);
}

template <typename I>
struct IndexAddKeysFn {  // operands over [n]: position k, index element
  Key* keys;
  int64_t* sources;
  const I* index;
  int64_t size;  // grad_x's extent along dim
  __device__ void operator()(const int64_t (&off)[2]) const {
    keys[off[0]] = destination_key(index[off[1]], size, 0, 1, size);
    sources[off[0]] = off[0];
  }
};

template <typename T>
struct IndexAddApplyFn {  // operands over grad_x's shape: grad_x, grad_out (dim zeroed), coordinate along dim
  T* grad_x;
  const T* grad_out;
  const Key* keys;
  const int64_t* sources;
  int64_t n, go_dim_stride;
  __device__ void operator()(const int64_t (&off)[3]) const {
    const Key j = static_cast<Key>(off[2]);
    T acc = grad_x[off[0]];
    for (int64_t t = lower_bound(keys, n, j); t < n && keys[t] == j; ++t)
      acc += grad_out[off[1] + sources[t] * go_dim_stride];
    grad_x[off[0]] = acc;
  }
};

template <typename I>
struct ScatterAddKeysFn {  // operands over index's shape: position, index element, grad_out element,
                           // grad_x's dense offset with dim zeroed
  Key* keys;
  int64_t* sources;
  const I* index;
  int64_t size, gx_dim_stride, limit;
  __device__ void operator()(const int64_t (&off)[4]) const {
    keys[off[0]] = destination_key(index[off[1]], size, off[3], gx_dim_stride, limit);
    sources[off[0]] = off[2];  // where the apply kernel reads grad_out
  }
};

template <typename T>
struct ScatterAddApplyFn {  // operands over grad_x's shape: grad_x, grad_x's dense offset
  T* grad_x;
  const T* grad_out;
  const Key* keys;
  const int64_t* sources;
  int64_t n;
  __device__ void operator()(const int64_t (&off)[2]) const {
    const Key e = static_cast<Key>(off[1]);
    T acc = grad_x[off[0]];
    for (int64_t t = lower_bound(keys, n, e); t < n && keys[t] == e; ++t) acc += grad_out[sources[t]];
    grad_x[off[0]] = acc;
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
  const int64_t n = index.numel();
  if (grad_out.numel() == 0 || n == 0 || grad_x.numel() == 0) return;
  DeviceGuard guard(grad_x.device().index);
  const TensorOptions int64_on_device = TensorOptions(DType::Int64).device(grad_x.device());
  const int64_t size = dim < grad_x.dim() ? grad_x.size(dim) : 1;
  Tensor keys = empty({n}, int64_on_device), sources = empty({n}, int64_on_device);
  dispatch_index(index, "index_add", [&](auto index_tag) {
    using I = decltype(index_tag);
    const IndexAddKeysFn<I> fn{reinterpret_cast<Key*>(keys.raw_data()), sources.data_ptr<int64_t>(),
                               static_cast<const I*>(index.raw_data()), size};
    launch_elementwise<2>("index_add_keys_kernel", Shape{n}, {Shape{1}, Shape{index.dim() > 0 ? index.stride(0) : 0}},
                          fn);
  });
  const SortedSources sorted = sort_by_destination(keys, sources, size);
  dispatch_floating(grad_x.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    const IndexAddApplyFn<T> fn{grad_x.data_ptr<T>(), static_cast<const T*>(grad_out.raw_data()),
                                reinterpret_cast<const Key*>(sorted.keys.raw_data()),
                                sorted.sources.data_ptr<int64_t>(), n, stride_along(grad_out, dim)};
    launch_elementwise<3>("index_add_kernel", grad_x.shape(),
                          {grad_x.strides(), strides_without_dim(grad_out, dim), index_walk(grad_x.dim(), dim, 1)}, fn);
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
  const int64_t n = index.numel();
  if (n == 0 || grad_x.numel() == 0) return;
  DeviceGuard guard(grad_x.device().index);
  const TensorOptions int64_on_device = TensorOptions(DType::Int64).device(grad_x.device());
  const Shape dense = contiguous_strides(grad_x.shape());  // destinations are numbered densely
  Shape dense_without_dim = dense;
  dense_without_dim[dim] = 0;
  Tensor keys = empty({n}, int64_on_device), sources = empty({n}, int64_on_device);
  dispatch_index(index, "scatter_add", [&](auto index_tag) {
    using I = decltype(index_tag);
    const ScatterAddKeysFn<I> fn{reinterpret_cast<Key*>(keys.raw_data()), sources.data_ptr<int64_t>(),
                                 static_cast<const I*>(index.raw_data()), grad_x.size(dim), dense[dim],
                                 grad_x.numel()};
    launch_elementwise<4>("scatter_add_keys_kernel", index.shape(),
                          {contiguous_strides(index.shape()), index.strides(), grad_out.strides(), dense_without_dim},
                          fn);
  });
  const SortedSources sorted = sort_by_destination(keys, sources, grad_x.numel());
  dispatch_floating(grad_x.dtype(), "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    const ScatterAddApplyFn<T> fn{grad_x.data_ptr<T>(), static_cast<const T*>(grad_out.raw_data()),
                                  reinterpret_cast<const Key*>(sorted.keys.raw_data()),
                                  sorted.sources.data_ptr<int64_t>(), n};
    launch_elementwise<2>("scatter_add_kernel", grad_x.shape(), {grad_x.strides(), dense}, fn);
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
