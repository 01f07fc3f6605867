#pragma once
// An opt-in per-op time profile: where a training step's time goes.
//
// While enabled, every device kernel call (ISRN_DISPATCH, named by kernel, elementwise ones with their op:
// "binary.mul", "conv2d_backward_weight"), every autograd backward node ("conv2d.backward", its own time
// outside the kernels it calls) and every profiler::Scope opened by the caller is timed on the thread that
// enabled the profiler. Scopes nest: a row's self time excludes the rows opened inside it, so self times add
// up to the profiled wall time, the rest being "(outside any scope)": op front ends, graph building,
// allocation outside kernels. CUDA kernels are synchronized at the end of their scope while profiling, so
// their rows are device time, not launch time (and the step runs slower than without the profiler).
//
// Off (the default) a scope costs one relaxed atomic load. Other threads (data loading) are never recorded.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace isrn::profiler {

namespace detail {
extern std::atomic<bool> g_enabled;
}

inline bool enabled() { return detail::g_enabled.load(std::memory_order_relaxed); }

// Starts (or continues) recording on the calling thread; the wall clock for percentages starts or resumes.
void enable();
// Stops recording; the collected rows stay until reset().
void disable();
// Drops every row and the wall time; recording state is unchanged.
void reset();
// With shapes on, kernel rows are split by the shapes of their first two tensor arguments
// ("conv2d_forward [2, 64, 64, 64] [64, 64, 3, 3]"): where a kernel's time goes by layer.
void record_shapes(bool on);
bool recording_shapes();

struct Row {
  std::string name;
  int64_t calls = 0;
  double self_ms = 0;   // time inside the scope minus the time of scopes nested in it
  double total_ms = 0;  // time inside the scope
};

struct Report {
  std::vector<Row> rows;  // by self time, largest first; includes "(outside any scope)"
  double wall_ms = 0;     // time spent enabled
};

Report report();
// A table of the `top` largest rows: name, calls per step, self ms per step, % of the profiled wall time,
// total ms per step; per step = divided by `steps`.
std::string format(const Report& report, size_t top = 15, int64_t steps = 1);

// Times one region under `name` while the profiler is on. The name is copied only when recording.
class Scope {
 public:
  explicit Scope(const char* name) {
    if (enabled()) begin(std::string(name));
  }
  explicit Scope(const std::string& name) {
    if (enabled()) begin(name);
  }
  ~Scope() {
    if (active_) end();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  void begin(std::string name);
  void end();
  bool active_ = false;
};

// reset() and enable() now, disable() at the end of the scope.
class Session {
 public:
  Session() {
    reset();
    enable();
  }
  ~Session() { disable(); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
};

}  // namespace isrn::profiler
