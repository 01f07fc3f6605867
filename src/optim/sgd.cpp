// SGD and gradient clipping. Updates go through the device kernels directly, writing parameters
// and momentum buffers in place, so they run wherever the parameters live (CPU or CUDA).
#include "isrn/optim/sgd.hpp"

#include <cmath>
#include <unordered_set>

#include "backend.hpp"
#include "isrn/autograd/grad_mode.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/reduce.hpp"
#include "isrn/ops/shape.hpp"

namespace isrn::optim {

namespace {

void check_hyper(const char* what, double value, size_t g) {
  ISRN_CHECK(std::isfinite(value) && value >= 0.0, "[SGD] ", what, " of group ", g,
             " must be finite and non-negative, got ", value);
}

void scale_into(Tensor& t, double s) { ISRN_DISPATCH(t.device(), binary_scalar, BinaryOp::Mul, t, s, t); }

}  // namespace

SGD::SGD(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  std::unordered_set<const TensorImpl*> seen;
  size_t count = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& group = groups_[g];
    check_hyper("lr", group.lr, g);
    check_hyper("momentum", group.momentum, g);
    check_hyper("weight_decay", group.weight_decay, g);
    ISRN_CHECK(!group.nesterov || group.momentum > 0.0, "[SGD] nesterov momentum needs momentum > 0 (group ", g,
               ")");
    for (size_t i = 0; i < group.params.size(); ++i) {
      const Tensor& p = group.params[i];
      ISRN_CHECK(p.defined(), "[SGD] parameter ", i, " of group ", g, " is undefined");
      ISRN_CHECK(p.dtype() == DType::Float32 || p.dtype() == DType::Float64, "[SGD] parameter ", i, " of group ", g,
                 " has dtype ", p.dtype(), "; only float32/float64 tensors can be optimized (mixed precision keeps "
                 "float32 master weights and casts them for the convolutions: see isrn/autograd/autocast.hpp)");
      ISRN_CHECK(p.is_leaf(), "[SGD] parameter ", i, " of group ", g,
                 " is not a leaf tensor (optimize the leaf it was computed from)");
      ISRN_CHECK(seen.insert(p.impl().get()).second, "[SGD] parameter ", i, " of group ", g,
                 " appears more than once");
    }
    count += group.params.size();
    buffers_.emplace_back(group.params.size());
  }
  ISRN_CHECK(count > 0, "[SGD] got an empty parameter list");
}

SGD::SGD(std::vector<Tensor> params, double lr, double momentum, double weight_decay, bool nesterov)
    : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params), lr, momentum, weight_decay, nesterov}}) {}

const ParamGroup& SGD::group(size_t g) const {
  ISRN_CHECK(g < groups_.size(), "[SGD] group ", g, " does not exist (", groups_.size(), " groups)");
  return groups_[g];
}

void SGD::set_lr(size_t g, double lr) {
  group(g);
  check_hyper("lr", lr, g);
  groups_[g].lr = lr;
}

const Tensor& SGD::momentum_buffer(size_t g, size_t i) const {
  ISRN_CHECK(i < group(g).params.size(), "[SGD] group ", g, " has no parameter ", i, " (",
             group(g).params.size(), " parameters)");
  return buffers_[g][i];
}

void SGD::set_momentum_buffer(size_t g, size_t i, const Tensor& buffer) {
  momentum_buffer(g, i);
  if (!buffer.defined()) {
    buffers_[g][i] = Tensor();
    return;
  }
  const Tensor& p = groups_[g].params[i];
  ISRN_CHECK(buffer.shape() == p.shape() && buffer.dtype() == p.dtype() && buffer.device() == p.device(),
             "[SGD] momentum buffer ", shape_str(buffer.shape()), " ", buffer.dtype(), " on ", buffer.device(),
             " does not match parameter ", i, " of group ", g, ": ", shape_str(p.shape()), " ", p.dtype(), " on ",
             p.device());
  NoGradGuard no_grad;
  // A private copy: step() updates the buffer in place and must not write into the caller's tensor.
  buffers_[g][i] = buffer.detach().clone();
}

void SGD::step() {
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& group = groups_[g];
    for (size_t i = 0; i < group.params.size(); ++i) {
      const Tensor param = group.params[i].detach();
      const Tensor grad = group.params[i].grad();
      if (!grad.defined() || param.numel() == 0) continue;
      ISRN_CHECK(grad.shape() == param.shape() && grad.dtype() == param.dtype() && grad.device() == param.device(),
                 "[SGD] the gradient of parameter ", i, " of group ", g, " is ", shape_str(grad.shape()), " ",
                 grad.dtype(), " on ", grad.device(), ", the parameter ", shape_str(param.shape()), " ",
                 param.dtype(), " on ", param.device());
      // One fused kernel per parameter (kernel_list.inc: sgd_update), on contiguous operands.
      Tensor target = param.is_contiguous() ? param : param.contiguous();
      Tensor& buf = buffers_[g][i];
      const bool first_step = group.momentum != 0.0 && !buf.defined();
      if (first_step) buf = empty_like(target);
      const SgdStepScalars scalars{group.lr, group.momentum, group.weight_decay, group.nesterov, first_step};
      ISRN_DISPATCH(target.device(), sgd_update, target, grad.contiguous(), buf, scalars);
      if (target.storage() != param.storage()) Tensor(param).copy_(target);
    }
  }
}

void SGD::zero_grad(bool set_to_none) {
  for (ParamGroup& group : groups_)
    for (Tensor& p : group.params) {
      if (set_to_none) {
        p.set_grad(Tensor());
      } else if (Tensor grad = p.grad(); grad.defined()) {
        grad.zero_();
      }
    }
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  ISRN_CHECK(std::isfinite(max_norm) && max_norm >= 0.0, "[clip_grad_norm] max_norm must be finite and non-negative, got ",
             max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads, squares;
  for (size_t i = 0; i < params.size(); ++i) {
    ISRN_CHECK(params[i].defined(), "[clip_grad_norm] parameter ", i, " is undefined");
    Tensor grad = params[i].grad();
    if (!grad.defined()) continue;
    ISRN_CHECK(squares.empty() || grad.device() == squares[0].device(), "[clip_grad_norm] gradients are on ",
               squares[0].device(), " and ", grad.device(), "; all parameters must be on one device");
    // float64 so that squares of large float32 gradients cannot overflow.
    const Tensor g64 = grad.to(DType::Float64);
    squares.push_back(sum(mul(g64, g64)));
    grads.push_back(grad);
  }
  if (grads.empty()) return 0.0;
  // One read-back for all parameters (a synchronisation per tensor would stall a GPU).
  const double total = std::sqrt(sum(stack(squares, 0)).item<double>());
  const double coefficient = max_norm / (total + 1e-6);
  // PyTorch multiplies by min(coefficient, 1); `!(>= 1)` also lets a NaN norm spread as it does there.
  if (!(coefficient >= 1.0))
    for (Tensor& grad : grads)
      if (grad.numel() > 0) scale_into(grad, coefficient);
  return total;
}

}  // namespace isrn::optim
