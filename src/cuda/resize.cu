// NCHW resize with PyTorch's interpolate semantics, forward and backward. The backward gathers: one
// thread per input cell finds the outputs whose taps reach it and adds their shares in output order,
// the CPU's order (atomics would add them in a different order each run, and training would not repeat).
// Bilinear: source = scale·dst (align_corners, scale = (in−1)/(out−1)) or scale·(dst+½)−½ clamped
// at 0 (scale = in/out), computed in the tensor's type as PyTorch does; the upper tap is clamped to
// the last row/column. Nearest: min(floor(dst·in/out), in−1) in float, as PyTorch's kernels.
// Equal input and output sizes are a plain copy (as PyTorch; the formula would give 0·inf = NaN
// next to an infinite neighbour).
#include "cuda/allocator.hpp"
#include "cuda/common.cuh"

namespace isrn::cuda {

namespace {

constexpr int kBlock = 256;

template <typename A>
struct Taps {  // value = w0·in[i0] + w1·in[i1]
  int64_t i0, i1;
  A w0, w1;
};

template <typename A>
A linear_scale(int64_t in, int64_t out, bool align_corners) {
  if (align_corners) return out > 1 ? static_cast<A>(in - 1) / static_cast<A>(out - 1) : A(0);
  return static_cast<A>(in) / static_cast<A>(out);
}

template <typename A>
__device__ __forceinline__ Taps<A> linear_taps(int64_t dst, int64_t in, A scale, bool align_corners) {
  A src = align_corners ? scale * static_cast<A>(dst) : scale * (static_cast<A>(dst) + A(0.5)) - A(0.5);
  if (src < A(0)) src = A(0);
  const int64_t i0 = static_cast<int64_t>(src);
  const A w1 = src - static_cast<A>(i0);
  return {i0, i0 < in - 1 ? i0 + 1 : i0, A(1) - w1, w1};
}

__device__ __forceinline__ int64_t nearest_source(int64_t dst, int64_t in, float scale) {
  const int64_t src = static_cast<int64_t>(floorf(static_cast<float>(dst) * scale));
  return src < in - 1 ? src : in - 1;
}

struct ResizeGeometry {
  int64_t channels, in_h, in_w, out_h, out_w;
  int64_t s_n, s_c, s_h, s_w;  // element strides of the strided side (x forward, grad_y backward)
};

template <typename T>
__global__ void resize_bilinear_forward_kernel(int64_t total, ResizeGeometry g, T scale_h, T scale_w,
                                               bool align_corners, const T* __restrict__ x, T* __restrict__ y) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t ow = i % g.out_w, oh = (i / g.out_w) % g.out_h, plane = i / (g.out_w * g.out_h);
    const T* xp = x + (plane / g.channels) * g.s_n + (plane % g.channels) * g.s_c;
    const Taps<T> th = linear_taps(oh, g.in_h, scale_h, align_corners);
    const Taps<T> tw = linear_taps(ow, g.in_w, scale_w, align_corners);
    auto at = [&](int64_t h, int64_t w) { return xp[h * g.s_h + w * g.s_w]; };
    y[i] = th.w0 * (tw.w0 * at(th.i0, tw.i0) + tw.w1 * at(th.i0, tw.i1)) +
           th.w1 * (tw.w0 * at(th.i1, tw.i0) + tw.w1 * at(th.i1, tw.i1));
  }
}

template <typename T>
__global__ void resize_nearest_forward_kernel(int64_t total, ResizeGeometry g, float scale_h, float scale_w,
                                              const T* __restrict__ x, T* __restrict__ y) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t ow = i % g.out_w, oh = (i / g.out_w) % g.out_h, plane = i / (g.out_w * g.out_h);
    const T* xp = x + (plane / g.channels) * g.s_n + (plane % g.channels) * g.s_c;
    y[i] = xp[nearest_source(oh, g.in_h, scale_h) * g.s_h + nearest_source(ow, g.in_w, scale_w) * g.s_w];
  }
}

// The first output along an axis whose source position (i0 of its taps, non-decreasing in the output
// position) is at least `target`: a binary search over the forward pass's own index computation.
template <typename SourceOf>
__device__ __forceinline__ int64_t first_output_reaching(int64_t target, int64_t out, SourceOf source_of) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (source_of(mid) < target)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// One thread per grad_x cell (contiguous); grad_y strided per g.s_*. A cell is tap i0 of the outputs
// whose i0 is the cell and tap i1 of those whose i0 is the cell before it (i1 = i0 + 1, or i0 at the
// last row), so its outputs are those with i0 in [cell − 1, cell]: one contiguous range per axis.
template <typename T>
__global__ void resize_bilinear_backward_kernel(int64_t total, ResizeGeometry g, T scale_h, T scale_w,
                                                bool align_corners, const T* __restrict__ grad_y,
                                                T* __restrict__ grad_x) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t w = i % g.in_w, h = (i / g.in_w) % g.in_h, plane = i / (g.in_w * g.in_h);
    const T* gy = grad_y + (plane / g.channels) * g.s_n + (plane % g.channels) * g.s_c;
    auto row_source = [&](int64_t oh) { return linear_taps(oh, g.in_h, scale_h, align_corners).i0; };
    auto col_source = [&](int64_t ow) { return linear_taps(ow, g.in_w, scale_w, align_corners).i0; };
    const int64_t oh_begin = first_output_reaching(h - 1, g.out_h, row_source);
    const int64_t oh_end = first_output_reaching(h + 1, g.out_h, row_source);
    const int64_t ow_begin = first_output_reaching(w - 1, g.out_w, col_source);
    const int64_t ow_end = first_output_reaching(w + 1, g.out_w, col_source);
    T acc = grad_x[i];
    for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
      const Taps<T> th = linear_taps(oh, g.in_h, scale_h, align_corners);
      for (int64_t ow = ow_begin; ow < ow_end; ++ow) {
        const Taps<T> tw = linear_taps(ow, g.in_w, scale_w, align_corners);
        const T value = gy[oh * g.s_h + ow * g.s_w];
        const T top = th.w0 * value, bottom = th.w1 * value;
        // The CPU twin's order within one output: (i0, i0), (i0, i1), (i1, i0), (i1, i1).
        if (th.i0 == h) {
          if (tw.i0 == w) acc += tw.w0 * top;
          if (tw.i1 == w) acc += tw.w1 * top;
        }
        if (th.i1 == h) {
          if (tw.i0 == w) acc += tw.w0 * bottom;
          if (tw.i1 == w) acc += tw.w1 * bottom;
        }
      }
    }
    grad_x[i] = acc;
  }
}

template <typename T>
__global__ void resize_nearest_backward_kernel(int64_t total, ResizeGeometry g, float scale_h, float scale_w,
                                               const T* __restrict__ grad_y, T* __restrict__ grad_x) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t w = i % g.in_w, h = (i / g.in_w) % g.in_h, plane = i / (g.in_w * g.in_h);
    const T* gy = grad_y + (plane / g.channels) * g.s_n + (plane % g.channels) * g.s_c;
    auto row_source = [&](int64_t oh) { return nearest_source(oh, g.in_h, scale_h); };
    auto col_source = [&](int64_t ow) { return nearest_source(ow, g.in_w, scale_w); };
    const int64_t oh_begin = first_output_reaching(h, g.out_h, row_source);
    const int64_t oh_end = first_output_reaching(h + 1, g.out_h, row_source);
    const int64_t ow_begin = first_output_reaching(w, g.out_w, col_source);
    const int64_t ow_end = first_output_reaching(w + 1, g.out_w, col_source);
    T acc = grad_x[i];
    for (int64_t oh = oh_begin; oh < oh_end; ++oh)
      for (int64_t ow = ow_begin; ow < ow_end; ++ow) acc += gy[oh * g.s_h + ow * g.s_w];
    grad_x[i] = acc;
  }
}

ResizeGeometry geometry(const Tensor& input_side, const Tensor& output_side, const Tensor& strided) {
  return {input_side.size(1), input_side.size(2), input_side.size(3), output_side.size(2), output_side.size(3),
          strided.stride(0),  strided.stride(1),  strided.stride(2),  strided.stride(3)};
}

}  // namespace

void resize_forward(const Tensor& x, ResizeMode mode, bool align_corners, Tensor& y) {
  const int64_t total = y.numel();
  if (total == 0) return;
  DeviceGuard guard(y.device().index);
  if (x.shape() == y.shape()) {
    copy(x, y);
    return;
  }
  const ResizeGeometry g = geometry(x, y, x);
  dispatch_floating(x.dtype(), "resize", [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(x.raw_data());
    if (mode == ResizeMode::Bilinear) {
      resize_bilinear_forward_kernel<T><<<grid_for(total, kBlock), kBlock, 0, current_stream()>>>(
          total, g, linear_scale<T>(g.in_h, g.out_h, align_corners), linear_scale<T>(g.in_w, g.out_w, align_corners),
          align_corners, px, y.data_ptr<T>());
      ISRN_CUDA_LAUNCH_CHECK("resize_bilinear_forward_kernel");
    } else {
      resize_nearest_forward_kernel<T><<<grid_for(total, kBlock), kBlock, 0, current_stream()>>>(
          total, g, linear_scale<float>(g.in_h, g.out_h, false), linear_scale<float>(g.in_w, g.out_w, false), px,
          y.data_ptr<T>());
      ISRN_CUDA_LAUNCH_CHECK("resize_nearest_forward_kernel");
    }
  });
}

void resize_backward(const Tensor& grad_y, ResizeMode mode, bool align_corners, Tensor& grad_x) {
  const int64_t total = grad_x.numel();
  if (total == 0 || grad_y.numel() == 0) return;
  ISRN_CHECK(grad_x.is_contiguous(), "[resize_backward] grad_x must be contiguous");
  DeviceGuard guard(grad_x.device().index);
  if (grad_y.shape() == grad_x.shape()) {  // the identity resize: grad_x (zero-filled) takes grad_y
    copy(grad_y, grad_x);
    return;
  }
  const ResizeGeometry g = geometry(grad_x, grad_y, grad_y);
  dispatch_floating(grad_x.dtype(), "resize_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* pg = static_cast<const T*>(grad_y.raw_data());
    if (mode == ResizeMode::Bilinear) {
      resize_bilinear_backward_kernel<T><<<grid_for(total, kBlock), kBlock, 0, current_stream()>>>(
          total, g, linear_scale<T>(g.in_h, g.out_h, align_corners), linear_scale<T>(g.in_w, g.out_w, align_corners),
          align_corners, pg, grad_x.data_ptr<T>());
      ISRN_CUDA_LAUNCH_CHECK("resize_bilinear_backward_kernel");
    } else {
      resize_nearest_backward_kernel<T><<<grid_for(total, kBlock), kBlock, 0, current_stream()>>>(
          total, g, linear_scale<float>(g.in_h, g.out_h, false), linear_scale<float>(g.in_w, g.out_w, false), pg,
          grad_x.data_ptr<T>());
      ISRN_CUDA_LAUNCH_CHECK("resize_nearest_backward_kernel");
    }
  });
}

}  // namespace isrn::cuda
