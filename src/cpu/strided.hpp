#pragma once
// Strided iteration for CPU elementwise kernels: coalesces dimensions, then hands rows of the
// innermost dimension to a row function, in parallel when the work is large enough to pay for it.
#include <array>
#include <cstdint>

#include "cpu/parallel.hpp"
#include "isrn/tensor.hpp"

namespace isrn::cpu {

inline constexpr int64_t kParallelGrain = 32768;  // elements below which threads cost more than they save

template <size_t N>
struct RowView {
  std::array<char*, N> data;
  std::array<int64_t, N> stride;  // bytes between consecutive elements of the row
};

// Calls row(RowView<N>, int64_t n) for every row of `shape`; operands[i] supplies data pointer and
// element strides (all of `shape`'s rank). Rows are disjoint; the order is unspecified.
template <size_t N, typename RowFn>
void for_each_row(const Shape& shape, const std::array<const Tensor*, N>& operands, RowFn&& row) {
  const int64_t total = shape_numel(shape);
  if (total == 0) return;
  // Coalesce: drop size-1 dims, merge neighbours whose strides chain for every operand.
  std::array<std::array<int64_t, kMaxDims>, N> st{};
  std::array<int64_t, kMaxDims> sz{};
  int nd = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = nd > 0;
    for (size_t i = 0; i < N && merge; ++i)
      merge = st[i][nd - 1] == operands[i]->strides()[d] * shape[d];
    if (merge) {
      sz[nd - 1] *= shape[d];
      for (size_t i = 0; i < N; ++i) st[i][nd - 1] = operands[i]->strides()[d];
    } else {
      sz[nd] = shape[d];
      for (size_t i = 0; i < N; ++i) st[i][nd] = operands[i]->strides()[d];
      ++nd;
    }
  }
  std::array<char*, N> base{};
  std::array<int64_t, N> esize{};
  for (size_t i = 0; i < N; ++i) {
    base[i] = static_cast<char*>(operands[i]->raw_data());
    esize[i] = static_cast<int64_t>(operands[i]->element_size());
  }
  if (nd == 0) {  // a single element
    RowView<N> v{base, {}};
    row(v, int64_t{1});
    return;
  }
  const int64_t inner = sz[nd - 1];
  std::array<int64_t, N> inner_stride{};
  for (size_t i = 0; i < N; ++i) inner_stride[i] = st[i][nd - 1] * esize[i];

  if (nd == 1) {  // one long row: split it into chunks across threads
    parallel_for(0, total, kParallelGrain, [&](int64_t begin, int64_t end) {
      RowView<N> v;
      for (size_t i = 0; i < N; ++i) {
        v.data[i] = base[i] + begin * inner_stride[i];
        v.stride[i] = inner_stride[i];
      }
      row(v, end - begin);
    });
    return;
  }
  const int64_t outer = total / inner;
  parallel_for(0, outer, grain_for(inner, kParallelGrain), [&](int64_t first, int64_t last) {
    for (int64_t o = first; o < last; ++o) {
      RowView<N> v;
      for (size_t i = 0; i < N; ++i) {
        v.data[i] = base[i];
        v.stride[i] = inner_stride[i];
      }
      int64_t rem = o;
      for (int d = nd - 2; d >= 0; --d) {
        const int64_t idx = rem % sz[d];
        rem /= sz[d];
        for (size_t i = 0; i < N; ++i) v.data[i] += idx * st[i][d] * esize[i];
      }
      row(v, inner);
    }
  });
}

// True when every operand of the row is densely packed (stride == element size).
template <size_t N>
bool row_is_dense(const RowView<N>& v, const std::array<int64_t, N>& esize) {
  for (size_t i = 0; i < N; ++i)
    if (v.stride[i] != esize[i]) return false;
  return true;
}

}  // namespace isrn::cpu
