// CUDA benchmarks at the detector's shapes for a 1024×1024 input, timed with CUDA events (manual
// time). Each case reports the bytes it must move at least and the FLOPs it must do, so achieved
// GB/s and TFLOP/s print; bench/compare_pytorch_gpu.py runs the same workloads in PyTorch and prints
// isrn/PyTorch ratios. Names are "cuda/<op>/<case>" and must match that script's.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <functional>
#include <string>

#include "cuda/conv_cudnn.hpp"  // whether cuDNN itself ran a case (src/, for this one question)
#include "isrn/cuda/conv.hpp"
#include "isrn/cuda/runtime.hpp"
#include "isrn/isrn.hpp"

namespace {

using namespace isrn;

const TensorOptions kGpu = TensorOptions(DType::Float32).device(Device::cuda());

Tensor gpu_randn(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  return randn(shape, kGpu, &g);
}

// Times fn with CUDA events around each iteration; reports GB/s and TFLOP/s from the minimal bytes
// and FLOPs of the workload.
void time_cuda(benchmark::State& state, const std::function<void()>& fn, double bytes, double flops) {
  if (!cuda_available()) {
    state.SkipWithError("no CUDA GPU present");
    return;
  }
  NoGradGuard no_grad;
  fn();  // warm-up: first-use allocations, cuBLAS/cuDNN plans
  cudaDeviceSynchronize();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  double total = 0.0;
  for (auto _ : state) {
    cudaEventRecord(start);
    fn();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms * 1e-3);
    total += ms * 1e-3;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  const double iters = static_cast<double>(state.iterations());
  if (bytes > 0) state.counters["GB/s"] = bytes * iters / total / 1e9;
  if (flops > 0) state.counters["TFLOP/s"] = flops * iters / total / 1e12;
}

void reg(const std::string& name, std::function<void(benchmark::State&)> fn) {
  benchmark::RegisterBenchmark(name.c_str(), [fn](benchmark::State& s) { fn(s); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->MinTime(0.2);
}

struct ConvCase {
  const char* name;
  int64_t n, c_in, h, w, c_out, kh, kw, stride;
};
// The detector's convolutions at 1024² (batch 1): FPN/head 3×3 at P2–P5, RFE branches, laterals, stem, C6.
const ConvCase kConvCases[] = {
    {"head3x3_256_P2", 1, 256, 256, 256, 256, 3, 3, 1},
    {"head3x3_256_P3", 1, 256, 128, 128, 256, 3, 3, 1},
    {"head3x3_256_P5", 1, 256, 32, 32, 256, 3, 3, 1},
    {"rfe1x3_64_P3", 1, 64, 128, 128, 64, 1, 3, 1},
    {"rfe5x1_64_P3", 1, 64, 128, 128, 64, 5, 1, 1},
    {"lateral1x1_512_256_P3", 1, 512, 128, 128, 256, 1, 1, 1},
    {"stem7x7_3_16_1024", 1, 3, 1024, 1024, 16, 7, 7, 1},
    {"c6_3x3s2_2048_1024_P5", 1, 2048, 32, 32, 1024, 3, 3, 2},
};

double conv_flops(const ConvCase& c, const Conv2dParams& p) {
  return 2.0 * c.n * c.c_out * p.out_h(c.h, c.kh) * p.out_w(c.w, c.kw) * c.c_in * c.kh * c.kw;
}

void register_all() {
  const double p2_bytes = 2.0 * 256 * 256 * 256 * 4;  // [2,256,256,256] float32, one pass
  reg("cuda/copy_d2d/P2x2", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor a = gpu_randn({2, 256, 256, 256}, 1), b = empty_like(a);
    time_cuda(s, [&] { cudaMemcpyAsync(b.raw_data(), a.raw_data(), a.numel() * 4, cudaMemcpyDeviceToDevice); },
              2 * p2_bytes, 0);
  });
  reg("cuda/add/P2x2", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor a = gpu_randn({2, 256, 256, 256}, 1), b = gpu_randn({2, 256, 256, 256}, 2);
    time_cuda(s, [&] { (void)add(a, b); }, 3 * p2_bytes, 0);
  });
  reg("cuda/sum/P2x2", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor a = gpu_randn({2, 256, 256, 256}, 1);
    time_cuda(s, [&] { (void)sum(a); }, p2_bytes, 0);
  });
  struct GnCase {
    const char* name;
    int64_t n, h;
  };
  for (GnCase g : {GnCase{"P2x2", 2, 256}, GnCase{"P3x2", 2, 128}, GnCase{"P5x2", 2, 32}, GnCase{"P7x2", 2, 8}}) {
    const double bytes = 1.0 * g.n * 256 * g.h * g.h * 4;
    reg(std::string("cuda/group_norm_fwd/") + g.name, [=](benchmark::State& s) {
      if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
      Tensor x = gpu_randn({g.n, 256, g.h, g.h}, 3), gamma = gpu_randn({256}, 4), beta = gpu_randn({256}, 5);
      time_cuda(s, [&] { (void)group_norm(x, 16, gamma, beta); }, 2 * bytes, 0);
    });
    reg(std::string("cuda/group_norm_bwd/") + g.name, [=](benchmark::State& s) {
      if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
      Tensor x = gpu_randn({g.n, 256, g.h, g.h}, 3), gamma = gpu_randn({256}, 4), beta = gpu_randn({256}, 5);
      Tensor dy = gpu_randn({g.n, 256, g.h, g.h}, 6);
      x.set_requires_grad(true);
      gamma.set_requires_grad(true);
      beta.set_requires_grad(true);
      GradMode::set_enabled(true);
      Tensor y = group_norm(x, 16, gamma, beta);
      GradMode::set_enabled(false);
      // The backward alone; minimal traffic of the fused kernel: read x and dy, write dx.
      time_cuda(s, [&] {
        y.backward(dy, /*retain_graph=*/true);
        x.set_grad(Tensor());
        gamma.set_grad(Tensor());
        beta.set_grad(Tensor());
      }, 3 * bytes, 0);
    });
  }
  reg("cuda/group_norm_relu_fwd/P2x2", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor x = gpu_randn({2, 256, 256, 256}, 3), gamma = gpu_randn({256}, 4), beta = gpu_randn({256}, 5);
    time_cuda(s, [&] { (void)group_norm(x, 16, gamma, beta, 1e-5, true); }, 2 * p2_bytes, 0);
  });
  struct FocalCase {
    const char* name;
    Shape shape;
  };
  for (const FocalCase& f : {FocalCase{"anchors_4x174720", {4, 174720}},
                             FocalCase{"coco80_P2_4x160x256x256", {4, 160, 256, 256}}}) {
    reg(std::string("cuda/focal_loss/") + f.name, [=](benchmark::State& s) {
      if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
      Tensor logits = gpu_randn(f.shape, 7);
      Tensor targets = gt(rand(f.shape, kGpu), 0.99).to(DType::Float32);
      Tensor weights = ones(f.shape, kGpu);
      Tensor x = logits.detach().set_requires_grad(true);
      const double n = static_cast<double>(logits.numel());
      // One pass: read logits, targets, weights; write the gradient (the loss sum is a scalar).
      time_cuda(s, [&] {
        GradMode::set_enabled(true);
        Tensor loss = sigmoid_focal_loss(x, targets, weights, 0.25, 2.0, Reduction::Sum);
        GradMode::set_enabled(false);
        loss.backward();
        x.set_grad(Tensor());
      }, 16 * n, 0);
    });
  }
  for (int64_t n : {2000, 10000, 40000}) {
    reg("cuda/nms/" + std::to_string(n), [=](benchmark::State& s) {
      if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
      // Face-like boxes: 8–200 px on a 1024² image, many overlapping.
      Generator g(11);
      Tensor xy = rand({n, 2}, {}, &g, 0.0, 1000.0), wh = rand({n, 2}, {}, &g, 8.0, 200.0);
      Tensor boxes = cat({xy, add(xy, wh)}, 1).to(Device::cuda());
      Tensor scores = rand({n}, {}, &g).to(Device::cuda());
      time_cuda(s, [&] { (void)nms(boxes, scores, 0.4); }, 0, 0);
    });
  }
  for (const ConvCase& c : kConvCases) {
    const Conv2dParams p = [&] {
      Conv2dParams q = Conv2dParams::same(c.kh, c.kw);
      q.stride = {c.stride, c.stride};
      return q;
    }();
    // float32 on both backends (TF32 off: FP32 math, as the comparison with PyTorch's FP32), cuDNN once
    // more with FFT/Winograd allowed (as PyTorch allows them: the like-for-like row), then mixed precision's
    // bfloat16 operands and results on cuDNN's tensor cores (the own kernels only widen bfloat16 to float32,
    // so they are not timed in bfloat16). Each with the gradient convolutions of the shape.
    struct Variant {
      cuda::ConvBackend backend;
      DType dtype;
      bool transforms;
    };
    for (const Variant v : {Variant{cuda::ConvBackend::Own, DType::Float32, false},
                            Variant{cuda::ConvBackend::Cudnn, DType::Float32, false},
                            Variant{cuda::ConvBackend::Cudnn, DType::Float32, true},
                            Variant{cuda::ConvBackend::Cudnn, DType::BFloat16, false}}) {
      const std::string bname = v.backend == cuda::ConvBackend::Own ? "own" : v.transforms ? "cudnn_transforms" : "cudnn";
      const std::string suffix = v.dtype == DType::BFloat16 ? "_bf16" : "";
      auto setup = [=](benchmark::State& s) {
        if (!cuda_available()) {
          s.SkipWithError("no CUDA GPU present");
          return false;
        }
        if (v.backend == cuda::ConvBackend::Cudnn && !cuda::conv_cudnn_built()) {
          s.SkipWithError("built without cuDNN");
          return false;
        }
        cuda::set_conv_backend(v.backend);
        cuda::set_allow_tf32(false);
        cuda::set_allow_conv_transforms(v.transforms);
        return true;
      };
      const Shape x_shape{c.n, c.c_in, c.h, c.w}, w_shape{c.c_out, c.c_in, c.kh, c.kw};
      const Shape y_shape{c.n, c.c_out, p.out_h(c.h, c.kh), p.out_w(c.w, c.kw)};
      // cuDNN may hand a problem back to the own kernels (some bfloat16 shapes); the counter says whether
      // a cudnn row timed cuDNN (1) or the own kernels (0).
      auto note_cudnn = [=](benchmark::State& s, auto&& run_cudnn) {
#if ISRN_WITH_CUDNN
        if (v.backend == cuda::ConvBackend::Cudnn) s.counters["cudnn_ran"] = run_cudnn() ? 1 : 0;
#else
        (void)s;
        (void)run_cudnn;
#endif
      };
      reg("cuda/conv_fwd" + suffix + "/" + bname + "/" + c.name, [=](benchmark::State& s) {
        if (!setup(s)) return;
        Tensor x = gpu_randn(x_shape, 8).to(v.dtype), w = mul(gpu_randn(w_shape, 9), 0.05).to(v.dtype);
        // A bias in float32 (bfloat16 convolutions take none: mixed precision adds it in float32 afterwards).
        Tensor b = v.dtype == DType::Float32 ? gpu_randn({c.c_out}, 10) : Tensor();
        time_cuda(s, [&] { (void)conv2d(x, w, b, p); }, 0, conv_flops(c, p));
        note_cudnn(s, [&] {
          Tensor y = empty(y_shape, TensorOptions(v.dtype).device(x.device()));
          return cuda::cudnn_conv::conv2d_forward(x, w, b, p, y);
        });
      });
      reg("cuda/conv_bwd_input" + suffix + "/" + bname + "/" + c.name, [=](benchmark::State& s) {
        if (!setup(s)) return;
        Tensor w = gpu_randn(w_shape, 9).to(v.dtype), dy = gpu_randn(y_shape, 12).to(v.dtype);
        time_cuda(s, [&] { (void)conv2d_backward_input(dy, w, x_shape, p); }, 0, conv_flops(c, p));
        note_cudnn(s, [&] {
          Tensor dx = empty(x_shape, TensorOptions(v.dtype).device(w.device()));
          return cuda::cudnn_conv::conv2d_backward_input(dy, w, p, dx);
        });
      });
      reg("cuda/conv_bwd_weight" + suffix + "/" + bname + "/" + c.name, [=](benchmark::State& s) {
        if (!setup(s)) return;
        Tensor x = gpu_randn(x_shape, 8).to(v.dtype), dy = gpu_randn(y_shape, 12).to(v.dtype);
        time_cuda(s, [&] { (void)conv2d_backward_weight(dy, x, w_shape, p); }, 0, conv_flops(c, p));
        note_cudnn(s, [&] {
          Tensor dw = empty(w_shape, TensorOptions(v.dtype).device(x.device()));
          return cuda::cudnn_conv::conv2d_backward_weight(dy, x, p, dw);
        });
      });
    }
  }
  reg("cuda/matmul/2048", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    cuda::set_allow_tf32(false);
    Tensor a = gpu_randn({2048, 2048}, 1), b = gpu_randn({2048, 2048}, 2);
    time_cuda(s, [&] { (void)matmul(a, b); }, 0, 2.0 * 2048 * 2048 * 2048);
  });
  reg("cuda/resize_bilinear_ac/P3toP2", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor x = gpu_randn({1, 256, 128, 128}, 1);
    time_cuda(s, [&] { (void)resize(x, 256, 256, ResizeMode::Bilinear, true); }, (1 + 4) * 256.0 * 128 * 128 * 4, 0);
  });
  reg("cuda/max_pool2d/3s2_32x512", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor x = gpu_randn({1, 32, 512, 512}, 1);
    time_cuda(s, [&] { (void)max_pool2d(x, Pool2dParams{{3, 3}, {2, 2}, {1, 1}, false}); },
              (1 + 0.25) * 32.0 * 512 * 512 * 4, 0);
  });
  reg("cuda/topk/2000_of_174720", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor x = gpu_randn({174720}, 1);
    time_cuda(s, [&] { (void)topk(x, 2000); }, 0, 0);
  });
  const double p2 = 2.0 * 256 * 256 * 256;  // elements of a [2,256,256,256] map
  reg("cuda/sigmoid/P2x2", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor a = gpu_randn({2, 256, 256, 256}, 1);
    time_cuda(s, [&] { (void)sigmoid(a); }, 8 * p2, 0);
  });
  reg("cuda/gt_where/P2x2", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor a = gpu_randn({2, 256, 256, 256}, 1), b = gpu_randn({2, 256, 256, 256}, 2);
    time_cuda(s, [&] { (void)where(gt(a, b), a, b); }, (8 + 1) * p2 + (1 + 12) * p2, 0);
  });
  reg("cuda/cat/P3x4", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    std::vector<Tensor> parts;
    for (int i = 0; i < 4; ++i) parts.push_back(gpu_randn({1, 64, 128, 128}, 10 + i));
    time_cuda(s, [&] { (void)cat(parts, 1); }, 2.0 * 4 * 64 * 128 * 128 * 4, 0);
  });
  reg("cuda/index_select/2000_of_174720x4", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor boxes = gpu_randn({174720, 4}, 1);
    Generator g(3);
    Tensor idx = rand({2000}, TensorOptions(DType::Float64), &g, 0.0, 174720.0).to(DType::Int64).to(Device::cuda());
    time_cuda(s, [&] { (void)index_select(boxes, 0, idx); }, 2000.0 * (16 + 16 + 8), 0);
  });
  reg("cuda/masked_select/4x174720", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor x = gpu_randn({4, 174720}, 1);
    Tensor mask = gt(x, 2.0);  // about 2 % of the anchors, like positives
    time_cuda(s, [&] { (void)masked_select(x, mask); }, 5.0 * 4 * 174720, 0);
  });
  reg("cuda/sort/174720", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor x = gpu_randn({174720}, 1);
    time_cuda(s, [&] { (void)sort(x, true); }, 0, 0);
  });
  reg("cuda/box_iou/2000x700", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Generator g(5);
    Tensor axy = rand({2000, 2}, {}, &g, 0.0, 1000.0), awh = rand({2000, 2}, {}, &g, 8.0, 400.0);
    Tensor gxy = rand({700, 2}, {}, &g, 0.0, 1000.0), gwh = rand({700, 2}, {}, &g, 8.0, 100.0);
    Tensor a = cat({axy, add(axy, awh)}, 1).to(Device::cuda()), b = cat({gxy, add(gxy, gwh)}, 1).to(Device::cuda());
    time_cuda(s, [&] { (void)box_iou(a, b); }, 2000.0 * 700 * 4, 0);
  });
  reg("cuda/encode_decode_boxes/174720", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Generator g(6);
    Tensor xy = rand({174720, 2}, {}, &g, 0.0, 1000.0), wh = rand({174720, 2}, {}, &g, 8.0, 400.0);
    Tensor anchors = cat({xy, add(xy, wh)}, 1).to(Device::cuda());
    Tensor boxes = add(anchors, mul(gpu_randn({174720, 4}, 7), 2.0));
    time_cuda(s, [&] { (void)decode_boxes(encode_boxes(boxes, anchors), anchors); }, 174720.0 * 16 * 6, 0);
  });
  reg("cuda/resize_bwd_bilinear_ac/P3toP2", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Tensor dy = gpu_randn({1, 256, 256, 256}, 1);
    time_cuda(s, [&] { (void)resize_backward(dy, {1, 256, 128, 128}, ResizeMode::Bilinear, true); },
              (4 + 1) * 256.0 * 128 * 128 * 4, 0);
  });
  reg("cuda/max_pool2d_bwd/3s2_32x512", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    // Through autograd, as training runs it (and as the PyTorch side's autograd.grad).
    Tensor x = gpu_randn({1, 32, 512, 512}, 1).set_requires_grad(true);
    const Tensor y = max_pool2d(x, Pool2dParams{{3, 3}, {2, 2}, {1, 1}, false});
    Tensor dy = gpu_randn(y.shape(), 2);
    time_cuda(s, [&] {
      x.set_grad(Tensor());
      y.backward(dy, /*retain_graph=*/true);
    }, (1 + 0.25 * 3) * 32.0 * 512 * 512 * 4, 0);
  });
  reg("cuda/match_anchors/174720x700", [=](benchmark::State& s) {
    if (!cuda_available()) return s.SkipWithError("no CUDA GPU present");
    Generator g(5);
    Tensor axy = rand({174720, 2}, {}, &g, 0.0, 1000.0), awh = rand({174720, 2}, {}, &g, 8.0, 400.0);
    Tensor gxy = rand({700, 2}, {}, &g, 0.0, 1000.0), gwh = rand({700, 2}, {}, &g, 8.0, 100.0);
    Tensor anchors = cat({axy, add(axy, awh)}, 1).to(Device::cuda());
    Tensor gt_boxes = cat({gxy, add(gxy, gwh)}, 1).to(Device::cuda());
    time_cuda(s, [&] { (void)match_anchors(anchors, gt_boxes); }, 0, 0);
  });
}

const bool registered = (register_all(), true);

}  // namespace
