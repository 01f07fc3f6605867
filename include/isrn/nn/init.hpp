#pragma once
// Parameter initializers. Each writes its tensor in place under NoGradGuard (so it works on
// parameters that require grad) and draws from the given generator: the draw happens on the CPU in
// float64 and is copied to the tensor's device and dtype, so a seed gives the same numbers anywhere.
#include "isrn/tensor.hpp"

namespace isrn::nn::init {

enum class FanMode { fan_in, fan_out };

// fan_in = size(1) · receptive field, fan_out = size(0) · receptive field, receptive field = the
// product of dims 2.. (1 for a matrix). Needs at least 2 dimensions.
int64_t fan(const Tensor& weight, FanMode mode);

// N(0, gain / sqrt(fan)) with the ReLU gain sqrt(2) (torch.nn.init.kaiming_normal_ with
// nonlinearity='relu'); the SPEC's choice for backbone convs is fan_out.
void kaiming_normal_(const Tensor& weight, Generator& gen, FanMode mode = FanMode::fan_out);
void normal_(const Tensor& t, Generator& gen, double mean = 0.0, double std = 1.0);
void constant_(const Tensor& t, double value);
// The classification bias that makes every initial sigmoid output equal the prior π (RetinaNet):
// −log((1 − π) / π); π = 0.01 gives −4.595.
double prior_bias(double prior);
void prior_bias_(const Tensor& bias, double prior);

}  // namespace isrn::nn::init
