// GroupNorm on the CPU. Statistics and gradient sums accumulate in double over fixed-size chunks whose
// partial sums are combined in chunk order, so results do not depend on the thread count, and a few
// large groups (batch 1 at high resolution) still spread over every core.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend.hpp"
#include "cpu/strided.hpp"

namespace isrn::cpu {

namespace {

// Elements per parallel task. Fixed (not derived from the thread count) so the summation order,
// and with it every rounding, is the same on any machine.
constexpr int64_t kChunk = 16384;
// A pass over fewer elements (about 15 µs on one core) runs on one thread: the parallel region would save
// little and, with another process on the second core, can cost a scheduler time slice.
constexpr int64_t kNormParallelGrain = int64_t{1} << 16;

struct GroupLayout {
  int64_t n, c, groups, channels_per_group, plane, group_size;  // plane = H*W*..., group_size = Cg*plane
};

GroupLayout layout_of(const Tensor& x, int64_t groups) {
  GroupLayout l{};
  l.n = x.size(0);
  l.c = x.size(1);
  l.groups = groups;
  l.channels_per_group = l.c / groups;
  l.plane = 1;
  for (int64_t d = 2; d < x.dim(); ++d) l.plane *= x.size(d);
  l.group_size = l.channels_per_group * l.plane;
  return l;
}

// Splits `segments` contiguous runs of `length` elements into tasks of at most kChunk elements and
// calls task(segment, begin, end, task_index) for each, in parallel when the whole job is large.
template <typename Fn>
void for_each_chunk(int64_t segments, int64_t length, Fn&& task) {
  const int64_t per_segment = std::max<int64_t>(1, (length + kChunk - 1) / kChunk);
  const int64_t tasks = segments * per_segment;
  parallel_for(0, tasks, grain_when(segments * length >= kNormParallelGrain, tasks), [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const int64_t s = t / per_segment, k = t % per_segment;
      task(s, k * kChunk, std::min(length, (k + 1) * kChunk), t);
    }
  });
}

// dy where the fused ReLU passed its input (y > 0), else 0. Written as a mask multiply: GCC keeps a
// select between two loaded values as a branch, which blocks vectorization (10× slower on random
// signs). A non-finite dy at an inactive position would give NaN instead of 0; gradients are finite.
template <typename T>
inline double relu_masked(T dy, T y) {
  return static_cast<double>(dy) * static_cast<double>(y > T(0));
}

int64_t chunks_per_segment(int64_t length) { return std::max<int64_t>(1, (length + kChunk - 1) / kChunk); }

template <typename T>
void forward_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, int64_t groups, double eps,
                  bool fuse_relu, Tensor& y, Tensor& mean, Tensor& rstd) {
  const GroupLayout l = layout_of(x, groups);
  const T* px = x.data_ptr<T>();
  const Tensor gc = gamma.defined() ? gamma.contiguous() : Tensor();
  const Tensor bc = beta.defined() ? beta.contiguous() : Tensor();
  const T* pg = gc.defined() ? gc.data_ptr<T>() : nullptr;
  const T* pb = bc.defined() ? bc.data_ptr<T>() : nullptr;
  T* py = y.data_ptr<T>();
  T* pmean = mean.data_ptr<T>();
  T* prstd = rstd.data_ptr<T>();

  // Sums of (x − K) and (x − K)² with K the group's first element: the shift keeps E[d²] − E[d]²
  // free of cancellation when the mean is large compared with the spread.
  const int64_t blocks = l.n * l.groups, per_block = chunks_per_segment(l.group_size);
  std::vector<double> s1(blocks * per_block), s2(blocks * per_block);
  for_each_chunk(blocks, l.group_size, [&](int64_t b, int64_t begin, int64_t end, int64_t t) {
    const T* p = px + b * l.group_size;
    const double shift = static_cast<double>(p[0]);
    double a1 = 0.0, a2 = 0.0;
#pragma omp simd reduction(+ : a1, a2)
    for (int64_t i = begin; i < end; ++i) {
      const double d = static_cast<double>(p[i]) - shift;
      a1 += d;
      a2 += d * d;
    }
    s1[t] = a1;
    s2[t] = a2;
  });
  std::vector<double> mu(blocks), rs(blocks);
  for (int64_t b = 0; b < blocks; ++b) {
    double a1 = 0.0, a2 = 0.0;
    for (int64_t k = 0; k < per_block; ++k) {
      a1 += s1[b * per_block + k];
      a2 += s2[b * per_block + k];
    }
    const double inv = 1.0 / static_cast<double>(l.group_size);
    const double m1 = a1 * inv;
    const double var = std::max(a2 * inv - m1 * m1, 0.0);
    mu[b] = static_cast<double>(px[b * l.group_size]) + m1;
    rs[b] = 1.0 / std::sqrt(var + eps);
    pmean[b] = static_cast<T>(mu[b]);
    prstd[b] = static_cast<T>(rs[b]);
  }

  // y = (x − μ)·(rstd·γ) + β per channel plane; subtracting μ first keeps a large mean from
  // swamping the normalized value.
  for_each_chunk(l.n * l.c, l.plane, [&](int64_t p, int64_t begin, int64_t end, int64_t) {
    const int64_t n = p / l.c, c = p % l.c, b = n * l.groups + c / l.channels_per_group;
    const double scale = rs[b] * (pg ? static_cast<double>(pg[c]) : 1.0);
    const double offset = pb ? static_cast<double>(pb[c]) : 0.0;
    const double m = mu[b];
    const T* in = px + p * l.plane;
    T* out = py + p * l.plane;
    if (fuse_relu) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        const T v = static_cast<T>((static_cast<double>(in[i]) - m) * scale + offset);
        out[i] = v > T(0) ? v : T(0);  // a select in T: the double form defeats GCC's if-conversion
      }
    } else {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) out[i] = static_cast<T>((static_cast<double>(in[i]) - m) * scale + offset);
    }
  });
}

template <typename T>
void backward_impl(const Tensor& grad_y, const Tensor& x, const Tensor& y, const Tensor& gamma, const Tensor& mean,
                   const Tensor& rstd, int64_t groups, bool fuse_relu, Tensor& grad_x, Tensor& grad_gamma,
                   Tensor& grad_beta) {
  const GroupLayout l = layout_of(x, groups);
  const Tensor gyc = grad_y.contiguous(), xc = x.contiguous();
  const Tensor yc = fuse_relu ? y.contiguous() : Tensor();
  const Tensor gc = gamma.defined() ? gamma.contiguous() : Tensor();
  const Tensor mc = mean.contiguous(), rc = rstd.contiguous();
  const T* pdy = gyc.data_ptr<T>();
  const T* px = xc.data_ptr<T>();
  const T* py = fuse_relu ? yc.data_ptr<T>() : nullptr;
  const T* pg = gc.defined() ? gc.data_ptr<T>() : nullptr;
  const T* pmean = mc.data_ptr<T>();
  const T* prstd = rc.data_ptr<T>();
  T* pdx = grad_x.data_ptr<T>();
  auto block_of = [&](int64_t plane_index) {
    return (plane_index / l.c) * l.groups + (plane_index % l.c) / l.channels_per_group;
  };

  // Per channel plane: Σ dy·(x − μ) and Σ dy, with dy masked where the fused ReLU was inactive.
  const int64_t planes = l.n * l.c, per_plane = chunks_per_segment(l.plane);
  std::vector<double> part_xdy(planes * per_plane), part_dy(planes * per_plane);
  for_each_chunk(planes, l.plane, [&](int64_t p, int64_t begin, int64_t end, int64_t t) {
    const double m = static_cast<double>(pmean[block_of(p)]);
    const T* dy = pdy + p * l.plane;
    const T* in = px + p * l.plane;
    double a1 = 0.0, a2 = 0.0;
    if (fuse_relu) {
      const T* out = py + p * l.plane;
#pragma omp simd reduction(+ : a1, a2)
      for (int64_t i = begin; i < end; ++i) {
        const double g = relu_masked(dy[i], out[i]);
        a1 += g * (static_cast<double>(in[i]) - m);
        a2 += g;
      }
    } else {
#pragma omp simd reduction(+ : a1, a2)
      for (int64_t i = begin; i < end; ++i) {
        const double g = static_cast<double>(dy[i]);
        a1 += g * (static_cast<double>(in[i]) - m);
        a2 += g;
      }
    }
    part_xdy[t] = a1;
    part_dy[t] = a2;
  });
  std::vector<double> xdy(planes, 0.0), sdy(planes, 0.0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t k = 0; k < per_plane; ++k) {
      xdy[p] += part_xdy[p * per_plane + k];
      sdy[p] += part_dy[p * per_plane + k];
    }

  // dγ_c = Σ_n rstd·Σ dy·(x − μ), dβ_c = Σ_n Σ dy: each channel owned by one iteration, so no races.
  if (grad_gamma.defined() || grad_beta.defined()) {
    T* pdg = grad_gamma.defined() ? grad_gamma.data_ptr<T>() : nullptr;
    T* pdb = grad_beta.defined() ? grad_beta.data_ptr<T>() : nullptr;
    for (int64_t c = 0; c < l.c; ++c) {
      double dg = 0.0, db = 0.0;
      for (int64_t n = 0; n < l.n; ++n) {
        const int64_t p = n * l.c + c;
        dg += static_cast<double>(prstd[block_of(p)]) * xdy[p];
        db += sdy[p];
      }
      if (pdg) pdg[c] = static_cast<T>(dg);
      if (pdb) pdb[c] = static_cast<T>(db);
    }
  }

  // dx = rstd·(γ·dy − mean(γ·dy)) − (x − μ)·rstd³·mean(γ·dy·(x − μ)), per group.
  const int64_t blocks = l.n * l.groups;
  std::vector<double> k_const(blocks), k_linear(blocks);
  const double inv_size = 1.0 / static_cast<double>(std::max<int64_t>(l.group_size, 1));
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t n = b / l.groups, g = b % l.groups;
    double a = 0.0, s = 0.0;
    for (int64_t c = g * l.channels_per_group; c < (g + 1) * l.channels_per_group; ++c) {
      const double gam = pg ? static_cast<double>(pg[c]) : 1.0;
      a += gam * xdy[n * l.c + c];
      s += gam * sdy[n * l.c + c];
    }
    const double r = static_cast<double>(prstd[b]);
    k_const[b] = r * s * inv_size;
    k_linear[b] = r * r * r * a * inv_size;
  }
  for_each_chunk(planes, l.plane, [&](int64_t p, int64_t begin, int64_t end, int64_t) {
    const int64_t b = block_of(p), c = p % l.c;
    const double r = static_cast<double>(prstd[b]), m = static_cast<double>(pmean[b]);
    const double scale = r * (pg ? static_cast<double>(pg[c]) : 1.0);
    const double kc = k_const[b], kl = k_linear[b];
    const T* dy = pdy + p * l.plane;
    const T* in = px + p * l.plane;
    T* dx = pdx + p * l.plane;
    if (fuse_relu) {
      const T* out = py + p * l.plane;
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        const double g = relu_masked(dy[i], out[i]);
        dx[i] = static_cast<T>(scale * g - kc - (static_cast<double>(in[i]) - m) * kl);
      }
    } else {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i)
        dx[i] = static_cast<T>(scale * static_cast<double>(dy[i]) - kc - (static_cast<double>(in[i]) - m) * kl);
    }
  });
}

}  // namespace

void group_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, int64_t groups, double eps,
                        bool fuse_relu, Tensor& y, Tensor& mean, Tensor& rstd) {
  dispatch_floating(x.dtype(), "group_norm", [&](auto tag) {
    forward_impl<decltype(tag)>(x.contiguous(), gamma, beta, groups, eps, fuse_relu, y, mean, rstd);
  });
}

void group_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& y, const Tensor& gamma,
                         const Tensor& mean, const Tensor& rstd, int64_t groups, bool fuse_relu, Tensor& grad_x,
                         Tensor& grad_gamma, Tensor& grad_beta) {
  dispatch_floating(x.dtype(), "group_norm_backward", [&](auto tag) {
    backward_impl<decltype(tag)>(grad_y, x, y, gamma, mean, rstd, groups, fuse_relu, grad_x, grad_gamma,
                                 grad_beta);
  });
}

}  // namespace isrn::cpu
