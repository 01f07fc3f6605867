// GroupNorm: the fused op (one forward kernel, one backward kernel) and its op-by-op definition.
#include "isrn/ops/norm.hpp"

#include <cmath>

#include "backend.hpp"
#include "isrn/autograd/node.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/reduce.hpp"

namespace isrn {

namespace {

void check_group_norm_args(const char* op, const Tensor& x, int64_t groups, const Tensor& gamma, const Tensor& beta,
                           double eps) {
  ISRN_CHECK(x.defined(), "[", op, "] undefined input");
  check_floating(op, "x", x);
  ISRN_CHECK(x.dim() >= 2, "[", op, "] expects x of shape [N, C, *] with at least 2 dimensions, got shape ",
             shape_str(x.shape()));
  ISRN_CHECK(groups > 0, "[", op, "] groups must be positive, got ", groups);
  const int64_t channels = x.size(1);
  ISRN_CHECK(channels % groups == 0, "[", op, "] channels (", channels, ") are not divisible by groups (", groups,
             ")");
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"gamma", &gamma}, {"beta", &beta}}) {
    if (!t->defined()) continue;
    ISRN_CHECK(t->shape() == Shape{channels}, "[", op, "] ", name, " must have shape [C] = [", channels,
               "], got ", shape_str(t->shape()));
    check_dtype(op, name, *t, x.dtype());
  }
  check_same_device(op, x.device(), {{"gamma", &gamma}, {"beta", &beta}});
  ISRN_CHECK(eps >= 0.0 && std::isfinite(eps), "[", op, "] eps must be finite and non-negative, got ", eps);
}

// [1, C, 1, ...]: gamma and beta broadcast against x.
Shape channel_shape(const Tensor& x) {
  Shape s(x.dim(), 1);
  s[1] = x.size(1);
  return s;
}

}  // namespace

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& gamma, const Tensor& beta, double eps,
                  bool fuse_relu) {
  check_group_norm_args("group_norm", x, groups, gamma, beta, eps);
  const Device device = x.device();
  const TensorOptions options = TensorOptions(x.dtype()).device(device);
  Tensor xs = x.detach().contiguous();
  Tensor gs = gamma.defined() ? gamma.detach() : Tensor();
  Tensor bs = beta.defined() ? beta.detach() : Tensor();
  Tensor y = empty(x.shape(), options);
  Tensor mean = empty({x.size(0), groups}, options);
  Tensor rstd = empty({x.size(0), groups}, options);
  if (x.numel() > 0) ISRN_DISPATCH(device, group_norm_forward, xs, gs, bs, groups, eps, fuse_relu, y, mean, rstd);
  if (!autograd::needs_grad({&x, &gamma, &beta})) return y;

  // The output is saved only when the fused ReLU needs it to mask the gradient.
  Tensor ys = fuse_relu ? y.detach() : Tensor();
  return autograd::record(y, "group_norm", {x, gamma, beta},
                          [xs, ys, gs, bs, mean, rstd, groups, fuse_relu](const Tensor& grad_y) {
                            Tensor gy = grad_y.dtype() == xs.dtype() ? grad_y : grad_y.to(xs.dtype());
                            gy = gy.contiguous();
                            Tensor gx = empty_like(xs);
                            Tensor ggamma = gs.defined() ? empty_like(gs) : Tensor();
                            Tensor gbeta = bs.defined() ? empty_like(bs) : Tensor();
                            if (xs.numel() > 0) {
                              ISRN_DISPATCH(xs.device(), group_norm_backward, gy, xs, ys, gs, mean, rstd, groups,
                                            fuse_relu, gx, ggamma, gbeta);
                            } else {
                              if (ggamma.defined()) ggamma.zero_();
                              if (gbeta.defined()) gbeta.zero_();
                            }
                            return std::vector<Tensor>{gx, ggamma, gbeta};
                          });
}

Tensor group_norm_composite(const Tensor& x, int64_t groups, const Tensor& gamma, const Tensor& beta, double eps) {
  check_group_norm_args("group_norm_composite", x, groups, gamma, beta, eps);
  int64_t plane = 1;
  for (int64_t d = 2; d < x.dim(); ++d) plane *= x.size(d);
  const Tensor grouped = x.reshape({x.size(0), groups, x.size(1) / groups * plane});
  const Tensor centred = sub(grouped, mean(grouped, {2}, /*keepdim=*/true));
  const Tensor variance = mean(mul(centred, centred), {2}, /*keepdim=*/true);  // biased, as GroupNorm
  Tensor out = div(centred, sqrt(add(variance, eps))).reshape(x.shape());
  if (gamma.defined()) out = mul(out, gamma.reshape(channel_shape(x)));
  if (beta.defined()) out = add(out, beta.reshape(channel_shape(x)));
  return out;
}

}  // namespace isrn
