// cat, stack, split, chunk, pad, index_select, gather, masked_select and nonzero_flat: forward
// against naive host references, gradients by central differences, edge cases and bad input.
// Everything these ops do is copying, so forward results must match exactly (tolerance 0).
#include "reference.hpp"

using namespace isrn;
using test::check_close;
using test::HostTensor;

namespace {

TensorOptions on(Device d, DType t = DType::Float64) { return TensorOptions(t).device(d); }

// Reference cat: walk the output and find the source tensor by the cumulative offsets along dim.
HostTensor cat_reference(const std::vector<Tensor>& ts, int64_t dim) {
  std::vector<HostTensor> hs;
  for (const auto& t : ts) hs.emplace_back(t);
  Shape shape = hs[0].shape;
  shape[dim] = 0;
  for (const auto& h : hs) shape[dim] += h.shape[dim];
  HostTensor out(shape, 0.0);
  for (int64_t f = 0; f < out.numel(); ++f) {
    auto idx = test::unravel(f, shape);
    int64_t k = 0, pos = idx[dim];
    while (pos >= hs[k].shape[dim]) pos -= hs[k++].shape[dim];
    auto src = idx;
    src[dim] = pos;
    out.data[f] = hs[k](src);
  }
  return out;
}

}  // namespace

TEST_CASE("shape ops: cat matches a reference along every dim, for strided inputs and all dtypes") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType dt : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::UInt8}) {
      CAPTURE(dt);
      const Tensor a = test::random({3, 5, 7}, 1, 0, 100).to(dt).to(d);
      for (int64_t dim : {0, 1, 2, -1}) {
        CAPTURE(dim);
        const int64_t wd = dim < 0 ? dim + 3 : dim;
        Shape sb = a.shape(), sc = a.shape(), se = a.shape();
        sb[wd] = 2;
        sc[wd] = 9;
        se[wd] = 0;
        const Tensor b = test::spread(test::random(sb, 2, 0, 100).to(dt).to(d));  // strided
        const Tensor c = test::random(sc, 3, 0, 100).to(dt).to(d).transpose(0, 1).contiguous().transpose(0, 1);
        const Tensor e = empty(se, TensorOptions(dt).device(d));
        const std::vector<Tensor> parts{a, b, e, c};
        const Tensor out = cat(parts, dim);
        CHECK(out.dtype() == dt);
        CHECK(out.device() == d);
        check_close(out, cat_reference(parts, wd).tensor(), 0, 0, "cat");
      }
    }
    // A single tensor comes back as a copy, and empty tensors concatenate to an empty one.
    const Tensor x = test::random({4, 2}, 4).to(d);
    const Tensor single = cat({x}, 1);
    CHECK(single.storage() != x.storage());
    check_close(single, x, 0, 0, "cat of one tensor");
    CHECK(cat({empty({0, 3}, on(d)), empty({0, 3}, on(d))}, 0).shape() == Shape{0, 3});
    CHECK(cat({empty({2, 0}, on(d)), empty({2, 0}, on(d))}, 0).shape() == Shape{4, 0});
  }
}

TEST_CASE("shape ops: cat and stack gradients are slices of the output gradient") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    auto f = [](const std::vector<Tensor>& in) {
      return cat({in[0], in[1].transpose(0, 1), in[2]}, 1);  // a strided middle operand
    };
    test::gradcheck(f, {test::random({3, 2}, 1), test::random({4, 3}, 2), test::random({3, 1}, 3)}, d);
    auto g = [](const std::vector<Tensor>& in) { return stack({in[0], in[1].slice(1, 0, 6, 2)}, 1); };
    test::gradcheck(g, {test::random({2, 3}, 4), test::random({2, 6}, 5)}, d);
    // Only the inputs that require grad get one.
    Tensor a = test::random({2, 2}, 6).to(d).set_requires_grad(true);
    Tensor b = test::random({2, 2}, 7).to(d);
    sum(mul(cat({a, b}, 0), 3.0)).backward();
    check_close(a.grad(), std::vector<double>(4, 3.0), 0, 0, "cat gradient to a");
    CHECK(!b.grad().defined());
    // The same tensor twice: both slices of the gradient reach it.
    Tensor c = test::random({3}, 8).to(d).set_requires_grad(true);
    sum(mul(cat({c, c}, 0), from_vector<double>({1, 2, 3, 10, 20, 30}, {6}, d))).backward();
    check_close(c.grad(), {11, 22, 33}, 0, 0, "cat of a tensor with itself");
  }
}

TEST_CASE("shape ops: stack inserts a new dimension at any position") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor a = test::random({2, 3}, 1).to(d), b = test::spread(test::random({2, 3}, 2).to(d));
    const HostTensor ha(a), hb(b);
    for (int64_t dim : {0, 1, 2, -1, -3}) {
      CAPTURE(dim);
      const int64_t wd = dim < 0 ? dim + 3 : dim;
      const Tensor out = stack({a, b}, dim);
      Shape expected_shape{2, 3};
      expected_shape.insert(expected_shape.begin() + wd, 2);
      REQUIRE(out.shape() == expected_shape);
      HostTensor ref(expected_shape, 0.0);
      for (int64_t f = 0; f < ref.numel(); ++f) {
        auto idx = test::unravel(f, expected_shape);
        const int64_t k = idx[wd];
        idx.erase(idx.begin() + wd);
        ref.data[f] = k == 0 ? ha(idx) : hb(idx);
      }
      check_close(out, ref.tensor(), 0, 0, "stack");
    }
    CHECK(stack({scalar_tensor(1, on(d)), scalar_tensor(2, on(d))}, 0).to_vector<double>() ==
          std::vector<double>{1, 2});
  }
}

TEST_CASE("shape ops: cat and stack reject bad input with the op's name") {
  const Tensor a = zeros({2, 3}), b = zeros({2, 4}), i = zeros({2, 3}, DType::Int32);
  CHECK_THROWS_WITH_AS(cat({}, 0), doctest::Contains("[cat] expects at least one tensor"), Error);
  CHECK_THROWS_WITH_AS(cat({a, b}, 0), doctest::Contains("[cat] tensor 1 has shape [2, 4]"), Error);
  CHECK_THROWS_WITH_AS(cat({a, zeros({2, 3, 1})}, 0), doctest::Contains("does not match"), Error);
  CHECK_THROWS_WITH_AS(cat({a, i}, 0), doctest::Contains("[cat] tensor 1 has dtype int32"), Error);
  CHECK_THROWS_WITH_AS(cat({a, a}, 2), doctest::Contains("[cat] dim 2 is out of range"), Error);
  CHECK_THROWS_WITH_AS(cat({scalar_tensor(1), scalar_tensor(2)}, 0), doctest::Contains("[cat] zero-dimensional"),
                       Error);
  CHECK_THROWS_WITH_AS(cat({a, Tensor()}, 0), doctest::Contains("[cat] tensor 1 is undefined"), Error);
  CHECK_THROWS_WITH_AS(stack({a, b}, 0), doctest::Contains("[stack] tensor 1 has shape [2, 4]"), Error);
  CHECK_THROWS_WITH_AS(stack({a, i}, 0), doctest::Contains("[stack] tensor 1 has dtype int32"), Error);
  CHECK_THROWS_WITH_AS(stack({a, a}, 3), doctest::Contains("[stack] dim 3 is out of range"), Error);
  CHECK_THROWS_WITH_AS(stack({}, 0), doctest::Contains("[stack] expects at least one tensor"), Error);
  if (cuda_available()) {
    CHECK_THROWS_WITH_AS(cat({a, a.to(Device::cuda())}, 0), doctest::Contains("[cat] tensor 1 is on cuda:0"), Error);
    CHECK_THROWS_WITH_AS(stack({a, a.to(Device::cuda())}, 0), doctest::Contains("[stack] tensor 1 is on cuda:0"),
                         Error);
  }
}

TEST_CASE("shape ops: split and chunk return views of the stated sizes") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor x = test::random({3, 10}, 1).to(d);
    const HostTensor hx(x);
    auto check_pieces = [&](const std::vector<Tensor>& ps, const std::vector<int64_t>& lengths, int64_t dim) {
      REQUIRE(ps.size() == lengths.size());
      int64_t start = 0;
      for (size_t k = 0; k < ps.size(); ++k) {
        CAPTURE(k);
        Shape shape = x.shape();
        shape[dim] = lengths[k];
        REQUIRE(ps[k].shape() == shape);
        CHECK(ps[k].storage() == x.storage());  // a view, no copy
        HostTensor ref(shape, 0.0);
        for (int64_t f = 0; f < ref.numel(); ++f) {
          auto idx = test::unravel(f, shape);
          idx[dim] += start;
          ref.data[f] = hx(idx);
        }
        check_close(ps[k], ref.tensor(), 0, 0, "piece");
        start += lengths[k];
      }
    };
    check_pieces(split(x, 3, 1), {3, 3, 3, 1}, 1);
    check_pieces(split(x, 5, -1), {5, 5}, 1);
    check_pieces(split(x, 20, 1), {10}, 1);
    check_pieces(split(x, 2, 0), {2, 1}, 0);
    check_pieces(split(x, std::vector<int64_t>{4, 0, 6}, 1), {4, 0, 6}, 1);
    // torch.chunk: pieces of ceil(n / chunks), so 10 in 4 chunks is 3+3+3+1 and 10 in 6 is 2×5.
    check_pieces(chunk(x, 4, 1), {3, 3, 3, 1}, 1);
    check_pieces(chunk(x, 6, 1), {2, 2, 2, 2, 2}, 1);
    check_pieces(chunk(x, 1, 0), {3}, 0);
    check_pieces(chunk(x, 3, 0), {1, 1, 1}, 0);
    // Empty dimension: split gives one empty piece, chunk gives `chunks` of them (as PyTorch).
    const Tensor e = empty({2, 0}, on(d));
    CHECK(split(e, 3, 1).size() == 1);
    CHECK(split(e, 0, 1).size() == 1);
    CHECK(chunk(e, 3, 1).size() == 3);
    CHECK(chunk(e, 3, 1)[2].shape() == Shape{2, 0});
  }
}

TEST_CASE("shape ops: split gradients land in the right slices") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    auto f = [](const std::vector<Tensor>& in) {
      auto ps = split(in[0].transpose(0, 1), std::vector<int64_t>{1, 3, 1}, 0);  // a strided input
      return cat({mul(ps[2], 2.0), ps[0], mul(ps[1], ps[1])}, 0);
    };
    test::gradcheck(f, {test::random({3, 5}, 1)}, d);
    auto g = [](const std::vector<Tensor>& in) {
      auto ps = chunk(in[0], 3, 1);
      return add(mul(ps[0], ps[1]), ps[2].slice(1, 0, 1).expand({2, 2}));
    };
    test::gradcheck(g, {test::random({2, 5}, 2)}, d);  // chunks of 2, 2, 1
    // A piece that takes no part in the loss gets a zero gradient.
    Tensor x = test::random({6}, 3).to(d).set_requires_grad(true);
    sum(split(x, 4, 0)[1]).backward();
    check_close(x.grad(), {0, 0, 0, 0, 1, 1}, 0, 0, "unused piece");
  }
}

TEST_CASE("shape ops: split and chunk reject bad sizes") {
  const Tensor x = zeros({3, 4});
  CHECK_THROWS_WITH_AS(split(x, 0, 1), doctest::Contains("[split] split size must be positive"), Error);
  CHECK_THROWS_WITH_AS(split(x, -2, 1), doctest::Contains("[split] split size must be positive"), Error);
  CHECK_THROWS_WITH_AS(split(x, std::vector<int64_t>{1, 2}, 1), doctest::Contains("[split] sizes sum to 3"), Error);
  CHECK_THROWS_WITH_AS(split(x, std::vector<int64_t>{5, -1}, 1), doctest::Contains("[split] sizes must not be negative"),
                       Error);
  CHECK_THROWS_WITH_AS(split(x, 1, 2), doctest::Contains("[split] dim 2 is out of range"), Error);
  CHECK_THROWS_WITH_AS(split(scalar_tensor(1), 1, 0), doctest::Contains("[split] expects a tensor with at least one"),
                       Error);
  CHECK_THROWS_WITH_AS(chunk(x, 0, 0), doctest::Contains("[chunk] number of chunks must be positive"), Error);
}

TEST_CASE("shape ops: pad in torch.nn.functional.pad order, with crops and any dtype") {
  // Reference: out[i] = x[i - before] where that is inside x, else the fill value, per padded dim.
  auto reference = [](const Tensor& x, const std::vector<int64_t>& pads, double value) {
    const HostTensor hx(x);
    Shape shape = hx.shape;
    const size_t pairs = pads.size() / 2;
    for (size_t j = 0; j < pairs; ++j) shape[shape.size() - 1 - j] += pads[2 * j] + pads[2 * j + 1];
    HostTensor out(shape, value);
    for (int64_t f = 0; f < out.numel(); ++f) {
      auto idx = test::unravel(f, shape);
      bool inside = true;
      for (size_t j = 0; j < pairs; ++j) {
        const size_t dd = shape.size() - 1 - j;
        idx[dd] -= pads[2 * j];
        inside = inside && idx[dd] >= 0 && idx[dd] < hx.shape[dd];
      }
      if (inside) out.data[f] = hx(idx);
    }
    return out;
  };
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor x4 = test::random({2, 3, 4, 5}, 1).to(d);
    const std::vector<std::vector<int64_t>> cases{
        {1, 2}, {0, 0, 3, 1}, {2, 1, 1, 2, 0, 1}, {-1, 2, 1, -2}, {-2, -3, 0, 0, 1, 1, 2, 0}, {}, {0, 0}};
    for (const auto& pads : cases) {
      CAPTURE(pads.size());
      CAPTURE(pads.empty() ? 0 : pads[0]);
      check_close(pad(x4, pads, -7.5), reference(x4, pads, -7.5).tensor(), 0, 0, "pad float64");
      check_close(pad(test::spread(x4), pads, 1.0), reference(x4, pads, 1.0).tensor(), 0, 0, "pad strided");
    }
    const Tensor xi = test::random({3, 4}, 2, 0, 50).to(DType::Int32).to(d);
    const Tensor pi = pad(xi, {1, 1, 2, 0}, 9);
    CHECK(pi.dtype() == DType::Int32);
    check_close(pi, reference(xi, {1, 1, 2, 0}, 9).tensor(), 0, 0, "pad int32");
    const Tensor xb = from_vector<bool>({true, false}, {2}, d);
    CHECK(pad(xb, {1, 1}, 1).to_vector<bool>() == std::vector<bool>{true, true, false, true});
    // Cropping a dimension away entirely and padding an empty tensor.
    CHECK(pad(x4, {-5, 0}).shape() == Shape{2, 3, 4, 0});
    check_close(pad(empty({2, 0}, on(d)), {1, 1}, 4.0), std::vector<double>(4, 4.0), 0, 0, "pad empty");
  }
}

TEST_CASE("shape ops: pad gradient is the slice of kept elements") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (const std::vector<int64_t>& pads :
         std::vector<std::vector<int64_t>>{{1, 2}, {2, 0, 1, 3}, {-1, 2, 1, -1}, {0, -2, -1, 0}}) {
      CAPTURE(pads[0]);
      CAPTURE(pads[1]);
      auto f = [pads](const std::vector<Tensor>& in) { return pad(in[0].transpose(0, 1), pads, 0.25); };
      test::gradcheck(f, {test::random({4, 3}, 1)}, d);
    }
  }
}

TEST_CASE("shape ops: pad rejects malformed padding") {
  const Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH_AS(pad(x, {1, 2, 3}), doctest::Contains("[pad] pads must hold (before, after) pairs"), Error);
  CHECK_THROWS_WITH_AS(pad(x, {1, 1, 1, 1, 1, 1}), doctest::Contains("[pad] 3 (before, after) pairs"), Error);
  CHECK_THROWS_WITH_AS(pad(x, {-2, -2}), doctest::Contains("[pad] padding (-2, -2) crops more than the 3"), Error);
  CHECK_THROWS_WITH_AS(pad(x, {-5, 4}), doctest::Contains("crops more than"), Error);
}

TEST_CASE("shape ops: index_select against a reference, int32 and int64 indices, strided operands") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType it : {DType::Int64, DType::Int32}) {
      CAPTURE(it);
      for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8, DType::Bool}) {
        CAPTURE(dt);
        const Tensor base = test::random({4, 6, 5}, 1, 0, 2.99).to(dt).to(d);
        for (int64_t dim : {0, 1, 2, -2}) {
          CAPTURE(dim);
          const int64_t wd = dim < 0 ? dim + 3 : dim;
          const Tensor x = dim == 1 ? test::spread(base) : base.transpose(0, 2).contiguous().transpose(0, 2);
          const HostTensor hx(x);
          // Repeats and an index read through a stride (every other element of a longer tensor).
          const Tensor index = test::random_indices({14}, 0, x.size(wd), 7 + wd, it, d).slice(0, 0, 14, 2);
          const HostTensor hi(index);
          const Tensor out = index_select(x, dim, index);
          Shape shape = x.shape();
          shape[wd] = 7;
          HostTensor ref(shape, 0.0);
          for (int64_t f = 0; f < ref.numel(); ++f) {
            auto idx = test::unravel(f, shape);
            idx[wd] = static_cast<int64_t>(hi.data[idx[wd]]);
            ref.data[f] = hx(idx);
          }
          CHECK(out.dtype() == dt);
          check_close(out, ref.tensor(), 0, 0, "index_select");
        }
      }
    }
    // Big enough for the threaded path: 3000 rows of 40.
    const Tensor big = test::random({3000, 40}, 3).to(d);
    const Tensor rows = test::random_indices({2500}, 0, 3000, 4, DType::Int64, d);
    const HostTensor hb(big), hr(rows);
    HostTensor ref({2500, 40}, 0.0);
    for (int64_t i = 0; i < 2500; ++i)
      for (int64_t j = 0; j < 40; ++j) ref({i, j}) = hb({static_cast<int64_t>(hr.data[i]), j});
    check_close(index_select(big, 0, rows), ref.tensor(), 0, 0, "index_select large");
    // An empty index selects nothing; an empty input with an empty index is fine too.
    CHECK(index_select(big, 1, empty({0}, on(d, DType::Int64))).shape() == Shape{3000, 0});
    CHECK(index_select(empty({0, 3}, on(d)), 0, empty({0}, on(d, DType::Int32))).shape() == Shape{0, 3});
  }
}

TEST_CASE("shape ops: index_select gradient accumulates over repeated indices (index_add)") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType it : {DType::Int64, DType::Int32}) {
      const Tensor index = from_vector<int64_t>({2, 0, 2, 2, 3}, {5}, d).to(it);
      for (int64_t dim : {0, 1}) {
        auto f = [index, dim](const std::vector<Tensor>& in) { return index_select(in[0].transpose(0, 1), dim, index); };
        test::gradcheck(f, {test::random({4, 4}, 1)}, d);
      }
    }
    Tensor x = zeros({5}, on(d)).set_requires_grad(true);
    sum(index_select(x, 0, from_vector<int64_t>({1, 1, 1, 4}, {4}, d))).backward();
    check_close(x.grad(), {0, 3, 0, 0, 1}, 0, 0, "repeated indices add up");
    // The threaded backward path: many rows of a wide tensor.
    Tensor w = test::random({300, 500}, 2).to(d).set_requires_grad(true);
    const Tensor rows = test::random_indices({400}, 0, 300, 3, DType::Int64, d);
    sum(index_select(w, 0, rows)).backward();
    std::vector<double> counts(300, 0.0);
    for (double r : test::values(rows)) counts[static_cast<size_t>(r)] += 1.0;
    const HostTensor g(w.grad());
    bool all = true;
    for (int64_t i = 0; i < 300; ++i)
      for (int64_t j = 0; j < 500; ++j) all = all && g({i, j}) == counts[i];
    CHECK(all);
  }
}

TEST_CASE("shape ops: gather against a reference and its scatter_add gradient") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (DType it : {DType::Int64, DType::Int32}) {
      CAPTURE(it);
      const Tensor x = test::spread(test::random({4, 5, 3}, 1, -10, 10).to(d));
      const HostTensor hx(x);
      for (int64_t dim : {0, 1, 2, -1}) {
        CAPTURE(dim);
        const int64_t wd = dim < 0 ? dim + 3 : dim;
        // The index may be smaller than x outside `dim` and longer inside it.
        Shape ishape{3, 4, 2};
        ishape[wd] = 6;
        const Tensor index = test::random_indices(ishape, 0, x.size(wd), 11 + wd, it, d).transpose(0, 1).contiguous()
                                 .transpose(0, 1);  // strided index
        const HostTensor hi(index);
        HostTensor ref(ishape, 0.0);
        for (int64_t f = 0; f < ref.numel(); ++f) {
          auto idx = test::unravel(f, ishape);
          auto src = idx;
          src[wd] = static_cast<int64_t>(hi(idx));
          ref.data[f] = hx(src);
        }
        check_close(gather(x, dim, index), ref.tensor(), 0, 0, "gather");
        auto f = [index, dim](const std::vector<Tensor>& in) { return gather(in[0], dim, index); };
        test::gradcheck(f, {test::random({4, 5, 3}, 2)}, d);
      }
    }
    // The threaded path and int dtypes.
    const Tensor big = test::random({200, 700}, 3, 0, 1000).to(DType::Int64).to(d);
    const Tensor index = test::random_indices({200, 400}, 0, 700, 4, DType::Int32, d);
    const HostTensor hb(big), hi(index);
    HostTensor ref({200, 400}, 0.0);
    for (int64_t i = 0; i < 200; ++i)
      for (int64_t j = 0; j < 400; ++j) ref({i, j}) = hb({i, static_cast<int64_t>(hi({i, j}))});
    const Tensor out = gather(big, 1, index);
    CHECK(out.dtype() == DType::Int64);
    check_close(out, ref.tensor(), 0, 0, "gather large");
    CHECK(gather(big, 0, empty({0, 700}, on(d, DType::Int64))).shape() == Shape{0, 700});
  }
}

TEST_CASE("shape ops: index_select and gather reject bad indices with a clear message") {
  const Tensor x = zeros({3, 4});
  const Tensor good = from_vector<int64_t>({0, 2});
  // Out-of-range indices are named on every device (the CUDA kernels would read out of bounds: the front
  // end checks a GPU index's range before they run), in the forward and in the backward pass.
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor xd = x.to(d);
    CHECK_THROWS_WITH_AS(index_select(xd, 0, from_vector<int64_t>({0, 3}).to(d)),
                         doctest::Contains("[index_select] index 3 is out of range for dimension 0 of size 3"), Error);
    CHECK_THROWS_WITH_AS(index_select(xd, 1, from_vector<int32_t>({-1}).to(d)),
                         doctest::Contains("[index_select] index -1 is out of range for dimension 1 of size 4"), Error);
    CHECK_THROWS_WITH_AS(gather(xd, 1, from_vector<int64_t>({0, 4, 1}, {1, 3}).to(d)),
                         doctest::Contains("[gather] index 4 is out of range for dimension 1 of size 4"), Error);
    CHECK_THROWS_WITH_AS(gather(xd, 0, from_vector<int32_t>({-3}, {1, 1}).to(d)),
                         doctest::Contains("[gather] index -3 is out of range for dimension 0 of size 3"), Error);
    // A gradient through an index later made invalid is refused too.
    Tensor w = zeros({3}).to(d).set_requires_grad(true);
    Tensor idx = from_vector<int64_t>({1, 2}).to(d);
    Tensor y = index_select(w, 0, idx);
    idx.fill_(7);
    CHECK_THROWS_WITH_AS(sum(y).backward(), doctest::Contains("[index_add] index 7 is out of range"), Error);
    Tensor v = zeros({2, 3}).to(d).set_requires_grad(true);
    Tensor pick = from_vector<int64_t>({2, 0}, {2, 1}).to(d);
    Tensor picked = gather(v, 1, pick);
    pick.fill_(-2);
    CHECK_THROWS_WITH_AS(sum(picked).backward(), doctest::Contains("[scatter_add] index -2 is out of range"), Error);
  }
  CHECK_THROWS_WITH_AS(index_select(x, 0, from_vector<float>({0})),
                       doctest::Contains("[index_select] index must be int64 or int32, got float32"), Error);
  CHECK_THROWS_WITH_AS(index_select(x, 0, good.view({1, 2})), doctest::Contains("[index_select] index must be 1-D"),
                       Error);
  CHECK_THROWS_WITH_AS(index_select(x, 2, good), doctest::Contains("[index_select] dim 2 is out of range"), Error);
  CHECK_THROWS_WITH_AS(index_select(scalar_tensor(1), 0, good), doctest::Contains("[index_select] expects a tensor"),
                       Error);
  CHECK_THROWS_WITH_AS(index_select(x, 0, Tensor()), doctest::Contains("[index_select] undefined index"), Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, good), doctest::Contains("[gather] index must have the input's 2 dimensions"),
                       Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, zeros({4, 1}, DType::Int64)), doctest::Contains("[gather] index shape [4, 1] exceeds"),
                       Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, zeros({1, 1}, DType::UInt8)), doctest::Contains("[gather] index must be int64 or int32"),
                       Error);
  if (cuda_available()) {
    CHECK_THROWS_WITH_AS(index_select(x, 0, good.to(Device::cuda())), doctest::Contains("[index_select] index is on cuda:0"),
                         Error);
    CHECK_THROWS_WITH_AS(gather(x, 0, good.view({1, 2}).to(Device::cuda())), doctest::Contains("[gather] index is on cuda:0"),
                         Error);
  }
}

TEST_CASE("shape ops: nonzero_flat and masked_select keep row-major order") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    // Large enough for the chunked two-pass path; about a third of the elements are true.
    const Tensor scores = test::random({301, 457}, 1).to(d);
    const Tensor mask = lt(scores, -0.3);
    const std::vector<double> s = test::values(scores);
    std::vector<double> expected_idx, expected_val;
    for (size_t i = 0; i < s.size(); ++i)
      if (s[i] < -0.3) {
        expected_idx.push_back(static_cast<double>(i));
        expected_val.push_back(s[i]);
      }
    const Tensor nz = nonzero_flat(mask);
    CHECK(nz.dtype() == DType::Int64);
    check_close(nz, expected_idx, 0, 0, "nonzero_flat");
    check_close(masked_select(scores, mask), expected_val, 0, 0, "masked_select");
    // Strided mask, all-false and empty masks.
    check_close(nonzero_flat(test::spread(from_vector<bool>({false, true, true, false, true}, {5}, d))), {1, 2, 4}, 0, 0,
                "strided mask");
    CHECK(nonzero_flat(zeros({7, 3}, on(d, DType::Bool))).numel() == 0);
    CHECK(nonzero_flat(empty({0}, on(d, DType::Bool))).shape() == Shape{0});
    // The mask broadcasts against x: a row mask picks whole columns, row by row.
    const Tensor x = arange(0.0, 6.0, 1.0, on(d)).reshape({2, 3});
    check_close(masked_select(x, from_vector<bool>({true, false, true}, {3}, d)), {0, 2, 3, 5}, 0, 0, "broadcast mask");
    check_close(masked_select(from_vector<double>({5}, {1}, d), from_vector<bool>({true, false, true}, {3}, d)), {5, 5}, 0,
                0, "broadcast input");
    // Gradients flow to the selected elements.
    auto f = [d](const std::vector<Tensor>& in) {
      return masked_select(in[0], from_vector<bool>({true, false, true, true, false, false}, {2, 3}, d));
    };
    test::gradcheck(f, {test::random({2, 3}, 2)}, d);
  }
  CHECK_THROWS_WITH_AS(nonzero_flat(zeros({3})), doctest::Contains("[nonzero_flat] mask must be bool, got float32"), Error);
  CHECK_THROWS_WITH_AS(masked_select(zeros({3}), zeros({3})), doctest::Contains("[masked_select] mask must be bool"),
                       Error);
  CHECK_THROWS_WITH_AS(masked_select(zeros({3}), zeros({2}, DType::Bool)),
                       doctest::Contains("[masked_select] shapes [3] and [2] do not broadcast"), Error);
}
