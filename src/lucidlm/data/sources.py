"""Reading a corpus as a stream of text pieces, never the whole of it at once.

``lucidlm data prepare`` reads four kinds of input, recognised by file extension:

    text      .txt .md .markdown .rst .text   one document per file (UTF-8)
    jsonl     .jsonl .jsonl.gz .ndjson         one JSON object per line; its ``text_field`` is a document
    parquet   .parquet                         a column ``text_field``; each row is a document
    arrow     .arrow                           the same, in Arrow IPC (what Hugging Face ``datasets``
                                               writes: ``save_to_disk`` folders and its cache files)

A folder is searched recursively, in sorted order so the same folder always gives the same token
stream; hidden files and files of other kinds are skipped.

Each source is read as ``(piece, ends_document)`` pairs. A long document (a 1 GB text file) is cut
into pieces of about ``chunk_chars`` characters, so memory stays flat. A cut must not change the
tokens: the tokenizer's split regex sees text on both sides of it. Two kinds of cut are safe for the
GPT-2, cl100k, o200k and Llama 3 patterns, and for WordPiece and character tokenizers:

- after a single newline that is followed by a letter or digit ("...lord.\\n|KING"): no pattern
  lets a pre-token run from a newline into a letter or digit (after "\\n\\n" is not safe: see
  ``_newline_cut``);
- before a space that follows a letter or digit ("word| next"): words, numbers and punctuation
  runs all stop at a space, and the space joins the next word either way.

``prepare`` checks this on the actual tokenizer (``cuts_are_safe``) and keeps documents whole for a
tokenizer where it fails (one that adds a prefix space to every text, say).
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

FORMATS: dict[str, tuple[str, ...]] = {
    "text": (".txt", ".md", ".markdown", ".rst", ".text"),
    "jsonl": (".jsonl", ".jsonl.gz", ".ndjson"),
    "parquet": (".parquet",),
    "arrow": (".arrow",),
}
# A piece of a document with no safe cut in 16 pieces' worth of text is cut anyway (a 16 MB line
# with no space, at the default size), trading a possible token change at one place for bounded memory.
HARD_CUT_FACTOR = 16


@dataclass(frozen=True)
class Source:
    path: Path
    format: str  # a key of FORMATS
    size: int  # bytes on disk, for the progress bar


def supported_extensions() -> str:
    return " ".join(ext for exts in FORMATS.values() for ext in exts)


def format_of(path: Path) -> str | None:
    name = path.name.lower()
    for fmt, exts in FORMATS.items():
        if name.endswith(exts):
            return fmt
    return None


def find_sources(inputs: Sequence[str | os.PathLike]) -> tuple[list[Source], int]:
    """(sources in reading order, number of files skipped in folders) for files and folders."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise ValueError("no inputs given: pass text, JSONL, parquet or arrow files, or folders of them")
    sources: list[Source] = []
    skipped = 0
    for item in inputs:
        path = Path(item).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist")
        if path.is_dir():
            if (path / "dataset_dict.json").is_file():
                splits = sorted(p.name for p in path.iterdir() if p.is_dir())
                raise ValueError(
                    f"{path} is a Hugging Face DatasetDict (several splits: {', '.join(splits)}); "
                    f"pass one split's folder, e.g. {path / (splits[0] if splits else 'train')}"
                )
            found = 0
            for file in sorted(path.rglob("*")):
                rel = file.relative_to(path).parts
                if not file.is_file() or any(part.startswith(".") for part in rel):
                    continue
                fmt = format_of(file)
                if fmt is None:
                    skipped += 1
                    continue
                sources.append(Source(file, fmt, file.stat().st_size))
                found += 1
            if not found:
                raise ValueError(f"folder {path} holds no files lucidlm can read ({supported_extensions()})")
        else:
            fmt = format_of(path)
            if fmt is None:
                raise ValueError(
                    f"cannot tell what kind of data {path} holds from its extension; supported: "
                    f"{supported_extensions()} (rename a plain-text file to .txt)"
                )
            sources.append(Source(path, fmt, path.stat().st_size))
    return sources, skipped


# ----------------------------------------------------------------------------------------------
# Safe cuts


def _newline_cut(text: str, limit: int) -> int:
    """The largest p <= limit where text[p-1] is a newline after a non-space and text[p] a letter
    or digit; 0 if none. (After "\\n\\n" is not safe: at the end of a piece GPT-2's ``\\s+(?!\\S)``
    takes both newlines as one token, inside the text only the first.)

    >>> _newline_cut("ab\\ncd\\n\\nef", 9), _newline_cut("ab\\ncd\\nef", 9)
    (3, 6)
    """
    i = text.rfind("\n", 0, limit)
    while i > 0:
        if i + 1 < len(text) and text[i + 1].isalnum() and not text[i - 1].isspace():
            return i + 1
        i = text.rfind("\n", 0, i)
    return 0


def _space_cut(text: str, limit: int) -> int:
    """The largest p <= limit with text[p] == " " and text[p-1] a letter or digit; 0 if none.

    >>> _space_cut("to be, or not", 12)
    9
    """
    i = text.rfind(" ", 0, limit + 1)
    while i > 0:
        if text[i - 1].isalnum():
            return i
        i = text.rfind(" ", 0, i)
    return 0


def safe_cut(text: str, limit: int) -> int:
    """The largest safe cut at or before ``limit`` (a newline cut preferred), or 0."""
    return _newline_cut(text, limit) or _space_cut(text, limit)


def next_safe_cut(text: str, start: int) -> int:
    """The smallest safe cut after ``start``, or 0: for a stretch with none before the limit.

    >>> next_safe_cut("aaaa bb\\ncc", 2), next_safe_cut("a\\n\\n\\n b", 0)
    (4, 0)
    """
    best = 0
    i = text.find("\n", start)
    while i != -1 and i + 1 < len(text):
        if i > 0 and text[i + 1].isalnum() and not text[i - 1].isspace():
            best = i + 1
            break
        i = text.find("\n", i + 1)
    j = text.find(" ", max(start, 1))
    while j != -1 and (not best or j < best):
        if text[j - 1].isalnum():
            return j
        j = text.find(" ", j + 1)
    return best


def split_text(text: str, chunk_chars: int) -> Iterator[str]:
    """``text`` in pieces of about ``chunk_chars``, cut only at safe places (so a piece may be
    longer when there is none); ``"".join`` of the pieces is ``text``."""
    while len(text) > chunk_chars:
        cut = safe_cut(text, chunk_chars) or next_safe_cut(text, chunk_chars)
        if not cut:
            break
        yield text[:cut]
        text = text[cut:]
    if text:
        yield text


def cuts_are_safe(encode: Callable[[str], list[int]]) -> bool:
    """Whether cutting at the safe places leaves this tokenizer's ids unchanged, on probe texts."""
    probes = [
        "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.",
        "def f(x):\n    return x  +  1\n\n\n# done 2024-01-02\nok",
        "Ünïcödé wörds, 数字 123456 and   gaps\r\nend. é\n\tx",
    ]
    for text in probes:
        whole = encode(text)
        cuts = {c for limit in range(1, len(text)) for c in (_newline_cut(text, limit), _space_cut(text, limit)) if c}
        for cut in cuts:
            if encode(text[:cut]) + encode(text[cut:]) != whole:
                return False
    return True


# ----------------------------------------------------------------------------------------------
# Readers: each yields (piece, ends_document) and reports bytes read through ``advance``

Pieces = Iterator[tuple[str, bool]]


def read_pieces(source: Source, *, text_field: str, chunk_chars: int, split: bool,
                advance: Callable[[int], None]) -> Pieces:
    readers = {"jsonl": _read_jsonl, "parquet": _read_parquet, "arrow": _read_arrow}
    if source.format == "text":
        return _read_text(source.path, chunk_chars, split, advance)
    return _documents_to_pieces(readers[source.format](source.path, text_field, advance), chunk_chars, split)


def _documents_to_pieces(documents: Iterator[str], chunk_chars: int, split: bool) -> Pieces:
    for doc in documents:
        if not doc:
            continue  # an empty document would only add a lone separator
        if not split:
            yield doc, True
            continue
        pieces = list(split_text(doc, chunk_chars))
        for k, piece in enumerate(pieces):
            yield piece, k == len(pieces) - 1


def _read_text(path: Path, chunk_chars: int, split: bool, advance: Callable[[int], None]) -> Pieces:
    """One document per file, read in blocks and decoded incrementally (a UTF-8 character may span
    two blocks). ``newline=""`` semantics: "\\r\\n" stays as it is in the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buf, offset, emitted = "", 0, False
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_chars)
            pending = len(decoder.getstate()[0])  # bytes of a character the last block cut in two
            try:
                buf += decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"{path} is not UTF-8 text: byte {offset - pending + exc.start} cannot be decoded "
                    f"({exc.reason}); "
                    "convert it with e.g. `iconv -f latin1 -t utf-8`"
                ) from None
            offset += len(block)
            advance(len(block))
            if not block:
                break
            while split and len(buf) > chunk_chars:
                cut = safe_cut(buf, chunk_chars) or next_safe_cut(buf, chunk_chars)
                if not cut and len(buf) >= HARD_CUT_FACTOR * chunk_chars:
                    cut = chunk_chars
                if not cut:
                    break  # read on until a safe place turns up
                yield buf[:cut], False
                buf, emitted = buf[cut:], True
    if buf or emitted:
        yield buf, True


def _read_jsonl(path: Path, text_field: str, advance: Callable[[int], None]) -> Iterator[str]:
    gz = path.name.lower().endswith(".gz")
    with open(path, "rb") as raw:
        f = gzip.open(raw) if gz else raw
        last = 0
        for lineno, line in enumerate(f, 1):
            pos = raw.tell()  # compressed bytes for .gz, so the bar reaches the file size
            advance(pos - last)
            last = pos
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}:{lineno} is not valid JSON: {exc}") from None
            if not isinstance(record, dict) or text_field not in record:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise ValueError(
                    f"{path}:{lineno} has no field {text_field!r} (it has {keys}); pass --text-field NAME"
                )
            text = record[text_field]
            if text is None:
                continue
            if not isinstance(text, str):
                raise ValueError(f"{path}:{lineno}: field {text_field!r} is {type(text).__name__}, not a string")
            yield text


def _text_column(schema, path: Path, text_field: str) -> None:
    import pyarrow as pa

    if text_field not in schema.names:
        raise ValueError(f"{path} has no column {text_field!r} (it has {schema.names}); pass --text-field NAME")
    kind = schema.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise ValueError(f"{path}: column {text_field!r} holds {kind}, not strings")


def _pyarrow(path: Path):
    try:
        import pyarrow as pa
    except ImportError:
        raise ValueError(f"reading {path} needs pyarrow: pip install pyarrow") from None
    return pa


def _read_parquet(path: Path, text_field: str, advance: Callable[[int], None]) -> Iterator[str]:
    _pyarrow(path)
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for a corrupt file
        raise ValueError(f"{path} is not a readable parquet file: {exc}") from None
    _text_column(pf.schema_arrow, path, text_field)
    rows, size, done, sent = max(pf.metadata.num_rows, 1), path.stat().st_size, 0, 0
    for batch in pf.iter_batches(batch_size=1024, columns=[text_field]):
        yield from (t for t in batch.column(0).to_pylist() if t is not None)
        done += batch.num_rows
        new = size * min(done, rows) // rows  # parquet is compressed: advance in proportion to rows
        advance(new - sent)
        sent = new
    advance(size - sent)


def _read_arrow(path: Path, text_field: str, advance: Callable[[int], None]) -> Iterator[str]:
    """Arrow IPC: the *stream* format that ``datasets`` writes (``data-00000-of-00001.arrow``),
    or the *file* format (``pyarrow.ipc.new_file``). Memory-mapped, one record batch at a time."""
    pa = _pyarrow(path)
    with pa.memory_map(str(path)) as mm:
        try:
            reader = pa.ipc.open_stream(mm)
            batches = iter(reader)
        except pa.ArrowInvalid:
            mm.seek(0)
            try:
                file_reader = pa.ipc.open_file(mm)
            except pa.ArrowInvalid as exc:
                raise ValueError(f"{path} is not an Arrow IPC stream or file: {exc}") from None
            reader = file_reader
            batches = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
        _text_column(reader.schema, path, text_field)
        column = reader.schema.get_field_index(text_field)
        last = 0
        for batch in batches:
            yield from (t for t in batch.column(column).to_pylist() if t is not None)
            pos = mm.tell()
            advance(pos - last)
            last = pos
        advance(path.stat().st_size - last)
