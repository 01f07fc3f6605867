#pragma once
// The sigmoid focal loss of one element and its derivative, shared by the CPU loop and the CUDA
// kernel so both backends compute the same formula.
//
// With p = σ(x), q = σ(−x) = 1 − p and a target t ∈ [0, 1]:
//   ce    = −(t·log p + (1−t)·log q)                 (log p = log_sigmoid(x): finite at any |x|)
//   m     = 1 − p_t = p·(1−t) + q·t                  (a sum of non-negatives: no cancellation)
//   α_t   = α·t + (1−α)·(1−t), or 1 when α < 0        (torchvision: a negative α disables balancing)
//   loss  = w·α_t·ce·m^γ
//   dloss/dx = w·α_t·[(p − t)·m^γ + γ·ce·m^(γ−1)·p·q·(1−2t)],   p − t = p·(1−t) − q·t
// Every quantity is computed from σ(x) and σ(−x) separately, so nothing overflows at logits of ±300
// and the saturated cases are exact (loss 0 or α_t·|x|).
#include "isrn/kernels/scalar_math.hpp"

namespace isrn::kernels {

template <typename T>
struct FocalTerms {
  T loss;
  T grad;  // d loss / d logit (0 unless requested)
};

// m^γ with the common integer exponents done by multiplication (exact, and cheaper than pow).
template <typename T>
ISRN_HOST_DEVICE T focal_power(T m, T gamma) {
  if (gamma == T(2)) return m * m;
  if (gamma == T(1)) return m;
  if (gamma == T(0)) return T(1);
  return pow_(m, gamma);
}

template <bool WithGrad, typename T>
ISRN_HOST_DEVICE FocalTerms<T> sigmoid_focal_terms(T x, T t, T w, T alpha, T gamma) {
  // One exp and one log1p serve σ(±x) and log σ(±x): with e = exp(−|x|) and L = log1p(e),
  // σ(|x|) = 1/(1+e), σ(−|x|) = e/(1+e), log σ(x) = min(x, 0) − L, log σ(−x) = min(−x, 0) − L.
  const T e = exp_(-abs_(x));
  const T lse = log1p_(e);
  const T big = T(1) / (T(1) + e), small = e * big;
  const T p = x >= T(0) ? big : small, q = x >= T(0) ? small : big;
  const T ce = -(t * (min_(x, T(0)) - lse) + (T(1) - t) * (min_(-x, T(0)) - lse));
  const T m = p * (T(1) - t) + q * t;
  const T alpha_t = alpha < T(0) ? T(1) : alpha * t + (T(1) - alpha) * (T(1) - t);
  const T scale = w * alpha_t;
  const T m_gamma = focal_power(m, gamma);
  FocalTerms<T> out{scale * ce * m_gamma, T(0)};
  if constexpr (WithGrad) {
    // γ·ce·m^(γ−1) → 0 as m → 0 for γ > 0 (ce vanishes with m); skipping it avoids 0·∞ for γ < 1.
    const T focusing = (gamma != T(0) && m > T(0)) ? gamma * ce * focal_power(m, gamma - T(1)) * p * q * (T(1) - T(2) * t)
                                                   : T(0);
    out.grad = scale * ((p * (T(1) - t) - q * t) * m_gamma + focusing);
  }
  return out;
}

}  // namespace isrn::kernels
