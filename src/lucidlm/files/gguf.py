"""The GGUF container (llama.cpp's file format), read with ``struct``: metadata and tensor index.

Shared by the tokenizer (``tokenizers/gguf_vocab.py``, which needs the metadata) and the weight
loader (``loading/gguf.py``, which also needs the tensors), so it imports neither torch nor numpy
until tensor bytes are asked for. The layout (version 2 and 3; all numbers little-endian):

    "GGUF" | version u32 | tensor count u64 | metadata count u64
    metadata, count times:  key (string) | value type u32 | value
    tensor index, count times:  name (string) | n_dims u32 | dims u64 x n_dims | ggml type u32 | offset u64
    padding to ``general.alignment`` (default 32) | tensor data (each offset is relative to its start)

A string is a u64 byte length and that many UTF-8 bytes; an array is an element type u32, a
count u64, then the elements. Dims are listed innermost first: a (rows, columns) matrix is
stored as [columns, rows].

Why not ``gguf.GGUFReader`` (the reference, maintained with llama.cpp): it makes a numpy view of
every part of every field, ~250k views for SmolLM2's 49,152 tokens and 48,900 merges, which took
3.9 s of an 8.3 s ``load_model`` on one core; this reads the same header in ~0.1 s.
tests/test_load_speed_paths.py checks that both read the same metadata and tensor index.
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

# Metadata value types -> struct code of a scalar (8 = string and 9 = array are read apart).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# ggml tensor types read most often -> (name, weights per block, bytes per block). Any other type
# is looked up in the gguf package's table (``GGML_QUANT_SIZES``), imported only then.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 8: ("Q8_0", 32, 34),
    30: ("BF16", 1, 2),
}


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # (rows, columns), outermost first, as torch and numpy list them
    type: int  # ggml type id (``gguf.GGMLQuantizationType``)
    type_name: str  # "Q4_1", "F32", ...
    offset: int  # absolute position of the first byte in the file
    nbytes: int


@dataclass(frozen=True)
class GGUFFile:
    """A parsed GGUF header. ``metadata`` values are Python values: ``str`` for strings, except
    that strings inside arrays (token lists, merges) stay ``bytes`` so that their reader can name
    an entry that is not UTF-8; numbers and bools as ``int``/``float``/``bool``; arrays as lists."""

    path: Path
    version: int
    metadata: MappingProxyType  # key -> value; shared by every caller, hence read-only
    tensors: MappingProxyType  # name -> GGUFTensor, in file order

    def read_tensor(self, tensor: GGUFTensor):
        """The tensor's raw bytes as a writable 1-D numpy uint8 array (one read, no memory map)."""
        import numpy as np

        data = np.fromfile(self.path, dtype=np.uint8, count=tensor.nbytes, offset=tensor.offset)
        if data.size != tensor.nbytes:  # the file changed since its header was read
            raise ValueError(f"{self.path} ended inside tensor {tensor.name!r} (truncated?)")
        return data


def open_gguf(path: str | os.PathLike) -> GGUFFile:
    """The parsed header of a GGUF file, cached per (path, size, modification time) so that the
    tokenizer and the weights of one ``load_model`` read it once."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    stat = path.stat()
    return _open_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _open_cached(path: str, size: int, mtime_ns: int) -> GGUFFile:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            return _parse(Path(path), buf)
        except (struct.error, ValueError, KeyError, OverflowError, MemoryError) as exc:
            raise ValueError(f"{path} is not a readable GGUF file (truncated or corrupt?): {exc}") from None


class _Cursor:
    """Reads values one after another from the buffer, refusing to run past its end."""

    def __init__(self, buf) -> None:
        self.buf, self.pos, self.size = buf, 0, len(buf)

    def unpack(self, fmt: str):
        values = struct.unpack_from(fmt, self.buf, self.pos)  # raises struct.error past the end
        self.pos += struct.calcsize(fmt)
        return values

    def bytes(self) -> bytes:
        (n,) = self.unpack("<Q")
        if n > self.size - self.pos:
            raise ValueError(f"a string of {n} bytes at byte {self.pos} runs past the end of the file")
        self.pos += n
        return self.buf[self.pos - n : self.pos]

    def value(self, kind: int, in_array: bool = False):
        if kind == _STRING:
            raw = self.bytes()
            return raw if in_array else raw.decode("utf-8", errors="replace")
        if kind == _ARRAY:
            item_kind, n = self.unpack("<IQ")
            if item_kind in _SCALARS:  # numbers: one unpack for the whole array
                code = _SCALARS[item_kind]
                if n * struct.calcsize(code) > self.size - self.pos:
                    raise ValueError(f"an array of {n} values at byte {self.pos} runs past the end of the file")
                return list(self.unpack(f"<{n}{code}"))
            return [self.value(item_kind, in_array=True) for _ in range(n)]
        if kind not in _SCALARS:
            raise ValueError(f"unknown metadata value type {kind} at byte {self.pos}")
        return self.unpack("<" + _SCALARS[kind])[0]


def _parse(path: Path, buf) -> GGUFFile:
    cur = _Cursor(buf)
    _, version = cur.unpack("<4sI")  # the magic was checked by open_gguf
    if version not in (2, 3):
        endian = " (a big-endian file?)" if version > 0xFFFF else ""
        raise ValueError(f"GGUF version {version}{endian} is not supported; lucidlm reads versions 2 and 3")
    n_tensors, n_kv = cur.unpack("<QQ")
    metadata = {}
    for _ in range(n_kv):
        key = cur.bytes().decode("utf-8", errors="replace")
        (kind,) = cur.unpack("<I")
        metadata[key] = cur.value(kind)
    index = []
    for _ in range(n_tensors):
        name = cur.bytes().decode("utf-8", errors="replace")
        (n_dims,) = cur.unpack("<I")
        dims = cur.unpack(f"<{n_dims}Q")
        kind, offset = cur.unpack("<IQ")
        index.append((name, tuple(reversed(dims)), kind, offset))
    alignment = int(metadata.get("general.alignment", 32))
    start = -(-cur.pos // alignment) * alignment  # the data begins at the next multiple of alignment
    tensors = {}
    for name, shape, kind, offset in index:
        type_name, block, block_bytes = _type_info(kind)
        count = 1
        for n in shape:
            count *= n
        if shape and shape[-1] % block:
            raise ValueError(f"tensor {name!r}: rows of {shape[-1]} values do not fill whole {type_name} blocks")
        t = GGUFTensor(name, shape, kind, type_name, start + offset, count // block * block_bytes)
        if t.offset + t.nbytes > cur.size:
            raise ValueError(f"tensor {name!r} runs past the end of the file")
        tensors[name] = t
    return GGUFFile(path, version, MappingProxyType(metadata), MappingProxyType(tensors))


def _type_info(kind: int) -> tuple[str, int, int]:
    if kind in GGML_TYPES:
        return GGML_TYPES[kind]
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        qtype = GGMLQuantizationType(kind)
    except ValueError:
        raise ValueError(f"unknown ggml tensor type {kind}") from None
    return (qtype.name, *GGML_QUANT_SIZES[qtype])
