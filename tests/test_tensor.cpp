#include "test_util.hpp"

using namespace isrn;
using test::check_close;

TEST_CASE("tensor: factories, metadata and element access") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor z = zeros({2, 3}, TensorOptions(DType::Float32).device(d));
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.strides() == Shape{3, 1});
    CHECK(z.numel() == 6);
    CHECK(z.device() == d);
    CHECK(z.is_contiguous());
    check_close(z, std::vector<double>(6, 0.0), 0, 0, "zeros");
    check_close(ones({4}, TensorOptions(DType::Int32).device(d)), {1, 1, 1, 1}, 0, 0, "ones int32");
    check_close(full({2}, 2.5, TensorOptions(DType::Float64).device(d)), {2.5, 2.5}, 0, 0, "full");
    check_close(arange(5, TensorOptions(DType::Int64).device(d)), {0, 1, 2, 3, 4}, 0, 0, "arange");
    check_close(arange(1.0, 2.0, 0.25, TensorOptions(DType::Float32).device(d)), {1, 1.25, 1.5, 1.75}, 0, 0, "arange step");
    Tensor v = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}, d);
    CHECK(v.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
    CHECK(v.select(0, 1).select(0, 2).item<float>() == 6.0f);
    CHECK(scalar_tensor(7, TensorOptions(DType::Int64).device(d)).item<int64_t>() == 7);
    Tensor b = from_vector<bool>({true, false}, {2}, d);
    CHECK(b.dtype() == DType::Bool);
    CHECK(b.to_vector<bool>() == std::vector<bool>{true, false});
    Tensor e = empty({0, 3}, TensorOptions().device(d));
    CHECK(e.numel() == 0);
    CHECK(e.to_vector<float>().empty());
  }
}

TEST_CASE("tensor: seeded random factories are reproducible and in range") {
  Generator g1(42), g2(42);
  Tensor a = rand({1000}, {}, &g1, -2.0, 3.0), b = rand({1000}, {}, &g2, -2.0, 3.0);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  for (float x : a.to_vector<float>()) CHECK((x >= -2.0f && x < 3.0f));
  Tensor n = randn({20000}, TensorOptions(DType::Float64), &g1);
  const double m = mean(n).item<double>();
  const double var = mean(mul(sub(n, m), sub(n, m))).item<double>();
  CHECK(std::abs(m) < 0.03);          // 4.2 standard errors of the mean (1/sqrt(20000) = 0.007)
  CHECK(std::abs(var - 1.0) < 0.05);  // 5 standard errors of the variance (sqrt(2/20000) = 0.01)
}

TEST_CASE("tensor: views share storage and follow strides") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor x = arange(24, TensorOptions(DType::Float32).device(d)).reshape({2, 3, 4});
    Tensor t = x.transpose(0, 2);
    CHECK(t.shape() == Shape{4, 3, 2});
    CHECK(!t.is_contiguous());
    CHECK(t.storage() == x.storage());
    CHECK(t.contiguous().is_contiguous());
    check_close(t.select(0, 1).select(0, 2), {9, 21}, 0, 0, "transpose select");
    check_close(x.permute({2, 0, 1}).contiguous().reshape({-1}).narrow(0, 0, 4), {0, 4, 8, 12}, 0, 0, "permute");
    check_close(x.narrow(2, 1, 2).select(0, 0).select(0, 0), {1, 2}, 0, 0, "narrow");
    check_close(x.slice(2, 0, 4, 2).select(0, 1).select(0, 2), {20, 22}, 0, 0, "strided slice");
    check_close(x.slice(1, -2, 3).select(2, 0).select(0, 0), {4, 8}, 0, 0, "negative start");
    Tensor col = from_vector<float>({1, 2, 3}, {3, 1}, d);
    Tensor ex = col.expand({3, 4});
    CHECK(ex.strides() == Shape{1, 0});
    check_close(ex.contiguous().select(0, 2), {3, 3, 3, 3}, 0, 0, "expand");
    CHECK(x.unsqueeze(0).shape() == Shape{1, 2, 3, 4});
    CHECK(x.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
    CHECK(x.unsqueeze(0).squeeze(0).shape() == Shape{2, 3, 4});
    CHECK(x.flatten(1).shape() == Shape{2, 12});
    CHECK(x.view({6, -1}).shape() == Shape{6, 4});
    // A transposed tensor cannot be viewed flat, but it can be reshaped (which copies).
    CHECK_THROWS_AS(t.view({24}), Error);
    check_close(t.reshape({24}).narrow(0, 0, 3), {0, 12, 4}, 0, 0, "reshape copies");
    // Writes through a view land in the base.
    Tensor y = zeros({2, 2}, TensorOptions().device(d));
    y.select(1, 1).fill_(5);
    check_close(y, {0, 5, 0, 5}, 0, 0, "fill through view");
    y.select(0, 0).copy_(from_vector<float>({7, 8}, {2}, d));
    check_close(y, {7, 8, 0, 5}, 0, 0, "copy_ through view");
  }
}

TEST_CASE("tensor: dtype conversion and printing") {
  Tensor x = from_vector<double>({1.7, -2.2, 3.0});
  CHECK(x.to(DType::Int32).to_vector<int32_t>() == std::vector<int32_t>{1, -2, 3});
  CHECK(x.to(DType::Float32).dtype() == DType::Float32);
  CHECK(gt(x, 0.0).to(DType::Float32).to_vector<float>() == std::vector<float>{1, 0, 1});
  const std::string s = x.str();
  CHECK(s.find("shape=[3]") != std::string::npos);
  CHECK(s.find("float64") != std::string::npos);
  CHECK(s.find("-2.2") != std::string::npos);
  CHECK(arange(3000).str().find("...") != std::string::npos);
}

TEST_CASE("tensor: bad input raises isrn::Error naming the problem") {
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  Tensor x = zeros({2, 3});
  CHECK(message([&] { x.reshape({4, 2}); }).find("[reshape]") != std::string::npos);
  CHECK(message([&] { x.select(0, 5); }).find("out of range") != std::string::npos);
  CHECK(message([&] { x.size(3); }).find("dim 3") != std::string::npos);
  CHECK(message([&] { x.permute({0, 0}); }).find("twice") != std::string::npos);
  CHECK(message([&] { x.expand({4, 3}); }).find("[expand]") != std::string::npos);
  CHECK(message([&] { add(x, zeros({4})); }).find("do not broadcast") != std::string::npos);
  CHECK(message([&] { add(x, zeros({2, 3}, DType::Float64)); }).find("different dtypes") != std::string::npos);
  CHECK(message([&] { zeros({1, 1, 1, 1, 1, 1, 1}); }).find("at most 6") != std::string::npos);
  CHECK(message([&] { x.data_ptr<double>(); }).find("float32") != std::string::npos);
  CHECK(message([&] { Tensor().shape(); }).find("undefined") != std::string::npos);
  CHECK(message([&] { Device::parse("gpu"); }).find("gpu") != std::string::npos);
  CHECK(message([&] { x.item<float>(); }).find("one element") != std::string::npos);
  CHECK(message([&] { zeros({2}, DType::Int64).set_requires_grad(true); }).find("floating") != std::string::npos);
  if (!cuda_built()) {
    CHECK(message([&] { zeros({2}, TensorOptions().device(Device::cuda())); }).find("no CUDA backend") !=
          std::string::npos);
  }
}

TEST_CASE("tensor: host memory statistics count the bytes CPU tensors hold, now and at the peak") {
  const HostMemoryStats before = host_memory_stats();
  reset_host_peak_memory();
  CHECK(host_memory_stats().peak_active_bytes == before.active_bytes);
  {
    const Tensor a = empty({1024, 256}, TensorOptions(DType::Float32));  // 1 MiB
    const Tensor view = a.slice(0, 0, 10);                               // shares a's storage: no bytes
    const HostMemoryStats held = host_memory_stats();
    CHECK(held.active_bytes == before.active_bytes + 1024 * 256 * 4);
    CHECK(held.peak_active_bytes == held.active_bytes);
    const Tensor b = empty({1024}, TensorOptions(DType::Float64));
    CHECK(host_memory_stats().active_bytes == before.active_bytes + 1024 * 256 * 4 + 1024 * 8);
  }
  const HostMemoryStats after = host_memory_stats();
  CHECK(after.active_bytes == before.active_bytes);
  CHECK(after.peak_active_bytes == before.active_bytes + 1024 * 256 * 4 + 1024 * 8);
}
