#!/usr/bin/env python3
"""Runs the workloads of bench/bench_cuda.cpp in PyTorch on the GPU (FP32, TF32 off, as isrn's cases) and
prints, for every case that both ran, isrn's and PyTorch's times and the ratio isrn/PyTorch.

    python3 bench/compare_pytorch_gpu.py --isrn-json bench_cuda.json [--markdown]

isrn's figures are read from Google Benchmark's JSON (--benchmark_format=json); PyTorch's are timed here
with CUDA events, the median of many repetitions after a warm-up. Case names must match bench_cuda.cpp.
"""
import argparse
import json
import math
import re
import statistics

import torch
import torch.nn.functional as F

try:
    import torchvision
except ImportError:  # NMS falls back to no comparison
    torchvision = None

DEV = "cuda"


def time_ms(fn, min_time=0.2, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times, total = [], 0.0
    while total < min_time * 1e3 or len(times) < 5:
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        t = start.elapsed_time(stop)
        times.append(t)
        total += t
    return statistics.median(times)


def g(*shape, seed=0):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    return torch.randn(*shape, device=DEV, generator=gen)


def cases():
    c = {}
    a, b = g(2, 256, 256, 256, seed=1), g(2, 256, 256, 256, seed=2)
    out = torch.empty_like(a)
    c["cuda/copy_d2d/P2x2"] = lambda a=a, out=out: out.copy_(a)
    c["cuda/add/P2x2"] = lambda a=a, b=b: a + b
    c["cuda/sum/P2x2"] = lambda a=a: a.sum()
    for name, n, h in [("P2x2", 2, 256), ("P3x2", 2, 128), ("P5x2", 2, 32), ("P7x2", 2, 8)]:
        x, gamma, beta = g(n, 256, h, h, seed=3), g(256, seed=4), g(256, seed=5)
        c[f"cuda/group_norm_fwd/{name}"] = (lambda x=x, gm=gamma, bt=beta: F.group_norm(x, 16, gm, bt))
        xr, gr, br = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
        y = F.group_norm(xr, 16, gr, br)
        dy = g(n, 256, h, h, seed=6)
        c[f"cuda/group_norm_bwd/{name}"] = (
            lambda y=y, xr=xr, gr=gr, br=br, dy=dy: torch.autograd.grad(y, (xr, gr, br), dy, retain_graph=True))
    x, gamma, beta = g(2, 256, 256, 256, seed=3), g(256, seed=4), g(256, seed=5)
    c["cuda/group_norm_relu_fwd/P2x2"] = lambda x=x, gm=gamma, bt=beta: F.relu(F.group_norm(x, 16, gm, bt))

    def focal(shape):
        logits = g(*shape, seed=7).requires_grad_(True)
        targets = (torch.rand(*shape, device=DEV) > 0.99).float()
        weights = torch.ones(*shape, device=DEV)

        def run():
            p = torch.sigmoid(logits)
            ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            p_t = p * targets + (1 - p) * (1 - targets)
            loss = ce * ((1 - p_t) ** 2)
            alpha_t = 0.25 * targets + 0.75 * (1 - targets)
            (alpha_t * loss * weights).sum().backward()
            logits.grad = None
        return run
    c["cuda/focal_loss/anchors_4x174720"] = focal((4, 174720))
    c["cuda/focal_loss/coco80_P2_4x160x256x256"] = focal((4, 160, 256, 256))

    if torchvision is not None:
        for n in (2000, 10000, 40000):
            gen = torch.Generator().manual_seed(11)
            xy = torch.rand(n, 2, generator=gen) * 1000
            wh = torch.rand(n, 2, generator=gen) * 192 + 8
            boxes = torch.cat([xy, xy + wh], 1).to(DEV)
            scores = torch.rand(n, generator=gen).to(DEV)
            c[f"cuda/nms/{n}"] = (lambda boxes=boxes, scores=scores: torchvision.ops.nms(boxes, scores, 0.4))

    conv_cases = [
        ("head3x3_256_P2", 1, 256, 256, 256, 256, 3, 3, 1),
        ("head3x3_256_P3", 1, 256, 128, 128, 256, 3, 3, 1),
        ("head3x3_256_P5", 1, 256, 32, 32, 256, 3, 3, 1),
        ("rfe1x3_64_P3", 1, 64, 128, 128, 64, 1, 3, 1),
        ("rfe5x1_64_P3", 1, 64, 128, 128, 64, 5, 1, 1),
        ("lateral1x1_512_256_P3", 1, 512, 128, 128, 256, 1, 1, 1),
        ("stem7x7_3_16_1024", 1, 3, 1024, 1024, 16, 7, 7, 1),
        ("c6_3x3s2_2048_1024_P5", 1, 2048, 32, 32, 1024, 3, 3, 2),
    ]
    for name, n, cin, h, w, cout, kh, kw, s in conv_cases:
        x, wt, bias = g(n, cin, h, w, seed=8), g(cout, cin, kh, kw, seed=9) * 0.05, g(cout, seed=10)
        pad = ((kh - 1) // 2, (kw - 1) // 2)
        oh, ow = (h + 2 * pad[0] - kh) // s + 1, (w + 2 * pad[1] - kw) // s + 1
        dy = g(n, cout, oh, ow, seed=12)
        # float32 (with a bias, as isrn's conv_fwd cases), then mixed precision's bfloat16 operands and results
        # (isrn's conv_*_bf16 cases, no bias); the gradient convolutions of every detector shape in both.
        for suffix, dtype, b in (("", torch.float32, bias), ("_bf16", torch.bfloat16, None)):
            xd, wd, dyd = x.to(dtype), wt.to(dtype), dy.to(dtype)
            c[f"cuda/conv_fwd{suffix}/torch/{name}"] = (
                lambda x=xd, wt=wd, b=b, s=s, pad=pad: F.conv2d(x, wt, b, stride=s, padding=pad))
            c[f"cuda/conv_bwd_input{suffix}/torch/{name}"] = (
                lambda dy=dyd, wt=wd, s=s, pad=pad, shape=(n, cin, h, w):
                torch.nn.grad.conv2d_input(shape, wt, dy, stride=s, padding=pad))
            c[f"cuda/conv_bwd_weight{suffix}/torch/{name}"] = (
                lambda dy=dyd, x=xd, s=s, pad=pad, shape=(cout, cin, kh, kw):
                torch.nn.grad.conv2d_weight(x, shape, dy, stride=s, padding=pad))
    ma, mb = g(2048, 2048, seed=1), g(2048, 2048, seed=2)
    c["cuda/matmul/2048"] = lambda: ma @ mb
    r = g(1, 256, 128, 128, seed=1)
    c["cuda/resize_bilinear_ac/P3toP2"] = lambda: F.interpolate(r, size=(256, 256), mode="bilinear", align_corners=True)
    mp = g(1, 32, 512, 512, seed=1)
    c["cuda/max_pool2d/3s2_32x512"] = lambda: F.max_pool2d(mp, 3, 2, 1)
    tk = g(174720, seed=1)
    c["cuda/topk/2000_of_174720"] = lambda: torch.topk(tk, 2000)
    sa, sb = g(2, 256, 256, 256, seed=1), g(2, 256, 256, 256, seed=2)
    c["cuda/sigmoid/P2x2"] = lambda sa=sa: torch.sigmoid(sa)
    c["cuda/gt_where/P2x2"] = lambda sa=sa, sb=sb: torch.where(sa > sb, sa, sb)
    parts = [g(1, 64, 128, 128, seed=10 + i) for i in range(4)]
    c["cuda/cat/P3x4"] = lambda parts=parts: torch.cat(parts, 1)
    boxes = g(174720, 4, seed=1)
    idx = torch.randint(0, 174720, (2000,), device=DEV)
    c["cuda/index_select/2000_of_174720x4"] = lambda boxes=boxes, idx=idx: boxes.index_select(0, idx)
    xs = g(4, 174720, seed=1)
    mask = xs > 2.0
    c["cuda/masked_select/4x174720"] = lambda xs=xs, mask=mask: xs.masked_select(mask)
    c["cuda/sort/174720"] = lambda tk=tk: torch.sort(tk, descending=True)
    dy = g(1, 256, 256, 256, seed=1)
    xr = g(1, 256, 128, 128, seed=2).requires_grad_(True)
    yr = F.interpolate(xr, size=(256, 256), mode="bilinear", align_corners=True)
    c["cuda/resize_bwd_bilinear_ac/P3toP2"] = lambda yr=yr, xr=xr, dy=dy: torch.autograd.grad(yr, xr, dy, retain_graph=True)
    xp = g(1, 32, 512, 512, seed=1).requires_grad_(True)
    yp = F.max_pool2d(xp, 3, 2, 1)
    dyp = g(*yp.shape, seed=2)
    c["cuda/max_pool2d_bwd/3s2_32x512"] = lambda yp=yp, xp=xp, dyp=dyp: torch.autograd.grad(yp, xp, dyp, retain_graph=True)
    if torchvision is not None:
        gen = torch.Generator().manual_seed(5)
        bxy, bwh = torch.rand(2000, 2, generator=gen) * 1000, torch.rand(2000, 2, generator=gen) * 392 + 8
        gxy, gwh = torch.rand(700, 2, generator=gen) * 1000, torch.rand(700, 2, generator=gen) * 92 + 8
        ba, bb = torch.cat([bxy, bxy + bwh], 1).to(DEV), torch.cat([gxy, gxy + gwh], 1).to(DEV)
        c["cuda/box_iou/2000x700"] = lambda ba=ba, bb=bb: torchvision.ops.box_iou(ba, bb)
    gen = torch.Generator().manual_seed(6)
    axy, awh = torch.rand(174720, 2, generator=gen) * 1000, torch.rand(174720, 2, generator=gen) * 392 + 8
    anc = torch.cat([axy, axy + awh], 1).to(DEV)
    bx = anc + g(174720, 4, seed=7) * 2

    def encode_decode(anc=anc, bx=bx, v=(0.1, 0.1, 0.2, 0.2)):
        # The same codec written with tensor ops (what a PyTorch detector does).
        aw, ah = anc[:, 2] - anc[:, 0], anc[:, 3] - anc[:, 1]
        acx, acy = anc[:, 0] + 0.5 * aw, anc[:, 1] + 0.5 * ah
        bw, bh = bx[:, 2] - bx[:, 0], bx[:, 3] - bx[:, 1]
        d = torch.stack([(bx[:, 0] + 0.5 * bw - acx) / aw / v[0], (bx[:, 1] + 0.5 * bh - acy) / ah / v[1],
                         torch.log(bw / aw) / v[2], torch.log(bh / ah) / v[3]], 1)
        cx, cy = d[:, 0] * v[0] * aw + acx, d[:, 1] * v[1] * ah + acy
        w = torch.exp(torch.clamp(d[:, 2] * v[2], max=4.135166556742356)) * aw
        h = torch.exp(torch.clamp(d[:, 3] * v[3], max=4.135166556742356)) * ah
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 1)
    c["cuda/encode_decode_boxes/174720"] = encode_decode
    if torchvision is not None:
        gen = torch.Generator().manual_seed(5)
        axy, awh = torch.rand(174720, 2, generator=gen) * 1000, torch.rand(174720, 2, generator=gen) * 392 + 8
        gxy, gwh = torch.rand(700, 2, generator=gen) * 1000, torch.rand(700, 2, generator=gen) * 92 + 8
        anchors = torch.cat([axy, axy + awh], 1).to(DEV)
        gts = torch.cat([gxy, gxy + gwh], 1).to(DEV)

        def match():
            iou = torchvision.ops.box_iou(anchors, gts)
            return iou.max(1), iou.max(0)
        c["cuda/match_anchors/174720x700"] = match
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isrn-json", required=True, help="Google Benchmark JSON of isrn_bench --benchmark_filter=cuda")
    ap.add_argument("--device", default="cuda", help="only cuda is supported")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    with open(args.isrn_json) as f:
        isrn = {}
        for b in json.load(f)["benchmarks"]:
            if b.get("error_occurred"):
                continue
            scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b.get("time_unit", "ns")]
            name = re.sub(r"/(min_time|manual_time)[^/]*", "", b["name"])
            isrn[name] = (b["real_time"] * scale, b)
    torch_cases = cases()
    rows = []
    for name, (ms, rec) in isrn.items():
        # isrn's conv cases name the backend (own/cudnn); PyTorch's the "torch" backend.
        parts = name.split("/")
        key = "/".join(parts[:2] + ["torch"] + parts[3:]) if parts[1].startswith("conv_") else name
        fn = torch_cases.get(key)
        t = time_ms(fn) if fn else math.nan
        extra = ", ".join(f"{k} {rec[k]:.2f}" for k in ("GB/s", "TFLOP/s") if k in rec)
        if rec.get("cudnn_ran") == 0:
            extra += " (cuDNN declined the problem: isrn's own kernels ran)"
        rows.append((name, ms, t, ms / t if fn else math.nan, extra))
    dev = torch.cuda.get_device_name()
    if args.markdown:
        print(f"| case ({dev}) | isrn ms | PyTorch {torch.__version__} ms | isrn/PyTorch | isrn throughput |")
        print("|---|---:|---:|---:|---|")
        for n, a, b, r, e in rows:
            print(f"| {n} | {a:.4f} | {b:.4f} | {r:.2f} | {e} |")
    else:
        print(f"{'case':58s} {'isrn ms':>10s} {'torch ms':>10s} {'ratio':>7s}  throughput   [{dev}]")
        for n, a, b, r, e in rows:
            print(f"{n:58s} {a:10.4f} {b:10.4f} {r:7.2f}  {e}")


if __name__ == "__main__":
    main()
