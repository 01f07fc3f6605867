// Row reductions (sum, max, min with the index of the extremum) over contiguous [M, N].
//
// Short rows get one warp each, long rows one block each. Every thread folds a strided slice of the
// row in order, then the partial results meet in a shuffle (and shared-memory) tree.
// Max/min follow the CPU: NaN wins, and among equal values the lowest index (the combine below is
// a maximum in the total order (is NaN, value, -index), so the tree's shape cannot change it).
// float32 accumulates in double, as on the CPU: the reduction is memory-bound, so the wider adds
// cost nothing, and the two backends then agree to the final rounding (error ≤ 2^-24 |Σx| plus
// (N/B + log2 B)·2^-53·Σ|x| from the tree, with B threads per row).
#include "cuda/allocator.hpp"
#include "cuda/common.cuh"

namespace isrn::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int64_t kWarpRowMax = 512;  // rows up to this long get a warp, longer ones a block
constexpr int kRowsBlock = 256;       // 8 warps, one row each
constexpr int kLongRowBlock = 512;
constexpr int64_t kSliceLen = 16384;  // elements per block when a long row is split across blocks

template <typename Acc>
struct Partial {
  Acc value;
  int64_t index;  // < 0: no element seen yet (max/min)
};

template <typename T>
__device__ __forceinline__ T shfl_down(T v, int delta) {
  if constexpr (sizeof(T) < 4) return static_cast<T>(__shfl_down_sync(0xffffffffu, static_cast<int>(v), delta));
  else return __shfl_down_sync(0xffffffffu, v, delta);
}

template <ReduceOp Op, typename Acc>
__device__ __forceinline__ Partial<Acc> empty_partial() {
  return {Acc(0), Op == ReduceOp::Sum ? int64_t{0} : int64_t{-1}};
}

template <ReduceOp Op, typename Acc>
__device__ __forceinline__ Partial<Acc> combine(const Partial<Acc>& a, const Partial<Acc>& b) {
  if constexpr (Op == ReduceOp::Sum) {
    return {static_cast<Acc>(a.value + b.value), 0};  // uint8 sums wrap, as on the CPU
  } else {
    if (a.index < 0) return b;
    if (b.index < 0) return a;
    const bool a_nan = a.value != a.value, b_nan = b.value != b.value;
    if (a_nan != b_nan) return a_nan ? a : b;
    if (a_nan || a.value == b.value) return a.index < b.index ? a : b;
    const bool a_wins = Op == ReduceOp::Max ? a.value > b.value : a.value < b.value;
    return a_wins ? a : b;
  }
}

template <ReduceOp Op, typename Acc>
__device__ __forceinline__ Partial<Acc> warp_reduce(Partial<Acc> p) {
#pragma unroll
  for (int delta = kWarp / 2; delta > 0; delta /= 2) {
    Partial<Acc> other;
    other.value = shfl_down(p.value, delta);
    other.index = Op == ReduceOp::Sum ? 0 : shfl_down(p.index, delta);
    p = combine<Op>(p, other);
  }
  return p;
}

// Folds elements first, first + step, ... of one row.
template <ReduceOp Op, typename T, typename Acc>
__device__ __forceinline__ Partial<Acc> fold_slice(const T* row, int64_t n, int64_t first, int64_t step) {
  Partial<Acc> p = empty_partial<Op, Acc>();
  for (int64_t j = first; j < n; j += step) p = combine<Op>(p, Partial<Acc>{static_cast<Acc>(row[j]), j});
  return p;
}

template <ReduceOp Op, typename T, typename Acc>
__global__ void reduce_rows_warp_kernel(int64_t m, int64_t n, const T* __restrict__ x, T* __restrict__ values,
                                        int64_t* __restrict__ indices) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps_per_block = blockDim.x / kWarp;
  for (int64_t row = blockIdx.x * warps_per_block + threadIdx.x / kWarp; row < m;
       row += static_cast<int64_t>(gridDim.x) * warps_per_block) {
    const Partial<Acc> p = warp_reduce<Op>(fold_slice<Op, T, Acc>(x + row * n, n, lane, kWarp));
    if (lane == 0) {
      values[row] = static_cast<T>(p.value);
      if (indices != nullptr) indices[row] = p.index;
    }
  }
}

template <ReduceOp Op, typename T, typename Acc>
__global__ void reduce_rows_block_kernel(int64_t m, int64_t n, const T* __restrict__ x, T* __restrict__ values,
                                         int64_t* __restrict__ indices) {
  __shared__ Partial<Acc> warp_results[kLongRowBlock / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  for (int64_t row = blockIdx.x; row < m; row += gridDim.x) {
    Partial<Acc> p = warp_reduce<Op>(fold_slice<Op, T, Acc>(x + row * n, n, threadIdx.x, blockDim.x));
    if (lane == 0) warp_results[warp] = p;
    __syncthreads();
    if (warp == 0) {
      p = lane < warps ? warp_results[lane] : empty_partial<Op, Acc>();
      p = warp_reduce<Op>(p);
      if (lane == 0) {
        values[row] = static_cast<T>(p.value);
        if (indices != nullptr) indices[row] = p.index;
      }
    }
    __syncthreads();  // warp_results is reused by the next row
  }
}

// Few long rows (a whole-tensor sum): one row per block would leave the GPU idle, so each row is cut
// into slices reduced by separate blocks; a warp per row then folds its slices' partials in order.
template <ReduceOp Op, typename T, typename Acc>
__global__ void reduce_slices_kernel(int64_t n, int64_t slices, int64_t slice_len, const T* __restrict__ x,
                                     Partial<Acc>* __restrict__ partials) {
  __shared__ Partial<Acc> warp_results[kLongRowBlock / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t row = blockIdx.x / slices, begin = (blockIdx.x % slices) * slice_len;
  const int64_t end = begin + slice_len < n ? begin + slice_len : n;
  const T* r = x + row * n;
  Partial<Acc> p = empty_partial<Op, Acc>();
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) p = combine<Op>(p, Partial<Acc>{static_cast<Acc>(r[j]), j});
  p = warp_reduce<Op>(p);
  if (lane == 0) warp_results[warp] = p;
  __syncthreads();
  if (warp == 0) {
    p = lane < static_cast<int>(blockDim.x / kWarp) ? warp_results[lane] : empty_partial<Op, Acc>();
    p = warp_reduce<Op>(p);
    if (lane == 0) partials[blockIdx.x] = p;
  }
}

template <ReduceOp Op, typename T, typename Acc>
__global__ void fold_slices_kernel(int64_t m, int64_t slices, const Partial<Acc>* __restrict__ partials,
                                   T* __restrict__ values, int64_t* __restrict__ indices) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= m) return;
  Partial<Acc> p = empty_partial<Op, Acc>();
  for (int64_t k = lane; k < slices; k += kWarp) p = combine<Op>(p, partials[row * slices + k]);
  p = warp_reduce<Op>(p);
  if (lane == 0) {
    values[row] = static_cast<T>(p.value);
    if (indices != nullptr) indices[row] = p.index;
  }
}

template <ReduceOp Op, typename T>
void launch_reduce_rows(const Tensor& x, Tensor& values, Tensor& indices) {
  using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;  // integers exactly
  const int64_t m = x.size(0), n = x.size(1);
  const T* px = x.data_ptr<T>();
  T* pv = values.data_ptr<T>();
  int64_t* pi = Op != ReduceOp::Sum && indices.defined() ? indices.data_ptr<int64_t>() : nullptr;
  if (n <= kWarpRowMax) {
    const int64_t rows_per_block = kRowsBlock / kWarp;
    reduce_rows_warp_kernel<Op, T, Acc>
        <<<grid_for(m, static_cast<int>(rows_per_block)), kRowsBlock, 0, current_stream()>>>(m, n, px, pv, pi);
    ISRN_CUDA_LAUNCH_CHECK("reduce_rows_warp_kernel");
  } else if (m < 512 && n >= 4 * kSliceLen && m * ((n + kSliceLen - 1) / kSliceLen) < (int64_t{1} << 31)) {
    const int64_t slices = (n + kSliceLen - 1) / kSliceLen;
    Tensor partials = empty({m * slices * static_cast<int64_t>(sizeof(Partial<Acc>))},
                            TensorOptions(DType::UInt8).device(x.device()));
    auto* pp = reinterpret_cast<Partial<Acc>*>(partials.raw_data());
    reduce_slices_kernel<Op, T, Acc><<<static_cast<unsigned>(m * slices), kLongRowBlock, 0, current_stream()>>>(
        n, slices, kSliceLen, px, pp);
    ISRN_CUDA_LAUNCH_CHECK("reduce_slices_kernel");
    fold_slices_kernel<Op, T, Acc><<<grid_for(m, kRowsBlock / kWarp), kRowsBlock, 0, current_stream()>>>(
        m, slices, pp, pv, pi);
    ISRN_CUDA_LAUNCH_CHECK("fold_slices_kernel");
  } else {
    reduce_rows_block_kernel<Op, T, Acc><<<grid_for(m, 1), kLongRowBlock, 0, current_stream()>>>(m, n, px, pv, pi);
    ISRN_CUDA_LAUNCH_CHECK("reduce_rows_block_kernel");
  }
}

}  // namespace

void reduce_rows(ReduceOp op, const Tensor& x, Tensor& values, Tensor& indices) {
  const int64_t m = x.size(0), n = x.size(1);
  if (m == 0) return;
  DeviceGuard guard(x.device().index);
  if (n == 0) {  // an empty sum is zero; max/min of nothing is refused by the front end
    ISRN_ASSERT(op == ReduceOp::Sum, "[reduce] max/min over an empty row");
    fill(values, 0.0);
    return;
  }
  dispatch_numeric(x.dtype(), "reduce", [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case ReduceOp::Sum: launch_reduce_rows<ReduceOp::Sum, T>(x, values, indices); break;
      case ReduceOp::Max: launch_reduce_rows<ReduceOp::Max, T>(x, values, indices); break;
      case ReduceOp::Min: launch_reduce_rows<ReduceOp::Min, T>(x, values, indices); break;
    }
  });
}

}  // namespace isrn::cuda
