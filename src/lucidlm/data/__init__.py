"""Token datasets: text in, flat arrays of token ids out, random training windows back.

- ``prepare_dataset(inputs, out_dir, tokenizer)``: text / JSONL / parquet / arrow files ->
  ``train.bin`` + ``val.bin`` (uint16 or uint32 memmaps) + ``meta.json`` + ``tokenizer.json``,
  streaming and on several processes (``prepare.py``; formats in ``sources.py``).
- ``TokenDataset(dir, split)``: one split, memory-mapped; ``get_batch`` draws (x, y) windows
  from a ``torch.Generator`` the trainer owns (``shards.py``).

Tiny Shakespeare ships here too (``tinyshakespeare.txt``, public domain, about 1 MB).
The names below are imported on first use, so that ``lucidlm.cli.data`` (imported to build the
command line parser) loads neither numpy nor torch.
"""

from __future__ import annotations

from pathlib import Path

from lucidlm.data.prepare import FORMAT_NAME, FORMAT_VERSION, document_separator, dtype_for, prepare_dataset
from lucidlm.data.shards import TokenDataset, read_meta
from lucidlm.data.sources import FORMATS


def tiny_shakespeare_path() -> Path:
    """The path of the bundled Tiny Shakespeare text (1,115,394 characters), for ``prepare_dataset``."""
    return Path(__file__).with_name("tinyshakespeare.txt")


__all__ = ["FORMATS", "FORMAT_NAME", "FORMAT_VERSION", "TokenDataset", "document_separator", "dtype_for",
           "prepare_dataset", "read_meta", "tiny_shakespeare_path"]
