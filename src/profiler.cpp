#include "isrn/core/profiler.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace isrn::profiler {

namespace detail {
std::atomic<bool> g_enabled{false};
}

namespace {

std::atomic<bool> g_shapes{false};

using Clock = std::chrono::steady_clock;

struct Totals {
  int64_t calls = 0;
  int64_t self_ns = 0, total_ns = 0;
};

struct State {
  std::mutex mutex;
  std::atomic<std::thread::id> owner{};
  std::unordered_map<std::string, Totals> rows;
  int64_t top_level_ns = 0;  // time inside outermost scopes
  int64_t wall_ns = 0;       // closed enabled intervals
  Clock::time_point since;   // start of the open interval while enabled
};

State& state() {
  static State s;
  return s;
}

struct Frame {
  std::string name;
  Clock::time_point start;
  int64_t child_ns = 0;
};

thread_local std::vector<Frame> t_frames;

int64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

}  // namespace

void enable() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.owner.store(std::this_thread::get_id(), std::memory_order_relaxed);
  if (!detail::g_enabled.load(std::memory_order_relaxed)) s.since = Clock::now();
  detail::g_enabled.store(true, std::memory_order_relaxed);
}

void disable() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (detail::g_enabled.load(std::memory_order_relaxed)) s.wall_ns += ns_between(s.since, Clock::now());
  detail::g_enabled.store(false, std::memory_order_relaxed);
}

void reset() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.rows.clear();
  s.top_level_ns = 0;
  s.wall_ns = 0;
  s.since = Clock::now();
}

void record_shapes(bool on) { g_shapes.store(on, std::memory_order_relaxed); }
bool recording_shapes() { return g_shapes.load(std::memory_order_relaxed); }

void Scope::begin(std::string name) {
  // Only the thread that enabled the profiler is recorded: loader threads run beside the step.
  if (std::this_thread::get_id() != state().owner.load(std::memory_order_relaxed)) return;
  t_frames.push_back({std::move(name), Clock::now(), 0});
  active_ = true;
}

void Scope::end() {
  const Clock::time_point now = Clock::now();
  Frame frame = std::move(t_frames.back());
  t_frames.pop_back();
  const int64_t elapsed = ns_between(frame.start, now);
  if (!t_frames.empty()) t_frames.back().child_ns += elapsed;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  Totals& t = s.rows[frame.name];
  ++t.calls;
  t.total_ns += elapsed;
  t.self_ns += elapsed - frame.child_ns;
  if (t_frames.empty()) s.top_level_ns += elapsed;
}

Report report() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  int64_t wall = s.wall_ns;
  if (detail::g_enabled.load(std::memory_order_relaxed)) wall += ns_between(s.since, Clock::now());
  Report r;
  r.wall_ms = static_cast<double>(wall) * 1e-6;
  for (const auto& [name, t] : s.rows)
    r.rows.push_back({name, t.calls, static_cast<double>(t.self_ns) * 1e-6, static_cast<double>(t.total_ns) * 1e-6});
  const double outside = static_cast<double>(std::max<int64_t>(0, wall - s.top_level_ns)) * 1e-6;
  r.rows.push_back({"(outside any scope)", 0, outside, outside});
  std::sort(r.rows.begin(), r.rows.end(), [](const Row& a, const Row& b) {
    return a.self_ms != b.self_ms ? a.self_ms > b.self_ms : a.name < b.name;
  });
  return r;
}

std::string format(const Report& report, size_t top, int64_t steps) {
  const double per = 1.0 / static_cast<double>(std::max<int64_t>(1, steps));
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-40s %10s %12s %7s %12s\n", "op (self time)", "calls", "self ms", "%", "total ms");
  out += line;
  double shown = 0;
  for (size_t i = 0; i < std::min(top, report.rows.size()); ++i) {
    const Row& r = report.rows[i];
    const double pct = report.wall_ms > 0 ? 100.0 * r.self_ms / report.wall_ms : 0.0;
    shown += r.self_ms;
    if (r.calls == 0)  // the "(outside any scope)" row: time, no calls
      std::snprintf(line, sizeof line, "%-40s %10s %12.3f %6.1f%%\n", r.name.c_str(), "", r.self_ms * per, pct);
    else
      std::snprintf(line, sizeof line, "%-40s %10.1f %12.3f %6.1f%% %12.3f\n", r.name.c_str(),
                    static_cast<double>(r.calls) * per, r.self_ms * per, pct, r.total_ms * per);
    out += line;
  }
  const double rest = report.wall_ms - shown;
  std::snprintf(line, sizeof line, "%-40s %10s %12.3f %6.1f%%\n", "(other rows)", "", rest * per,
                report.wall_ms > 0 ? 100.0 * rest / report.wall_ms : 0.0);
  out += line;
  std::snprintf(line, sizeof line, "%-40s %10s %12.3f %6.1f%%\n", "wall time per step", "", report.wall_ms * per, 100.0);
  out += line;
  return out;
}

}  // namespace isrn::profiler
