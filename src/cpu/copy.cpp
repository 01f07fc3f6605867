#include <cstring>

#include "backend.hpp"
#include "cpu/strided.hpp"

namespace isrn::cpu {

void copy(const Tensor& src, Tensor& dst) {
  dispatch_storage(dst.dtype(), "copy", [&](auto dst_tag) {
    using D = decltype(dst_tag);
    dispatch_storage(src.dtype(), "copy", [&](auto src_tag) {
      using S = decltype(src_tag);
      for_each_row<2>(dst.shape(), {&dst, &src}, [](RowView<2> v, int64_t n) {
        if constexpr (std::is_same_v<D, S>) {
          if (v.stride[0] == sizeof(D) && v.stride[1] == sizeof(S)) {
            std::memcpy(v.data[0], v.data[1], n * sizeof(D));
            return;
          }
        }
        for (int64_t i = 0; i < n; ++i)
          *reinterpret_cast<D*>(v.data[0] + i * v.stride[0]) =
              static_cast<D>(*reinterpret_cast<const S*>(v.data[1] + i * v.stride[1]));
      });
    });
  });
}

void fill(Tensor& dst, double value) {
  dispatch_storage(dst.dtype(), "fill", [&](auto tag) {
    using T = decltype(tag);
    const T v = static_cast<T>(value);
    for_each_row<1>(dst.shape(), {&dst}, [v](RowView<1> r, int64_t n) {
      for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(r.data[0] + i * r.stride[0]) = v;
    });
  });
}

}  // namespace isrn::cpu
