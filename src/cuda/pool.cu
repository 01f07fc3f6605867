// 2-D max pooling over NCHW: one thread per output cell; the gradient goes back to the recorded
// argmax with atomicAdd (overlapping windows can send several gradients to one input cell).
#include <limits>

#include "cuda/allocator.hpp"
#include "cuda/elementwise.cuh"

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

template <typename T>
struct MaxPoolBackwardFn {  // operands over y's shape: grad_y, indices, output position (contiguous)
  T* grad_x;
  const T* grad_y;
  const int64_t* indices;
  int64_t out_plane, in_plane;
  __device__ void operator()(const int64_t (&off)[3]) const {
    const int64_t plane = off[2] / out_plane, at = indices[off[1]];
    if (at >= 0) atomicAdd(grad_x + plane * in_plane + at, grad_y[off[0]]);
  }
};

}  // namespace

void max_pool2d_forward(const Tensor& x, const Pool2dParams& params, Tensor& y, Tensor& indices) {
  const int64_t total = y.numel();
  if (total == 0) return;
  DeviceGuard guard(y.device().index);
  const PoolGeometry g{x.size(2),         x.size(3),         y.size(2),         y.size(3),         params.kernel[0],
                       params.kernel[1],  params.stride[0],  params.stride[1],  params.padding[0], params.padding[1]};
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    max_pool2d_forward_kernel<T><<<grid_for(total, kBlock), kBlock, 0, current_stream()>>>(
        total, g, x.data_ptr<T>(), y.data_ptr<T>(), indices.data_ptr<int64_t>());
    ISRN_CUDA_LAUNCH_CHECK("max_pool2d_forward_kernel");
  });
}

void max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, Tensor& grad_x) {
  if (grad_y.numel() == 0) return;
  DeviceGuard guard(grad_x.device().index);
  const int64_t out_plane = grad_y.size(2) * grad_y.size(3), in_plane = grad_x.size(2) * grad_x.size(3);
  dispatch_floating(grad_x.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    const MaxPoolBackwardFn<T> fn{grad_x.data_ptr<T>(), static_cast<const T*>(grad_y.raw_data()),
                                  indices.data_ptr<int64_t>(), out_plane, in_plane};
    launch_elementwise<3>("max_pool2d_backward_kernel", grad_y.shape(),
                          {grad_y.strides(), indices.strides(), contiguous_strides(grad_y.shape())}, fn);
  });
}

}  // namespace isrn::cuda
