"""Byte-level byte-pair encoding (BPE): the tokenizer of GPT-2, GPT-4 and Llama 3.

How text becomes ids, in three steps:
1. Special tokens ("<|endoftext|>") are cut out of the text first, if the caller allows them.
2. The remaining text is split into chunks by a regex (``patterns.py``); merges never cross chunks.
3. Each chunk's UTF-8 bytes start as one token per byte, then adjacent pairs are merged, always
   the pair with the lowest *priority* first (leftmost on ties), until no pair can merge.

Two families of files define "priority" slightly differently, and we match each exactly:
- ``ranks`` mode (tiktoken rank files): a pair (a, b) may merge if the bytes a+b are a token, and
  its priority is that token's rank. A chunk that is itself a token is returned at once.
- ``merges`` mode (Hugging Face tokenizer.json, GGUF, and tokenizers trained here): only the pairs
  listed as merges may merge, with priority = position in the merge list.
They differ when a+b is a token but (a, b) is not a listed merge: tiktoken merges it, HF does not.

Notation: a "piece" is a ``bytes`` object (a token's bytes); ids are ints.
"""

from __future__ import annotations

import base64
import os
import sys
import threading
import unicodedata
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Literal

import regex

from lucidlm.files.jsonfile import read_json, write_json_atomic, write_text_atomic
from lucidlm.tokenizers.filenames import refuse_hf_name
from lucidlm.tokenizers.patterns import Splitter, resolve_pattern

try:  # the optional C inner loop (setup.py builds it); the Python path below gives the same ids
    from lucidlm.tokenizers import _bpe_kernel
except ImportError:  # pragma: no cover - no compiler at install time
    _bpe_kernel = None

FORMAT_NAME = "lucidlm-bpe"
FORMAT_VERSION = 1
NO_MERGE = sys.maxsize  # priority of a pair that cannot merge
SINGLE_BYTES = [bytes([b]) for b in range(256)]  # b"\x00" ... b"\xff", made once

# The fast encoder remembers chunk -> ids. Natural text repeats its words, so most chunks are hits;
# the bound keeps memory in check on endless streams of unique chunks.
CACHE_MAX_ENTRIES = 1 << 19

AllowedSpecial = Literal["all"] | Collection[str]
DisallowedSpecial = Literal["all"] | Collection[str]


# ----------------------------------------------------------------------------------------------
# The merge loop, twice: the textbook version and the one we use.


def bpe_merge_reference(piece: bytes, priority: Callable[[bytes, bytes], int]) -> list[bytes]:
    """Textbook BPE on one chunk: merge the best adjacent pair, recount everything, repeat.

    >>> ranks = {b"ab": 0, b"abc": 1}
    >>> bpe_merge_reference(b"abcd", lambda a, b: ranks.get(a + b, NO_MERGE))
    [b'abc', b'd']
    """
    parts = [bytes([b]) for b in piece]
    while len(parts) > 1:
        priorities = [priority(parts[i], parts[i + 1]) for i in range(len(parts) - 1)]
        best = min(priorities)
        if best == NO_MERGE:
            break
        i = priorities.index(best)  # leftmost pair among equals
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def bpe_merge(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """The fast loop for ``ranks`` mode: same result as the reference, two lookups per merge.

    After merging parts[i] and parts[i+1], only the pairs (parts[i-1], new) and (new, parts[i+2])
    change, so we keep the list of pair priorities and patch those two entries (as tiktoken does).
    The priority lookup is inlined (``get(a + b)``) because a function call per pair would cost
    more than the lookup itself.
    """
    parts = [SINGLE_BYTES[b] for b in piece]
    get = ranks.get
    priorities = [get(a + b, NO_MERGE) for a, b in zip(parts, parts[1:])]
    while priorities:
        best = min(priorities)
        if best == NO_MERGE:
            break
        i = priorities.index(best)
        parts[i] += parts[i + 1]
        del parts[i + 1]
        del priorities[i]
        if i > 0:
            priorities[i - 1] = get(parts[i - 1] + parts[i], NO_MERGE)
        if i < len(priorities):
            priorities[i] = get(parts[i] + parts[i + 1], NO_MERGE)
    return parts


def bpe_merge_pairs(piece: bytes, pair_priority: dict[tuple[bytes, bytes], int]) -> list[bytes]:
    """``bpe_merge`` for ``merges`` mode: a pair may merge only if it is a listed merge."""
    parts = [SINGLE_BYTES[b] for b in piece]
    get = pair_priority.get
    priorities = [get(pair, NO_MERGE) for pair in zip(parts, parts[1:])]
    while priorities:
        best = min(priorities)
        if best == NO_MERGE:
            break
        i = priorities.index(best)
        parts[i] += parts[i + 1]
        del parts[i + 1]
        del priorities[i]
        if i > 0:
            priorities[i - 1] = get((parts[i - 1], parts[i]), NO_MERGE)
        if i < len(priorities):
            priorities[i] = get((parts[i], parts[i + 1]), NO_MERGE)
    return parts


# ----------------------------------------------------------------------------------------------


class BPETokenizer:
    """A byte-level BPE tokenizer.

    Args:
        vocab: id -> token bytes for every ordinary token. All 256 single bytes must be present
            (that is what makes the tokenizer *byte-level*: any string can be encoded).
        merges: the merge list, in priority order, as pairs of ids (``merges`` mode); ``None`` for
            tiktoken's ``ranks`` mode, where the vocab ids are the ranks.
        pattern: split regex or preset name ("gpt2", "cl100k", "o200k"); None means no split. May
            also be a callable text -> chunks (``hf.PreTokenizer``, for Hugging Face pre-tokenizers no
            single regex expresses); such a tokenizer cannot be saved in lucidlm's JSON format.
        special_tokens: special token string -> id (ids must not collide with the vocab).
        ignore_merges: ``merges`` mode only: a chunk that is itself a token is returned whole
            (Hugging Face's ``ignore_merges``, used by Llama 3).
        allow_missing_bytes: ``merges`` mode only: accept a vocab without some single-byte tokens
            (HF-trained vocabularies, e.g. SmolLM2's, lack rare control bytes); such bytes are
            dropped from a chunk before merging, as Hugging Face's BPE does without an unk_token.
        name: a label shown in listings.
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: Sequence[tuple[int, int]] | None = None,
        *,
        pattern: str | Callable[[str], list[str]] | None = "cl100k",
        special_tokens: dict[str, int] | None = None,
        ignore_merges: bool = False,
        allow_missing_bytes: bool = False,
        name: str = "bpe",
    ) -> None:
        self.name = name
        self.pattern = pattern if callable(pattern) else resolve_pattern(pattern)
        self.special_tokens = dict(special_tokens or {})
        self.ignore_merges = ignore_merges
        self.allow_missing_bytes = allow_missing_bytes
        self.vocab = dict(vocab)
        self.merges = None if merges is None else [tuple(m) for m in merges]
        self._encoder = {piece: i for i, piece in self.vocab.items()}  # bytes -> id
        self._check_consistency()
        self._missing_bytes = bytes(b for b in range(256) if bytes([b]) not in self._encoder)

        # bytes pair -> priority, for ``merges`` mode (a pair listed twice keeps its later rank)
        self._pair_priority: dict[tuple[bytes, bytes], int] | None = None
        if self.merges is not None:
            pairs = self._merge_pairs()
            self._pair_priority = dict(zip(pairs, range(len(pairs))))
        self._split = _splitter(self.pattern)
        self._decoder = dict(self.vocab)  # id -> bytes, specials included
        for text, i in self.special_tokens.items():
            self._decoder[i] = text.encode("utf-8")
        self._special_regex = _alternation(self.special_tokens) if self.special_tokens else None
        self._cache: dict[str, list[int]] = {}
        # Use the C inner loop when it was built; LUCIDLM_NO_KERNEL=1 or use_kernel=False turns it off.
        self.use_kernel = _bpe_kernel is not None and not os.environ.get("LUCIDLM_NO_KERNEL")
        self._kernel_table = None  # the vocab as C hash tables, built on the first kernel encode
        self._kernel_cache = None  # the C kernel's chunk -> ids cache (the Python path uses _cache)
        self._worker_caches: list = []  # more C caches, one per encode_batch thread beyond the first
        self._thread_caches: dict[int, object] = {}  # thread id -> its cache, while an encode_batch runs

    # -- construction checks --------------------------------------------------------------------

    def _check_consistency(self) -> None:
        if len(self._encoder) != len(self.vocab):
            raise ValueError("vocab maps two ids to the same bytes; every token must be unique")
        missing = [b for b in range(256) if bytes([b]) not in self._encoder]
        if missing and not (self.allow_missing_bytes and self.merges is not None):
            raise ValueError(
                f"vocab lacks {len(missing)} of the 256 single-byte tokens (e.g. byte {missing[0]}); "
                "a byte-level BPE needs all of them to encode any text"
            )
        clash = sorted(set(self.special_tokens.values()) & set(self.vocab))
        if clash:
            raise ValueError(f"special token id {clash[0]} is also an ordinary token id")

    def _merge_pairs(self) -> list[tuple[bytes, bytes]]:
        """The merges as pairs of token bytes, checked: both ids are tokens, and so are their bytes
        joined. (Comprehensions rather than one loop: this runs at every load, 49k merges for
        SmolLM2; the loop below only runs to name the first bad merge.)"""
        vocab, encoder = self.vocab, self._encoder
        try:
            pairs = [(vocab[a], vocab[b]) for a, b in self.merges]
            if all(x + y in encoder for x, y in pairs):
                return pairs
        except KeyError:
            pass
        for rank, (a, b) in enumerate(self.merges):
            if a not in vocab or b not in vocab:
                raise ValueError(f"merge #{rank} ({a}, {b}) names an id that is not in the vocab")
            if vocab[a] + vocab[b] not in encoder:
                raise ValueError(f"merge #{rank} ({a}, {b}) makes bytes that are not a token in the vocab")
        raise AssertionError("unreachable: some merge failed the check above")

    # -- sizes and lookups ------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return "ranks" if self.merges is None else "merges"

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (ordinary or special): the embedding table size a model needs."""
        return max(self._decoder) + 1

    @property
    def n_vocab(self) -> int:
        return self.vocab_size

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (a special token's UTF-8 text for specials)."""
        try:
            return self._decoder[token_id]
        except (KeyError, TypeError):
            raise ValueError(self._unknown_id_message(token_id)) from None

    def token_to_id(self, piece: bytes | str) -> int:
        if isinstance(piece, str):
            if piece in self.special_tokens:
                return self.special_tokens[piece]
            piece = piece.encode("utf-8")
        try:
            return self._encoder[piece]
        except KeyError:
            raise ValueError(f"{piece!r} is not a token of {self.name}") from None

    # -- encoding ---------------------------------------------------------------------------------

    def merge_priority(self) -> Callable[[bytes, bytes], int]:
        """(left bytes, right bytes) -> the pair's merge priority, lower merges first (NO_MERGE:
        never): the rank of the joined token in ``ranks`` mode, the merge's index in ``merges`` mode."""
        if self._pair_priority is None:
            ranks = self._encoder
            return lambda a, b: ranks.get(a + b, NO_MERGE)
        pairs = self._pair_priority
        return lambda a, b: pairs.get((a, b), NO_MERGE)

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Fast path for one chunk (no cache here; ``encode_ordinary`` caches)."""
        piece = chunk.encode("utf-8")
        encoder = self._encoder
        if self._pair_priority is None:
            token = encoder.get(piece)  # tiktoken returns a chunk that is itself a token at once
            return [token] if token is not None else [encoder[p] for p in bpe_merge(piece, encoder)]
        if self.ignore_merges and piece in encoder:
            return [encoder[piece]]
        if self._missing_bytes:  # bytes without a token are dropped before merging (HF's BPE)
            piece = piece.translate(None, self._missing_bytes)
        return [encoder[p] for p in bpe_merge_pairs(piece, self._pair_priority)]

    def _encode_chunk_reference(self, chunk: str) -> list[int]:
        piece = chunk.encode("utf-8")
        if (self.merges is None or self.ignore_merges) and piece in self._encoder:
            return [self._encoder[piece]]
        piece = piece.translate(None, self._missing_bytes)
        return [self._encoder[p] for p in bpe_merge_reference(piece, self.merge_priority())]

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating special-token strings as ordinary text."""
        _check_text(text)
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:
            # Lone surrogates (e.g. from a JSON "\ud83d" escape) have no UTF-8 form; like tiktoken,
            # encode them as U+FFFD rather than fail.
            return self._encode_ordinary(_replace_surrogates(text))

    def warm_up(self) -> None:
        """Build what the encoder makes lazily (the C kernel's tables) now, e.g. before forking
        workers, so that they share one copy instead of each building its own."""
        if self.use_kernel and _bpe_kernel is not None and self._kernel_table is None:
            try:  # ~0.05 s for o200k; afterwards merging needs no Python objects
                self._kernel_table = _bpe_kernel.build_table(self._encoder, self._pair_priority)
            except ValueError:  # beyond the kernel's limits (over 2M tokens): Python gives the same ids
                self.use_kernel = False
                return
            self._kernel_cache = _bpe_kernel.new_cache(CACHE_MAX_ENTRIES)
            _WITH_KERNEL_CACHES.add(self)

    def clear_cache(self) -> None:
        """Forget the chunks seen so far (the next encode starts cold, e.g. to time it)."""
        self._cache.clear()
        for cache in self._c_caches():
            _bpe_kernel.cache_clear(cache)

    def _c_caches(self) -> list:
        """Every C chunk cache this tokenizer holds: its own, then the encode_batch threads' ones."""
        return [cache for cache in [self._kernel_cache, *self._worker_caches] if cache is not None]

    @property
    def encodes_in_threads(self) -> bool:
        """Whether encoding runs in C with the GIL released (the kernel with a preset split), so
        that ``encode_batch`` can use threads instead of processes."""
        self.warm_up()
        return (self.use_kernel and self._kernel_table is not None and isinstance(self._split, Splitter)
                and self._split.use_kernel)

    def thread_caches(self, n: int) -> list:
        """n C chunk caches for n encoding threads: the tokenizer's own first, then kept extra ones
        (kept, so that the next batch finds them warm)."""
        self.warm_up()
        while len(self._worker_caches) < n - 1:
            self._worker_caches.append(_bpe_kernel.new_cache(CACHE_MAX_ENTRIES))
        return [self._kernel_cache, *self._worker_caches[: n - 1]]

    def _encode_ordinary(self, text: str) -> list[int]:
        self.warm_up()
        if self.use_kernel and self._kernel_table is not None:
            whole_first = self._pair_priority is None or self.ignore_merges
            cache = self._kernel_cache
            if self._thread_caches:  # an encode_batch thread uses a cache of its own
                cache = self._thread_caches.get(threading.get_ident(), cache)
            split = self._split
            if isinstance(split, Splitter) and split.use_kernel:  # a preset pattern: split and merge in one C pass
                return _bpe_kernel.encode_text(text, split.kernel_name, self._kernel_table, cache, whole_first)
            chunks = self._split(text)
            return _bpe_kernel.encode_chunks(
                chunks if isinstance(chunks, list) else list(chunks), self._kernel_table, cache, whole_first
            )
        return self._encode_ordinary_python(text)

    def _encode_ordinary_python(self, text: str) -> list[int]:
        """The fast path in Python: split, then cached per-chunk BPE (what the C kernel does too)."""
        ids: list[int] = []
        cache = self._cache
        get = cache.get
        for chunk in self._split(text):
            chunk_ids = get(chunk)
            if chunk_ids is None:
                chunk_ids = self._encode_chunk(chunk)
                if len(cache) >= CACHE_MAX_ENTRIES:
                    cache.clear()
                cache[chunk] = chunk_ids
            ids += chunk_ids
        return ids

    def encode_ordinary_reference(self, text: str) -> list[int]:
        """The readable encoder: split, then textbook merging of every chunk, no cache."""
        _check_text(text)
        text = _replace_surrogates(text)
        ids: list[int] = []
        for chunk in self._split(text):
            ids.extend(self._encode_chunk_reference(chunk))
        return ids

    def encode(
        self,
        text: str,
        *,
        allowed_special: AllowedSpecial = (),
        disallowed_special: DisallowedSpecial = "all",
    ) -> list[int]:
        """Encode text with tiktoken's special-token rules.

        ``allowed_special``: special tokens that become their id when they appear in the text
        ("all" for every one). ``disallowed_special``: special tokens whose appearance is an error
        (default "all" minus the allowed ones) - text from users should not be able to inject a
        control token by typing "<|endoftext|>". Pass ``disallowed_special=()`` to encode such
        strings as ordinary text instead.
        """
        _check_text(text)
        if not allowed_special and disallowed_special == "all":  # the common case, kept cheap
            found = self._special_regex.search(text) if self._special_regex else None
            if found is None:
                return self.encode_ordinary(text)
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"allowed_special names {sorted(unknown)!r}, which are not special tokens of {self.name}; "
                f"it has {sorted(self.special_tokens)!r}"
            )
        disallowed = set(self.special_tokens) - allowed if disallowed_special == "all" else set(disallowed_special)
        if disallowed:
            found = _alternation(disallowed).search(text)
            if found:
                raise ValueError(
                    f"text contains the special token {found.group()!r} at index {found.start()}, which is "
                    f"disallowed. Pass allowed_special={{{found.group()!r}}} (or 'all') to encode it as a "
                    "special token, or disallowed_special=() to encode it as plain text."
                )
        if not allowed:
            return self.encode_ordinary(text)
        special_regex = self._special_regex if allowed == set(self.special_tokens) else _alternation(allowed)
        ids: list[int] = []
        start = 0
        for match in special_regex.finditer(text):
            ids += self.encode_ordinary(text[start : match.start()])
            ids.append(self.special_tokens[match.group()])
            start = match.end()
        ids += self.encode_ordinary(text[start:])
        return ids

    def encode_batch(self, texts: Sequence[str], *, num_workers: int | None = None, **kwargs) -> list[list[int]]:
        """Encode many texts in parallel when the batch is large enough to pay off: on threads
        when encoding runs in C without the GIL (``encodes_in_threads``), else on processes."""
        from lucidlm.tokenizers.parallel import encode_batch

        return encode_batch(self, texts, num_workers=num_workers, **kwargs)

    # -- decoding ---------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        decoder = self._decoder
        try:
            return b"".join([decoder[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or i not in decoder)
            raise ValueError(self._unknown_id_message(bad)) from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Ids -> text. A token boundary may fall inside a multi-byte character, so a slice of ids
        need not be valid UTF-8: by default such bytes become U+FFFD; ``errors="strict"`` raises."""
        ids = list(ids)
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8", errors=errors)
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"ids decode to invalid UTF-8 at byte {exc.start} ({data[exc.start : exc.end]!r}); "
                "a token sequence cut inside a multi-byte character? Use errors='replace' to substitute U+FFFD."
            ) from None

    def _unknown_id_message(self, token_id: object) -> str:
        return f"unknown token id {token_id!r}: {self.name} has ids 0..{self.vocab_size - 1} ({len(self._decoder)} tokens)"

    # -- saving and loading lucidlm's own format --------------------------------------------------

    def to_dict(self) -> dict:
        if callable(self.pattern):
            raise ValueError(
                f"{self.name} splits text with a Python callable ({self.pattern!r}), which lucidlm's JSON "
                "format cannot store; save it with lucidlm.tokenizers.hf.to_tokenizer_json instead"
            )
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": self.name,
            "pattern": self.pattern,
            "mode": self.mode,
            "ignore_merges": self.ignore_merges,
            "allow_missing_bytes": self.allow_missing_bytes,
            "special_tokens": self.special_tokens,
            # ids with base64 bytes: exact for any bytes, including partial UTF-8 sequences.
            "vocab": [[i, base64.b64encode(p).decode("ascii")] for i, p in sorted(self.vocab.items())],
            "merges": None if self.merges is None else [list(m) for m in self.merges],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (JSON, lossless) and ``path`` with suffix ``.vocab`` (for people to read).
        Not under the name tokenizer.json, which is Hugging Face's (``hf_dir.save_hf_tokenizer``)."""
        path = refuse_hf_name(path, "BPE")
        write_json_atomic(path, self.to_dict(), indent=None)
        write_text_atomic(path.with_suffix(".vocab"), self.vocab_listing())
        return path

    def vocab_listing(self) -> str:
        """One line per token: id, the token shown readably, and the merge that made it."""
        made_by = {}
        if self.merges is not None:
            made_by = {self._encoder[self.vocab[a] + self.vocab[b]]: (a, b) for a, b in self.merges}
        lines = [f"# {self.name}: {len(self.vocab)} tokens, {len(self.special_tokens)} special, mode={self.mode}"]
        for i, piece in sorted(self.vocab.items()):
            line = f"{i}\t{render_piece(piece)}"
            if i in made_by:
                a, b = made_by[i]
                line += f"\t<- {render_piece(self.vocab[a])} + {render_piece(self.vocab[b])}"
            lines.append(line)
        lines += [f"{i}\t{text}\t(special)" for text, i in sorted(self.special_tokens.items(), key=lambda kv: kv[1])]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "<dict>") -> BPETokenizer:
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ValueError(f"{source} is not a lucidlm BPE tokenizer file (no 'format': '{FORMAT_NAME}')")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{source} has format version {data.get('version')!r}; this lucidlm reads version {FORMAT_VERSION}"
            )
        try:
            vocab = {int(i): base64.b64decode(p, validate=True) for i, p in data["vocab"]}
            merges = None if data["merges"] is None else [(int(a), int(b)) for a, b in data["merges"]]
            return cls(
                vocab,
                merges,
                pattern=data["pattern"],
                special_tokens={str(k): int(v) for k, v in data["special_tokens"].items()},
                ignore_merges=bool(data.get("ignore_merges", False)),
                allow_missing_bytes=bool(data.get("allow_missing_bytes", False)),
                name=str(data.get("name", "bpe")),
            )
        except (KeyError, TypeError, ValueError, regex.error) as exc:
            raise ValueError(f"{source} is a corrupt lucidlm tokenizer file: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        return cls.from_dict(read_json(path), source=str(path))

    def __repr__(self) -> str:
        return f"BPETokenizer(name={self.name!r}, vocab_size={self.vocab_size}, mode={self.mode!r})"

    # Worker processes get a copy without the cache (it is rebuilt quickly and can be large).
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = {}
        state["_split"] = None
        state["_special_regex"] = None
        state["_kernel_table"] = None  # C memory: rebuilt on first use (fork children inherit it)
        state["_kernel_cache"] = None
        state["_worker_caches"] = []
        state["_thread_caches"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._split = _splitter(self.pattern)
        self._special_regex = _alternation(self.special_tokens) if self.special_tokens else None


# ----------------------------------------------------------------------------------------------
# helpers


# Tokenizers holding C caches, so that a forked child can give each cache a fresh lock: a thread of
# the parent encoding at the moment of the fork held one, and that thread does not exist in the child.
_WITH_KERNEL_CACHES: weakref.WeakSet[BPETokenizer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tok in list(_WITH_KERNEL_CACHES):
        for cache in tok._c_caches():
            _bpe_kernel.cache_after_fork(cache)
        tok._thread_caches = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _no_split(text: str) -> list[str]:
    return [text] if text else []


def _splitter(pattern: str | Callable[[str], list[str]] | None) -> Callable[[str], list[str]]:
    """text -> chunks: a regex's ``findall``, a callable as it is, or no split at all."""
    if callable(pattern):
        return pattern
    return Splitter(pattern) if pattern else _no_split


def _alternation(tokens: Iterable[str]) -> regex.Pattern:
    # Longest first, so that one special token that is a prefix of another never wins.
    return regex.compile("|".join(regex.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def _replace_surrogates(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"expected text as str, got {type(text).__name__}")


def render_piece(piece: bytes) -> str:
    """Show token bytes on one line: UTF-8 text as itself (a space as ␣; \\n \\r \\t escaped), and
    as \\xNN every byte that would not show: control characters, line breaks, invalid UTF-8 (a byte of
    a character the token holds only part of).

    >>> render_piece(b" the\\n"), render_piece(b"\\xe4\\xb8"), render_piece(b"a\\x00"), render_piece(b" \\xf0\\x9f\\xa4")
    ('␣the\\\\n', '\\\\xe4\\\\xb8', 'a\\\\x00', '␣\\\\xf0\\\\x9f\\\\xa4')
    """
    out = []
    for ch in piece.decode("utf-8", errors="surrogateescape"):  # an invalid byte b -> U+DC00 + b
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch in _PIECE_ESCAPES:
            out.append(_PIECE_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):  # controls, invisible, line breaks
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


_PIECE_ESCAPES = {" ": "␣", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
