"""WordPiece: the tokenizer of BERT and its descendants (MiniLM, all-MiniLM-L6-v2).

How text becomes ids (Devlin et al. 2019; Google's ``tokenization.py`` with its ``BasicTokenizer``
and ``WordpieceTokenizer``, as ported to Rust by Hugging Face ``tokenizers``, whose ids we match):

0. Special tokens typed in the text ("[SEP]", "[MASK]") are cut out first and kept whole.
1. BasicTokenizer, on the rest of the text:
   a. clean: drop control characters, U+0000 and U+FFFD; every kind of whitespace becomes " ".
   b. put spaces around CJK ideographs, so each is a word of its own (Chinese has no spaces).
   c. strip accents (decompose to NFD, drop the nonspacing marks), then lowercase.
   d. split on whitespace, then cut every punctuation character out as a word of its own.
2. WordpieceTokenizer, on each word: greedy longest-match-first against the vocab; pieces after the
   first carry the "##" prefix. A word that cannot be covered, or is over 100 characters, is [UNK].
   With BERT's uncased vocab: "Unaffable!" -> ["una", "##ffa", "##ble", "!"].
3. Template: [CLS] A [SEP] for one text, [CLS] A [SEP] B [SEP] for a pair (token_type_ids 0, then 1).

Steps 1-2 are the textbook; where HF's port differs from Google's original (which whitespace
counts, unassigned code points, one CJK range, the order in 1c) we follow HF and say so. HF's
character tables are older than Python's; the end of this file lists the code points that differ.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import regex

# The word -> ids cache: natural text repeats its words, so most lookups hit. Bounded so an
# endless stream of unique words cannot grow it without limit.
CACHE_MAX_ENTRIES = 1 << 17

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# ----------------------------------------------------------------------------------------------
# Character classes: BERT's _is_whitespace, _is_control, _is_punctuation, _is_chinese_char

# The Unicode White_Space property, which is what Rust's char::is_whitespace (and so HF) tests.
# Google's BERT used " \t\n\r" plus category Zs, which misses U+2028 and U+2029.
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# Cleaning, for ASCII text: control characters go, \t \n \r become spaces.
_ASCII_CLEAN = {cp: None for cp in [*range(32), 127]} | {ord("\t"): " ", ord("\n"): " ", ord("\r"): " "}
_WHITESPACE_RUN = regex.compile("[" + regex.escape("".join(sorted(_WHITESPACE))) + "]+")


def _category(ch: str) -> str:
    """The general category as HF's tables (Unicode 8.0) have it; see _HF_CATEGORY at the end."""
    return _HF_CATEGORY.get(ch) or unicodedata.category(ch)


def is_whitespace(ch: str) -> bool:
    return ch in _WHITESPACE


def is_control(ch: str) -> bool:
    """What cleaning deletes: categories Cc, Cf, Co, except \\t \\n \\r (those are whitespace).
    Unassigned code points (Cn) are kept: HF's tables have no Cn entries (Google's BERT drops them)."""
    return ch not in "\t\n\r" and _category(ch) in ("Cc", "Cf", "Co")


def is_punctuation(ch: str) -> bool:
    """BERT's definition: every non-alphanumeric ASCII character ($ + < = > ^ ` | ~ are symbols in
    Unicode, but BERT splits "$5" too) plus every character of a Unicode category P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return _category(ch).startswith("P")


def is_chinese_char(ch: str) -> bool:
    """A CJK Unified or Compatibility Ideograph. Hangul, Hiragana and Katakana are not: those
    scripts put spaces between words, so they need no special treatment."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B920 <= cp <= 0x2CEAF  # Google's BERT starts this range at 0x2B820; HF at 0x2B920
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


# ----------------------------------------------------------------------------------------------
# Added tokens, templates, batches


@dataclass(frozen=True)
class AddedToken:
    """A token matched verbatim in the input before any other step (HF ``added_tokens``).

    ``normalized=False`` (BERT's specials): matched in the raw text, so "[SEP]" is the separator
    but "[sep]" is three ordinary words. ``special=True``: dropped by ``decode(skip_special_tokens=True)``.
    """

    content: str
    id: int
    special: bool = True
    normalized: bool = False


@dataclass(frozen=True)
class TemplatePiece:
    """One slot of a post-processing template: a special token, or sequence "A" or "B"."""

    sequence: str | None  # "A", "B", or None for a special token
    token: str | None  # the special token's text (None for a sequence slot)
    ids: tuple[int, ...]  # the special token's ids (empty for a sequence slot)
    type_id: int  # the token_type_id given to every token of this slot


def bert_template(cls_id: int, sep_id: int, cls_token: str = "[CLS]", sep_token: str = "[SEP]") -> dict:
    """BERT's template: single [CLS] A [SEP]; pair [CLS] A [SEP] B [SEP] with B's part typed 1."""
    cls, sep = TemplatePiece(None, cls_token, (cls_id,), 0), TemplatePiece(None, sep_token, (sep_id,), 0)
    a, b = TemplatePiece("A", None, (), 0), TemplatePiece("B", None, (), 1)
    return {"single": [cls, a, sep], "pair": [cls, a, sep, b, TemplatePiece(None, sep_token, (sep_id,), 1)]}


NO_TEMPLATE = {
    "single": [TemplatePiece("A", None, (), 0)],
    "pair": [TemplatePiece("A", None, (), 0), TemplatePiece("B", None, (), 1)],
}


@dataclass
class BatchEncoding:
    """A padded batch as plain lists; ``torch.tensor(batch.input_ids)`` gives (B, T)."""

    input_ids: list[list[int]]
    attention_mask: list[list[int]]  # 1 = real token, 0 = padding
    token_type_ids: list[list[int]]  # 0 = first text and its specials, 1 = second text of a pair

    def __len__(self) -> int:
        return len(self.input_ids)


# ----------------------------------------------------------------------------------------------
# The tokenizer


class WordPieceTokenizer:
    """BERT's tokenizer. Build it with ``from_tokenizer_json`` or ``from_vocab_file``.

    Args:
        vocab: token -> id of the WordPiece model (vocab.txt line numbers).
        unk_token: the token for words the vocab cannot cover.
        continuing_subword_prefix: marks a piece that continues a word ("##").
        max_input_chars_per_word: longer words are [UNK] outright (keeps the greedy search cheap).
        lowercase, strip_accents, handle_chinese_chars, clean_text: the BasicTokenizer steps;
            ``strip_accents=None`` means "strip when lowercasing" (BERT uncased).
        added_tokens: tokens matched verbatim first; default: BERT's five specials found in vocab.
        template: {"single": [...], "pair": [...]} of TemplatePiece; default BERT's if [CLS]/[SEP] exist.
        max_length: truncation length for ``encode_batch`` (None: no truncation).
        truncation_strategy: "longest_first" (cut the longer text of a pair first), "only_first", "only_second".
        truncation_side, padding_side: "right" or "left".
        padding: ``encode_batch``'s default: "longest", "max_length", an int (fixed length) or False.
        pad_to_multiple_of: round the padded length up to a multiple of this (None: don't).
        pad_token, pad_type_id: what padding is made of.
        decoder: "wordpiece" (join "##" pieces, as HF's WordPiece decoder) or "spaces" (a
            tokenizer.json without a decoder: HF joins the tokens with spaces).
        decoder_cleanup: decode's "hello , world" -> "hello, world" (HF WordPiece decoder ``cleanup``).
    """

    def __init__(
        self,
        vocab: dict[str, int],
        *,
        unk_token: str = "[UNK]",
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        handle_chinese_chars: bool = True,
        clean_text: bool = True,
        added_tokens: Sequence[AddedToken] | None = None,
        template: dict[str, list[TemplatePiece]] | None = None,
        max_length: int | None = 512,
        truncation_strategy: str = "longest_first",
        truncation_side: str = "right",
        padding: str | int | bool = "longest",
        padding_side: str = "right",
        pad_to_multiple_of: int | None = None,
        pad_token: str = "[PAD]",
        pad_type_id: int = 0,
        decoder: str = "wordpiece",
        decoder_cleanup: bool = True,
        name: str = "wordpiece",
    ) -> None:
        self.vocab = dict(vocab)
        if unk_token not in self.vocab:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocab ({len(self.vocab)} tokens)")
        self.unk_token = unk_token
        self.continuing_subword_prefix = continuing_subword_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.handle_chinese_chars = handle_chinese_chars
        self.clean_text = clean_text
        if added_tokens is None:
            added_tokens = [AddedToken(t, self.vocab[t]) for t in BERT_SPECIAL_TOKENS if t in self.vocab]
        self.added_tokens = list(added_tokens)
        if template is None:
            has_cls_sep = "[CLS]" in self.vocab and "[SEP]" in self.vocab
            template = bert_template(self.vocab["[CLS]"], self.vocab["[SEP]"]) if has_cls_sep else NO_TEMPLATE
        self.template = template
        _check_choice(
            "truncation_strategy", truncation_strategy, ("longest_first", "only_first", "only_second")
        )
        _check_choice("truncation_side", truncation_side, ("right", "left"))
        _check_choice("padding_side", padding_side, ("right", "left"))
        self.max_length = max_length
        self.truncation_strategy = truncation_strategy
        self.truncation_side = truncation_side
        self.padding = padding
        self.padding_side = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_token = pad_token
        self.pad_type_id = pad_type_id
        _check_choice("decoder", decoder, ("wordpiece", "spaces"))
        self.decoder = decoder
        self.decoder_cleanup = decoder_cleanup
        self.name = name

        # id -> token for decoding; added tokens may have ids outside the WordPiece vocab.
        self._id_to_token = {i: t for t, i in self.vocab.items()}
        # (HF shows a normalized added token in its normalized form: "Running Man" -> "running man")
        self._id_to_token.update(
            {a.id: self.normalize(a.content) if a.normalized else a.content for a in self.added_tokens}
        )
        self._vocab_size = max(self._id_to_token) + 1
        self._special_ids = frozenset(a.id for a in self.added_tokens if a.special)
        raw = [a.content for a in self.added_tokens if not a.normalized]
        # A normalized added token is matched in normalized text, so match its normalized form.
        self._normalized_added = {self.normalize(a.content): a.id for a in self.added_tokens if a.normalized}
        self._added_id = {a.content: a.id for a in self.added_tokens if not a.normalized}
        self._raw_split = _alternation(raw)
        self._normalized_split = _alternation(self._normalized_added)
        self._cache: dict[str, list[int]] = {}

    # -- sizes and lookups ------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """One more than the largest id: the embedding table size a model needs (30522 for BERT)."""
        return self._vocab_size

    def token_to_id(self, token: str) -> int | None:
        """The id of a token ("##ing", "[CLS]"), or None if it is not in the vocab."""
        if token in self._added_id:
            return self._added_id[token]
        return self.vocab.get(token)

    def id_to_token(self, token_id: int) -> str:
        try:
            return self._id_to_token[token_id]
        except (KeyError, TypeError):
            raise ValueError(self._unknown_id_message(token_id)) from None

    @property
    def special_tokens(self) -> dict[str, int]:
        return {a.content: a.id for a in self.added_tokens if a.special}

    @property
    def pad_token_id(self) -> int:
        return self._required_id(self.pad_token, "pad_token")

    @property
    def unk_token_id(self) -> int:
        return self.vocab[self.unk_token]

    def _required_id(self, token: str, role: str) -> int:
        token_id = self.token_to_id(token)
        if token_id is None:
            raise ValueError(f"{role} {token!r} is not in the vocab of {self.name}")
        return token_id

    def _unknown_id_message(self, token_id: object) -> str:
        return f"unknown token id {token_id!r}: {self.name} has vocab_size {self.vocab_size} (ids 0..{self.vocab_size - 1})"

    # -- step 1: BasicTokenizer -------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """Steps 1a-c: "Héllo\\tWORLD 你好" -> "hello world  你  好 "."""
        if self.clean_text:
            text = self._clean_text(text)
        if self.handle_chinese_chars:
            text = self._tokenize_chinese_chars(text)
        if self.strip_accents:
            # HF strips accents before lowercasing, Google's BERT after; for every code point the
            # result is the same ("İ": I + U+0307 -> "I" -> "i", or i + U+0307 -> "i").
            text = self._run_strip_accents(text)
        if self.lowercase:
            # One character at a time, like Rust's char::to_lowercase: Python's str.lower() would
            # turn a word-final "Σ" into "ς", which is not what BERT's vocab expects.
            text = (
                text.lower() if text.isascii() else "".join([_LOWERCASE.get(ch, ch).lower() for ch in text])
            )
        return text

    @staticmethod
    def _clean_text(text: str) -> str:
        if text.isascii():
            return text.translate(_ASCII_CLEAN)
        out = []
        for ch in text:
            if ch == "\x00" or ch == "\ufffd" or is_control(ch):
                continue
            out.append(" " if ch in _WHITESPACE else ch)
        return "".join(out)

    @staticmethod
    def _tokenize_chinese_chars(text: str) -> str:
        if text.isascii():
            return text
        return "".join([f" {ch} " if is_chinese_char(ch) else ch for ch in text])

    @staticmethod
    def _run_strip_accents(text: str) -> str:
        if text.isascii():
            return text
        if _NOT_DECOMPOSED.isdisjoint(text):
            text = unicodedata.normalize("NFD", text)
        else:  # odd parts are characters HF does not decompose
            parts = _NOT_DECOMPOSED_RUN.split(text)
            text = "".join(p if i % 2 else unicodedata.normalize("NFD", p) for i, p in enumerate(parts))
        return "".join([ch for ch in text if _category(ch) != "Mn"])

    @staticmethod
    def pre_tokenize(normalized: str) -> list[str]:
        """Step 1d: split on whitespace, then isolate punctuation. "don't stop." -> don ' t stop ."""
        words = []
        for chunk in _WHITESPACE_RUN.split(normalized):
            start = 0
            for i, ch in enumerate(chunk):
                if is_punctuation(ch):
                    if i > start:
                        words.append(chunk[start:i])
                    words.append(ch)
                    start = i + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    # -- step 2: WordpieceTokenizer ---------------------------------------------------------------

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first: take the longest prefix in the vocab, then the longest
        "##"-prefixed piece of the rest, and so on; if some rest has no piece, the word is [UNK].

        With BERT's vocab: "unaffable" -> ["una", "##ffa", "##ble"]. Longest-first is not optimal
        (fewest pieces) but it is what BERT was trained with, so it is what the model expects.
        """
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces = []
        start = 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else self.continuing_subword_prefix + word[start:end]
                if piece in self.vocab:
                    break
            else:  # no prefix of word[start:] is in the vocab
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    def _word_ids(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            ids = [self.vocab[p] for p in self.wordpiece(word)]
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    # -- steps 0-2 together -----------------------------------------------------------------------

    def _segments(self, text: str) -> Iterable[tuple[str, int | None]]:
        """Steps 0-1c: yield (normalized text, None) for ordinary runs, ("", id) for added tokens."""
        start = 0
        for match in self._raw_split.finditer(text) if self._raw_split else ():
            yield from self._normalized_segments(text[start : match.start()])
            yield "", self._added_id[match.group()]
            start = match.end()
        yield from self._normalized_segments(text[start:])

    def _normalized_segments(self, raw: str) -> Iterable[tuple[str, int | None]]:
        normalized = self.normalize(raw)
        start = 0
        for match in self._normalized_split.finditer(normalized) if self._normalized_split else ():
            yield normalized[start : match.start()], None
            yield "", self._normalized_added[match.group()]
            start = match.end()
        yield normalized[start:], None

    def tokenize(self, text: str) -> list[str]:
        """Text -> token strings, without [CLS]/[SEP]: "Hello, world!" -> hello , world !"""
        return [self._id_to_token[i] for i in self._encode_sequence(text)]

    def _encode_sequence(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"expected text as str, got {type(text).__name__}")
        ids: list[int] = []
        for normalized, added_id in self._segments(text):
            if added_id is not None:
                ids.append(added_id)
                continue
            for word in self.pre_tokenize(normalized):
                ids.extend(self._word_ids(word))
        return ids

    # -- step 3: template, truncation, padding ----------------------------------------------------

    def encode(
        self,
        text: str,
        pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        max_length: int | None = None,
    ) -> list[int]:
        """Text (and optionally a second text) -> ids: [CLS] text [SEP] (pair [SEP]).

        No padding, and truncation only when ``max_length`` is given (``encode_batch`` applies the
        tokenizer's truncation and padding settings)."""
        return self.encode_with_type_ids(
            text, pair, add_special_tokens=add_special_tokens, max_length=max_length
        )[0]

    def encode_with_type_ids(
        self,
        text: str,
        pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        max_length: int | None = None,
    ) -> tuple[list[int], list[int]]:
        """Like ``encode``, plus the token_type_ids (segment ids) BERT's pair tasks need."""
        a = self._encode_sequence(text)
        b = None if pair is None else self._encode_sequence(pair)
        if max_length is not None:
            a, b = self._truncate(a, b, max_length - self._n_special(b is not None, add_special_tokens))
        return self._apply_template(a, b, add_special_tokens)

    def encode_batch(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        truncation: bool = True,
        padding: str | int | bool | None = None,
    ) -> BatchEncoding:
        """Encode a batch, truncated to ``max_length`` and padded (right, with [PAD], mask 0).

        ``max_length`` and ``padding`` default to the tokenizer's settings (for a tokenizer.json,
        its "truncation" and "padding" sections). ``padding``: "longest" (the longest in the batch),
        "max_length", an int (that length), or False (ragged lists)."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of texts; use encode() for one text")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs")
        max_length = self.max_length if max_length is None else max_length
        padding = self.padding if padding is None else padding
        rows = []
        for i, text in enumerate(texts):
            a = self._encode_sequence(text)
            b = None if pairs is None else self._encode_sequence(pairs[i])
            if truncation and max_length is not None:
                a, b = self._truncate(a, b, max_length - self._n_special(b is not None, add_special_tokens))
            rows.append(self._apply_template(a, b, add_special_tokens))
        return self._pad(rows, padding, max_length)

    def _n_special(self, is_pair: bool, add_special_tokens: bool) -> int:
        if not add_special_tokens:
            return 0
        return sum(len(p.ids) for p in self.template["pair" if is_pair else "single"])

    def _truncate(self, a: list[int], b: list[int] | None, budget: int) -> tuple[list[int], list[int] | None]:
        """Cut ids so that len(a) + len(b) <= budget (what is left of max_length after the specials)."""
        if budget < 0:
            raise ValueError(
                f"max_length is too short to hold the {self._n_special(b is not None, True)} special tokens"
            )
        total = len(a) + (0 if b is None else len(b))
        if total <= budget:
            return a, b
        if self.truncation_strategy != "longest_first":  # cut one text only; it must keep a token
            first = self.truncation_strategy == "only_first"
            if not first and b is None:
                raise ValueError("truncation_strategy='only_second' needs a pair of texts")
            excess, n = total - budget, len(a) if first else len(b)
            if n <= excess:
                raise ValueError(f"cannot truncate to max_length by cutting only a text of {n} tokens")
            keep_a, keep_b = (n - excess, None if b is None else len(b)) if first else (len(a), n - excess)
        elif b is None:
            keep_a, keep_b = budget, None
        else:  # as HF computes it: the shorter text keeps what it needs, up to half the budget
            short, long_ = sorted((len(a), len(b)))
            long_ = short if short > budget else max(short, budget - short)
            if short + long_ > budget:
                short, long_ = budget // 2, budget // 2 + budget % 2
            keep_a, keep_b = (short, long_) if len(a) <= len(b) else (long_, short)
        return self._cut(a, keep_a), None if b is None else self._cut(b, keep_b)

    def _cut(self, ids: list[int], keep: int) -> list[int]:
        if keep >= len(ids):
            return ids
        return ids[:keep] if self.truncation_side == "right" else ids[len(ids) - keep :]

    def _apply_template(
        self, a: list[int], b: list[int] | None, add_special_tokens: bool
    ) -> tuple[list[int], list[int]]:
        ids: list[int] = []
        type_ids: list[int] = []
        for piece in self.template["single" if b is None else "pair"]:
            if piece.sequence is None:
                if add_special_tokens:
                    ids.extend(piece.ids)
                    type_ids.extend([piece.type_id] * len(piece.ids))
                continue
            seq = a if piece.sequence == "A" else b
            ids.extend(seq)
            type_ids.extend([piece.type_id] * len(seq))
        return ids, type_ids

    def _pad(
        self, rows: list[tuple[list[int], list[int]]], padding: str | int | bool, max_length: int | None
    ) -> BatchEncoding:
        if padding is False or padding is None:
            target = 0
        elif padding == "longest" or padding is True:
            target = max((len(ids) for ids, _ in rows), default=0)
        elif padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs a max_length")
            target = max_length
        elif isinstance(padding, int):
            target = padding
        else:
            raise ValueError(f"padding must be 'longest', 'max_length', an int or False, not {padding!r}")
        if self.pad_to_multiple_of and target % self.pad_to_multiple_of:
            target += self.pad_to_multiple_of - target % self.pad_to_multiple_of
        pad_id = self.pad_token_id if target else 0
        batch = BatchEncoding([], [], [])
        for ids, type_ids in rows:
            n = max(0, target - len(ids))
            mask = [1] * len(ids)
            if self.padding_side == "right":
                ids, type_ids, mask = ids + [pad_id] * n, type_ids + [self.pad_type_id] * n, mask + [0] * n
            else:
                ids, type_ids, mask = [pad_id] * n + ids, [self.pad_type_id] * n + type_ids, [0] * n + mask
            batch.input_ids.append(ids)
            batch.token_type_ids.append(type_ids)
            batch.attention_mask.append(mask)
        return batch

    # -- decoding ---------------------------------------------------------------------------------

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Ids -> text, as HF's WordPiece decoder: "##" pieces join their word, other tokens get a
        space before them, then (cleanup) the space before . ? ! , goes: "hello , world" -> "hello, world".

        Lossy by design: case, accents and the spaces around punctuation are gone after encoding."""
        ids = list(ids)
        tokens = [self.id_to_token(i) for i in ids]
        if skip_special_tokens:
            tokens = [t for t, i in zip(tokens, ids, strict=True) if i not in self._special_ids]
        if self.decoder == "spaces":
            return " ".join(tokens)
        prefix = self.continuing_subword_prefix
        out = []
        for i, token in enumerate(tokens):
            # HF cleans each token on its own (not the joined string), so only " ." " ?" " !" " ,"
            # can ever match; "don ' t" stays as it is.
            if i > 0:
                token = token[len(prefix) :] if token.startswith(prefix) else " " + token
            if self.decoder_cleanup:
                token = _cleanup(token)
            out.append(token)
        return "".join(out)

    # -- loading and saving -----------------------------------------------------------------------

    @classmethod
    def from_vocab_file(
        cls,
        path: str | os.PathLike,
        lowercase: bool = True,
        **kwargs,
    ) -> WordPieceTokenizer:
        """BERT's vocab.txt: one token per line, id = line number (0-based). ``kwargs`` go to __init__."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no WordPiece vocab file at {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
        # Later duplicates win, as in HF; BERT's vocabs have none.
        vocab = {line.rstrip(): i for i, line in enumerate(lines)}
        kwargs.setdefault("name", path.parent.name or path.stem)
        return cls(vocab, lowercase=lowercase, **kwargs)

    @classmethod
    def from_tokenizer_json(cls, path: str | os.PathLike) -> WordPieceTokenizer:
        """A Hugging Face tokenizer.json whose model is WordPiece (BERT, MiniLM, DistilBERT, ...)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not valid JSON (truncated or corrupt?): {exc}") from None
        return cls.from_dict(data, source=str(path))

    load = from_tokenizer_json

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "<dict>") -> WordPieceTokenizer:
        """The parsed contents of a Hugging Face tokenizer.json."""
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, dict):
            raise ValueError(f"{source} is not a Hugging Face tokenizer.json (it has no 'model' section)")
        kind = model.get("type", "untyped")
        if kind != "WordPiece":
            hint = " (BPETokenizer reads BPE ones)" if kind == "BPE" else ""
            raise ValueError(f"{source} is a {kind} tokenizer.json, not a WordPiece one{hint}")
        try:
            return cls(
                model["vocab"],
                **_settings_from_json(data, model),
                name=Path(source).parent.name or "wordpiece",
            )
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError(
                f"{source} is a corrupt WordPiece tokenizer.json: missing or malformed {exc}"
            ) from None
        except ValueError as exc:  # a setting we do not support, or an inconsistent file
            raise ValueError(f"{source}: {exc}") from None

    def to_dict(self) -> dict:
        """This tokenizer as a Hugging Face tokenizer.json (``tokenizers.Tokenizer.from_str`` reads it)."""
        return _settings_to_json(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write a Hugging Face tokenizer.json; ``load`` (and HF ``tokenizers``) read it back."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:  # write then rename: a crash never leaves half a file
            tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(name={self.name!r}, vocab_size={self.vocab_size}, lowercase={self.lowercase})"


# ----------------------------------------------------------------------------------------------
# helpers


def _settings_from_json(data: dict, model: dict) -> dict:
    """tokenizer.json sections -> WordPieceTokenizer keyword arguments (all but the vocab)."""
    kw: dict = {
        "unk_token": model.get("unk_token", "[UNK]"),
        "continuing_subword_prefix": model.get("continuing_subword_prefix", "##"),
        "max_input_chars_per_word": model.get("max_input_chars_per_word", 100),
    }
    normalizer = data.get("normalizer")
    if normalizer is None:
        kw.update(lowercase=False, strip_accents=False, handle_chinese_chars=False, clean_text=False)
    elif normalizer.get("type") == "BertNormalizer":
        kw.update(
            lowercase=normalizer.get("lowercase", True),
            strip_accents=normalizer.get("strip_accents"),
            handle_chinese_chars=normalizer.get("handle_chinese_chars", True),
            clean_text=normalizer.get("clean_text", True),
        )
    else:
        raise ValueError(f"normalizer {normalizer.get('type')!r} is not supported (only BertNormalizer)")
    pre = data.get("pre_tokenizer")
    if not pre or pre.get("type") != "BertPreTokenizer":
        raise ValueError(
            f"pre_tokenizer {pre and pre.get('type')!r} is not supported (only BertPreTokenizer)"
        )

    added = []
    for entry in data.get("added_tokens") or []:
        if entry.get("lstrip") or entry.get("rstrip") or entry.get("single_word"):
            raise ValueError(
                f"added token {entry['content']!r} uses lstrip/rstrip/single_word, which is not supported"
            )
        added.append(
            AddedToken(
                entry["content"], entry["id"], entry.get("special", False), entry.get("normalized", True)
            )
        )
    kw["added_tokens"] = added

    post = data.get("post_processor")
    if post is None:
        kw["template"] = NO_TEMPLATE
    elif post.get("type") == "TemplateProcessing":
        specials = post.get("special_tokens", {})

        def parse(items: list[dict]) -> list[TemplatePiece]:
            pieces = []
            for item in items:
                if "Sequence" in item:
                    pieces.append(
                        TemplatePiece(item["Sequence"]["id"], None, (), item["Sequence"]["type_id"])
                    )
                else:
                    name = item["SpecialToken"]["id"]
                    ids = tuple(specials[name]["ids"])
                    pieces.append(TemplatePiece(None, name, ids, item["SpecialToken"]["type_id"]))
            return pieces

        kw["template"] = {"single": parse(post["single"]), "pair": parse(post["pair"])}
    elif post.get("type") == "BertProcessing":  # older files: {"sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}
        (sep, sep_id), (cls_token, cls_id) = post["sep"], post["cls"]
        kw["template"] = bert_template(cls_id, sep_id, cls_token, sep)
    else:
        raise ValueError(
            f"post_processor {post.get('type')!r} is not supported (TemplateProcessing, BertProcessing)"
        )

    decoder = data.get("decoder")
    if decoder is None:
        kw["decoder"] = "spaces"
    elif decoder.get("type") == "WordPiece":
        kw["decoder_cleanup"] = decoder.get("cleanup", True)
    else:
        raise ValueError(f"decoder {decoder.get('type')!r} is not supported (only WordPiece)")

    truncation = data.get("truncation")
    kw["max_length"] = None if truncation is None else truncation["max_length"]
    if truncation is not None:
        kw["truncation_strategy"] = _FROM_HF_STRATEGY[truncation.get("strategy", "LongestFirst")]
        kw["truncation_side"] = truncation.get("direction", "Right").lower()
    padding = data.get("padding")
    if padding is None:
        kw["padding"] = "longest"  # HF would return ragged rows; a model needs a rectangle
    else:
        strategy = padding.get("strategy", "BatchLongest")
        kw["padding"] = strategy["Fixed"] if isinstance(strategy, dict) else "longest"
        kw["padding_side"] = padding.get("direction", "Right").lower()
        kw["pad_to_multiple_of"] = padding.get("pad_to_multiple_of")
        kw["pad_token"] = padding.get("pad_token", "[PAD]")
        kw["pad_type_id"] = padding.get("pad_type_id", 0)
    return kw


_FROM_HF_STRATEGY = {"LongestFirst": "longest_first", "OnlyFirst": "only_first", "OnlySecond": "only_second"}


def _settings_to_json(tok: WordPieceTokenizer) -> dict:
    """The inverse of _settings_from_json, in the layout ``tokenizers`` writes."""

    def template(pieces: list[TemplatePiece]) -> list[dict]:
        return [
            {"Sequence": {"id": p.sequence, "type_id": p.type_id}}
            if p.sequence
            else {"SpecialToken": {"id": p.token, "type_id": p.type_id}}
            for p in pieces
        ]

    specials = {
        p.token: {"id": p.token, "ids": list(p.ids), "tokens": [tok.id_to_token(i) for i in p.ids]}
        for p in tok.template["single"] + tok.template["pair"]
        if p.sequence is None
    }
    truncation = None
    if tok.max_length is not None:
        strategy = {v: k for k, v in _FROM_HF_STRATEGY.items()}[tok.truncation_strategy]
        truncation = {
            "direction": tok.truncation_side.title(),
            "max_length": tok.max_length,
            "strategy": strategy,
            "stride": 0,
        }
    padding = None
    if tok.padding is not False and tok.padding is not None:
        longest = tok.padding is True or tok.padding == "longest"
        fixed = tok.max_length if tok.padding == "max_length" else tok.padding
        padding = {
            "strategy": "BatchLongest" if longest else {"Fixed": fixed},
            "direction": tok.padding_side.title(),
            "pad_to_multiple_of": tok.pad_to_multiple_of,
            "pad_id": tok.pad_token_id,
            "pad_type_id": tok.pad_type_id,
            "pad_token": tok.pad_token,
        }
    added = [
        {"id": a.id, "content": a.content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": a.normalized, "special": a.special}
        for a in tok.added_tokens
    ]  # fmt: skip
    return {
        "version": "1.0",
        "truncation": truncation,
        "padding": padding,
        "added_tokens": added,
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": tok.clean_text,
            "handle_chinese_chars": tok.handle_chinese_chars,
            "strip_accents": tok.strip_accents,
            "lowercase": tok.lowercase,
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": template(tok.template["single"]),
            "pair": template(tok.template["pair"]),
            "special_tokens": specials,
        },
        "decoder": None
        if tok.decoder == "spaces"
        else {"type": "WordPiece", "prefix": tok.continuing_subword_prefix, "cleanup": tok.decoder_cleanup},
        "model": {
            "type": "WordPiece",
            "unk_token": tok.unk_token,
            "continuing_subword_prefix": tok.continuing_subword_prefix,
            "max_input_chars_per_word": tok.max_input_chars_per_word,
            "vocab": tok.vocab,
        },
    }


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, not {value!r}")


def _alternation(tokens: Iterable[str]) -> regex.Pattern | None:
    # Longest first, so that at one position the longest token wins (HF: leftmost-longest).
    tokens = sorted((t for t in tokens if t), key=len, reverse=True)
    return regex.compile("|".join(regex.escape(t) for t in tokens)) if tokens else None


def _cleanup(token: str) -> str:
    """HF's WordPiece decoder cleanup, applied to one token with its leading space."""
    for dirty, clean in _CLEANUP:
        token = token.replace(dirty, clean)
    return token


_CLEANUP = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
    (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Where HF's character tables differ from Python's unicodedata
#
# HF's Rust port takes categories from the unicode_categories crate (Unicode 8.0, 2015), canonical
# decompositions from unicode-normalization-alignments (Unicode 12) and lowercase from Rust's std
# (Unicode 17); Python 3.11 has Unicode 14, 3.14 has 16. The code points whose class differs are
# listed here (found by comparing HF with Unicode 14 and 18 on every code point), so that our ids
# match HF's on any Python. A slow test checks all 1.1 million code points against HF.


def _code_points(ranges: str) -> frozenset[str]:
    """ "0041-0043 00E9" -> {"A", "B", "C", "é"}"""
    chars = set()
    for item in ranges.split():
        first, _, last = item.partition("-")
        chars.update(chr(cp) for cp in range(int(first, 16), int(last or first, 16) + 1))
    return frozenset(chars)


# Punctuation, format controls and nonspacing marks added in Unicode 9.0-18.0. HF's tables do not
# know them, so to HF they are ordinary letters: not split off, not cleaned away, not stripped.
_NEW_SINCE_UNICODE_8 = _code_points("""
05C8-05C9 061D 07FD 0890-0891 0897-089F 08CA-08E2 09FD-09FE 0A76 0AFA-0AFF 0B53-0B55 0C04 0C3C 0C77
0C84 0D00 0D3B-0D3C 0D81 0EBA 0ECE 180F 1885-1886 1ABF-1AF0 1B4E-1B4F 1B7D-1B7F 1DF6-1DFB 2E43-2E4F
2E52-2E5D 2E60-2E63 A82C A8C5 A8FF A9BD 10D24-10D27 10D69-10D6E 10EAB-10EAD 10ECB-10ED0 10EF0-10EFF
10F46-10F50 10F55-10F59 10F82-10F89 11070 11073-11074 110C2 110CD 111CF 1123E 11241 1133B
113BB-113C0 113CE 113D0 113D2 113D4-113D5 113D7-113D8 113E1-113E2 11438-1143F 11442-11444 11446
1144B-1144F 1145A-1145B 1145D-1145E 11660-1166C 116B9 1182F-11837 11839-1183B 1193B-1193C 1193E
11943-11946 119D4-119D7 119DA-119DB 119E0 119E2 11A01-11A0A 11A33-11A38 11A3B-11A47 11A51-11A56
11A59-11A5B 11A8A-11A96 11A98-11A9C 11A9E-11AA2 11B00-11B09 11B60 11B62-11B64 11B66 11BE1
11C30-11C36 11C38-11C3D 11C3F 11C41-11C45 11C70-11C71 11C92-11CA7 11CAA-11CB0 11CB2-11CB3
11CB5-11CB6 11D31-11D36 11D3A 11D3C-11D3D 11D3F-11D45 11D47 11D90-11D91 11D95 11D97 11DF0
11EF3-11EF4 11EF7-11EF8 11F00-11F01 11F36-11F3A 11F40 11F42-11F4F 11F5A 11FFF 12FF1-12FF2
13430-13440 13447-13455 1611E-16129 1612D-1612F 16D6D-16D6F 16E97-16E9A 16F4F 16FE2 16FE4
1CF00-1CF2D 1CF30-1CF46 1D127-1D128 1D25B-1D25C 1E000-1E006 1E008-1E018 1E01B-1E021 1E023-1E024
1E026-1E02A 1E08F 1E130-1E136 1E2AE 1E2EC-1E2EF 1E4EC-1E4EF 1E5EE-1E5EF 1E5FF 1E6E3 1E6E6
1E6EE-1E6EF 1E6F5 1E944-1E94A 1E95E-1E95F
""")
_STILL_PUNCTUATION = _code_points("166D 111C9")  # Po in Unicode 8.0, So and Mn now
_STILL_NONSPACING = _code_points("1734 1171E")  # Mn in Unicode 8.0, Mc now

# Characters whose canonical decomposition is newer than HF's NFD tables; all are starters
# (combining class 0), so NFD of the text between them is unaffected by keeping them whole.
_NOT_DECOMPOSED = _code_points(
    "105C9 105E4 11383 11385 1138E 11391 113C5 113C7-113C8 11938 16121-16128 16D68-16D6A"
)
_NOT_DECOMPOSED_RUN = regex.compile("([" + "".join(sorted(_NOT_DECOMPOSED)) + "])")

# Case pairs newer than Python 3.11's unicodedata: (first, last, lowercase of first).
_LOWERCASE = {
    chr(cp): chr(lower + cp - first)
    for first, last, lower in [
        (0x1C89, 0x1C89, 0x1C8A), (0xA7CB, 0xA7CB, 0x0264), (0xA7CC, 0xA7CC, 0xA7CD), (0xA7CE, 0xA7CE, 0xA7CF),
        (0xA7D2, 0xA7D2, 0xA7D3), (0xA7D4, 0xA7D4, 0xA7D5), (0xA7DA, 0xA7DA, 0xA7DB), (0xA7DC, 0xA7DC, 0x019B),
        (0x10D50, 0x10D65, 0x10D70), (0x16EA0, 0x16EB8, 0x16EBB),
    ]
    for cp in range(first, last + 1)
}  # fmt: skip

# The general category as HF's tables have it, where that differs ("Cn": not a special class).
_HF_CATEGORY: dict[str, str] = {
    **dict.fromkeys(_NEW_SINCE_UNICODE_8, "Cn"),
    **dict.fromkeys(_STILL_PUNCTUATION, "Po"),
    **dict.fromkeys(_STILL_NONSPACING, "Mn"),
}
