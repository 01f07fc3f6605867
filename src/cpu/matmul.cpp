// CPU matmul on Eigen's GEMM. Every matrix is mapped in place as RowMajor with its own row stride;
// a trans flag becomes .transpose() on the map, which Eigen's packing reads directly, so no
// operand is copied. A matrix whose elements are not unit-stride within a row (which the front end
// never passes) is made contiguous first, because Eigen's fast path needs unit inner stride.
// Eigen runs single-threaded here (it threads only under OpenMP, which isrn does not use): large
// products are split into blocks of output rows or columns on isrn's pool instead.

// GCC 12 reports a false "may be used uninitialized" inside the AVX-512 intrinsics that Eigen's
// GEMM packing instantiates (the intrinsics' own undefined-register idiom); it is not in isrn code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>

#include "backend.hpp"
#include "cpu/parallel.hpp"
#include "widen_bf16.hpp"

namespace isrn::cpu {

namespace {

template <typename T>
using RowMajorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                               Eigen::OuterStride<>>;
template <typename T>
using OutMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// The stored [B, R, C] matrices of one operand: base pointer, batch stride, row stride.
template <typename T>
struct Batch {
  const T* data;
  int64_t batch_stride, rows, cols, row_stride;

  explicit Batch(const Tensor& t)
      : data(t.data_ptr<T>()),
        batch_stride(t.stride(0)),
        rows(t.size(1)),
        cols(t.size(2)),
        // A single row has no meaningful row stride; Eigen only needs it to be at least cols.
        row_stride(t.size(1) == 1 ? t.size(2) : t.stride(1)) {}
  RowMajorMap<T> matrix(int64_t b) const {
    return RowMajorMap<T>(data + b * batch_stride, rows, cols, Eigen::OuterStride<>(row_stride));
  }
};

bool unit_inner_stride(const Tensor& t) {
  return (t.size(2) == 1 || t.stride(2) == 1) && (t.size(1) == 1 || t.stride(1) >= t.size(2));
}

// Products of at least this many multiply-adds (about 10 µs on one core) use the threads.
constexpr int64_t kParallelMacs = int64_t{1} << 20;
// The least output rows (or columns) in a block: each block packs the whole other operand again.
constexpr int64_t kMinBlockExtent = 32;

template <typename T, bool TransA, bool TransB>
void gemm_batches(const Batch<T>& a, const Batch<T>& b, Tensor& out) {
  const int64_t batch = out.size(0), m = out.size(1), n = out.size(2);
  T* po = out.data_ptr<T>();
  // Rows [r0, r0 + rows) and columns [c0, c0 + cols) of product i: op(A) rows times op(B) columns.
  auto block = [&](int64_t i, int64_t r0, int64_t rows, int64_t c0, int64_t cols) {
    auto c = OutMap<T>(po + i * m * n, m, n).block(r0, c0, rows, cols);
    const auto ma = a.matrix(i);
    const auto mb = b.matrix(i);
    if constexpr (TransA && TransB)
      c.noalias() = ma.middleCols(r0, rows).transpose() * mb.middleRows(c0, cols).transpose();
    else if constexpr (TransA) c.noalias() = ma.middleCols(r0, rows).transpose() * mb.middleCols(c0, cols);
    else if constexpr (TransB) c.noalias() = ma.middleRows(r0, rows) * mb.middleRows(c0, cols).transpose();
    else c.noalias() = ma.middleRows(r0, rows) * mb.middleCols(c0, cols);
  };
  const int64_t k = TransA ? a.rows : a.cols;
  // Small matrices in a large batch: whole products are the parallel tasks.
  const bool per_product = batch > 1 && m * n * k < (int64_t{1} << 18) && batch * m * n * k >= kParallelMacs;
  if (per_product) {
    parallel_for(0, batch, 1, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) block(i, 0, m, 0, n);
    });
    return;
  }
  // Otherwise each large product is split along its longer output side.
  const bool large = m * n * k >= kParallelMacs;
  for (int64_t i = 0; i < batch; ++i) {
    if (m >= n)
      parallel_for(0, m, large ? kMinBlockExtent : m, [&](int64_t r0, int64_t r1) { block(i, r0, r1 - r0, 0, n); });
    else
      parallel_for(0, n, large ? kMinBlockExtent : n, [&](int64_t c0, int64_t c1) { block(i, 0, m, c0, c1 - c0); });
  }
}

}  // namespace

void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& out) {
  if (isrn::detail::run_widened(a, b, out, [&](const Tensor& a32, const Tensor& b32, Tensor& out32) {
        cpu::matmul(a32, trans_a, b32, trans_b, out32);
      }))
    return;
  const Tensor sa = unit_inner_stride(a) ? a : a.contiguous();
  const Tensor sb = unit_inner_stride(b) ? b : b.contiguous();
  const int64_t k = trans_a ? sa.size(1) : sa.size(2);
  if (out.numel() == 0) return;
  if (k == 0) {
    out.zero_();
    return;
  }
  dispatch_floating(out.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    const Batch<T> ba(sa), bb(sb);
    if (trans_a && trans_b) gemm_batches<T, true, true>(ba, bb, out);
    else if (trans_a) gemm_batches<T, true, false>(ba, bb, out);
    else if (trans_b) gemm_batches<T, false, true>(ba, bb, out);
    else gemm_batches<T, false, false>(ba, bb, out);
  });
}

}  // namespace isrn::cpu

#pragma GCC diagnostic pop
