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
character tables are older than Python's; ``bert_text.py`` lists the code points that differ.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import regex

from lucidlm.files.jsonfile import read_json, write_json_atomic
from lucidlm.tokenizers.bert_text import (
    _ASCII_CLEAN,
    _LOWERCASE,
    _NOT_DECOMPOSED,
    _NOT_DECOMPOSED_RUN,
    _WHITESPACE,
    _WHITESPACE_RUN,
    _category,
    is_chinese_char,
    is_control,
    is_punctuation,
)
from lucidlm.tokenizers.bert_text import is_whitespace as is_whitespace  # re-exported
from lucidlm.tokenizers.wordpiece_json import (
    NO_TEMPLATE,
    AddedToken,
    TemplatePiece,
    _settings_from_json,
    _settings_to_json,
    bert_template,
)

# The word -> ids cache: natural text repeats its words, so most lookups hit. Bounded so an
# endless stream of unique words cannot grow it without limit.
CACHE_MAX_ENTRIES = 1 << 17

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# ----------------------------------------------------------------------------------------------
# Batches (AddedToken, TemplatePiece and the templates are in wordpiece_json.py)


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
                text.lower() if text.isascii()
                else text.translate({ord(ch): _LOWERCASE.get(ch, ch).lower() for ch in set(text)})
            )
        return text

    @staticmethod
    def _clean_text(text: str) -> str:
        if text.isascii():
            return text.translate(_ASCII_CLEAN)
        # Each step of normalisation maps one character at a time, so it is written as a
        # translation table over the text's distinct characters: str.translate applies it in C
        # (10,000 characters: ~1 ms instead of ~20 ms in a Python loop).
        return text.translate({ord(ch): "" if ch == "\x00" or ch == "\ufffd" or is_control(ch)
                               else " " if ch in _WHITESPACE else ch for ch in set(text)})

    @staticmethod
    def _tokenize_chinese_chars(text: str) -> str:
        if text.isascii():
            return text
        return text.translate({ord(ch): f" {ch} " for ch in set(text) if is_chinese_char(ch)})

    @staticmethod
    def _run_strip_accents(text: str) -> str:
        if text.isascii():
            return text
        if _NOT_DECOMPOSED.isdisjoint(text):
            text = unicodedata.normalize("NFD", text)
        else:  # odd parts are characters HF does not decompose
            parts = _NOT_DECOMPOSED_RUN.split(text)
            text = "".join(p if i % 2 else unicodedata.normalize("NFD", p) for i, p in enumerate(parts))
        return text.translate({ord(ch): None for ch in set(text) if _category(ch) == "Mn"})

    @staticmethod
    def pre_tokenize(normalized: str) -> list[str]:
        """Step 1d: split on whitespace, then isolate punctuation. "don't stop." -> don ' t stop ."""
        words = []
        for chunk in _WHITESPACE_RUN.split(normalized):
            if chunk.isalnum():  # letters and digits only (most words): no punctuation to isolate
                words.append(chunk)
                continue
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
        return cls.from_dict(read_json(path, "tokenizer.json"), source=str(path))

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
        return write_json_atomic(path, self.to_dict())

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(name={self.name!r}, vocab_size={self.vocab_size}, lowercase={self.lowercase})"


# ----------------------------------------------------------------------------------------------
# helpers


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
