"""Writes golden files for the C++ tests in the safetensors layout (8-byte little-endian header
length, JSON header, raw little-endian tensor bytes), without needing the safetensors package.

Each golden file holds named tensors (float64 unless stated) and a "__metadata__" dict of strings
with the case's parameters. tests/golden.hpp reads them.
"""
import json
import os
import struct
import sys

import numpy as np

_DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float64"): "F64",
    np.dtype("int32"): "I32",
    np.dtype("int64"): "I64",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (or torch tensor); metadata: dict str -> str."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        value = tensors[name]
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arr = np.asarray(value, order="C")  # not ascontiguousarray: it turns 0-d arrays into shape [1]
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def out_dir():
    """The folder golden files go to: the script's first argument, else tests/golden."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")


def save(name, tensors, metadata, max_bytes=200_000):
    """Writes one golden case (torch tensors, finite) to <out_dir>/<name>.safetensors, kept small."""
    path = os.path.join(out_dir(), name + ".safetensors")
    for key, value in tensors.items():
        if value.is_floating_point():
            assert bool(value.isfinite().all()), f"{name}: {key} is not finite"
    write_safetensors(path, tensors, {k: str(v) for k, v in metadata.items()})
    size = os.path.getsize(path)
    assert size < max_bytes, f"{path} is {size} bytes: keep golden files small"
    print("wrote", os.path.relpath(path), size, "bytes")
