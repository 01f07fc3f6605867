#pragma once
// Activation checkpointing: run a piece of the network without keeping its intermediate activations, and
// run it again during the backward pass to get its gradients. It trades one extra forward of that piece for
// the memory of everything inside it, which is what lets large images and batches fit.
#include <functional>
#include <vector>

#include "isrn/tensor.hpp"

namespace isrn::autograd {

// fn(input) computed without a graph; the backward pass recomputes it with a graph and propagates through it,
// so `params` (the parameters fn uses) receive exactly the gradients they would without checkpointing, and
// input receives its gradient when it requires one. fn must be deterministic (the same output when run
// again on the same input) and must not read parameters other than `params`. Without grad mode, or when
// neither input nor params require grad, this is fn(input).
Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& input,
                  const std::vector<Tensor>& params);

}  // namespace isrn::autograd
