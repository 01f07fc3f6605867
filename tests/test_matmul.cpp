// matmul: 2-D and batched products against a naive double reference, for transposed, sliced,
// expanded and strided operands (which reach the kernel through its trans flags or strides),
// gradients by central differences, empty shapes and bad input.
#include "reference.hpp"

using namespace isrn;
using test::check_close;
using test::HostTensor;

namespace {

// Naive [B,M,K]·[B,K,N] (or 2-D) in double.
Tensor reference_matmul(const Tensor& a, const Tensor& b) {
  const bool batched = a.dim() == 3;
  const HostTensor ha(batched ? a : a.unsqueeze(0)), hb(batched ? b : b.unsqueeze(0));
  const int64_t batch = ha.shape[0], m = ha.shape[1], k = ha.shape[2], n = hb.shape[2];
  HostTensor out({batch, m, n}, 0.0);
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (int64_t q = 0; q < k; ++q) s += ha({p, i, q}) * hb({p, q, j});
        out({p, i, j}) = s;
      }
  Tensor t = out.tensor();
  return batched ? t : t.squeeze(0);
}

// Recursive summation of K products of values in [-1, 1] errs by at most K·u·Σ|a||b| ≤ K²·u
// (u the unit roundoff); that bound never fails a correct product, while a wrong element is off by O(1).
double tolerance(DType dt, int64_t k) {
  const double u = dt == DType::Float32 ? 0x1p-24 : 0x1p-53;
  return 2.0 * static_cast<double>(k * k) * u + 1e-300;
}

}  // namespace

TEST_CASE("matmul: 2-D products match the reference in float32 and float64") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      // Sizes off every block multiple, up to one large enough for Eigen's blocked, threaded path.
      for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {7, 13, 5}, {33, 65, 17}, {1, 40, 9},
                                                                 {9, 40, 1}, {257, 130, 193}}) {
        CAPTURE(m);
        CAPTURE(k);
        CAPTURE(n);
        const Tensor a = test::random({m, k}, 1 + m, -1, 1, dt).to(d);
        const Tensor b = test::random({k, n}, 2 + n, -1, 1, dt).to(d);
        const Tensor c = matmul(a, b);
        CHECK(c.dtype() == dt);
        CHECK(c.shape() == Shape{m, n});
        check_close(c, reference_matmul(a, b), 0, tolerance(dt, k), "matmul");
      }
    }
  }
}

TEST_CASE("matmul: transposed, sliced, expanded and strided operands") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      const double tol = tolerance(dt, 23);
      const Tensor a = test::random({6, 23}, 1, -1, 1, dt).to(d);
      const Tensor b = test::random({23, 11}, 2, -1, 1, dt).to(d);
      const Tensor ref = reference_matmul(a, b);
      const Tensor at = a.transpose(0, 1).contiguous().transpose(0, 1);  // column-major a: trans_a
      const Tensor bt = b.transpose(0, 1).contiguous().transpose(0, 1);  // column-major b: trans_b
      check_close(matmul(at, b), ref, 0, tol, "a transposed");
      check_close(matmul(a, bt), ref, 0, tol, "b transposed");
      check_close(matmul(at, bt), ref, 0, tol, "both transposed");
      // Row strides larger than the row: slices of wider matrices.
      const Tensor wide_a = zeros({6, 40}, TensorOptions(dt).device(d));
      wide_a.narrow(1, 5, 23).copy_(a);
      check_close(matmul(wide_a.narrow(1, 5, 23), b), ref, 0, tol, "sliced a");
      // Non-unit element strides in both directions: copied before the kernel.
      check_close(matmul(test::spread(a), test::spread(bt)), ref, 0, tol, "strided");
      // A broadcast row (stride 0 along rows) and a single column.
      const Tensor row = test::random({1, 23}, 3, -1, 1, dt).to(d);
      check_close(matmul(row.expand({4, 23}), b), reference_matmul(row.expand({4, 23}).contiguous(), b), 0, tol,
                  "expanded rows");
      check_close(matmul(a, b.narrow(1, 3, 1)), reference_matmul(a, b.narrow(1, 3, 1).contiguous()), 0, tol,
                  "one column");
    }
  }
}

TEST_CASE("matmul: batched products, including expanded batches and many small matrices") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      const Tensor a = test::random({5, 9, 14}, 1, -1, 1, dt).to(d);
      const Tensor b = test::random({5, 14, 6}, 2, -1, 1, dt).to(d);
      const Tensor ref = reference_matmul(a, b);
      const double tol = tolerance(dt, 14);
      check_close(matmul(a, b), ref, 0, tol, "batched");
      check_close(matmul(a.transpose(1, 2).contiguous().transpose(1, 2), b.transpose(1, 2).contiguous().transpose(1, 2)),
                  ref, 0, tol, "batched, both transposed");
      check_close(matmul(a.transpose(0, 1).contiguous().transpose(0, 1), b), ref, 0, tol, "batch not outermost");
      const Tensor shared = test::random({1, 14, 6}, 3, -1, 1, dt).to(d);
      check_close(matmul(a, shared.expand({5, 14, 6})), reference_matmul(a, shared.expand({5, 14, 6}).contiguous()), 0,
                  tol, "expanded batch");
      // 2100 products of 8×8 matrices: the one-product-per-thread path.
      const Tensor sa = test::random({2100, 8, 8}, 4, -1, 1, dt).to(d);
      const Tensor sb = test::random({2100, 8, 8}, 5, -1, 1, dt).to(d);
      check_close(matmul(sa, sb.transpose(1, 2)), reference_matmul(sa, sb.transpose(1, 2).contiguous()), 0,
                  tolerance(dt, 8), "many small");
    }
  }
}

TEST_CASE("matmul: empty dimensions") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const TensorOptions o = TensorOptions(DType::Float32).device(d);
    CHECK(matmul(empty({0, 3}, o), empty({3, 4}, o)).shape() == Shape{0, 4});
    CHECK(matmul(empty({2, 3}, o), empty({3, 0}, o)).shape() == Shape{2, 0});
    CHECK(matmul(empty({0, 2, 3}, o), empty({0, 3, 4}, o)).shape() == Shape{0, 2, 4});
    // An empty inner dimension gives zeros (an empty sum), not uninitialised memory.
    check_close(matmul(full({2, 0}, 1, o), full({0, 3}, 1, o)), std::vector<double>(6, 0.0), 0, 0, "K = 0");
    Tensor a = empty({2, 0}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    Tensor b = empty({0, 3}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    sum(matmul(a, b)).backward();
    CHECK(a.grad().shape() == Shape{2, 0});
    CHECK(b.grad().shape() == Shape{0, 3});
  }
}

TEST_CASE("matmul: gradients through the trans flags, for plain and transposed operands") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    auto plain = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
    test::gradcheck(plain, {test::random({3, 4}, 1), test::random({4, 5}, 2)}, d);
    auto transposed = [](const std::vector<Tensor>& in) { return matmul(in[0].transpose(0, 1), in[1].transpose(0, 1)); };
    test::gradcheck(transposed, {test::random({4, 3}, 3), test::random({5, 4}, 4)}, d);
    auto batched = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1].transpose(1, 2)); };
    test::gradcheck(batched, {test::random({2, 3, 4}, 5), test::random({2, 5, 4}, 6)}, d);
    // A gradient that reaches matmul transposed (through a transpose after it).
    auto after = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]).transpose(0, 1); };
    test::gradcheck(after, {test::random({3, 2}, 7), test::random({2, 4}, 8)}, d);
    // A broadcast operand receives the summed gradient.
    auto expanded = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1].expand({3, 4, 2})); };
    test::gradcheck(expanded, {test::random({3, 2, 4}, 9), test::random({1, 4, 2}, 10)}, d);
    // Only the operand that requires grad gets one: d(sum(a·b))/da = rowsums of b broadcast.
    Tensor a = test::random({2, 3}, 11).to(d).set_requires_grad(true);
    const Tensor b = from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2}, d);
    sum(matmul(a, b)).backward();
    check_close(a.grad(), {3, 7, 11, 3, 7, 11}, 0, 0, "grad of a");
    CHECK(!b.grad().defined());
  }
}

TEST_CASE("matmul: bad input is refused with the op's name") {
  const Tensor a = zeros({2, 3}), b = zeros({3, 4});
  CHECK_THROWS_WITH_AS(matmul(a, zeros({4, 4})), doctest::Contains("[matmul] inner dimensions differ: [2, 3] · [4, 4]"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(a, b.to(DType::Float64)), doctest::Contains("[matmul] operands have different dtypes"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(a.to(DType::Int32), b.to(DType::Int32)),
                       doctest::Contains("[matmul] argument 'a' must be float32, bfloat16 or float64, got int32"), Error);
  CHECK_THROWS_WITH_AS(matmul(a, zeros({1, 3, 4})), doctest::Contains("[matmul] expects two 2-D or two 3-D operands"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({3}), zeros({3})), doctest::Contains("[matmul] expects two 2-D or two 3-D"), Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})), doctest::Contains("[matmul] batch sizes differ"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(a, Tensor()), doctest::Contains("[matmul] undefined operand"), Error);
  if (cuda_available())
    CHECK_THROWS_WITH_AS(matmul(a, b.to(Device::cuda())), doctest::Contains("[matmul] operands are on different devices"),
                         Error);
}
