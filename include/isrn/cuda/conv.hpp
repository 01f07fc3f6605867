#pragma once
// Which implementation the CUDA convolutions run: isrn's own implicit-GEMM kernels or cuDNN.
// Declarations only (no CUDA headers), so the switch is usable from plain C++.
#include <cstdint>

namespace isrn::cuda {

enum class ConvBackend : uint8_t { Own, Cudnn };

// The default is cuDNN when this build has it (ISRN_WITH_CUDNN) and Own otherwise; the environment
// variable ISRN_CONV_BACKEND=own|cudnn, read at the first convolution, overrides the default.
// Asking for Cudnn in a build without cuDNN throws isrn::Error.
void set_conv_backend(ConvBackend backend);
ConvBackend conv_backend();
// Whether this build contains the cuDNN path at all.
bool conv_cudnn_built();

}  // namespace isrn::cuda
