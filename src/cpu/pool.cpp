// CPU max pooling: one output row at a time, windows clipped to the input (padding never wins).
#include <algorithm>
#include <cmath>
#include <limits>

#include "backend.hpp"
#include "cpu/strided.hpp"

namespace isrn::cpu {

void max_pool2d_forward(const Tensor& x, const Pool2dParams& params, Tensor& y, Tensor& indices) {
  const int64_t planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = y.size(2), OW = y.size(3);
  const int64_t kh = params.kernel[0], kw = params.kernel[1], sh = params.stride[0], sw = params.stride[1];
  const int64_t ph = params.padding[0], pw = params.padding[1];
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data_ptr<T>();
    T* py = y.data_ptr<T>();
    int64_t* pi = indices.data_ptr<int64_t>();
    const int64_t rows = planes * OH;
    // Interior columns: windows that lie inside the input horizontally, [ow_lo, ow_hi).
    const int64_t ow_lo = std::min<int64_t>(OW, (pw + sw - 1) / sw);
    const int64_t ow_hi = std::max(ow_lo, std::min<int64_t>(OW, W + pw - kw >= 0 ? (W + pw - kw) / sw + 1 : 0));
    // Threads from 2 * kParallelGrain input elements on, as rows of about numel / rows elements each.
    const int64_t grain = grain_for(rows > 0 ? x.numel() / rows : 1, kParallelGrain);
    parallel_for(0, rows, grain, [&](int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        const int64_t plane = r / OH, oh = r % OH;
        const T* in = px + plane * H * W;
        const int64_t h0 = std::max<int64_t>(oh * sh - ph, 0), h1 = std::min(oh * sh - ph + kh, H);
        T* values = py + r * OW;
        int64_t* index = pi + r * OW;
        // The first maximum in row-major window order wins; a NaN beats everything, the last NaN
        // winning among several (PyTorch's rule: v > best || isnan(v)).
        auto scan = [&](int64_t ow) {
          const int64_t w0 = std::max<int64_t>(ow * sw - pw, 0), w1 = std::min(ow * sw - pw + kw, W);
          int64_t best = h0 * W + w0;
          T best_value = -std::numeric_limits<T>::infinity();
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) {
              const T v = in[ih * W + iw];
              if (v > best_value || std::isnan(v)) {
                best_value = v;
                best = ih * W + iw;
              }
            }
          values[ow] = best_value;
          index[ow] = best;
        };
        for (int64_t ow = 0; ow < ow_lo; ++ow) scan(ow);
        // The interior, tap by tap in window order across the whole row: branch-free updates the
        // compiler vectorizes, with the same winner as the scan.
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
          values[ow] = -std::numeric_limits<T>::infinity();
          index[ow] = h0 * W + ow * sw - pw;
        }
        // Local copies: the int64 index stores could otherwise alias the captured sizes.
        const int64_t step = sw, lo = ow_lo, hi = ow_hi, taps_w = kw, width = W, pad_w = pw;
        T* __restrict vrow = values;
        int64_t* __restrict irow = index;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t j = 0; j < taps_w; ++j) {
            const int64_t first = ih * width + j - pad_w;  // input index of this tap for ow = 0
            const T* __restrict src = in + first;
            for (int64_t ow = lo; ow < hi; ++ow) {
              const T v = src[ow * step], current = vrow[ow];
              const bool take = (v > current) | (v != v);
              vrow[ow] = take ? v : current;
              irow[ow] = take ? first + ow * step : irow[ow];
            }
          }
        for (int64_t ow = ow_hi; ow < OW; ++ow) scan(ow);
      }
    });
  });
}

void max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, const Pool2dParams& /*params*/,
                         Tensor& grad_x) {
  const int64_t planes = grad_x.size(0) * grad_x.size(1), plane_size = grad_x.size(2) * grad_x.size(3);
  const int64_t outputs = grad_y.size(2) * grad_y.size(3);
  dispatch_floating(grad_y.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* pg = grad_y.data_ptr<T>();
    const int64_t* pi = indices.data_ptr<int64_t>();
    T* px = grad_x.data_ptr<T>();
    // Windows overlap within a plane, never across planes: planes are the race-free unit, and each
    // cell's gradients add in output order (the CUDA twin's order).
    parallel_for(0, planes, grain_for(outputs, kParallelGrain), [&](int64_t first, int64_t last) {
      for (int64_t p = first; p < last; ++p) {
        T* dst = px + p * plane_size;
        for (int64_t o = p * outputs; o < (p + 1) * outputs; ++o) dst[pi[o]] += pg[o];
      }
    });
  });
}

}  // namespace isrn::cpu
