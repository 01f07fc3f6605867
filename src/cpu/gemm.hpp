#pragma once
// A packed, cache-blocked GEMM for the CPU kernels (convolution first): C (+)= A·B with A and B
// copied into "panels" whose layout the register-blocked micro-kernel streams with unit stride.
//
// Why not Eigen's GEMM: on this project's AVX-512 machines Eigen 3.4 reaches about 45% of the FMA
// peak for float (76 GFLOP/s on one core where oneDNN's convolutions reach 165), which alone puts
// every compute-bound convolution past 1.5x of PyTorch. Owning the packing also lets the
// convolution write im2col output straight into the packed layout (one pass instead of two) and pack
// the weights once per call instead of once per tile.
//
// Layout. An A panel holds MR rows of A over the whole depth, k-major: panel[k * MR + r]. A B panel
// holds NR columns over the whole depth: panel[k * NR + c]. Rows/columns past the matrix edge are
// zero. Panel p of a packed operand of depth `depth` starts at p * MR * depth (resp. NR * depth), so
// the depth block [k0, k0 + kc) of a panel is the contiguous range starting at k0 * MR (k0 * NR).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

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
  static constexpr int64_t MR = 12;  // 24 accumulators + 2 B vectors + 1 broadcast of 32 registers
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

// Packs rows [0, m) of A(i, k) = src[i * row_stride + k * col_stride], k in [0, depth), into A panels.
template <typename T>
void pack_a(const T* src, int64_t row_stride, int64_t col_stride, int64_t m, int64_t depth, T* dst) {
  constexpr int64_t MR = Blocking<T>::MR;
  for (int64_t i0 = 0; i0 < m; i0 += MR) {
    const int64_t rows = std::min(MR, m - i0);
    T* panel = dst + i0 * depth;
    const T* base = src + i0 * row_stride;
    if (col_stride == 1 && rows == MR) {
      for (int64_t k = 0; k < depth; ++k)
        for (int64_t r = 0; r < MR; ++r) panel[k * MR + r] = base[r * row_stride + k];
    } else if (row_stride == 1 && rows == MR) {
      for (int64_t k = 0; k < depth; ++k) std::memcpy(panel + k * MR, base + k * col_stride, MR * sizeof(T));
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
      // Transposing: read each source row (one column of B) contiguously, write with stride NR.
      for (int64_t c = 0; c < NR; ++c) {
        const T* column = base + c * col_stride;
        for (int64_t k = 0; k < depth; ++k) panel[k * NR + c] = column[k];
      }
    } else {
      for (int64_t k = 0; k < depth; ++k) {
        int64_t c = 0;
        for (; c < cols; ++c) panel[k * NR + c] = base[k * row_stride + c * col_stride];
        for (; c < NR; ++c) panel[k * NR + c] = T(0);
      }
    }
  }
}

// C[0:m, 0:n] (ldc) = (accumulate ? C : 0) + Σ_k a[k*MR + r] b[k*NR + c] over kc steps; m <= MR, n <= NR.
template <typename T>
inline void micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c, int64_t ldc,
                         int64_t m, int64_t n, bool accumulate) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int MR = static_cast<int>(Blocking<T>::MR);
  constexpr int NV = Blocking<T>::kVectors;
  constexpr int W = S::kWidth;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = S::zero();
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const V av = S::broadcast(a + r);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = S::fma(av, bv[v], acc[r][v]);
    }
    a += MR;
    b += NV * W;
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
  alignas(64) T tile[MR * NV * W];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) S::store(tile + r * NV * W + v * W, acc[r][v]);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) c[r * ldc + j] = accumulate ? c[r * ldc + j] + tile[r * NV * W + j] : tile[r * NV * W + j];
}

// C (ldc) = (accumulate ? C : 0) + A·B for C rows [m_begin, m_end) and all n columns, from operands
// packed with depth `depth` (a: the whole packed A, b: the whole packed B). m_begin is a multiple of MR.
// Single-threaded: callers parallelize over independent calls.
template <typename T>
void multiply_packed(const T* a, const T* b, int64_t m_begin, int64_t m_end, int64_t n, int64_t depth, T* c,
                     int64_t ldc, bool accumulate) {
  constexpr int64_t MR = Blocking<T>::MR, NR = Blocking<T>::NR, KC = Blocking<T>::KC;
  if (depth == 0) {
    if (!accumulate)
      for (int64_t i = m_begin; i < m_end; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  for (int64_t k0 = 0; k0 < depth; k0 += KC) {
    const int64_t kc = std::min(KC, depth - k0);
    const bool acc = accumulate || k0 > 0;
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
      const T* b_panel = b + j0 * depth + k0 * NR;
      const int64_t cols = std::min(NR, n - j0);
      for (int64_t i0 = m_begin; i0 < m_end; i0 += MR) {
        micro_kernel<T>(kc, a + i0 * depth + k0 * MR, b_panel, c + i0 * ldc + j0, ldc, std::min(MR, m_end - i0),
                        cols, acc);
      }
    }
  }
}

}  // namespace isrn::cpu::gemm
