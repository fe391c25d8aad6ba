"""Text files -> a token dataset: the directory a training run reads.

    my-data/
      meta.json        format, dtype, vocab_size, token counts, sources (``read_meta`` checks it)
      tokenizer.json   the tokenizer that made the ids, in Hugging Face's format, with its
                       tokenizer_config.json (and tokenizer.lucidlm.json for characters and
                       SMILES); ``TokenDataset.tokenizer()`` loads it
      train.bin        every token id, flat, little-endian uint16 (vocab <= 65536) or uint32
      val.bin          the last ``val_fraction`` of the same stream

The steps, all streaming so that a corpus larger than memory works:
1. find the sources (files, folders; see ``sources.py`` for the formats) in a fixed order;
2. read them as pieces of about ``chunk_chars`` characters, group pieces into tasks of that size;
3. encode the tasks on ``workers`` forked processes, at most two tasks per worker in flight, and
   append the ids in order to one file - memory holds a few tasks, never the corpus;
4. move the last ``val_fraction`` of the tokens into val.bin (nanoGPT's split: first 90% of the
   stream for training, last 10% for validation, by default), and write meta.json;
5. rename the finished directory into place, so a crash never leaves half a dataset.

Each document is followed by the tokenizer's end-of-text id (``<|endoftext|>`` for GPT-2 and
tiktoken vocabularies, else its ``eos_id``) so the model learns where documents end, as GPT-2 was
trained. A character tokenizer has no such id: documents are joined as they are. Special-token
text inside documents ("<|endoftext|>" typed in a web page) is encoded as ordinary text, never as
the control token (tiktoken's ``encode_ordinary``, as nanoGPT's openwebtext preparation does).
"""

from __future__ import annotations

import functools
import gc
import inspect
import multiprocessing as mp
import os
import secrets
import shutil
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lucidlm.data.sources import Source, cuts_are_safe, find_sources, read_pieces

FORMAT_NAME = "lucidlm-tokens"
# 2 added the "rows" layout (rows.py), which a version-1 reader would misread as one stream
FORMAT_VERSION = 2
META_FILE, TOKENIZER_FILE = "meta.json", "tokenizer.json"
DEFAULT_CHUNK_CHARS = 1 << 20  # characters per task: ~0.3-1 s of BPE work, a few MB of memory
# Below this many input bytes one process is faster than forking workers (parallel.py measured ~4 MB).
MIN_BYTES_FOR_WORKERS = 4 << 20
MAX_SOURCES_IN_META = 1000


def dtype_for(vocab_size: int) -> str:
    """The smallest unsigned dtype that holds every id: uint16 up to 65,536 tokens (GPT-2's 50,257),
    uint32 above (cl100k's 100,277). Half the disk and page cache for most models."""
    if vocab_size <= 1 << 16:
        return "uint16"
    if vocab_size <= 1 << 32:
        return "uint32"
    raise ValueError(f"vocab_size {vocab_size} does not fit in uint32")


def document_separator(tokenizer) -> int | None:
    """The id put after each document: ``<|endoftext|>`` where the vocab has it (GPT-2, cl100k,
    SmolLM2 - whose ``eos_id`` is the chat turn end ``<|im_end|>``, not the document end), else
    the tokenizer's ``eos_id``, else None."""
    special = getattr(tokenizer, "special_tokens", None) or {}
    if "<|endoftext|>" in special:
        return int(special["<|endoftext|>"])
    eos = getattr(tokenizer, "eos_id", None)
    return None if eos is None else int(eos)


def encoder_of(tokenizer) -> Callable[[str], list[int]]:
    """text -> ids with no special tokens added or recognised."""
    if hasattr(tokenizer, "encode_ordinary"):
        return tokenizer.encode_ordinary
    if "add_special_tokens" in inspect.signature(tokenizer.encode).parameters:  # WordPiece adds [CLS]/[SEP]
        return functools.partial(tokenizer.encode, add_special_tokens=False)
    return tokenizer.encode


# ----------------------------------------------------------------------------------------------
# Encoding tasks, in this process or in forked workers

Task = tuple[str, list[tuple[str, bool]]]  # (where the text came from, [(piece, ends_document)])


def encode_pieces(encode: Callable[[str], list[int]], separator: int | None, dtype: str, vocab_size: int,
                  task: Task) -> np.ndarray:
    """The ids of a task's pieces, with ``separator`` after each document end, as ``dtype``."""
    where, pieces = task
    ids: list[int] = []
    try:
        for text, ends_document in pieces:
            if text:
                ids.extend(encode(text))
            if ends_document and separator is not None:
                ids.append(separator)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"while encoding {where}: {exc}") from None
    arr = np.array(ids, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        bad = int(arr.max() if arr.max() >= vocab_size else arr.min())
        raise ValueError(f"while encoding {where}: the tokenizer produced id {bad}, outside its vocab_size {vocab_size}")
    return arr.astype(dtype)


_worker_args: tuple | None = None  # (encode, separator, dtype, vocab_size), set in each worker


def _init_worker(*args) -> None:
    global _worker_args
    _worker_args = args


def _encode_in_worker(task: Task) -> np.ndarray:
    return encode_pieces(*_worker_args, task)


def _encode_all(tasks: Iterator[Task], args: tuple, workers: int) -> Iterator[np.ndarray]:
    """The encoded tasks, in order. With workers > 1, at most ``2 * workers`` tasks are in flight:
    ``Pool.imap`` would read the whole input ahead of the workers and fill memory with it."""
    if workers == 1:
        for task in tasks:
            yield encode_pieces(*args, task)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    # Freeze the garbage collector's view while forking, so workers do not copy the parent's pages
    # by touching object headers (see tokenizers/parallel.py).
    gc.freeze()
    try:
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=args)
    finally:
        gc.unfreeze()
    with pool:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.apply_async(_encode_in_worker, (task,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _tasks(sources: list[Source], stats: list[dict], read: Callable[[Source], Iterator[tuple[str, bool]]],
           chunk_chars: int) -> Iterator[Task]:
    """Pieces grouped into tasks of about ``chunk_chars`` characters; counts documents per source."""
    group: list[tuple[str, bool]] = []
    size, where = 0, ""
    for source, stat in zip(sources, stats):
        for piece, ends_document in read(source):
            if not group:
                where = str(source.path)
            group.append((piece, ends_document))
            size += len(piece)
            stat["documents"] += ends_document
            if size >= chunk_chars:
                yield where, group
                group, size = [], 0
    if group:
        yield where, group


# ----------------------------------------------------------------------------------------------
# The whole preparation


def prepare_dataset(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    tokenizer="char",
    *,
    val_fraction: float = 0.1,
    val_tokens: int | None = None,
    text_field: str = "text",
    append_eos: bool = True,
    workers: int | None = None,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Tokenize ``inputs`` into a dataset directory ``out_dir``; returns its meta.json as a dict.

    Args:
        inputs: files and folders (see ``sources.py`` for formats).
        tokenizer: a tokenizer object, a name or path for ``load_tokenizer`` ("gpt2", "cl100k_base",
            a tokenizer.json, a checkpoint folder), or "char" to build nanoGPT's character
            vocabulary from the corpus (a first pass over it; 65 characters for Tiny Shakespeare).
        val_fraction: the share of the token stream, taken from its end, that becomes val.bin.
        val_tokens: an exact number of validation tokens instead (overrides ``val_fraction``).
        text_field: the JSONL field / parquet or arrow column holding the text.
        append_eos: put the end-of-text id after each document (when the tokenizer has one).
        workers: encoding processes; default one per CPU, one for inputs under 4 MB.
        chunk_chars: characters per encoding task (memory use is a few tasks' worth).
        overwrite: replace an existing dataset at ``out_dir``.
        progress: show a progress bar (bytes read) on stderr.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_tokens is not None and (not isinstance(val_tokens, int) or val_tokens < 0):
        raise ValueError(f"val_tokens must be a non-negative integer, got {val_tokens!r}")
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be >= 1, got {chunk_chars}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir).expanduser().absolute()
    _check_target(out, overwrite)
    sources, skipped = find_sources(inputs)
    total_bytes = sum(s.size for s in sources)
    if workers is None:
        workers = 1 if total_bytes < MIN_BYTES_FOR_WORKERS else _cpu_count()

    from tqdm.auto import tqdm

    def reader(bar, split: bool) -> Callable[[Source], Iterator[tuple[str, bool]]]:
        return lambda s: read_pieces(s, text_field=text_field, chunk_chars=chunk_chars, split=split,
                                     advance=bar.update)

    tokenizer_name = str(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else getattr(
        tokenizer, "name", type(tokenizer).__name__)
    if isinstance(tokenizer, str) and tokenizer == "char":
        with tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="characters",
                  disable=not progress) as bar:
            tokenizer = _char_tokenizer(sources, reader(bar, split=True))
    elif isinstance(tokenizer, (str, os.PathLike)):
        from lucidlm.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(tokenizer)
    encode = encoder_of(tokenizer)
    vocab_size = int(tokenizer.vocab_size)
    dtype = dtype_for(vocab_size)
    separator = document_separator(tokenizer) if append_eos else None
    split = _splits_safely(tokenizer, encode)

    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        tokenizer_file = _save_tokenizer_checked(tokenizer, tmp, encode)
        stats = [{"path": str(s.path), "format": s.format, "bytes": s.size, "documents": 0} for s in sources]
        n_tokens, max_id = 0, -1
        with open(tmp / "train.bin", "wb") as f, tqdm(total=total_bytes, unit="B", unit_scale=True,
                                                      unit_divisor=1024, desc="tokenizing",
                                                      disable=not progress) as bar:
            tasks = _tasks(sources, stats, reader(bar, split), chunk_chars)
            for ids in _encode_all(tasks, (encode, separator, dtype, vocab_size), workers):
                ids.tofile(f)
                n_tokens += ids.size
                if ids.size:
                    max_id = max(max_id, int(ids.max()))
        if n_tokens == 0:
            raise ValueError(f"the inputs hold no text ({len(sources)} files, all empty)")
        n_val = _val_size(n_tokens, val_fraction, val_tokens)
        _split_tail(tmp / "train.bin", tmp / "val.bin", n_tokens - n_val, np.dtype(dtype).itemsize)
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "dtype": dtype,
            "vocab_size": vocab_size,
            "tokenizer": tokenizer_file,
            "tokenizer_name": str(tokenizer_name),
            "eos_id": separator,
            "max_id": max_id,
            "splits": {"train": {"file": "train.bin", "tokens": n_tokens - n_val},
                       "val": {"file": "val.bin", "tokens": n_val}},
            "val_fraction": None if val_tokens is not None else val_fraction,
            "documents": sum(s["documents"] for s in stats),
            "text_field": text_field,
            "split_long_documents": split,
            "skipped_files": skipped,
            "sources": stats[:MAX_SOURCES_IN_META],
            "sources_total": len(stats),
        }
        from lucidlm.files.jsonfile import write_json_atomic

        write_json_atomic(tmp / META_FILE, meta, indent=2)
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _char_tokenizer(sources: list[Source], read: Callable[[Source], Iterator[tuple[str, bool]]]):
    """nanoGPT's shakespeare_char vocabulary: the sorted set of the corpus's characters, found in a
    first streaming pass (a set of characters is small whatever the corpus size)."""
    from lucidlm.tokenizers import CharTokenizer

    chars: set[str] = set()
    for source in sources:
        for piece, _ in read(source):
            chars.update(piece)
    return CharTokenizer(sorted(chars))


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _splits_safely(tokenizer, encode) -> bool:
    from lucidlm.tokenizers import CharTokenizer

    if isinstance(tokenizer, CharTokenizer):
        return True  # one id per character: every cut is safe
    try:
        return cuts_are_safe(encode)
    except ValueError:  # a tokenizer that cannot encode the probe text (SMILES): keep documents whole
        return False


def _val_size(n_tokens: int, val_fraction: float, val_tokens: int | None) -> int:
    """nanoGPT's split: ``train = data[:int(n * 0.9)]``, ``val = data[int(n * 0.9):]``."""
    if val_tokens is None:
        return n_tokens - int(n_tokens * (1 - val_fraction))
    if val_tokens >= n_tokens:
        raise ValueError(f"val_tokens={val_tokens} leaves no training tokens: the corpus has only {n_tokens}")
    return val_tokens


def _split_tail(train: Path, val: Path, n_train: int, itemsize: int) -> None:
    """Move everything after token ``n_train`` of ``train`` into ``val`` (copy in blocks, truncate)."""
    with open(train, "rb") as src, open(val, "wb") as dst:
        src.seek(n_train * itemsize)
        shutil.copyfileobj(src, dst, 1 << 20)  # 1 MB blocks: memory stays flat
    os.truncate(train, n_train * itemsize)


def _save_tokenizer_checked(tokenizer, folder: Path, encode) -> str:
    """Save the tokenizer, then check the saved file encodes like the original: the ids in the
    dataset are only meaningful with the tokenizer a trainer will load back. Returns the name of
    the file it is read back from (meta.json's "tokenizer")."""
    from lucidlm.loading.checkpoint import save_tokenizer
    from lucidlm.tokenizers.formats import load_tokenizer_file

    saved = save_tokenizer(tokenizer, folder)
    reloaded = load_tokenizer_file(saved)
    probe = "The quick brown fox, 1234 jumps!\n\tÜber 数字 ok"
    try:
        same = encode(probe) == encoder_of(reloaded)(probe)
    except ValueError:  # a small vocabulary (characters, SMILES) that cannot encode the probe
        same = type(reloaded) is type(tokenizer) and reloaded.to_dict() == tokenizer.to_dict()
    if not same or reloaded.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the tokenizer saved as {saved.name} does not encode like {tokenizer!r}; "
                         "it cannot be stored with the dataset")
    return saved.name


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if not overwrite:
        raise ValueError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    if any(out.iterdir()) and not (out / META_FILE).is_file():
        raise ValueError(f"{out} is a non-empty directory without {META_FILE} (not a token dataset); "
                         "refusing to replace it")


def _publish(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, replacing an earlier dataset (old one aside, new one in, delete old)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
