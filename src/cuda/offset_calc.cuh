#pragma once
// Strided addressing for elementwise CUDA kernels: N operands of one logical shape, each with its
// own element strides, coalesced on the host (size-1 dims dropped, neighbours whose strides chain for
// every operand merged) and passed to the kernel by value. Offsets are 64-bit element offsets.
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

// The common case: operands are tensors of `shape` (possibly broadcast with stride 0).
template <int N>
OffsetCalc<N> make_offset_calc(const Shape& shape, const std::array<const Tensor*, N>& operands) {
  std::array<Shape, N> strides;
  for (int k = 0; k < N; ++k) strides[k] = operands[k]->strides();
  return make_offset_calc<N>(shape, strides);
}

}  // namespace isrn::cuda
