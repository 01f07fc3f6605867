#!/usr/bin/python3
"""Golden files for conv2d, max_pool2d and resize, computed with PyTorch in float64.

Writes tests/golden/{conv2d,maxpool,resize}_*.safetensors (inputs, outputs, a random upstream
gradient and the gradients it gives), read by tests/test_golden_conv.cpp.

Asymmetric convolution padding is applied with F.pad before an unpadded F.conv2d (PyTorch's conv2d
pads symmetrically); the padding is recorded as top/bottom/left/right in the metadata.

Usage: /usr/bin/python3 data_tools/golden_conv.py [output_dir]   (Debian's python3-torch)
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_io import out_dir, save  # noqa: E402

torch.set_default_dtype(torch.float64)




def uniform(shape, g, lo=-1.0, hi=1.0):
    return torch.rand(shape, generator=g) * (hi - lo) + lo


# --- conv2d -----------------------------------------------------------------------------------------

def conv_case(name, x_shape, w_shape, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), bias=True, seed=0):
    """padding: (top, bottom, left, right)."""
    g = torch.Generator().manual_seed(seed)
    x = uniform(x_shape, g).requires_grad_()
    w = uniform(w_shape, g).requires_grad_()
    b = uniform((w_shape[0],), g).requires_grad_() if bias else None
    top, bottom, left, right = padding
    y = F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=stride, dilation=dilation)
    upstream = uniform(y.shape, g)
    (y * upstream).sum().backward()
    tensors = {"x": x, "weight": w, "y": y, "upstream": upstream, "grad_x": x.grad, "grad_weight": w.grad}
    if bias:
        tensors.update({"bias": b, "grad_bias": b.grad})
    save("conv2d_" + name, tensors,
         {"stride_h": stride[0], "stride_w": stride[1], "pad_top": top, "pad_bottom": bottom, "pad_left": left,
          "pad_right": right, "dilation_h": dilation[0], "dilation_w": dilation[1], "bias": int(bias)})


def conv_cases():
    conv_case("3x3_s1_p1", (2, 3, 9, 8), (4, 3, 3, 3), padding=(1, 1, 1, 1), seed=1)
    conv_case("3x3_s2_p1", (2, 3, 11, 10), (5, 3, 3, 3), stride=(2, 2), padding=(1, 1, 1, 1), seed=2)
    conv_case("3x3_s2_nobias", (1, 4, 12, 9), (3, 4, 3, 3), stride=(2, 2), bias=False, seed=3)
    conv_case("7x7_s1_p3", (1, 3, 16, 15), (4, 3, 7, 7), padding=(3, 3, 3, 3), seed=4)
    conv_case("7x7_s2_p3_nobias", (2, 3, 17, 14), (4, 3, 7, 7), stride=(2, 2), padding=(3, 3, 3, 3), bias=False,
              seed=5)
    # The RFE branches' asymmetric kernels, with padding that is asymmetric as well.
    conv_case("1x3_asym", (2, 4, 6, 9), (3, 4, 1, 3), padding=(0, 1, 2, 0), seed=6)
    conv_case("3x1_asym", (2, 4, 9, 6), (3, 4, 3, 1), padding=(2, 0, 1, 0), seed=7)
    conv_case("1x5_asym", (1, 5, 5, 11), (4, 5, 1, 5), padding=(1, 0, 3, 1), seed=8)
    conv_case("5x1_asym", (1, 5, 11, 5), (4, 5, 5, 1), padding=(1, 3, 0, 1), seed=9)
    conv_case("3x3_dilation2", (1, 3, 13, 12), (4, 3, 3, 3), padding=(2, 2, 2, 2), dilation=(2, 2), seed=10)
    conv_case("1x1", (2, 6, 7, 5), (5, 6, 1, 1), seed=11)
    conv_case("1x1_nobias", (2, 6, 7, 5), (5, 6, 1, 1), bias=False, seed=12)
    # Rows of 48 outputs: the implicit-GEMM path in float32 (32-wide blocks) as in float64.
    conv_case("3x3_wide", (1, 8, 6, 48), (9, 8, 3, 3), padding=(1, 1, 1, 1), seed=13)


# --- max_pool2d -------------------------------------------------------------------------------------

def maxpool_case(name, x_shape, kernel, stride, padding, ceil_mode, seed):
    g = torch.Generator().manual_seed(seed)
    x = uniform(x_shape, g).requires_grad_()
    y, indices = F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
    upstream = uniform(y.shape, g)
    (y * upstream).sum().backward()
    save("maxpool_" + name, {"x": x, "y": y, "indices": indices, "upstream": upstream, "grad_x": x.grad},
         {"kernel": kernel, "stride": stride, "padding": padding, "ceil_mode": int(ceil_mode)})


def maxpool_cases():
    maxpool_case("k3_s2_p1_ceil", (2, 3, 9, 11), 3, 2, 1, True, seed=21)
    maxpool_case("k2_s2_ceil", (2, 2, 7, 9), 2, 2, 0, True, seed=22)
    maxpool_case("k3_s2_p1", (1, 3, 10, 7), 3, 2, 1, False, seed=23)


# --- resize -----------------------------------------------------------------------------------------

def resize_case(name, x_shape, size, mode, align_corners, seed):
    g = torch.Generator().manual_seed(seed)
    x = uniform(x_shape, g).requires_grad_()
    if mode == "bilinear":
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    else:
        y = F.interpolate(x, size=size, mode="nearest")
    upstream = uniform(y.shape, g)
    (y * upstream).sum().backward()
    save("resize_" + name, {"x": x, "y": y, "upstream": upstream, "grad_x": x.grad},
         {"out_h": size[0], "out_w": size[1], "mode": mode, "align_corners": int(align_corners)})


def resize_cases():
    resize_case("bilinear_ac1_up", (1, 3, 5, 7), (12, 15), "bilinear", True, seed=31)
    resize_case("bilinear_ac1_down", (1, 3, 13, 11), (6, 4), "bilinear", True, seed=32)
    resize_case("bilinear_ac0_up", (2, 2, 5, 6), (11, 13), "bilinear", False, seed=33)
    resize_case("bilinear_ac0_down", (2, 2, 14, 15), (5, 7), "bilinear", False, seed=34)
    resize_case("nearest_up", (1, 3, 5, 7), (12, 15), "nearest", False, seed=35)
    resize_case("nearest_down", (1, 3, 13, 11), (6, 4), "nearest", False, seed=36)


if __name__ == "__main__":
    os.makedirs(out_dir(), exist_ok=True)
    conv_cases()
    maxpool_cases()
    resize_cases()
