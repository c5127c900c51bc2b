#!/usr/bin/env python3
"""Stores a safetensors file's matrices and kernels as f16, for models/'s size limit.

    scripts/half-weights.py IN OUT

The same rule as the loader's `--weights-dtype f16` (src/model/precision.rs):
every f32 tensor of two or more dimensions becomes f16 unless a value lies
outside f16's range; vectors (biases, norm scales) stay f32. The loader widens
f16 tensors back to f32, so the models compute as before, with each weight
rounded to 11 significant bits. Standard library only (no numpy here).
"""
import json
import os
import struct
import sys
from array import array

F16_MAX = 65504.0


def main(src, dst):
    with open(src, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    meta = header.pop("__metadata__", None)
    tensors = []
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        start, end = info["data_offsets"]
        raw = data[start:end]
        dtype = info["dtype"]
        if dtype == "F32" and len(info["shape"]) >= 2:
            values = array("f")
            values.frombytes(raw)
            if all(abs(v) <= F16_MAX for v in values):
                raw = struct.pack(f"<{len(values)}e", *values)
                dtype = "F16"
        tensors.append((name, dtype, info["shape"], raw))
    out_header = {}
    offset = 0
    for name, dtype, shape, raw in tensors:
        out_header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    if meta is not None:
        out_header["__metadata__"] = meta
    encoded = json.dumps(out_header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(dst + ".partial", "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for _, _, _, raw in tensors:
            f.write(raw)
    os.replace(dst + ".partial", dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
