#include "isrn/nn/module.hpp"

#include "isrn/autograd/grad_mode.hpp"

namespace isrn::nn {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Re-points the impl every handle shares at a converted copy of its data, so existing handles see
// the move. The autograd accumulator is dropped: it belongs to a graph built on the old storage.
void convert_in_place(const Tensor& t, Device device, DType dtype) {
  if (!t.defined() || (t.device() == device && t.dtype() == dtype)) return;
  NoGradGuard no_grad;
  Tensor moved = t.detach().to(dtype).to(device).contiguous();
  TensorImpl& impl = *t.impl();
  impl.storage = moved.storage();
  impl.offset = moved.offset();
  impl.strides = moved.strides();
  impl.dtype = moved.dtype();
  impl.grad_accumulator.reset();
  if (impl.grad) {
    Tensor grad = Tensor(impl.grad).detach().to(dtype).to(device).contiguous();
    impl.grad = grad.impl();
  }
}

}  // namespace

void Module::check_new_name(const std::string& name, const char* what) const {
  ISRN_CHECK(!name.empty() && name.find('.') == std::string::npos, "[module] ", what, " name '", name,
             "' must be non-empty and contain no '.'");
  bool taken = false;
  for (const auto& e : params_) taken |= e.name == name;
  for (const auto& b : buffers_) taken |= b.first == name;
  for (const auto& c : children_) taken |= c.first == name;
  ISRN_CHECK(!taken, "[module] the name '", name, "' is already registered in this module");
}

Tensor Module::register_parameter(const std::string& name, Tensor tensor, ParamRole role) {
  check_new_name(name, "parameter");
  ISRN_CHECK(tensor.defined(), "[module] parameter '", name, "' is undefined");
  ISRN_CHECK(tensor.is_leaf(), "[module] parameter '", name, "' must be a leaf tensor (detach it first)");
  if (is_floating(tensor.dtype())) tensor.set_requires_grad(true);
  params_.push_back({name, tensor, role});
  return tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor tensor) {
  check_new_name(name, "buffer");
  ISRN_CHECK(tensor.defined(), "[module] buffer '", name, "' is undefined");
  buffers_.emplace_back(name, tensor);
  return tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name, "module");
  ISRN_CHECK(module != nullptr, "[module] child module '", name, "' is null");
  ISRN_CHECK(module.get() != this, "[module] a module cannot be its own child");
  children_.emplace_back(name, std::move(module));
}

std::vector<Module::NamedParameter> Module::named_parameters_with_roles() const {
  std::vector<NamedParameter> out;
  for (const auto& e : params_) out.push_back({e.name, e.tensor, e.role});
  for (const auto& [child_name, child] : children_)
    for (auto& p : child->named_parameters_with_roles()) out.push_back({join(child_name, p.name), p.tensor, p.role});
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& p : named_parameters_with_roles()) out.emplace_back(std::move(p.name), p.tensor);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters_with_roles()) out.push_back(p.tensor);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out = buffers_;
  for (const auto& [child_name, child] : children_)
    for (auto& [name, t] : child->named_buffers()) out.emplace_back(join(child_name, name), t);
  return out;
}

std::vector<Tensor> Module::buffers() const {
  std::vector<Tensor> out;
  for (auto& b : named_buffers()) out.push_back(b.second);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::state_dict() const {
  auto out = named_parameters();
  for (auto& b : named_buffers()) out.push_back(std::move(b));
  return out;
}

bool Module::contains(const std::string& dotted_name) const {
  for (const auto& [name, t] : state_dict())
    if (name == dotted_name) return true;
  return false;
}

Tensor Module::find(const std::string& dotted_name) const {
  for (const auto& [name, t] : state_dict())
    if (name == dotted_name) return t;
  ISRN_CHECK(false, "[module] no parameter or buffer named '", dotted_name, "'");
  return Tensor();
}

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& c : children_) out.push_back(c.second);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& [child_name, child] : children_)
    for (auto& [name, m] : child->named_modules()) out.emplace_back(name.empty() ? child_name : join(child_name, name), m);
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (const auto& c : children_) c.second->train(on);
}

Module& Module::to(Device device) {
  for (const auto& t : parameters()) convert_in_place(t, device, t.dtype());
  for (const auto& t : buffers()) convert_in_place(t, device, t.dtype());
  return *this;
}

Module& Module::to(DType dtype) {
  // Only floating state changes type: integer buffers (counters, indices) keep theirs.
  for (const auto& t : parameters())
    if (is_floating(t.dtype())) convert_in_place(t, t.device(), dtype);
  for (const auto& t : buffers())
    if (is_floating(t.dtype())) convert_in_place(t, t.device(), dtype);
  return *this;
}

void Module::zero_grad(bool set_to_none) {
  for (Tensor t : parameters()) {
    if (set_to_none || !t.grad().defined()) {
      t.set_grad(Tensor());
    } else {
      NoGradGuard no_grad;
      t.grad().zero_();
    }
  }
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& t : parameters()) n += t.numel();
  return n;
}

std::vector<optim::ParamGroup> parameter_groups(const Module& module, double lr, double momentum,
                                                double weight_decay) {
  optim::ParamGroup decay{{}, lr, momentum, weight_decay, false};
  optim::ParamGroup no_decay{{}, lr, momentum, 0.0, false};
  for (const auto& p : module.named_parameters_with_roles())
    (p.role == ParamRole::weight ? decay : no_decay).params.push_back(p.tensor);
  std::vector<optim::ParamGroup> out;
  if (!decay.params.empty()) out.push_back(std::move(decay));
  if (!no_decay.params.empty()) out.push_back(std::move(no_decay));
  return out;
}

}  // namespace isrn::nn
