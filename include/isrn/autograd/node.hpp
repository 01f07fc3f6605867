#pragma once
// The autograd graph. Every recorded op produces one output and one Node; the node maps the
// gradient of that output to gradients of its inputs. Edges point from an output's node to the
// nodes of its inputs (null where an input needs no gradient).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "isrn/tensor.hpp"

namespace isrn::autograd {

class Node {
 public:
  explicit Node(std::string name) : name_(std::move(name)) {}
  // Releases long chains iteratively, so dropping a 100,000-op graph cannot overflow the stack.
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // One gradient per entry of next_edges (an undefined Tensor where there is none).
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Frees what the backward needs (saved tensors) once it has run without retain_graph.
  virtual void release() {}

  const std::string& name() const { return name_; }
  std::vector<std::shared_ptr<Node>> next_edges;

 private:
  std::string name_;
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

// A node whose backward is a closure. The closure captures what it needs; it must not capture the
// op's own output with its autograd meta (that would form a cycle): capture `out.detach()`.
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : Node(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  void release() override { fn_ = nullptr; }

 private:
  BackwardFn fn_;
};

// Sums incoming gradients into a leaf's .grad (parameter gradients accumulate across backward calls).
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
      : Node("AccumulateGrad"), leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// The node that receives a tensor's gradient: its grad_fn, or its accumulator when it is a leaf
// that requires grad; null otherwise.
std::shared_ptr<Node> gradient_edge(const Tensor& t);

// True when grad mode is on and any of the inputs requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Attaches a FunctionNode to `out` if needs_grad(inputs); returns `out` either way.
// `backward` returns one gradient per input, in order (undefined where none).
Tensor record(Tensor out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward);

// Runs the backward pass from `roots` with the given output gradients.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_outputs,
                  bool retain_graph);

}  // namespace isrn::autograd
