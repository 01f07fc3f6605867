#pragma once
// Which implementation the CUDA convolutions run: isrn's own implicit-GEMM kernels or cuDNN.
// Declarations only (no CUDA headers), so the switch is usable from plain C++.
#include <cstdint>

namespace isrn::cuda {

// Auto (the default): cuDNN where its tensor cores apply - bfloat16, and float32 when TF32 is allowed
// (set_allow_tf32) - and isrn's own kernels otherwise (float32 FP32 math, float64): with FMA units
// only, the own kernels measured faster than isrn's cuDNN path on every detector shape and pass
// (bench/RESULTS.md, H100; the cuDNN path refuses FFT/Winograd algorithms for accuracy), while
// they do not use tensor cores (bfloat16 is widened to float32). Own and Cudnn force one path.
enum class ConvBackend : uint8_t { Auto, Own, Cudnn };

// The environment variable ISRN_CONV_BACKEND=auto|own|cudnn, read at the first convolution, overrides
// the default. Asking for Cudnn in a build without cuDNN throws isrn::Error; Auto there means Own.
void set_conv_backend(ConvBackend backend);
ConvBackend conv_backend();
// Whether this build contains the cuDNN path at all.
bool conv_cudnn_built();

}  // namespace isrn::cuda
