#pragma once
// Ops that rearrange or combine tensors (the view ops are Tensor methods).
#include <vector>

#include "isrn/tensor.hpp"

namespace isrn {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
// Pieces of `size` along dim (the last may be smaller); chunk: `chunks` nearly equal pieces.
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
// Constant padding. `pads` lists (before, after) pairs starting from the LAST dimension, as
// torch.nn.functional.pad: {left, right, top, bottom, ...}.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0.0);
// out[..., i, ...] = x[..., index[i], ...] along dim; index is int64 or int32, 1-D.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// torch.gather: out[i][j][k] = x[i][index[i][j][k]][k] for dim 1; index has x's rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// The elements where mask (bool, broadcast against x) is true, flattened in row-major order;
// differentiable with respect to x.
Tensor masked_select(const Tensor& x, const Tensor& mask);
// Flat row-major indices (int64) of the true elements of a bool tensor.
Tensor nonzero_flat(const Tensor& mask);

}  // namespace isrn
