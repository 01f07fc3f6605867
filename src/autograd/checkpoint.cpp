#include "isrn/autograd/checkpoint.hpp"

#include "isrn/autograd/autocast.hpp"
#include "isrn/autograd/grad_mode.hpp"
#include "isrn/autograd/node.hpp"

namespace isrn::autograd {

Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& input,
                  const std::vector<Tensor>& params) {
  ISRN_CHECK(fn != nullptr, "[checkpoint] no function given");
  ISRN_CHECK(input.defined(), "[checkpoint] undefined input");
  std::vector<Tensor> all = params;
  all.push_back(input);
  if (!needs_grad(all)) return fn(input);
  Tensor out;
  {
    NoGradGuard no_grad;
    out = fn(input);
  }
  ISRN_CHECK(out.defined() && out.dtype() == input.dtype(), "[checkpoint] fn must return a defined tensor");
  const bool input_grad = input.requires_grad();
  // The node's only edge is the input's: the parameters are reached through the recomputed graph, whose
  // backward accumulates into their .grad directly.
  // The recomputation must take the first run's arithmetic; the backward pass may run under
  // another autocast mode (training loops wrap only the forward).
  const DType compute_dtype = Autocast::compute_dtype();
  auto node = std::make_shared<FunctionNode>(
      "checkpoint",
      [fn, saved = input.detach(), input_grad, compute_dtype](const Tensor& grad_output) -> std::vector<Tensor> {
        EnableGradGuard grad_mode;
        AutocastGuard autocast(compute_dtype);
        Tensor x = saved.detach();
        if (input_grad) x.set_requires_grad(true);
        const Tensor y = fn(x);
        ISRN_CHECK(y.shape() == grad_output.shape(), "[checkpoint] the recomputation returned shape ",
                   shape_str(y.shape()), ", the first run ", shape_str(grad_output.shape()),
                   ": fn must be deterministic");
        if (y.requires_grad()) run_backward({y}, {grad_output}, /*retain_graph=*/false);
        return {input_grad ? x.grad() : Tensor()};
      });
  node->next_edges.push_back(gradient_edge(input));
  out.impl()->requires_grad = true;
  out.impl()->grad_fn = std::move(node);
  return out;
}

}  // namespace isrn::autograd
