#pragma once
// The cuDNN convolution path (conv_cudnn.cpp), present when ISRN_WITH_CUDNN is 1. Same contracts as
// the kernel_list.inc entries; asymmetric padding is handled by a zero-padded copy of the input.
#include "isrn/config.hpp"
#include "isrn/ops/conv.hpp"
#include "isrn/tensor.hpp"

namespace isrn::cuda::cudnn_conv {

// Each returns false, having written nothing, when cuDNN cannot run the problem (it reports
// NOT_SUPPORTED or offers no usable algorithm, e.g. for some bfloat16 shapes); the caller then runs
// isrn's own kernels. The answer is cached per shape like the algorithm choice.
bool conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params,
                    Tensor& y);
bool conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const Conv2dParams& params, Tensor& grad_x);
bool conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const Conv2dParams& params, Tensor& grad_w);

}  // namespace isrn::cuda::cudnn_conv

namespace isrn::cuda::conv_detail {

// x [N,C,H,W] → [N,C,H+top+bottom,W+left+right] with zeros around (conv.cu).
Tensor pad_nchw(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right);
// The inverse window: out[n,c,h,w] = padded[n,c,h+top,w+left] for out's shape.
void crop_nchw(const Tensor& padded, int64_t top, int64_t left, Tensor& out);

}  // namespace isrn::cuda::conv_detail
