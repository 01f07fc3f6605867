// Front ends of the ops that combine, split, pad and index tensors. cat and pad copy into narrowed
// views of a fresh output; their gradients, like split's, are slices of the incoming gradient.
#include "isrn/ops/shape.hpp"

#include <algorithm>

#include "backend.hpp"
#include "isrn/autograd/grad_mode.hpp"
#include "isrn/autograd/node.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/reduce.hpp"

namespace isrn {

using autograd::record;

namespace {

TensorOptions options_of(const Tensor& t) { return TensorOptions(t.dtype()).device(t.device()); }

// The CPU kernels check every index as they use it; the CUDA kernels trust theirs, so for a GPU index the
// range is checked here first (a cast, two reductions and one read back): a bad index is named, never read
// or written out of bounds. The message is the CPU kernels' own.
void check_index_range(const char* op, const Tensor& index, int64_t dim, int64_t size) {
  if (!index.device().is_cuda() || index.numel() == 0) return;
  NoGradGuard no_grad;
  const Tensor values = index.to(DType::Float64);  // exact for every index below 2^53
  const std::vector<double> bounds = stack({min(values), max(values)}, 0).to(Device::cpu()).to_vector<double>();
  const double bad = bounds[0] < 0 ? bounds[0] : bounds[1];
  ISRN_CHECK(bad >= 0 && bad < static_cast<double>(size), "[", op, "] index ", static_cast<int64_t>(bad),
             " is out of range for dimension ", dim, " of size ", size, " (valid: 0..", size - 1, ")");
}

void check_index(const char* op, const Tensor& index, const Tensor& x) {
  ISRN_CHECK(index.defined(), "[", op, "] undefined index");
  ISRN_CHECK(index.dtype() == DType::Int64 || index.dtype() == DType::Int32, "[", op,
             "] index must be int64 or int32, got ", index.dtype());
  ISRN_CHECK(index.device() == x.device(), "[", op, "] index is on ", index.device(), " but the input is on ",
             x.device());
}

void check_has_dims(const char* op, const Tensor& x) {
  ISRN_CHECK(x.defined(), "[", op, "] undefined input");
  ISRN_CHECK(x.dim() > 0, "[", op, "] expects a tensor with at least one dimension, got a zero-dimensional one");
}

// Pieces of x along dim with the given lengths (which sum to the dimension's size): narrowed
// views, so each piece's gradient is placed back by slicing.
std::vector<Tensor> pieces(const Tensor& x, int64_t dim, const std::vector<int64_t>& lengths) {
  std::vector<Tensor> out;
  out.reserve(lengths.size());
  int64_t start = 0;
  for (int64_t len : lengths) {
    out.push_back(x.narrow(dim, start, len));
    start += len;
  }
  return out;
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  ISRN_CHECK(!tensors.empty(), "[cat] expects at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i) ISRN_CHECK(tensors[i].defined(), "[cat] tensor ", i, " is undefined");
  const Tensor& first = tensors[0];
  ISRN_CHECK(first.dim() > 0, "[cat] zero-dimensional tensors cannot be concatenated (use stack)");
  dim = wrap_dim(dim, first.dim(), "cat");
  Shape out_shape = first.shape();
  out_shape[dim] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    ISRN_CHECK(t.dtype() == first.dtype(), "[cat] tensor ", i, " has dtype ", t.dtype(), ", tensor 0 has ",
               first.dtype());
    ISRN_CHECK(t.device() == first.device(), "[cat] tensor ", i, " is on ", t.device(), ", tensor 0 on ",
               first.device());
    bool match = t.dim() == first.dim();
    for (int64_t d = 0; match && d < t.dim(); ++d) match = d == dim || t.size(d) == first.size(d);
    ISRN_CHECK(match, "[cat] tensor ", i, " has shape ", shape_str(t.shape()), ", which does not match shape ",
               shape_str(first.shape()), " of tensor 0 outside dimension ", dim);
    out_shape[dim] += t.size(dim);
  }
  Tensor out = empty(out_shape, options_of(first));
  std::vector<int64_t> lengths;
  int64_t offset = 0;
  for (const Tensor& t : tensors) {
    lengths.push_back(t.size(dim));
    if (t.numel() > 0) out.narrow(dim, offset, t.size(dim)).copy_(t.detach());
    offset += t.size(dim);
  }
  if (!autograd::needs_grad(tensors)) return out;
  std::vector<bool> wanted;
  for (const Tensor& t : tensors) wanted.push_back(t.requires_grad());
  return record(out, "cat", tensors, [dim, lengths, wanted](const Tensor& g) {
    std::vector<Tensor> grads;
    int64_t start = 0;
    for (size_t i = 0; i < lengths.size(); ++i) {
      grads.push_back(wanted[i] ? g.narrow(dim, start, lengths[i]) : Tensor());
      start += lengths[i];
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  ISRN_CHECK(!tensors.empty(), "[stack] expects at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i) ISRN_CHECK(tensors[i].defined(), "[stack] tensor ", i, " is undefined");
  const Tensor& first = tensors[0];
  dim = wrap_dim(dim, first.dim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    ISRN_CHECK(t.shape() == first.shape(), "[stack] tensor ", i, " has shape ", shape_str(t.shape()),
               ", tensor 0 has ", shape_str(first.shape()), " (stack needs equal shapes)");
    ISRN_CHECK(t.dtype() == first.dtype(), "[stack] tensor ", i, " has dtype ", t.dtype(), ", tensor 0 has ",
               first.dtype());
    ISRN_CHECK(t.device() == first.device(), "[stack] tensor ", i, " is on ", t.device(), ", tensor 0 on ",
               first.device());
    expanded.push_back(t.unsqueeze(dim));
  }
  return cat(expanded, dim);
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
  check_has_dims("split", x);
  dim = wrap_dim(dim, x.dim(), "split");
  const int64_t len = x.size(dim);
  if (len == 0) {
    ISRN_CHECK(size >= 0, "[split] split size must not be negative, got ", size);
    return {x.narrow(dim, 0, 0)};
  }
  ISRN_CHECK(size > 0, "[split] split size must be positive for a dimension of size ", len, ", got ", size);
  std::vector<int64_t> lengths;
  for (int64_t start = 0; start < len; start += size) lengths.push_back(std::min(size, len - start));
  return pieces(x, dim, lengths);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check_has_dims("split", x);
  dim = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    ISRN_CHECK(s >= 0, "[split] sizes must not be negative, got ", s);
    total += s;
  }
  ISRN_CHECK(total == x.size(dim), "[split] sizes sum to ", total, " but dimension ", dim, " of shape ",
             shape_str(x.shape()), " has size ", x.size(dim));
  return pieces(x, dim, sizes);
}

// As torch.chunk: pieces of ceil(size / chunks), so fewer than `chunks` pieces may come back; an
// empty dimension gives `chunks` empty pieces.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  check_has_dims("chunk", x);
  ISRN_CHECK(chunks > 0, "[chunk] number of chunks must be positive, got ", chunks);
  dim = wrap_dim(dim, x.dim(), "chunk");
  const int64_t len = x.size(dim);
  if (len == 0) return pieces(x, dim, std::vector<int64_t>(static_cast<size_t>(chunks), 0));
  return split(x, (len + chunks - 1) / chunks, dim);
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  ISRN_CHECK(x.defined(), "[pad] undefined input");
  ISRN_CHECK(pads.size() % 2 == 0, "[pad] pads must hold (before, after) pairs, got ", pads.size(), " values");
  const int64_t pairs = static_cast<int64_t>(pads.size() / 2);
  ISRN_CHECK(pairs <= x.dim(), "[pad] ", pairs, " (before, after) pairs for a tensor of ", x.dim(),
             " dimensions");
  // Negative pads crop (as PyTorch). For every padded dim: where the kept part of x starts, where
  // it lands in the output, and its length.
  struct Region {
    int64_t dim, from, to, length;
  };
  std::vector<Region> regions;
  Shape out_shape = x.shape();
  bool crops = false;
  for (int64_t j = 0; j < pairs; ++j) {
    const int64_t d = x.dim() - 1 - j, before = pads[2 * j], after = pads[2 * j + 1], len = x.size(d);
    const int64_t crop_before = std::max<int64_t>(0, -before), crop_after = std::max<int64_t>(0, -after);
    ISRN_CHECK(crop_before + crop_after <= len, "[pad] padding (", before, ", ", after, ") crops more than the ",
               len, " elements of dimension ", d);
    crops = crops || crop_before + crop_after > 0;
    const int64_t kept = len - crop_before - crop_after;
    out_shape[d] = kept + std::max<int64_t>(0, before) + std::max<int64_t>(0, after);
    regions.push_back({d, crop_before, std::max<int64_t>(0, before), kept});
  }
  Tensor out = full(out_shape, value, options_of(x));
  Tensor src = x.detach(), dst = out;
  for (const Region& r : regions) {
    src = src.narrow(r.dim, r.from, r.length);
    dst = dst.narrow(r.dim, r.to, r.length);
  }
  if (src.numel() > 0) dst.copy_(src);
  const Shape in_shape = x.shape();
  const TensorOptions opts = options_of(x);
  return record(out, "pad", {x}, [regions, crops, in_shape, opts](const Tensor& g) {
    Tensor kept = g;
    for (const Region& r : regions) kept = kept.narrow(r.dim, r.to, r.length);
    if (!crops) return std::vector<Tensor>{kept};
    Tensor gx = zeros(in_shape, opts);
    Tensor into = gx;
    for (const Region& r : regions) into = into.narrow(r.dim, r.from, r.length);
    if (into.numel() > 0) into.copy_(kept);
    return std::vector<Tensor>{gx};
  });
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_has_dims("index_select", x);
  check_index("index_select", index, x);
  ISRN_CHECK(index.dim() == 1, "[index_select] index must be 1-D, got shape ", shape_str(index.shape()));
  dim = wrap_dim(dim, x.dim(), "index_select");
  Shape out_shape = x.shape();
  out_shape[dim] = index.numel();
  check_index_range("index_select", index, dim, x.size(dim));
  Tensor out = empty(out_shape, options_of(x));
  if (out.numel() > 0) ISRN_DISPATCH(x.device(), index_select, x.detach(), dim, index, out);
  const Shape in_shape = x.shape();
  const TensorOptions opts = options_of(x);
  return record(out, "index_select", {x}, [dim, index, in_shape, opts](const Tensor& g) {
    check_index_range("index_add", index, dim, in_shape[dim]);  // the index may have been written since
    Tensor gx = zeros(in_shape, opts);
    if (g.numel() > 0) ISRN_DISPATCH(g.device(), index_add, g, dim, index, gx);
    return std::vector<Tensor>{gx};
  });
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_has_dims("gather", x);
  check_index("gather", index, x);
  ISRN_CHECK(index.dim() == x.dim(), "[gather] index must have the input's ", x.dim(), " dimensions, got shape ",
             shape_str(index.shape()));
  dim = wrap_dim(dim, x.dim(), "gather");
  for (int64_t d = 0; d < x.dim(); ++d)
    ISRN_CHECK(d == dim || index.size(d) <= x.size(d), "[gather] index shape ", shape_str(index.shape()),
               " exceeds input shape ", shape_str(x.shape()), " in dimension ", d);
  check_index_range("gather", index, dim, x.size(dim));
  Tensor out = empty(index.shape(), options_of(x));
  if (out.numel() > 0) ISRN_DISPATCH(x.device(), gather, x.detach(), dim, index, out);
  const Shape in_shape = x.shape();
  const TensorOptions opts = options_of(x);
  return record(out, "gather", {x}, [dim, index, in_shape, opts](const Tensor& g) {
    check_index_range("scatter_add", index, dim, in_shape[dim]);
    Tensor gx = zeros(in_shape, opts);
    if (g.numel() > 0) ISRN_DISPATCH(g.device(), scatter_add, g, dim, index, gx);
    return std::vector<Tensor>{gx};
  });
}

Tensor nonzero_flat(const Tensor& mask) {
  ISRN_CHECK(mask.defined(), "[nonzero_flat] undefined mask");
  ISRN_CHECK(mask.dtype() == DType::Bool, "[nonzero_flat] mask must be bool, got ", mask.dtype());
  if (mask.numel() == 0) return empty({0}, TensorOptions(DType::Int64).device(mask.device()));
  return ISRN_DISPATCH(mask.device(), nonzero_flat, mask.contiguous());
}

// Composed from nonzero_flat and index_select, so the selected values carry a gradient to x.
Tensor masked_select(const Tensor& x, const Tensor& mask) {
  ISRN_CHECK(x.defined() && mask.defined(), "[masked_select] undefined input");
  ISRN_CHECK(mask.dtype() == DType::Bool, "[masked_select] mask must be bool, got ", mask.dtype());
  ISRN_CHECK(mask.device() == x.device(), "[masked_select] mask is on ", mask.device(), " but the input is on ",
             x.device());
  const Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_select");
  const Tensor flat_index = nonzero_flat(mask.expand(shape).contiguous());
  return index_select(x.expand(shape).reshape({-1}), 0, flat_index);
}

}  // namespace isrn
