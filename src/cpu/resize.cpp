// CPU resize with PyTorch's interpolate index rules. Source indices and weights depend on one axis
// only, so they are tabulated once per axis; each output then costs 2 (nearest: 1) table lookups.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend.hpp"
#include "cpu/strided.hpp"

namespace isrn::cpu {

namespace {

// For each output position: the two source positions and their weights (nearest: i1 = i0, l1 = 0).
template <typename T>
struct AxisTable {
  std::vector<int64_t> i0, i1;
  std::vector<T> l0, l1;
};

// PyTorch's area_pixel_compute_source_index + compute_source_index_and_lambda, in the tensor's type.
template <typename T>
AxisTable<T> bilinear_table(int64_t in, int64_t out, bool align_corners) {
  AxisTable<T> t{std::vector<int64_t>(out), std::vector<int64_t>(out), std::vector<T>(out), std::vector<T>(out)};
  const T scale = align_corners ? (out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0))
                                : static_cast<T>(in) / static_cast<T>(out);
  for (int64_t o = 0; o < out; ++o) {
    if (in == out) {
      t.i0[o] = t.i1[o] = o;
      t.l0[o] = T(1);
      t.l1[o] = T(0);
      continue;
    }
    T src = align_corners ? scale * static_cast<T>(o) : scale * (static_cast<T>(o) + T(0.5)) - T(0.5);
    if (src < T(0)) src = T(0);  // align_corners=false: the first half-pixel clamps to the edge
    const int64_t i0 = static_cast<int64_t>(src);
    t.i0[o] = i0;
    t.i1[o] = i0 + (i0 < in - 1 ? 1 : 0);
    t.l1[o] = std::clamp(src - static_cast<T>(i0), T(0), T(1));
    t.l0[o] = T(1) - t.l1[o];
  }
  return t;
}

// PyTorch's 'nearest' (nearest_idx): floor(dst * in/out) with the scale in float whatever the tensor's
// type, exact shortcuts for equal and doubled sizes, clamped to the last row.
std::vector<int64_t> nearest_table(int64_t in, int64_t out) {
  std::vector<int64_t> idx(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    if (out == in)
      idx[o] = o;
    else if (out == 2 * in)
      idx[o] = o >> 1;
    else
      idx[o] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(o) * scale)), in - 1);
  }
  return idx;
}

template <typename T>
void bilinear_forward(const T* x, int64_t planes, int64_t H, int64_t W, T* y, int64_t OH, int64_t OW,
                      bool align_corners) {
  const AxisTable<T> th = bilinear_table<T>(H, OH, align_corners), tw = bilinear_table<T>(W, OW, align_corners);
  parallel_for(0, planes * OH, grain_for(OW, kParallelGrain), [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      const int64_t p = r / OH, oh = r % OH;
      const T* row0 = x + (p * H + th.i0[oh]) * W;
      const T* row1 = x + (p * H + th.i1[oh]) * W;
      const T a0 = th.l0[oh], a1 = th.l1[oh];
      T* out = y + r * OW;
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t w0 = tw.i0[ow], w1 = tw.i1[ow];
        out[ow] = a0 * (tw.l0[ow] * row0[w0] + tw.l1[ow] * row0[w1]) +
                  a1 * (tw.l0[ow] * row1[w0] + tw.l1[ow] * row1[w1]);
      }
    }
  });
}

template <typename T>
void bilinear_backward(const T* gy, int64_t planes, int64_t H, int64_t W, T* gx, int64_t OH, int64_t OW,
                       bool align_corners) {
  const AxisTable<T> th = bilinear_table<T>(H, OH, align_corners), tw = bilinear_table<T>(W, OW, align_corners);
  // Several outputs feed one input within a plane, none across planes: planes are the race-free unit.
  parallel_for(0, planes, grain_for(OH * OW, kParallelGrain), [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) {
      T* plane = gx + p * H * W;
      for (int64_t oh = 0; oh < OH; ++oh) {
        T* row0 = plane + th.i0[oh] * W;
        T* row1 = plane + th.i1[oh] * W;
        const T a0 = th.l0[oh], a1 = th.l1[oh];
        const T* g = gy + (p * OH + oh) * OW;
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t w0 = tw.i0[ow], w1 = tw.i1[ow];
          const T top = a0 * g[ow], bottom = a1 * g[ow];
          row0[w0] += tw.l0[ow] * top;
          row0[w1] += tw.l1[ow] * top;
          row1[w0] += tw.l0[ow] * bottom;
          row1[w1] += tw.l1[ow] * bottom;
        }
      }
    }
  });
}

template <typename T>
void nearest_forward(const T* x, int64_t planes, int64_t H, int64_t W, T* y, int64_t OH, int64_t OW) {
  const std::vector<int64_t> ih = nearest_table(H, OH), iw = nearest_table(W, OW);
  parallel_for(0, planes * OH, grain_for(OW, kParallelGrain), [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      const int64_t p = r / OH, oh = r % OH;
      const T* row = x + (p * H + ih[oh]) * W;
      T* out = y + r * OW;
      for (int64_t ow = 0; ow < OW; ++ow) out[ow] = row[iw[ow]];
    }
  });
}

template <typename T>
void nearest_backward(const T* gy, int64_t planes, int64_t H, int64_t W, T* gx, int64_t OH, int64_t OW) {
  const std::vector<int64_t> ih = nearest_table(H, OH), iw = nearest_table(W, OW);
  parallel_for(0, planes, grain_for(OH * OW, kParallelGrain), [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) {
      for (int64_t oh = 0; oh < OH; ++oh) {
        T* row = gx + (p * H + ih[oh]) * W;
        const T* g = gy + (p * OH + oh) * OW;
        for (int64_t ow = 0; ow < OW; ++ow) row[iw[ow]] += g[ow];
      }
    }
  });
}

}  // namespace

void resize_forward(const Tensor& x, ResizeMode mode, bool align_corners, Tensor& y) {
  const int64_t planes = x.size(0) * x.size(1);
  dispatch_floating(x.dtype(), "resize", [&](auto tag) {
    using T = decltype(tag);
    if (mode == ResizeMode::Bilinear)
      bilinear_forward(x.data_ptr<T>(), planes, x.size(2), x.size(3), y.data_ptr<T>(), y.size(2), y.size(3),
                       align_corners);
    else
      nearest_forward(x.data_ptr<T>(), planes, x.size(2), x.size(3), y.data_ptr<T>(), y.size(2), y.size(3));
  });
}

void resize_backward(const Tensor& grad_y, ResizeMode mode, bool align_corners, Tensor& grad_x) {
  const int64_t planes = grad_x.size(0) * grad_x.size(1);
  dispatch_floating(grad_y.dtype(), "resize_backward", [&](auto tag) {
    using T = decltype(tag);
    if (mode == ResizeMode::Bilinear)
      bilinear_backward(grad_y.data_ptr<T>(), planes, grad_x.size(2), grad_x.size(3), grad_x.data_ptr<T>(),
                        grad_y.size(2), grad_y.size(3), align_corners);
    else
      nearest_backward(grad_y.data_ptr<T>(), planes, grad_x.size(2), grad_x.size(3), grad_x.data_ptr<T>(),
                       grad_y.size(2), grad_y.size(3));
  });
}

}  // namespace isrn::cpu
