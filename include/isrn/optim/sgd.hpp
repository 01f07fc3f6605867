#pragma once
// Stochastic gradient descent with momentum, exactly as torch.optim.SGD (dampening 0):
//   d_p = grad + weight_decay · p
//   buf = d_p on the first step, then buf = momentum · buf + d_p
//   d_p = nesterov ? d_p + momentum · buf : buf        (when momentum ≠ 0)
//   p  -= lr · d_p
// Parameters without a gradient are skipped (their momentum buffers stay as they are). Updates run
// under NoGradGuard and write the parameters in place on their own device.
#include <cstddef>
#include <vector>

#include "isrn/tensor.hpp"

namespace isrn::optim {

struct ParamGroup {
  std::vector<Tensor> params;
  double lr = 0.0;
  double momentum = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class SGD {
 public:
  // Every parameter must be a floating leaf tensor, in exactly one group; lr, momentum and
  // weight decay must be non-negative, and nesterov needs momentum > 0.
  explicit SGD(std::vector<ParamGroup> groups);
  SGD(std::vector<Tensor> params, double lr, double momentum = 0.0, double weight_decay = 0.0,
      bool nesterov = false);

  void step();
  // set_to_none drops the gradients (as PyTorch ≥ 2.0); otherwise they are filled with zeros.
  void zero_grad(bool set_to_none = true);

  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t g) const;
  double lr(size_t g) const { return group(g).lr; }
  void set_lr(size_t g, double lr);

  // Momentum buffers, by group and parameter index: undefined until the parameter's first step
  // with momentum. set_momentum_buffer restores one (from a checkpoint); it must match the
  // parameter's shape, dtype and device, or be undefined to clear it.
  const Tensor& momentum_buffer(size_t g, size_t i) const;
  void set_momentum_buffer(size_t g, size_t i, const Tensor& buffer);

 private:
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<Tensor>> buffers_;
};

// Rescales the gradients of `params` in place so that their joint L2 norm is at most max_norm
// (as torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied only when below
// 1); parameters without a gradient are ignored, the others must share one device. Returns the norm before clipping (0 when no
// parameter has a gradient; NaN or inf when a gradient is not finite, which then spreads into the
// gradients as in PyTorch).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace isrn::optim
