// CUDA GroupNorm, forward and backward, fused: statistics are accumulated in float64 (sum and sum
// of squares of x − x₀, x₀ the group's first element, so a large common offset cannot cancel the variance),
// then one elementwise pass applies the affine transform (and the ReLU).
//
// Forward. A group (n, g) is a contiguous run of D = (C/G)·HW elements. Small groups (the P5–P7
// maps) take one warp each and are done in a single kernel; large ones are split into chunks
// reduced by separate blocks (so a batch of 2 still fills the GPU), then a per-plane table of
// scale/shift/centre is built and one vectorized pass writes y = (x − mean)·scale + shift.
// Backward. Per plane (n, c): ds = Σ dz·x and db = Σ dz (dz = dy masked by y > 0 under the fused
// ReLU), chunked like the forward statistics; from them per-group coefficients give
// dx = c1·dz + c2·x + c3 in one more pass, and dγ, dβ are reduced over n in a fixed order.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/det_utils.cuh"

namespace isrn::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kSmallGroup = 4096;        // at most this many elements: one warp per group
constexpr int64_t kMinChunk = kBlock * 16;   // elements a block reduces at least

// Whether the float4 path applies: 16-byte aligned pointers and segment lengths divisible by 4
// (so every chunk boundary, a multiple of 4, stays aligned).
bool vectorizable(int64_t segment_len, std::initializer_list<const void*> ptrs) {
  if (segment_len % 4 != 0) return false;
  for (const void* p : ptrs)
    if (p && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

template <typename T>
__device__ __forceinline__ double to_d(T v) {
  return static_cast<double>(v);
}

// --- forward ------------------------------------------------------------------------------------

// One warp per group: statistics, then the normalized output, in one kernel.
template <typename T, typename S>
__global__ void gn_forward_small_kernel(const T* __restrict__ x, const T* __restrict__ gamma, int64_t gamma_stride,
                                        const T* __restrict__ beta, int64_t beta_stride, int64_t groups_total,
                                        int64_t group_len, int64_t hw, int64_t channels_per_group, int64_t groups,
                                        double eps, bool relu, T* __restrict__ y, S* __restrict__ mean_out,
                                        S* __restrict__ rstd_out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = blockDim.x >> 5;
  for (int64_t s = blockIdx.x * warps_per_block + (threadIdx.x >> 5); s < groups_total;
       s += int64_t(gridDim.x) * warps_per_block) {
    const T* xs = x + s * group_len;
    // Sums of x − x[0]: a large common offset would otherwise cancel the variance away.
    const double origin = group_len > 0 ? to_d(xs[0]) : 0.0;
    double sum = 0.0, sq = 0.0;
    for (int64_t i = lane; i < group_len; i += 32) {
      const double v = to_d(xs[i]) - origin;
      sum += v;
      sq += v * v;
    }
    sum = det::warp_sum(sum);
    sq = det::warp_sum(sq);
    const double shifted_mean = group_len > 0 ? sum / group_len : 0.0;
    const double mean = origin + shifted_mean;
    const double var = group_len > 0 ? ::fmax(sq / group_len - shifted_mean * shifted_mean, 0.0) : 0.0;
    const double rstd = 1.0 / ::sqrt(var + eps);
    if (lane == 0) {
      mean_out[s] = static_cast<S>(mean);
      rstd_out[s] = static_cast<S>(rstd);
    }
    const int64_t c0 = (s % groups) * channels_per_group;
    T* ys = y + s * group_len;
    for (int64_t i = lane; i < group_len; i += 32) {
      const int64_t c = c0 + i / hw;
      const T g = gamma ? gamma[c * gamma_stride] : T(1);
      const T b = beta ? beta[c * beta_stride] : T(0);
      const T scale = static_cast<T>(rstd) * g;
      // (x − mean)·scale, not x·scale − mean·scale: the latter cancels when rstd is large.
      T v = (xs[i] - static_cast<T>(mean)) * scale + b;
      if (relu) v = v > T(0) ? v : T(0);
      ys[i] = v;
    }
  }
}

// Partial (sum, sum of squares) of one chunk of one segment: blockIdx.x = segment · chunks + chunk.
template <typename T, bool VEC>
__global__ void gn_stats_partial_kernel(const T* __restrict__ x, int64_t segment_len, int64_t chunk_len, int chunks,
                                        double* __restrict__ partial) {
  __shared__ double scratch[64];
  const int64_t segment = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const int64_t begin = chunk * chunk_len, end = ::min(segment_len, begin + chunk_len);
  const T* xs = x + segment * segment_len;
  const double origin = to_d(xs[0]);  // sums of x − x[0] (see gn_forward_small_kernel)
  double sum = 0.0, sq = 0.0;
  if constexpr (VEC) {
    const float4* x4 = reinterpret_cast<const float4*>(xs);
#pragma unroll 4
    for (int64_t i = begin / 4 + threadIdx.x; i < end / 4; i += blockDim.x) {
      const float4 v = x4[i];
      const double a = v.x - origin, b = v.y - origin, c = v.z - origin, d = v.w - origin;
      sum += a + b + c + d;
      sq += a * a + b * b + c * c + d * d;
    }
  } else {
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const double v = to_d(xs[i]) - origin;
      sum += v;
      sq += v * v;
    }
  }
  det::block_sum2(sum, sq, scratch);
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = sum;
    partial[2 * blockIdx.x + 1] = sq;
  }
}

// One thread per plane (n, c): its group's statistics from the chunk partials (added in chunk
// order), the plane's scale and shift, and (first plane of the group) mean and rstd.
template <typename T, typename S>
__global__ void gn_forward_finalize_kernel(const T* __restrict__ x, const double* __restrict__ partial, int chunks,
                                           int64_t planes,
                                           int64_t channels, int64_t channels_per_group, int64_t group_len,
                                           double eps, const T* __restrict__ gamma, int64_t gamma_stride,
                                           const T* __restrict__ beta, int64_t beta_stride, T* __restrict__ scale,
                                           T* __restrict__ shift, T* __restrict__ center, S* __restrict__ mean_out,
                                           S* __restrict__ rstd_out) {
  ISRN_CUDA_KERNEL_LOOP(p, planes) {
    const int64_t c = p % channels, s = p / channels_per_group;  // planes of a group are consecutive
    double sum = 0.0, sq = 0.0;
    for (int k = 0; k < chunks; ++k) {
      sum += partial[2 * (s * chunks + k)];
      sq += partial[2 * (s * chunks + k) + 1];
    }
    const double shifted_mean = sum / group_len;
    const double mean = to_d(x[s * group_len]) + shifted_mean;
    const double var = ::fmax(sq / group_len - shifted_mean * shifted_mean, 0.0);
    const double rstd = 1.0 / ::sqrt(var + eps);
    const double g = gamma ? to_d(gamma[c * gamma_stride]) : 1.0;
    const double b = beta ? to_d(beta[c * beta_stride]) : 0.0;
    scale[p] = static_cast<T>(rstd * g);
    shift[p] = static_cast<T>(b);
    center[p] = static_cast<T>(mean);
    if (c % channels_per_group == 0) {
      mean_out[s] = static_cast<S>(mean);
      rstd_out[s] = static_cast<S>(rstd);
    }
  }
}

template <typename T, bool VEC>
__global__ void gn_forward_apply_kernel(const T* __restrict__ x, const T* __restrict__ scale,
                                        const T* __restrict__ shift, const T* __restrict__ center,
                                        det::IntDivider div_hw, int64_t total, bool relu, T* __restrict__ y) {
  if constexpr (VEC) {
    // hw % 4 == 0: the four elements of a float4 share a plane. hw < 2^31 (checked by the host).
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    const int64_t hw4 = div_hw.divisor / 4;
    ISRN_CUDA_KERNEL_LOOP(i, total / 4) {
      const int64_t p = i / hw4;
      const float a = scale[p], b = shift[p], m = center[p];
      float4 v = x4[i];
      v.x = fmaf(v.x - m, a, b);
      v.y = fmaf(v.y - m, a, b);
      v.z = fmaf(v.z - m, a, b);
      v.w = fmaf(v.w - m, a, b);
      if (relu) {
        v.x = fmaxf(v.x, 0.0f);
        v.y = fmaxf(v.y, 0.0f);
        v.z = fmaxf(v.z, 0.0f);
        v.w = fmaxf(v.w, 0.0f);
      }
      y4[i] = v;
    }
  } else {
    ISRN_CUDA_KERNEL_LOOP(i, total) {
      const int64_t p = i / int64_t(div_hw.divisor);
      T v = (x[i] - center[p]) * scale[p] + shift[p];
      if (relu) v = v > T(0) ? v : T(0);
      y[i] = v;
    }
  }
}

// --- backward -----------------------------------------------------------------------------------

// Partial (Σ dz·x, Σ dz) of one chunk of one plane.
template <typename T, bool VEC>
__global__ void gn_backward_partial_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                                           int64_t plane_len, int64_t chunk_len, int chunks,
                                           double* __restrict__ partial) {
  __shared__ double scratch[64];
  const int64_t plane = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const int64_t begin = chunk * chunk_len, end = ::min(plane_len, begin + chunk_len);
  const int64_t off = plane * plane_len;
  double ds = 0.0, db = 0.0;
  if constexpr (VEC) {
    const float4* dy4 = reinterpret_cast<const float4*>(dy + off);
    const float4* x4 = reinterpret_cast<const float4*>(x + off);
    const float4* y4 = y ? reinterpret_cast<const float4*>(y + off) : nullptr;
#pragma unroll 4
    for (int64_t i = begin / 4 + threadIdx.x; i < end / 4; i += blockDim.x) {
      float4 g = dy4[i];
      const float4 v = x4[i];
      if (y4) {
        const float4 m = y4[i];
        g.x = m.x > 0.0f ? g.x : 0.0f;
        g.y = m.y > 0.0f ? g.y : 0.0f;
        g.z = m.z > 0.0f ? g.z : 0.0f;
        g.w = m.w > 0.0f ? g.w : 0.0f;
      }
      ds += double(g.x) * v.x + double(g.y) * v.y + double(g.z) * v.z + double(g.w) * v.w;
      db += double(g.x) + double(g.y) + double(g.z) + double(g.w);
    }
  } else {
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      T g = dy[off + i];
      if (y && !(y[off + i] > T(0))) g = T(0);
      ds += to_d(g) * to_d(x[off + i]);
      db += to_d(g);
    }
  }
  det::block_sum2(ds, db, scratch);
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = ds;
    partial[2 * blockIdx.x + 1] = db;
  }
}

// Per plane: ds, db summed over the chunks in order.
__global__ void gn_backward_plane_totals_kernel(const double* __restrict__ partial, int chunks, int64_t planes,
                                                double* __restrict__ plane_ds, double* __restrict__ plane_db) {
  ISRN_CUDA_KERNEL_LOOP(p, planes) {
    double ds = 0.0, db = 0.0;
    for (int k = 0; k < chunks; ++k) {
      ds += partial[2 * (p * chunks + k)];
      db += partial[2 * (p * chunks + k) + 1];
    }
    plane_ds[p] = ds;
    plane_db[p] = db;
  }
}

// Per plane (n, c): dx = c1·dz + c2·x + c3 with c1 = rstd·γ_c and, over the group's D elements,
// A = Σ γ dz, B = Σ γ dz·x̂: c2 = −rstd²·B/D, c3 = rstd·(mean·rstd·B − A)/D.
template <typename T, typename S>
__global__ void gn_backward_coeffs_kernel(const double* __restrict__ plane_ds, const double* __restrict__ plane_db,
                                          const S* __restrict__ mean, const S* __restrict__ rstd,
                                          const T* __restrict__ gamma, int64_t gamma_stride, int64_t planes,
                                          int64_t channels, int64_t channels_per_group, int64_t group_len,
                                          T* __restrict__ c1, T* __restrict__ c2, T* __restrict__ c3) {
  ISRN_CUDA_KERNEL_LOOP(p, planes) {
    const int64_t c = p % channels, s = p / channels_per_group, first = s * channels_per_group;
    const double m = to_d(mean[s]), r = to_d(rstd[s]);
    double a = 0.0, b = 0.0;
    for (int64_t q = first; q < first + channels_per_group; ++q) {
      const double gq = gamma ? to_d(gamma[(q % channels) * gamma_stride]) : 1.0;
      a += gq * plane_db[q];
      b += gq * r * (plane_ds[q] - m * plane_db[q]);
    }
    const double g = gamma ? to_d(gamma[c * gamma_stride]) : 1.0;
    c1[p] = static_cast<T>(r * g);
    c2[p] = static_cast<T>(-r * r * b / group_len);
    c3[p] = static_cast<T>(r * (m * r * b - a) / group_len);
  }
}

// dγ_c = Σ_n rstd (ds − mean·db), dβ_c = Σ_n db, in n order.
template <typename T, typename S>
__global__ void gn_backward_params_kernel(const double* __restrict__ plane_ds, const double* __restrict__ plane_db,
                                          const S* __restrict__ mean, const S* __restrict__ rstd, int64_t batch,
                                          int64_t channels, int64_t groups, int64_t channels_per_group,
                                          T* __restrict__ grad_gamma, int64_t grad_gamma_stride,
                                          T* __restrict__ grad_beta, int64_t grad_beta_stride) {
  ISRN_CUDA_KERNEL_LOOP(c, channels) {
    double dg = 0.0, dbeta = 0.0;
    for (int64_t n = 0; n < batch; ++n) {
      const int64_t p = n * channels + c, s = n * groups + c / channels_per_group;
      dg += to_d(rstd[s]) * (plane_ds[p] - to_d(mean[s]) * plane_db[p]);
      dbeta += plane_db[p];
    }
    if (grad_gamma) grad_gamma[c * grad_gamma_stride] = static_cast<T>(dg);
    if (grad_beta) grad_beta[c * grad_beta_stride] = static_cast<T>(dbeta);
  }
}

template <typename T, bool VEC>
__global__ void gn_backward_apply_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                                         const T* __restrict__ c1, const T* __restrict__ c2, const T* __restrict__ c3,
                                         int64_t hw, int64_t total, T* __restrict__ dx) {
  if constexpr (VEC) {
    const float4* dy4 = reinterpret_cast<const float4*>(dy);
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* y4 = reinterpret_cast<const float4*>(y);
    float4* dx4 = reinterpret_cast<float4*>(dx);
    const int64_t hw4 = hw / 4;
    ISRN_CUDA_KERNEL_LOOP(i, total / 4) {
      const int64_t p = i / hw4;
      const float a = c1[p], b = c2[p], c = c3[p];
      float4 g = dy4[i];
      const float4 v = x4[i];
      if (y4) {
        const float4 m = y4[i];
        g.x = m.x > 0.0f ? g.x : 0.0f;
        g.y = m.y > 0.0f ? g.y : 0.0f;
        g.z = m.z > 0.0f ? g.z : 0.0f;
        g.w = m.w > 0.0f ? g.w : 0.0f;
      }
      float4 o;
      o.x = a * g.x + (b * v.x + c);
      o.y = a * g.y + (b * v.y + c);
      o.z = a * g.z + (b * v.z + c);
      o.w = a * g.w + (b * v.w + c);
      dx4[i] = o;
    }
  } else {
    ISRN_CUDA_KERNEL_LOOP(i, total) {
      const int64_t p = i / hw;
      T g = dy[i];
      if (y && !(y[i] > T(0))) g = T(0);
      dx[i] = c1[p] * g + (c2[p] * x[i] + c3[p]);
    }
  }
}

// Chunks per segment so that about eight blocks per SM are in flight (enough loads in flight to
// approach copy bandwidth), each reducing at least kMinChunk elements.
void plan_chunks(int64_t segments, int64_t segment_len, int& chunks, int64_t& chunk_len) {
  const int64_t want = std::max<int64_t>(1, (8 * int64_t(det::multiprocessor_count()) + segments - 1) / segments);
  const int64_t by_size = std::max<int64_t>(1, segment_len / kMinChunk);
  const int64_t c = std::min<int64_t>({want, by_size, 1024});
  chunk_len = (segment_len + c - 1) / c;
  chunk_len = (chunk_len + 3) / 4 * 4;  // chunk starts stay float4-aligned
  chunks = static_cast<int>(std::max<int64_t>(1, (segment_len + chunk_len - 1) / chunk_len));
}

Tensor contiguous_input(const Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

template <typename T>
const T* optional_ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}
template <typename T>
T* optional_out(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}
int64_t optional_stride(const Tensor& t) { return t.defined() && t.dim() > 0 ? t.stride(0) : 0; }

}  // namespace

void group_norm_forward(const Tensor& x_in, const Tensor& gamma, const Tensor& beta, int64_t groups, double eps,
                        bool fuse_relu, Tensor& y, Tensor& mean, Tensor& rstd) {
  const Tensor x = contiguous_input(x_in);
  const int64_t batch = x.size(0), channels = x.size(1);
  const int64_t total = x.numel();
  const int64_t groups_total = batch * groups;
  if (groups_total == 0) return;
  const int64_t hw = channels > 0 && batch > 0 ? total / (batch * channels) : 0;
  const int64_t cpg = channels / groups, group_len = cpg * hw;
  dispatch_floating(x.dtype(), "group_norm", [&](auto xtag) {
    using T = decltype(xtag);
    dispatch_floating(mean.dtype(), "group_norm", [&](auto stag) {
      using S = decltype(stag);
      const T* g = optional_ptr<T>(gamma);
      const T* b = optional_ptr<T>(beta);
      if (group_len <= kSmallGroup) {
        const int warps = kBlock / 32;
        const unsigned grid = static_cast<unsigned>(std::min<int64_t>((groups_total + warps - 1) / warps, 65535 * 8));
        gn_forward_small_kernel<T, S><<<grid, kBlock, 0, current_stream()>>>(
            x.data_ptr<T>(), g, optional_stride(gamma), b, optional_stride(beta), groups_total, group_len,
            std::max<int64_t>(hw, 1), cpg, groups, eps, fuse_relu, y.data_ptr<T>(), mean.data_ptr<S>(),
            rstd.data_ptr<S>());
        ISRN_CUDA_LAUNCH_CHECK("gn_forward_small_kernel");
        return;
      }
      det::check_int32_range("group_norm", "spatial size", hw);
      int chunks = 1;
      int64_t chunk_len = group_len;
      plan_chunks(groups_total, group_len, chunks, chunk_len);
      Tensor partial = det::scratch({groups_total * chunks * 2}, DType::Float64, x.device());
      const bool vec_stats = std::is_same_v<T, float> && vectorizable(group_len, {x.raw_data()});
      const unsigned stat_blocks = static_cast<unsigned>(groups_total * chunks);
      if (vec_stats) {
        gn_stats_partial_kernel<T, true><<<stat_blocks, kBlock, 0, current_stream()>>>(
            x.data_ptr<T>(), group_len, chunk_len, chunks, partial.data_ptr<double>());
      } else {
        gn_stats_partial_kernel<T, false><<<stat_blocks, kBlock, 0, current_stream()>>>(
            x.data_ptr<T>(), group_len, chunk_len, chunks, partial.data_ptr<double>());
      }
      ISRN_CUDA_LAUNCH_CHECK("gn_stats_partial_kernel");
      const int64_t planes = batch * channels;
      Tensor scale = det::scratch({planes}, x.dtype(), x.device()), shift = det::scratch({planes}, x.dtype(), x.device());
      Tensor center = det::scratch({planes}, x.dtype(), x.device());
      gn_forward_finalize_kernel<T, S><<<grid_for(planes), kBlock, 0, current_stream()>>>(
          x.data_ptr<T>(), partial.data_ptr<double>(), chunks, planes, channels, cpg, group_len, eps, g,
          optional_stride(gamma), b, optional_stride(beta), scale.data_ptr<T>(), shift.data_ptr<T>(),
          center.data_ptr<T>(), mean.data_ptr<S>(), rstd.data_ptr<S>());
      ISRN_CUDA_LAUNCH_CHECK("gn_forward_finalize_kernel");
      const det::IntDivider div_hw(static_cast<uint32_t>(hw));
      if (std::is_same_v<T, float> && vectorizable(hw, {x.raw_data(), y.raw_data()})) {
        gn_forward_apply_kernel<T, true><<<grid_for(total / 4), kBlock, 0, current_stream()>>>(
            x.data_ptr<T>(), scale.data_ptr<T>(), shift.data_ptr<T>(), center.data_ptr<T>(), div_hw, total, fuse_relu,
            y.data_ptr<T>());
      } else {
        gn_forward_apply_kernel<T, false><<<grid_for(total), kBlock, 0, current_stream()>>>(
            x.data_ptr<T>(), scale.data_ptr<T>(), shift.data_ptr<T>(), center.data_ptr<T>(), div_hw, total, fuse_relu,
            y.data_ptr<T>());
      }
      ISRN_CUDA_LAUNCH_CHECK("gn_forward_apply_kernel");
    });
  });
}

void group_norm_backward(const Tensor& grad_y_in, const Tensor& x_in, const Tensor& y_in, const Tensor& gamma,
                         const Tensor& mean_in, const Tensor& rstd_in, int64_t groups, bool fuse_relu, Tensor& grad_x,
                         Tensor& grad_gamma, Tensor& grad_beta) {
  const Tensor grad_y = contiguous_input(grad_y_in), x = contiguous_input(x_in);
  const Tensor y = fuse_relu ? contiguous_input(y_in) : Tensor();
  const Tensor mean = contiguous_input(mean_in), rstd = contiguous_input(rstd_in);
  const int64_t batch = x.size(0), channels = x.size(1), total = x.numel();
  const int64_t planes = batch * channels;
  const int64_t hw = planes > 0 ? total / planes : 0;
  const int64_t cpg = groups > 0 ? channels / groups : 0, group_len = cpg * hw;
  dispatch_floating(x.dtype(), "group_norm_backward", [&](auto xtag) {
    using T = decltype(xtag);
    dispatch_floating(mean.dtype(), "group_norm_backward", [&](auto stag) {
      using S = decltype(stag);
      Tensor plane_ds = det::scratch({planes}, DType::Float64, x.device());
      Tensor plane_db = det::scratch({planes}, DType::Float64, x.device());
      if (planes > 0) {
        if (hw > 0) {
          int chunks = 1;
          int64_t chunk_len = hw;
          plan_chunks(planes, hw, chunks, chunk_len);
          Tensor partial = det::scratch({planes * chunks * 2}, DType::Float64, x.device());
          const T* yp = fuse_relu ? y.data_ptr<T>() : nullptr;
          const unsigned blocks = static_cast<unsigned>(planes * chunks);
          if (std::is_same_v<T, float> && vectorizable(hw, {grad_y.raw_data(), x.raw_data(), yp})) {
            gn_backward_partial_kernel<T, true><<<blocks, kBlock, 0, current_stream()>>>(
                grad_y.data_ptr<T>(), x.data_ptr<T>(), yp, hw, chunk_len, chunks, partial.data_ptr<double>());
          } else {
            gn_backward_partial_kernel<T, false><<<blocks, kBlock, 0, current_stream()>>>(
                grad_y.data_ptr<T>(), x.data_ptr<T>(), yp, hw, chunk_len, chunks, partial.data_ptr<double>());
          }
          ISRN_CUDA_LAUNCH_CHECK("gn_backward_partial_kernel");
          gn_backward_plane_totals_kernel<<<grid_for(planes), kBlock, 0, current_stream()>>>(
              partial.data_ptr<double>(), chunks, planes, plane_ds.data_ptr<double>(), plane_db.data_ptr<double>());
          ISRN_CUDA_LAUNCH_CHECK("gn_backward_plane_totals_kernel");
        } else {
          ISRN_CUDA_CHECK(cudaMemsetAsync(plane_ds.raw_data(), 0, planes * sizeof(double), current_stream()));
          ISRN_CUDA_CHECK(cudaMemsetAsync(plane_db.raw_data(), 0, planes * sizeof(double), current_stream()));
        }
      }
      if (grad_x.defined() && total > 0) {
        Tensor c1 = det::scratch({planes}, x.dtype(), x.device()), c2 = det::scratch({planes}, x.dtype(), x.device()),
               c3 = det::scratch({planes}, x.dtype(), x.device());
        gn_backward_coeffs_kernel<T, S><<<grid_for(planes), kBlock, 0, current_stream()>>>(
            plane_ds.data_ptr<double>(), plane_db.data_ptr<double>(), mean.data_ptr<S>(), rstd.data_ptr<S>(),
            optional_ptr<T>(gamma), optional_stride(gamma), planes, channels, cpg, group_len, c1.data_ptr<T>(),
            c2.data_ptr<T>(), c3.data_ptr<T>());
        ISRN_CUDA_LAUNCH_CHECK("gn_backward_coeffs_kernel");
        const T* yp = fuse_relu ? y.data_ptr<T>() : nullptr;
        if (std::is_same_v<T, float> && vectorizable(hw, {grad_y.raw_data(), x.raw_data(), yp, grad_x.raw_data()})) {
          gn_backward_apply_kernel<T, true><<<grid_for(total / 4), kBlock, 0, current_stream()>>>(
              grad_y.data_ptr<T>(), x.data_ptr<T>(), yp, c1.data_ptr<T>(), c2.data_ptr<T>(), c3.data_ptr<T>(), hw,
              total, grad_x.data_ptr<T>());
        } else {
          gn_backward_apply_kernel<T, false><<<grid_for(total), kBlock, 0, current_stream()>>>(
              grad_y.data_ptr<T>(), x.data_ptr<T>(), yp, c1.data_ptr<T>(), c2.data_ptr<T>(), c3.data_ptr<T>(), hw,
              total, grad_x.data_ptr<T>());
        }
        ISRN_CUDA_LAUNCH_CHECK("gn_backward_apply_kernel");
      }
      if ((grad_gamma.defined() || grad_beta.defined()) && channels > 0) {
        gn_backward_params_kernel<T, S><<<grid_for(channels), kBlock, 0, current_stream()>>>(
            plane_ds.data_ptr<double>(), plane_db.data_ptr<double>(), mean.data_ptr<S>(), rstd.data_ptr<S>(), batch,
            channels, groups, cpg, optional_out<T>(grad_gamma), optional_stride(grad_gamma), optional_out<T>(grad_beta),
            optional_stride(grad_beta));
        ISRN_CUDA_LAUNCH_CHECK("gn_backward_params_kernel");
      }
    });
  });
}

}  // namespace isrn::cuda
