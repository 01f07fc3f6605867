#pragma once
#include <array>

#include "isrn/tensor.hpp"

namespace isrn {

struct Pool2dParams {
  std::array<int64_t, 2> kernel{2, 2};
  std::array<int64_t, 2> stride{2, 2};
  std::array<int64_t, 2> padding{0, 0};  // symmetric, h and w; padded cells never win
  bool ceil_mode = false;                // as PyTorch: the last window must start inside the input or left padding
  int64_t out_h(int64_t h) const;
  int64_t out_w(int64_t w) const;
};

// NCHW max pooling; the gradient goes to the first maximum of each window.
Tensor max_pool2d(const Tensor& x, const Pool2dParams& params);
// Forward that also returns the flat (h*W+w) argmax per output, int64.
struct PoolResult {
  Tensor values;
  Tensor indices;
};
PoolResult max_pool2d_with_indices(const Tensor& x, const Pool2dParams& params);
// The gradient of max_pool2d for indices from max_pool2d_with_indices(x, params) (as PyTorch's
// max_pool2d_with_indices_backward, which also takes the pooling parameters); indices outside their
// windows are refused.
Tensor max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, const Shape& x_shape,
                           const Pool2dParams& params);

}  // namespace isrn
