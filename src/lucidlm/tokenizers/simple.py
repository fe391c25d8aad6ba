"""The two simplest tokenizers: one id per character, and one id per SMILES atom or bond.

``CharTokenizer`` is nanoGPT's shakespeare_char: the vocab is the sorted set of characters of the
training text (65 for Tiny Shakespeare), so "hii there" -> [46, 47, 47, 1, 58, 46, 43, 56, 43].
Tiny vocab, long sequences: the model must learn spelling itself.

``SmilesTokenizer`` splits a SMILES string into chemically meaningful tokens with the regex of the
Molecular Transformer (Schwaller et al. 2019, ACS Cent. Sci. 5, 1572): a bracket atom ("[C@@H]",
"[nH]", "[O-]") is one token, as are two-letter atoms (Cl, Br), bonds, branches and ring closures
("1", "%10"). So "C[C@@H](Cl)c1ccccc1" -> C [C@@H] ( Cl ) c 1 c c c c c 1.

Both save to a small versioned JSON file; ``load(path)`` opens either kind.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import regex

from lucidlm.files.jsonfile import read_json, write_json_atomic
from lucidlm.tokenizers.filenames import refuse_hf_name

FORMAT_VERSION = 1
CHAR_FORMAT = "lucidlm-char"
SMILES_FORMAT = "lucidlm-smiles"

# ----------------------------------------------------------------------------------------------
# Characters


class CharTokenizer:
    """One id per character, ids in sorted character order.

    Args:
        chars: the vocabulary, one character per id (``from_text`` builds it from a text).
        unk_token: if given, an extra last id that unknown characters map to (and that decodes to
            this string); if None, encoding an unknown character is an error.
    """

    def __init__(self, chars: Iterable[str] = (), *, unk_token: str | None = None) -> None:
        self.unk_token = unk_token
        self._set_vocab(list(chars))

    def _set_vocab(self, chars: list[str]) -> None:
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"every vocab entry must be one character; got {bad[0]!r}")
        if len(set(chars)) != len(chars):
            dup = next(c for c, n in Counter(chars).items() if n > 1)
            raise ValueError(f"character {dup!r} appears twice in the vocab")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}  # string -> id
        self.itos = dict(enumerate(chars))  # id -> string
        self.unk_id: int | None = None
        if self.unk_token is not None:
            self.unk_id = self.stoi.get(self.unk_token, len(chars))
            self.itos[self.unk_id] = self.unk_token

    def train(self, text: str) -> CharTokenizer:
        """Make the vocab the sorted unique characters of ``text`` (replacing any vocab); returns self."""
        _check_str(text, "text")
        self._set_vocab(sorted(set(text)))
        return self

    @classmethod
    def from_text(cls, text: str, *, unk_token: str | None = None) -> CharTokenizer:
        return cls(unk_token=unk_token).train(text)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def token_to_id(self, token: str) -> int | None:
        return self.unk_id if token == self.unk_token else self.stoi.get(token)

    def id_to_token(self, token_id: int) -> str:
        try:
            return self.itos[token_id]
        except (KeyError, TypeError):
            raise ValueError(_unknown_id_message(token_id, self.vocab_size, "CharTokenizer")) from None

    def encode(self, text: str) -> list[int]:
        _check_str(text, "text")
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            if self.unk_id is not None:
                return [stoi.get(c, self.unk_id) for c in text]
            pos, char = next((i, c) for i, c in enumerate(text) if c not in stoi)
            raise ValueError(
                f"character {char!r} (U+{ord(char):04X}) at position {pos} is not in the vocab of "
                f"{self.vocab_size} characters; train on text that contains it, or pass unk_token"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join([self.id_to_token(i) for i in ids])

    # -- saving and loading ------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": CHAR_FORMAT,
            "version": FORMAT_VERSION,
            "chars": self.chars,
            "unk_token": self.unk_token,
        }

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "<dict>") -> CharTokenizer:
        _check_format(data, CHAR_FORMAT, source)
        try:
            return cls(data["chars"], unk_token=data.get("unk_token"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source} is a corrupt {CHAR_FORMAT} file: {exc!r}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """lucidlm's JSON (not under HF's name tokenizer.json: ``hf_dir.save_hf_tokenizer`` writes that)."""
        data = self.to_dict()
        return write_json_atomic(refuse_hf_name(path, data["format"]), data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        return cls.from_dict(read_json(path), source=str(path))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unk_token={self.unk_token!r})"


# ----------------------------------------------------------------------------------------------
# SMILES

# Schwaller et al. 2019: bracket atoms, the organic subset (Br and Cl before B and C), aromatic
# atoms, branches, bonds (= # - : ~ / \ and $ quadruple), dot, chirality @, ?, reaction arrow >,
# wildcard *, and ring closures (one digit, or % and two digits).
SMILES_REGEX = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
)
SMILES_SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")

_SMILES_PATTERN = regex.compile(SMILES_REGEX)


def tokenize_smiles(smiles: str, pattern: regex.Pattern = _SMILES_PATTERN) -> list[str]:
    """Split SMILES into atom-level tokens; ValueError if some characters fit no token.

    >>> tokenize_smiles("c1cc[nH]c1Br")
    ['c', '1', 'c', 'c', '[nH]', 'c', '1', 'Br']
    """
    _check_str(smiles, "smiles")
    tokens = pattern.findall(smiles)
    if "".join(tokens) != smiles:
        # findall skips what no alternative matches; find those gaps to name them.
        gaps, pos = [], 0
        for match in pattern.finditer(smiles):
            if match.start() > pos:
                gaps.append((pos, smiles[pos : match.start()]))
            pos = match.end()
        if pos < len(smiles):
            gaps.append((pos, smiles[pos:]))
        where = ", ".join(f"{text[:20]!r} at position {i}" for i, text in gaps[:5])
        shown = smiles if len(smiles) <= 80 else smiles[:77] + "..."  # a pasted paragraph is not repeated whole
        raise ValueError(
            f"cannot tokenize SMILES {shown!r}: {where} match no SMILES token (an unclosed '[', an atom "
            "outside the organic subset B C N O P S F Cl Br I written without brackets, or whitespace?)"
        )
    return tokens


class SmilesTokenizer:
    """Atom-level SMILES tokens with a vocab from a corpus: <pad> <bos> <eos> <unk> first, then
    the corpus tokens, most frequent first (ties alphabetical), so ids are reproducible.

    Tokens not in the vocab encode to <unk>; characters that fit no token at all raise ValueError.
    """

    def __init__(self, tokens: Sequence[str], *, pattern: str = SMILES_REGEX) -> None:
        tokens = list(tokens)
        if tuple(tokens[: len(SMILES_SPECIAL_TOKENS)]) != SMILES_SPECIAL_TOKENS:
            raise ValueError(f"the vocab must start with the special tokens {SMILES_SPECIAL_TOKENS}")
        if len(set(tokens)) != len(tokens):
            dup = next(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"token {dup!r} appears twice in the vocab")
        self.tokens = tokens
        self.pattern = pattern
        self._pattern = _SMILES_PATTERN if pattern == SMILES_REGEX else regex.compile(pattern)
        self.stoi = {t: i for i, t in enumerate(tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(4)

    @classmethod
    def from_corpus(cls, corpus: Iterable[str], *, min_frequency: int = 1) -> SmilesTokenizer:
        """Build the vocab from SMILES strings; tokens seen fewer than ``min_frequency`` times are left out."""
        counts: Counter[str] = Counter()
        for smiles in corpus:
            counts.update(tokenize_smiles(smiles))
        kept = sorted((t for t, n in counts.items() if n >= min_frequency), key=lambda t: (-counts[t], t))
        return cls([*SMILES_SPECIAL_TOKENS, *(t for t in kept if t not in SMILES_SPECIAL_TOKENS)])

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def tokenize(self, smiles: str) -> list[str]:
        return tokenize_smiles(smiles, self._pattern)

    def token_to_id(self, token: str) -> int | None:
        return self.stoi.get(token)

    def id_to_token(self, token_id: int) -> str:
        if isinstance(token_id, int) and 0 <= token_id < len(self.tokens):
            return self.tokens[token_id]
        raise ValueError(_unknown_id_message(token_id, self.vocab_size, "SmilesTokenizer"))

    def encode(self, smiles: str, *, add_special_tokens: bool = False) -> list[int]:
        """SMILES -> ids; ``add_special_tokens`` wraps them in <bos> ... <eos> (for seq2seq targets)."""
        ids = [self.stoi.get(t, self.unk_id) for t in self.tokenize(smiles)]
        return [self.bos_id, *ids, self.eos_id] if add_special_tokens else ids

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = True) -> str:
        """Ids -> SMILES. <pad> <bos> <eos> are skipped by default; <unk> always shows as "<unk>",
        so a lossy round trip is visible rather than a silently different molecule."""
        skip = {self.pad_id, self.bos_id, self.eos_id} if skip_special_tokens else set()
        return "".join([self.id_to_token(i) for i in ids if i not in skip])

    # -- saving and loading ------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": SMILES_FORMAT,
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "tokens": self.tokens,
        }

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "<dict>") -> SmilesTokenizer:
        _check_format(data, SMILES_FORMAT, source)
        try:
            return cls(data["tokens"], pattern=data.get("pattern", SMILES_REGEX))
        except (KeyError, TypeError, regex.error) as exc:
            raise ValueError(f"{source} is a corrupt {SMILES_FORMAT} file: {exc!r}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """lucidlm's JSON (not under HF's name tokenizer.json: ``hf_dir.save_hf_tokenizer`` writes that)."""
        data = self.to_dict()
        return write_json_atomic(refuse_hf_name(path, data["format"]), data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SmilesTokenizer:
        return cls.from_dict(read_json(path), source=str(path))

    def __repr__(self) -> str:
        return f"SmilesTokenizer(vocab_size={self.vocab_size})"


# ----------------------------------------------------------------------------------------------
# Files


def load(path: str | os.PathLike) -> CharTokenizer | SmilesTokenizer:
    """Open a file saved by ``CharTokenizer.save`` or ``SmilesTokenizer.save``."""
    data = read_json(path)
    kind = data.get("format") if isinstance(data, dict) else None
    if kind == CHAR_FORMAT:
        return CharTokenizer.from_dict(data, source=str(path))
    if kind == SMILES_FORMAT:
        return SmilesTokenizer.from_dict(data, source=str(path))
    raise ValueError(f"{path} is not a {CHAR_FORMAT} or {SMILES_FORMAT} file (its 'format' is {kind!r})")


def _check_format(data: object, name: str, source: str) -> None:
    if not isinstance(data, dict) or data.get("format") != name:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{source} is not a {name} file (its 'format' is {found!r})")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{source} has {name} format version {data.get('version')!r}; this lucidlm reads version {FORMAT_VERSION}"
        )




def _check_str(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected {what} as str, got {type(value).__name__}")


def _unknown_id_message(token_id: object, vocab_size: int, name: str) -> str:
    return f"unknown token id {token_id!r}: this {name} has vocab_size {vocab_size} (ids 0..{vocab_size - 1})"
