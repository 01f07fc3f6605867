#pragma once
// 2-D convolution, NCHW input, [C_out, C_in, KH, KW] weight (no groups).
#include <array>

#include "isrn/tensor.hpp"

namespace isrn {

struct Conv2dParams {
  std::array<int64_t, 2> stride{1, 1};          // h, w
  std::array<int64_t, 4> padding{0, 0, 0, 0};   // top, bottom, left, right
  std::array<int64_t, 2> dilation{1, 1};        // h, w

  static Conv2dParams same(int64_t kh, int64_t kw, int64_t stride = 1, int64_t dilation = 1) {
    Conv2dParams p;
    p.stride = {stride, stride};
    p.dilation = {dilation, dilation};
    int64_t ph = dilation * (kh - 1) / 2, pw = dilation * (kw - 1) / 2;
    p.padding = {ph, dilation * (kh - 1) - ph, pw, dilation * (kw - 1) - pw};
    return p;
  }
  int64_t out_h(int64_t h, int64_t kh) const {
    return (h + padding[0] + padding[1] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  }
  int64_t out_w(int64_t w, int64_t kw) const {
    return (w + padding[2] + padding[3] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  }
};

// bias may be undefined. Gradients for input, weight and bias.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params);
// The two gradient convolutions, exposed as ops of their own (benchmarks call them directly).
Tensor conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const Shape& x_shape,
                             const Conv2dParams& params);
Tensor conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const Shape& w_shape,
                              const Conv2dParams& params);

}  // namespace isrn
