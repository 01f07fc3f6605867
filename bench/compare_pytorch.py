#!/usr/bin/python3
"""Runs isrn_bench and the same workloads in PyTorch (CPU) at one thread count, and prints a table:
case, isrn ms, torch ms, ratio (isrn / torch; below 1 means isrn is faster).

Each isrn_bench case name carries its parameters (op/label/N1_C3_H256_...), so the PyTorch workload is
rebuilt from the name alone; a name this script does not know is reported and skipped. Both sides are
timed in wall-clock time, PyTorch with torch.set_num_threads(n) and isrn with OMP_NUM_THREADS=n, case
by case (isrn, then PyTorch) so a row's two numbers see the same machine load, and each is the fastest
of several repetitions: on a shared machine, interference only ever adds time.

    /usr/bin/python3 bench/compare_pytorch.py --bench build/bench/isrn_bench --threads 2
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

INT = r"(\d+)"


def conv_workload(op, params):
    m = re.fullmatch(rf"N{INT}_C{INT}_H{INT}_W{INT}_Co{INT}_K{INT}x{INT}_S{INT}_P{INT}x{INT}x{INT}x{INT}_D{INT}", params)
    if not m:
        return None
    n, c, h, w, co, kh, kw, s, pt, pb, pl, pr, d = map(int, m.groups())
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, c, h, w, generator=g)
    wt = torch.randn(co, c, kh, kw, generator=g)
    b = torch.randn(co, generator=g)
    if pt != pb or pl != pr:  # torch pads symmetrically: pad the input explicitly first
        x = F.pad(x, (pl, pr, pt, pb))
        pt = pl = 0
    stride, padding, dilation = [s, s], [pt, pl], [d, d]
    y = F.conv2d(x, wt, b, stride, padding, dilation)
    gy = torch.randn(y.shape, generator=g)
    if op == "conv2d_forward":
        return lambda: F.conv2d(x, wt, b, stride, padding, dilation)
    mask = {"conv2d_backward_input": [True, False, False], "conv2d_backward_weight": [False, True, False]}[op]
    return lambda: torch.ops.aten.convolution_backward(gy, x, wt, [co], stride, padding, dilation, False, [0, 0], 1,
                                                       mask)


def pool_workload(op, params):
    m = re.fullmatch(rf"N{INT}_C{INT}_H{INT}_W{INT}_K{INT}_S{INT}_P{INT}_ceil{INT}", params)
    if not m:
        return None
    n, c, h, w, k, s, p, ceil = map(int, m.groups())
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(8))
    y, idx = F.max_pool2d(x, k, s, p, ceil_mode=bool(ceil), return_indices=True)
    gy = torch.randn(y.shape)
    if op == "max_pool2d_forward":
        return lambda: F.max_pool2d(x, k, s, p, ceil_mode=bool(ceil), return_indices=True)
    return lambda: torch.ops.aten.max_pool2d_with_indices_backward(gy, x, [k, k], [s, s], [p, p], [1, 1], bool(ceil),
                                                                   idx)


def resize_workload(op, params):
    m = re.fullmatch(rf"N{INT}_C{INT}_H{INT}_W{INT}_to{INT}x{INT}_(bilinear|nearest)_ac{INT}", params)
    if not m:
        return None
    n, c, h, w, oh, ow = map(int, m.groups()[:6])
    mode, ac = m.group(7), bool(int(m.group(8)))
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(9))
    gy = torch.randn(n, c, oh, ow)
    if op == "resize_forward":
        if mode == "bilinear":
            return lambda: F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=ac)
        return lambda: F.interpolate(x, size=(oh, ow), mode="nearest")
    if mode == "bilinear":
        return lambda: torch.ops.aten.upsample_bilinear2d_backward(gy, [oh, ow], [n, c, h, w], ac, None, None)
    return lambda: torch.ops.aten.upsample_nearest2d_backward(gy, [oh, ow], [n, c, h, w], None, None)


def matmul_workload(op, params):
    m = re.fullmatch(rf"B{INT}_M{INT}_K{INT}_N{INT}", params)
    if not m:
        return None
    bsz, mm, k, n = map(int, m.groups())
    g = torch.Generator().manual_seed(10)
    a = torch.randn(bsz, mm, k, generator=g).squeeze(0)
    b = torch.randn(bsz, k, n, generator=g).squeeze(0)
    return lambda: torch.matmul(a, b)


def group_norm_workload(op, params):
    m = re.fullmatch(rf"N{INT}_C{INT}_H{INT}_W{INT}_G{INT}", params)
    if not m:
        return None
    n, c, h, w, groups = map(int, m.groups())
    g = torch.Generator().manual_seed(11)
    x = torch.randn(n, c, h, w, generator=g)
    gamma, beta = torch.randn(c, generator=g), torch.randn(c, generator=g)
    if op == "group_norm_forward":
        return lambda: F.group_norm(x, groups, gamma, beta, 1e-5)
    # isrn_bench times forward + backward (the backward needs the forward's statistics): so does this.
    gy = torch.randn(x.shape, generator=g)
    leaves = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    return lambda: F.group_norm(leaves[0], groups, leaves[1], leaves[2], 1e-5).backward(gy)


WORKLOADS = {
    "conv2d_forward": conv_workload,
    "conv2d_backward_input": conv_workload,
    "conv2d_backward_weight": conv_workload,
    "max_pool2d_forward": pool_workload,
    "max_pool2d_backward": pool_workload,
    "resize_forward": resize_workload,
    "resize_backward": resize_workload,
    "matmul": matmul_workload,
    "group_norm_forward": group_norm_workload,
    "group_norm_backward": group_norm_workload,
}


def torch_min_ms(fn, min_time, repetitions):
    """Fastest per-call wall time over `repetitions` runs of about min_time seconds each."""
    fn()
    start = time.perf_counter()
    fn()
    per_call = max(time.perf_counter() - start, 1e-6)
    iterations = max(1, int(min_time / per_call))
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        samples.append((time.perf_counter() - start) / iterations * 1e3)
    return min(samples)


def list_isrn(bench, bench_filter):
    out = subprocess.run([bench, "--benchmark_list_tests=true", f"--benchmark_filter={bench_filter}"], check=True,
                         capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def isrn_min_ms(bench, name, threads, min_time, repetitions):
    """Fastest per-iteration wall time of one isrn_bench case over `repetitions` repetitions."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [bench, "--benchmark_format=json", f"--benchmark_filter=^{re.escape(name)}$",
           f"--benchmark_min_time={min_time}", f"--benchmark_repetitions={repetitions}"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type") == "iteration"]
    assert runs and all(b["time_unit"] == "ms" for b in runs), out
    return min(b["real_time"] for b in runs)


def machine():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default="build/bench/isrn_bench", help="path to isrn_bench")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--filter", default=".", help="regex passed to --benchmark_filter")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repetition")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--flag", type=float, default=1.5, help="mark ratios above this")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print(f"date: {datetime.date.today()}  machine: {machine()}  commit: {commit()}  threads: {args.threads}  "
          f"torch {torch.__version__}")
    print()
    print("| case | isrn ms | torch ms | ratio |")
    print("|---|---:|---:|---:|")
    # Case by case, isrn then PyTorch, so both sides of a row meet the same machine load.
    for name in list_isrn(args.bench, args.filter):
        op, label, params = name.split("/")[:3]
        make = WORKLOADS.get(op)
        fn = make(op, params) if make else None
        if fn is None:
            print(f"{name}: no PyTorch workload for this name, skipped", file=sys.stderr)
            continue
        isrn_ms = isrn_min_ms(args.bench, name, args.threads, args.min_time, args.repetitions)
        torch_ms = torch_min_ms(fn, args.min_time, args.repetitions)
        ratio = isrn_ms / torch_ms
        mark = " **over**" if ratio > args.flag else ""
        print(f"| {op} {label} `{params}` | {isrn_ms:.3f} | {torch_ms:.3f} | {ratio:.2f}{mark} |", flush=True)


if __name__ == "__main__":
    main()
