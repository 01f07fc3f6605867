#include <vector>

#include "backend.hpp"
#include "cpu/strided.hpp"
#include "isrn/core/threading.hpp"

namespace isrn::cpu {

void reduce_rows(ReduceOp op, const Tensor& x, Tensor& values, Tensor& indices) {
  const int64_t m = x.size(0), n = x.size(1);
  dispatch_numeric(x.dtype(), "reduce", [&](auto tag) {
    using T = decltype(tag);
    // float32 sums accumulate in double: error independent of the row length.
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, T>;
    const T* px = x.data_ptr<T>();
    T* pv = values.data_ptr<T>();
    int64_t* pi = indices.defined() ? indices.data_ptr<int64_t>() : nullptr;
    // Lane-wise partial sums (vectorized; in double for float32, where the order changes nothing that
    // the final rounding keeps), combined at the end of each piece.
    const auto row_sum = [](const T* row, int64_t count) {
      Acc total = 0;
      if constexpr (std::is_floating_point_v<T>) {
#pragma omp simd reduction(+ : total)
        for (int64_t j = 0; j < count; ++j) total += static_cast<Acc>(row[j]);
      } else {
        for (int64_t j = 0; j < count; ++j) total += static_cast<Acc>(row[j]);
      }
      return total;
    };
    if (op == ReduceOp::Sum && m < get_num_threads() && n >= 2 * kParallelGrain) {
      // Few long rows: split each row across threads, one piece each, the pieces' sums added in
      // piece order (the same bits on every run).
      const int64_t pieces = get_num_threads();
      std::vector<Acc> partial(static_cast<size_t>(pieces));
      for (int64_t r = 0; r < m; ++r) {
        const T* row = px + r * n;
        parallel_chunks(pieces, [&](int64_t p) {
          partial[p] = row_sum(row + p * n / pieces, (p + 1) * n / pieces - p * n / pieces);
        });
        Acc total = 0;
        for (const Acc& part : partial) total += part;
        pv[r] = static_cast<T>(total);
      }
      return;
    }
    parallel_for(0, m, grain_for(n, kParallelGrain), [&](int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        const T* row = px + r * n;
        if (op == ReduceOp::Sum) {
          pv[r] = static_cast<T>(row_sum(row, n));
        } else {
          // NaN wins (as PyTorch); otherwise the first extremum.
          int64_t best = 0;
          T bv = row[0];
          for (int64_t j = 1; j < n; ++j) {
            const T v = row[j];
            if (bv != bv) break;
            const bool better = op == ReduceOp::Max ? (v > bv || v != v) : (v < bv || v != v);
            if (better) {
              bv = v;
              best = j;
            }
          }
          pv[r] = bv;
          if (pi) pi[r] = best;
        }
      }
    });
  });
}

}  // namespace isrn::cpu
