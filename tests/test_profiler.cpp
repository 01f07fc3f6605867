// The per-op profiler (isrn/core/profiler.hpp): what it records, how scopes nest, and what it leaves alone.
#include <algorithm>
#include <thread>

#include "test_util.hpp"

using namespace isrn;

namespace {

const profiler::Row* find_row(const profiler::Report& r, const std::string& name) {
  for (const profiler::Row& row : r.rows)
    if (row.name == name) return &row;
  return nullptr;
}

double self_sum(const profiler::Report& r) {
  double s = 0;
  for (const profiler::Row& row : r.rows) s += row.self_ms;
  return s;
}

}  // namespace

TEST_CASE("profiler: off by default, and nothing is recorded while off") {
  REQUIRE_FALSE(profiler::enabled());
  profiler::reset();
  const Tensor a = test::random({64, 64}, 1);
  (void)add(a, a);
  {
    profiler::Scope scope("never");
  }
  const profiler::Report r = profiler::report();
  REQUIRE(r.rows.size() == 1);  // only the "(outside any scope)" row, empty
  CHECK(r.rows[0].name == "(outside any scope)");
  CHECK(r.rows[0].self_ms == 0.0);
  CHECK(r.wall_ms == 0.0);
}

TEST_CASE("profiler: kernel rows carry the elementwise op; scopes nest with self = total - nested") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    const Tensor a = test::random({32, 48}, 2).to(d), b = test::random({32, 48}, 3).to(d);
    profiler::Report r;
    {
      profiler::Session session;
      profiler::Scope outer("outer");
      (void)add(a, b);
      (void)mul(a, b);
      (void)mul(a, 2.0);
      (void)relu(a);
      {
        profiler::Scope inner("inner");
        (void)sub(a, b);
      }
    }
    r = profiler::report();
    for (const char* name : {"binary.add", "binary.mul", "binary_scalar.mul", "unary.relu", "binary.sub", "inner"}) {
      CAPTURE(name);
      const profiler::Row* row = find_row(r, name);
      REQUIRE(row != nullptr);
      CHECK(row->calls == 1);
      CHECK(row->total_ms >= 0.0);
    }
    const profiler::Row* outer = find_row(r, "outer");
    const profiler::Row* inner = find_row(r, "inner");
    const profiler::Row* sub_row = find_row(r, "binary.sub");
    REQUIRE(outer != nullptr);
    // The nested rows' totals, subtracted from the enclosing scope's, give its self time. Each figure is a
    // sum of whole nanoseconds scaled to ms, so they agree to rounding (1e-9 ms).
    double nested = inner->total_ms;
    for (const char* name : {"binary.add", "binary.mul", "binary_scalar.mul", "unary.relu"}) nested += find_row(r, name)->total_ms;
    CHECK(std::abs(outer->self_ms - (outer->total_ms - nested)) < 1e-9);
    CHECK(std::abs(inner->self_ms - (inner->total_ms - sub_row->total_ms)) < 1e-9);
    CHECK(outer->self_ms >= 0.0);
    // Self times, the "(outside any scope)" row included, add up to the profiled wall time.
    CHECK(std::abs(self_sum(r) - r.wall_ms) < 1e-6);
    CHECK(outer->total_ms <= r.wall_ms);
    // Sorted by self time, largest first.
    for (size_t i = 1; i < r.rows.size(); ++i) CHECK(r.rows[i - 1].self_ms >= r.rows[i].self_ms);
  }
}

TEST_CASE("profiler: backward nodes are rows of their own, named <op>.backward") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor x = test::random({5, 7}, 4).to(d).set_requires_grad(true);
    const Tensor y = sum(mul(x, x));
    {
      profiler::Session session;
      y.backward();
    }
    const profiler::Report r = profiler::report();
    for (const char* name : {"mul.backward", "sum.backward", "AccumulateGrad.backward"}) {
      CAPTURE(name);
      const profiler::Row* row = find_row(r, name);
      REQUIRE(row != nullptr);
      CHECK(row->calls == 1);
    }
    // mul's backward runs kernels of its own: they are nested rows, not part of its self time.
    const profiler::Row* mul_backward = find_row(r, "mul.backward");
    CHECK(mul_backward->self_ms <= mul_backward->total_ms);
    CHECK(find_row(r, "binary.mul") != nullptr);
    // Recording stopped with the session: later work adds nothing, and the wall clock stands still.
    const Tensor z = add(x.detach(), x.detach());
    const profiler::Report after = profiler::report();
    CHECK(after.rows.size() == r.rows.size());
    const profiler::Row* add_before = find_row(r, "binary.add");
    const profiler::Row* add_after = find_row(after, "binary.add");
    CHECK((add_before ? add_before->calls : 0) == (add_after ? add_after->calls : 0));
    CHECK(after.wall_ms == r.wall_ms);
  }
}

TEST_CASE("profiler: rows split by operand shapes on request; other threads are not recorded") {
  const Tensor a = test::random({2, 3}, 5), b = test::random({2, 3}, 6);
  profiler::record_shapes(true);
  {
    profiler::Session session;
    (void)add(a, b);
    // A loader-like thread beside the step: its kernels must not show up in the step's profile.
    std::thread other([&] {
      for (int i = 0; i < 3; ++i) (void)mul(a, b);
    });
    other.join();
  }
  profiler::record_shapes(false);
  const profiler::Report r = profiler::report();
  CHECK(find_row(r, "binary.add [2, 3] [2, 3]") != nullptr);
  CHECK(find_row(r, "binary.add") == nullptr);
  for (const profiler::Row& row : r.rows) CHECK(row.name.find("binary.mul") == std::string::npos);
}

TEST_CASE("profiler: the formatted table shows the top rows per step and the wall time") {
  const Tensor a = test::random({16, 16}, 7);
  {
    profiler::Session session;
    for (int i = 0; i < 4; ++i) {
      (void)add(a, a);
      (void)exp(a);
    }
  }
  const profiler::Report r = profiler::report();
  const std::string text = profiler::format(r, 1, 4);
  CHECK(text.find("op (self time)") != std::string::npos);
  CHECK(text.find("wall time per step") != std::string::npos);
  CHECK(text.find(r.rows[0].name) != std::string::npos);
  CHECK(text.find(r.rows[1].name) == std::string::npos);  // only the top row is listed
  // 4 calls over 4 steps: one per step.
  const profiler::Row* add_row = find_row(r, "binary.add");
  REQUIRE(add_row != nullptr);
  CHECK(add_row->calls == 4);
  const std::string all = profiler::format(r, 100, 4);
  CHECK(all.find("binary.add") != std::string::npos);
  CHECK(all.find("1.0") != std::string::npos);
}
