// CPU convolution: forward, gradient for the input, gradient for the weight, all as GEMMs on the
// packed kernel of cpu/gemm.hpp.
//
// Notation: x [N, C, H, W], w [Co, C, KH, KW], y [N, Co, OH, OW]; K = C*KH*KW rows of the column
// matrix (k = (c*KH + kh)*KW + kw), J = OH*OW columns (j = oh*OW + ow), col[k][j] = the input value
// under tap (kh, kw) of output pixel j (0 in padding).
//   forward:          y_n  = w[Co, K] · col_n[K, J]            (+ bias)
//   backward input:   dx_n = col2im(w^T[K, Co] · dy_n[Co, J])
//   backward weight:  dw   = Σ_n dy_n[Co, J] · col_n^T[J, K]
// The column matrix is never built whole: work goes in tiles of output columns sized so a tile's
// packed columns stay in the L2 cache. A 1x1 stride-1 unpadded convolution needs no im2col at all:
// col_n is x_n itself.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend.hpp"
#include "cpu/gemm.hpp"

namespace isrn::cpu {

namespace {

using gemm::Blocking;
using gemm::Buffer;

// Bytes of packed column tile a thread works on at once: most of a 2 MB L2, leaving room for the
// weight block the GEMM streams beside it.
constexpr int64_t kTileBytes = int64_t{1} << 20;
// Below this many multiply-adds a convolution runs on one thread (a parallel region costs microseconds).
constexpr int64_t kParallelMacs = int64_t{1} << 18;

int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

struct Geometry {
  int64_t N, C, H, W, Co, KH, KW, OH, OW;
  int64_t sh, sw, pt, pl, dh, dw;
  int64_t K, J;
  // For tap column kw, the output columns whose input column lies inside the image: [ow_lo, ow_hi).
  std::vector<int64_t> ow_lo, ow_hi;

  Geometry(const Shape& x, const Shape& w, const Shape& y, const Conv2dParams& p)
      : N(x[0]), C(x[1]), H(x[2]), W(x[3]), Co(w[0]), KH(w[2]), KW(w[3]), OH(y[2]), OW(y[3]),
        sh(p.stride[0]), sw(p.stride[1]), pt(p.padding[0]), pl(p.padding[2]), dh(p.dilation[0]),
        dw(p.dilation[1]), K(C * KH * KW), J(OH * OW), ow_lo(KW), ow_hi(KW) {
    for (int64_t kw = 0; kw < KW; ++kw) {
      const int64_t shift = kw * dw - pl;  // input column = ow * sw + shift
      ow_lo[kw] = std::clamp<int64_t>(ceil_div(-shift, sw), 0, OW);
      ow_hi[kw] = std::clamp<int64_t>(ceil_div(W - shift, sw), ow_lo[kw], OW);
    }
  }
  // 1x1, stride 1, no padding: the column matrix is the input itself.
  bool is_pointwise() const {
    return KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
  }
  int64_t taps() const { return KH * KW; }
};

// Walks rows [c0*KH*KW, c1*KH*KW) and columns [j0, j0 + n) of col_n in runs: copy(k, j, src, stride,
// count) for runs of input values (k, j relative to the walk's origin), zero(k, j, count) for padding.
template <typename T, typename Copy, typename Zero>
void walk_columns(const T* x_n, const Geometry& g, int64_t c0, int64_t c1, int64_t j0, int64_t n, Copy&& copy,
                  Zero&& zero) {
  for (int64_t c = c0; c < c1; ++c) {
    const T* plane = x_n + c * g.H * g.W;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t k = ((c - c0) * g.KH + kh) * g.KW + kw;
        const int64_t shift = kw * g.dw - g.pl;
        int64_t oh = j0 / g.OW, ow = j0 % g.OW, j = 0;
        while (j < n) {
          const int64_t len = std::min(g.OW - ow, n - j);
          const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
          if (ih < 0 || ih >= g.H) {
            zero(k, j, len);
          } else {
            const int64_t end = ow + len;
            const int64_t lo = std::clamp(g.ow_lo[kw], ow, end), hi = std::clamp(g.ow_hi[kw], lo, end);
            if (lo > ow) zero(k, j, lo - ow);
            if (hi > lo) copy(k, j + lo - ow, plane + ih * g.W + lo * g.sw + shift, g.sw, hi - lo);
            if (end > hi) zero(k, j + hi - ow, end - hi);
          }
          j += len;
          ++oh;
          ow = 0;
        }
      }
    }
  }
}

// im2col of channels [c0, c1) and columns [j0, j0 + n) written straight into B panels of depth `depth`.
template <typename T>
void im2col_packed(const T* x_n, const Geometry& g, int64_t c0, int64_t c1, int64_t j0, int64_t n, int64_t depth,
                   T* packed) {
  constexpr int64_t NR = Blocking<T>::NR;
  // Runs are split where they cross from one NR-column panel into the next.
  auto destination = [&](int64_t k, int64_t j) { return packed + (j / NR) * depth * NR + k * NR + j % NR; };
  auto copy = [&](int64_t k, int64_t j, const T* src, int64_t stride, int64_t count) {
    while (count > 0) {
      const int64_t m = std::min(count, NR - j % NR);
      T* d = destination(k, j);
      if (stride == 1) {
        std::memcpy(d, src, m * sizeof(T));
      } else {
        for (int64_t i = 0; i < m; ++i) d[i] = src[i * stride];
      }
      j += m;
      src += m * stride;
      count -= m;
    }
  };
  auto zero = [&](int64_t k, int64_t j, int64_t count) {
    while (count > 0) {
      const int64_t m = std::min(count, NR - j % NR);
      std::fill_n(destination(k, j), m, T(0));
      j += m;
      count -= m;
    }
  };
  walk_columns(x_n, g, c0, c1, j0, n, copy, zero);
  // Columns past the tile's end in the last panel meet the kernel's full-width loads: keep them zero.
  if (n % NR != 0) {
    T* last = packed + (n / NR) * depth * NR;
    for (int64_t k = 0; k < (c1 - c0) * g.taps(); ++k) std::fill(last + k * NR + n % NR, last + (k + 1) * NR, T(0));
  }
}

// im2col of channels [c0, c1), columns [j0, j0 + n) into a row-major [rows, ld] buffer.
template <typename T>
void im2col_rows(const T* x_n, const Geometry& g, int64_t c0, int64_t c1, int64_t j0, int64_t n, T* out, int64_t ld) {
  auto copy = [&](int64_t k, int64_t j, const T* src, int64_t stride, int64_t count) {
    T* d = out + k * ld + j;
    if (stride == 1) {
      std::memcpy(d, src, count * sizeof(T));
    } else {
      for (int64_t i = 0; i < count; ++i) d[i] = src[i * stride];
    }
  };
  auto zero = [&](int64_t k, int64_t j, int64_t count) { std::fill_n(out + k * ld + j, count, T(0)); };
  walk_columns(x_n, g, c0, c1, j0, n, copy, zero);
}

// dx_n[c0:c1] += col2im of a row-major [rows, ld] tile holding columns [j0, j0 + n).
template <typename T>
void col2im_add(const T* cols, int64_t ld, const Geometry& g, int64_t c0, int64_t c1, int64_t j0, int64_t n, T* dx_n) {
  for (int64_t c = c0; c < c1; ++c) {
    T* plane = dx_n + c * g.H * g.W;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const T* row = cols + (((c - c0) * g.KH + kh) * g.KW + kw) * ld;
        const int64_t shift = kw * g.dw - g.pl;
        int64_t oh = j0 / g.OW, ow = j0 % g.OW, j = 0;
        while (j < n) {
          const int64_t len = std::min(g.OW - ow, n - j);
          const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
          if (ih >= 0 && ih < g.H) {
            const int64_t end = ow + len;
            const int64_t lo = std::clamp(g.ow_lo[kw], ow, end), hi = std::clamp(g.ow_hi[kw], lo, end);
            T* d = plane + ih * g.W + lo * g.sw + shift;
            const T* s = row + j + lo - ow;
            if (g.sw == 1) {
              for (int64_t i = 0; i < hi - lo; ++i) d[i] += s[i];
            } else {
              for (int64_t i = 0; i < hi - lo; ++i) d[i * g.sw] += s[i];
            }
          }
          j += len;
          ++oh;
          ow = 0;
        }
      }
    }
  }
}

// Output columns per tile: as many as keep `bytes_per_column * columns` near kTileBytes, a multiple of
// NR, at least one panel, at most what the image has.
template <typename T>
int64_t tile_columns(int64_t bytes_per_column, int64_t J) {
  constexpr int64_t NR = Blocking<T>::NR;
  const int64_t fit = kTileBytes / std::max<int64_t>(bytes_per_column, 1) / NR * NR;
  return std::clamp<int64_t>(fit, NR, gemm::round_up(J, NR));
}

// Packs rows [0, m) of A(i, k) = src[i * rs + k * cs] in parallel over panels.
template <typename T>
void pack_a_parallel(const T* src, int64_t rs, int64_t cs, int64_t m, int64_t depth, T* dst, bool parallel) {
  constexpr int64_t MR = Blocking<T>::MR;
  const int64_t panels = (m + MR - 1) / MR;
#pragma omp parallel for if (parallel && panels > 1) schedule(static)
  for (int64_t p = 0; p < panels; ++p)
    gemm::pack_a(src + p * MR * rs, rs, cs, std::min(MR, m - p * MR), depth, dst + p * MR * depth);
}

template <typename T>
void forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params, Tensor& y) {
  constexpr int64_t MR = Blocking<T>::MR;
  const Geometry g(x.shape(), weight.shape(), y.shape(), params);
  const T* px = x.data_ptr<T>();
  const T* pb = bias.defined() ? bias.data_ptr<T>() : nullptr;
  T* py = y.data_ptr<T>();
  const int threads = omp_get_max_threads();
  const bool parallel = threads > 1 && g.N * g.Co * g.K * g.J >= kParallelMacs;

  Buffer<T> packed_w(gemm::packed_a_size<T>(g.Co, g.K));
  pack_a_parallel(weight.data_ptr<T>(), g.K, int64_t{1}, g.Co, g.K, packed_w.data(), parallel);

  const int64_t cols = tile_columns<T>(g.K * static_cast<int64_t>(sizeof(T)), g.J);
  const int64_t tiles = (g.J + cols - 1) / cols;
  const int64_t tasks = g.N * tiles;
  // Too few tiles for the threads (small maps, deep weights): split the output channels as well.
  const int64_t row_panels = (g.Co + MR - 1) / MR;
  const int64_t splits = parallel && tasks < threads ? std::min<int64_t>(row_panels, (threads + tasks - 1) / tasks) : 1;
  const bool pointwise = g.is_pointwise();

#pragma omp parallel if (parallel)
  {
    Buffer<T> packed_cols(gemm::packed_b_size<T>(g.K, cols));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks * splits; ++t) {
      const int64_t task = t / splits, part = t % splits;
      const int64_t n = task / tiles, j0 = (task % tiles) * cols, width = std::min(cols, g.J - j0);
      const int64_t m_begin = part * row_panels / splits * MR;
      const int64_t m_end = std::min(g.Co, (part + 1) * row_panels / splits * MR);
      if (m_begin >= m_end) continue;
      const T* x_n = px + n * g.C * g.H * g.W;
      if (pointwise) {
        gemm::pack_b(x_n + j0, g.J, int64_t{1}, g.K, width, packed_cols.data());
      } else {
        im2col_packed(x_n, g, 0, g.C, j0, width, g.K, packed_cols.data());
      }
      T* out = py + n * g.Co * g.J + j0;
      if (pb)
        for (int64_t o = m_begin; o < m_end; ++o) std::fill_n(out + o * g.J, width, pb[o]);
      gemm::multiply_packed(packed_w.data(), packed_cols.data(), m_begin, m_end, width, g.K, out, g.J, pb != nullptr);
    }
  }
}

template <typename T>
void backward_input_impl(const Tensor& grad_y, const Tensor& weight, const Conv2dParams& params, Tensor& grad_x) {
  const Geometry g(grad_x.shape(), weight.shape(), grad_y.shape(), params);
  const T* pgy = grad_y.data_ptr<T>();
  const T* pw = weight.data_ptr<T>();
  T* pgx = grad_x.data_ptr<T>();
  const int threads = omp_get_max_threads();
  const bool parallel = threads > 1 && g.N * g.Co * g.K * g.J >= kParallelMacs;
  const bool pointwise = g.is_pointwise();

  // col2im of different tiles of one image overlaps wherever windows overlap, so images and groups
  // of input channels (disjoint in dx) are the parallel tasks; tiles run in order inside a task.
  const int64_t min_rows = 4 * Blocking<T>::MR;  // below this a group's GEMM is mostly edges
  int64_t groups = 1;
  if (parallel && g.N < 2 * threads) {
    const int64_t want = (2 * threads + g.N - 1) / g.N;
    groups = std::clamp<int64_t>(std::min(want, g.K / min_rows), 1, g.C);
  }
  const int64_t per_group = (g.C + groups - 1) / groups;
  groups = (g.C + per_group - 1) / per_group;

  // A = w^T [K, Co], packed per channel group so each group's rows start a panel.
  std::vector<int64_t> offset(groups + 1, 0);
  for (int64_t gi = 0; gi < groups; ++gi) {
    const int64_t rows = (std::min(g.C, (gi + 1) * per_group) - gi * per_group) * g.taps();
    offset[gi + 1] = offset[gi] + gemm::packed_a_size<T>(rows, g.Co);
  }
  Buffer<T> packed_w(offset[groups]);
#pragma omp parallel for if (parallel && groups > 1) schedule(static)
  for (int64_t gi = 0; gi < groups; ++gi) {
    const int64_t r0 = gi * per_group * g.taps(), rows = (std::min(g.C, (gi + 1) * per_group) - gi * per_group) * g.taps();
    gemm::pack_a(pw + r0, int64_t{1}, g.K, rows, g.Co, packed_w.data() + offset[gi]);
  }

  const int64_t group_rows = per_group * g.taps();
  const int64_t cols =
      tile_columns<T>((g.Co + (pointwise ? 0 : group_rows)) * static_cast<int64_t>(sizeof(T)), g.J);
#pragma omp parallel if (parallel)
  {
    Buffer<T> packed_gy(gemm::packed_b_size<T>(g.Co, cols));
    Buffer<T> tile(pointwise ? 0 : group_rows * cols);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < g.N * groups; ++t) {
      const int64_t n = t / groups, gi = t % groups;
      const int64_t c0 = gi * per_group, c1 = std::min(g.C, c0 + per_group), rows = (c1 - c0) * g.taps();
      const T* gy_n = pgy + n * g.Co * g.J;
      T* gx_n = pgx + n * g.C * g.H * g.W;
      if (!pointwise) std::fill(gx_n + c0 * g.H * g.W, gx_n + c1 * g.H * g.W, T(0));
      for (int64_t j0 = 0; j0 < g.J; j0 += cols) {
        const int64_t width = std::min(cols, g.J - j0);
        gemm::pack_b(gy_n + j0, g.J, int64_t{1}, g.Co, width, packed_gy.data());
        if (pointwise) {
          gemm::multiply_packed(packed_w.data() + offset[gi], packed_gy.data(), 0, rows, width, g.Co,
                                gx_n + c0 * g.J + j0, g.J, false);
        } else {
          gemm::multiply_packed(packed_w.data() + offset[gi], packed_gy.data(), 0, rows, width, g.Co, tile.data(),
                                cols, false);
          col2im_add(tile.data(), cols, g, c0, c1, j0, width, gx_n);
        }
      }
    }
  }
}

template <typename T>
void backward_weight_impl(const Tensor& grad_y, const Tensor& x, const Conv2dParams& params, Tensor& grad_w) {
  constexpr int64_t MR = Blocking<T>::MR;
  const Geometry g(x.shape(), grad_w.shape(), grad_y.shape(), params);
  const T* pgy = grad_y.data_ptr<T>();
  const T* px = x.data_ptr<T>();
  T* pgw = grad_w.data_ptr<T>();
  const int threads = omp_get_max_threads();
  const bool parallel = threads > 1 && g.N * g.Co * g.K * g.J >= kParallelMacs;
  const bool pointwise = g.is_pointwise();

  // dw[Co, K] is cut into blocks of output channels x input channels; a block is one task that
  // reduces over every image and tile. Blocks bound the dw tile the GEMM keeps in cache.
  const int64_t row_panels = (g.Co + MR - 1) / MR;
  const int64_t max_block_rows = 256, max_block_cols = 512;
  int64_t m_blocks = (g.Co + max_block_rows - 1) / max_block_rows;
  int64_t per_group = std::clamp<int64_t>(max_block_cols / g.taps(), 1, g.C);
  int64_t groups = (g.C + per_group - 1) / per_group;
  if (parallel && m_blocks * groups < threads) {  // more, smaller blocks to feed every thread
    const int64_t more_groups = std::min<int64_t>(g.C, (threads + m_blocks - 1) / m_blocks);
    if (more_groups > groups) {
      per_group = (g.C + more_groups - 1) / more_groups;
      groups = (g.C + per_group - 1) / per_group;
    }
    if (m_blocks * groups < threads) m_blocks = std::min(row_panels, (threads + groups - 1) / groups);
  }
  // Still too few blocks (a small weight): the images and tiles are split too, each part summing into
  // a private copy of dw that is added up at the end.
  const int64_t blocks = m_blocks * groups;
  const int64_t cols = tile_columns<T>((per_group * g.taps() + MR) * static_cast<int64_t>(sizeof(T)), g.J);
  const int64_t tiles = (g.J + cols - 1) / cols;
  const int64_t reductions = g.N * tiles;
  const int64_t parts = parallel && blocks < threads ? std::clamp<int64_t>(threads / blocks, 1, reductions) : 1;
  std::vector<Buffer<T>> partial(parts - 1);
  for (auto& p : partial) p.resize(g.Co * g.K);

#pragma omp parallel if (parallel)
  {
    Buffer<T> packed_gy(gemm::packed_a_size<T>(std::min(g.Co, (row_panels + m_blocks - 1) / m_blocks * MR), cols));
    Buffer<T> rows_tile(pointwise ? 0 : per_group * g.taps() * cols);
    Buffer<T> packed_cols(gemm::packed_b_size<T>(cols, per_group * g.taps()));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < blocks * parts; ++t) {
      const int64_t block = t / parts, part = t % parts;
      const int64_t mb = block / groups, gi = block % groups;
      const int64_t m_begin = std::min(g.Co, mb * row_panels / m_blocks * MR);
      const int64_t m_end = std::min(g.Co, (mb + 1) * row_panels / m_blocks * MR);
      const int64_t c0 = gi * per_group, c1 = std::min(g.C, c0 + per_group);
      const int64_t k0 = c0 * g.taps(), krows = (c1 - c0) * g.taps();
      const int64_t r_begin = part * reductions / parts, r_end = (part + 1) * reductions / parts;
      T* out = (part == 0 ? pgw : partial[part - 1].data()) + m_begin * g.K + k0;
      if (m_begin >= m_end) continue;
      if (r_begin == r_end) {
        for (int64_t o = 0; o < m_end - m_begin; ++o) std::fill_n(out + o * g.K, krows, T(0));
        continue;
      }
      for (int64_t r = r_begin; r < r_end; ++r) {
        const int64_t n = r / tiles, j0 = (r % tiles) * cols, width = std::min(cols, g.J - j0);
        const T* x_n = px + n * g.C * g.H * g.W;
        // A = dy_n rows [m_begin, m_end), depth = this tile's columns.
        gemm::pack_a(pgy + n * g.Co * g.J + m_begin * g.J + j0, g.J, int64_t{1}, m_end - m_begin, width,
                     packed_gy.data());
        // B = col^T: B(j, k) = col[k][j], packed from the input rows (pointwise) or an im2col tile.
        if (pointwise) {
          gemm::pack_b(x_n + c0 * g.J + j0, int64_t{1}, g.J, width, krows, packed_cols.data());
        } else {
          im2col_rows(x_n, g, c0, c1, j0, width, rows_tile.data(), cols);
          gemm::pack_b(rows_tile.data(), int64_t{1}, cols, width, krows, packed_cols.data());
        }
        gemm::multiply_packed(packed_gy.data(), packed_cols.data(), 0, m_end - m_begin, krows, width, out, g.K,
                              r != r_begin);
      }
    }
  }
  if (parts > 1) {
    const int64_t total = g.Co * g.K;
#pragma omp parallel for if (parallel) schedule(static)
    for (int64_t i = 0; i < total; ++i) {
      T s = pgw[i];
      for (const auto& p : partial) s += p.data()[i];
      pgw[i] = s;
    }
  }
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params, Tensor& y) {
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) { forward_impl<decltype(tag)>(x, weight, bias, params, y); });
}

void conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const Conv2dParams& params, Tensor& grad_x) {
  dispatch_floating(grad_y.dtype(), "conv2d_backward_input",
                    [&](auto tag) { backward_input_impl<decltype(tag)>(grad_y, weight, params, grad_x); });
}

void conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const Conv2dParams& params, Tensor& grad_w) {
  dispatch_floating(grad_y.dtype(), "conv2d_backward_weight",
                    [&](auto tag) { backward_weight_impl<decltype(tag)>(grad_y, x, params, grad_w); });
}

}  // namespace isrn::cpu
