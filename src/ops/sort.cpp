// Front ends of sort, argsort and topk along the last dimension. The input is arranged as
// contiguous rows for the kernels; when it requires grad, the values are re-read from it with
// gather at the returned indices, so they carry a gradient (scatter_add back to the input).
#include "backend.hpp"
#include "isrn/autograd/node.hpp"
#include "isrn/ops/boxes.hpp"
#include "isrn/ops/shape.hpp"

namespace isrn {

namespace {

struct Rows {
  Tensor rows;     // contiguous [M, N]
  Shape out_base;  // the input's shape without its last dimension (empty for a 0-d input)
};

Rows as_rows(const Tensor& x, const char* op) {
  ISRN_CHECK(x.defined(), "[", op, "] undefined input");
  ISRN_CHECK(x.dtype() != DType::Bool, "[", op, "] does not support bool tensors");
  const int64_t n = x.dim() == 0 ? 1 : x.size(-1);
  Shape base = x.shape();
  if (!base.empty()) base.pop_back();
  const int64_t m = shape_numel(base);
  if (m * n == 0) return {empty({m, n}, TensorOptions(x.dtype()).device(x.device())), base};
  return {x.detach().reshape({m, n}).contiguous(), base};
}

Shape with_last(Shape base, int64_t last, const Tensor& x) {
  if (x.dim() == 0) return {};
  base.push_back(last);
  return base;
}

// Values at `indices` ([M, k] int64) of x's rows, differentiable when x requires grad.
Tensor values_with_grad(const Tensor& x, const Tensor& indices, const Tensor& values) {
  if (!autograd::needs_grad({&x})) return values;
  const int64_t n = x.dim() == 0 ? 1 : x.size(-1);
  const Tensor rows = x.reshape({indices.size(0), n});
  return gather(rows, 1, indices);
}

ValuesIndices sort_impl(const Tensor& x, bool descending, const char* op) {
  Rows r = as_rows(x, op);
  const int64_t m = r.rows.size(0), n = r.rows.size(1);
  Tensor values = empty({m, n}, TensorOptions(x.dtype()).device(x.device()));
  Tensor indices = empty({m, n}, TensorOptions(DType::Int64).device(x.device()));
  if (values.numel() > 0) ISRN_DISPATCH(x.device(), sort_rows, r.rows, descending, values, indices);
  values = values_with_grad(x, indices, values);
  const Shape out_shape = with_last(r.out_base, n, x);
  return {values.reshape(out_shape), indices.reshape(out_shape)};
}

}  // namespace

ValuesIndices sort(const Tensor& x, bool descending) { return sort_impl(x, descending, "sort"); }

Tensor argsort(const Tensor& x, bool descending) { return sort_impl(x.detach(), descending, "argsort").indices; }

ValuesIndices topk(const Tensor& x, int64_t k, bool largest) {
  Rows r = as_rows(x, "topk");
  const int64_t m = r.rows.size(0), n = r.rows.size(1);
  ISRN_CHECK(k >= 0 && k <= n, "[topk] k = ", k, " is out of range for a last dimension of size ", n);
  ISRN_CHECK(x.dim() > 0 || k == 1, "[topk] a zero-dimensional input needs k = 1, got k = ", k);
  Tensor values = empty({m, k}, TensorOptions(x.dtype()).device(x.device()));
  Tensor indices = empty({m, k}, TensorOptions(DType::Int64).device(x.device()));
  if (values.numel() > 0) ISRN_DISPATCH(x.device(), topk_rows, r.rows, k, largest, values, indices);
  values = values_with_grad(x, indices, values);
  const Shape out_shape = with_last(r.out_base, k, x);
  return {values.reshape(out_shape), indices.reshape(out_shape)};
}

}  // namespace isrn
