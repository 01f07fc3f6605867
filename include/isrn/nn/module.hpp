#pragma once
// Module: a node of the model tree owning named parameters, buffers and child modules, in the manner
// of libtorch's register_parameter / register_buffer / register_module. Names compose with dots
// ("layer1.0.conv1.weight") in registration order, which is also the order checkpoints and the
// optimizer see.
//
// Moving a module (to(Device), to(DType)) converts every parameter and buffer *in place*: the
// TensorImpl each handle points at gets the converted storage, offset and strides, so a Tensor a
// caller obtained before the move (from parameters(), or a member such as conv.weight) stays the
// live parameter afterwards. A gradient held by a parameter moves with it.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "isrn/optim/sgd.hpp"
#include "isrn/tensor.hpp"

namespace isrn::nn {

// What a parameter is, for weight decay: conv/linear weights decay; norm affine parameters and
// biases do not (SPEC Decisions, "optimizer").
enum class ParamRole { weight, bias, norm };

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Registers a leaf tensor as a parameter (requires grad when floating). Names must be non-empty,
  // contain no '.', and be unique among this module's parameters, buffers and children.
  Tensor register_parameter(const std::string& name, Tensor tensor, ParamRole role = ParamRole::weight);
  // Buffers: state that is saved and moved with the module but never trained.
  Tensor register_buffer(const std::string& name, Tensor tensor);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  struct NamedParameter {
    std::string name;
    Tensor tensor;
    ParamRole role;
  };
  // Recursive, in registration order: this module's own entries first, then each child's.
  std::vector<NamedParameter> named_parameters_with_roles() const;
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<Tensor> buffers() const;
  // Parameters then buffers: everything a checkpoint holds.
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  // The parameter or buffer of that dotted name; throws isrn::Error naming it when there is none.
  Tensor find(const std::string& dotted_name) const;
  bool contains(const std::string& dotted_name) const;

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  std::vector<std::shared_ptr<Module>> children() const;
  // This module and all its descendants, depth first, with dotted names ("" for this one).
  std::vector<std::pair<std::string, Module*>> named_modules();

  // Training mode reaches every descendant.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // In place (see the header comment). Returns *this for chaining.
  Module& to(Device device);
  Module& to(DType dtype);

  // Drops every parameter's gradient (as PyTorch's set_to_none) or fills it with zeros.
  void zero_grad(bool set_to_none = true);
  int64_t num_parameters() const;

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> module);

 private:
  void check_new_name(const std::string& name, const char* what) const;
  struct Entry {
    std::string name;
    Tensor tensor;
    ParamRole role;
  };
  std::vector<Entry> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// A module with one input and one output: what Sequential chains.
class Layer : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

// The two optimizer groups of SPEC's decision: {conv/linear weights, weight_decay} and {norm
// parameters and biases, no decay}, both with the given lr and momentum. A group with no parameters
// is left out, so SGD never sees an empty group.
std::vector<optim::ParamGroup> parameter_groups(const Module& module, double lr, double momentum,
                                                double weight_decay);

}  // namespace isrn::nn
