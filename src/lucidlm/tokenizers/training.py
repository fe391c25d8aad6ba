"""Training a byte-level BPE tokenizer: learn which byte pairs to merge, most frequent first.

The algorithm (Sennrich et al. 2016, as used for GPT-2):
    ids = utf-8 bytes of every chunk of the training text
    repeat vocab_size - 256 times:
        count every adjacent pair (a, b) inside each chunk
        (a, b) = the most frequent pair            # tie-break: the smallest (a, b)
        give it a new id n, replace every (a, b) with n
Two implementations, which produce the same merges (``tests/test_bpe_training.py``):
- ``train_bpe_reference``: exactly the loop above, recounting everything every step (minbpe-style).
- ``train_bpe``: the same merges, fast: identical chunks are counted once (a corpus has far fewer
  unique words than words), pair counts are updated only where a merge changed a word, and a heap
  finds the most frequent pair without scanning all pairs. Its merge loop (``learn_merges``) runs in
  C (``_train_kernel.c``) when that was built; the Python loop beside it gives the same merges.

Tie-break: among pairs with equal counts, the smallest pair of ids (a, b) wins. It is a total,
documented order that does not depend on dict iteration order or on the order texts arrive in.
"""

from __future__ import annotations

import codecs
import heapq
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from lucidlm.tokenizers.bpe import BPETokenizer
from lucidlm.tokenizers.patterns import Splitter, resolve_pattern

try:  # the optional C merge loop (setup.py builds it); the Python loop below learns the same merges
    from lucidlm.tokenizers import _train_kernel
except ImportError:  # pragma: no cover - no compiler at install time
    _train_kernel = None


def _check_vocab_size(vocab_size: int, special_tokens: dict[str, int] | None) -> None:
    n_special = len(special_tokens or {})
    if not isinstance(vocab_size, int) or vocab_size < 256 + n_special:
        raise ValueError(
            f"vocab_size={vocab_size!r} is too small: a byte-level BPE needs the 256 byte tokens "
            f"plus {n_special} special token(s), so at least {256 + n_special}"
        )


def _finish(
    merges: list[tuple[int, int]], pattern: str | None, special_tokens: dict[str, int] | None, name: str
) -> BPETokenizer:
    vocab = {i: bytes([i]) for i in range(256)}
    for n, (a, b) in enumerate(merges, start=256):
        vocab[n] = vocab[a] + vocab[b]
    # Special tokens are numbered after the learned ones unless the caller fixed their ids.
    specials = {}
    next_id = 256 + len(merges)
    for text, i in (special_tokens or {}).items():
        specials[text] = next_id if i is None or i < 0 else i
        next_id = max(next_id, specials[text]) + 1
    return BPETokenizer(vocab, merges, pattern=pattern, special_tokens=specials, name=name)


# ----------------------------------------------------------------------------------------------
# The reference trainer: the textbook loop.


def train_bpe_reference(
    text: str,
    vocab_size: int,
    *,
    pattern: str | None = "cl100k",
    special_tokens: dict[str, int] | None = None,
    name: str = "bpe",
) -> BPETokenizer:
    """Train by recounting all pairs of all chunks at every step. Slow (minutes on 1 MB); read it."""
    _check_vocab_size(vocab_size, special_tokens)
    pattern = resolve_pattern(pattern)
    chunks = Splitter(pattern)(text) if pattern else [text]
    words = [list(chunk.encode("utf-8")) for chunk in chunks]
    merges: list[tuple[int, int]] = []
    for new_id in range(256, vocab_size - len(special_tokens or {})):
        counts: Counter[tuple[int, int]] = Counter()
        for w in words:
            counts.update(zip(w, w[1:]))
        if not counts:
            break  # every chunk is a single token: nothing left to merge
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        words = [_replace_pair(w, best, new_id) for w in words]
    return _finish(merges, pattern, special_tokens, name)


def _replace_pair(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of ``pair``, left to right.

    >>> _replace_pair([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> _replace_pair([7, 7, 7], (7, 7), 9)
    [9, 7]
    """
    a, b = pair
    out, i, n = [], 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


# ----------------------------------------------------------------------------------------------
# Counting chunks, streaming.


def count_chunks(texts: Iterable[str], pattern: str | None) -> Counter[str]:
    """How often each pre-tokenized chunk occurs in the texts."""
    pattern = resolve_pattern(pattern)
    split = Splitter(pattern) if pattern else (lambda t: [t])
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split(text))
    return counts


def iter_file_blocks(paths: Iterable[str | os.PathLike], block_chars: int = 1 << 20, progress: bool = False) -> Iterator[str]:
    """Yield the text of the files in blocks of about ``block_chars`` characters, never loading a
    whole file. Raises ValueError naming the file and byte offset of invalid UTF-8."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"training file not found: {p}")
    total = sum(p.stat().st_size for p in paths)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc="counting chunks")
    try:
        for p in paths:
            decoder = codecs.getincrementaldecoder("utf-8")("strict")
            offset = 0
            with open(p, "rb") as f:
                while True:
                    raw = f.read(block_chars)
                    final = not raw
                    try:
                        text = decoder.decode(raw, final=final)
                    except UnicodeDecodeError as exc:
                        raise ValueError(
                            f"{p} is not UTF-8 text: invalid byte {raw[exc.start:exc.start + 1]!r} near byte offset "
                            f"{offset + exc.start}. Convert it first (e.g. iconv -f latin1 -t utf-8)."
                        ) from None
                    offset += len(raw)
                    if bar is not None:
                        bar.update(len(raw))
                    if text:
                        yield text
                    if final:
                        break
    finally:
        if bar is not None:
            bar.close()


def count_chunks_streaming(blocks: Iterable[str], pattern: str | None) -> Counter[str]:
    """``count_chunks`` over a text that arrives in blocks (e.g. a file bigger than memory).

    A block boundary may fall inside a chunk (or make ``\\s++$`` match early), so the last chunk
    of each block is not counted yet but carried into the next block. Regex matching restarts
    cleanly at a chunk boundary, so the counts equal those of the whole text at once.
    """
    pattern = resolve_pattern(pattern)
    split = Splitter(pattern) if pattern else None
    counts: Counter[str] = Counter()
    carry = ""
    for block in blocks:
        if split is None:  # no pre-tokenization: the whole stream is one chunk
            carry += block
            continue
        chunks = split(carry + block)
        if chunks:
            carry = chunks.pop()
            counts.update(chunks)
    if carry:
        counts.update(split(carry) if split else [carry])
    return counts


# ----------------------------------------------------------------------------------------------
# The fast trainer.


def train_bpe(
    text: str | Iterable[str] | None = None,
    vocab_size: int = 1024,
    *,
    pattern: str | None = "cl100k",
    special_tokens: dict[str, int] | None = None,
    files: Iterable[str | os.PathLike] | None = None,
    chunk_counts: Counter[str] | None = None,
    min_frequency: int = 1,
    progress: bool = False,
    name: str = "bpe",
) -> BPETokenizer:
    """Train a BPE tokenizer; the same merges as ``train_bpe_reference``, much faster.

    Give the training text as ``text`` (a string or an iterable of strings), as ``files``
    (streamed in blocks, never loaded whole), or as ready ``chunk_counts``.
    Merging stops early if no pair occurs ``min_frequency`` times any more.
    Special tokens (``{"<|endoftext|>": None}``) get the ids after the learned tokens.
    """
    _check_vocab_size(vocab_size, special_tokens)
    pattern = resolve_pattern(pattern)
    if chunk_counts is None:
        if files is not None:
            chunk_counts = count_chunks_streaming(iter_file_blocks(files, progress=progress), pattern)
        elif text is not None:
            chunk_counts = count_chunks([text] if isinstance(text, str) else text, pattern)
        else:
            raise ValueError("train_bpe needs text=, files= or chunk_counts=")
    n_merges = vocab_size - 256 - len(special_tokens or {})
    merges = learn_merges(chunk_counts, n_merges, min_frequency=min_frequency, progress=progress)
    return _finish(merges, pattern, special_tokens, name)


def learn_merges(
    chunk_counts: Counter[str] | dict[str, int],
    n_merges: int,
    *,
    min_frequency: int = 1,
    progress: bool = False,
    use_kernel: bool | None = None,
) -> list[tuple[int, int]]:
    """The heart of the fast trainer: up to ``n_merges`` merges learned from {chunk: count}.

    ``use_kernel=None`` runs the C loop (``_train_kernel.c``; 20x faster at vocab 32k) when it was built and
    the environment does not set LUCIDLM_NO_KERNEL=1; ``False`` runs the Python loop below. Both
    learn the same merges. Counts are ints >= 0 (chunks counted 0 times are ignored).
    """
    if not isinstance(n_merges, int) or n_merges < 0:
        raise ValueError(f"n_merges must be an int >= 0, got {n_merges!r}")
    if not isinstance(min_frequency, int) or min_frequency < 0:
        raise ValueError(f"min_frequency must be an int >= 0, got {min_frequency!r}")
    if use_kernel is None:
        use_kernel = _train_kernel is not None and not os.environ.get("LUCIDLM_NO_KERNEL")
    elif use_kernel and _train_kernel is None:
        raise ValueError("use_kernel=True, but the C training kernel is not built: run "
                         "`python setup.py build_ext --inplace` (needs a C compiler), or pass use_kernel=False")
    if not isinstance(chunk_counts, dict):
        chunk_counts = dict(chunk_counts)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_merges, desc="merging", unit="merge")
    try:
        if use_kernel:
            report = None if bar is None else (lambda done: bar.update(done - bar.n))
            try:
                return _train_kernel.learn_merges(chunk_counts, n_merges, min_frequency, report)
            except OverflowError:  # counts or min_frequency beyond 64 bits: Python's ints have no limit
                pass
        return _learn_merges_python(chunk_counts, n_merges, min_frequency, bar)
    finally:
        if bar is not None:
            bar.close()


def _learn_merges_python(chunk_counts: dict[str, int], n_merges: int, min_frequency: int, bar) -> list[tuple[int, int]]:
    """``learn_merges`` in Python. Pairs are packed into one int (a << 32 | b) because int keys
    hash and compare faster than tuples, and their order is the (a, b) tuple order."""
    words: list[list[int]] = []
    freqs: list[int] = []
    for chunk, count in chunk_counts.items():
        if not isinstance(chunk, str):
            raise TypeError(f"chunk_counts keys must be str (chunks of text), got {type(chunk).__name__}")
        if not isinstance(count, int):
            raise TypeError(f"chunk_counts[{chunk!r}] must be an int count, got {type(count).__name__}")
        if count < 0:
            raise ValueError(f"chunk_counts[{chunk!r}] = {count}: counts must be >= 0")
        w = list(chunk.encode("utf-8"))
        if len(w) > 1 and count > 0:  # a single byte has no pairs; it can never change
            words.append(w)
            freqs.append(count)

    # pair -> total count, and pair -> the words it occurs in (may list words it has left; checked)
    pair_count: dict[int, int] = {}
    where: dict[int, set[int]] = {}
    for wi, w in enumerate(words):
        f = freqs[wi]
        for a, b in zip(w, w[1:]):
            key = a << 32 | b
            pair_count[key] = pair_count.get(key, 0) + f
            s = where.get(key)
            if s is None:
                where[key] = {wi}
            else:
                s.add(wi)
    # Max-heap by count, then smallest pair: entries (-count, pair). Entries go stale when a count
    # drops; a popped entry is checked against pair_count and re-queued with its true count.
    heap = [(-c, key) for key, c in pair_count.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    mask = (1 << 32) - 1
    new_id = 256
    while len(merges) < n_merges and heap:
        negc, key = heapq.heappop(heap)
        count = pair_count.get(key, 0)
        if count != -negc:
            if count > 0:
                heapq.heappush(heap, (-count, key))
            continue
        if count < min_frequency:
            break
        a, b = key >> 32, key & mask
        merges.append((a, b))
        added: set[int] = set()
        for wi in where.pop(key):
            # (a word may have lost this pair to an earlier merge; _merge_word then does nothing)
            _merge_word(words[wi], a, b, new_id, freqs[wi], pair_count, added, where, wi)
        del pair_count[key]
        # Counts only grow for pairs that contain the new token; every other change is a decrease,
        # which the lazy check above handles. So only the new pairs need heap entries.
        for k in added:
            c = pair_count[k]
            if c > 0:
                heapq.heappush(heap, (-c, k))
        new_id += 1
        if bar is not None:
            bar.update(1)
    return merges


def _merge_word(
    w: list[int], a: int, b: int, n: int, f: int,
    pair_count: dict[int, int], added: set[int], where: dict[int, set[int]], wi: int,
) -> bool:
    """Replace (a, b) by n in word ``w`` in place, patching the counts of the neighbouring pairs.

    For ``x a b y`` -> ``x n y`` the pairs (x,a), (b,y) lose ``f`` (the word's frequency) and
    (x,n), (n,y) gain it; (a,b) itself is dropped by the caller. In ``x a b a b y`` -> ``x n n y``
    the middle pair (b,a) becomes (n,n). Scanning for ``a`` uses ``list.index``, which runs in C.
    Returns False if the word does not contain the pair.
    """
    out: list[int] = []
    i, length = 0, len(w)
    changed = False
    while True:
        try:
            j = w.index(a, i, length - 1)
        except ValueError:
            break
        if w[j + 1] != b:
            out.extend(w[i : j + 1])
            i = j + 1
            continue
        out.extend(w[i:j])
        changed = True
        if out:  # left neighbour
            p = out[-1]
            old = (b << 32 | a) if p == n else (p << 32 | a)  # p == n: the previous merge was adjacent
            pair_count[old] -= f
            k = p << 32 | n
            pair_count[k] = pair_count.get(k, 0) + f
            added.add(k)
            where.setdefault(k, set()).add(wi)
        if j + 2 < length and not (w[j + 2] == a and j + 3 < length and w[j + 3] == b):  # right neighbour
            y = w[j + 2]
            pair_count[b << 32 | y] -= f
            k = n << 32 | y
            pair_count[k] = pair_count.get(k, 0) + f
            added.add(k)
            where.setdefault(k, set()).add(wi)
        out.append(n)
        i = j + 2
    if changed:
        out.extend(w[i:])
        w[:] = out
    return changed
