// CUDA 2-D convolution: isrn's own implicit-GEMM kernels (float32), naive direct kernels (the
// oracle and the float64 path), and the switch between them and cuDNN.
//
// All three passes are one tiled GEMM, C[M, Ncols] = A[M, K] · B[K, Ncols], whose operands are
// never materialized: a loader per operand gathers the tile elements straight from the NCHW
// tensors (implicit im2col), so no column buffer is allocated.
//   forward          M = C_out, Ncols = N·OH·OW (pixels of y), K = C_in·KH·KW
//   backward input   M = C_in,  Ncols = N·H·W  (pixels of x),  K = C_out·KH·KW (transposed conv)
//   backward weight  M = C_out, Ncols = C_in·KH·KW,            K = N·OH·OW     (split-K)
// When the tiles alone cannot fill the GPU, the K range is split over blockIdx.z; each split
// writes its own slice of a scratch tensor and a second pass adds the slices in a fixed order, so
// results are deterministic.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "widen_bf16.hpp"
#include "cuda/common.cuh"
#include "cuda/conv_cudnn.hpp"
#include "cuda/conv_gemm.cuh"
#include "cuda/conv_reference.hpp"
#include "cuda/det_utils.cuh"
#include "isrn/config.hpp"
#include "isrn/cuda/conv.hpp"
#include "isrn/cuda/runtime.hpp"

namespace isrn::cuda {
namespace {

using det::IntDivider;
using namespace conv_gemm;

ConvGeometry geometry_of(const Shape& x, const Shape& w, const Shape& y, const Conv2dParams& p, const char* op) {
  for (int64_t v : {x[0], x[1], x[2], x[3], w[0], w[2], w[3], y[2], y[3]}) det::check_int32_range(op, "a size", v);
  det::check_int32_range(op, "input elements per image", x[1] * x[2] * x[3]);
  det::check_int32_range(op, "output elements per image", y[1] * y[2] * y[3]);
  det::check_int32_range(op, "input pixels", x[0] * x[2] * x[3]);
  det::check_int32_range(op, "output pixels", x[0] * y[2] * y[3]);
  det::check_int32_range(op, "weight elements", w[0] * w[1] * w[2] * w[3]);
  ConvGeometry g;
  g.n = static_cast<int>(x[0]);
  g.c = static_cast<int>(x[1]);
  g.h = static_cast<int>(x[2]);
  g.w = static_cast<int>(x[3]);
  g.co = static_cast<int>(w[0]);
  g.kh = static_cast<int>(w[2]);
  g.kw = static_cast<int>(w[3]);
  g.oh = static_cast<int>(y[2]);
  g.ow = static_cast<int>(y[3]);
  g.sh = static_cast<int>(p.stride[0]);
  g.sw = static_cast<int>(p.stride[1]);
  g.pt = static_cast<int>(p.padding[0]);
  g.pl = static_cast<int>(p.padding[2]);
  g.dh = static_cast<int>(p.dilation[0]);
  g.dw = static_cast<int>(p.dilation[1]);
  return g;
}

// ================================================================================================
// Naive direct kernels: one thread per output element, float64 accumulation.
// ================================================================================================

template <typename T>
__global__ void naive_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                                     int64_t bias_stride, ConvGeometry g, T* __restrict__ y, int64_t total) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t ow = i % g.ow, oh = (i / g.ow) % g.oh, co = (i / (int64_t(g.ow) * g.oh)) % g.co,
                  n = i / (int64_t(g.ow) * g.oh * g.co);
    double acc = bias ? static_cast<double>(bias[co * bias_stride]) : 0.0;
    for (int ci = 0; ci < g.c; ++ci) {
      for (int r = 0; r < g.kh; ++r) {
        const int64_t ih = oh * g.sh - g.pt + int64_t(r) * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        for (int s = 0; s < g.kw; ++s) {
          const int64_t iw = ow * g.sw - g.pl + int64_t(s) * g.dw;
          if (iw < 0 || iw >= g.w) continue;
          acc += static_cast<double>(x[((n * g.c + ci) * g.h + ih) * g.w + iw]) *
                 static_cast<double>(w[((co * g.c + ci) * g.kh + r) * g.kw + s]);
        }
      }
    }
    y[i] = static_cast<T>(acc);
  }
}

template <typename T>
__global__ void naive_backward_input_kernel(const T* __restrict__ gy, const T* __restrict__ w, ConvGeometry g,
                                            T* __restrict__ gx, int64_t total) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t iw = i % g.w, ih = (i / g.w) % g.h, ci = (i / (int64_t(g.w) * g.h)) % g.c,
                  n = i / (int64_t(g.w) * g.h * g.c);
    double acc = 0.0;
    for (int co = 0; co < g.co; ++co) {
      for (int r = 0; r < g.kh; ++r) {
        const int64_t th = ih + g.pt - int64_t(r) * g.dh;  // = oh * sh
        if (th < 0 || th % g.sh != 0 || th / g.sh >= g.oh) continue;
        const int64_t oh = th / g.sh;
        for (int s = 0; s < g.kw; ++s) {
          const int64_t tw = iw + g.pl - int64_t(s) * g.dw;
          if (tw < 0 || tw % g.sw != 0 || tw / g.sw >= g.ow) continue;
          const int64_t ow = tw / g.sw;
          acc += static_cast<double>(gy[((n * g.co + co) * g.oh + oh) * g.ow + ow]) *
                 static_cast<double>(w[((int64_t(co) * g.c + ci) * g.kh + r) * g.kw + s]);
        }
      }
    }
    gx[i] = static_cast<T>(acc);
  }
}

template <typename T>
__global__ void naive_backward_weight_kernel(const T* __restrict__ gy, const T* __restrict__ x, ConvGeometry g,
                                             T* __restrict__ gw, int64_t total) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t s = i % g.kw, r = (i / g.kw) % g.kh, ci = (i / (int64_t(g.kw) * g.kh)) % g.c,
                  co = i / (int64_t(g.kw) * g.kh * g.c);
    double acc = 0.0;
    for (int n = 0; n < g.n; ++n) {
      for (int oh = 0; oh < g.oh; ++oh) {
        const int64_t ih = int64_t(oh) * g.sh - g.pt + r * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        for (int ow = 0; ow < g.ow; ++ow) {
          const int64_t iw = int64_t(ow) * g.sw - g.pl + s * g.dw;
          if (iw < 0 || iw >= g.w) continue;
          acc += static_cast<double>(gy[((int64_t(n) * g.co + co) * g.oh + oh) * g.ow + ow]) *
                 static_cast<double>(x[((int64_t(n) * g.c + ci) * g.h + ih) * g.w + iw]);
        }
      }
    }
    gw[i] = static_cast<T>(acc);
  }
}

// ================================================================================================
// Implicit GEMM (float32).
// ================================================================================================

template <int BM, int BN, int BK, int TM, int TN, class LoadA, class LoadB>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), 2)
    implicit_gemm_kernel(LoadA load_a, LoadB load_b, Epilogue epi, int M, int Ncols, int K, int k_per_split) {
  constexpr int THREADS = (BM / TM) * (BN / TN);
  static_assert(TM % 4 == 0 && TN % 4 == 0, "register tiles are read as float4");
  static_assert(THREADS % BK == 0 && (BM * BK) % THREADS == 0 && (BN * BK) % THREADS == 0, "loader mapping");
  __shared__ __align__(16) float As[2][BK][BM + kSmemPad];
  __shared__ __align__(16) float Bs[2][BK][BN + kSmemPad];

  const int tid = threadIdx.x;
  const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
  const int k_begin = blockIdx.z * k_per_split;
  const int k_end = ::min(K, k_begin + k_per_split);
  load_a.init(row0, tid);
  load_b.init(col0, tid);

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  // Thread (ty, tx) owns rows ty·4 + {0..3} of each of the TM/4 row groups, likewise columns: the
  // groups are BM/(TM/4) apart, so a warp's float4 reads of a shared row do not conflict.
  const int ty = tid / (BN / TN), tx = tid % (BN / TN);

  float ra[LoadA::E], rb[LoadB::E];
  if (k_begin < k_end) {
    load_a.fetch(k_begin, ra);
    load_b.fetch(k_begin, rb);
    load_a.store(&As[0][0][0], ra);
    load_b.store(&Bs[0][0][0], rb);
  }
  __syncthreads();

  int buf = 0;
  for (int k0 = k_begin; k0 < k_end; k0 += BK) {
    const bool has_next = k0 + BK < k_end;
    if (has_next) {  // the next tile's global loads overlap this tile's arithmetic
      load_a.fetch(k0 + BK, ra);
      load_b.fetch(k0 + BK, rb);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int gi = 0; gi < TM / 4; ++gi) {
        const float4 v = *reinterpret_cast<const float4*>(&As[buf][kk][gi * (BM * 4 / TM) + ty * 4]);
        a[gi * 4 + 0] = v.x;
        a[gi * 4 + 1] = v.y;
        a[gi * 4 + 2] = v.z;
        a[gi * 4 + 3] = v.w;
      }
#pragma unroll
      for (int gj = 0; gj < TN / 4; ++gj) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[buf][kk][gj * (BN * 4 / TN) + tx * 4]);
        b[gj * 4 + 0] = v.x;
        b[gj * 4 + 1] = v.y;
        b[gj * 4 + 2] = v.z;
        b[gj * 4 + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (has_next) {
      // The other buffer was last read in the previous iteration, before its closing barrier.
      load_a.store(&As[buf ^ 1][0][0], ra);
      load_b.store(&Bs[buf ^ 1][0][0], rb);
    }
    __syncthreads();
    buf ^= 1;
  }

  float* out = epi.out + blockIdx.z * epi.split_stride;
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int col = col0 + (j / 4) * (BN * 4 / TN) + tx * 4 + (j % 4);
    if (col >= Ncols) continue;
    uint32_t image, within;
    epi.div_per_image.divmod(static_cast<uint32_t>(col), image, within);
    float* col_out = out + int64_t(image) * epi.image_stride + within;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int row = row0 + (i / 4) * (BM * 4 / TM) + ty * 4 + (i % 4);
      if (row >= M) continue;
      float v = acc[i][j];
      if (epi.bias) v += __ldg(epi.bias + row * epi.bias_stride);
      col_out[int64_t(row) * epi.row_stride] = v;
    }
  }
}

// out[i] = Σ_s partial[s·numel + i] in split order (+ bias[(i / inner) % channels]).
__global__ void sum_splits_kernel(const float* __restrict__ partial, int splits, int64_t numel,
                                  const float* __restrict__ bias, int64_t bias_stride, int64_t inner,
                                  int64_t channels, float* __restrict__ out) {
  ISRN_CUDA_KERNEL_LOOP(i, numel) {
    float acc = bias ? bias[((i / inner) % channels) * bias_stride] : 0.0f;
    for (int s = 0; s < splits; ++s) acc += partial[s * numel + i];
    out[i] = acc;
  }
}

// Scratch budget for split-K partial sums.
constexpr int64_t kMaxSplitBytes = int64_t(256) << 20;

template <Pass P, class Tile>
void run_gemm(const PassOperands& ops, const ConvGeometry& g, int M, int Ncols, int K, const OutputLayout& layout,
              Device device, int min_k_steps_per_split) {
  using L = PassLoaders<P, Tile>;
  typename L::A la{};
  typename L::B lb{};
  fill_loaders<P, Tile>(ops, g, M, Ncols, K, la, lb);

  const int64_t col_tiles = (Ncols + Tile::BN - 1) / Tile::BN, row_tiles = (M + Tile::BM - 1) / Tile::BM;
  ISRN_CHECK(col_tiles <= 0x7fffffff && row_tiles <= 65535, "[conv2d] GEMM of ", M, " x ", Ncols,
             " is too large for one launch");
  const int64_t tiles = col_tiles * row_tiles;
  const int64_t target_blocks = 2 * int64_t(det::multiprocessor_count());
  int64_t splits = 1;
  if (tiles < target_blocks) {
    const int64_t by_occupancy = (target_blocks + tiles - 1) / tiles;
    const int64_t by_depth = std::max<int64_t>(1, K / (int64_t(min_k_steps_per_split) * Tile::BK));
    const int64_t by_memory = std::max<int64_t>(1, kMaxSplitBytes / std::max<int64_t>(1, layout.numel * 4));
    splits = std::min({by_occupancy, by_depth, by_memory, int64_t(1024)});
  }
  int64_t k_per_split = 0;
  splits = plan_splits(K, splits, Tile::BK, k_per_split);

  Tensor partial;
  Epilogue epi{};
  epi.div_per_image = IntDivider(static_cast<uint32_t>(layout.per_image));
  epi.image_stride = layout.image_stride;
  epi.row_stride = layout.row_stride;
  if (splits == 1) {
    epi.out = layout.out;
    epi.bias = layout.bias;
    epi.bias_stride = layout.bias_stride;
    epi.split_stride = 0;
  } else {
    partial = det::scratch({splits, layout.numel}, DType::Float32, device);
    epi.out = partial.data_ptr<float>();
    epi.bias = nullptr;
    epi.bias_stride = 0;
    epi.split_stride = layout.numel;
  }
  constexpr int threads = L::T;
  const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(row_tiles), static_cast<unsigned>(splits));
  implicit_gemm_kernel<Tile::BM, Tile::BN, Tile::BK, Tile::TM, Tile::TN, typename L::A, typename L::B>
      <<<grid, threads, 0, current_stream()>>>(la, lb, epi, M, Ncols, K, static_cast<int>(k_per_split));
  ISRN_CUDA_LAUNCH_CHECK("conv2d implicit_gemm_kernel");
  if (splits > 1) {
    sum_splits_kernel<<<grid_for(layout.numel), 256, 0, current_stream()>>>(
        partial.data_ptr<float>(), static_cast<int>(splits), layout.numel, layout.bias, layout.bias_stride,
        layout.bias_inner, M, layout.out);
    ISRN_CUDA_LAUNCH_CHECK("conv2d sum_splits_kernel");
  }
}

template <Pass P>
void dispatch_gemm(const PassOperands& ops, const ConvGeometry& g, int M, int Ncols, int K, const OutputLayout& layout,
                   Device device) {
  if (M == 0 || Ncols == 0) return;
  if (K == 0) {  // an empty reduction: the result is the bias (or zero); a zero-split sum writes it
    sum_splits_kernel<<<grid_for(layout.numel), 256, 0, current_stream()>>>(
        nullptr, 0, layout.numel, layout.bias, layout.bias_stride, layout.bias_inner, M, layout.out);
    ISRN_CUDA_LAUNCH_CHECK("conv2d sum_splits_kernel");
    return;
  }
  // Backward weight reduces over all pixels: keep each split at least 32 K steps deep.
  const int min_steps = P == Pass::BackwardWeight ? 32 : 4;
  const int64_t sms = det::multiprocessor_count();
  auto tiles_of = [&](int bm, int bn) { return int64_t((M + bm - 1) / bm) * ((Ncols + bn - 1) / bn); };
  if (M <= 32) {
    run_gemm<P, TileShort>(ops, g, M, Ncols, K, layout, device, min_steps);
  } else if (M >= 128 && tiles_of(128, 128) >= sms) {
    run_gemm<P, TileLarge>(ops, g, M, Ncols, K, layout, device, min_steps);
  } else if (M >= 128 && P == Pass::BackwardWeight) {  // split-K fills the GPU anyway
    run_gemm<P, TileLarge>(ops, g, M, Ncols, K, layout, device, min_steps);
  } else {
    run_gemm<P, TileMedium>(ops, g, M, Ncols, K, layout, device, min_steps);
  }
}

Tensor contiguous_input(const Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

// ================================================================================================
// Padding helpers for the cuDNN path's asymmetric padding.
// ================================================================================================

template <typename T>
__global__ void pad_kernel(const T* __restrict__ x, int64_t h, int64_t w, int64_t top, int64_t left, int64_t ph,
                           int64_t pw, T* __restrict__ out, int64_t total) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t col = i % pw, row = (i / pw) % ph, plane = i / (pw * ph);
    const int64_t r = row - top, c = col - left;
    out[i] = (r >= 0 && r < h && c >= 0 && c < w) ? x[(plane * h + r) * w + c] : T(0);
  }
}

template <typename T>
__global__ void crop_kernel(const T* __restrict__ padded, int64_t ph, int64_t pw, int64_t top, int64_t left,
                            int64_t h, int64_t w, T* __restrict__ out, int64_t total) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t col = i % w, row = (i / w) % h, plane = i / (w * h);
    out[i] = padded[(plane * ph + row + top) * pw + col + left];
  }
}

// ================================================================================================
// Backend switch.
// ================================================================================================

std::mutex backend_mutex;
bool switches_read = false;  // the environment is read once, at the first use of either switch
ConvBackend backend_value = ConvBackend::Auto;
bool transforms_value = false;

// Reads ISRN_CONV_BACKEND and ISRN_CONV_TRANSFORMS unless done; backend_mutex held. A bad value is
// reported once (both are checked before either is taken), then the defaults stand.
void read_switches_locked() {
  if (switches_read) return;
  switches_read = true;
  const char* backend_env = std::getenv("ISRN_CONV_BACKEND");
  const char* transforms_env = std::getenv("ISRN_CONV_TRANSFORMS");
  const std::string backend = backend_env && *backend_env ? backend_env : "auto";
  const std::string transforms = transforms_env && *transforms_env ? transforms_env : "0";
  ISRN_CHECK(backend == "auto" || backend == "own" || backend == "cudnn" || backend == "benchmark",
             "[conv2d] ISRN_CONV_BACKEND must be 'auto', 'own', 'cudnn' or 'benchmark', got '", backend, "'");
  ISRN_CHECK(backend == "auto" || backend == "own" || ISRN_WITH_CUDNN, "[conv2d] ISRN_CONV_BACKEND=", backend,
             ", but this build of isrn has no cuDNN");
  ISRN_CHECK(transforms == "0" || transforms == "1", "[conv2d] ISRN_CONV_TRANSFORMS must be 0 or 1, got '",
             transforms, "'");
  backend_value = backend == "auto"    ? ConvBackend::Auto
                  : backend == "own"   ? ConvBackend::Own
                  : backend == "cudnn" ? ConvBackend::Cudnn
                                       : ConvBackend::Benchmark;
  transforms_value = transforms == "1";
}

ConvBackend current_backend() {
  std::lock_guard<std::mutex> lock(backend_mutex);
  read_switches_locked();
  return backend_value;
}

enum class Path : uint8_t { Own, Cudnn, Measure };

// Where a convolution on `dtype` operands goes (see ConvBackend).
Path path_for(DType dtype) {
  if (!ISRN_WITH_CUDNN) return Path::Own;
  switch (current_backend()) {
    case ConvBackend::Own: return Path::Own;
    case ConvBackend::Cudnn: return Path::Cudnn;
    case ConvBackend::Benchmark: return Path::Measure;
    case ConvBackend::Auto: break;
  }
  // The own kernels win only in FP32 math (their float64 path is the naive oracle, and they use no
  // tensor cores): cuDNN takes bfloat16, float64, and float32 when TF32 is allowed.
  return dtype != DType::Float32 || allow_tf32() ? Path::Cudnn : Path::Own;
}

// --- the Benchmark backend: each problem timed once on both paths -------------------------------

// A problem as the measurement sees it: the pass, the operands' shapes and dtype, the parameters,
// the switches that change what the paths run, and the device.
using ProblemKey = std::vector<int64_t>;

ProblemKey problem_key(int pass, const Tensor& a, const Tensor& b, const Tensor& out, bool has_bias,
                       const Conv2dParams& p) {
  int device = 0;
  ISRN_CUDA_CHECK(cudaGetDevice(&device));
  ProblemKey key{pass, device, static_cast<int64_t>(a.dtype()), has_bias, allow_tf32(), allow_conv_transforms()};
  for (const Tensor* t : {&a, &b, &out}) key.insert(key.end(), t->shape().begin(), t->shape().end());
  key.insert(key.end(), {p.stride[0], p.stride[1], p.dilation[0], p.dilation[1]});
  key.insert(key.end(), p.padding.begin(), p.padding.end());
  return key;
}

std::mutex measured_mutex;
std::map<ProblemKey, Path> measured;

// Milliseconds of the fastest of three runs of `run`, after the caller's warm-up.
template <typename Run>
float best_of_three(Run&& run) {
  cudaEvent_t start = nullptr, stop = nullptr;
  ISRN_CUDA_CHECK(cudaEventCreate(&start));
  ISRN_CUDA_CHECK(cudaEventCreate(&stop));
  float best = 0;
  try {
    for (int i = 0; i < 3; ++i) {
      ISRN_CUDA_CHECK(cudaEventRecord(start, current_stream()));
      run();
      ISRN_CUDA_CHECK(cudaEventRecord(stop, current_stream()));
      ISRN_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      ISRN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      best = i == 0 ? ms : std::min(best, ms);
    }
  } catch (...) {
    (void)cudaEventDestroy(start);
    (void)cudaEventDestroy(stop);
    throw;
  }
  ISRN_CUDA_CHECK(cudaEventDestroy(start));
  ISRN_CUDA_CHECK(cudaEventDestroy(stop));
  return best;
}

// Runs the problem on the path measured faster for it, measuring first if it is new. Both paths
// overwrite the whole output, so the runs of the measurement leave no trace but the last one's,
// which is the chosen path's.
template <typename RunOwn, typename RunCudnn>
void run_measured(const ProblemKey& key, RunOwn&& run_own, RunCudnn&& run_cudnn) {
  std::optional<Path> known;
  {
    std::lock_guard<std::mutex> lock(measured_mutex);
    if (auto it = measured.find(key); it != measured.end()) known = it->second;
  }
  if (known) {
    if (*known == Path::Own || !run_cudnn()) run_own();
    return;
  }
  // Two threads meeting a new problem at once both measure it; the first result is kept.
  Path chosen = Path::Own;
  if (run_cudnn()) {  // also the warm-up: cuDNN chooses its algorithm (cudnnFind) on first sight
    run_own();        // the own kernels' warm-up
    const float own_ms = best_of_three(run_own);
    const float cudnn_ms = best_of_three([&] { (void)run_cudnn(); });
    chosen = cudnn_ms < own_ms ? Path::Cudnn : Path::Own;
  }
  if (chosen == Path::Own) run_own();
  else (void)run_cudnn();
  std::lock_guard<std::mutex> lock(measured_mutex);
  measured.emplace(key, chosen);
}

}  // namespace

void set_conv_backend(ConvBackend backend) {
  ISRN_CHECK(backend == ConvBackend::Auto || backend == ConvBackend::Own || ISRN_WITH_CUDNN,
             "[set_conv_backend] cuDNN was asked for, but this build of isrn has no cuDNN");
  std::lock_guard<std::mutex> lock(backend_mutex);
  read_switches_locked();  // so a later first read cannot override this choice
  backend_value = backend;
}
ConvBackend conv_backend() { return current_backend(); }
bool conv_cudnn_built() { return ISRN_WITH_CUDNN != 0; }

void set_allow_conv_transforms(bool allow) {
  std::lock_guard<std::mutex> lock(backend_mutex);
  read_switches_locked();
  transforms_value = allow;
}
bool allow_conv_transforms() {
  std::lock_guard<std::mutex> lock(backend_mutex);
  read_switches_locked();
  return transforms_value;
}

namespace conv_detail {

Tensor pad_nchw(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right) {
  const Tensor xc = contiguous_input(x);
  const Shape& s = xc.shape();
  Tensor out = det::scratch({s[0], s[1], s[2] + top + bottom, s[3] + left + right}, xc.dtype(), xc.device());
  const int64_t total = out.numel();
  if (total == 0) return out;
  dispatch_storage(xc.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    pad_kernel<T><<<grid_for(total), 256, 0, current_stream()>>>(xc.data_ptr<T>(), s[2], s[3], top, left,
                                                                 out.size(2), out.size(3), out.data_ptr<T>(), total);
    ISRN_CUDA_LAUNCH_CHECK("conv2d pad_kernel");
  });
  return out;
}

void crop_nchw(const Tensor& padded, int64_t top, int64_t left, Tensor& out) {
  const int64_t total = out.numel();
  if (total == 0) return;
  dispatch_storage(out.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    crop_kernel<T><<<grid_for(total), 256, 0, current_stream()>>>(padded.data_ptr<T>(), padded.size(2),
                                                                  padded.size(3), top, left, out.size(2),
                                                                  out.size(3), out.data_ptr<T>(), total);
    ISRN_CUDA_LAUNCH_CHECK("conv2d crop_kernel");
  });
}

}  // namespace conv_detail

// ================================================================================================
// Naive references.
// ================================================================================================

namespace reference {

void conv2d_forward(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias, const Conv2dParams& params,
                    Tensor& y) {
  const Tensor x = contiguous_input(x_in), weight = contiguous_input(weight_in);
  const ConvGeometry g = geometry_of(x.shape(), weight.shape(), y.shape(), params, "conv2d");
  const int64_t total = y.numel();
  if (total == 0) return;
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    naive_forward_kernel<T><<<grid_for(total), 256, 0, current_stream()>>>(
        x.data_ptr<T>(), weight.data_ptr<T>(), bias.defined() ? bias.data_ptr<T>() : nullptr,
        bias.defined() ? bias.stride(0) : 0, g, y.data_ptr<T>(), total);
    ISRN_CUDA_LAUNCH_CHECK("conv2d naive_forward_kernel");
  });
}

void conv2d_backward_input(const Tensor& grad_y_in, const Tensor& weight_in, const Conv2dParams& params,
                           Tensor& grad_x) {
  const Tensor grad_y = contiguous_input(grad_y_in), weight = contiguous_input(weight_in);
  const ConvGeometry g = geometry_of(grad_x.shape(), weight.shape(), grad_y.shape(), params, "conv2d_backward_input");
  const int64_t total = grad_x.numel();
  if (total == 0) return;
  dispatch_floating(grad_y.dtype(), "conv2d_backward_input", [&](auto tag) {
    using T = decltype(tag);
    naive_backward_input_kernel<T><<<grid_for(total), 256, 0, current_stream()>>>(
        grad_y.data_ptr<T>(), weight.data_ptr<T>(), g, grad_x.data_ptr<T>(), total);
    ISRN_CUDA_LAUNCH_CHECK("conv2d naive_backward_input_kernel");
  });
}

void conv2d_backward_weight(const Tensor& grad_y_in, const Tensor& x_in, const Conv2dParams& params, Tensor& grad_w) {
  const Tensor grad_y = contiguous_input(grad_y_in), x = contiguous_input(x_in);
  const ConvGeometry g = geometry_of(x.shape(), grad_w.shape(), grad_y.shape(), params, "conv2d_backward_weight");
  const int64_t total = grad_w.numel();
  if (total == 0) return;
  dispatch_floating(x.dtype(), "conv2d_backward_weight", [&](auto tag) {
    using T = decltype(tag);
    naive_backward_weight_kernel<T><<<grid_for(total), 256, 0, current_stream()>>>(
        grad_y.data_ptr<T>(), x.data_ptr<T>(), g, grad_w.data_ptr<T>(), total);
    ISRN_CUDA_LAUNCH_CHECK("conv2d naive_backward_weight_kernel");
  });
}

}  // namespace reference

// ================================================================================================
// Own implicit GEMM.
// ================================================================================================

namespace own {

void conv2d_forward(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias, const Conv2dParams& params,
                    Tensor& y) {
  if (isrn::detail::run_widened(x_in, weight_in, y, [&](const Tensor& a, const Tensor& b, Tensor& out) {
        own::conv2d_forward(a, b, Tensor(), params, out);  // a bfloat16 convolution has no bias (kernel_list.inc)
      }))
    return;
  if (x_in.dtype() != DType::Float32) return reference::conv2d_forward(x_in, weight_in, bias, params, y);
  const Tensor x = contiguous_input(x_in), weight = contiguous_input(weight_in);
  const ConvGeometry g = geometry_of(x.shape(), weight.shape(), y.shape(), params, "conv2d");
  const int M = g.co, Ncols = g.n * g.oh * g.ow, K = g.c * g.kh * g.kw;
  OutputLayout layout{};
  layout.out = y.data_ptr<float>();
  layout.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  layout.bias_stride = bias.defined() ? bias.stride(0) : 0;
  layout.per_image = int64_t(g.oh) * g.ow;
  layout.image_stride = int64_t(g.co) * g.oh * g.ow;
  layout.row_stride = int64_t(g.oh) * g.ow;
  layout.numel = y.numel();
  layout.bias_inner = int64_t(g.oh) * g.ow;
  dispatch_gemm<Pass::Forward>({weight.data_ptr<float>(), x.data_ptr<float>()}, g, M, Ncols, K, layout, y.device());
}

void conv2d_backward_input(const Tensor& grad_y_in, const Tensor& weight_in, const Conv2dParams& params,
                           Tensor& grad_x) {
  if (isrn::detail::run_widened(grad_y_in, weight_in, grad_x, [&](const Tensor& a, const Tensor& b, Tensor& out) {
        own::conv2d_backward_input(a, b, params, out);
      }))
    return;
  if (grad_y_in.dtype() != DType::Float32) return reference::conv2d_backward_input(grad_y_in, weight_in, params, grad_x);
  const Tensor grad_y = contiguous_input(grad_y_in), weight = contiguous_input(weight_in);
  const ConvGeometry g = geometry_of(grad_x.shape(), weight.shape(), grad_y.shape(), params, "conv2d_backward_input");
  const int M = g.c, Ncols = g.n * g.h * g.w, K = g.co * g.kh * g.kw;
  OutputLayout layout{};
  layout.out = grad_x.data_ptr<float>();
  layout.per_image = int64_t(g.h) * g.w;
  layout.image_stride = int64_t(g.c) * g.h * g.w;
  layout.row_stride = int64_t(g.h) * g.w;
  layout.numel = grad_x.numel();
  layout.bias_inner = 1;
  dispatch_gemm<Pass::BackwardInput>({weight.data_ptr<float>(), grad_y.data_ptr<float>()}, g, M, Ncols, K, layout,
                                     grad_x.device());
}

void conv2d_backward_weight(const Tensor& grad_y_in, const Tensor& x_in, const Conv2dParams& params, Tensor& grad_w) {
  if (isrn::detail::run_widened(grad_y_in, x_in, grad_w, [&](const Tensor& a, const Tensor& b, Tensor& out) {
        own::conv2d_backward_weight(a, b, params, out);
      }))
    return;
  if (x_in.dtype() != DType::Float32) return reference::conv2d_backward_weight(grad_y_in, x_in, params, grad_w);
  const Tensor grad_y = contiguous_input(grad_y_in), x = contiguous_input(x_in);
  const ConvGeometry g = geometry_of(x.shape(), grad_w.shape(), grad_y.shape(), params, "conv2d_backward_weight");
  const int M = g.co, Ncols = g.c * g.kh * g.kw, K = g.n * g.oh * g.ow;
  OutputLayout layout{};
  layout.out = grad_w.data_ptr<float>();
  layout.per_image = Ncols;  // one "image": rows of the weight gradient are contiguous
  layout.image_stride = 0;
  layout.row_stride = Ncols;
  layout.numel = grad_w.numel();
  layout.bias_inner = 1;
  dispatch_gemm<Pass::BackwardWeight>({grad_y.data_ptr<float>(), x.data_ptr<float>()}, g, M, Ncols, K, layout,
                                      grad_w.device());
}

}  // namespace own

// ================================================================================================
// The kernel_list.inc entries.
// ================================================================================================

#if ISRN_WITH_CUDNN
// Each pass on the path the backend switch gives (path_for): the own kernels, cuDNN (which may decline
// a problem: the own kernels take it), or the measured choice between them (keyed by make_key()).
template <typename MakeKey, typename RunOwn, typename RunCudnn>
void run_conv(DType dtype, MakeKey&& make_key, RunOwn&& run_own, RunCudnn&& run_cudnn) {
  switch (path_for(dtype)) {
    case Path::Own: return run_own();
    case Path::Cudnn:
      if (!run_cudnn()) run_own();
      return;
    case Path::Measure: return run_measured(make_key(), run_own, run_cudnn);
  }
}
#endif

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params, Tensor& y) {
#if ISRN_WITH_CUDNN
  run_conv(x.dtype(), [&] { return problem_key(0, x, weight, y, bias.defined(), params); },
           [&] { own::conv2d_forward(x, weight, bias, params, y); },
           [&] { return cudnn_conv::conv2d_forward(x, weight, bias, params, y); });
#else
  own::conv2d_forward(x, weight, bias, params, y);
#endif
}

void conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const Conv2dParams& params, Tensor& grad_x) {
#if ISRN_WITH_CUDNN
  run_conv(grad_y.dtype(), [&] { return problem_key(1, grad_y, weight, grad_x, false, params); },
           [&] { own::conv2d_backward_input(grad_y, weight, params, grad_x); },
           [&] { return cudnn_conv::conv2d_backward_input(grad_y, weight, params, grad_x); });
#else
  own::conv2d_backward_input(grad_y, weight, params, grad_x);
#endif
}

void conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const Conv2dParams& params, Tensor& grad_w) {
#if ISRN_WITH_CUDNN
  run_conv(x.dtype(), [&] { return problem_key(2, grad_y, x, grad_w, false, params); },
           [&] { own::conv2d_backward_weight(grad_y, x, params, grad_w); },
           [&] { return cudnn_conv::conv2d_backward_weight(grad_y, x, params, grad_w); });
#else
  own::conv2d_backward_weight(grad_y, x, params, grad_w);
#endif
}

}  // namespace isrn::cuda
