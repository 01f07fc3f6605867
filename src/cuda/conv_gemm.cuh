#pragma once
// The pieces of the own implicit-GEMM convolution that define its index math: the geometry, the
// operand loaders (implicit im2col of each pass), the tile shapes and the output layout. They are
// host-callable, so tests/conv_gemm_emulation.cu can replay the kernel's block loop on the CPU and
// check the index math on machines without a GPU; conv.cu holds the kernel that runs them.
#include <cstdint>

#include "cuda/det_utils.cuh"

namespace isrn::cuda::conv_gemm {

using det::IntDivider;

// The geometry every kernel needs, in 32-bit ints (the host checks the ranges).
struct ConvGeometry {
  int n, c, h, w;      // input
  int co, kh, kw;      // weight
  int oh, ow;          // output
  int sh, sw, pt, pl, dh, dw;
};

constexpr int kSmemPad = 4;  // keeps float4 alignment and breaks the bank conflicts of k-fast stores

// Operand loaders. Each thread loads a fixed set of tile elements per K step into registers
// (fetch) and later writes them to shared memory (store); the shared tile is laid out [BK][ROWS+pad]
// so the compute loop reads consecutive rows/columns. "k-fast" loaders give consecutive threads
// consecutive k (the operand is contiguous along k); "n-fast" loaders give them consecutive
// columns (pixels, contiguous in NCHW).

// A = weight [C_out, K] row-major (forward). k-fast.
template <int ROWS, int BK, int THREADS>
struct WeightLoader {
  static constexpr int E = ROWS * BK / THREADS;
  const float* w;
  int rows, k_total;
  int row0, k_local, r_local;
  __host__ __device__ void init(int tile_row0, int tid) {
    row0 = tile_row0;
    k_local = tid % BK;
    r_local = tid / BK;
  }
  __host__ __device__ void fetch(int k0, float (&v)[E]) const {
    const int k = k0 + k_local;
#pragma unroll
    for (int j = 0; j < E; ++j) {
      const int m = row0 + r_local + j * (THREADS / BK);
      v[j] = (k < k_total && m < rows) ? det::load_ro(w + int64_t(m) * k_total + k) : 0.0f;
    }
  }
  __host__ __device__ void store(float* s, const float (&v)[E]) const {
#pragma unroll
    for (int j = 0; j < E; ++j) s[k_local * (ROWS + kSmemPad) + r_local + j * (THREADS / BK)] = v[j];
  }
};

// A[ci][k = (co, r, s)] = weight[co, ci, r, s] (backward input: the transposed convolution). k-fast.
template <int ROWS, int BK, int THREADS>
struct TransposedWeightLoader {
  static constexpr int E = ROWS * BK / THREADS;
  const float* w;
  int rows /* C_in */, k_total /* C_out·KH·KW */, khw;
  IntDivider div_khw;
  int row0, k_local, r_local;
  __host__ __device__ void init(int tile_row0, int tid) {
    row0 = tile_row0;
    k_local = tid % BK;
    r_local = tid / BK;
  }
  __host__ __device__ void fetch(int k0, float (&v)[E]) const {
    const int k = k0 + k_local;
    uint32_t co = 0, rs = 0;
    if (k < k_total) div_khw.divmod(static_cast<uint32_t>(k), co, rs);
    const int64_t base = int64_t(co) * rows * khw + rs;
#pragma unroll
    for (int j = 0; j < E; ++j) {
      const int m = row0 + r_local + j * (THREADS / BK);
      v[j] = (k < k_total && m < rows) ? det::load_ro(w + base + int64_t(m) * khw) : 0.0f;
    }
  }
  __host__ __device__ void store(float* s, const float (&v)[E]) const {
#pragma unroll
    for (int j = 0; j < E; ++j) s[k_local * (ROWS + kSmemPad) + r_local + j * (THREADS / BK)] = v[j];
  }
};

// A[co][k = pixel p of y] = grad_y[n, co, oh, ow] (backward weight). k-fast.
template <int ROWS, int BK, int THREADS>
struct GradOutputRowsLoader {
  static constexpr int E = ROWS * BK / THREADS;
  const float* gy;
  int rows /* C_out */, k_total /* N·OH·OW */, ohw;
  IntDivider div_ohw;
  int row0, k_local, r_local;
  __host__ __device__ void init(int tile_row0, int tid) {
    row0 = tile_row0;
    k_local = tid % BK;
    r_local = tid / BK;
  }
  __host__ __device__ void fetch(int k0, float (&v)[E]) const {
    const int k = k0 + k_local;
    uint32_t n = 0, pix = 0;
    if (k < k_total) div_ohw.divmod(static_cast<uint32_t>(k), n, pix);
    const float* base = gy + int64_t(n) * rows * ohw + pix;
#pragma unroll
    for (int j = 0; j < E; ++j) {
      const int m = row0 + r_local + j * (THREADS / BK);
      v[j] = (k < k_total && m < rows) ? det::load_ro(base + int64_t(m) * ohw) : 0.0f;
    }
  }
  __host__ __device__ void store(float* s, const float (&v)[E]) const {
#pragma unroll
    for (int j = 0; j < E; ++j) s[k_local * (ROWS + kSmemPad) + r_local + j * (THREADS / BK)] = v[j];
  }
};

// B[k = (ci, r, s)][p = (n, oh, ow)] = x[n, ci, oh·sh − pt + r·dh, ow·sw − pl + s·dw] (forward).
// n-fast: the thread's column (pixel) is fixed, so its decomposition is done once.
template <int COLS, int BK, int THREADS>
struct InputGatherLoader {
  static constexpr int E = COLS * BK / THREADS;
  const float* x;
  ConvGeometry g;
  int cols, k_total;
  IntDivider div_ohw, div_ow, div_khw, div_kw;
  int n_local, k_local;
  bool col_valid;
  int ih0, iw0;
  const float* base;
  __host__ __device__ void init(int tile_col0, int tid) {
    n_local = tid % COLS;
    k_local = tid / COLS;
    const int p = tile_col0 + n_local;
    col_valid = p < cols;
    uint32_t n = 0, pix = 0, oh = 0, ow = 0;
    if (col_valid) {
      div_ohw.divmod(static_cast<uint32_t>(p), n, pix);
      div_ow.divmod(pix, oh, ow);
    }
    ih0 = int(oh) * g.sh - g.pt;
    iw0 = int(ow) * g.sw - g.pl;
    base = x + int64_t(n) * g.c * g.h * g.w;
  }
  __host__ __device__ void fetch(int k0, float (&v)[E]) const {
#pragma unroll
    for (int j = 0; j < E; ++j) {
      const int k = k0 + k_local + j * (THREADS / COLS);
      float val = 0.0f;
      if (col_valid && k < k_total) {
        uint32_t ci, rs, r, s;
        div_khw.divmod(static_cast<uint32_t>(k), ci, rs);
        div_kw.divmod(rs, r, s);
        const int ih = ih0 + int(r) * g.dh, iw = iw0 + int(s) * g.dw;
        if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) val = det::load_ro(base + (int(ci) * g.h + ih) * g.w + iw);
      }
      v[j] = val;
    }
  }
  __host__ __device__ void store(float* s, const float (&v)[E]) const {
#pragma unroll
    for (int j = 0; j < E; ++j) s[(k_local + j * (THREADS / COLS)) * (COLS + kSmemPad) + n_local] = v[j];
  }
};

// B[k = (co, r, s)][p = (n, ih, iw)] = grad_y[n, co, oh, ow] where oh·sh = ih + pt − r·dh (and the
// same for w), zero where that has no integer solution in range (backward input). n-fast.
template <int COLS, int BK, int THREADS>
struct GradOutputGatherLoader {
  static constexpr int E = COLS * BK / THREADS;
  const float* gy;
  ConvGeometry g;
  int cols, k_total;
  IntDivider div_hw, div_w, div_khw, div_kw;
  int n_local, k_local;
  bool col_valid;
  int th0, tw0;  // ih + pt, iw + pl
  const float* base;
  __host__ __device__ void init(int tile_col0, int tid) {
    n_local = tid % COLS;
    k_local = tid / COLS;
    const int p = tile_col0 + n_local;
    col_valid = p < cols;
    uint32_t n = 0, pix = 0, ih = 0, iw = 0;
    if (col_valid) {
      div_hw.divmod(static_cast<uint32_t>(p), n, pix);
      div_w.divmod(pix, ih, iw);
    }
    th0 = int(ih) + g.pt;
    tw0 = int(iw) + g.pl;
    base = gy + int64_t(n) * g.co * g.oh * g.ow;
  }
  __host__ __device__ void fetch(int k0, float (&v)[E]) const {
#pragma unroll
    for (int j = 0; j < E; ++j) {
      const int k = k0 + k_local + j * (THREADS / COLS);
      float val = 0.0f;
      if (col_valid && k < k_total) {
        uint32_t co, rs, r, s;
        div_khw.divmod(static_cast<uint32_t>(k), co, rs);
        div_kw.divmod(rs, r, s);
        int th = th0 - int(r) * g.dh, tw = tw0 - int(s) * g.dw;
        bool ok = th >= 0 && tw >= 0;
        if (ok && g.sh != 1) {
          ok = th % g.sh == 0;
          th /= g.sh;
        }
        if (ok && g.sw != 1) {
          ok = tw % g.sw == 0;
          tw /= g.sw;
        }
        if (ok && th < g.oh && tw < g.ow) val = det::load_ro(base + (int(co) * g.oh + th) * g.ow + tw);
      }
      v[j] = val;
    }
  }
  __host__ __device__ void store(float* s, const float (&v)[E]) const {
#pragma unroll
    for (int j = 0; j < E; ++j) s[(k_local + j * (THREADS / COLS)) * (COLS + kSmemPad) + n_local] = v[j];
  }
};

// B[k = pixel p of y][col = (ci, r, s)] = x[n, ci, oh·sh − pt + r·dh, ow·sw − pl + s·dw]
// (backward weight). k-fast: consecutive threads take consecutive output pixels; each thread's
// columns are fixed, so their decomposition is done once.
template <int COLS, int BK, int THREADS>
struct InputColumnsLoader {
  static constexpr int E = COLS * BK / THREADS;
  const float* x;
  ConvGeometry g;
  int cols /* C_in·KH·KW */, k_total /* N·OH·OW */;
  IntDivider div_ohw, div_ow, div_khw, div_kw;
  int k_local, c_local;
  int chan_off[E], dh_off[E], dw_off[E];
  __host__ __device__ void init(int tile_col0, int tid) {
    k_local = tid % BK;
    c_local = tid / BK;
#pragma unroll
    for (int j = 0; j < E; ++j) {
      const int col = tile_col0 + c_local + j * (THREADS / BK);
      uint32_t ci = 0, rs = 0, r = 0, s = 0;
      if (col < cols) {
        div_khw.divmod(static_cast<uint32_t>(col), ci, rs);
        div_kw.divmod(rs, r, s);
        chan_off[j] = int(ci) * g.h * g.w;
        dh_off[j] = int(r) * g.dh - g.pt;
        dw_off[j] = int(s) * g.dw - g.pl;
      } else {
        chan_off[j] = 0;
        dh_off[j] = -(1 << 30);  // never in range: the element reads as zero
        dw_off[j] = 0;
      }
    }
  }
  __host__ __device__ void fetch(int k0, float (&v)[E]) const {
    const int k = k0 + k_local;
    uint32_t n = 0, pix = 0, oh = 0, ow = 0;
    const bool k_valid = k < k_total;
    if (k_valid) {
      div_ohw.divmod(static_cast<uint32_t>(k), n, pix);
      div_ow.divmod(pix, oh, ow);
    }
    const float* base = x + int64_t(n) * g.c * g.h * g.w;
#pragma unroll
    for (int j = 0; j < E; ++j) {
      const int ih = int(oh) * g.sh + dh_off[j], iw = int(ow) * g.sw + dw_off[j];
      v[j] = (k_valid && ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) ? det::load_ro(base + chan_off[j] + ih * g.w + iw)
                                                                     : 0.0f;
    }
  }
  __host__ __device__ void store(float* s, const float (&v)[E]) const {
#pragma unroll
    for (int j = 0; j < E; ++j) s[k_local * (COLS + kSmemPad) + c_local + j * (THREADS / BK)] = v[j];
  }
};

// Where C[m][col] goes: out[(col / per_image) · image_stride + col % per_image + m · row_stride]
// (+ bias[m]); out is offset by split · split_stride for split-K partial sums.
struct Epilogue {
  float* out;
  const float* bias;  // null: none
  int64_t bias_stride;
  IntDivider div_per_image;
  int64_t image_stride, row_stride, split_stride;
};

// The three tile shapes: large for wide GEMMs, medium, and a short one for few output rows.
struct TileLarge { static constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8; };
struct TileMedium { static constexpr int BM = 64, BN = 64, BK = 8, TM = 4, TN = 4; };
struct TileShort { static constexpr int BM = 32, BN = 128, BK = 8, TM = 4, TN = 4; };

enum class Pass { Forward, BackwardInput, BackwardWeight };

// Loaders of each pass, for a tile shape.
template <Pass P, class Tile>
struct PassLoaders;
template <class Tile>
struct PassLoaders<Pass::Forward, Tile> {
  static constexpr int T = (Tile::BM / Tile::TM) * (Tile::BN / Tile::TN);
  using A = WeightLoader<Tile::BM, Tile::BK, T>;
  using B = InputGatherLoader<Tile::BN, Tile::BK, T>;
};
template <class Tile>
struct PassLoaders<Pass::BackwardInput, Tile> {
  static constexpr int T = (Tile::BM / Tile::TM) * (Tile::BN / Tile::TN);
  using A = TransposedWeightLoader<Tile::BM, Tile::BK, T>;
  using B = GradOutputGatherLoader<Tile::BN, Tile::BK, T>;
};
template <class Tile>
struct PassLoaders<Pass::BackwardWeight, Tile> {
  static constexpr int T = (Tile::BM / Tile::TM) * (Tile::BN / Tile::TN);
  using A = GradOutputRowsLoader<Tile::BM, Tile::BK, T>;
  using B = InputColumnsLoader<Tile::BN, Tile::BK, T>;
};

// The operands of one pass: raw pointers plus the geometry.
struct PassOperands {
  const float* a;  // weight (forward, backward input) or grad_y (backward weight)
  const float* b;  // x (forward, backward weight) or grad_y (backward input)
};

template <Pass P, class Tile>
void fill_loaders(const PassOperands& ops, const ConvGeometry& g, int M, int Ncols, int K,
                  typename PassLoaders<P, Tile>::A& la, typename PassLoaders<P, Tile>::B& lb) {
  const int khw = g.kh * g.kw;
  if constexpr (P == Pass::Forward) {
    la.w = ops.a;
    la.rows = M;
    la.k_total = K;
    lb.x = ops.b;
    lb.g = g;
    lb.cols = Ncols;
    lb.k_total = K;
    lb.div_ohw = IntDivider(g.oh * g.ow);
    lb.div_ow = IntDivider(g.ow);
    lb.div_khw = IntDivider(khw);
    lb.div_kw = IntDivider(g.kw);
  } else if constexpr (P == Pass::BackwardInput) {
    la.w = ops.a;
    la.rows = M;
    la.k_total = K;
    la.khw = khw;
    la.div_khw = IntDivider(khw);
    lb.gy = ops.b;
    lb.g = g;
    lb.cols = Ncols;
    lb.k_total = K;
    lb.div_hw = IntDivider(g.h * g.w);
    lb.div_w = IntDivider(g.w);
    lb.div_khw = IntDivider(khw);
    lb.div_kw = IntDivider(g.kw);
  } else {
    la.gy = ops.a;
    la.rows = M;
    la.k_total = K;
    la.ohw = g.oh * g.ow;
    la.div_ohw = IntDivider(g.oh * g.ow);
    lb.x = ops.b;
    lb.g = g;
    lb.cols = Ncols;
    lb.k_total = K;
    lb.div_ohw = IntDivider(g.oh * g.ow);
    lb.div_ow = IntDivider(g.ow);
    lb.div_khw = IntDivider(khw);
    lb.div_kw = IntDivider(g.kw);
  }
}

// Where the GEMM result goes: the final tensor, with `per_image` columns per image.
struct OutputLayout {
  float* out;
  const float* bias;
  int64_t bias_stride;
  int64_t per_image, image_stride, row_stride;
  int64_t numel;           // of the final tensor
  int64_t bias_inner;      // bias index = (i / bias_inner) % M in the split-sum pass
};

// Splits the K range into chunks of a multiple of BK (so no tile straddles two splits), at most
// `splits` of them; returns the number of non-empty splits and sets k_per_split.
inline int64_t plan_splits(int64_t k, int64_t splits, int bk, int64_t& k_per_split) {
  splits = splits < 1 ? 1 : splits;
  k_per_split = (k + splits - 1) / splits;
  k_per_split = (k_per_split + bk - 1) / bk * bk;
  if (k_per_split < bk) k_per_split = bk;
  const int64_t used = (k + k_per_split - 1) / k_per_split;
  return used < 1 ? 1 : used;
}

}  // namespace isrn::cuda::conv_gemm
