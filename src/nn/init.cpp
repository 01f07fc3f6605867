#include "isrn/nn/init.hpp"

#include <cmath>

#include "isrn/autograd/grad_mode.hpp"
#include "isrn/ops/elementwise.hpp"

namespace isrn::nn::init {

int64_t fan(const Tensor& weight, FanMode mode) {
  ISRN_CHECK(weight.dim() >= 2, "[init] fan needs a tensor of at least 2 dimensions, got shape ",
             shape_str(weight.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < weight.dim(); ++d) receptive *= weight.size(d);
  return (mode == FanMode::fan_in ? weight.size(1) : weight.size(0)) * receptive;
}

void normal_(const Tensor& t, Generator& gen, double mean, double std) {
  ISRN_CHECK(is_floating(t.dtype()), "[init] normal_ needs a floating tensor, got ", t.dtype());
  ISRN_CHECK(std >= 0.0, "[init] normal_ needs std >= 0, got ", std);
  NoGradGuard no_grad;
  Tensor draw = add(mul(randn(t.shape(), TensorOptions(DType::Float64), &gen), std), mean);
  Tensor dst = t;
  dst.copy_(draw.to(t.dtype()).to(t.device()));
}

void kaiming_normal_(const Tensor& weight, Generator& gen, FanMode mode) {
  const int64_t n = fan(weight, mode);
  ISRN_CHECK(n > 0, "[init] kaiming_normal_ on a tensor with zero fan, shape ", shape_str(weight.shape()));
  normal_(weight, gen, 0.0, std::sqrt(2.0 / static_cast<double>(n)));
}

void constant_(const Tensor& t, double value) {
  NoGradGuard no_grad;
  Tensor dst = t;
  dst.fill_(value);
}

double prior_bias(double prior) {
  ISRN_CHECK(prior > 0.0 && prior < 1.0, "[init] the prior must lie in (0, 1), got ", prior);
  return -std::log((1.0 - prior) / prior);
}

void prior_bias_(const Tensor& bias, double prior) { constant_(bias, prior_bias(prior)); }

}  // namespace isrn::nn::init
