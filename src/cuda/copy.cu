// copy (strided, converting between dtypes) and fill.
#include "cuda/allocator.hpp"
#include "cuda/offset_calc.cuh"

namespace isrn::cuda {

namespace {

constexpr int kBlock = 256;

template <typename D, typename S>
__global__ void copy_contiguous_kernel(int64_t n, const S* __restrict__ src, D* __restrict__ dst) {
  ISRN_CUDA_KERNEL_LOOP(i, n) dst[i] = static_cast<D>(src[i]);
}

template <typename D, typename S>
__global__ void copy_strided_kernel(int64_t n, OffsetCalc<2> calc, const S* src, D* dst) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    int64_t off[2];
    calc.get(i, off);
    dst[off[0]] = static_cast<D>(src[off[1]]);
  }
}

template <typename T>
__global__ void fill_contiguous_kernel(int64_t n, T value, T* dst) {
  ISRN_CUDA_KERNEL_LOOP(i, n) dst[i] = value;
}

template <typename T>
__global__ void fill_strided_kernel(int64_t n, OffsetCalc<1> calc, T value, T* dst) {
  ISRN_CUDA_KERNEL_LOOP(i, n) {
    int64_t off[1];
    calc.get(i, off);
    dst[off[0]] = value;
  }
}

template <typename D, typename S>
void launch_copy(const Tensor& src, Tensor& dst) {
  const int64_t n = dst.numel();
  const auto calc = make_offset_calc<2>(dst.shape(), {&dst, &src});
  const S* ps = static_cast<const S*>(src.raw_data());
  D* pd = static_cast<D*>(dst.raw_data());
  if (calc.contiguous()) {
    if constexpr (std::is_same_v<D, S>) {  // same bytes: the copy engine is fastest
      ISRN_CUDA_CHECK(cudaMemcpyAsync(pd, ps, n * sizeof(D), cudaMemcpyDeviceToDevice, current_stream()));
      return;
    }
    copy_contiguous_kernel<D, S><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(n, ps, pd);
    ISRN_CUDA_LAUNCH_CHECK("copy_contiguous_kernel");
  } else {
    copy_strided_kernel<D, S><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(n, calc, ps, pd);
    ISRN_CUDA_LAUNCH_CHECK("copy_strided_kernel");
  }
}

}  // namespace

void copy(const Tensor& src, Tensor& dst) {
  if (dst.numel() == 0) return;
  DeviceGuard guard(dst.device().index);
  dispatch_all(dst.dtype(), "copy", [&](auto dst_tag) {
    dispatch_all(src.dtype(), "copy", [&](auto src_tag) {
      launch_copy<decltype(dst_tag), decltype(src_tag)>(src, dst);
    });
  });
}

void fill(Tensor& dst, double value) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  DeviceGuard guard(dst.device().index);
  dispatch_all(dst.dtype(), "fill", [&](auto tag) {
    using T = decltype(tag);
    const T v = static_cast<T>(value);
    const auto calc = make_offset_calc<1>(dst.shape(), {&dst});
    T* p = static_cast<T*>(dst.raw_data());
    if (calc.contiguous()) {
      fill_contiguous_kernel<T><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(n, v, p);
      ISRN_CUDA_LAUNCH_CHECK("fill_contiguous_kernel");
    } else {
      fill_strided_kernel<T><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(n, calc, v, p);
      ISRN_CUDA_LAUNCH_CHECK("fill_strided_kernel");
    }
  });
}

}  // namespace isrn::cuda
