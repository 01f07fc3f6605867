#!/usr/bin/python3
"""Golden files for bfloat16 (mixed precision), computed with PyTorch's own bfloat16.

Writes tests/golden/bf16_rounding.safetensors (float32 bit patterns, int32, and the bfloat16 bits PyTorch rounds
them to: ties, subnormals, the edge of infinity, NaNs and random patterns) and bf16_conv_*.safetensors (bfloat16
operands stored as float32, which holds them exactly; PyTorch's bfloat16 conv2d forward and the gradients of
sum(y * gy), themselves bfloat16), read by tests/test_mixed_precision.cpp.

Usage: /usr/bin/python3 data_tools/golden_bf16.py [output_dir]   (Debian's python3-torch)
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_io import save  # noqa: E402


def rounding_case():
    g = torch.Generator().manual_seed(2026)
    special = [0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0xBF818000, 0x7F7FFFFF, 0x7F7F7FFF,
               0x7F800000, 0xFF800000, 0x00000000, 0x80000000, 0x00018000, 0x00008000, 0x007FFFFF, 0x00800000,
               0x7FC00000, 0x7F800001, 0xFFFFFFFF]
    # Random 32-bit patterns over the whole range, plus patterns whose low half is exactly a tie.
    random_bits = torch.randint(0, 2**32, (4000,), generator=g, dtype=torch.int64)
    ties = (torch.randint(0, 2**16, (1000,), generator=g, dtype=torch.int64) << 16) | 0x8000
    bits = torch.cat([torch.tensor(special, dtype=torch.int64), random_bits, ties])
    as_int32 = torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32)
    floats = as_int32.view(torch.float32)
    rounded = floats.bfloat16().view(torch.int16).to(torch.int32) & 0xFFFF
    save("bf16_rounding", {"float_bits": as_int32, "bf16_bits": rounded}, {"cases": bits.numel()})


def conv_case(name, x_shape, w_shape, stride, padding, dilation, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=g).bfloat16().requires_grad_()
    w = torch.randn(w_shape, generator=g).bfloat16().requires_grad_()
    y = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    gy = torch.randn(y.shape, generator=g).bfloat16()
    y.backward(gy)
    save(f"bf16_conv_{name}",
         {"x": x.detach().float(), "w": w.detach().float(), "y": y.detach().float(), "gy": gy.float(),
          "dx": x.grad.float(), "dw": w.grad.float()},
         {"stride": stride, "padding": padding, "dilation": dilation})


if __name__ == "__main__":
    rounding_case()
    conv_case("3x3_s1_p1", (2, 6, 11, 9), (8, 6, 3, 3), 1, 1, 1, 11)
    conv_case("3x3_s2_p1", (2, 5, 13, 10), (7, 5, 3, 3), 2, 1, 1, 12)
    conv_case("1x1_deep", (1, 64, 7, 9), (24, 64, 1, 1), 1, 0, 1, 13)
    conv_case("3x3_dilation2", (1, 4, 12, 13), (5, 4, 3, 3), 1, 2, 2, 14)
