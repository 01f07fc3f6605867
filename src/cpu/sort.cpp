// CPU sort and top-k over the rows of a contiguous [M, N] matrix, one row per task.
//
// Order: NaN counts as larger than every number (as PyTorch), so it comes last in an ascending
// sort, first in a descending one, and first among the largest in topk. Equal values (NaNs among
// themselves, -0 and +0 too) keep index order: the sort is stable and topk breaks ties by the lower
// index. topk therefore compares (value, index) pairs, a total order, which makes the selection
// exact with nth_element and the result independent of the algorithm.
#include <algorithm>
#include <numeric>
#include <vector>

#include "backend.hpp"
#include "cpu/strided.hpp"

namespace isrn::cpu {

namespace {

template <typename T>
bool is_nan(T v) {
  return v != v;
}

// a comes before b in ascending order (NaN last); a strict weak order in which NaNs are equal.
template <typename T>
bool ascending_before(T a, T b) {
  if (is_nan(a)) return false;
  return is_nan(b) || a < b;
}

template <typename T>
bool descending_before(T a, T b) {
  if (is_nan(b)) return false;
  return is_nan(a) || a > b;
}

template <typename Fn>
void for_each_row_parallel(int64_t m, int64_t n, Fn&& fn) {
  // One scratch index buffer per chunk of rows; threads pay off once there is real work in total.
  parallel_for(0, m, grain_when(m * n >= 2 * kParallelGrain, m), [&](int64_t first, int64_t last) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t r = first; r < last; ++r) fn(r, order);
  });
}

}  // namespace

void sort_rows(const Tensor& x, bool descending, Tensor& values, Tensor& indices) {
  const int64_t m = x.size(0), n = x.size(1);
  dispatch_numeric(x.dtype(), "sort", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data_ptr<T>();
    T* pv = values.data_ptr<T>();
    int64_t* pi = indices.data_ptr<int64_t>();
    for_each_row_parallel(m, n, [&](int64_t r, std::vector<int64_t>& order) {
      const T* row = px + r * n;
      std::iota(order.begin(), order.end(), int64_t{0});
      if (descending)
        std::stable_sort(order.begin(), order.end(),
                         [row](int64_t a, int64_t b) { return descending_before(row[a], row[b]); });
      else
        std::stable_sort(order.begin(), order.end(),
                         [row](int64_t a, int64_t b) { return ascending_before(row[a], row[b]); });
      for (int64_t j = 0; j < n; ++j) {
        pv[r * n + j] = row[order[j]];
        pi[r * n + j] = order[j];
      }
    });
  });
}

void topk_rows(const Tensor& x, int64_t k, bool largest, Tensor& values, Tensor& indices) {
  const int64_t m = x.size(0), n = x.size(1);
  if (k == 0) return;
  dispatch_numeric(x.dtype(), "topk", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data_ptr<T>();
    T* pv = values.data_ptr<T>();
    int64_t* pi = indices.data_ptr<int64_t>();
    for_each_row_parallel(m, n, [&](int64_t r, std::vector<int64_t>& order) {
      const T* row = px + r * n;
      auto first = [row, largest](int64_t a, int64_t b) {
        const bool before = largest ? descending_before(row[a], row[b]) : ascending_before(row[a], row[b]);
        const bool after = largest ? descending_before(row[b], row[a]) : ascending_before(row[b], row[a]);
        return before || (!after && a < b);
      };
      std::iota(order.begin(), order.end(), int64_t{0});
      if (k < n) std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), first);
      std::sort(order.begin(), order.begin() + k, first);
      for (int64_t j = 0; j < k; ++j) {
        pv[r * k + j] = row[order[j]];
        pi[r * k + j] = order[j];
      }
    });
  });
}

}  // namespace isrn::cpu
