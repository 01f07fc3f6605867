// Row sorts and top-k with CUB's radix sort on (key, column index) pairs.
//
// Radix sort is stable, so equal keys keep ascending column order in both directions: the CPU's
// tie rule. It orders floats by bit pattern, which would put -0 before +0 and negative NaNs first;
// the keys are therefore a canonical copy (−0 → +0, every NaN → +NaN, so NaN is the largest as in
// PyTorch), and the output values are gathered from x by the sorted indices, bit-exact.
// top-k is a sort of the whole row followed by taking the first k columns.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <climits>
#include <limits>

#include "cuda/allocator.hpp"
#include "cuda/common.cuh"

namespace isrn::cuda {

namespace {

constexpr int kBlock = 256;

// bool sorts as its byte.
template <typename T>
using SortKey = std::conditional_t<std::is_same_v<T, bool>, uint8_t, T>;

template <typename T>
__global__ void canonical_keys_kernel(int64_t n, const T* __restrict__ x, T* __restrict__ keys) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    const T v = x[i];
    keys[i] = v != v ? std::numeric_limits<T>::quiet_NaN() : (v == T(0) ? T(0) : v);
  }
}

__global__ void column_index_kernel(int64_t total, int64_t n, int64_t* __restrict__ columns) {
  ISRN_CUDA_KERNEL_LOOP(i, total) columns[i] = i % n;
}

__global__ void row_offsets_kernel(int64_t m, int n, int* __restrict__ offsets) {
  ISRN_CUDA_KERNEL_LOOP(r, m + 1) offsets[r] = static_cast<int>(r) * n;
}

// values[r, j] = x[r, order[r, j]], indices[r, j] = order[r, j] for j < k (indices may be order itself).
template <typename T>
__global__ void take_sorted_kernel(int64_t m, int64_t n, int64_t k, const T* __restrict__ x,
                                   const int64_t* order, T* __restrict__ values, int64_t* indices) {
  ISRN_CUDA_KERNEL_LOOP(i, m * k) {
    const int64_t r = i / k, j = i % k;
    const int64_t column = order[r * n + j];
    values[i] = x[r * n + column];
    if (indices != order) indices[i] = column;
  }
}

Tensor scratch(int64_t count, DType dtype, Device device) { return empty({count}, TensorOptions(dtype).device(device)); }

// Sorts the rows of x and writes the first k columns of the result.
template <typename T>
void sort_rows_take(const Tensor& x, bool descending, int64_t k, Tensor& values, Tensor& indices, const char* op) {
  using Key = SortKey<T>;
  const int64_t m = x.size(0), n = x.size(1), total = m * n;
  ISRN_CHECK(total <= INT_MAX, "[", op, "] sorts at most ", INT_MAX, " elements per call on CUDA, got ", total,
             " (shape ", shape_str(x.shape()), ")");
  const Device device = x.device();
  const cudaStream_t stream = current_stream();

  const Key* keys_in = reinterpret_cast<const Key*>(x.raw_data());
  Tensor canonical;
  if constexpr (std::is_floating_point_v<T>) {
    canonical = scratch(total, x.dtype(), device);
    canonical_keys_kernel<T><<<grid_for(total, kBlock), kBlock, 0, stream>>>(total, x.data_ptr<T>(),
                                                                             canonical.data_ptr<T>());
    ISRN_CUDA_LAUNCH_CHECK("canonical_keys_kernel");
    keys_in = canonical.data_ptr<T>();
  }
  Tensor columns = scratch(total, DType::Int64, device);
  column_index_kernel<<<grid_for(total, kBlock), kBlock, 0, stream>>>(total, n, columns.data_ptr<int64_t>());
  ISRN_CUDA_LAUNCH_CHECK("column_index_kernel");

  Tensor keys_out = scratch(total * static_cast<int64_t>(sizeof(Key)), DType::UInt8, device);
  // A full sort writes the order straight into the output indices.
  Tensor order = k == n ? indices : scratch(total, DType::Int64, device);
  Key* pk = reinterpret_cast<Key*>(keys_out.raw_data());
  const int64_t* pc = columns.data_ptr<int64_t>();
  int64_t* po = order.data_ptr<int64_t>();
  const int items = static_cast<int>(total);

  if (m == 1) {  // one row: the device-wide sort uses the whole GPU, the segmented one a block per row
    auto run = [&](void* temp, size_t& bytes) {
      return descending ? cub::DeviceRadixSort::SortPairsDescending(temp, bytes, keys_in, pk, pc, po, items, 0,
                                                                   int(sizeof(Key) * 8), stream)
                        : cub::DeviceRadixSort::SortPairs(temp, bytes, keys_in, pk, pc, po, items, 0,
                                                          int(sizeof(Key) * 8), stream);
    };
    size_t bytes = 0;
    ISRN_CUDA_CHECK(run(nullptr, bytes));
    Tensor temp = scratch(static_cast<int64_t>(bytes), DType::UInt8, device);
    ISRN_CUDA_CHECK(run(temp.raw_data(), bytes));
  } else {
    Tensor offsets = scratch(m + 1, DType::Int32, device);
    int* poff = offsets.data_ptr<int32_t>();
    row_offsets_kernel<<<grid_for(m + 1, kBlock), kBlock, 0, stream>>>(m, static_cast<int>(n), poff);
    ISRN_CUDA_LAUNCH_CHECK("row_offsets_kernel");
    auto run = [&](void* temp, size_t& bytes) {
      return descending
                 ? cub::DeviceSegmentedRadixSort::SortPairsDescending(temp, bytes, keys_in, pk, pc, po, items,
                                                                      static_cast<int>(m), poff, poff + 1, 0,
                                                                      int(sizeof(Key) * 8), stream)
                 : cub::DeviceSegmentedRadixSort::SortPairs(temp, bytes, keys_in, pk, pc, po, items,
                                                            static_cast<int>(m), poff, poff + 1, 0,
                                                            int(sizeof(Key) * 8), stream);
    };
    size_t bytes = 0;
    ISRN_CUDA_CHECK(run(nullptr, bytes));
    Tensor temp = scratch(static_cast<int64_t>(bytes), DType::UInt8, device);
    ISRN_CUDA_CHECK(run(temp.raw_data(), bytes));
  }

  const int64_t taken = m * k;
  take_sorted_kernel<T><<<grid_for(taken, kBlock), kBlock, 0, stream>>>(
      m, n, k, static_cast<const T*>(x.raw_data()), po, static_cast<T*>(values.raw_data()),
      indices.data_ptr<int64_t>());
  ISRN_CUDA_LAUNCH_CHECK("take_sorted_kernel");
}

}  // namespace

void sort_rows(const Tensor& x, bool descending, Tensor& values, Tensor& indices) {
  if (x.numel() == 0) return;
  DeviceGuard guard(x.device().index);
  dispatch_all(x.dtype(), "sort", [&](auto tag) {
    sort_rows_take<decltype(tag)>(x, descending, x.size(1), values, indices, "sort");
  });
}

void topk_rows(const Tensor& x, int64_t k, bool largest, Tensor& values, Tensor& indices) {
  if (x.size(0) == 0 || k == 0) return;
  DeviceGuard guard(x.device().index);
  dispatch_all(x.dtype(), "topk", [&](auto tag) {
    sort_rows_take<decltype(tag)>(x, largest, k, values, indices, "topk");
  });
}

}  // namespace isrn::cuda
