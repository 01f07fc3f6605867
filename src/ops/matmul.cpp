// Front end of matmul. Operands reach the kernel as [B, rows, cols] with unit stride along the
// last dimension (any row and batch strides), or as the transpose of such a tensor with the trans
// flag set; a transposed view therefore costs no copy, and the gradients reuse the forward
// operands through the flags: d a = g · op(b)ᵀ, d b = op(a)ᵀ · g.
#include "isrn/ops/matmul.hpp"

#include "backend.hpp"
#include "isrn/autograd/autocast.hpp"
#include "isrn/autograd/node.hpp"

namespace isrn {

namespace {

// A [B, R, C] operand as the kernel takes it: `stored` is t itself (trans = false) or t's
// transpose (trans = true), whichever has unit stride along its last dimension.
struct Operand {
  Tensor stored;
  bool trans = false;
};

bool rows_are_dense(const Tensor& t) {
  const int64_t rows = t.size(1), cols = t.size(2);
  return (cols == 1 || t.stride(2) == 1) && (rows == 1 || t.stride(1) >= cols);
}

Operand as_operand(const Tensor& t) {
  if (rows_are_dense(t)) return {t, false};
  Tensor tt = t.transpose(1, 2);
  if (rows_are_dense(tt)) return {tt, true};
  return {t.contiguous(), false};
}

// op(a) · op(b) for kernel operands, into a fresh [B, M, N].
Tensor gemm(const Operand& a, const Operand& b) {
  const Tensor& sa = a.stored;
  const Tensor& sb = b.stored;
  const int64_t batch = sa.size(0);
  const int64_t m = a.trans ? sa.size(2) : sa.size(1), k = a.trans ? sa.size(1) : sa.size(2);
  const int64_t n = b.trans ? sb.size(1) : sb.size(2);
  Tensor out = empty({batch, m, n}, TensorOptions(sa.dtype()).device(sa.device()));
  if (out.numel() == 0) return out;
  if (k == 0) return out.zero_();
  ISRN_DISPATCH(sa.device(), matmul, sa, a.trans, sb, b.trans, out);
  return out;
}

// op(x) transposed, as an operand: the same storage with the flag flipped.
Operand flipped(const Operand& x) { return {x.stored, !x.trans}; }

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  ISRN_CHECK(a.defined() && b.defined(), "[matmul] undefined operand");
  check_floating("matmul", "a", a, /*allow_bfloat16=*/true);
  ISRN_CHECK(a.dtype() == b.dtype(), "[matmul] operands have different dtypes: ", a.dtype(), " and ", b.dtype());
  ISRN_CHECK(a.device() == b.device(), "[matmul] operands are on different devices: ", a.device(), " and ",
             b.device());
  ISRN_CHECK((a.dim() == 2 && b.dim() == 2) || (a.dim() == 3 && b.dim() == 3),
             "[matmul] expects two 2-D or two 3-D operands, got shapes ", shape_str(a.shape()), " and ",
             shape_str(b.shape()));
  if (Autocast::compute_dtype() == DType::BFloat16 && a.dtype() == DType::Float32) {
    // Mixed precision: bfloat16 operands, float32 result (isrn/autograd/autocast.hpp).
    return matmul(a.to(DType::BFloat16), b.to(DType::BFloat16)).to(DType::Float32);
  }
  const bool batched = a.dim() == 3;
  ISRN_CHECK(!batched || a.size(0) == b.size(0), "[matmul] batch sizes differ: ", shape_str(a.shape()), " and ",
             shape_str(b.shape()));
  ISRN_CHECK(a.size(-1) == b.size(-2), "[matmul] inner dimensions differ: ", shape_str(a.shape()), " · ",
             shape_str(b.shape()));
  const Tensor a3 = batched ? a.detach() : a.detach().unsqueeze(0);
  const Tensor b3 = batched ? b.detach() : b.detach().unsqueeze(0);
  const Operand oa = as_operand(a3), ob = as_operand(b3);
  Tensor out = gemm(oa, ob);
  if (!batched) out = out.view({out.size(1), out.size(2)});
  if (!autograd::needs_grad({&a, &b})) return out;
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return autograd::record(out, "matmul", {a, b}, [oa, ob, ga, gb, batched](const Tensor& g) {
    const Operand og = as_operand(batched ? g : g.unsqueeze(0));
    Tensor da = ga ? gemm(og, flipped(ob)) : Tensor();
    Tensor db = gb ? gemm(flipped(oa), og) : Tensor();
    if (!batched) {
      if (da.defined()) da = da.view({da.size(1), da.size(2)});
      if (db.defined()) db = db.view({db.size(1), db.size(2)});
    }
    return std::vector<Tensor>{da, db};
  });
}

}  // namespace isrn
