// CUDA box ops: pairwise IoU, box encode/decode, greedy NMS (bitmask, as torchvision, with the
// suppression sweep kept on the device) and fused anchor matching (no [A, G] matrix).
//
// The formulas are the shared ones of include/isrn/kernels/box.hpp (SPEC.md §6.3). The IoU is
// evaluated through them on a number type whose operations are explicitly rounded, so nvcc cannot
// contract them into FMAs: two kernels computing the IoU of the same pair then agree bit for bit
// (anchor matching relies on that), and so does the CPU, which evaluates the same expressions
// without contraction — NMS keeps exactly the boxes the CPU keeps.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <limits>

#include "cuda/common.cuh"
#include "cuda/det_utils.cuh"
#include "cuda/rounded.cuh"
#include "isrn/kernels/box.hpp"

namespace isrn::cuda {
namespace {

constexpr int kBlock = 256;

template <typename T>
struct Box {
  T c[4];  // x1, y1, x2, y2
};

// A [N, 4] box tensor with any strides.
template <typename T>
struct BoxView {
  const T* p;
  int64_t row, col;
  __device__ __forceinline__ Box<T> operator[](int64_t i) const {
    const T* b = p + i * row;
    return {{b[0], b[col], b[2 * col], b[3 * col]}};
  }
};

template <typename T>
BoxView<T> view_of(const Tensor& t) {
  return {t.data_ptr<T>(), t.stride(0), t.stride(1)};
}

// kernels::box_iou_pair with every operation rounded as written.
template <typename T>
__device__ __forceinline__ T iou(const Box<T>& a, const Box<T>& b, bool plus_one) {
  const Rounded<T> ra[4] = {a.c[0], a.c[1], a.c[2], a.c[3]}, rb[4] = {b.c[0], b.c[1], b.c[2], b.c[3]};
  return kernels::box_iou_pair(ra, rb, plus_one).v;
}

// --- box_iou, encode, decode ---------------------------------------------------------------------

template <typename T>
__global__ void box_iou_kernel(BoxView<T> a, BoxView<T> b, int64_t m, bool plus_one, int64_t total,
                               T* __restrict__ out) {
  ISRN_CUDA_KERNEL_LOOP(k, total) { out[k] = iou(a[k / m], b[k % m], plus_one); }
}

template <typename T>
__global__ void encode_kernel(BoxView<T> boxes, BoxView<T> ref, Box<T> variances, int64_t n, T* __restrict__ out) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    const Box<T> g = boxes[i], r = ref[i];
    kernels::encode_box(g.c, r.c, variances.c, out + 4 * i);
  }
}

template <typename T>
__global__ void decode_kernel(BoxView<T> deltas, BoxView<T> ref, Box<T> variances, T max_log_scale, int64_t n,
                              T* __restrict__ out) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    const Box<T> d = deltas[i], r = ref[i];
    kernels::decode_box(d.c, r.c, variances.c, max_log_scale, out + 4 * i);
  }
}

// --- NMS ------------------------------------------------------------------------------------------

constexpr int kNmsTile = 64;  // boxes per mask word

// Sort keys: the scores as unsigned integers that order like the values (sign bit flipped for
// positives, all bits for negatives), with −0 folded into +0 (the CPU's comparison treats them as
// equal) and NaN mapped to 0, below −inf, so NaN scores are visited last. Values: the indices.
template <typename T>
struct OrderedKey;
template <>
struct OrderedKey<float> {
  using type = unsigned int;
  __device__ static type of(float v) {
    if (v != v) return 0u;
    const type b = __float_as_uint(v + 0.0f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  }
};
template <>
struct OrderedKey<double> {
  using type = unsigned long long;
  __device__ static type of(double v) {
    if (v != v) return 0ull;
    const type b = static_cast<type>(__double_as_longlong(v + 0.0));
    return (b & 0x8000000000000000ull) ? ~b : (b | 0x8000000000000000ull);
  }
};

template <typename T>
__global__ void nms_prepare_kernel(const T* __restrict__ scores, int64_t n, typename OrderedKey<T>::type* __restrict__ keys,
                                   int32_t* __restrict__ index) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    keys[i] = OrderedKey<T>::of(scores[i]);
    index[i] = static_cast<int32_t>(i);
  }
}

template <typename T>
__global__ void nms_gather_kernel(const T* __restrict__ boxes, const int32_t* __restrict__ order, int64_t n,
                                  Box<T>* __restrict__ sorted) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    const T* b = boxes + 4 * int64_t(order[i]);
    sorted[i] = {{b[0], b[1], b[2], b[3]}};
  }
}

// mask[i · words + w] bit j: box i (sorted order) overlaps box 64·w + j > i by more than the
// threshold. Only blocks on or above the diagonal run; the sweep never reads the others.
template <typename T>
__global__ void nms_mask_kernel(const Box<T>* __restrict__ boxes, int n, int words, double threshold, bool plus_one,
                                unsigned long long* __restrict__ mask) {
  const int row_block = blockIdx.y, col_block = blockIdx.x;
  if (col_block < row_block) return;
  __shared__ Box<T> cols[kNmsTile];
  const int col_count = ::min(kNmsTile, n - col_block * kNmsTile);
  const int row_count = ::min(kNmsTile, n - row_block * kNmsTile);
  if (threadIdx.x < col_count) cols[threadIdx.x] = boxes[col_block * kNmsTile + threadIdx.x];
  __syncthreads();
  if (threadIdx.x >= row_count) return;
  const int row = row_block * kNmsTile + threadIdx.x;
  const Box<T> b = boxes[row];
  unsigned long long bits = 0;
  const int start = row_block == col_block ? threadIdx.x + 1 : 0;
  for (int j = start; j < col_count; ++j)
    if (kernels::iou_suppresses(iou(b, cols[j], plus_one), threshold)) bits |= 1ULL << j;
  mask[int64_t(row) * words + col_block] = bits;
}

// The greedy sweep in one block: for each 64-box tile, thread 0 resolves the tile against the
// suppression bits gathered so far and its own diagonal word, then all threads fold the kept
// boxes' mask rows into the remaining words. Writes the kept original indices in order and their
// count.
__global__ void nms_sweep_kernel(const unsigned long long* __restrict__ mask, const int32_t* __restrict__ order, int n,
                                 int words, int64_t* __restrict__ kept, int64_t* __restrict__ kept_count) {
  extern __shared__ unsigned long long removed[];
  __shared__ unsigned long long diag[kNmsTile];
  __shared__ unsigned long long tile_kept;
  __shared__ int count;
  for (int w = threadIdx.x; w < words; w += blockDim.x) removed[w] = 0;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  for (int tile = 0; tile < words; ++tile) {
    const int rows = ::min(kNmsTile, n - tile * kNmsTile);
    if (threadIdx.x < rows) diag[threadIdx.x] = mask[int64_t(tile * kNmsTile + threadIdx.x) * words + tile];
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned long long cur = removed[tile], keep = 0;
      int c = count;
      for (int i = 0; i < rows; ++i) {
        if (!((cur >> i) & 1ULL)) {
          keep |= 1ULL << i;
          cur |= diag[i];
          kept[c++] = order[tile * kNmsTile + i];
        }
      }
      count = c;
      tile_kept = keep;
    }
    __syncthreads();
    const unsigned long long keep = tile_kept;
    if (keep) {
      for (int w = tile + 1 + threadIdx.x; w < words; w += blockDim.x) {
        unsigned long long acc = 0;
        for (unsigned long long k = keep; k; k &= k - 1) {
          const int i = __ffsll(static_cast<long long>(k)) - 1;
          acc |= mask[int64_t(tile * kNmsTile + i) * words + w];
        }
        removed[w] |= acc;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) *kept_count = count;
}

// --- anchor matching ----------------------------------------------------------------------------

// IoU bit patterns: for non-negative floats the unsigned bit pattern orders like the value. A NaN
// IoU (from NaN coordinates) never wins, as in the CPU kernel: it counts as 0 in the maximum and
// never equals it.
template <typename T>
struct IouBits;
template <>
struct IouBits<float> {
  using type = unsigned int;
  __device__ static type of(float v) { return v == v ? __float_as_uint(v) : 0u; }
  __device__ static float value(type b) { return __uint_as_float(b); }
  __device__ static type warp_max(type v) { return __reduce_max_sync(0xffffffffu, v); }
};
template <>
struct IouBits<double> {
  using type = unsigned long long;
  __device__ static type of(double v) { return v == v ? static_cast<type>(__double_as_longlong(v)) : 0ull; }
  __device__ static double value(type b) { return __longlong_as_double(static_cast<long long>(b)); }
  __device__ static type warp_max(type v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const type other = __shfl_xor_sync(0xffffffffu, v, o);
      v = other > v ? other : v;
    }
    return v;
  }
};

constexpr unsigned int kNoAnchor = 0xffffffffu;

// Pass 1: per anchor, the best GT (the lowest index among ties; −1 and IoU 0 when every IoU is
// NaN) and its IoU; per GT, the best IoU over all anchors (warp max → shared atomic → one global
// atomic per block and GT).
template <typename T>
__global__ void match_pass1_kernel(BoxView<T> anchors, int64_t num_anchors, BoxView<T> gt, int num_gt, bool plus_one,
                                   T* __restrict__ anchor_max_iou, int64_t* __restrict__ anchor_argmax,
                                   typename IouBits<T>::type* __restrict__ gt_best_bits) {
  using Bits = typename IouBits<T>::type;
  __shared__ Box<T> tile[kBlock];
  __shared__ Bits tile_best[kBlock];
  const int64_t a = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool valid = a < num_anchors;
  const Box<T> box = valid ? anchors[a] : Box<T>{};
  T best = T(-1);  // below every IoU, so the first real one is taken
  int64_t best_index = -1;
  for (int g0 = 0; g0 < num_gt; g0 += kBlock) {
    const int count = ::min(kBlock, num_gt - g0);
    if (threadIdx.x < count) {
      tile[threadIdx.x] = gt[g0 + threadIdx.x];
      tile_best[threadIdx.x] = 0;
    }
    __syncthreads();
    for (int j = 0; j < count; ++j) {
      const T v = valid ? iou(box, tile[j], plus_one) : T(0);
      if (valid && v > best) {
        best = v;
        best_index = g0 + j;
      }
      const Bits m = IouBits<T>::warp_max(IouBits<T>::of(v));
      if ((threadIdx.x & 31) == 0 && m != 0) atomicMax(&tile_best[j], m);
    }
    __syncthreads();
    if (threadIdx.x < count && tile_best[threadIdx.x] != 0) atomicMax(&gt_best_bits[g0 + threadIdx.x], tile_best[threadIdx.x]);
    __syncthreads();
  }
  if (valid) {
    anchor_max_iou[a] = best_index >= 0 ? best : T(0);
    anchor_argmax[a] = best_index;
  }
}

// Pass 2: per GT, the lowest anchor index whose IoU equals the best (bit-identical recomputation).
template <typename T>
__global__ void match_pass2_kernel(BoxView<T> anchors, int64_t num_anchors, BoxView<T> gt, int num_gt, bool plus_one,
                                   const typename IouBits<T>::type* __restrict__ gt_best_bits,
                                   unsigned int* __restrict__ gt_best_anchor) {
  __shared__ Box<T> tile[kBlock];
  __shared__ typename IouBits<T>::type tile_target[kBlock];
  __shared__ unsigned int tile_first[kBlock];
  const int64_t a = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool valid = a < num_anchors;
  const Box<T> box = valid ? anchors[a] : Box<T>{};
  for (int g0 = 0; g0 < num_gt; g0 += kBlock) {
    const int count = ::min(kBlock, num_gt - g0);
    if (threadIdx.x < count) {
      tile[threadIdx.x] = gt[g0 + threadIdx.x];
      tile_target[threadIdx.x] = gt_best_bits[g0 + threadIdx.x];
      tile_first[threadIdx.x] = kNoAnchor;
    }
    __syncthreads();
    for (int j = 0; j < count; ++j) {
      const T v = valid ? iou(box, tile[j], plus_one) : T(0);
      const bool hit = valid && v == v && IouBits<T>::of(v) == tile_target[j];
      const unsigned int first = __reduce_min_sync(0xffffffffu, hit ? static_cast<unsigned int>(a) : kNoAnchor);
      if ((threadIdx.x & 31) == 0 && first != kNoAnchor) atomicMin(&tile_first[j], first);
    }
    __syncthreads();
    if (threadIdx.x < count && tile_first[threadIdx.x] != kNoAnchor)
      atomicMin(&gt_best_anchor[g0 + threadIdx.x], tile_first[threadIdx.x]);
    __syncthreads();
  }
}

template <typename T>
__global__ void match_finish_kernel(const typename IouBits<T>::type* __restrict__ bits,
                                    const unsigned int* __restrict__ first, int num_gt, T* __restrict__ gt_best_iou,
                                    int64_t* __restrict__ gt_best_anchor) {
  ISRN_CUDA_KERNEL_LOOP(g, num_gt) {
    gt_best_iou[g] = IouBits<T>::value(bits[g]);
    gt_best_anchor[g] = first[g] == kNoAnchor ? int64_t(-1) : int64_t(first[g]);
  }
}

template <typename T>
__global__ void fill_no_match_kernel(int64_t n, T* __restrict__ max_iou, int64_t* __restrict__ argmax) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    max_iou[i] = T(0);
    argmax[i] = -1;
  }
}

}  // namespace

void box_iou(const Tensor& a, const Tensor& b, bool plus_one, Tensor& out) {
  const int64_t n = a.size(0), m = b.size(0), total = n * m;
  if (total == 0) return;
  dispatch_floating(a.dtype(), "box_iou", [&](auto tag) {
    using T = decltype(tag);
    box_iou_kernel<T><<<grid_for(total), kBlock, 0, current_stream()>>>(view_of<T>(a), view_of<T>(b), m, plus_one,
                                                                       total, out.data_ptr<T>());
    ISRN_CUDA_LAUNCH_CHECK("box_iou_kernel");
  });
}

void encode_boxes(const Tensor& boxes, const Tensor& reference, const std::array<double, 4>& v, Tensor& out) {
  const int64_t n = boxes.size(0);
  if (n == 0) return;
  dispatch_floating(boxes.dtype(), "encode_boxes", [&](auto tag) {
    using T = decltype(tag);
    const Box<T> variances{{T(v[0]), T(v[1]), T(v[2]), T(v[3])}};
    encode_kernel<T><<<grid_for(n), kBlock, 0, current_stream()>>>(view_of<T>(boxes), view_of<T>(reference), variances,
                                                                   n, out.data_ptr<T>());
    ISRN_CUDA_LAUNCH_CHECK("encode_kernel");
  });
}

void decode_boxes(const Tensor& deltas, const Tensor& reference, const std::array<double, 4>& v, double max_log_scale,
                  Tensor& out) {
  const int64_t n = deltas.size(0);
  if (n == 0) return;
  dispatch_floating(deltas.dtype(), "decode_boxes", [&](auto tag) {
    using T = decltype(tag);
    const Box<T> variances{{T(v[0]), T(v[1]), T(v[2]), T(v[3])}};
    decode_kernel<T><<<grid_for(n), kBlock, 0, current_stream()>>>(view_of<T>(deltas), view_of<T>(reference), variances,
                                                                   T(max_log_scale), n, out.data_ptr<T>());
    ISRN_CUDA_LAUNCH_CHECK("decode_kernel");
  });
}

Tensor nms(const Tensor& boxes_in, const Tensor& scores_in, double iou_threshold, bool plus_one) {
  const Device device = boxes_in.device();
  const int64_t n = boxes_in.size(0);
  if (n == 0) return empty({0}, TensorOptions(DType::Int64).device(device));
  const Tensor boxes = boxes_in.is_contiguous() ? boxes_in : boxes_in.contiguous();
  const Tensor scores = scores_in.is_contiguous() ? scores_in : scores_in.contiguous();
  const int64_t words = (n + kNmsTile - 1) / kNmsTile;
  // The sweep keeps one suppression word per 64 boxes in shared memory (48 KB in all without
  // opt-in); the n·n/64-word mask (18 GB at this bound) is the practical limit long before.
  constexpr int64_t kMaxWords = 6000;
  ISRN_CHECK(words <= kMaxWords, "[nms] at most ", kMaxWords * kNmsTile, " boxes are supported, got ", n);
  Tensor kept = det::scratch({n}, DType::Int64, device);
  Tensor kept_count = det::scratch({1}, DType::Int64, device);
  dispatch_floating(boxes.dtype(), "nms", [&](auto tag) {
    using T = decltype(tag);
    using Key = typename OrderedKey<T>::type;
    const DType key_dtype = sizeof(Key) == 4 ? DType::Int32 : DType::Int64;
    Tensor keys = det::scratch({n}, key_dtype, device), keys_sorted = det::scratch({n}, key_dtype, device);
    Tensor index = det::scratch({n}, DType::Int32, device), order = det::scratch({n}, DType::Int32, device);
    auto* keys_ptr = static_cast<Key*>(keys.raw_data());
    auto* keys_sorted_ptr = static_cast<Key*>(keys_sorted.raw_data());
    nms_prepare_kernel<T><<<grid_for(n), kBlock, 0, current_stream()>>>(scores.data_ptr<T>(), n, keys_ptr,
                                                                         index.data_ptr<int32_t>());
    ISRN_CUDA_LAUNCH_CHECK("nms_prepare_kernel");
    // Radix sort is stable: equal scores keep ascending index order, the documented tie-break.
    size_t temp_bytes = 0;
    ISRN_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, temp_bytes, keys_ptr, keys_sorted_ptr,
                                                              index.data_ptr<int32_t>(), order.data_ptr<int32_t>(),
                                                              static_cast<int>(n), 0, static_cast<int>(sizeof(Key) * 8),
                                                              current_stream()));
    Tensor temp = det::scratch({static_cast<int64_t>(std::max<size_t>(temp_bytes, 1))}, DType::UInt8, device);
    ISRN_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(temp.raw_data(), temp_bytes, keys_ptr, keys_sorted_ptr,
                                                              index.data_ptr<int32_t>(), order.data_ptr<int32_t>(),
                                                              static_cast<int>(n), 0, static_cast<int>(sizeof(Key) * 8),
                                                              current_stream()));
    Tensor sorted = det::scratch({n, 4}, boxes.dtype(), device);
    nms_gather_kernel<T><<<grid_for(n), kBlock, 0, current_stream()>>>(
        boxes.data_ptr<T>(), order.data_ptr<int32_t>(), n, reinterpret_cast<Box<T>*>(sorted.data_ptr<T>()));
    ISRN_CUDA_LAUNCH_CHECK("nms_gather_kernel");
    Tensor mask = det::scratch({n * words}, DType::Int64, device);
    auto* mask_ptr = reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>());
    const dim3 grid(static_cast<unsigned>(words), static_cast<unsigned>(words));
    nms_mask_kernel<T><<<grid, kNmsTile, 0, current_stream()>>>(reinterpret_cast<const Box<T>*>(sorted.data_ptr<T>()),
                                                                static_cast<int>(n), static_cast<int>(words),
                                                                iou_threshold, plus_one, mask_ptr);
    ISRN_CUDA_LAUNCH_CHECK("nms_mask_kernel");
    nms_sweep_kernel<<<1, 1024, words * sizeof(unsigned long long), current_stream()>>>(
        mask_ptr, order.data_ptr<int32_t>(), static_cast<int>(n), static_cast<int>(words), kept.data_ptr<int64_t>(),
        kept_count.data_ptr<int64_t>());
    ISRN_CUDA_LAUNCH_CHECK("nms_sweep_kernel");
  });
  int64_t count = 0;
  ISRN_CUDA_CHECK(cudaMemcpyAsync(&count, kept_count.raw_data(), sizeof(int64_t), cudaMemcpyDeviceToHost,
                                  current_stream()));
  ISRN_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
  Tensor result = empty({count}, TensorOptions(DType::Int64).device(device));
  if (count > 0) {
    ISRN_CUDA_CHECK(cudaMemcpyAsync(result.raw_data(), kept.raw_data(), count * sizeof(int64_t),
                                    cudaMemcpyDeviceToDevice, current_stream()));
  }
  return result;
}

void match_anchors(const Tensor& anchors, const Tensor& gt, bool plus_one, AnchorMatch& result) {
  const Device device = anchors.device();
  const int64_t num_anchors = anchors.size(0), num_gt = gt.size(0);
  ISRN_CHECK(num_anchors < int64_t(kNoAnchor), "[match_anchors] at most ", kNoAnchor - 1, " anchors, got ",
             num_anchors);
  det::check_int32_range("match_anchors", "number of ground-truth boxes", num_gt);
  const TensorOptions opts = TensorOptions(anchors.dtype()).device(device);
  if (!result.anchor_max_iou.defined()) result.anchor_max_iou = empty({num_anchors}, opts);
  if (!result.anchor_argmax.defined()) result.anchor_argmax = empty({num_anchors}, opts.dtype(DType::Int64));
  if (!result.gt_best_anchor.defined()) result.gt_best_anchor = empty({num_gt}, opts.dtype(DType::Int64));
  if (!result.gt_best_iou.defined()) result.gt_best_iou = empty({num_gt}, opts);
  dispatch_floating(anchors.dtype(), "match_anchors", [&](auto tag) {
    using T = decltype(tag);
    using Bits = typename IouBits<T>::type;
    if (num_gt == 0) {
      if (num_anchors > 0) {
        fill_no_match_kernel<T><<<grid_for(num_anchors), kBlock, 0, current_stream()>>>(
            num_anchors, result.anchor_max_iou.data_ptr<T>(), result.anchor_argmax.data_ptr<int64_t>());
        ISRN_CUDA_LAUNCH_CHECK("match_fill_no_match_kernel");
      }
      return;
    }
    Tensor best_bits = det::scratch({num_gt}, sizeof(Bits) == 4 ? DType::Int32 : DType::Int64, device);
    Tensor first = det::scratch({num_gt}, DType::Int32, device);
    ISRN_CUDA_CHECK(cudaMemsetAsync(best_bits.raw_data(), 0, num_gt * sizeof(Bits), current_stream()));
    ISRN_CUDA_CHECK(cudaMemsetAsync(first.raw_data(), 0xff, num_gt * sizeof(unsigned int), current_stream()));
    auto* bits_ptr = static_cast<Bits*>(best_bits.raw_data());
    auto* first_ptr = static_cast<unsigned int*>(first.raw_data());
    if (num_anchors > 0) {
      const auto blocks = static_cast<unsigned>((num_anchors + kBlock - 1) / kBlock);
      match_pass1_kernel<T><<<blocks, kBlock, 0, current_stream()>>>(
          view_of<T>(anchors), num_anchors, view_of<T>(gt), static_cast<int>(num_gt), plus_one,
          result.anchor_max_iou.data_ptr<T>(), result.anchor_argmax.data_ptr<int64_t>(), bits_ptr);
      ISRN_CUDA_LAUNCH_CHECK("match_pass1_kernel");
      match_pass2_kernel<T><<<blocks, kBlock, 0, current_stream()>>>(view_of<T>(anchors), num_anchors, view_of<T>(gt),
                                                                     static_cast<int>(num_gt), plus_one, bits_ptr, first_ptr);
      ISRN_CUDA_LAUNCH_CHECK("match_pass2_kernel");
    }
    match_finish_kernel<T><<<grid_for(num_gt), kBlock, 0, current_stream()>>>(
        bits_ptr, first_ptr, static_cast<int>(num_gt), result.gt_best_iou.data_ptr<T>(),
        result.gt_best_anchor.data_ptr<int64_t>());
    ISRN_CUDA_LAUNCH_CHECK("match_finish_kernel");
  });
}

}  // namespace isrn::cuda
