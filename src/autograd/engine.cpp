// The reverse-mode engine: an iterative dependency count over the graph, then a ready-queue walk.
// Nothing here recurses, so graphs of any depth backpropagate and free without stack growth.
#include <unordered_map>
#include <vector>

#include "isrn/autograd/grad_mode.hpp"
#include "isrn/autograd/node.hpp"
#include "isrn/core/profiler.hpp"
#include "isrn/ops/elementwise.hpp"

namespace isrn::autograd {

Node::~Node() {
  // Take over the edges whose node would die with us, and drop them one at a time.
  std::vector<std::shared_ptr<Node>> pending;
  for (auto& e : next_edges)
    if (e && e.use_count() == 1) pending.push_back(std::move(e));
  while (!pending.empty()) {
    std::shared_ptr<Node> node = std::move(pending.back());
    pending.pop_back();
    for (auto& e : node->next_edges)
      if (e && e.use_count() == 1) pending.push_back(std::move(e));
    // `node` now has no heavy edges left: its destructor returns at once.
  }
}

std::vector<Tensor> FunctionNode::apply(const Tensor& grad_output) {
  ISRN_CHECK(fn_ != nullptr, "[backward] trying to backward through '", name(),
             "' a second time: its saved values were freed; pass retain_graph=true to the first backward");
  return fn_(grad_output);
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad_output) {
  Tensor leaf(leaf_);
  // The engine hands over its only handle: a gradient nobody else can see (its handle and storage
  // are unshared) is adopted as .grad without a copy.
  const bool exclusive = grad_output.impl().use_count() == 1 && grad_output.storage().use_count() == 1;
  Tensor g = grad_output;
  bool fresh = false;
  if (g.shape() != leaf.shape()) {
    g = sum_to(g, leaf.shape());
    fresh = true;
  }
  if (g.dtype() != leaf.dtype()) {
    g = g.to(leaf.dtype());
    fresh = true;
  }
  if (leaf_->grad) {
    leaf_->grad = add(Tensor(leaf_->grad), g).impl();
  } else if ((exclusive || fresh) && g.is_contiguous() && g.storage().use_count() == 1) {
    leaf_->grad = g.impl();
  } else {
    // A copy: the incoming gradient may alias another tensor's memory (a view, the caller's tensor).
    leaf_->grad = g.clone().impl();
  }
  return {};
}

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined()) return nullptr;
  const auto& impl = t.impl();
  if (impl->grad_fn) return impl->grad_fn;
  if (!impl->requires_grad) return nullptr;
  auto acc = impl->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(impl);
    impl->grad_accumulator = acc;
  }
  return acc;
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor record(Tensor out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward) {
  if (!needs_grad(inputs)) return out;
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  node->next_edges.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next_edges.push_back(gradient_edge(t));
  // `out` may be a view handle shared with nobody else yet; give it its own autograd meta.
  out.impl()->requires_grad = true;
  out.impl()->grad_fn = std::move(node);
  return out;
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_outputs,
                  bool retain_graph) {
  ISRN_CHECK(roots.size() == grad_outputs.size(), "[backward] ", roots.size(), " outputs but ",
             grad_outputs.size(), " gradients");
  std::unordered_map<Node*, Tensor> grads;
  std::vector<Node*> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    ISRN_CHECK(r.requires_grad(), "[backward] the output does not require grad: no input of the computation "
               "requires grad, or it ran under NoGradGuard");
    const Tensor& g = grad_outputs[i];
    ISRN_CHECK(g.shape() == r.shape() && g.device() == r.device(), "[backward] gradient of shape ",
               shape_str(g.shape()), " on ", g.device(), " for an output of shape ", shape_str(r.shape()),
               " on ", r.device());
    std::shared_ptr<Node> node = gradient_edge(r);
    Node* n = node.get();
    auto it = grads.find(n);
    if (it == grads.end()) {
      grads.emplace(n, g);
      root_nodes.push_back(n);
    } else {
      it->second = add(it->second, g);
    }
  }

  // Dependency counts: how many edges from reachable nodes point at each node.
  std::unordered_map<Node*, int> deps;
  {
    std::vector<Node*> stack(root_nodes.begin(), root_nodes.end());
    std::unordered_map<Node*, bool> seen;
    for (Node* n : root_nodes) seen[n] = true;
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (const auto& e : n->next_edges) {
        if (!e) continue;
        ++deps[e.get()];
        if (!seen[e.get()]) {
          seen[e.get()] = true;
          stack.push_back(e.get());
        }
      }
    }
  }

  NoGradGuard no_grad;  // gradient formulas are not themselves recorded
  std::vector<Node*> ready;
  for (Node* n : root_nodes)
    if (deps[n] == 0) ready.push_back(n);
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor g = std::move(grads[n]);
    grads.erase(n);
    std::vector<Tensor> input_grads;
    if (g.defined()) {
      if (profiler::enabled()) {
        profiler::Scope scope(n->name() + ".backward");
        input_grads = n->apply(g);
      } else {
        input_grads = n->apply(g);
      }
    }
    if (!retain_graph) n->release();
    ISRN_ASSERT(input_grads.empty() || input_grads.size() == n->next_edges.size(), "node '", n->name(),
                "' returned ", input_grads.size(), " gradients for ", n->next_edges.size(), " inputs");
    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      Node* next = n->next_edges[i].get();
      if (!next) continue;
      if (i < input_grads.size() && input_grads[i].defined()) {
        auto it = grads.find(next);
        if (it == grads.end() || !it->second.defined())
          grads[next] = input_grads[i];
        else
          it->second = add(it->second, input_grads[i]);
      }
      if (--deps[next] == 0) ready.push_back(next);
    }
  }
}

}  // namespace isrn::autograd
