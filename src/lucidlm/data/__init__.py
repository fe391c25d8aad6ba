"""Token datasets: text in, flat arrays of token ids out, random training windows back.

- ``prepare_dataset(inputs, out_dir, tokenizer)``: text / JSONL / parquet / arrow files ->
  ``train.bin`` + ``val.bin`` (uint16 or uint32 memmaps) + ``meta.json`` + ``tokenizer.json``,
  streaming and on several processes (``prepare.py``; formats in ``sources.py``).
- ``TokenDataset(dir, split)``: one split, memory-mapped; ``get_batch`` draws (x, y) windows
  from a ``torch.Generator`` the trainer owns (``shards.py``).

Tiny Shakespeare ships here too (``tinyshakespeare.txt``, public domain, about 1 MB).
The names below are imported on first use, so that ``lucidlm.data.cli`` (imported to build the
command line parser) loads neither numpy nor torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path

_LAZY = {
    "FORMAT_NAME": "prepare",
    "FORMAT_VERSION": "prepare",
    "document_separator": "prepare",
    "dtype_for": "prepare",
    "prepare_dataset": "prepare",
    "TokenDataset": "shards",
    "read_meta": "shards",
    "FORMATS": "sources",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"lucidlm.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lucidlm.data' has no attribute {name!r}")


def tiny_shakespeare_path() -> Path:
    """The path of the bundled Tiny Shakespeare text (1,115,394 characters), for ``prepare_dataset``."""
    return Path(__file__).with_name("tinyshakespeare.txt")


__all__ = [*_LAZY, "tiny_shakespeare_path"]
