// CPU convolution: forward, gradient for the input, gradient for the weight, all as GEMMs on the
// register-blocked micro-kernel of cpu/gemm.hpp.
//
// Notation: x [N, C, H, W], w [Co, C, KH, KW], y [N, Co, OH, OW]; K = C*KH*KW rows of the column
// matrix (k = (c*KH + kh)*KW + kw), J = OH*OW columns (j = oh*OW + ow), col[k][j] = the input value
// under tap (kh, kw) of output pixel j (0 in padding).
//   forward:          y_n  = w[Co, K] · col_n[K, J]            (+ bias)
//   backward input:   dx_n = col2im(w^T[K, Co] · dy_n[Co, J])
//   backward weight:  dw   = Σ_n dy_n[Co, J] · col_n^T[J, K]
// The forward GEMM gets its columns one of three ways:
//   pointwise  1x1, stride 1, no padding: col_n is x_n itself (a direct GEMM, no im2col).
//   implicit   whenever output rows fill at least 3/4 of the micro-kernel's NR lanes: for NR outputs
//              of one row, row k of the column block is NR consecutive elements of the input's
//              zero-padded stride phases, found through a table of K offsets; the micro-kernel reads
//              them in place and nothing is im2col'ed.
//   im2col     otherwise (narrow maps): tiles of output columns are im2col'ed straight into the packed
//              layout, sized so a tile stays in L2.
// The input gradient of a stride-1 convolution is itself a stride-1 convolution of dy with the
// flipped, transposed weight, and runs as one; other strides use GEMM + col2im. The weight gradient
// reads col in place as well (gemm::gathered_rows_kernel) and transposes only dy.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend.hpp"
#include "widen_bf16.hpp"
#include "cpu/gemm.hpp"
#include "cpu/parallel.hpp"

namespace isrn::cpu {

namespace {

using gemm::AOperand;
using gemm::Blocking;
using gemm::BLayout;

// Bytes of packed column tile a thread works on at once: half of a 2 MB L2, leaving room for the
// weight block the GEMM streams beside it.
constexpr int64_t kTileBytes = int64_t{1} << 20;
// Below this many multiply-adds (about 10 µs on one core) a convolution runs on one thread. A parallel
// region costs about a microsecond when the other thread is spinning, but a whole scheduler time slice when
// another process holds its core: regions that save little are not worth that risk.
constexpr int64_t kParallelMacs = int64_t{1} << 20;
// The copies around the GEMMs (padding, phase splitting, packing, transposing) use the threads only from
// this many elements on; below it they take a few microseconds.
constexpr int64_t kParallelCopy = int64_t{1} << 16;
// Packing the weight costs about two passes over it; it pays once the packed copy feeds this many
// column blocks. Below that the micro-kernel reads the weight in place (deep layers on small maps).
constexpr int64_t kPackReuse = 8;
// Images are processed in chunks whose padded (or phase-split) and transposed copies stay below this,
// bounding the per-thread scratch the forward and weight-gradient passes keep.
constexpr int64_t kChunkBytes = int64_t{32} << 20;
// Scratch slots (gemm::scratch): one buffer each per thread.
enum Slot { kPackedWeight = 0, kColumns = 1, kTile = 2, kPadded = 3 };

int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

struct Geometry {
  int64_t N, C, H, W, Co, KH, KW, OH, OW;
  int64_t sh, sw, pt, pb, pl, pr, dh, dw;
  int64_t K, J;
  // For tap column kw, the output columns whose input column lies inside the image: [ow_lo, ow_hi).
  std::vector<int64_t> ow_lo, ow_hi;

  Geometry(const Shape& x, const Shape& w, const Shape& y, const Conv2dParams& p)
      : N(x[0]), C(x[1]), H(x[2]), W(x[3]), Co(w[0]), KH(w[2]), KW(w[3]), OH(y[2]), OW(y[3]),
        sh(p.stride[0]), sw(p.stride[1]), pt(p.padding[0]), pb(p.padding[1]), pl(p.padding[2]),
        pr(p.padding[3]), dh(p.dilation[0]), dw(p.dilation[1]), K(C * KH * KW), J(OH * OW), ow_lo(KW),
        ow_hi(KW) {
    for (int64_t kw = 0; kw < KW; ++kw) {
      const int64_t shift = kw * dw - pl;  // input column = ow * sw + shift
      ow_lo[kw] = std::clamp<int64_t>(ceil_div(-shift, sw), 0, OW);
      ow_hi[kw] = std::clamp<int64_t>(ceil_div(W - shift, sw), ow_lo[kw], OW);
    }
  }
  bool is_pointwise() const {
    return KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
  }
  int64_t taps() const { return KH * KW; }
  int64_t macs() const { return N * Co * K * J; }
};

int threads_for(const Geometry& g) {
  const int threads = get_num_threads();
  return g.macs() >= kParallelMacs ? threads : 1;
}

// The convolution's threads for a copy of `elements` elements.
int copy_threads(int threads, int64_t elements) { return elements >= kParallelCopy ? threads : 1; }

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

// im2col of all channels, columns [j0, j0 + n), written straight into B panels of depth K.
template <typename T>
void im2col_packed(const T* x_n, const Geometry& g, int64_t j0, int64_t n, T* packed) {
  constexpr int64_t NR = Blocking<T>::NR;
  auto destination = [&](int64_t k, int64_t j) { return packed + (j / NR) * g.K * NR + k * NR + j % NR; };
  // Runs are split where they cross into the next NR-column panel. They are short (at most NR): plain
  // loops the compiler vectorizes beat memcpy's call overhead.
  auto copy = [&](int64_t k, int64_t j, const T* src, int64_t stride, int64_t count) {
    while (count > 0) {
      const int64_t m = std::min(count, NR - j % NR);
      T* __restrict d = destination(k, j);
      if (stride == 1 && m == NR) {
        for (int64_t i = 0; i < NR; ++i) d[i] = src[i];
      } else if (stride == 1) {
        for (int64_t i = 0; i < m; ++i) d[i] = src[i];
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
      T* __restrict d = destination(k, j);
      for (int64_t i = 0; i < m; ++i) d[i] = T(0);
      j += m;
      count -= m;
    }
  };
  walk_columns(x_n, g, 0, g.C, j0, n, copy, zero);
  // Columns past the tile's end in the last panel meet the kernel's full-width loads: keep them zero.
  if (n % NR != 0) {
    T* last = packed + (n / NR) * g.K * NR;
    for (int64_t k = 0; k < g.K; ++k) std::fill(last + k * NR + n % NR, last + (k + 1) * NR, T(0));
  }
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
void pack_a_parallel(const T* src, int64_t rs, int64_t cs, int64_t m, int64_t depth, T* dst, int threads) {
  constexpr int64_t MR = Blocking<T>::MR;
  const int64_t panels = (m + MR - 1) / MR;
  threads = copy_threads(threads, m * depth);
  parallel_for(0, panels, grain_when(threads > 1, panels), [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p)
      gemm::pack_a(src + p * MR * rs, rs, cs, std::min(MR, m - p * MR), depth, dst + p * MR * depth);
  });
}

// The weight [Co, K] as the GEMM's A: packed when it feeds at least kPackReuse column blocks.
template <typename T>
AOperand<T> weight_operand(const T* w, const Geometry& g, int64_t column_blocks, int threads) {
  if (column_blocks < kPackReuse) return AOperand<T>::row_major(w, g.K);
  T* packed = gemm::scratch<T>(kPackedWeight, gemm::packed_a_size<T>(g.Co, g.K));
  pack_a_parallel(w, g.K, int64_t{1}, g.Co, g.K, packed, threads);
  return AOperand<T>::packed_panels(packed, g.K);
}

// Rows [m_begin, m_end) of output channels for part `part` of `parts` (whole MR panels).
std::pair<int64_t, int64_t> row_range(int64_t part, int64_t parts, int64_t rows, int64_t mr) {
  const int64_t panels = (rows + mr - 1) / mr;
  return {std::min(rows, part * panels / parts * mr), std::min(rows, (part + 1) * panels / parts * mr)};
}

// At most a quarter of the micro-kernel's lanes idle at row ends: the implicit GEMM.
template <typename T>
bool use_implicit(const Geometry& g) {
  constexpr int64_t NR = Blocking<T>::NR;
  if (g.is_pointwise()) return false;
  const int64_t blocks = (g.OW + NR - 1) / NR;
  return 4 * g.OW >= 3 * blocks * NR;
}

// The zero-padded copies of images [n0, n0 + count): [count, C, H + pt + pb, W + pl + pr].
template <typename T>
void pad_images(const T* x, const Geometry& g, int64_t n0, int64_t count, T* padded, int threads) {
  const int64_t Wp = g.W + g.pl + g.pr, plane = (g.H + g.pt + g.pb) * Wp;
  threads = copy_threads(threads, count * g.C * plane);
  parallel_for(0, count * g.C, grain_when(threads > 1, count * g.C), [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) {
      T* dst = padded + p * plane;
      const T* src = x + (n0 * g.C + p) * g.H * g.W;
      std::fill_n(dst, g.pt * Wp, T(0));
      for (int64_t h = 0; h < g.H; ++h) {
        T* row = dst + (g.pt + h) * Wp;
        std::fill_n(row, g.pl, T(0));
        std::copy_n(src + h * g.W, g.W, row + g.pl);
        std::fill_n(row + g.pl + g.W, g.pr, T(0));
      }
      std::fill_n(dst + (g.pt + g.H) * Wp, g.pb * Wp, T(0));
    }
  });
}

// Offsets of each tap's first input element in a padded image: c * plane + kh * dh * Wp + kw * dw.
std::vector<int64_t> tap_offsets(const Geometry& g, int64_t count) {
  const int64_t Wp = g.W + g.pl + g.pr, plane = (g.H + g.pt + g.pb) * Wp;
  std::vector<int64_t> offsets(std::max(count, g.K), 0);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) offsets[(c * g.KH + kh) * g.KW + kw] = c * plane + kh * g.dh * Wp + kw * g.dw;
  return offsets;
}

// The zero-padded input split into stride phases: phase (ph, pw) of an image is the padded image's
// rows ph, ph + sh, ... and columns pw, pw + sw, ..., so that output (oh, ow) under tap (kh, kw)
// reads phase ((kh*dh) % sh, (kw*dw) % sw) at (oh + kh*dh / sh, ow + kw*dw / sw): consecutive outputs
// of a row read consecutive elements whatever the stride. (Stride 1: one phase, the padded image.)
// Layout [N][sh][sw][C][Hq][Wq]; phases() gives Hq, Wq.
struct Phases {
  int64_t Hq, Wq;
  int64_t plane() const { return Hq * Wq; }
};

Phases phases(const Geometry& g) {
  return {ceil_div(g.H + g.pt + g.pb, g.sh), ceil_div(g.W + g.pl + g.pr, g.sw)};
}

// Phase images of images [n0, n0 + count) into out.
template <typename T>
void phase_images(const T* x, const Geometry& g, int64_t n0, int64_t count, T* out, int threads) {
  const Phases q = phases(g);
  const int64_t planes = count * g.sh * g.sw * g.C;
  threads = copy_threads(threads, planes * q.plane());
  parallel_for(0, planes, grain_when(threads > 1, planes), [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const int64_t c = t % g.C, pw = t / g.C % g.sw, ph = t / (g.C * g.sw) % g.sh, n = n0 + t / (g.C * g.sw * g.sh);
      const T* src = x + (n * g.C + c) * g.H * g.W;
      T* dst = out + t * q.plane();
      // Phase columns j whose input column j*sw + pw - pl lies inside the image: [j_lo, j_hi).
      const int64_t j_lo = std::clamp<int64_t>(ceil_div(g.pl - pw, g.sw), 0, q.Wq);
      const int64_t j_hi = std::clamp<int64_t>(ceil_div(g.W + g.pl - pw, g.sw), j_lo, q.Wq);
      for (int64_t i = 0; i < q.Hq; ++i) {
        T* row = dst + i * q.Wq;
        const int64_t h = i * g.sh + ph - g.pt;
        if (h < 0 || h >= g.H) {
          std::fill_n(row, q.Wq, T(0));
          continue;
        }
        std::fill_n(row, j_lo, T(0));
        const T* in = src + h * g.W + j_lo * g.sw + pw - g.pl;
        if (g.sw == 1)
          std::copy_n(in, j_hi - j_lo, row + j_lo);
        else
          for (int64_t j = j_lo; j < j_hi; ++j) row[j] = in[(j - j_lo) * g.sw];
        std::fill_n(row + j_hi, q.Wq - j_hi, T(0));
      }
    }
  });
}

template <typename T>
void forward_implicit(const T* x, const T* w, const T* bias, const Geometry& g, T* y) {
  constexpr int64_t MR = Blocking<T>::MR, NR = Blocking<T>::NR, KC = Blocking<T>::KC;
  const int threads = threads_for(g);
  const Phases q = phases(g);
  const int64_t image = g.sh * g.sw * g.C * q.plane();
  const int64_t row_blocks = (g.OW + NR - 1) / NR;

  // Images go in chunks of at most kChunkBytes of phase images, with NR elements of slack at the end
  // for the last block's idle lanes.
  const int64_t chunk = std::clamp<int64_t>(kChunkBytes / (image * static_cast<int64_t>(sizeof(T))), 1, g.N);
  T* phased = gemm::scratch<T>(kPadded, chunk * image + NR);
  std::fill_n(phased + chunk * image, NR, T(0));
  std::vector<int64_t> offsets(g.K);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t rh = kh * g.dh, rw = kw * g.dw;
        const int64_t phase = (rh % g.sh) * g.sw + rw % g.sw;
        offsets[(c * g.KH + kh) * g.KW + kw] = (phase * g.C + c) * q.plane() + rh / g.sh * q.Wq + rw / g.sw;
      }

  const AOperand<T> a = weight_operand(w, g, g.N * g.OH * row_blocks, threads);
  // A task is a run of output rows of one image: enough column blocks (16) to reuse the weight block
  // it streams, and more tasks than threads when the images allow.
  const int64_t rows_per_task =
      std::max<int64_t>(1, std::min(ceil_div(16, row_blocks), chunk * g.OH / std::max(1, 4 * threads)));
  const int64_t bands = ceil_div(g.OH, rows_per_task);
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t count = std::min(chunk, g.N - n0), tasks = count * bands;
    phase_images(x, g, n0, count, phased, threads);
    const int64_t splits = tasks < threads ? std::min<int64_t>(ceil_div(g.Co, MR), ceil_div(threads, tasks)) : 1;
    parallel_for(0, tasks * splits, grain_when(threads > 1, tasks * splits), [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) {
        const int64_t n = t / splits / bands, oh0 = (t / splits % bands) * rows_per_task;
        const int64_t oh1 = std::min(g.OH, oh0 + rows_per_task);
        const auto [m_begin, m_end] = row_range(t % splits, splits, g.Co, MR);
        if (m_begin >= m_end) continue;
        T* y_n = y + (n0 + n) * g.Co * g.J;
        if (bias)
          for (int64_t o = m_begin; o < m_end; ++o)
            std::fill_n(y_n + o * g.J + oh0 * g.OW, (oh1 - oh0) * g.OW, bias[o]);
        const T* x_n = phased + n * image;
        for (int64_t k0 = 0; k0 < g.K; k0 += KC) {
          const int64_t kc = std::min(KC, g.K - k0);
          const bool accumulate = bias != nullptr || k0 > 0;
          for (int64_t oh = oh0; oh < oh1; ++oh)
            for (int64_t ow0 = 0; ow0 < g.OW; ow0 += NR) {
              const T* b = x_n + oh * q.Wq + ow0;
              const int64_t cols = std::min(NR, g.OW - ow0);
              T* c = y_n + oh * g.OW + ow0;
              gemm::for_each_row_panel<T>(a, m_begin, m_end, k0, kc,
                                          [&](auto layout, const T* ap, int64_t lda, int64_t i0, int64_t rows,
                                              int64_t d0 = 0, int64_t piece = -1) {
                                            gemm::run_micro_kernel<T, decltype(layout)::value, BLayout::Offsets>(
                                                piece < 0 ? kc : piece, ap, lda, b, offsets.data() + k0 + d0,
                                                c + i0 * g.J, g.J, rows, cols, accumulate || d0 > 0);
                                          });
            }
        }
      }
    });
  }
}

// Pointwise and im2col forward: tiles of flat output columns.
template <typename T>
void forward_tiled(const T* x, const T* w, const T* bias, const Geometry& g, T* y) {
  constexpr int64_t MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  const int threads = threads_for(g);
  const int64_t cols = tile_columns<T>(g.K * static_cast<int64_t>(sizeof(T)), g.J);
  const int64_t tiles = ceil_div(g.J, cols), tasks = g.N * tiles;
  const AOperand<T> a = weight_operand(w, g, g.N * ceil_div(g.J, NR), threads);
  // Too few tiles for the threads (small maps, deep weights): split the output channels as well.
  const int64_t splits = tasks < threads ? std::min<int64_t>(ceil_div(g.Co, MR), ceil_div(threads, tasks)) : 1;
  const bool pointwise = g.is_pointwise();
  parallel_for(0, tasks * splits, grain_when(threads > 1, tasks * splits), [&](int64_t first, int64_t last) {
    T* packed_cols = gemm::scratch<T>(kColumns, gemm::packed_b_size<T>(g.K, cols));
    for (int64_t t = first; t < last; ++t) {
      const int64_t task = t / splits;
      const int64_t n = task / tiles, j0 = (task % tiles) * cols, width = std::min(cols, g.J - j0);
      const auto [m_begin, m_end] = row_range(t % splits, splits, g.Co, MR);
      if (m_begin >= m_end) continue;
      const T* x_n = x + n * g.C * g.H * g.W;
      if (pointwise)
        gemm::pack_b(x_n + j0, g.J, int64_t{1}, g.K, width, packed_cols);
      else
        im2col_packed(x_n, g, j0, width, packed_cols);
      T* out = y + n * g.Co * g.J + j0;
      if (bias)
        for (int64_t o = m_begin; o < m_end; ++o) std::fill_n(out + o * g.J, width, bias[o]);
      gemm::multiply(a, packed_cols, m_begin, m_end, width, g.K, out, g.J, bias != nullptr);
    }
  });
}

template <typename T>
void forward_core(const T* x, const T* w, const T* bias, const Geometry& g, T* y) {
  if (use_implicit<T>(g))
    forward_implicit(x, w, bias, g, y);
  else
    forward_tiled(x, w, bias, g, y);
}

// dx of a stride-1 convolution is the stride-1 convolution of dy, padded by the kernel's extent minus
// the forward padding, with w'[c][co][kh][kw] = w[co][c][KH-1-kh][KW-1-kw]. Returns false where that
// padding would be negative (padding wider than the dilated kernel).
template <typename T>
bool backward_input_as_forward(const T* gy, const T* w, const Geometry& g, T* gx) {
  const int64_t eh = g.dh * (g.KH - 1), ew = g.dw * (g.KW - 1);
  if (g.sh != 1 || g.sw != 1 || g.pt > eh || g.pb > eh || g.pl > ew || g.pr > ew) return false;
  Conv2dParams flipped;
  flipped.padding = {eh - g.pt, eh - g.pb, ew - g.pl, ew - g.pr};
  flipped.dilation = {g.dh, g.dw};
  const Geometry fg({g.N, g.Co, g.OH, g.OW}, {g.C, g.Co, g.KH, g.KW}, {g.N, g.C, g.H, g.W}, flipped);
  if (!use_implicit<T>(fg) && !fg.is_pointwise()) return false;  // the col2im path is as good then
  const int64_t taps = g.taps();
  T* wt = gemm::scratch<T>(kTile, g.Co * g.K);
  const int threads = copy_threads(threads_for(g), g.Co * g.K);
  parallel_for(0, g.C, grain_when(threads > 1, g.C), [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c)
      for (int64_t co = 0; co < g.Co; ++co)
        for (int64_t t = 0; t < taps; ++t) wt[(c * g.Co + co) * taps + t] = w[(co * g.C + c) * taps + taps - 1 - t];
  });
  forward_core(gy, wt, static_cast<const T*>(nullptr), fg, gx);
  return true;
}

// dx for strides above 1 (and stride-1 cases backward_input_as_forward declines): per image and
// group of input channels, dcol = w^T · dy tile by tile, scattered back with col2im.
template <typename T>
void backward_input_col2im(const T* gy, const T* w, const Geometry& g, T* gx) {
  constexpr int64_t MR = Blocking<T>::MR;
  const int threads = threads_for(g);
  // col2im of different tiles of one image overlaps wherever windows overlap, so images and groups
  // of input channels (disjoint in dx) are the parallel tasks; tiles run in order inside a task.
  int64_t groups = 1;
  if (threads > 1 && g.N < 2 * threads) {
    const int64_t want = ceil_div(2 * threads, g.N);
    groups = std::clamp<int64_t>(std::min(want, g.K / (4 * MR)), 1, g.C);
  }
  const int64_t per_group = ceil_div(g.C, groups);
  groups = ceil_div(g.C, per_group);
  const int64_t group_rows = per_group * g.taps();
  const int64_t cols = tile_columns<T>((g.Co + group_rows) * static_cast<int64_t>(sizeof(T)), g.J);

  // A = w^T [K, Co], packed per channel group. (Read in place it would be walked down its columns,
  // one cache line and, for deep layers, one page per step.)
  std::vector<int64_t> offset(groups + 1, 0);
  for (int64_t gi = 0; gi < groups; ++gi)
    offset[gi + 1] = offset[gi] + gemm::packed_a_size<T>((std::min(g.C, (gi + 1) * per_group) - gi * per_group) * g.taps(), g.Co);
  T* packed_w = gemm::scratch<T>(kPackedWeight, offset[groups]);
  const bool pack_in_parallel = threads > 1 && g.K * g.Co >= kParallelCopy;
  parallel_for(0, groups, grain_when(pack_in_parallel, groups), [&](int64_t first, int64_t last) {
    for (int64_t gi = first; gi < last; ++gi) {
      const int64_t r0 = gi * group_rows, rows = (std::min(g.C, (gi + 1) * per_group) - gi * per_group) * g.taps();
      gemm::pack_a(w + r0, int64_t{1}, g.K, rows, g.Co, packed_w + offset[gi]);
    }
  });

  parallel_for(0, g.N * groups, grain_when(threads > 1, g.N * groups), [&](int64_t first, int64_t last) {
    T* packed_gy = gemm::scratch<T>(kColumns, gemm::packed_b_size<T>(g.Co, cols));
    T* tile = gemm::scratch<T>(kTile, group_rows * cols);
    for (int64_t t = first; t < last; ++t) {
      const int64_t n = t / groups, gi = t % groups;
      const int64_t c0 = gi * per_group, c1 = std::min(g.C, c0 + per_group), rows = (c1 - c0) * g.taps();
      const AOperand<T> a = AOperand<T>::packed_panels(packed_w + offset[gi], g.Co);
      const T* gy_n = gy + n * g.Co * g.J;
      T* gx_n = gx + n * g.C * g.H * g.W;
      std::fill(gx_n + c0 * g.H * g.W, gx_n + c1 * g.H * g.W, T(0));
      for (int64_t j0 = 0; j0 < g.J; j0 += cols) {
        const int64_t width = std::min(cols, g.J - j0);
        gemm::pack_b(gy_n + j0, g.J, int64_t{1}, g.Co, width, packed_gy);
        gemm::multiply(a, packed_gy, 0, rows, width, g.Co, tile, cols, false);
        col2im_add(tile, cols, g, c0, c1, j0, width, gx_n);
      }
    }
  });
}

// dst[j * width + c] = src[c * J + j] for j in [j0, j1), c < cols; lanes c >= cols are zero.
template <typename T>
void transpose_rows(const T* src, int64_t J, int64_t cols, int64_t width, int64_t j0, int64_t j1, T* dst) {
  constexpr int64_t W = gemm::Simd<T>::kWidth;
  int64_t j = j0;
  if (cols == width)
    for (; j + W <= j1; j += W)
      for (int64_t c = 0; c < width; c += W) gemm::transpose_block(src + c * J + j, J, dst + j * width + c, width);
  for (; j < j1; ++j) {
    int64_t c = 0;
    for (; c < cols; ++c) dst[j * width + c] = src[c * J + j];
    for (; c < width; ++c) dst[j * width + c] = T(0);
  }
}

// dw^T [K, Co] = Σ_n col_n [K, J] · dy_n^T [J, Co], with col_n read in place from the padded input
// (gemm::gathered_rows_kernel: rows = 8 taps, depth = every output pixel, segment = output row) and
// dy_n transposed into panels of output channels. Only dy is transposed, never the K x J column
// matrix, and each taps x channels block keeps its sums in registers over a whole image. Blocks are
// disjoint in dw, so they are the parallel tasks; images are taken in chunks that bound the padded
// and transposed copies.
template <typename T>
void backward_weight_core(const T* gy, const T* x, const Geometry& g, T* gw) {
  constexpr int64_t MR = Blocking<T>::MR, NR = Blocking<T>::NR, W = gemm::Simd<T>::kWidth;
  constexpr int64_t kTransposeGrain = 1024;
  const int threads = threads_for(g);
  const int64_t Wp = g.W + g.pl + g.pr, plane = (g.H + g.pt + g.pb) * Wp;
  // Panels of one vector of channels when that holds them all (no idle lanes), else of NR.
  const int64_t width = g.Co <= W ? W : NR;
  const int64_t tap_panels = ceil_div(g.K, MR), co_panels = ceil_div(g.Co, width), co_padded = co_panels * width;
  // Rows past K in the last tap panel read tap 0 (a valid address); their sums are dropped.
  const std::vector<int64_t> offsets = tap_offsets(g, tap_panels * MR);
  const int64_t image_bytes = (g.C * plane + co_padded * g.J) * static_cast<int64_t>(sizeof(T));
  const int64_t chunk = std::clamp<int64_t>(kChunkBytes / image_bytes, 1, g.N);
  // Without padding the padded image is the input itself (1x1 convolutions, mostly): read it in place.
  const bool unpadded = g.pt == 0 && g.pb == 0 && g.pl == 0 && g.pr == 0;
  T* padded = unpadded ? nullptr : gemm::scratch<T>(kPadded, chunk * g.C * plane);
  T* dy_t = gemm::scratch<T>(kColumns, chunk * co_padded * g.J);
  const int64_t j_pieces = ceil_div(g.J, kTransposeGrain);
  // Output rows per band: a band's piece of one dy panel fits in half a megabyte.
  const int64_t band_rows = std::max<int64_t>(1, (int64_t{1} << 19) / (g.OW * width * static_cast<int64_t>(sizeof(T))));

  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t count = std::min(chunk, g.N - n0);
    const T* images = x + n0 * g.C * plane;
    if (!unpadded) {
      pad_images(x, g, n0, count, padded, threads);
      images = padded;
    }
    const int transpose_threads = copy_threads(threads, count * co_padded * g.J);
    const int64_t transposes = count * co_panels * j_pieces;
    parallel_for(0, transposes, grain_when(transpose_threads > 1, transposes), [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) {
        const int64_t n = t / (co_panels * j_pieces), q = t / j_pieces % co_panels, piece = t % j_pieces;
        transpose_rows(gy + ((n0 + n) * g.Co + q * width) * g.J, g.J, std::min(width, g.Co - q * width), width,
                       piece * kTransposeGrain, std::min(g.J, (piece + 1) * kTransposeGrain),
                       dy_t + (n * co_panels + q) * width * g.J);
      }
    });
    // Each piece (one per thread) owns a contiguous run of blocks (channel panel major, so its blocks
    // share dy panels) and walks the images' output rows in bands, every block of the run consuming a
    // band while its piece of dy_t is still in L2; the blocks' sums wait in the running thread's tiles.
    parallel_chunks(threads, [&](int64_t me) {
      const int64_t blocks = co_panels * tap_panels, team = threads;
      const int64_t b0 = me * blocks / team, b1 = (me + 1) * blocks / team;
      T* tiles = gemm::scratch<T>(kTile, std::max<int64_t>(b1 - b0, 1) * MR * NR);
      for (int64_t n = 0; n < count; ++n) {
        const T* base = images + n * g.C * plane;
        for (int64_t oh0 = 0; oh0 < g.OH; oh0 += band_rows) {
          const int64_t rows_here = std::min(band_rows, g.OH - oh0);
          for (int64_t blk = b0; blk < b1; ++blk) {
            const int64_t q = blk / tap_panels, i = blk % tap_panels;
            const T* b = dy_t + (n * co_panels + q) * width * g.J + oh0 * g.OW * width;
            T* tile = tiles + (blk - b0) * MR * NR;
            const bool accumulate = n > 0 || oh0 > 0;
            if (width == W)
              gemm::gathered_rows_kernel<T, 1>(base + oh0 * g.sh * Wp, offsets.data() + i * MR, g.sh * Wp, g.sw,
                                               rows_here, g.OW, b, tile, accumulate);
            else
              gemm::gathered_rows_kernel<T, NR / W>(base + oh0 * g.sh * Wp, offsets.data() + i * MR, g.sh * Wp, g.sw,
                                                    rows_here, g.OW, b, tile, accumulate);
          }
        }
      }
      // A tile holds dw^T: rows are taps, columns output channels, rows `width` apart.
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t q = blk / tap_panels, i = blk % tap_panels;
        const int64_t cols = std::min(width, g.Co - q * width), rows = std::min(MR, g.K - i * MR);
        const T* tile = tiles + (blk - b0) * MR * NR;
        for (int64_t c = 0; c < cols; ++c) {
          T* out = gw + (q * width + c) * g.K + i * MR;
          if (n0 == 0)
            for (int64_t r = 0; r < rows; ++r) out[r] = tile[r * width + c];
          else
            for (int64_t r = 0; r < rows; ++r) out[r] += tile[r * width + c];
        }
      }
    });
  }
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params, Tensor& y) {
  if (isrn::detail::run_widened(x, weight, y, [&](const Tensor& a, const Tensor& b, Tensor& out) {
        cpu::conv2d_forward(a, b, Tensor(), params, out);  // a bfloat16 convolution has no bias (kernel_list.inc)
      }))
    return;
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    forward_core(x.data_ptr<T>(), weight.data_ptr<T>(), bias.defined() ? bias.data_ptr<T>() : nullptr,
                 Geometry(x.shape(), weight.shape(), y.shape(), params), y.data_ptr<T>());
  });
}

void conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const Conv2dParams& params, Tensor& grad_x) {
  if (isrn::detail::run_widened(grad_y, weight, grad_x, [&](const Tensor& a, const Tensor& b, Tensor& out) {
        cpu::conv2d_backward_input(a, b, params, out);
      }))
    return;
  dispatch_floating(grad_y.dtype(), "conv2d_backward_input", [&](auto tag) {
    using T = decltype(tag);
    const Geometry g(grad_x.shape(), weight.shape(), grad_y.shape(), params);
    if (!backward_input_as_forward(grad_y.data_ptr<T>(), weight.data_ptr<T>(), g, grad_x.data_ptr<T>()))
      backward_input_col2im(grad_y.data_ptr<T>(), weight.data_ptr<T>(), g, grad_x.data_ptr<T>());
  });
}

void conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const Conv2dParams& params, Tensor& grad_w) {
  if (isrn::detail::run_widened(grad_y, x, grad_w, [&](const Tensor& a, const Tensor& b, Tensor& out) {
        cpu::conv2d_backward_weight(a, b, params, out);
      }))
    return;
  dispatch_floating(grad_y.dtype(), "conv2d_backward_weight", [&](auto tag) {
    using T = decltype(tag);
    backward_weight_core(grad_y.data_ptr<T>(), x.data_ptr<T>(), Geometry(x.shape(), grad_w.shape(), grad_y.shape(), params),
                         grad_w.data_ptr<T>());
  });
}

}  // namespace isrn::cpu
