// Batched matmul through cuBLAS (column-major): the row-major product C = op(A)·op(B) is computed as
// the column-major C^T = op(B)^T·op(A)^T, which reads the very same memory, so no operand is copied
// unless its strides fit neither layout cuBLAS accepts.
#include <cublas_v2.h>

#include <climits>
#include <mutex>
#include <vector>

#include "cuda/allocator.hpp"
#include "cuda/common.cuh"

namespace isrn::cuda {

namespace {

[[noreturn]] void throw_cublas_error(const char* call, cublasStatus_t status, const char* file, int line) {
  detail::throw_error(file, line,
                      detail::concat("[cublas] ", call, " failed: ", cublasGetStatusName(status), " (",
                                     cublasGetStatusString(status), ") at ", file, ":", line));
}

#define ISRN_CUBLAS_CHECK(call)                                                                   \
  do {                                                                                            \
    cublasStatus_t isrn_status_ = (call);                                                         \
    if (isrn_status_ != CUBLAS_STATUS_SUCCESS) throw_cublas_error(#call, isrn_status_, __FILE__, __LINE__); \
  } while (0)

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // NVIDIA's recommendation for Hopper

struct HandleSlot {
  cublasHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
};

// One handle per device, created on first use, its workspace taken from the caching allocator.
// Never destroyed: at exit the driver may already be gone.
cublasHandle_t handle_for(int device) {
  static std::mutex mutex;
  static auto* slots = new std::vector<HandleSlot>(static_cast<size_t>(cuda_runtime::device_count()));
  std::lock_guard<std::mutex> lock(mutex);
  HandleSlot& slot = slots->at(static_cast<size_t>(device));
  const cudaStream_t stream = current_stream();
  if (slot.handle == nullptr) {
    ISRN_CUBLAS_CHECK(cublasCreate(&slot.handle));
    // bfloat16 products are summed in float32 throughout (kernel_list.inc: "float32 accumulation, the result
    // rounded once"): no split-K partial sums rounded to bfloat16 on the way.
    ISRN_CUBLAS_CHECK(cublasSetMathMode(slot.handle, static_cast<cublasMath_t>(
                                                         CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    slot.workspace = cuda_runtime::allocate(kWorkspaceBytes, device);
    slot.stream = stream;
    ISRN_CUBLAS_CHECK(cublasSetStream(slot.handle, stream));
    ISRN_CUBLAS_CHECK(cublasSetWorkspace(slot.handle, slot.workspace, kWorkspaceBytes));
  } else if (slot.stream != stream) {
    slot.stream = stream;
    ISRN_CUBLAS_CHECK(cublasSetStream(slot.handle, stream));  // this also resets the workspace: set it again
    ISRN_CUBLAS_CHECK(cublasSetWorkspace(slot.handle, slot.workspace, kWorkspaceBytes));
  }
  return slot.handle;
}

// One operand as cuBLAS sees it: the column-major matrix (op(X))^T, where op(X) is t[b] or t[b]^T.
struct GemmOperand {
  Tensor storage;  // t itself, or a contiguous copy when its strides fit no cuBLAS layout
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t ld = 1;
  int64_t batch_stride = 0;
};

GemmOperand describe(const Tensor& t, bool transposed) {
  GemmOperand g;
  g.storage = t;
  const int64_t p = t.size(1), q = t.size(2);
  auto layout = [&](const Tensor& u, bool& row_major, bool& col_major) {
    const int64_t s1 = u.stride(1), s2 = u.stride(2);
    row_major = (s2 == 1 || q == 1) && (s1 >= std::max<int64_t>(1, q) || p == 1);
    col_major = (s1 == 1 || p == 1) && (s2 >= std::max<int64_t>(1, p) || q == 1);
  };
  bool row_major = false, col_major = false;
  layout(t, row_major, col_major);
  if (!row_major && !col_major) {  // e.g. an expanded or doubly strided view
    g.storage = t.contiguous();
    layout(g.storage, row_major, col_major);
  }
  const Tensor& u = g.storage;
  if (row_major) {  // memory is t^T in column-major order, leading dimension = the row stride
    g.ld = p == 1 ? std::max<int64_t>(1, q) : u.stride(1);
    g.op = transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  } else {  // memory is t in column-major order
    g.ld = q == 1 ? std::max<int64_t>(1, p) : u.stride(2);
    g.op = transposed ? CUBLAS_OP_N : CUBLAS_OP_T;
  }
  g.batch_stride = u.size(0) == 1 ? 0 : u.stride(0);
  return g;
}

}  // namespace

void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& out) {
  const int64_t batch = out.size(0), m = out.size(1), n = out.size(2);
  const int64_t k = trans_a ? a.size(1) : a.size(2);
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  if (k == 0) {  // an empty sum: cuBLAS would leave C alone
    fill(out, 0.0);
    return;
  }
  const GemmOperand ga = describe(a, trans_a), gb = describe(b, trans_b);
  for (int64_t v : {batch, m, n, k, ga.ld, gb.ld})
    ISRN_CHECK(v <= INT_MAX, "[matmul] a dimension of ", v, " exceeds cuBLAS's 32-bit limit (a ",
               shape_str(a.shape()), ", b ", shape_str(b.shape()), ")");
  cublasHandle_t handle = handle_for(out.device().index);
  const int cm = static_cast<int>(n), cn = static_cast<int>(m), ck = static_cast<int>(k);
  const int lda = static_cast<int>(gb.ld), ldb = static_cast<int>(ga.ld), ldc = static_cast<int>(n);
  const long long stride_c = m * n;
  if (out.dtype() == DType::Float32) {
    const float alpha = 1.0f, beta = 0.0f;
    const cublasComputeType_t compute = allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    ISRN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle, gb.op, ga.op, cm, cn, ck, &alpha, gb.storage.raw_data(), CUDA_R_32F, lda, gb.batch_stride,
        ga.storage.raw_data(), CUDA_R_32F, ldb, ga.batch_stride, &beta, out.raw_data(), CUDA_R_32F, ldc, stride_c,
        static_cast<int>(batch), compute, CUBLAS_GEMM_DEFAULT));
  } else if (out.dtype() == DType::BFloat16) {
    // Mixed precision: bfloat16 operands and result, float32 accumulation on the tensor cores.
    const float alpha = 1.0f, beta = 0.0f;
    ISRN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle, gb.op, ga.op, cm, cn, ck, &alpha, gb.storage.raw_data(), CUDA_R_16BF, lda, gb.batch_stride,
        ga.storage.raw_data(), CUDA_R_16BF, ldb, ga.batch_stride, &beta, out.raw_data(), CUDA_R_16BF, ldc, stride_c,
        static_cast<int>(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  } else if (out.dtype() == DType::Float64) {
    const double alpha = 1.0, beta = 0.0;
    ISRN_CUBLAS_CHECK(cublasDgemmStridedBatched(
        handle, gb.op, ga.op, cm, cn, ck, &alpha, gb.storage.data_ptr<double>(), lda, gb.batch_stride,
        ga.storage.data_ptr<double>(), ldb, ga.batch_stride, &beta, out.data_ptr<double>(), ldc, stride_c,
        static_cast<int>(batch)));
  } else {
    ISRN_CHECK(false, "[matmul] expects float32, bfloat16 or float64, got ", dtype_name(out.dtype()));
  }
}

}  // namespace isrn::cuda
