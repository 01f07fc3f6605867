// CPU kernels of the indexing ops. Indices are int32 or int64 and are bounds-checked here: the
// front ends cannot read indices that live on a GPU without a synchronisation, so the check belongs
// to the kernel. A bad index is noted inside the parallel loop and raised after it, so that every
// other position is still written as it would be on one thread.
#include <algorithm>
#include <atomic>
#include <vector>

#include "backend.hpp"
#include "cpu/strided.hpp"

namespace isrn::cpu {

namespace {

// Element offsets, in row-major order, of every position of `sizes` laid out with `strides`.
std::vector<int64_t> element_offsets(const Shape& sizes, const Shape& strides) {
  const int64_t n = shape_numel(sizes);
  std::vector<int64_t> out(static_cast<size_t>(n));
  if (n == 0) return out;
  std::vector<int64_t> pos(sizes.size(), 0);
  int64_t offset = 0;
  for (int64_t i = 0; i < n; ++i) {
    out[static_cast<size_t>(i)] = offset;
    for (size_t d = sizes.size(); d-- > 0;) {
      if (++pos[d] < sizes[d]) {
        offset += strides[d];
        break;
      }
      offset -= (sizes[d] - 1) * strides[d];
      pos[d] = 0;
    }
  }
  return out;
}

Shape without(Shape s, int64_t dim) {
  s.erase(s.begin() + dim);
  return s;
}

template <typename Fn>
void dispatch_index(DType t, const char* op, Fn&& fn) {
  if (t == DType::Int64) return fn(int64_t{});
  ISRN_CHECK(t == DType::Int32, "[", op, "] indices must be int32 or int64, got ", dtype_name(t));
  fn(int32_t{});
}

// The first out-of-range index any thread met; reported once the parallel loop is over.
class BadIndex {
 public:
  void note(int64_t value) {
    bool expected = false;
    if (seen_.compare_exchange_strong(expected, true, std::memory_order_relaxed))
      value_.store(value, std::memory_order_relaxed);
  }
  void raise_if_seen(const char* op, int64_t dim, int64_t size) const {
    ISRN_CHECK(!seen_.load(), "[", op, "] index ", value_.load(), " is out of range for dimension ", dim,
               " of size ", size, " (valid: 0..", size - 1, ")");
  }

 private:
  std::atomic<bool> seen_{false};
  std::atomic<int64_t> value_{0};
};

bool worth_threads(int64_t work) { return work >= 2 * kParallelGrain; }

// Validates a 1-D index list before any write, so a bad index leaves the output untouched.
template <typename I>
void check_index_list(const I* idx, int64_t n, int64_t step, int64_t size, const char* op, int64_t dim) {
  BadIndex bad;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = idx[i * step];
    if (v < 0 || v >= size) {
      bad.note(v);
      break;
    }
  }
  bad.raise_if_seen(op, dim, size);
}

}  // namespace

// out[.., i, ..] = x[.., index[i], ..]. Every other position of out is handled by its own offset
// pair, so the loop over (i, position) has no write conflicts and runs in parallel.
void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) {
  const int64_t n = index.numel(), size = x.size(dim);
  const Shape rest = without(out.shape(), dim);
  const std::vector<int64_t> out_off = element_offsets(rest, without(out.strides(), dim));
  const std::vector<int64_t> x_off = element_offsets(rest, without(x.strides(), dim));
  const int64_t positions = static_cast<int64_t>(out_off.size());
  const int64_t out_step = out.stride(dim), x_step = x.stride(dim), idx_step = index.stride(0);
  dispatch_index(index.dtype(), "index_select", [&](auto itag) {
    using I = decltype(itag);
    const I* idx = index.data_ptr<I>();
    check_index_list(idx, n, idx_step, size, "index_select", dim);
    dispatch_all(x.dtype(), "index_select", [&](auto tag) {
      using T = decltype(tag);
      const T* px = x.data_ptr<T>();
      T* po = out.data_ptr<T>();
      parallel_for(0, n * positions, kParallelGrain, [&](int64_t first, int64_t last) {
        int64_t i = first / positions, p = first % positions;
        for (int64_t t = first; t < last; ++t) {
          po[out_off[p] + i * out_step] = px[x_off[p] + static_cast<int64_t>(idx[i * idx_step]) * x_step];
          if (++p == positions) {
            p = 0;
            ++i;
          }
        }
      });
    });
  });
}

// grad_x[.., index[i], ..] += grad_out[.., i, ..]. Repeated indices add up; threads split the other
// positions and each walks i in order, so the sums are race-free and deterministic.
void index_add(const Tensor& grad_out, int64_t dim, const Tensor& index, Tensor& grad_x) {
  const int64_t n = index.numel(), size = grad_x.size(dim);
  const Shape rest = without(grad_out.shape(), dim);
  const std::vector<int64_t> go_off = element_offsets(rest, without(grad_out.strides(), dim));
  const std::vector<int64_t> gx_off = element_offsets(rest, without(grad_x.strides(), dim));
  const int64_t positions = static_cast<int64_t>(go_off.size());
  const int64_t go_step = grad_out.stride(dim), gx_step = grad_x.stride(dim), idx_step = index.stride(0);
  dispatch_index(index.dtype(), "index_add", [&](auto itag) {
    using I = decltype(itag);
    const I* idx = index.data_ptr<I>();
    check_index_list(idx, n, idx_step, size, "index_add", dim);
    dispatch_numeric(grad_x.dtype(), "index_add", [&](auto tag) {
      using T = decltype(tag);
      const T* pg = grad_out.data_ptr<T>();
      T* px = grad_x.data_ptr<T>();
      parallel_for(0, positions, grain_for(n, kParallelGrain), [&](int64_t first, int64_t last) {
        for (int64_t p = first; p < last; ++p)
          for (int64_t i = 0; i < n; ++i)
            px[gx_off[p] + static_cast<int64_t>(idx[i * idx_step]) * gx_step] += pg[go_off[p] + i * go_step];
      });
    });
  });
}

// out[pos] = x[pos with pos[dim] replaced by index[pos]]; out has index's shape.
void gather(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) {
  const int64_t n = index.size(dim), size = x.size(dim);
  const Shape rest = without(index.shape(), dim);
  const std::vector<int64_t> out_off = element_offsets(rest, without(out.strides(), dim));
  const std::vector<int64_t> idx_off = element_offsets(rest, without(index.strides(), dim));
  const std::vector<int64_t> x_off = element_offsets(rest, without(x.strides(), dim));
  const int64_t positions = static_cast<int64_t>(out_off.size());
  const int64_t out_step = out.stride(dim), idx_step = index.stride(dim), x_step = x.stride(dim);
  dispatch_index(index.dtype(), "gather", [&](auto itag) {
    using I = decltype(itag);
    const I* idx = index.data_ptr<I>();
    BadIndex bad;
    dispatch_all(x.dtype(), "gather", [&](auto tag) {
      using T = decltype(tag);
      const T* px = x.data_ptr<T>();
      T* po = out.data_ptr<T>();
      parallel_for(0, positions * n, kParallelGrain, [&](int64_t first, int64_t last) {
        int64_t p = first / n, i = first % n;
        for (int64_t t = first; t < last; ++t, ++i) {
          if (i == n) {
            i = 0;
            ++p;
          }
          const int64_t v = idx[idx_off[p] + i * idx_step];
          if (v < 0 || v >= size) {
            bad.note(v);
            continue;
          }
          po[out_off[p] + i * out_step] = px[x_off[p] + v * x_step];
        }
      });
    });
    bad.raise_if_seen("gather", dim, size);
  });
}

// grad_x[pos with pos[dim] = index[pos]] += grad_out[pos]. Positions that differ outside `dim` land
// in different elements of grad_x, so threads split those and walk `dim` in order: race-free and
// deterministic.
void scatter_add(const Tensor& grad_out, int64_t dim, const Tensor& index, Tensor& grad_x) {
  const int64_t n = index.size(dim), size = grad_x.size(dim);
  const Shape rest = without(index.shape(), dim);
  const std::vector<int64_t> go_off = element_offsets(rest, without(grad_out.strides(), dim));
  const std::vector<int64_t> idx_off = element_offsets(rest, without(index.strides(), dim));
  const std::vector<int64_t> gx_off = element_offsets(rest, without(grad_x.strides(), dim));
  const int64_t positions = static_cast<int64_t>(go_off.size());
  const int64_t go_step = grad_out.stride(dim), idx_step = index.stride(dim), gx_step = grad_x.stride(dim);
  dispatch_index(index.dtype(), "scatter_add", [&](auto itag) {
    using I = decltype(itag);
    const I* idx = index.data_ptr<I>();
    BadIndex bad;
    dispatch_numeric(grad_x.dtype(), "scatter_add", [&](auto tag) {
      using T = decltype(tag);
      const T* pg = grad_out.data_ptr<T>();
      T* px = grad_x.data_ptr<T>();
      parallel_for(0, positions, grain_for(n, kParallelGrain), [&](int64_t first, int64_t last) {
        for (int64_t p = first; p < last; ++p)
          for (int64_t i = 0; i < n; ++i) {
            const int64_t v = idx[idx_off[p] + i * idx_step];
            if (v < 0 || v >= size) {
              bad.note(v);
              continue;
            }
            px[gx_off[p] + v * gx_step] += pg[go_off[p] + i * go_step];
          }
      });
    });
    bad.raise_if_seen("scatter_add", dim, size);
  });
}

// Two passes over fixed chunks: count the true elements of each chunk, then write each chunk's
// indices at its prefix offset, so the output is in order whatever the thread count.
Tensor nonzero_flat(const Tensor& mask) {
  const int64_t n = mask.numel();
  const bool* pm = mask.data_ptr<bool>();
  const int64_t threads = get_num_threads();
  const int64_t chunks = worth_threads(n) ? std::clamp<int64_t>(n / kParallelGrain, 1, threads) : 1;
  std::vector<int64_t> counts(static_cast<size_t>(chunks) + 1, 0);
  parallel_chunks(chunks, [&](int64_t c) {
    int64_t count = 0;
    for (int64_t i = c * n / chunks, end = (c + 1) * n / chunks; i < end; ++i) count += pm[i] ? 1 : 0;
    counts[static_cast<size_t>(c) + 1] = count;
  });
  for (int64_t c = 0; c < chunks; ++c) counts[c + 1] += counts[c];
  Tensor out = empty({counts[chunks]}, TensorOptions(DType::Int64));
  int64_t* po = out.data_ptr<int64_t>();
  parallel_chunks(chunks, [&](int64_t c) {
    int64_t at = counts[c];
    for (int64_t i = c * n / chunks, end = (c + 1) * n / chunks; i < end; ++i)
      if (pm[i]) po[at++] = i;
  });
  return out;
}

}  // namespace isrn::cpu
