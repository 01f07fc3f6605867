#include "isrn/autograd/autocast.hpp"

namespace isrn {

namespace {
thread_local DType compute_dtype_value = DType::Float32;
}  // namespace

DType Autocast::compute_dtype() { return compute_dtype_value; }

void Autocast::set_compute_dtype(DType dtype) {
  ISRN_CHECK(dtype == DType::Float32 || dtype == DType::BFloat16,
             "[autocast] the compute dtype must be float32 (off) or bfloat16, got ", dtype_name(dtype));
  compute_dtype_value = dtype;
}

DType parse_precision(const std::string& name) {
  if (name == "fp32") return DType::Float32;
  ISRN_CHECK(name == "bf16", "[autocast] precision must be 'fp32' or 'bf16', got '", name, "'");
  return DType::BFloat16;
}

std::string precision_name(DType compute_dtype) {
  ISRN_CHECK(compute_dtype == DType::Float32 || compute_dtype == DType::BFloat16,
             "[autocast] no precision name for ", dtype_name(compute_dtype));
  return compute_dtype == DType::Float32 ? "fp32" : "bf16";
}

}  // namespace isrn
