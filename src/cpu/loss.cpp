// The fused sigmoid focal loss on the CPU: one pass over the elements writes the loss (elementwise or
// summed) and, when asked, d loss / d logits, from the formula in isrn/kernels/focal.hpp.
#include <algorithm>
#include <vector>

#include "backend.hpp"
#include "cpu/strided.hpp"
#include "isrn/kernels/focal.hpp"

namespace isrn::cpu {

namespace {

// Elements per task of the summed form. Fixed, so partial sums are combined in the same order on any
// thread count and the result is reproducible bit for bit.
constexpr int64_t kSumChunk = 16384;

template <typename T, bool WithGrad>
void focal_impl(const Tensor& logits, const Tensor& targets, const Tensor& weights, double alpha, double gamma,
                Tensor& loss, Tensor& grad) {
  // Strided inputs (and weights broadcast with stride 0) are packed once: the loop below then reads
  // three dense streams, which is what the vectorizer and the prefetcher want.
  const Tensor xc = logits.contiguous(), tc = targets.contiguous();
  const Tensor wc = weights.defined() ? weights.contiguous() : Tensor();
  const T* px = xc.data_ptr<T>();
  const T* pt = tc.data_ptr<T>();
  const T* pw = wc.defined() ? wc.data_ptr<T>() : nullptr;
  T* pgrad = WithGrad ? grad.data_ptr<T>() : nullptr;
  const T a = static_cast<T>(alpha), g = static_cast<T>(gamma);
  const int64_t n = xc.numel();
  const bool elementwise = loss.dim() > 0;
  T* ploss = loss.data_ptr<T>();

  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(elementwise ? 0 : chunks, 0.0);
  // Partial sums by chunk index, added in that order below.
  parallel_for(0, chunks, grain_when(n >= kParallelGrain, chunks), [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k) {
      const int64_t begin = k * kSumChunk, end = std::min(n, begin + kSumChunk);
      double total = 0.0;
      for (int64_t i = begin; i < end; ++i) {
        const auto terms = kernels::sigmoid_focal_terms<WithGrad, T>(px[i], pt[i], pw ? pw[i] : T(1), a, g);
        if (elementwise) ploss[i] = terms.loss;
        else total += static_cast<double>(terms.loss);
        if constexpr (WithGrad) pgrad[i] = terms.grad;
      }
      if (!elementwise) partial[k] = total;
    }
  });
  if (!elementwise) {
    double total = 0.0;
    for (double p : partial) total += p;
    ploss[0] = static_cast<T>(total);
  }
}

}  // namespace

void sigmoid_focal_loss(const Tensor& logits, const Tensor& targets, const Tensor& weights, double alpha, double gamma,
                        Tensor& loss, Tensor& grad) {
  dispatch_floating(logits.dtype(), "sigmoid_focal_loss", [&](auto tag) {
    using T = decltype(tag);
    if (grad.defined()) focal_impl<T, true>(logits, targets, weights, alpha, gamma, loss, grad);
    else focal_impl<T, false>(logits, targets, weights, alpha, gamma, loss, grad);
  });
}

}  // namespace isrn::cpu
