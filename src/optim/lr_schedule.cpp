#include "isrn/optim/lr_schedule.hpp"

#include <algorithm>
#include <cmath>

#include "isrn/core/error.hpp"

namespace isrn::optim {

WarmupMultiStep::WarmupMultiStep(double base_lr, std::vector<int64_t> milestones, double gamma,
                                 double warmup_factor, int64_t warmup_iters)
    : base_lr_(base_lr),
      milestones_(std::move(milestones)),
      gamma_(gamma),
      warmup_factor_(warmup_factor),
      warmup_iters_(warmup_iters) {
  ISRN_CHECK(std::isfinite(base_lr) && base_lr >= 0.0, "[WarmupMultiStep] base_lr must be finite and non-negative, got ",
             base_lr);
  ISRN_CHECK(std::isfinite(gamma) && gamma >= 0.0, "[WarmupMultiStep] gamma must be finite and non-negative, got ",
             gamma);
  ISRN_CHECK(warmup_factor >= 0.0 && warmup_factor <= 1.0, "[WarmupMultiStep] warmup_factor must be in [0, 1], got ",
             warmup_factor);
  ISRN_CHECK(warmup_iters >= 0, "[WarmupMultiStep] warmup_iters must not be negative, got ", warmup_iters);
  for (size_t i = 1; i < milestones_.size(); ++i)
    ISRN_CHECK(milestones_[i - 1] < milestones_[i], "[WarmupMultiStep] milestones must be strictly increasing, got ",
               milestones_[i - 1], " before ", milestones_[i]);
}

double WarmupMultiStep::factor_at(int64_t iter) const {
  ISRN_CHECK(iter >= 0, "[WarmupMultiStep] iteration must not be negative, got ", iter);
  double warmup = 1.0;
  if (iter < warmup_iters_) {
    const double alpha = static_cast<double>(iter) / static_cast<double>(warmup_iters_);
    warmup = warmup_factor_ * (1.0 - alpha) + alpha;
  }
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), iter) - milestones_.begin();
  return warmup * std::pow(gamma_, static_cast<double>(passed));
}

}  // namespace isrn::optim
