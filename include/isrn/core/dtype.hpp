#pragma once
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

#include "isrn/core/bfloat16.hpp"
#include "isrn/core/error.hpp"

namespace isrn {

// BFloat16 is a storage and tensor-core input format: conv2d, matmul and copies take it (mixed precision,
// isrn/autograd/autocast.hpp); the other ops compute in float32 or float64 and refuse it by name.
enum class DType : uint8_t { Float32, Float64, Int32, Int64, UInt8, Bool, BFloat16 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int32: return 4;
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
    case DType::Bool: return 1;
    case DType::BFloat16: return 2;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::Bool: return "bool";
    case DType::BFloat16: return "bfloat16";
  }
  return "?";
}

constexpr bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64 || t == DType::BFloat16; }

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::Int32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::UInt8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::BFloat16; };
template <typename T> inline constexpr DType dtype_v = dtype_of<T>::value;

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// Turns a runtime dtype into a compile-time type: fn receives a value of the C++ type (a tag).
// `op` names the caller in the error raised for a dtype the caller does not handle.
template <typename Fn>
decltype(auto) dispatch_floating(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::Float32: return fn(float{});
    case DType::Float64: return fn(double{});
    default: break;
  }
  detail::throw_error(__FILE__, __LINE__,
                      detail::concat("[", op, "] expects float32 or float64, got ", dtype_name(t)));
}

template <typename Fn>
decltype(auto) dispatch_all(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::Float32: return fn(float{});
    case DType::Float64: return fn(double{});
    case DType::Int32: return fn(int32_t{});
    case DType::Int64: return fn(int64_t{});
    case DType::UInt8: return fn(uint8_t{});
    case DType::Bool: return fn(bool{});
    default: break;
  }
  detail::throw_error(__FILE__, __LINE__, detail::concat("[", op, "] does not support ", dtype_name(t)));
}

// Every dtype a tensor can hold, bfloat16 included: for the ops that only move or convert values
// (copy, fill).
template <typename Fn>
decltype(auto) dispatch_storage(DType t, const char* op, Fn&& fn) {
  if (t == DType::BFloat16) return fn(bfloat16{});
  return dispatch_all(t, op, std::forward<Fn>(fn));
}

// Numeric types (everything but bool): arithmetic is defined on them.
template <typename Fn>
decltype(auto) dispatch_numeric(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::Float32: return fn(float{});
    case DType::Float64: return fn(double{});
    case DType::Int32: return fn(int32_t{});
    case DType::Int64: return fn(int64_t{});
    case DType::UInt8: return fn(uint8_t{});
    default: break;
  }
  detail::throw_error(__FILE__, __LINE__,
                      detail::concat("[", op, "] expects a numeric dtype, got ", dtype_name(t)));
}

}  // namespace isrn
