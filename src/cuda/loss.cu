// CUDA sigmoid focal loss: one pass over logits/targets/weights writes the elementwise loss (or
// per-block partial sums for the 0-d total) and the gradient, with the formula shared with the CPU
// (include/isrn/kernels/focal.hpp). The total is reduced in two passes (block partials in float64,
// then one block adds them in a fixed order), so it is deterministic.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/det_utils.cuh"
#include "isrn/kernels/focal.hpp"

namespace isrn::cuda {
namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void focal_elementwise_kernel(const T* __restrict__ logits, const T* __restrict__ targets,
                                         const T* __restrict__ weights, T alpha, T gamma, int64_t n,
                                         T* __restrict__ loss, T* __restrict__ grad) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    const T w = weights ? weights[i] : T(1);
    if (grad) {
      const auto f = kernels::sigmoid_focal_terms<true>(logits[i], targets[i], w, alpha, gamma);
      grad[i] = f.grad;
      if (loss) loss[i] = f.loss;
    } else {
      loss[i] = kernels::sigmoid_focal_terms<false>(logits[i], targets[i], w, alpha, gamma).loss;
    }
  }
}

// Each block writes the float64 sum of its grid-stride share; the grid size depends only on n
// and the device, so the partition (and the result) is reproducible.
template <typename T>
__global__ void focal_partial_sum_kernel(const T* __restrict__ logits, const T* __restrict__ targets,
                                         const T* __restrict__ weights, T alpha, T gamma, int64_t n,
                                         double* __restrict__ partial, T* __restrict__ grad) {
  __shared__ double scratch[64];
  double acc = 0.0, unused = 0.0;
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    const T w = weights ? weights[i] : T(1);
    if (grad) {
      const auto f = kernels::sigmoid_focal_terms<true>(logits[i], targets[i], w, alpha, gamma);
      grad[i] = f.grad;
      acc += static_cast<double>(f.loss);
    } else {
      acc += static_cast<double>(kernels::sigmoid_focal_terms<false>(logits[i], targets[i], w, alpha, gamma).loss);
    }
  }
  det::block_sum2(acc, unused, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

template <typename T>
__global__ void sum_partials_kernel(const double* __restrict__ partial, int count, T* __restrict__ out) {
  __shared__ double scratch[64];
  double acc = 0.0, unused = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];  // fixed assignment: deterministic
  det::block_sum2(acc, unused, scratch);
  if (threadIdx.x == 0) *out = static_cast<T>(acc);
}

Tensor contiguous_input(const Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

}  // namespace

void sigmoid_focal_loss(const Tensor& logits_in, const Tensor& targets_in, const Tensor& weights_in, double alpha,
                        double gamma, Tensor& loss, Tensor& grad) {
  const Tensor logits = contiguous_input(logits_in), targets = contiguous_input(targets_in);
  // A broadcast (stride-0) weight view is materialized: one extra copy of a loss-sized tensor.
  const Tensor weights = weights_in.defined() ? contiguous_input(weights_in) : Tensor();
  const int64_t n = logits.numel();
  const bool total = loss.defined() && loss.dim() == 0 && logits.dim() != 0;
  dispatch_floating(logits.dtype(), "sigmoid_focal_loss", [&](auto tag) {
    using T = decltype(tag);
    const T* w = weights.defined() ? weights.data_ptr<T>() : nullptr;
    T* g = grad.defined() ? grad.data_ptr<T>() : nullptr;
    if (!total) {
      if (n == 0) return;
      focal_elementwise_kernel<T><<<grid_for(n), kBlock, 0, current_stream()>>>(
          logits.data_ptr<T>(), targets.data_ptr<T>(), w, static_cast<T>(alpha), static_cast<T>(gamma), n,
          loss.defined() ? loss.data_ptr<T>() : nullptr, g);
      ISRN_CUDA_LAUNCH_CHECK("focal_elementwise_kernel");
      return;
    }
    // Enough resident warps per SM to hide the exp/log1p latency of the per-element math.
    const int64_t blocks = std::clamp<int64_t>((n + kBlock * 4 - 1) / (kBlock * 4), 1,
                                               16 * int64_t(det::multiprocessor_count()));
    Tensor partial = det::scratch({blocks}, DType::Float64, logits.device());
    focal_partial_sum_kernel<T><<<static_cast<unsigned>(blocks), kBlock, 0, current_stream()>>>(
        logits.data_ptr<T>(), targets.data_ptr<T>(), w, static_cast<T>(alpha), static_cast<T>(gamma), n,
        partial.data_ptr<double>(), g);
    ISRN_CUDA_LAUNCH_CHECK("focal_partial_sum_kernel");
    sum_partials_kernel<T><<<1, 1024, 0, current_stream()>>>(partial.data_ptr<double>(), static_cast<int>(blocks),
                                                            loss.data_ptr<T>());
    ISRN_CUDA_LAUNCH_CHECK("focal_sum_partials_kernel");
  });
}

}  // namespace isrn::cuda
