// 2-D max pooling over NCHW: one thread per output cell forward; backward, one thread per input cell,
// which sums the gradients of the windows that chose it in output order (no atomics: overlapping
// windows would otherwise add in a different order each run, and training would not repeat).
#include <limits>

#include "cuda/allocator.hpp"
#include "cuda/common.cuh"

namespace isrn::cuda {

namespace {

constexpr int kBlock = 256;

struct PoolGeometry {
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
};

// The first maximum of each window in row-major order; a NaN wins, the last of several (PyTorch's
// rule v > best || isnan(v), as on the CPU). Padded cells never win: the window is clipped to the input.
template <typename T>
__global__ void max_pool2d_forward_kernel(int64_t total, PoolGeometry g, const T* __restrict__ x, T* __restrict__ y,
                                          int64_t* __restrict__ indices) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t ow = i % g.out_w, oh = (i / g.out_w) % g.out_h, plane = i / (g.out_w * g.out_h);
    const int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
    const int64_t h_begin = h0 < 0 ? 0 : h0, w_begin = w0 < 0 ? 0 : w0;
    const int64_t h_end = ::min(h0 + g.kernel_h, g.in_h), w_end = ::min(w0 + g.kernel_w, g.in_w);
    if (h_begin >= h_end || w_begin >= w_end) {  // only padding: impossible with PyTorch's limits, kept safe
      y[i] = -std::numeric_limits<T>::infinity();
      indices[i] = -1;
      continue;
    }
    const T* xp = x + plane * g.in_h * g.in_w;
    int64_t best_at = h_begin * g.in_w + w_begin;
    T best = xp[best_at];
    for (int64_t h = h_begin; h < h_end; ++h) {
      for (int64_t w = w_begin; w < w_end; ++w) {
        const T v = xp[h * g.in_w + w];
        if (v > best || v != v) {
          best = v;
          best_at = h * g.in_w + w;
        }
      }
    }
    y[i] = best;
    indices[i] = best_at;
  }
}

// The windows that cover input row (or column) `at`: outputs [begin, end) along that axis.
__device__ __forceinline__ void covering_windows(int64_t at, int64_t kernel, int64_t stride, int64_t pad, int64_t out,
                                                 int64_t& begin, int64_t& end) {
  const int64_t reach = at + pad - kernel;  // a window starting at o·stride − pad covers `at` iff o·stride > reach
  begin = reach < 0 ? 0 : reach / stride + 1;
  end = ::min((at + pad) / stride + 1, out);
}

struct Strides4 {
  int64_t n, c, h, w;
};

template <typename T>
__global__ void max_pool2d_backward_kernel(int64_t total, int64_t channels, PoolGeometry g, Strides4 gy_s,
                                           Strides4 idx_s, const T* __restrict__ grad_y,
                                           const int64_t* __restrict__ indices, T* __restrict__ grad_x) {
  ISRN_CUDA_KERNEL_LOOP(i, total) {
    const int64_t cell = i % (g.in_h * g.in_w), plane = i / (g.in_h * g.in_w);
    const int64_t n = plane / channels, c = plane % channels;
    int64_t oh_begin, oh_end, ow_begin, ow_end;
    covering_windows(cell / g.in_w, g.kernel_h, g.stride_h, g.pad_h, g.out_h, oh_begin, oh_end);
    covering_windows(cell % g.in_w, g.kernel_w, g.stride_w, g.pad_w, g.out_w, ow_begin, ow_end);
    const T* gp = grad_y + n * gy_s.n + c * gy_s.c;
    const int64_t* ip = indices + n * idx_s.n + c * idx_s.c;
    T acc = grad_x[i];
    for (int64_t oh = oh_begin; oh < oh_end; ++oh)
      for (int64_t ow = ow_begin; ow < ow_end; ++ow)
        if (ip[oh * idx_s.h + ow * idx_s.w] == cell) acc += gp[oh * gy_s.h + ow * gy_s.w];
    grad_x[i] = acc;
  }
}

Strides4 strides4(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

PoolGeometry pool_geometry(const Tensor& input_side, const Tensor& output_side, const Pool2dParams& p) {
  return {input_side.size(2), input_side.size(3), output_side.size(2), output_side.size(3), p.kernel[0],
          p.kernel[1],        p.stride[0],        p.stride[1],         p.padding[0],        p.padding[1]};
}

}  // namespace

void max_pool2d_forward(const Tensor& x, const Pool2dParams& params, Tensor& y, Tensor& indices) {
  const int64_t total = y.numel();
  if (total == 0) return;
  DeviceGuard guard(y.device().index);
  const PoolGeometry g = pool_geometry(x, y, params);
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    max_pool2d_forward_kernel<T><<<grid_for(total, kBlock), kBlock, 0, current_stream()>>>(
        total, g, x.data_ptr<T>(), y.data_ptr<T>(), indices.data_ptr<int64_t>());
    ISRN_CUDA_LAUNCH_CHECK("max_pool2d_forward_kernel");
  });
}

void max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, const Pool2dParams& params, Tensor& grad_x) {
  const int64_t total = grad_x.numel();
  if (total == 0 || grad_y.numel() == 0) return;
  DeviceGuard guard(grad_x.device().index);
  ISRN_CHECK(grad_x.is_contiguous(), "[max_pool2d_backward] grad_x must be contiguous");
  const PoolGeometry g = pool_geometry(grad_x, grad_y, params);
  dispatch_floating(grad_x.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    max_pool2d_backward_kernel<T><<<grid_for(total, kBlock), kBlock, 0, current_stream()>>>(
        total, grad_x.size(1), g, strides4(grad_y), strides4(indices), static_cast<const T*>(grad_y.raw_data()),
        indices.data_ptr<int64_t>(), grad_x.data_ptr<T>());
    ISRN_CUDA_LAUNCH_CHECK("max_pool2d_backward_kernel");
  });
}

}  // namespace isrn::cuda
