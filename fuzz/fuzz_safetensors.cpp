// safetensors files: checkpoints and training states (isrn::io::load_safetensors, load_into,
// isrn::optim::load_training_state).
#include "fuzz_target.hpp"
#include "isrn/io/safetensors.hpp"
#include "isrn/optim/sgd.hpp"
#include "isrn/optim/state.hpp"
#include "isrn/tensor.hpp"

namespace {

// A model's parameters and an optimizer over them, as a resumed run has them when it reads its files.
struct Destinations {
  isrn::Tensor weight = isrn::zeros({2, 3}).set_requires_grad(true);
  isrn::Tensor bias = isrn::zeros({3}).set_requires_grad(true);
  isrn::io::NamedTensors named{{"weight", weight}, {"bias", bias}};
  isrn::optim::SGD optimizer{std::vector<isrn::Tensor>{weight, bias}, /*lr=*/0.1, /*momentum=*/0.9};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const isrn::fuzz::InputFile input(".safetensors");
  static Destinations destinations;
  const std::string& path = input.write(data, size);
  isrn::fuzz::accept_only_isrn_errors([&] {
    const auto file = isrn::io::load_safetensors(path);
    for (const auto& [name, tensor] : file.tensors) (void)tensor.contiguous();
    (void)isrn::io::load_into(destinations.named, file.tensors, /*strict=*/false).str();
  });
  isrn::fuzz::accept_only_isrn_errors([&] { (void)isrn::optim::load_training_state(path, destinations.optimizer); });
  return 0;
}
