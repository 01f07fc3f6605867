#pragma once
// bfloat16: the upper 16 bits of an IEEE float32 (8 exponent bits, 7 mantissa bits). The storage
// type of mixed-precision training: float32's range, so no loss scaling is needed, and half its bytes.
// Arithmetic happens in float32; this type only stores and converts.
//
// Host and device code share it (the same bits as CUDA's __nv_bfloat16), so a bfloat16 tensor's
// memory means the same thing to the CPU and CUDA kernels.
#include <bit>
#include <cstdint>
#include <type_traits>

#include "isrn/core/host_device.hpp"

namespace isrn {

struct bfloat16 {
  uint16_t bits = 0;

  bfloat16() = default;
  // float32 → bfloat16 rounds to nearest, ties to even (what CUDA's __float2bfloat16 and PyTorch do);
  // NaN stays a (quiet) NaN instead of rounding into infinity.
  ISRN_HOST_DEVICE explicit bfloat16(float value) : bits(round_from_float(value)) {}
  // Other arithmetic types go through float32: double → float → bfloat16 can round twice, which
  // differs from a direct rounding only in the last bit of values within 2^-24 of a tie.
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, float>>>
  ISRN_HOST_DEVICE explicit bfloat16(T value) : bfloat16(static_cast<float>(value)) {}

  ISRN_HOST_DEVICE static bfloat16 from_bits(uint16_t b) {
    bfloat16 v;
    v.bits = b;
    return v;
  }

  ISRN_HOST_DEVICE operator float() const { return bit_copy<float>(static_cast<uint32_t>(bits) << 16); }
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, float>>>
  ISRN_HOST_DEVICE explicit operator T() const {
    return static_cast<T>(static_cast<float>(*this));
  }

 private:
  // float <-> its IEEE bits, in either direction (std::bit_cast on the host, the intrinsics on the device).
  template <typename To, typename From>
  ISRN_HOST_DEVICE static To bit_copy(From value) {
#ifdef __CUDA_ARCH__
    if constexpr (std::is_same_v<To, float>)
      return __uint_as_float(value);
    else
      return __float_as_uint(value);
#else
    return std::bit_cast<To>(value);
#endif
  }
  ISRN_HOST_DEVICE static uint16_t round_from_float(float f) {
    const uint32_t u = bit_copy<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN, kept quiet
    // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry into the exponent is the
    // correct result (it can reach infinity, as IEEE rounding does).
    const uint32_t lsb = (u >> 16) & 1u;
    return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
  }
};

static_assert(sizeof(bfloat16) == 2, "bfloat16 must be two bytes: tensors store it densely");

}  // namespace isrn
