#pragma once
// Elementwise CUDA kernels over strided operands. N operands of one logical shape, each with its own
// element strides, are coalesced on the host (size-1 dims dropped, neighbours whose strides chain
// for every operand merged) and passed to the kernel by value; offsets are 64-bit. A functor
// receives the N element offsets of each position: launch_elementwise picks a flat loop when every
// operand is dense and the strided decomposition otherwise.
#include <array>

#include "cuda/common.cuh"

namespace isrn::cuda {

template <int N>
struct OffsetCalc {
  int ndim = 0;                           // after coalescing; 0 means a single element
  int64_t sizes[kMaxDims] = {};           // innermost last
  int64_t strides[N][kMaxDims] = {};      // in elements of each operand

  // True when every operand walks memory densely in logical order (a flat loop suffices).
  bool contiguous() const {
    if (ndim == 0) return true;
    if (ndim > 1) return false;
    for (int k = 0; k < N; ++k)
      if (strides[k][0] != 1) return false;
    return true;
  }

  __device__ __forceinline__ void get(int64_t linear, int64_t (&offsets)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) offsets[k] = 0;
#pragma unroll
    for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d < ndim) {
        const int64_t size = sizes[d];
        const int64_t index = linear % size;
        linear /= size;
#pragma unroll
        for (int k = 0; k < N; ++k) offsets[k] += index * strides[k][d];
      }
    }
  }
};

// Strides of `shape` for each operand (element units), coalesced. Each strides[k] has shape's rank.
template <int N>
OffsetCalc<N> make_offset_calc(const Shape& shape, const std::array<Shape, N>& strides) {
  OffsetCalc<N> calc;
  int nd = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = nd > 0;
    for (int k = 0; k < N && merge; ++k) merge = calc.strides[k][nd - 1] == strides[k][d] * shape[d];
    if (merge) {
      calc.sizes[nd - 1] *= shape[d];
      for (int k = 0; k < N; ++k) calc.strides[k][nd - 1] = strides[k][d];
    } else {
      calc.sizes[nd] = shape[d];
      for (int k = 0; k < N; ++k) calc.strides[k][nd] = strides[k][d];
      ++nd;
    }
  }
  calc.ndim = nd;
  return calc;
}

template <int N, typename F>
__global__ void elementwise_contiguous_kernel(int64_t n, F f) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    int64_t off[N];
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i;
    f(off);
  }
}

template <int N, typename F>
__global__ void elementwise_strided_kernel(int64_t n, OffsetCalc<N> calc, F f) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    int64_t off[N];
    calc.get(i, off);
    f(off);
  }
}

// Calls f(int64_t (&offsets)[N]) on the device for every position of `shape`, operand k at element
// strides strides[k] (any strides: an operand may be a pseudo-operand, e.g. strides that are 1 along
// one dim and 0 elsewhere yield that dim's coordinate). `name` labels launch errors.
template <int N, typename F>
void launch_elementwise(const char* name, const Shape& shape, const std::array<Shape, N>& strides, const F& f) {
  constexpr int kBlock = 256;
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  const OffsetCalc<N> calc = make_offset_calc<N>(shape, strides);
  if (calc.contiguous()) {
    elementwise_contiguous_kernel<N, F><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(n, f);
    ISRN_CUDA_LAUNCH_CHECK(name);
  } else {
    elementwise_strided_kernel<N, F><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(n, calc, f);
    ISRN_CUDA_LAUNCH_CHECK(name);
  }
}

// The common case: the operands are tensors of `shape` (possibly broadcast with stride 0).
template <int N, typename F>
void launch_elementwise(const char* name, const Shape& shape, const std::array<const Tensor*, N>& operands,
                        const F& f) {
  std::array<Shape, N> strides;
  for (int k = 0; k < N; ++k) strides[k] = operands[k]->strides();
  launch_elementwise<N, F>(name, shape, strides, f);
}

}  // namespace isrn::cuda
