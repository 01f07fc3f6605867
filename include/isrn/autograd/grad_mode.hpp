#pragma once

namespace isrn {

// Whether ops record the autograd graph on this thread.
struct GradMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

// Sets graph recording on or off for its scope and restores the previous mode at its end.
template <bool Enabled>
class GradModeGuard {
 public:
  GradModeGuard() : previous_(GradMode::is_enabled()) { GradMode::set_enabled(Enabled); }
  ~GradModeGuard() { GradMode::set_enabled(previous_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

// No graph (optimizer steps, evaluation, gradient formulas).
using NoGradGuard = GradModeGuard<false>;
// A graph even inside a backward pass (activation checkpointing recomputes with one).
using EnableGradGuard = GradModeGuard<true>;

}  // namespace isrn
