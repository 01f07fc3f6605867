// sort, argsort and topk along the last dimension. The reference ranks every element by counting
// (O(n²), no sorting algorithm involved): NaN above every number, ties by lower index, so the
// expected permutation is unique and compared exactly.
#include <cmath>
#include <limits>

#include "reference.hpp"

using namespace isrn;
using test::check_close;
using test::HostTensor;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// a comes strictly before b in ascending order (NaN largest, NaNs equal).
bool less_with_nan(double a, double b) {
  if (std::isnan(a)) return false;
  return std::isnan(b) || a < b;
}

// The order of row's indices: ascending or descending by value, equal values by lower index.
std::vector<int64_t> reference_order(const std::vector<double>& row, bool descending) {
  const int64_t n = static_cast<int64_t>(row.size());
  std::vector<int64_t> order(row.size());
  for (int64_t j = 0; j < n; ++j) {
    int64_t rank = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bool before = descending ? less_with_nan(row[j], row[i]) : less_with_nan(row[i], row[j]);
      const bool tie = !less_with_nan(row[i], row[j]) && !less_with_nan(row[j], row[i]);
      if (before || (tie && i < j)) ++rank;
    }
    order[rank] = j;
  }
  return order;
}

// Expected (values, indices) of the first k of each row's order, for an [M, N] host matrix.
std::pair<std::vector<double>, std::vector<double>> reference_rows(const HostTensor& x, bool descending, int64_t k) {
  const int64_t n = x.shape.back(), m = n == 0 ? 0 : x.numel() / n;
  std::vector<double> values, indices;
  for (int64_t r = 0; r < m; ++r) {
    std::vector<double> row(x.data.begin() + r * n, x.data.begin() + (r + 1) * n);
    const auto order = reference_order(row, descending);
    for (int64_t j = 0; j < k; ++j) {
      values.push_back(row[order[j]]);
      indices.push_back(static_cast<double>(order[j]));
    }
  }
  return {values, indices};
}

// Values drawn from a few levels, so every row has many ties.
Tensor tied(const Shape& shape, uint64_t seed, DType dt, Device d) {
  return test::random(shape, seed, 0, 5).to(DType::Int64).to(DType::Float64).to(dt).to(d);
}

}  // namespace

TEST_CASE("sort: stable ascending and descending order against a counting reference") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::UInt8}) {
      CAPTURE(dt);
      for (bool descending : {false, true}) {
        CAPTURE(descending);
        for (const Tensor& x : {tied({4, 37}, 1, dt, d), test::random({3, 5, 11}, 2, 0, 200).to(dt).to(d),
                                test::spread(tied({6, 9}, 3, dt, d)), tied({9, 6}, 4, dt, d).transpose(0, 1)}) {
          const auto [values, indices] = reference_rows(HostTensor(x), descending, x.size(-1));
          const ValuesIndices s = sort(x, descending);
          CHECK(s.values.shape() == x.shape());
          CHECK(s.values.dtype() == dt);
          CHECK(s.indices.dtype() == DType::Int64);
          check_close(s.values, from_vector(values, x.shape()), 0, 0, "sorted values");
          check_close(s.indices, from_vector(indices, x.shape()), 0, 0, "sort permutation");
          check_close(argsort(x, descending), from_vector(indices, x.shape()), 0, 0, "argsort");
        }
      }
    }
    // Rows long and many enough for the threaded path.
    const Tensor big = tied({300, 500}, 5, DType::Float32, d);
    const auto [values, indices] = reference_rows(HostTensor(big), true, 500);
    check_close(sort(big, true).indices, from_vector(indices, {300, 500}), 0, 0, "large sort");
  }
}

TEST_CASE("sort: NaN sorts above every number and signed zeros tie") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64}) {
      CAPTURE(dt);
      const Tensor x = from_vector<double>({3, 1, kNaN, 1, -0.0, kNaN, 0.0, -INFINITY, INFINITY}, {9}, d).to(dt);
      // As torch.sort(stable=True): NaNs last ascending, first descending, in index order.
      const ValuesIndices up = sort(x);
      check_close(up.indices, {7, 4, 6, 1, 3, 0, 8, 2, 5}, 0, 0, "ascending with NaN");
      check_close(up.values, {-INFINITY, 0, 0, 1, 1, 3, INFINITY, kNaN, kNaN}, 0, 0, "ascending values");
      CHECK(std::signbit(test::values(up.values)[1]));  // -0.0 (index 4) stays before +0.0 (index 6)
      check_close(sort(x, true).indices, {2, 5, 8, 0, 1, 3, 4, 6, 7}, 0, 0, "descending with NaN");
      // topk: NaN counts as the largest; the smallest skip it while there are numbers left.
      check_close(topk(x, 3).indices, {2, 5, 8}, 0, 0, "topk largest with NaN");
      check_close(topk(x, 4, false).indices, {7, 4, 6, 1}, 0, 0, "topk smallest with NaN");
    }
  }
}

TEST_CASE("topk: largest and smallest, every k, ties to the lower index") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64, DType::Int32, DType::Int64}) {
      CAPTURE(dt);
      const Tensor x = tied({5, 23}, 1, dt, d);
      const Tensor distinct = test::random({2, 3, 17}, 2, -1, 1).to(dt).to(d);
      for (bool largest : {true, false}) {
        CAPTURE(largest);
        for (int64_t k : {0, 1, 2, 7, 22, 23}) {
          CAPTURE(k);
          const auto [values, indices] = reference_rows(HostTensor(x), largest, k);
          const ValuesIndices t = topk(test::spread(x), k, largest);
          CHECK(t.values.shape() == Shape{5, k});
          check_close(t.values, from_vector(values, {5, k}), 0, 0, "topk values");
          check_close(t.indices, from_vector(indices, {5, k}), 0, 0, "topk indices");
        }
        const auto [values, indices] = reference_rows(HostTensor(distinct), largest, 5);
        check_close(topk(distinct, 5, largest).indices, from_vector(indices, {2, 3, 5}), 0, 0, "topk 3-D");
      }
    }
    // The threaded path over many rows.
    const Tensor big = tied({400, 300}, 3, DType::Float32, d);
    const auto [values, indices] = reference_rows(HostTensor(big), true, 40);
    check_close(topk(big, 40).indices, from_vector(indices, {400, 40}), 0, 0, "large topk");
  }
}

TEST_CASE("sort and topk: zero-dimensional and empty inputs") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor s = scalar_tensor(2.5, TensorOptions(DType::Float32).device(d));
    const ValuesIndices r = sort(s);
    CHECK(r.values.dim() == 0);
    CHECK(r.values.item<float>() == 2.5f);
    CHECK(r.indices.item<int64_t>() == 0);
    CHECK(topk(s, 1).indices.item<int64_t>() == 0);
    CHECK_THROWS_WITH_AS(topk(s, 0), doctest::Contains("[topk] a zero-dimensional input needs k = 1"), Error);
    CHECK(sort(empty({3, 0}, TensorOptions().device(d))).indices.shape() == Shape{3, 0});
    CHECK(sort(empty({0, 4}, TensorOptions().device(d))).values.shape() == Shape{0, 4});
    CHECK(topk(empty({2, 0}, TensorOptions().device(d)), 0).values.shape() == Shape{2, 0});
    CHECK(topk(empty({0, 5}, TensorOptions().device(d)), 3).indices.shape() == Shape{0, 3});
  }
}

TEST_CASE("sort and topk: values carry a gradient to the input through gather") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    // Random values are distinct by far more than the finite-difference step, so the order is fixed.
    auto sorted = [](const std::vector<Tensor>& in) { return sort(in[0].transpose(0, 1), true).values; };
    test::gradcheck(sorted, {test::random({6, 3}, 1)}, d);
    auto top = [](const std::vector<Tensor>& in) { return topk(in[0], 2, false).values; };
    test::gradcheck(top, {test::random({3, 5}, 2)}, d);
    Tensor x = from_vector<double>({0.5, 3, 1, 2}, {4}, d).set_requires_grad(true);
    sum(mul(topk(x, 2).values, from_vector<double>({10, 1}, {2}, d))).backward();
    check_close(x.grad(), {0, 10, 0, 1}, 0, 0, "topk gradient lands on the chosen elements");
    CHECK(!argsort(x).requires_grad());
    CHECK(!sort(x).indices.requires_grad());
    Tensor e = empty({2, 0}, TensorOptions(DType::Float64).device(d)).set_requires_grad(true);
    sum(topk(e, 0).values).backward();
    CHECK(e.grad().shape() == Shape{2, 0});
  }
}

TEST_CASE("sort and topk: bad input") {
  CHECK_THROWS_WITH_AS(topk(zeros({2, 5}), 6), doctest::Contains("[topk] k = 6 is out of range for a last dimension of size 5"),
                       Error);
  CHECK_THROWS_WITH_AS(topk(zeros({2, 5}), -1), doctest::Contains("[topk] k = -1 is out of range"), Error);
  CHECK_THROWS_WITH_AS(sort(zeros({3}, DType::Bool)), doctest::Contains("[sort] does not support bool"), Error);
  CHECK_THROWS_WITH_AS(argsort(zeros({3}, DType::Bool)), doctest::Contains("[argsort] does not support bool"), Error);
  CHECK_THROWS_WITH_AS(topk(Tensor(), 1), doctest::Contains("[topk] undefined input"), Error);
}
