"""Writes tests/golden/safetensors_fixture.safetensors: one tensor of every dtype isrn reads (plus a 0-d
and an empty one) and two metadata strings, through golden_io.write_safetensors, a writer that shares
no code with isrn's. tests/test_safetensors.cpp recomputes the same values and compares them exactly.

    /usr/bin/python3 data_tools/make_safetensors_fixture.py [out_dir]

With --check FILE it instead reads FILE (e.g. one written by isrn's save_safetensors) with a reader
independent of isrn, checks the format rules (length prefix, padded JSON header, contiguous offsets)
and prints every tensor, so isrn's output can be verified from Python by hand.
"""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io  # noqa: E402


def fixture_tensors():
    # Values chosen to be exact in every dtype and to hit each type's extremes.
    return {
        "f32": (np.arange(12, dtype=np.float32) * np.float32(0.5) - np.float32(1.0)).reshape(3, 4),
        "f64": np.array([[1e300, -2.5, 0.1]], dtype=np.float64),
        "i32": np.array([-2147483648, 0, 2147483647], dtype=np.int32),
        "i64": np.array([[-(2**63)], [2**62 + 1]], dtype=np.int64),
        "u8": np.arange(0, 256, 51, dtype=np.uint8),
        "bool": np.array([[True, False, True], [False, False, True]]),
        "scalar": np.array(7.25, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


_DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1", "BOOL": "?"}


def check(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    raw = blob[8:8 + n]
    header = json.loads(raw.decode())
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    end = 0
    for b, e, k in spans:
        assert b == end, f"{k}: data starts at {b}, expected {end} (gap or overlap)"
        end = e
    assert end == len(data), f"data section is {len(data)} bytes, offsets cover {end}"
    print("metadata", meta)
    for k, v in header.items():
        b, e = v["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=_DTYPES[v["dtype"]]).reshape(v["shape"])
        print(k, v["dtype"], list(arr.shape), arr.tolist())


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--check":
        check(sys.argv[2])
        return
    path = os.path.join(golden_io.out_dir(), "safetensors_fixture.safetensors")
    golden_io.write_safetensors(path, fixture_tensors(), {"format": "isrn-test-fixture", "version": "1"})
    print("wrote", os.path.relpath(path), os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
