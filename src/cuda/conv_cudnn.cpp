// cuDNN convolution path (legacy cudnnConvolution* API, present in cuDNN 9): descriptors per call,
// one handle per thread and device, algorithms chosen by measurement (cudnnFind*) once per shape
// and cached, workspaces from isrn's caching allocator. Built only when ISRN_WITH_CUDNN is 1.
#include "isrn/config.hpp"

#if ISRN_WITH_CUDNN

#include <cudnn.h>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "cuda/common.cuh"
#include "cuda/conv_cudnn.hpp"
#include "isrn/cuda/conv.hpp"
#include "isrn/cuda/runtime.hpp"

namespace isrn::cuda::cudnn_conv {
namespace {

#define ISRN_CUDNN_CHECK(call)                                                                     \
  do {                                                                                             \
    cudnnStatus_t isrn_status_ = (call);                                                           \
    ISRN_CHECK(isrn_status_ == CUDNN_STATUS_SUCCESS, "[conv2d] cuDNN call ", #call, " failed: ",   \
               cudnnGetErrorString(isrn_status_));                                                 \
  } while (0)

// cuDNN handles are not safe to share between threads, so each thread keeps one per device. They
// are deliberately never destroyed: destroying them during static destruction can run after the
// CUDA context is gone (PyTorch leaks them for the same reason).
cudnnHandle_t handle_for_current_device() {
  thread_local std::unordered_map<int, cudnnHandle_t> handles;
  int device = 0;
  ISRN_CUDA_CHECK(cudaGetDevice(&device));
  auto it = handles.find(device);
  if (it == handles.end()) {
    cudnnHandle_t h = nullptr;
    ISRN_CUDNN_CHECK(cudnnCreate(&h));
    it = handles.emplace(device, h).first;
  }
  ISRN_CUDNN_CHECK(cudnnSetStream(it->second, current_stream()));
  return it->second;
}

template <typename Desc, cudnnStatus_t (*Create)(Desc*), cudnnStatus_t (*Destroy)(Desc)>
class Descriptor {
 public:
  Descriptor() { ISRN_CUDNN_CHECK(Create(&desc_)); }
  ~Descriptor() { Destroy(desc_); }  // never throws: a failed destroy only leaks a descriptor
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  Desc get() const { return desc_; }

 private:
  Desc desc_{};
};
using TensorDesc = Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;

int to_int(int64_t v) {
  ISRN_CHECK(v >= 0 && v <= 0x7fffffff, "[conv2d] size ", v, " is too large for cuDNN");
  return static_cast<int>(v);
}

cudnnDataType_t data_type(DType t) {
  switch (t) {
    case DType::Float32: return CUDNN_DATA_FLOAT;
    case DType::Float64: return CUDNN_DATA_DOUBLE;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    default: break;
  }
  ISRN_CHECK(false, "[conv2d] the cuDNN path takes float32, bfloat16 or float64, got ", t);
  return CUDNN_DATA_FLOAT;
}

// The convolution's accumulation type: float32 for bfloat16 data (cuDNN's PSEUDO_BFLOAT16 configuration).
cudnnDataType_t compute_type(DType t) { return t == DType::BFloat16 ? CUDNN_DATA_FLOAT : data_type(t); }

// cuDNN reads alpha and beta as double for double data and as float for everything else.
struct Scaling {
  double one_d = 1, zero_d = 0;
  float one_f = 1, zero_f = 0;
  const void* one(DType t) const { return t == DType::Float64 ? static_cast<const void*>(&one_d) : &one_f; }
  const void* zero(DType t) const { return t == DType::Float64 ? static_cast<const void*>(&zero_d) : &zero_f; }
};
constexpr Scaling kScaling{};

// The problem after padding has been made symmetric: x is the (possibly pre-padded) input.
struct Problem {
  DType dtype;
  Shape x, w, y;
  int pad_h, pad_w, stride_h, stride_w, dil_h, dil_w;
  bool tf32;
  bool transforms;  // FFT and Winograd algorithms allowed (allow_conv_transforms)
  auto key(int pass, int device) const {
    return std::make_tuple(pass, device, static_cast<int>(dtype), x, w, y,
                           std::array<int, 8>{pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, tf32 ? 1 : 0,
                                              transforms ? 1 : 0});
  }
  // FP32 math: no tensor-core (TF32) algorithm may be chosen.
  bool fma_only() const { return dtype == DType::Float64 || (dtype == DType::Float32 && !tf32); }
};

struct Descriptors {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  explicit Descriptors(const Problem& p) {
    const cudnnDataType_t dt = data_type(p.dtype);
    ISRN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x.get(), CUDNN_TENSOR_NCHW, dt, to_int(p.x[0]), to_int(p.x[1]),
                                                to_int(p.x[2]), to_int(p.x[3])));
    ISRN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y.get(), CUDNN_TENSOR_NCHW, dt, to_int(p.y[0]), to_int(p.y[1]),
                                                to_int(p.y[2]), to_int(p.y[3])));
    ISRN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w.get(), dt, CUDNN_TENSOR_NCHW, to_int(p.w[0]), to_int(p.w[1]),
                                                to_int(p.w[2]), to_int(p.w[3])));
    ISRN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv.get(), p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dil_h,
                                                     p.dil_w, CUDNN_CROSS_CORRELATION, compute_type(p.dtype)));
    // CUDNN_DEFAULT_MATH lets cuDNN use TF32 tensor cores for float32 on Ampere and later, so the
    // strict FP32 mode must ask for FMA math explicitly. bfloat16 is there for the tensor cores.
    const cudnnMathType_t math = p.dtype == DType::BFloat16                  ? CUDNN_TENSOR_OP_MATH
                                 : p.dtype == DType::Float32 && p.tf32 ? CUDNN_DEFAULT_MATH
                                                                          : CUDNN_FMA_MATH;
    ISRN_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.get(), math));
    int n, c, h, w;
    ISRN_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), this->w.get(), &n, &c, &h, &w));
    ISRN_ASSERT(n == p.y[0] && c == p.y[1] && h == p.y[2] && w == p.y[3], "cuDNN output shape disagrees with isrn's");
  }
};

struct AlgoChoice {
  bool usable;  // false: cuDNN cannot run this problem (the caller falls back to isrn's own kernels)
  int algo;
  size_t workspace;
  cudnnMathType_t math;  // the math type cuDNN measured the algorithm with
};

std::mutex cache_mutex;
std::map<decltype(std::declval<Problem>().key(0, 0)), AlgoChoice> algo_cache;

// Picks from cuDNN's measured ranking (cudnnFind*: fastest first, timed once per shape on this GPU):
// the fastest algorithm that succeeds and is deterministic, so repeated steps give identical results
// (the own kernels, which take a problem with no such algorithm, are deterministic too). The heuristic
// ranking (…_v7) was up to 3× slower than the measured choice on the detector's shapes.
// FFT and Winograd transforms round differently from direct summation (errors of ~1e-6 of the
// terms in float32, far above the other paths'): left out unless allow_conv_transforms() (conv.hpp).
bool transform_algo(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
bool transform_algo(cudnnConvolutionBwdDataAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
bool transform_algo(cudnnConvolutionBwdFilterAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

template <typename Perf>
AlgoChoice pick(const Perf* perf, int count, const Problem& p) {
  int chosen = -1;
  for (int i = 0; i < count; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || (!p.transforms && transform_algo(perf[i].algo))) continue;
    if (p.fma_only() && perf[i].mathType != CUDNN_FMA_MATH && perf[i].mathType != CUDNN_DEFAULT_MATH) continue;
    if (perf[i].determinism == CUDNN_DETERMINISTIC) {
      chosen = i;
      break;
    }
  }
  if (chosen < 0) return {false, 0, 0, CUDNN_DEFAULT_MATH};
  return {true, static_cast<int>(perf[chosen].algo), perf[chosen].memory, perf[chosen].mathType};
}

// cuDNN answers NOT_SUPPORTED, or since cuDNN 9 one of its shape/data type/layout/pattern sub-codes, for
// problems it lacks (some bfloat16 shapes): isrn's own kernels take those. Any other failure (a driver
// or architecture mismatch among them) is an error.
bool problem_unsupported(cudnnStatus_t status) {
#if CUDNN_MAJOR >= 9
  switch (status) {
    case CUDNN_STATUS_NOT_SUPPORTED:
    case CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN:
    case CUDNN_STATUS_NOT_SUPPORTED_SHAPE:
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE:
    case CUDNN_STATUS_NOT_SUPPORTED_LAYOUT:
      return true;
    default:
      return false;
  }
#else
  return status == CUDNN_STATUS_NOT_SUPPORTED;
#endif
}

template <typename Perf>
AlgoChoice found_or_unsupported(cudnnStatus_t found, const Perf* perf, int returned, const Problem& p) {
  if (problem_unsupported(found)) return {false, 0, 0, CUDNN_DEFAULT_MATH};
  ISRN_CUDNN_CHECK(found);
  return pick(perf, returned, p);
}

// Runs the algorithm with the math type it was measured with (as PyTorch does). Only for bfloat16: for
// float32 the descriptor's FMA/TF32 choice is the user's switch and must not be widened.
void use_measured_math(const Problem& p, const Descriptors& d, const AlgoChoice& algo) {
  if (p.dtype == DType::BFloat16) ISRN_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.get(), algo.math));
}

enum PassId { kForward = 0, kBackwardData = 1, kBackwardFilter = 2 };

AlgoChoice choose(PassId pass, const Problem& p, const Descriptors& d, cudnnHandle_t handle) {
  int device = 0;
  ISRN_CUDA_CHECK(cudaGetDevice(&device));
  const auto key = p.key(pass, device);
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = algo_cache.find(key);
    if (it != algo_cache.end()) return it->second;
  }
  AlgoChoice choice{};
  constexpr int kMaxAlgos = 16;
  int returned = 0;
  size_t queried = 0;
  if (pass == kForward) {
    cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
    const cudnnStatus_t found = cudnnFindConvolutionForwardAlgorithm(handle, d.x.get(), d.w.get(), d.conv.get(),
                                                                     d.y.get(), kMaxAlgos, &returned, perf);
    choice = found_or_unsupported(found, perf, returned, p);
    if (choice.usable) {
      use_measured_math(p, d, choice);
      ISRN_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                             static_cast<cudnnConvolutionFwdAlgo_t>(choice.algo),
                                                             &queried));
    }
  } else if (pass == kBackwardData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMaxAlgos];
    const cudnnStatus_t found = cudnnFindConvolutionBackwardDataAlgorithm(handle, d.w.get(), d.y.get(), d.conv.get(),
                                                                          d.x.get(), kMaxAlgos, &returned, perf);
    choice = found_or_unsupported(found, perf, returned, p);
    if (choice.usable) {
      use_measured_math(p, d, choice);
      ISRN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
        handle, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(choice.algo),
        &queried));
    }
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMaxAlgos];
    const cudnnStatus_t found = cudnnFindConvolutionBackwardFilterAlgorithm(
        handle, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), kMaxAlgos, &returned, perf);
    choice = found_or_unsupported(found, perf, returned, p);
    if (choice.usable) {
      use_measured_math(p, d, choice);
      ISRN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
        handle, d.x.get(), d.y.get(), d.conv.get(), d.w.get(),
        static_cast<cudnnConvolutionBwdFilterAlgo_t>(choice.algo), &queried));
    }
  }
  // The larger of what the measurement used and what the algorithm asks for under the math type it runs with.
  choice.workspace = std::max(choice.workspace, queried);
  std::lock_guard<std::mutex> lock(cache_mutex);
  algo_cache.emplace(key, choice);
  return choice;
}

Tensor workspace(size_t bytes, Device device) {
  return empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))}, TensorOptions(DType::UInt8).device(device));
}

bool symmetric(const Conv2dParams& p) { return p.padding[0] == p.padding[1] && p.padding[2] == p.padding[3]; }

// The problem cuDNN sees. With asymmetric padding the input is pre-padded (x_shape grows) and
// cuDNN pads nothing.
Problem problem_of(const Shape& x_shape, const Shape& w_shape, const Shape& y_shape, DType dtype,
                   const Conv2dParams& params) {
  Problem p;
  p.dtype = dtype;
  p.w = w_shape;
  p.y = y_shape;
  p.stride_h = to_int(params.stride[0]);
  p.stride_w = to_int(params.stride[1]);
  p.dil_h = to_int(params.dilation[0]);
  p.dil_w = to_int(params.dilation[1]);
  p.tf32 = cuda::allow_tf32();  // the same switch as float32 matmuls
  p.transforms = cuda::allow_conv_transforms();
  if (symmetric(params)) {
    p.x = x_shape;
    p.pad_h = to_int(params.padding[0]);
    p.pad_w = to_int(params.padding[2]);
  } else {
    p.x = {x_shape[0], x_shape[1], x_shape[2] + params.padding[0] + params.padding[1],
           x_shape[3] + params.padding[2] + params.padding[3]};
    p.pad_h = 0;
    p.pad_w = 0;
  }
  return p;
}

Tensor contiguous_input(const Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

}  // namespace

bool conv2d_forward(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias, const Conv2dParams& params,
                    Tensor& y) {
  if (y.numel() == 0) return true;
  Tensor x = contiguous_input(x_in);
  const Tensor weight = contiguous_input(weight_in);
  const Problem p = problem_of(x.shape(), weight.shape(), y.shape(), x.dtype(), params);
  if (!symmetric(params)) {
    x = conv_detail::pad_nchw(x, params.padding[0], params.padding[1], params.padding[2], params.padding[3]);
  }
  if (x.numel() == 0 || weight.numel() == 0) {  // cuDNN rejects empty operands: y is the bias or zero
    ISRN_CUDA_CHECK(cudaMemsetAsync(y.raw_data(), 0, y.numel() * y.element_size(), current_stream()));
  } else {
    cudnnHandle_t handle = handle_for_current_device();
    const Descriptors d(p);
    const AlgoChoice algo = choose(kForward, p, d, handle);
    if (!algo.usable) return false;
    use_measured_math(p, d, algo);
    Tensor ws = workspace(algo.workspace, y.device());
    ISRN_CUDNN_CHECK(cudnnConvolutionForward(handle, kScaling.one(x.dtype()), d.x.get(), x.raw_data(), d.w.get(),
                                             weight.raw_data(), d.conv.get(),
                                             static_cast<cudnnConvolutionFwdAlgo_t>(algo.algo), ws.raw_data(),
                                             algo.workspace, kScaling.zero(x.dtype()), d.y.get(), y.raw_data()));
  }
  if (bias.defined()) {
    ISRN_ASSERT(y.dtype() != DType::BFloat16, "a bfloat16 convolution got a bias (the front end adds it in float32)");
    const Tensor b = contiguous_input(bias);
    cudnnHandle_t handle = handle_for_current_device();
    TensorDesc bias_desc, y_desc;
    const cudnnDataType_t dt = data_type(y.dtype());
    ISRN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bias_desc.get(), CUDNN_TENSOR_NCHW, dt, 1, to_int(y.size(1)), 1, 1));
    ISRN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y_desc.get(), CUDNN_TENSOR_NCHW, dt, to_int(y.size(0)),
                                                to_int(y.size(1)), to_int(y.size(2)), to_int(y.size(3))));
    ISRN_CUDNN_CHECK(cudnnAddTensor(handle, kScaling.one(y.dtype()), bias_desc.get(), b.raw_data(),
                                    kScaling.one(y.dtype()), y_desc.get(), y.raw_data()));
  }
  return true;
}

bool conv2d_backward_input(const Tensor& grad_y_in, const Tensor& weight_in, const Conv2dParams& params,
                           Tensor& grad_x) {
  if (grad_x.numel() == 0) return true;
  const Tensor grad_y = contiguous_input(grad_y_in), weight = contiguous_input(weight_in);
  if (grad_y.numel() == 0 || weight.numel() == 0) {
    ISRN_CUDA_CHECK(cudaMemsetAsync(grad_x.raw_data(), 0, grad_x.numel() * grad_x.element_size(), current_stream()));
    return true;
  }
  const Problem p = problem_of(grad_x.shape(), weight.shape(), grad_y.shape(), grad_y.dtype(), params);
  // With asymmetric padding cuDNN computes the gradient of the pre-padded input; the border is cropped.
  Tensor target = symmetric(params) ? grad_x : empty(p.x, TensorOptions(grad_x.dtype()).device(grad_x.device()));
  cudnnHandle_t handle = handle_for_current_device();
  const Descriptors d(p);
  const AlgoChoice algo = choose(kBackwardData, p, d, handle);
  if (!algo.usable) return false;
  use_measured_math(p, d, algo);
  Tensor ws = workspace(algo.workspace, grad_x.device());
  const DType dt = grad_y.dtype();
  ISRN_CUDNN_CHECK(cudnnConvolutionBackwardData(handle, kScaling.one(dt), d.w.get(), weight.raw_data(), d.y.get(),
                                                grad_y.raw_data(), d.conv.get(),
                                                static_cast<cudnnConvolutionBwdDataAlgo_t>(algo.algo), ws.raw_data(),
                                                algo.workspace, kScaling.zero(dt), d.x.get(), target.raw_data()));
  if (!symmetric(params)) conv_detail::crop_nchw(target, params.padding[0], params.padding[2], grad_x);
  return true;
}

bool conv2d_backward_weight(const Tensor& grad_y_in, const Tensor& x_in, const Conv2dParams& params, Tensor& grad_w) {
  if (grad_w.numel() == 0) return true;
  const Tensor grad_y = contiguous_input(grad_y_in);
  Tensor x = contiguous_input(x_in);
  if (grad_y.numel() == 0 || x.numel() == 0) {
    ISRN_CUDA_CHECK(cudaMemsetAsync(grad_w.raw_data(), 0, grad_w.numel() * grad_w.element_size(), current_stream()));
    return true;
  }
  const Problem p = problem_of(x.shape(), grad_w.shape(), grad_y.shape(), x.dtype(), params);
  if (!symmetric(params)) {
    x = conv_detail::pad_nchw(x, params.padding[0], params.padding[1], params.padding[2], params.padding[3]);
  }
  cudnnHandle_t handle = handle_for_current_device();
  const Descriptors d(p);
  const AlgoChoice algo = choose(kBackwardFilter, p, d, handle);
  if (!algo.usable) return false;
  use_measured_math(p, d, algo);
  Tensor ws = workspace(algo.workspace, grad_w.device());
  const DType dt = x.dtype();
  ISRN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, kScaling.one(dt), d.x.get(), x.raw_data(), d.y.get(),
                                                  grad_y.raw_data(), d.conv.get(),
                                                  static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo.algo),
                                                  ws.raw_data(), algo.workspace, kScaling.zero(dt), d.w.get(),
                                                  grad_w.raw_data()));
  return true;
}

}  // namespace isrn::cuda::cudnn_conv

#endif  // ISRN_WITH_CUDNN
