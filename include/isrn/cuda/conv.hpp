#pragma once
// Which implementation the CUDA convolutions run: isrn's own implicit-GEMM kernels or cuDNN.
// Declarations only (no CUDA headers), so the switch is usable from plain C++.
#include <cstdint>

namespace isrn::cuda {

// Auto (the default): isrn's own kernels for float32 in FP32 math, where they measured faster than
// isrn's cuDNN path on every detector shape and pass (bench/RESULTS.md, H100; the cuDNN path refuses
// FFT/Winograd algorithms for accuracy); cuDNN for the rest: bfloat16 and float32 with TF32 allowed
// (set_allow_tf32), for its tensor cores, which the own kernels do not use, and float64, where the
// own path is the naive oracle. Own and Cudnn force one path for every dtype.
enum class ConvBackend : uint8_t { Auto, Own, Cudnn };

// The environment variable ISRN_CONV_BACKEND=auto|own|cudnn, read at the first convolution, overrides
// the default. Asking for Cudnn in a build without cuDNN throws isrn::Error; Auto there means Own.
void set_conv_backend(ConvBackend backend);
ConvBackend conv_backend();
// Whether this build contains the cuDNN path at all.
bool conv_cudnn_built();

}  // namespace isrn::cuda
