#include "test_util.hpp"

using namespace isrn;
using test::check_close;

TEST_CASE("autograd: gradients of a small expression, accumulation and retain_graph") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor x = from_vector<double>({1, 2, 3}, {3}, d).set_requires_grad(true);
    Tensor y = from_vector<double>({4, 5, 6}, {3}, d).set_requires_grad(true);
    Tensor z = sum(add(mul(x, y), mul(x, x)));  // dz/dx = y + 2x, dz/dy = x
    z.backward(Tensor(), /*retain_graph=*/true);
    check_close(x.grad(), {6, 9, 12}, 0, 0, "dx");
    check_close(y.grad(), {1, 2, 3}, 0, 0, "dy");
    z.backward();  // parameter gradients accumulate
    check_close(x.grad(), {12, 18, 24}, 0, 0, "dx accumulated");
    CHECK_THROWS_WITH_AS(z.backward(), doctest::Contains("second time"), Error);
  }
}

TEST_CASE("autograd: explicit output gradient, detach and NoGradGuard") {
  Tensor x = from_vector<double>({1, 2}).set_requires_grad(true);
  Tensor y = mul(x, 3.0);
  y.backward(from_vector<double>({1, 10}));
  check_close(x.grad(), {3, 30}, 0, 0, "explicit gradient");
  CHECK(!x.detach().requires_grad());
  CHECK(!mul(x.detach(), 2.0).requires_grad());
  {
    NoGradGuard guard;
    CHECK(!mul(x, 2.0).requires_grad());
  }
  CHECK(mul(x, 2.0).requires_grad());
  CHECK_THROWS_WITH_AS(mul(x, 2.0).backward(), doctest::Contains("non-scalar"), Error);
  CHECK_THROWS_WITH_AS(sum(mul(x.detach(), 2.0)).backward(), doctest::Contains("does not require grad"), Error);
}

TEST_CASE("autograd: a chain of 10,000 ops backpropagates and frees without recursion") {
  Tensor x = from_vector<double>({0.5}).set_requires_grad(true);
  Tensor y = x;
  for (int i = 0; i < 10000; ++i) y = add(y, 1e-4);  // dy/dx = 1
  y = mul(y, 2.0);
  y.backward();
  check_close(x.grad(), {2.0}, 0, 0, "deep chain gradient");
  // And a 200,000-node graph destroyed without backward (the node destructor must not recurse).
  Tensor z = x;
  for (int i = 0; i < 200000; ++i) z = add(z, 1.0);
  z = Tensor();
  CHECK(true);
}

TEST_CASE("autograd: gradients through views and broadcasting") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    auto f = [](const std::vector<Tensor>& in) {
      Tensor a = in[0], b = in[1];
      Tensor t = a.transpose(0, 1).slice(0, 0, 3, 2).unsqueeze(0);  // [1, 2, 2]
      Tensor e = b.expand({3, 2, 2});                                 // broadcast [2] → [3, 2, 2]
      return mul(add(t, e), t.narrow(2, 1, 1)).reshape({-1});
    };
    test::gradcheck(f, {test::random({2, 4}, 1), test::random({2}, 2)}, d);
  }
}
