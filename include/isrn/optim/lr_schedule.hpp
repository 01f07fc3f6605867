#pragma once
// Learning-rate schedules, evaluated per iteration.
#include <cstdint>
#include <vector>

namespace isrn::optim {

// Linear warm-up, then step decay (Detectron's WarmupMultiStepLR):
//   lr(iter) = base_lr · warmup(iter) · gamma^(number of milestones ≤ iter)
//   warmup(iter) = warmup_factor + (1 - warmup_factor) · iter / warmup_iters  for iter < warmup_iters,
//                  1 afterwards.
// So lr(0) = warmup_factor · base_lr, the rate reaches base_lr at warmup_iters, and each milestone
// multiplies it by gamma from that iteration on.
class WarmupMultiStep {
 public:
  WarmupMultiStep(double base_lr, std::vector<int64_t> milestones, double gamma = 0.1,
                  double warmup_factor = 1.0 / 3.0, int64_t warmup_iters = 500);

  double lr_at(int64_t iter) const { return base_lr_ * factor_at(iter); }
  // The multiplier of base_lr at `iter` (to scale groups with different base rates alike).
  double factor_at(int64_t iter) const;

  double base_lr() const { return base_lr_; }
  const std::vector<int64_t>& milestones() const { return milestones_; }

 private:
  double base_lr_;
  std::vector<int64_t> milestones_;
  double gamma_;
  double warmup_factor_;
  int64_t warmup_iters_;
};

}  // namespace isrn::optim
