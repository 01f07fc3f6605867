#pragma once
// Which implementation the CUDA convolutions run: isrn's own implicit-GEMM kernels or cuDNN, and
// which cuDNN algorithms may run. Declarations only (no CUDA headers), so the switches are usable
// from plain C++.
#include <cstdint>

namespace isrn::cuda {

// Auto (the default): isrn's own kernels for float32 in FP32 math, where they measured faster than
// isrn's cuDNN path on every detector shape and pass (bench/RESULTS.md, H100, FFT/Winograd
// algorithms left out); cuDNN for the rest: bfloat16 and float32 with TF32 allowed (set_allow_tf32),
// for its tensor cores, which the own kernels do not use, and float64, where the own path is the
// naive oracle. Own and Cudnn force one path for every dtype.
// Benchmark, like PyTorch's cudnn.benchmark: the first time a problem (pass, shapes, dtype,
// parameters, the TF32 and transform switches) is seen, both paths run it, timed with CUDA events
// (the best of three after a warm-up), and the faster one serves every later call of the process.
// A problem cuDNN declines goes to the own kernels without timing. Results are reproducible within
// a process; another process may time differently and choose the other path.
enum class ConvBackend : uint8_t { Auto, Own, Cudnn, Benchmark };

// The environment variable ISRN_CONV_BACKEND=auto|own|cudnn|benchmark, read at the first
// convolution, overrides the default. Asking for Cudnn or Benchmark in a build without cuDNN throws
// isrn::Error; Auto there means Own.
void set_conv_backend(ConvBackend backend);
ConvBackend conv_backend();
// Whether this build contains the cuDNN path at all.
bool conv_cudnn_built();

// Whether the cuDNN path may choose FFT and Winograd algorithms (off by default; on with
// ISRN_CONV_TRANSFORMS=1, read at the first convolution). They are often the fastest on 3×3 shapes
// and PyTorch allows them, but they round differently from direct summation: in float32 an output
// errs by ~1e-6 of its terms' magnitude instead of ~1e-7, which every other path keeps to.
void set_allow_conv_transforms(bool allow);
bool allow_conv_transforms();

}  // namespace isrn::cuda
