#!/usr/bin/python3
"""Writes the seed inputs of fuzz/corpus/<target>/seed_*: one small valid example of each format, from which
libFuzzer mutates. Inputs that once found a bug are kept beside them as crash_* (written by scripts/fuzz.sh, not
by this script). Run from anywhere: python3 fuzz/make_corpus.py"""
import io
import json
import pathlib
import shutil
import struct

from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "corpus"


def write(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed_{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw bytes)."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def floats(values, fmt="f"):
    return struct.pack(f"<{len(values)}{fmt}", *values)


# WIDER text annotations: a face with attributes, an invalid face, a zero-size box, a zero-face record with its
# dummy line, CRLF line ends.
write("wider_annotations", "two_records", "0--Parade/0_Parade_1.jpg\n3\n"
      "78 221 7 8 2 0 0 0 0 0 \n10 20 30 40 0 0 0 1 0 0 \n5 5 0 9 0 0 0 0 0 0 \n"
      "1--Handshaking/1_Handshaking_2.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n")
write("wider_annotations", "crlf", "2--Demo/a.jpg\r\n1\r\n1 2 3 4 1 1 1 0 2 1\r\n\r\n")

# Training configurations: the shipped ones and the tests' tiny one.
for path in [ROOT / "configs" / "demo_synthetic.json", ROOT / "configs" / "isrn_r50_wider.json",
             ROOT / "tests" / "tiny_train.json"]:
    write("train_config", path.stem, path.read_bytes())

# safetensors: a checkpoint-shaped file matching the target's destinations (weight [2, 3], bias [3]), one of
# other dtypes, and a training state for its optimizer.
write("safetensors", "checkpoint", safetensors(
    {"weight": ("F32", [2, 3], floats([1, 2, 3, 4, 5, 6])), "bias": ("F32", [3], floats([0.5, 0, -0.5]))},
    {"format": "isrn"}))
write("safetensors", "dtypes", safetensors(
    {"d": ("F64", [2], floats([1, 2], "d")), "i": ("I64", [1], struct.pack("<q", 7)),
     "b": ("BOOL", [2], b"\x00\x01"), "u": ("U8", [0], b""), "h": ("BF16", [2], b"\x80\x3f\x00\x40"),
     "n": ("I32", [1, 1], struct.pack("<i", -3))}))
progress = {"iteration": 10, "epoch": 1, "batches_in_epoch": 2,
            "generators": {"data": {"state": 12345, "has_spare": False, "spare": 0.0}},
            "extra": {"note": "x"}, "groups": [{"lr": 0.1, "params": 2}]}
write("safetensors", "training_state", safetensors(
    {"momentum.group0.param0": ("F32", [2, 3], floats([0.1] * 6))},
    {"format": "isrn-training-state", "format_version": "1", "progress": json.dumps(progress)}))

# Images: each format the decoder accepts, small and with odd sizes.
pixels = Image.new("RGB", (5, 3))
pixels.putdata([(i * 40 % 256, i * 70 % 256, i * 90 % 256) for i in range(15)])
for fmt, ext in [("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp")]:
    out = io.BytesIO()
    pixels.save(out, fmt)
    write("image", ext, out.getvalue())
out = io.BytesIO()
pixels.convert("L").save(out, "PNG")
write("image", "grey.png", out.getvalue())
out = io.BytesIO()
pixels.save(out, "JPEG", progressive=True)
write("image", "progressive.jpg", out.getvalue())

# COCO: two categories, a crowd annotation, a zero-size box, an image without annotations.
write("coco", "small", json.dumps({
    "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
               {"id": 2, "file_name": "b.jpg", "width": 32, "height": 32}],
    "categories": [{"id": 1, "name": "face", "supercategory": "person"}, {"id": 3, "name": "car"}],
    "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12], "iscrowd": 0},
                    {"id": 11, "image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 9], "iscrowd": 1},
                    {"id": 12, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 9], "iscrowd": 0}]}))

# WIDER prediction files: one with boxes, CRLF and a trailing blank line; one empty.
write("prediction_file", "boxes", "image\n3\n10 10 20 20 0.9\n0 0 5 5 0.1 \n12.5 9 18 22 0.55\n\n")
write("prediction_file", "crlf_empty", "image\r\n0\r\n")
