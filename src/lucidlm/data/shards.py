"""Reading a token dataset for training: random windows from a memory-mapped file.

The ids stay on disk. ``numpy.memmap`` maps the file into the address space and the operating
system reads only the pages a batch touches, so a 20 GB dataset opens instantly in a process with
2 GB of memory. Pages once read stay in the page cache and count towards the process's resident
size, but they are clean file pages the kernel drops whenever it needs the memory - this is the
"leak" nanoGPT sidesteps by opening a new memmap for every batch. We keep one map open.
Measured (benchmarks/bench_data.py: 256 MB file, 20,000 batches of 12 x 1024, one core): anonymous
memory (RssAnon, a real leak) grew by 0 MB either way; file-backed RssFile grew by 259 MB with
one map vs 24 MB re-mapping; a batch took 82-107 us with one map vs 246-354 us re-mapping.

A batch, as in nanoGPT's ``get_batch`` (B = batch size, T = block size):

    starts  ~ uniform{0, ..., N - T - 1}        (B,)  drawn from the caller's torch.Generator
    x[b]    = data[starts[b]     : starts[b] + T]      (B, T)  inputs
    y[b]    = data[starts[b] + 1 : starts[b] + T + 1]  (B, T)  targets: the next token at each position

Drawing the starts from a generator the trainer owns means that saving ``generator.get_state()``
in a checkpoint is enough to resume on exactly the batches an uninterrupted run would have seen.

A dataset in the "rows" layout (``rows.py``: one padded row of length L per sequence, e.g. one
molecule) is drawn by rows instead of windows, trimmed to the batch's longest sequence:

    rows    ~ uniform{0, ..., N - 1}                   (B,)
    x[b]    = row[:T],  y[b] = row[1:T + 1]            (B, T)  T = longest sequence in the batch - 1
    y       = -100 where y == pad_id                           no loss on padding
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lucidlm.data.prepare import FORMAT_NAME, FORMAT_VERSION, META_FILE, encoder_of

if TYPE_CHECKING:
    import torch

DTYPES = ("uint16", "uint32")
LAYOUTS = ("stream", "rows")  # one run of ids (windows) | one padded row per sequence (rows.py)
PROBE_TEXT = "The quick brown fox, 1234 jumps!\n\tÜber 数字 ok"


def _folder(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    return path.parent if path.name == META_FILE and path.is_file() else path


def read_meta(path: str | os.PathLike) -> dict:
    """The checked meta.json of a dataset directory (or of the meta.json path itself)."""
    from lucidlm.files.jsonfile import read_json

    folder = _folder(path)
    if not folder.exists():
        raise FileNotFoundError(f"no dataset at {folder}; make one with `lucidlm data prepare`")
    if not (folder / META_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} is not a lucidlm token dataset: it has no {META_FILE}; make one with `lucidlm data prepare`"
        )
    meta = read_json(folder / META_FILE, what="dataset meta file")
    where = folder / META_FILE
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{where} is not a {FORMAT_NAME} file (its 'format' is {found!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{where} has format version {version!r}; this lucidlm reads up to {FORMAT_VERSION} "
                         "(upgrade lucidlm, or prepare the data again)")
    if meta.get("dtype") not in DTYPES:
        raise ValueError(f"{where}: dtype {meta.get('dtype')!r} is not one of {DTYPES}")
    if not isinstance(meta.get("vocab_size"), int) or meta["vocab_size"] < 1:
        raise ValueError(f"{where}: vocab_size {meta.get('vocab_size')!r} is not a positive integer")
    if meta["vocab_size"] > np.iinfo(meta["dtype"]).max + 1:
        raise ValueError(f"{where}: vocab_size {meta['vocab_size']} does not fit in {meta['dtype']}")
    splits = meta.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise ValueError(f"{where} lists no splits")
    for name, info in splits.items():
        ok = (isinstance(info, dict) and isinstance(info.get("file"), str) and isinstance(info.get("tokens"), int)
              and info["tokens"] >= 0 and Path(info["file"]).name == info["file"])
        if not ok:
            raise ValueError(f"{where}: split {name!r} needs a plain file name and a token count, got {info!r}")
    layout = meta.get("layout", "stream")
    if layout not in LAYOUTS:
        raise ValueError(f"{where}: layout {layout!r} is not one of {LAYOUTS}")
    if layout == "rows":
        L, pad = meta.get("row_length"), meta.get("pad_id")
        if not isinstance(L, int) or L < 2 or not isinstance(pad, int) or not 0 <= pad < meta["vocab_size"]:
            raise ValueError(f"{where}: a rows dataset needs row_length >= 2 and a pad_id in the vocabulary, got "
                             f"row_length={L!r}, pad_id={pad!r}")
        for name, info in splits.items():
            if info["tokens"] % L:
                raise ValueError(f"{where}: split {name!r} has {info['tokens']} tokens, not a whole number of rows "
                                 f"of {L}")
    return meta


class TokenDataset:
    """One split of a token dataset, memory-mapped read-only.

    >>> ds = TokenDataset("data/shakespeare_char", "train")          # doctest: +SKIP
    >>> x, y = ds.get_batch(12, 64, torch.Generator().manual_seed(0))  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, split: str = "train") -> None:
        self.path = _folder(path)
        self.meta = read_meta(self.path)
        splits = self.meta["splits"]
        if split not in splits:
            raise ValueError(f"{self.path} has no split {split!r}; it has {sorted(splits)}")
        self.split = split
        info = splits[split]
        file = self.path / info["file"]
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing: the dataset is incomplete; prepare it again")
        dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")  # the file format is little-endian
        expected, actual = info["tokens"] * dtype.itemsize, file.stat().st_size
        if actual != expected:
            raise ValueError(
                f"{file} has {actual:,} bytes but {META_FILE} says {info['tokens']:,} {self.meta['dtype']} tokens "
                f"({expected:,} bytes): the file is truncated, corrupt or from another preparation; prepare it again"
            )
        # np.memmap cannot map an empty file; an empty split (val_fraction=0) is an empty array.
        self.data = np.memmap(file, dtype=dtype, mode="r") if info["tokens"] else np.zeros(0, dtype)
        # the rows layout: one sequence per row of row_length ids, padded with pad_id (else None)
        self.row_length: int | None = self.meta["row_length"] if self.meta.get("layout") == "rows" else None
        self.pad_id: int | None = self.meta["pad_id"] if self.row_length is not None else None

    # -- what the dataset is ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.data)

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]

    @property
    def eos_id(self) -> int | None:
        return self.meta.get("eos_id")

    def tokenizer(self):
        """The tokenizer the ids were made with (saved beside them by ``prepare_dataset``)."""
        from lucidlm.tokenizers.formats import load_tokenizer_file

        path = self.path / self.meta.get("tokenizer", "tokenizer.json")
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the dataset's tokenizer is gone; prepare the data again")
        return load_tokenizer_file(path)

    def check_vocab(self, model_vocab_size: int) -> None:
        """ValueError unless every id of this dataset is a row of the model's embedding table.

        A model may have more rows than the tokenizer has tokens (nanoGPT pads GPT-2's 50,257 to
        50,304 for speed); fewer means some ids would index past the table.
        """
        if self.vocab_size > model_vocab_size:
            raise ValueError(
                f"tokenizer/vocab mismatch: {self.path} was tokenized with {self.meta.get('tokenizer_name')!r} "
                f"(vocab_size {self.vocab_size}, largest id in the data {self.meta.get('max_id')}), but the model "
                f"has vocab_size {model_vocab_size}. Prepare the data with the model's tokenizer, or build the "
                f"model with vocab_size >= {self.vocab_size}"
            )

    def check_tokenizer(self, tokenizer) -> None:
        """ValueError unless ``tokenizer`` (a model's) encodes text as this dataset's tokenizer did:
        fine-tuning GPT-2 on ids made by another tokenizer trains on noise without any other error."""
        mine = self.tokenizer()
        problems = []
        if mine.vocab_size != tokenizer.vocab_size:
            problems.append(f"vocab_size {mine.vocab_size} vs {tokenizer.vocab_size}")
        else:
            try:
                a, b = encoder_of(mine)(PROBE_TEXT), encoder_of(tokenizer)(PROBE_TEXT)
            except ValueError:  # a character vocabulary without the probe's characters
                probe = mine.decode(self.data[:256].tolist()) if len(self) else ""
                a, b = encoder_of(mine)(probe), encoder_of(tokenizer)(probe)
            if a != b:
                problems.append(f"{PROBE_TEXT!r} encodes as {a[:8]}... vs {b[:8]}...")
        if problems:
            raise ValueError(
                f"tokenizer/vocab mismatch: {self.path} was tokenized with {self.meta.get('tokenizer_name')!r}, "
                f"which differs from the model's tokenizer ({'; '.join(problems)}). "
                "Prepare the data again with the model's tokenizer"
            )

    # -- batches ------------------------------------------------------------------------------

    def _check_block(self, block_size: int, batch_size: int) -> None:
        if block_size < 1 or batch_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size} and {block_size}")
        if len(self) < block_size + 1:
            raise ValueError(
                f"the {self.split!r} split of {self.path} has {len(self)} tokens; a window of block_size "
                f"{block_size} needs {block_size + 1}. Use a smaller block_size or more data"
                + (" (or a larger val_fraction)" if self.split == "val" else "")
            )

    def get_batch(self, batch_size: int, block_size: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), both int64 (B, T), from B windows at random starts, or B random rows of a rows
        dataset (see the module docstring)."""
        import torch

        if self.row_length is not None:
            self.check_rows(block_size, batch_size)
            rows = torch.randint(len(self) // self.row_length, (batch_size,), generator=generator)  # (B,)
            return self._rows(rows.tolist())
        self._check_block(block_size, batch_size)
        starts = torch.randint(len(self) - block_size, (batch_size,), generator=generator)  # (B,)
        return self._windows(starts.tolist(), block_size)

    def check_rows(self, block_size: int, batch_size: int = 1) -> None:
        """ValueError unless this rows dataset has a row and ``block_size`` holds a whole row
        (a sequence cut short would never be learned to its end)."""
        assert self.row_length is not None, "check_rows is for rows datasets"
        if block_size < 1 or batch_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size} and {block_size}")
        if len(self) == 0:
            raise ValueError(f"the {self.split!r} split of {self.path} has no rows; prepare it with some")
        if block_size < self.row_length - 1:
            raise ValueError(f"{self.path} holds sequences of up to {self.row_length} tokens, so block_size must be "
                             f">= {self.row_length - 1} (x and y are a row shifted by one), got {block_size}")

    def iter_batches(self, batch_size: int, block_size: int,
                     max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive non-overlapping windows from the start of the split, for a deterministic
        evaluation: every token after the first is a target once (up to the last partial window).
        A rows dataset gives its rows in order, each once."""
        if self.row_length is not None:  # every row once, in order
            self.check_rows(block_size, batch_size)
            n_rows = len(self) // self.row_length
            for k, i in enumerate(range(0, n_rows, batch_size)):
                if max_batches is not None and k >= max_batches:
                    return
                yield self._rows(list(range(i, min(i + batch_size, n_rows))))
            return
        self._check_block(block_size, batch_size)
        starts = range(0, len(self) - block_size, block_size)
        for k, i in enumerate(range(0, len(starts), batch_size)):
            if max_batches is not None and k >= max_batches:
                return
            yield self._windows(list(starts[i : i + batch_size]), block_size)

    def _windows(self, starts: list[int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        data = self.data
        w = np.stack([data[i : i + block_size + 1] for i in starts]).astype(np.int64)  # (B, T+1)
        w = torch.from_numpy(w)
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()  # (B, T) inputs, (B, T) targets

    def _rows(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y (B, T) from whole rows, cut after the batch's longest sequence; y = -100 on padding."""
        import torch

        L, pad = self.row_length, self.pad_id
        w = np.stack([self.data[i * L : (i + 1) * L] for i in rows]).astype(np.int64)  # (B, L)
        w = torch.from_numpy(w)
        T = max(int((w != pad).sum(dim=1).max()) - 1, 1)  # the longest sequence less one: x, y are it shifted
        x, y = w[:, :T].contiguous(), w[:, 1 : T + 1].clone()  # (B, T), (B, T)
        y[y == pad] = -100  # F.cross_entropy's ignore_index: padding is never a target
        return x, y

    def __repr__(self) -> str:
        rows = f", rows of {self.row_length}" if self.row_length is not None else ""
        return (f"TokenDataset({str(self.path)!r}, split={self.split!r}, tokens={len(self):,}{rows}, "
                f"vocab_size={self.vocab_size}, dtype={self.meta['dtype']})")
