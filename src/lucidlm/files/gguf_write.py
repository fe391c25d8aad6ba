"""Writing the GGUF container (version 3), the mirror of ``gguf.py``'s reader.

    "GGUF" | version u32 = 3 | tensor count u64 | metadata count u64
    metadata:      key (string) | value type u32 | value
    tensor index:  name (string) | n_dims u32 | dims u64 x n_dims (innermost first) | ggml type u32 | offset u64
    padding to the alignment (32) | the tensors' bytes, each starting at a multiple of the alignment

Metadata values are given with their GGUF type, because the file keeps it and llama.cpp checks
it (a context length is a u32, an epsilon an f32): ``("u32", 2048)``, ``("f32", 1e-5)``,
``("str", "llama")``, ``("bool", True)``, and arrays ``("[str]", [...])``, ``("[i32]", [...])``.
Tensor bytes are given as they go into the file (already quantised: see ``loading/quantize.py``).
The file is written to a temporary name and renamed, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ALIGNMENT = 32
# GGUF metadata value types: name -> (type id, struct code); 8 = string and 9 = array are written apart
_TYPES = {"u8": (0, "B"), "i8": (1, "b"), "u16": (2, "H"), "i16": (3, "h"), "u32": (4, "I"), "i32": (5, "i"),
          "f32": (6, "f"), "bool": (7, "?"), "u64": (10, "Q"), "i64": (11, "q"), "f64": (12, "d")}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorData:
    name: str
    shape: tuple[int, ...]  # (rows, columns), outermost first, as torch lists it
    ggml_type: int  # 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0
    data: bytes  # what goes into the file


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(kind: str, value) -> bytes:
    if kind == "str":
        return struct.pack("<I", _STRING) + _string(value)
    if kind.startswith("[") and kind.endswith("]"):
        item = kind[1:-1]
        head = struct.pack("<I", _ARRAY)
        if item == "str":
            return head + struct.pack("<IQ", _STRING, len(value)) + b"".join(_string(v) for v in value)
        type_id, code = _TYPES[item]
        return head + struct.pack("<IQ", type_id, len(value)) + struct.pack(f"<{len(value)}{code}", *value)
    if kind not in _TYPES:
        raise ValueError(f"unknown GGUF value type {kind!r}")
    type_id, code = _TYPES[kind]
    return struct.pack("<I", type_id) + struct.pack("<" + code, value)


def write_gguf(path: str | os.PathLike, metadata: dict[str, tuple[str, object]], tensors: Iterable[TensorData]) -> Path:
    """Write a GGUF file: ``metadata`` key -> (type, value), then ``tensors`` in order."""
    path = Path(path)
    tensors = list(tensors)
    header = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(metadata))]
    for key, (kind, value) in metadata.items():
        header.append(_string(key) + _value(kind, value))
    offset = 0
    offsets = []
    for t in tensors:
        offsets.append(offset)
        offset += -(-len(t.data) // ALIGNMENT) * ALIGNMENT
    for t, at in zip(tensors, offsets):
        dims = tuple(reversed(t.shape))  # innermost first
        header.append(_string(t.name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, t.ggml_type, at))
    head = b"".join(header)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(b"\0" * (-len(head) % ALIGNMENT))
            for t in tensors:
                f.write(t.data)
                f.write(b"\0" * (-len(t.data) % ALIGNMENT))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
