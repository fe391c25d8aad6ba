"""Token datasets of whole sequences: one padded row per sequence (the "rows" layout).

A stream dataset (``prepare.py``) is one long run of ids, and training draws windows from it
that start anywhere: right for text, where a document is longer than the context. Short,
independent sequences - molecules as SMILES, names, one-line tasks - are better learned whole:
each row is one sequence from its first token, and padding after it carries no loss:

    row       = [BOS] t1 t2 ... tn [EOS] [PAD] ... [PAD]        (L ids; L = the longest + 2)
    x = row[:-1],  y = row[1:] with y = -100 where y is [PAD]

so the loss covers exactly t1..tn and EOS (BOS is never a target: nothing predicts the start).
Unlike packing ``[BOS] a [EOS] [BOS] b [EOS]`` into a stream, no sequence attends to another:
the model learns to write a sequence from its start, which is how it is sampled.

On disk the rows are the flat ``{split}.bin`` of a stream dataset (N * L ids), and meta.json
says ``"layout": "rows"``, ``"row_length": L`` and ``"pad_id"``; ``TokenDataset`` reads it back
(``shards.py``). ``pad_id`` must be an id no sequence uses, since targets equal to it get no loss:
``write_rows_dataset`` checks that.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lucidlm.data.prepare import (
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    _check_target,
    _publish,
    _save_tokenizer_checked,
    dtype_for,
    encoder_of,
)

ROWS_LAYOUT = "rows"


def pad_rows(sequences: Sequence[Sequence[int]], pad_id: int, row_length: int | None = None,
             dtype: str = "uint16") -> np.ndarray:
    """Sequences of ids -> an (N, L) array, each row padded on the right with ``pad_id``.
    L is the longest sequence unless ``row_length`` is given (then no sequence may be longer).

    >>> pad_rows([[1, 5, 2], [1, 2]], pad_id=0).tolist()
    [[1, 5, 2], [1, 2, 0]]
    """
    longest = max((len(s) for s in sequences), default=0)
    L = longest if row_length is None else row_length
    if longest > L:
        raise ValueError(f"a sequence has {longest} ids, more than row_length={L}")
    rows = np.full((len(sequences), L), pad_id, dtype=dtype)  # (N, L)
    for i, seq in enumerate(sequences):
        rows[i, : len(seq)] = seq
    return rows


def write_rows_dataset(out_dir: str | os.PathLike, splits: Mapping[str, np.ndarray], tokenizer, *, pad_id: int,
                       info: Mapping | None = None, overwrite: bool = False) -> dict:
    """Write ``splits`` (name -> (N, L) array of ids, all with the same L) as a rows dataset in
    ``out_dir``; returns its meta.json. ``info``: extra entries for meta.json (where the data came
    from). The training run reads the "train" and "val" splits; others (a test set) ride along."""
    out = Path(out_dir).expanduser().absolute()
    _check_target(out, overwrite)
    for name in ("train", "val"):
        if name not in splits or len(splits[name]) == 0:
            raise ValueError(f"a training dataset needs a non-empty {name!r} split; got {sorted(splits)}")
    lengths = {a.shape[1] if a.ndim == 2 else None for a in splits.values()}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(f"every split must be an (N, L) array with one L; got shapes "
                         f"{ {k: a.shape for k, a in splits.items()} }")
    row_length = lengths.pop()
    if row_length < 2:
        raise ValueError(f"rows need at least 2 ids (an input and its target), got row_length={row_length}")
    vocab_size = int(tokenizer.vocab_size)
    if not 0 <= pad_id < vocab_size:
        raise ValueError(f"pad_id {pad_id} is outside the vocabulary (0..{vocab_size - 1})")
    dtype = dtype_for(vocab_size)
    max_id = -1
    for name, rows in splits.items():
        if rows.size and (rows.min() < 0 or rows.max() >= vocab_size):
            raise ValueError(f"split {name!r} holds ids outside the vocabulary 0..{vocab_size - 1}")
        max_id = max(max_id, int(rows.max()) if rows.size else -1)
        # padding must be a suffix: a pad id inside a sequence would silently lose its loss
        is_pad = rows == pad_id  # (N, L)
        inside = is_pad[:, :-1] & ~is_pad[:, 1:]  # (N, L-1) a pad followed by a real id
        if inside.any():
            row = int(inside.any(axis=1).argmax())
            raise ValueError(f"split {name!r}, row {row}: pad id {pad_id} occurs before the end of the sequence; "
                             "pad_id must be an id that no sequence uses")

    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        tokenizer_file = _save_tokenizer_checked(tokenizer, tmp, encoder_of(tokenizer))
        for name, rows in splits.items():
            np.ascontiguousarray(rows, dtype=np.dtype(dtype).newbyteorder("<")).tofile(tmp / f"{name}.bin")
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "layout": ROWS_LAYOUT,
            "row_length": row_length,
            "pad_id": pad_id,
            "dtype": dtype,
            "vocab_size": vocab_size,
            "tokenizer": tokenizer_file,
            "tokenizer_name": getattr(tokenizer, "name", type(tokenizer).__name__),
            "eos_id": getattr(tokenizer, "eos_id", None),
            "max_id": max_id,
            "splits": {name: {"file": f"{name}.bin", "tokens": int(rows.size), "rows": int(rows.shape[0])}
                       for name, rows in splits.items()},
            "documents": sum(int(rows.shape[0]) for rows in splits.values()),
            **dict(info or {}),
        }
        from lucidlm.files.jsonfile import write_json_atomic

        write_json_atomic(tmp / META_FILE, meta, indent=2)
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return meta
