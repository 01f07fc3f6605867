#pragma once
#include "isrn/tensor.hpp"

namespace isrn {

enum class Reduction : uint8_t { None, Sum, Mean };

// Sigmoid focal loss (RetinaNet): -α_t (1-p_t)^γ log p_t, with targets in [0,1] of the logits'
// shape and optional per-element weights (0 drops an element, e.g. an ignored anchor), which may
// also broadcast to the logits' shape (per-anchor weights over classes). α < 0 disables the
// α-balancing (α_t = 1), as in torchvision. Stable for logits of any magnitude (log p is computed as
// log_sigmoid). The fused op differentiates the logits only: targets and weights must not require
// grad (the composite differentiates all three). Mean over an empty input is NaN, as PyTorch.
Tensor sigmoid_focal_loss(const Tensor& logits, const Tensor& targets, const Tensor& weights,
                          double alpha = 0.25, double gamma = 2.0, Reduction reduction = Reduction::Sum);
// The op-by-op definition: the oracle for the fused kernels.
Tensor sigmoid_focal_loss_composite(const Tensor& logits, const Tensor& targets, const Tensor& weights,
                                    double alpha, double gamma, Reduction reduction);
// Smooth L1 (Huber / β): 0.5 d²/β for |d| < β, |d| - 0.5β otherwise; β = 0 is plain L1.
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, double beta = 1.0,
                      Reduction reduction = Reduction::Sum);
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets,
                                        const Tensor& weights = Tensor(),
                                        Reduction reduction = Reduction::Mean);

}  // namespace isrn
