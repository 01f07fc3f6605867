#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace isrn {

// Sizes and strides are in elements. A tensor has at most kMaxDims dimensions.
using Shape = std::vector<int64_t>;
inline constexpr int kMaxDims = 6;

int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);
// Wraps a possibly negative dim into [0, ndim); throws naming `op` when it is out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// NumPy broadcasting of two shapes; throws naming `op` and both shapes when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace isrn
