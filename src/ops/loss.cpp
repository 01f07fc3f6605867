// Losses: the fused sigmoid focal loss and composites (its oracle, smooth L1, BCE with logits).
#include "isrn/ops/loss.hpp"

#include <cmath>

#include "backend.hpp"
#include "isrn/autograd/node.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/reduce.hpp"

namespace isrn {

namespace {

// input/target: same shape, dtype and device; weights (optional): same dtype and device,
// broadcastable to the input's shape.
void check_loss_args(const char* op, const char* input_name, const Tensor& input, const char* target_name,
                     const Tensor& target, const Tensor& weights) {
  ISRN_CHECK(input.defined() && target.defined(), "[", op, "] undefined ", input.defined() ? target_name : input_name);
  check_floating(op, input_name, input);
  check_dtype(op, target_name, target, input.dtype());
  ISRN_CHECK(target.shape() == input.shape(), "[", op, "] ", target_name, " must have the shape of ", input_name, " ",
             shape_str(input.shape()), ", got ", shape_str(target.shape()));
  check_same_device(op, input.device(), {{target_name, &target}, {"weights", &weights}});
  if (weights.defined()) {
    check_dtype(op, "weights", weights, input.dtype());
    const bool fits = weights.dim() <= input.dim() &&
                      broadcast_shapes(weights.shape(), input.shape(), op) == input.shape();
    ISRN_CHECK(fits, "[", op, "] weights of shape ", shape_str(weights.shape()), " do not broadcast to ",
               shape_str(input.shape()));
  }
}

void check_focal_params(const char* op, double alpha, double gamma) {
  ISRN_CHECK(alpha <= 1.0, "[", op, "] alpha must be in [0, 1] (or negative to disable the balancing), got ", alpha);
  ISRN_CHECK(gamma >= 0.0 && std::isfinite(gamma), "[", op, "] gamma must be finite and non-negative, got ", gamma);
}

Tensor reduce_loss(const Tensor& loss, Reduction reduction) {
  switch (reduction) {
    case Reduction::None: return loss;
    case Reduction::Sum: return sum(loss);
    case Reduction::Mean: return mean(loss);  // an empty input gives NaN (0/0), as PyTorch
  }
  return loss;
}

}  // namespace

Tensor sigmoid_focal_loss(const Tensor& logits, const Tensor& targets, const Tensor& weights, double alpha,
                          double gamma, Reduction reduction) {
  const char* op = "sigmoid_focal_loss";
  check_loss_args(op, "logits", logits, "targets", targets, weights);
  check_focal_params(op, alpha, gamma);
  ISRN_CHECK(!autograd::needs_grad({&targets, &weights}), "[", op,
             "] computes gradients for the logits only, but targets or weights require grad: detach them, or use "
             "sigmoid_focal_loss_composite");
  const bool want_grad = autograd::needs_grad({&logits});
  const Device device = logits.device();
  const TensorOptions options = TensorOptions(logits.dtype()).device(device);
  const int64_t count = logits.numel();
  Tensor ws = weights.defined() ? weights.detach().expand(logits.shape()) : Tensor();
  Tensor loss = reduction == Reduction::None ? empty(logits.shape(), options) : empty({}, options);
  // d(Σ loss)/d logits, computed in the same pass as the loss and scaled by the upstream gradient later.
  Tensor grad = want_grad ? empty(logits.shape(), options) : Tensor();
  if (count > 0) {
    ISRN_DISPATCH(device, sigmoid_focal_loss, logits.detach(), targets.detach(), ws, alpha, gamma, loss, grad);
  } else if (reduction != Reduction::None) {
    loss.zero_();
  }
  if (reduction == Reduction::Mean) loss = div(loss, static_cast<double>(count));
  if (!want_grad) return loss;
  return autograd::record(loss, op, {logits}, [grad, reduction, count](const Tensor& g) {
    if (reduction == Reduction::Mean) return std::vector<Tensor>{mul(grad, div(g, static_cast<double>(count)))};
    return std::vector<Tensor>{mul(grad, g)};  // g is elementwise (None) or 0-d (Sum)
  });
}

Tensor sigmoid_focal_loss_composite(const Tensor& logits, const Tensor& targets, const Tensor& weights,
                                    double alpha, double gamma, Reduction reduction) {
  const char* op = "sigmoid_focal_loss_composite";
  check_loss_args(op, "logits", logits, "targets", targets, weights);
  check_focal_params(op, alpha, gamma);
  // torchvision.ops.sigmoid_focal_loss, written op by op; the cross-entropy is BCE with logits.
  const Tensor p = sigmoid(logits);
  const Tensor ce = binary_cross_entropy_with_logits(logits, targets, Tensor(), Reduction::None);
  const Tensor p_t = add(mul(p, targets), mul(1.0 - p, 1.0 - targets));
  Tensor loss = mul(ce, pow(1.0 - p_t, gamma));
  if (alpha >= 0.0) loss = mul(loss, add(mul(targets, alpha), mul(1.0 - targets, 1.0 - alpha)));
  if (weights.defined()) loss = mul(loss, weights);
  return reduce_loss(loss, reduction);
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, double beta, Reduction reduction) {
  const char* op = "smooth_l1_loss";
  check_loss_args(op, "input", input, "target", target, Tensor());
  ISRN_CHECK(beta >= 0.0 && std::isfinite(beta), "[", op, "] beta must be finite and non-negative, got ", beta);
  const Tensor d = sub(input, target);
  const Tensor ad = abs(d);
  if (beta == 0.0) return reduce_loss(ad, reduction);
  const Tensor quadratic = mul(mul(d, d), 0.5 / beta);
  const Tensor linear = sub(ad, 0.5 * beta);
  return reduce_loss(where(lt(ad, beta), quadratic, linear), reduction);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets, const Tensor& weights,
                                        Reduction reduction) {
  const char* op = "binary_cross_entropy_with_logits";
  check_loss_args(op, "logits", logits, "targets", targets, weights);
  // −t·log σ(x) − (1−t)·log σ(−x) = t·softplus(−x) + (1−t)·softplus(x): two non-negative terms for
  // t ∈ [0, 1], so no cancellation and no overflow at any |x|; the gradient is σ(x) − t.
  Tensor loss = add(mul(targets, softplus(neg(logits))), mul(1.0 - targets, softplus(logits)));
  if (weights.defined()) loss = mul(loss, weights);
  return reduce_loss(loss, reduction);
}

}  // namespace isrn
