#pragma once
#include "isrn/tensor.hpp"

namespace isrn {

enum class ResizeMode : uint8_t { Bilinear, Nearest };

// NCHW resize to an explicit size, with PyTorch's interpolate semantics (nearest: floor(dst*scale)).
// align_corners applies to bilinear only.
Tensor resize(const Tensor& x, int64_t out_h, int64_t out_w, ResizeMode mode,
              bool align_corners = false);
Tensor resize_backward(const Tensor& grad_y, const Shape& x_shape, ResizeMode mode, bool align_corners);

}  // namespace isrn
