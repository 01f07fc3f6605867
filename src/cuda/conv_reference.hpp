#pragma once
// Naive direct CUDA convolutions: one thread per output element, float64 accumulation. They are the
// second oracle for the implicit-GEMM and cuDNN paths (tests call them directly) and the float64
// path of the own backend. Same contracts as the kernel_list.inc entries of the same names.
#include "isrn/ops/conv.hpp"
#include "isrn/tensor.hpp"

namespace isrn::cuda::reference {

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params,
                    Tensor& y);
void conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const Conv2dParams& params, Tensor& grad_x);
void conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const Conv2dParams& params, Tensor& grad_w);

}  // namespace isrn::cuda::reference

namespace isrn::cuda::own {

// The own implicit-GEMM kernels (float32), whatever the backend switch says: tests compare them
// with cuDNN and with the references. float64 goes to the references.
void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params,
                    Tensor& y);
void conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const Conv2dParams& params, Tensor& grad_x);
void conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const Conv2dParams& params, Tensor& grad_w);

}  // namespace isrn::cuda::own
