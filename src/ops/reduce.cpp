#include "isrn/ops/reduce.hpp"

#include <algorithm>

#include "backend.hpp"
#include "isrn/autograd/node.hpp"
#include "isrn/ops/elementwise.hpp"

namespace isrn {

using autograd::record;

namespace {

// x arranged as contiguous [kept elements, reduced elements] rows, with the output shapes.
struct Rows {
  Tensor rows;
  Shape keep_shape;  // reduced dims as 1
  Shape out_shape;   // reduced dims removed unless keepdim
};

Rows to_rows(const Tensor& x, std::vector<int64_t> dims, bool keepdim, const char* op) {
  const int64_t nd = x.dim();
  if (dims.empty())
    for (int64_t d = 0; d < nd; ++d) dims.push_back(d);
  std::vector<bool> reduced(std::max<int64_t>(nd, 1), false);
  for (int64_t& d : dims) {
    d = wrap_dim(d, nd, op);
    ISRN_CHECK(!reduced[d], "[", op, "] dim ", d, " listed twice");
    reduced[d] = true;
  }
  std::vector<int64_t> order;
  Rows r;
  int64_t kept = 1, red = 1;
  for (int64_t d = 0; d < nd; ++d)
    if (!reduced[d]) {
      order.push_back(d);
      kept *= x.shape()[d];
    }
  for (int64_t d = 0; d < nd; ++d)
    if (reduced[d]) {
      order.push_back(d);
      red *= x.shape()[d];
    }
  for (int64_t d = 0; d < nd; ++d) {
    r.keep_shape.push_back(reduced[d] ? 1 : x.shape()[d]);
    if (!reduced[d] || keepdim) r.out_shape.push_back(reduced[d] ? 1 : x.shape()[d]);
  }
  r.rows = x.detach().permute(order).contiguous().view({kept, red});
  return r;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ISRN_CHECK(x.defined(), "[sum] undefined input");
  const Tensor input = is_floating(x.dtype()) ? x : x.to(DType::Int64);
  Rows r = to_rows(input, dims, keepdim, "sum");
  Tensor out = empty({r.rows.size(0)}, TensorOptions(input.dtype()).device(x.device()));
  Tensor no_indices;
  if (r.rows.size(1) == 0) out.zero_();
  else if (out.numel() > 0) ISRN_DISPATCH(x.device(), reduce_rows, ReduceOp::Sum, r.rows, out, no_indices);
  out = out.view(r.out_shape);
  const Shape in_shape = x.shape(), keep_shape = r.keep_shape;
  return record(out, "sum", {x}, [in_shape, keep_shape](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(keep_shape).expand(in_shape).contiguous()};
  });
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ISRN_CHECK(x.defined() && is_floating(x.dtype()), "[mean] expects a float32 or float64 tensor");
  const Tensor s = sum(x, dims, keepdim);
  const int64_t count = s.numel() == 0 ? 0 : x.numel() / s.numel();
  return div(s, static_cast<double>(count));
}

namespace {

ValuesIndices extremum(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  const char* name = op == ReduceOp::Max ? "max" : "min";
  ISRN_CHECK(x.defined(), "[", name, "] undefined input");
  ISRN_CHECK(x.dtype() != DType::Bool, "[", name, "] does not support bool tensors");
  dim = wrap_dim(dim, x.dim(), name);
  ISRN_CHECK(x.dim() == 0 || x.shape()[dim] > 0, "[", name, "] cannot reduce an empty dimension ", dim,
             " of shape ", shape_str(x.shape()));
  Rows r = to_rows(x, {dim}, keepdim, name);
  Tensor values = empty({r.rows.size(0)}, TensorOptions(x.dtype()).device(x.device()));
  Tensor indices = empty({r.rows.size(0)}, TensorOptions(DType::Int64).device(x.device()));
  if (values.numel() > 0) ISRN_DISPATCH(x.device(), reduce_rows, op, r.rows, values, indices);
  values = values.view(r.out_shape);
  indices = indices.view(r.out_shape);
  if (autograd::needs_grad({&x})) {
    // The gradient goes to the chosen index: a one-hot mask along dim built by comparison.
    const Shape in_shape = x.shape(), keep_shape = r.keep_shape;
    Tensor idx = indices.reshape(keep_shape);
    const int64_t nd = x.dim();
    values = record(values, name, {x}, [in_shape, keep_shape, idx, dim, nd](const Tensor& g) {
      Shape pos_shape(std::max<int64_t>(nd, 1), 1);
      if (nd > 0) pos_shape[dim] = in_shape[dim];
      Tensor pos = arange(nd > 0 ? in_shape[dim] : 1, TensorOptions(DType::Int64).device(g.device()))
                       .view(pos_shape)
                       .reshape(nd > 0 ? pos_shape : Shape{});
      Tensor mask = eq(pos, idx);
      Tensor zero = zeros({}, TensorOptions(g.dtype()).device(g.device()));
      return std::vector<Tensor>{where(mask, g.reshape(keep_shape), zero).expand(in_shape).contiguous()};
    });
  }
  return {values, indices};
}

}  // namespace

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) { return extremum(ReduceOp::Max, x, dim, keepdim); }
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) { return extremum(ReduceOp::Min, x, dim, keepdim); }
Tensor max(const Tensor& x) { return max(x.reshape({-1}), 0).values; }
Tensor min(const Tensor& x) { return min(x.reshape({-1}), 0).values; }
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return max(x.detach(), dim, keepdim).indices; }
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) { return min(x.detach(), dim, keepdim).indices; }

}  // namespace isrn
