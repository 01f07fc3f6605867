#pragma once
// Rounded<T>: a float or double whose device arithmetic rounds after every operation, as written
// (__fadd_rn and friends), so nvcc cannot contract a product and a sum into one fused multiply-add.
// Shared scalar math (isrn/kernels/*.hpp) instantiated with it gives the CPU's bits.
#include <cuda_runtime.h>

#include <type_traits>

namespace isrn::cuda {

// A float or double whose arithmetic is rounded as written (no contraction into FMAs).
template <typename T>
struct Rounded {
  T v;
  Rounded() = default;
  __host__ __device__ constexpr Rounded(T x) : v(x) {}
#ifdef __CUDA_ARCH__
  __device__ friend Rounded operator+(Rounded a, Rounded b) {
    if constexpr (std::is_same_v<T, float>) return __fadd_rn(a.v, b.v); else return __dadd_rn(a.v, b.v);
  }
  __device__ friend Rounded operator-(Rounded a, Rounded b) {
    if constexpr (std::is_same_v<T, float>) return __fsub_rn(a.v, b.v); else return __dsub_rn(a.v, b.v);
  }
  __device__ friend Rounded operator*(Rounded a, Rounded b) {
    if constexpr (std::is_same_v<T, float>) return __fmul_rn(a.v, b.v); else return __dmul_rn(a.v, b.v);
  }
  __device__ friend Rounded operator/(Rounded a, Rounded b) {
    if constexpr (std::is_same_v<T, float>) return __fdiv_rn(a.v, b.v); else return __ddiv_rn(a.v, b.v);
  }
#else
  friend Rounded operator+(Rounded a, Rounded b) { return a.v + b.v; }
  friend Rounded operator-(Rounded a, Rounded b) { return a.v - b.v; }
  friend Rounded operator*(Rounded a, Rounded b) { return a.v * b.v; }
  friend Rounded operator/(Rounded a, Rounded b) { return a.v / b.v; }
#endif
  __host__ __device__ friend bool operator>(Rounded a, Rounded b) { return a.v > b.v; }
  __host__ __device__ friend bool operator<(Rounded a, Rounded b) { return a.v < b.v; }
};

}  // namespace isrn::cuda
