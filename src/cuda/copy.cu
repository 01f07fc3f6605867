// copy (strided, converting between dtypes) and fill.
#include "cuda/allocator.hpp"
#include "cuda/elementwise.cuh"

namespace isrn::cuda {

namespace {

template <typename D, typename S>
struct CopyFn {
  D* dst;
  const S* src;
  __device__ void operator()(const int64_t (&off)[2]) const { dst[off[0]] = static_cast<D>(src[off[1]]); }
};

template <typename T>
struct FillFn {
  T* dst;
  T value;
  __device__ void operator()(const int64_t (&off)[1]) const { dst[off[0]] = value; }
};

template <typename D, typename S>
void launch_copy(const Tensor& src, Tensor& dst) {
  const S* ps = static_cast<const S*>(src.raw_data());
  D* pd = static_cast<D*>(dst.raw_data());
  if constexpr (std::is_same_v<D, S>) {
    if (make_offset_calc<2>(dst.shape(), {dst.strides(), src.strides()}).contiguous()) {  // the copy engine does it
      ISRN_CUDA_CHECK(cudaMemcpyAsync(pd, ps, dst.numel() * sizeof(D), cudaMemcpyDeviceToDevice, current_stream()));
      return;
    }
  }
  launch_elementwise<2>("copy_kernel", dst.shape(), {&dst, &src}, CopyFn<D, S>{pd, ps});
}

}  // namespace

void copy(const Tensor& src, Tensor& dst) {
  if (dst.numel() == 0) return;
  DeviceGuard guard(dst.device().index);
  dispatch_storage(dst.dtype(), "copy", [&](auto dst_tag) {
    dispatch_storage(src.dtype(), "copy", [&](auto src_tag) {
      launch_copy<decltype(dst_tag), decltype(src_tag)>(src, dst);
    });
  });
}

void fill(Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  DeviceGuard guard(dst.device().index);
  dispatch_storage(dst.dtype(), "fill", [&](auto tag) {
    using T = decltype(tag);
    launch_elementwise<1>("fill_kernel", dst.shape(), {&dst},
                          FillFn<T>{static_cast<T*>(dst.raw_data()), static_cast<T>(value)});
  });
}

}  // namespace isrn::cuda
