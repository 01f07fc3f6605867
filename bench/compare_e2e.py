#!/usr/bin/python3
"""End-to-end comparison with PyTorch: one training step and one single-scale detection of the whole ISRN
detector, isrn (isrn_bench's e2e cases) against the same network in PyTorch, with time and memory ratios.

    chrt -f 1 /usr/bin/python3 bench/compare_e2e.py --bench build/bench/isrn_bench --threads 2      # CPU
    python3 bench/compare_e2e.py --bench build/bench/isrn_bench --case paper_gpu                  # GPU
    python3 bench/compare_e2e.py --bench build/bench/isrn_bench --case paper_gpu_bf16             # GPU, bf16
    python3 bench/compare_e2e.py --bench build/bench/isrn_bench --case paper_gpu_tf32             # GPU, TF32

The PyTorch side is data_tools/golden_detector.py's independent build of the network (the module names match
isrn's checkpoint), at the case's depth and width, in float32, with isrn's exported weights and inputs loaded
(isrn_bench --e2e_export), so both sides run the same network on the same images and see the same
candidates in post-processing. What the PyTorch side computes per case:
  train_step  forward of both steps; per image, the step-1 and step-2 label assignment (IoU matrix against the
              ground truth, thresholds, the best-anchor rule), regression targets, the STC filter; the focal
              and smooth-L1 losses as the usual composite of torch ops; .item() of the loss (the trainer logs
              it), zero_grad(set_to_none), backward, torch.optim.SGD (momentum 0.9, weight decay 1e-4 on conv
              weights only) step;
  detect      eval-mode forward under no_grad; per image sigmoid, decoding of the refined anchors, the STC
              rejection, the score threshold, top-k 2000, decoding, greedy NMS (IoU > 0.4 with the +1 widths,
              as isrn) as Detectron's py_cpu_nms in NumPy (Debian ships no torchvision), keep 750.
Every measurement runs in a process of its own (isrn_bench filtered to the case; a worker process of this
script for PyTorch), so the resident-set peaks are each side's own: the process's peak (VmHWM), which
includes the runtime libraries (PyTorch's are large), and that peak above the resident set before anything
was built (isrn: at the case's start; PyTorch: right after importing torch), which is what the model, its
inputs and the steps needed, allocator retention included. On the GPU: the peak allocated and reserved bytes of
each side's caching allocator. Times are the fastest of --repetitions runs of at least --min-time seconds.
"""
import argparse
import datetime
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

from compare_pytorch import commit, machine  # the same folder: one definition of the run's header fields

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {
    # depth, width, image size, train batch, detect batch, device
    "small_cpu": dict(depth=18, width=0.25, size=256, train_batch=2, detect_batch=2, device="cpu"),
    "paper_gpu": dict(depth=50, width=1.0, size=1024, train_batch=4, detect_batch=1, device="cuda"),
    # Mixed precision: isrn's AutocastGuard(BFloat16) against torch.autocast(bfloat16) around the forward pass;
    # both hand float32 head outputs to the losses and post-processing.
    "paper_gpu_bf16": dict(depth=50, width=1.0, size=1024, train_batch=4, detect_batch=1, device="cuda",
                           autocast=True),
    # TF32 allowed on both sides for the float32 convolutions and matmuls (isrn's set_allow_tf32, PyTorch's
    # allow_tf32 flags): the "TF32 allowed for both if used for both".
    "paper_gpu_tf32": dict(depth=50, width=1.0, size=1024, train_batch=4, detect_batch=1, device="cuda",
                           tf32=True),
}

# --- safetensors (no package needed: torch alone, as the GPU machine's venv may have no NumPy) --------------

def read_safetensors(path):
    import torch

    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
              "U8": torch.uint8, "BOOL": torch.bool}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = bytearray(f.read())  # writable, so the tensors may share it
    meta = header.pop("__metadata__", {})
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        dtype = dtypes[h["dtype"]]
        count = (b - a) // torch.empty((), dtype=dtype).element_size()
        flat = torch.frombuffer(data, dtype=dtype, offset=a, count=count) if count else torch.empty(0, dtype=dtype)
        out[name] = flat.reshape(h["shape"]).clone()
    return out, meta


# --- memory ----------------------------------------------------------------------------------------------

def proc_status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


# --- the PyTorch side (runs in a worker process) --------------------------------------------------------

def build_torch_model(case, weights_path, device):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    sys.path.insert(0, os.path.join(HERE, "..", "data_tools"))
    import golden_detector as gd  # sets float64 as the default dtype: undone below

    torch.set_default_dtype(torch.float32)
    gd.WIDTH_MULT = case["width"]
    gd.DEPTH = case["depth"]
    ch = gd.ch

    class Bottleneck(nn.Module):
        """1x1 → GN → ReLU → 3x3 (stride s) → GN → ReLU → 1x1 (x4) → GN, + shortcut, ReLU (isrn's names)."""

        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
            self.norm1 = gd.group_norm(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.norm2 = gd.group_norm(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.norm3 = gd.group_norm(planes * 4)
            self.downsample = None
            if stride != 1 or cin != planes * 4:
                self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, 0, bias=False),
                                                gd.group_norm(planes * 4))

        def forward(self, x):
            y = F.relu(self.norm1(self.conv1(x)))
            y = F.relu(self.norm2(self.conv2(y)))
            y = self.norm3(self.conv3(y))
            return F.relu(y + (self.downsample(x) if self.downsample is not None else x))

    class Backbone(gd.Backbone):
        """golden_detector's backbone with the block counts and block type of any depth (18 or 50)."""

        def __init__(self, depth):
            nn.Module.__init__(self)
            self.conv1 = nn.Conv2d(3, ch(16), 7, 1, 3, bias=False)
            self.norm1 = gd.group_norm(ch(16))
            self.stem_block1 = gd.BasicBlock(ch(16), ch(16), 1)
            self.stem_block2 = gd.BasicBlock(ch(16), ch(32), 2)
            blocks = [2, 2, 2, 2] if depth == 18 else [3, 4, 6, 3]
            cin = ch(32)
            self.out_channels = []
            for i, planes in enumerate([64, 128, 256, 512]):
                layer = []
                for b in range(blocks[i]):
                    stride = 2 if (b == 0 and i > 0) else 1
                    if depth == 18:
                        layer.append(gd.BasicBlock(cin, ch(planes), stride))
                        cin = ch(planes)
                    else:
                        layer.append(Bottleneck(cin, ch(planes), stride))
                        cin = ch(planes) * 4
                setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
                self.out_channels.append(cin)
            c6, c7 = cin // 2, cin // 2 // 4
            self.c6 = nn.Conv2d(cin, c6, 3, 2, 1, bias=True)
            self.c7 = nn.Conv2d(c6, c7, 3, 2, 1, bias=True)
            self.out_channels += [c6, c7]

    class Detector(gd.Detector):
        def __init__(self, depth):
            nn.Module.__init__(self)
            self.backbone = Backbone(depth)
            width = ch(256)
            self.first_step = gd.FirstStep(self.backbone.out_channels, width)
            self.fpn = gd.FPN(self.backbone.out_channels, width)
            self.head = gd.Head(width, len(gd.SCALES))

    model = Detector(case["depth"])
    weights, _ = read_safetensors(weights_path)
    model.load_state_dict(weights, strict=True)
    return gd, model.to(device)


def torch_worker(args):
    import torch
    import torch.nn.functional as F

    case = CASES[args.case]
    device = case["device"]
    torch.set_num_threads(args.threads)
    rss_start = proc_status_kib("VmRSS")  # torch and its libraries are loaded; nothing is built yet
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = bool(case.get("tf32"))
        torch.backends.cuda.matmul.allow_tf32 = bool(case.get("tf32"))
    gd, model = build_torch_model(case, args.weights, device)
    inputs, _ = read_safetensors(args.inputs)
    images = inputs["images"].to(device)
    detect_images = inputs["detect_images"].to(device)
    gts = [inputs[f"gt_boxes_{b}"].to(device) for b in range(images.shape[0])]

    anchors, levels = gd.anchors_for(case["size"], case["size"])  # float32 now; cached as isrn caches them
    anchors, levels = anchors.to(device), levels.to(device)
    stc_mask = torch.isin(levels, torch.tensor(gd.STC_LEVELS, device=device))
    str_mask = torch.isin(levels, torch.tensor(gd.STR_LEVELS, device=device))
    var = gd.VARIANCES

    def box_iou(a, b):
        area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
        area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
        lt = torch.max(a[:, None, :2], b[None, :, :2])
        rb = torch.min(a[:, None, 2:], b[None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        return inter / (area_a[:, None] + area_b[None, :] - inter)

    def assign(boxes, gt, neg, pos):
        n = boxes.shape[0]
        if gt.shape[0] == 0:
            return torch.zeros(n, dtype=torch.int64, device=device), torch.zeros(n, dtype=torch.int64, device=device)
        iou = box_iou(boxes, gt)
        best_iou, best_gt = iou.max(1)
        labels = torch.full((n,), -1, dtype=torch.int64, device=device)
        labels[best_iou < neg] = 0
        labels[best_iou >= pos] = 1
        gt_best = iou.max(0).values
        labels[((iou == gt_best[None]) & (gt_best[None] > 0)).any(1)] = 1  # the best-anchor rule
        return labels, best_gt

    def decode(deltas, ref):
        wr, hr = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
        cxr, cyr = (ref[:, 0] + ref[:, 2]) * 0.5, (ref[:, 1] + ref[:, 3]) * 0.5
        cx = deltas[:, 0] * var[0] * wr + cxr
        cy = deltas[:, 1] * var[1] * hr + cyr
        w = torch.exp((deltas[:, 2] * var[2]).clamp(max=gd.MAX_LOG_SCALE)) * wr
        h = torch.exp((deltas[:, 3] * var[3]).clamp(max=gd.MAX_LOG_SCALE)) * hr
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 1)

    def reg_targets(ref, gt, matched, weight):
        if gt.shape[0] == 0:
            return torch.zeros_like(ref)
        t = gd.encode(gt[matched], ref)
        return torch.where(weight[:, None] > 0, t, torch.zeros_like(t))

    def image_targets(l1, d1, gt):
        lab1, m1 = assign(anchors, gt, *gd.STEP1)
        pos1 = (lab1 == 1).float()
        reg1_w = pos1 * str_mask
        refined = torch.where(str_mask[:, None], decode(d1, anchors), anchors)
        lab2, m2 = assign(refined, gt, *gd.STEP2)
        pos2 = (lab2 == 1).float()
        easy = stc_mask * (lab2 == 0) * (torch.sigmoid(l1) < gd.STC_THETA)
        return {"cls1_labels": pos1, "cls1_weights": (lab1 >= 0) * stc_mask.float(), "reg1_weights": reg1_w,
                "reg1_targets": reg_targets(anchors, gt, m1, reg1_w), "cls2_labels": pos2,
                "cls2_weights": (lab2 >= 0) * (1.0 - easy.float()), "reg2_weights": pos2,
                "reg2_targets": reg_targets(refined, gt, m2, pos2)}

    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.01, momentum=0.9)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def forward(x):
        if not case.get("autocast"):
            return model(x)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            (l1, d1), (l2, d2), seg = model(x)
        return (l1.float(), d1.float()), (l2.float(), d2.float()), seg

    def train_step():
        model.train()
        (l1, d1), (l2, d2), _ = forward(images)
        with torch.no_grad():
            targets = [image_targets(l1[b].detach(), d1[b].detach(), gts[b]) for b in range(images.shape[0])]
        terms, _ = gd.detection_loss((l1, d1), (l2, d2), targets)
        terms["total"].item()
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        sync()

    try:
        from torchvision.ops import nms as torchvision_nms  # on the GPU machine; Debian ships no torchvision
    except ImportError:
        torchvision_nms = None
    try:
        import numpy as np  # the CPU NMS; the GPU machine's venv may lack it (torchvision's NMS serves there)
    except ImportError:
        np = None

    def nms(boxes, scores, threshold):
        if boxes.is_cuda and torchvision_nms is not None:
            # On the GPU, PyTorch's own kernel. It measures widths as x2 - x1; isrn's inference NMS as
            # x2 - x1 + 1, which moving x2 and y2 by one reproduces exactly.
            return torchvision_nms(boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0]), scores, threshold)
        # Detectron's py_cpu_nms (the CPU fallback of the SRN code base): boxes come sorted by score (top-k),
        # +1 widths as isrn's inference NMS, suppression when IoU > threshold. Measured here it is 2-5x faster
        # than the K x K IoU matrix in torch ops followed by a sweep (whose 16 MB temporaries page-fault).
        b = boxes.cpu().numpy()
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        areas = (x2 - x1 + 1) * (y2 - y1 + 1)
        order = np.arange(b.shape[0])
        keep = []
        while order.size > 0:
            i = order[0]
            keep.append(i)
            rest = order[1:]
            w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
            h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
            inter = w * h
            order = rest[inter / (areas[i] + areas[rest] - inter) <= threshold]
        return torch.tensor(keep, dtype=torch.int64, device=boxes.device)

    def detect():
        model.eval()
        with torch.no_grad():
            (l1, d1), (l2, d2), _ = forward(detect_images)
            out = []
            for b in range(detect_images.shape[0]):
                p1, p2 = torch.sigmoid(l1[b]), torch.sigmoid(l2[b])
                refined = torch.where(str_mask[:, None], decode(d1[b], anchors), anchors)
                candidate = (p2 > 0.0) & ~(stc_mask & (p1 <= 0.01))
                index = torch.nonzero(candidate).squeeze(1)
                top = p2[index].topk(min(2000, index.numel()))
                index, scores = index[top.indices], top.values
                boxes = decode(d2[b][index], refined[index])
                keep = nms(boxes, scores, 0.4)[:750]
                out.append((boxes[keep], scores[keep]))
        sync()
        return out

    fn = train_step if args.what == "train_step" else detect
    # GPU memory is counted from the first call on, as isrn_bench counts it.
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    fn()  # warm-up
    fn()
    start = time.perf_counter()
    fn()
    per_call = max(time.perf_counter() - start, 1e-6)
    iterations = max(1, int(args.min_time / per_call))
    samples = []
    for _ in range(args.repetitions):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        samples.append((time.perf_counter() - start) / iterations * 1e3)
    result = {"ms": min(samples), "samples_ms": samples, "iterations": iterations}
    if device == "cuda":
        result["peak_allocated_MiB"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_reserved_MiB"] = torch.cuda.max_memory_reserved() / 2**20
    else:
        peak = proc_status_kib("VmHWM")
        result["peak_rss_MiB"] = peak / 1024
        result["rss_above_start_MiB"] = (peak - rss_start) / 1024
    if args.what == "detect":
        result["detections"] = sum(int(s.numel()) for _, s in detect())
    print(json.dumps(result))


# --- the driver ------------------------------------------------------------------------------------------

def isrn_case(bench, name, threads, min_time, repetitions):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    # UseRealTime() appends /real_time to the registered name.
    cmd = [bench, "--benchmark_format=json", f"--benchmark_filter=^{re.escape(name)}(/real_time)?$",
           f"--benchmark_min_time={min_time}", f"--benchmark_repetitions={repetitions}"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type") == "iteration"]
    assert runs and all(b["time_unit"] == "ms" for b in runs), out
    result = {"ms": min(b["real_time"] for b in runs), "samples_ms": [b["real_time"] for b in runs]}
    # Each repetition builds its case afresh: the memory figures are the largest any of them saw.
    for key in ("peak_rss_MiB", "rss_above_start_MiB", "peak_allocated_MiB", "peak_reserved_MiB", "detections"):
        if key in runs[0]:
            result[key] = max(b[key] for b in runs)
    return result


def torch_case(case, what, files, threads, min_time, repetitions):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", what, "--case", case,
           "--weights", files[0], "--inputs", files[1], "--threads", str(threads), "--min-time", str(min_time),
           "--repetitions", str(repetitions)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])




def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default="build/bench/isrn_bench", help="path to isrn_bench")
    parser.add_argument("--case", default="small_cpu", choices=sorted(CASES))
    parser.add_argument("--what", default="train_step,detect", help="comma-separated: train_step, detect")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per repetition")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--torch-worker", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        args.what = args.torch_worker
        torch_worker(args)
        return

    import torch
    case = CASES[args.case]
    gpu = case["device"] == "cuda"
    print(f"date: {datetime.date.today()}  machine: {torch.cuda.get_device_name() if gpu else machine()}  "
          f"commit: {commit()}  threads: {args.threads}  torch {torch.__version__}  case: {args.case} {case}")
    print()
    if gpu:
        print("| case | isrn ms | torch ms | time ratio | peak allocated MiB isrn / torch (ratio) | "
              "peak reserved MiB isrn / torch (ratio) |")
        print("|---|---:|---:|---:|---:|---:|")
    else:
        print("| case | isrn ms | torch ms | time ratio | peak RSS MiB isrn / torch (ratio) | "
              "peak RSS above the loaded libraries MiB isrn / torch (ratio) |")
        print("|---|---:|---:|---:|---:|---:|")
    results = {}
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([args.bench, f"--e2e_export={tmp}", f"--e2e_case={args.case}"], check=True)
        files = (os.path.join(tmp, f"{args.case}_weights.safetensors"), os.path.join(tmp, f"{args.case}_inputs.safetensors"))
        for what in args.what.split(","):
            name = f"e2e/{what}/{args.case}"
            isrn = isrn_case(args.bench, name, args.threads, args.min_time, args.repetitions)
            ref = torch_case(args.case, what, files, args.threads, args.min_time, args.repetitions)
            results[name] = {"isrn": isrn, "torch": ref}
            keys = ("peak_allocated_MiB", "peak_reserved_MiB") if gpu else ("peak_rss_MiB", "rss_above_start_MiB")
            mem = []
            for k in keys:
                a, b = isrn.get(k, float("nan")), ref.get(k, float("nan"))
                mem.append(f"{a:.0f} / {b:.0f} ({a / b:.2f})" if b > 0 else f"{a:.0f} / {b:.0f}")
            print(f"| {name} | {isrn['ms']:.1f} | {ref['ms']:.1f} | {isrn['ms'] / ref['ms']:.2f} | {mem[0]} | {mem[1]} |",
                  flush=True)
            if what == "detect":
                notes.append(f"detections kept (both images): isrn {isrn.get('detections', 0):.0f}, "
                             f"torch {ref.get('detections', 0)}")
            if what == "train_step":
                notes.append(f"fastest of {args.repetitions} repetitions; isrn samples "
                             f"{[round(x, 1) for x in isrn['samples_ms']]}, torch {[round(x, 1) for x in ref['samples_ms']]}")
    print()
    for note in notes:
        print(note)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
