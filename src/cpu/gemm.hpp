#pragma once
// The GEMM machinery of the CPU kernels (convolution first): a register-blocked micro-kernel
// (MR x NR tile of C in vector registers, C (+)= A·B over a block of the depth), operand packing,
// and a cache-blocked driver. The micro-kernel reads A from packed panels or in place (row-major),
// and B from packed panels or through a table of row offsets (implicit-GEMM convolution: rows are
// shifted rows of the input); gathered_rows_kernel serves the convolution weight gradient.
//
// Why not Eigen's GEMM: on this project's AVX-512 machines Eigen 3.4 reaches about 45% of the FMA
// peak for float (76 GFLOP/s on one core where oneDNN's convolutions reach 165), which alone puts
// every compute-bound convolution past 1.5x of PyTorch; owning the operand layout is also what lets
// a convolution skip im2col. The vector code is written for AVX-512 and AVX2+FMA, with a portable
// fallback for other targets.
//
// Packed layout. An A panel holds MR rows of A over the whole depth, k-major: panel[k * MR + r]. A
// B panel holds NR columns over the whole depth: panel[k * NR + c]. Rows/columns past the matrix
// edge are zero. Panel p of a packed operand of depth `depth` starts at p * MR * depth (resp.
// NR * depth), so the depth block [k0, k0 + kc) of a panel is the contiguous range at k0 * MR (k0 * NR).
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

namespace isrn::cpu::gemm {

// --- SIMD vocabulary: one vector type per element type, chosen by the instruction set compiled for.
template <typename T>
struct Simd;

#if defined(__AVX512F__)
template <>
struct Simd<float> {
  using V = __m512;
  static constexpr int kWidth = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
};
template <>
struct Simd<double> {
  using V = __m512d;
  static constexpr int kWidth = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static V broadcast(const double* p) { return _mm512_set1_pd(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
};
#elif defined(__AVX2__) && defined(__FMA__)
template <>
struct Simd<float> {
  using V = __m256;
  static constexpr int kWidth = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
};
template <>
struct Simd<double> {
  using V = __m256d;
  static constexpr int kWidth = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V broadcast(const double* p) { return _mm256_broadcast_sd(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
};
#else
// Portable fallback: short arrays the compiler vectorizes with whatever the target has.
template <typename T>
struct Simd {
  static constexpr int kWidth = 4;
  struct V {
    T v[kWidth];
  };
  static V zero() { return V{}; }
  static V load(const T* p) {
    V r;
    for (int i = 0; i < kWidth; ++i) r.v[i] = p[i];
    return r;
  }
  static void store(T* p, V v) {
    for (int i = 0; i < kWidth; ++i) p[i] = v.v[i];
  }
  static V broadcast(const T* p) {
    V r;
    for (int i = 0; i < kWidth; ++i) r.v[i] = *p;
    return r;
  }
  static V fma(V a, V b, V c) {
    for (int i = 0; i < kWidth; ++i) c.v[i] += a.v[i] * b.v[i];
    return c;
  }
  static V add(V a, V b) {
    for (int i = 0; i < kWidth; ++i) a.v[i] += b.v[i];
    return a;
  }
};
#endif

// Register blocking: an MR x NR tile of C lives in MR * NR / width vector registers while the
// micro-kernel streams one A panel and one B panel. KC bounds the depth streamed per pass so a B
// micro-panel (KC x NR) stays in L1 and the A block (m x KC) in L2.
template <typename T>
struct Blocking {
  static constexpr int kVectors = 2;  // vectors per C row: NR = 2 * width
  static constexpr int64_t NR = kVectors * Simd<T>::kWidth;
#if defined(__AVX512F__)
  // 16 accumulators + 2 B vectors + 1 broadcast of 32 registers. 12 rows measured no faster, and 8
  // divides every channel count of the detector, so no panel is partly wasted.
  static constexpr int64_t MR = 8;
#elif defined(__AVX2__) && defined(__FMA__)
  static constexpr int64_t MR = 6;  // 12 accumulators + 2 B vectors + 1 broadcast of 16 registers
#else
  static constexpr int64_t MR = 4;
#endif
  static constexpr int64_t KC = 1024 / static_cast<int64_t>(sizeof(T));  // 256 floats, 128 doubles
};

constexpr int64_t round_up(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

template <typename T>
int64_t packed_a_size(int64_t m, int64_t depth) {
  return round_up(m, Blocking<T>::MR) * depth;
}
template <typename T>
int64_t packed_b_size(int64_t depth, int64_t n) {
  return round_up(n, Blocking<T>::NR) * depth;
}

// A 64-byte aligned scratch array, uninitialized.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(int64_t count) { resize(count); }
  void resize(int64_t count) {
    if (count <= capacity_) return;
    const size_t bytes = (static_cast<size_t>(count) * sizeof(T) + 63) / 64 * 64;
    data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
    if (!data_) throw std::bad_alloc();
    capacity_ = count;
  }
  T* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  int64_t capacity_ = 0;
};

// dst[j * ds + i] = src[i * ss + j] for a W x W block (W = Simd<T>::kWidth).
#if defined(__AVX512F__)
// GCC 12's AVX-512 shuffle intrinsics pass _mm512_undefined_*() as the masked-off source and then
// warn that it is uninitialized (GCC bug 105593); the operations use no masks.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
inline void transpose_block(const float* src, int64_t ss, float* dst, int64_t ds) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ss);
  for (int i = 0; i < 8; ++i) {  // 2x2 blocks of 32-bit elements within each 128-bit lane
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // 4x4 blocks: lane l of r[4i + q] = column 4l + q of rows 4i..4i+3
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int q = 0; q < 4; ++q) {  // gather lane l of r[q], r[4+q], r[8+q], r[12+q] into column 4l + q
    const __m512 u0 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x44), u1 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xEE);
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x44);
    const __m512 u3 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xEE);
    _mm512_storeu_ps(dst + (0 + q) * ds, _mm512_shuffle_f32x4(u0, u2, 0x88));
    _mm512_storeu_ps(dst + (4 + q) * ds, _mm512_shuffle_f32x4(u0, u2, 0xDD));
    _mm512_storeu_ps(dst + (8 + q) * ds, _mm512_shuffle_f32x4(u1, u3, 0x88));
    _mm512_storeu_ps(dst + (12 + q) * ds, _mm512_shuffle_f32x4(u1, u3, 0xDD));
  }
}
inline void transpose_block(const double* src, int64_t ss, double* dst, int64_t ds) {
  __m512d r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm512_loadu_pd(src + i * ss);
  for (int i = 0; i < 4; ++i) {  // lane l of t[2i + q] = column 2l + q of rows 2i, 2i+1
    t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
  }
  for (int q = 0; q < 2; ++q) {
    const __m512d u0 = _mm512_shuffle_f64x2(t[q], t[2 + q], 0x44), u1 = _mm512_shuffle_f64x2(t[q], t[2 + q], 0xEE);
    const __m512d u2 = _mm512_shuffle_f64x2(t[4 + q], t[6 + q], 0x44);
    const __m512d u3 = _mm512_shuffle_f64x2(t[4 + q], t[6 + q], 0xEE);
    _mm512_storeu_pd(dst + (0 + q) * ds, _mm512_shuffle_f64x2(u0, u2, 0x88));
    _mm512_storeu_pd(dst + (2 + q) * ds, _mm512_shuffle_f64x2(u0, u2, 0xDD));
    _mm512_storeu_pd(dst + (4 + q) * ds, _mm512_shuffle_f64x2(u1, u3, 0x88));
    _mm512_storeu_pd(dst + (6 + q) * ds, _mm512_shuffle_f64x2(u1, u3, 0xDD));
  }
}
#pragma GCC diagnostic pop
#else
template <typename T>
void transpose_block(const T* src, int64_t ss, T* dst, int64_t ds) {
  constexpr int W = Simd<T>::kWidth;
  for (int i = 0; i < W; ++i)
    for (int j = 0; j < W; ++j) dst[j * ds + i] = src[i * ss + j];
}
#endif

// One full B panel from a transposed source: panel[k * NR + c] = src[c * ld + k], k in [0, depth).
template <typename T>
void pack_b_panel_transposed(const T* src, int64_t ld, int64_t depth, T* panel) {
  constexpr int64_t NR = Blocking<T>::NR, W = Simd<T>::kWidth;
  int64_t k = 0;
  for (; k + W <= depth; k += W)
    for (int64_t c = 0; c < NR; c += W) transpose_block(src + c * ld + k, ld, panel + k * NR + c, NR);
  for (; k < depth; ++k)
    for (int64_t c = 0; c < NR; ++c) panel[k * NR + c] = src[c * ld + k];
}

// Packs rows [0, m) of A(i, k) = src[i * row_stride + k * col_stride], k in [0, depth), into A panels.
template <typename T>
void pack_a(const T* src, int64_t row_stride, int64_t col_stride, int64_t m, int64_t depth, T* dst) {
  constexpr int64_t MR = Blocking<T>::MR;
  int64_t i0 = 0;
  if (row_stride == 1) {
    // A is the transpose of a row-major matrix: walk that matrix's rows once, in order, handing each
    // MR-element piece to its panel (panel by panel, every row would be a strided pass over memory).
    const int64_t full = m / MR * MR;
    for (int64_t k = 0; k < depth; ++k) {
      const T* row = src + k * col_stride;
      for (int64_t i = 0; i < full; i += MR)
        for (int64_t r = 0; r < MR; ++r) dst[i * depth + k * MR + r] = row[i + r];
    }
    i0 = full;
  }
  for (; i0 < m; i0 += MR) {
    const int64_t rows = std::min(MR, m - i0);
    T* panel = dst + i0 * depth;
    const T* base = src + i0 * row_stride;
    if (col_stride == 1 && rows == MR) {
      for (int64_t k = 0; k < depth; ++k)
        for (int64_t r = 0; r < MR; ++r) panel[k * MR + r] = base[r * row_stride + k];
    } else {
      for (int64_t k = 0; k < depth; ++k) {
        int64_t r = 0;
        for (; r < rows; ++r) panel[k * MR + r] = base[r * row_stride + k * col_stride];
        for (; r < MR; ++r) panel[k * MR + r] = T(0);
      }
    }
  }
}

// Packs columns [0, n) of B(k, j) = src[k * row_stride + j * col_stride], k in [0, depth), into B panels.
template <typename T>
void pack_b(const T* src, int64_t row_stride, int64_t col_stride, int64_t depth, int64_t n, T* dst) {
  constexpr int64_t NR = Blocking<T>::NR;
  for (int64_t j0 = 0; j0 < n; j0 += NR) {
    const int64_t cols = std::min(NR, n - j0);
    T* panel = dst + j0 * depth;
    const T* base = src + j0 * col_stride;
    if (col_stride == 1 && cols == NR) {
      for (int64_t k = 0; k < depth; ++k) std::memcpy(panel + k * NR, base + k * row_stride, NR * sizeof(T));
    } else if (row_stride == 1 && cols == NR) {
      pack_b_panel_transposed(base, col_stride, depth, panel);
    } else {
      for (int64_t k = 0; k < depth; ++k) {
        int64_t c = 0;
        for (; c < cols; ++c) panel[k * NR + c] = base[k * row_stride + c * col_stride];
        for (; c < NR; ++c) panel[k * NR + c] = T(0);
      }
    }
  }
}

// Per-thread scratch that outlives a call (the pool's worker threads persist), so tiles and packed
// operands are not allocated and page-faulted afresh on every call. Contents are undefined on entry.
template <typename T>
T* scratch(int slot, int64_t count) {
  static thread_local Buffer<T> buffers[4];
  buffers[slot].resize(count);
  return buffers[slot].data();
}

// How the micro-kernel reads A: column-major (element (r, k) at a[k * lda + r]; packed panels are the
// case lda = MR), or row-major (a[r * lda + k]).
enum class ALayout { Columns, Rows };
// How it reads B: from a packed panel (row k at b + k * NR), or through a table of row offsets
// (row k at b + offsets[k]) for implicit-GEMM convolution, where the rows are shifted input rows.
enum class BLayout { Packed, Offsets };

// C[0:m, 0:n] (ldc) = (accumulate ? C : 0) + Σ_k A(r, k) B(k, c) over kc steps; m <= MR,
// n <= NV * width. Every A row r < MR and every lane of NV B vectors is read: callers supply full
// panels (edge rows padded). NV < kVectors serves narrow column blocks without idle lanes.
template <typename T, ALayout AL, BLayout BL, int NV = Blocking<T>::kVectors>
inline void micro_kernel(int64_t kc, const T* __restrict a, int64_t lda, const T* __restrict b,
                         const int64_t* __restrict b_offsets, T* __restrict c, int64_t ldc, int64_t m, int64_t n,
                         bool accumulate) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int MR = static_cast<int>(Blocking<T>::MR);
  constexpr int64_t NR = Blocking<T>::NR;  // the packed panel's row length, whatever NV
  constexpr int W = S::kWidth;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = S::zero();
  for (int64_t k = 0; k < kc; ++k) {
    const T* brow = BL == BLayout::Packed ? b + k * NR : b + b_offsets[k];
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = S::load(brow + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const V av = S::broadcast(AL == ALayout::Columns ? a + k * lda + r : a + r * lda + k);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = S::fma(av, bv[v], acc[r][v]);
    }
  }
  if (m == MR && n == NV * W) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        T* p = c + r * ldc + v * W;
        S::store(p, accumulate ? S::add(S::load(p), acc[r][v]) : acc[r][v]);
      }
    return;
  }
  alignas(64) T tile[MR * NV * W];  // NOLINT: a partial tile goes through memory
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) S::store(tile + r * NV * W + v * W, acc[r][v]);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j)
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + tile[r * NV * W + j] : tile[r * NV * W + j];
}

// A micro-kernel whose A rows are gathered in place: row r is the strided sequence
// base + s * segment_step + a_offsets[r] + p * element_step over `segments` segments of `length`
// elements (p < length), and the depth runs over all of them in order, B's rows NV * width apart.
// This is the convolution weight gradient's product dw^T = col · dy^T with col read straight from
// the padded input (rows = taps, segments = output rows).
// tile (MR x NV*width, row-major) = (accumulate ? tile : 0) + A·B.
template <typename T, int NV>
void gathered_rows_kernel(const T* base, const int64_t* a_offsets, int64_t segment_step, int64_t element_step,
                          int64_t segments, int64_t length, const T* __restrict b, T* __restrict tile, bool accumulate) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int MR = static_cast<int>(Blocking<T>::MR);
  constexpr int W = S::kWidth;
  // One B vector per step leaves each accumulator one FMA per step, so the FMA latency would bound
  // the loop: alternate two banks over even and odd steps instead.
  constexpr int kBanks = NV == 1 ? 2 : 1;
  V acc[kBanks][MR][NV];
#pragma GCC unroll 2
  for (int bank = 0; bank < kBanks; ++bank)
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[bank][r][v] = accumulate && bank == 0 ? S::load(tile + r * NV * W + v * W) : S::zero();
  for (int64_t s = 0; s < segments; ++s) {
    const T* rows[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) rows[r] = base + s * segment_step + a_offsets[r];
    int64_t p = 0;
    for (; p + kBanks <= length; p += kBanks) {
#pragma GCC unroll 2
      for (int bank = 0; bank < kBanks; ++bank) {
        V bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * W);
        b += NV * W;
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
          const V av = S::broadcast(rows[r] + (p + bank) * element_step);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[bank][r][v] = S::fma(av, bv[v], acc[bank][r][v]);
        }
      }
    }
    for (; p < length; ++p) {
      V bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * W);
      b += NV * W;
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const V av = S::broadcast(rows[r] + p * element_step);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[0][r][v] = S::fma(av, bv[v], acc[0][r][v]);
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      V sum = acc[0][r][v];
      if constexpr (kBanks == 2) sum = S::add(sum, acc[1][r][v]);
      S::store(tile + r * NV * W + v * W, sum);
    }
}

// The micro-kernel with as many B vectors as n needs.
template <typename T, ALayout AL, BLayout BL>
inline void run_micro_kernel(int64_t kc, const T* a, int64_t lda, const T* b, const int64_t* b_offsets, T* c,
                             int64_t ldc, int64_t m, int64_t n, bool accumulate) {
  if (n <= Simd<T>::kWidth)
    micro_kernel<T, AL, BL, 1>(kc, a, lda, b, b_offsets, c, ldc, m, n, accumulate);
  else
    micro_kernel<T, AL, BL>(kc, a, lda, b, b_offsets, c, ldc, m, n, accumulate);
}

// The A operand of a product: packed panels (from pack_a, depth `depth`), or a row-major matrix read
// in place (worth it when each A element is used by few column blocks: packing would cost more than
// the reads it saves).
template <typename T>
struct AOperand {
  const T* data;
  int64_t ld;  // row-major: leading dimension; packed: the packed depth
  bool packed;

  static AOperand packed_panels(const T* panels, int64_t depth) { return {panels, depth, true}; }
  static AOperand row_major(const T* a, int64_t lda) { return {a, lda, false}; }
};

// Runs the micro-kernel over rows [m_begin, m_end) (m_begin a multiple of MR) of A and one block of
// columns, for depth [k0, k0 + kc). A row-major A's partial last panel is copied into a padded panel
// first, since the kernel reads all MR rows. kernel(layout, a, lda, i0, rows[, d0, piece]).
template <typename T, typename Fn>
void for_each_row_panel(const AOperand<T>& a, int64_t m_begin, int64_t m_end, int64_t k0, int64_t kc, Fn&& kernel) {
  constexpr int64_t MR = Blocking<T>::MR;
  constexpr int64_t kPiece = 256;
  for (int64_t i0 = m_begin; i0 < m_end; i0 += MR) {
    const int64_t rows = std::min(MR, m_end - i0);
    if (a.packed) {
      kernel(std::integral_constant<ALayout, ALayout::Columns>{}, a.data + i0 * a.ld + k0 * MR, MR, i0, rows);
    } else if (rows == MR) {
      kernel(std::integral_constant<ALayout, ALayout::Rows>{}, a.data + i0 * a.ld + k0, a.ld, i0, rows);
    } else {
      alignas(64) T panel[MR * kPiece];
      for (int64_t d0 = 0; d0 < kc; d0 += kPiece) {  // kc may exceed the stack panel: go in pieces
        const int64_t piece = std::min(kPiece, kc - d0);
        pack_a(a.data + i0 * a.ld + k0 + d0, a.ld, int64_t{1}, rows, piece, panel);
        kernel(std::integral_constant<ALayout, ALayout::Columns>{}, panel, MR, i0, rows, d0, piece);
      }
    }
  }
}

// C (ldc) = (accumulate ? C : 0) + A·B for C rows [m_begin, m_end) (m_begin a multiple of MR) and
// n columns, B packed with depth `depth`. Single-threaded: callers parallelize over independent calls.
template <typename T>
void multiply(const AOperand<T>& a, const T* b, int64_t m_begin, int64_t m_end, int64_t n, int64_t depth, T* c,
              int64_t ldc, bool accumulate) {
  constexpr int64_t NR = Blocking<T>::NR, KC = Blocking<T>::KC;
  if (depth == 0) {
    if (!accumulate)
      for (int64_t i = m_begin; i < m_end; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  for (int64_t k0 = 0; k0 < depth; k0 += KC) {
    const int64_t kc = std::min(KC, depth - k0);
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
      const T* b_panel = b + j0 * depth + k0 * NR;
      const int64_t cols = std::min(NR, n - j0);
      for_each_row_panel<T>(
          a, m_begin, m_end, k0, kc,
          [&](auto layout, const T* ap, int64_t lda, int64_t i0, int64_t rows, int64_t d0 = 0, int64_t piece = -1) {
            run_micro_kernel<T, decltype(layout)::value, BLayout::Packed>(
                piece < 0 ? kc : piece, ap, lda, b_panel + d0 * NR, nullptr, c + i0 * ldc + j0, ldc, rows, cols,
                accumulate || k0 > 0 || d0 > 0);
          });
    }
  }
}

}  // namespace isrn::cpu::gemm
