// Uses the public API only: a gradient through a few ops, checked against its closed form.
#include <isrn/isrn.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace isrn;
  Tensor x = from_vector<double>({0.5, -1.0, 2.0}).set_requires_grad(true);
  Tensor loss = sum(mul(sigmoid(x), x));  // d/dx [x σ(x)] = σ + x σ (1 − σ)
  loss.backward();
  const auto g = x.grad().to_vector<double>();
  const double xs[3] = {0.5, -1.0, 2.0};
  for (int i = 0; i < 3; ++i) {
    const double s = 1.0 / (1.0 + std::exp(-xs[i]));
    if (std::abs(g[i] - (s + xs[i] * s * (1 - s))) > 1e-12) {
      std::printf("consumer: wrong gradient %d\n", i);
      return 1;
    }
  }
  try {
    (void)add(zeros({2}), zeros({3}));
    return 1;
  } catch (const Error& e) {
    std::printf("consumer: isrn %s works (%s)\n", ISRN_VERSION_STRING, e.what());
  }
  return 0;
}
