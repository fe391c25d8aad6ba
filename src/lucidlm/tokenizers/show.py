"""Seeing tokenization: colored token boundaries in the terminal, and compression statistics.

A token is a run of *bytes*, not of characters: one Chinese character (3 bytes in UTF-8) or one
emoji (4 bytes, more with joiners) may be cut across tokens. ``render_tokens`` draws every token
as exactly one piece (one color, or the text between two ``|``). The bytes a token holds of a cut
character are shown as hex in angle brackets, and a last line names each cut character::

    I|·think|·⟨f0 9f a4⟩|⟨94⟩|·so        (o200k_base: " \\xf0\\x9f\\xa4" is one token)
    ⟨ ⟩ holds bytes of a character cut across tokens: 🤔 = f0 9f a4|94
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

# Background colors (ANSI 256-color codes) for consecutive tokens; black text on light colors.
PALETTE = [153, 216, 187, 225, 229, 158, 189, 223]
RESET = "\x1b[0m"
CUT_LEGEND = "⟨ ⟩ holds bytes of a character cut across tokens: "  # then 🤔 = f0 9f a4|94 (| between tokens)
WHITESPACE_VIEW = {" ": "·", "\n": "↵\n", "\t": "→", "\r": "␍"}


def _visible(ch: str, whitespace: bool) -> str:
    """Whitespace as · ↵ →, and invisible characters (zero-width joiner, variation selectors,
    controls) by their code point, so that every token has something to show."""
    if whitespace and ch in WHITESPACE_VIEW:
        return WHITESPACE_VIEW[ch]
    if ch not in "\n\t\r" and (unicodedata.category(ch) in ("Cf", "Cc") or "\ufe00" <= ch <= "\ufe0f"):
        return f"<U+{ord(ch):04X}>"
    return ch


def _paint(text: str, token_index: int, color: bool) -> str:
    if not color:
        return text
    return f"\x1b[30;48;5;{PALETTE[token_index % len(PALETTE)]}m{text}{RESET}"


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def utf8_units(data: bytes) -> list[tuple[bytes, str | None]]:
    """Cut bytes into characters: ``(bytes, character)``, or ``(bytes, None)`` for a part of a
    character (the bytes a token holds of a character cut across tokens) or an invalid byte.

    A part is a lead byte with the continuation bytes that follow it, or a run of continuation
    bytes (10xxxxxx) with no lead byte before it, so ``b"\\x94\\xf0"`` is two parts, not one.

    >>> utf8_units(b" \\xf0\\x9f\\xa4")
    [(b' ', ' '), (b'\\xf0\\x9f\\xa4', None)]
    >>> utf8_units("é".encode() + b"\\x94\\xf0")
    [(b'\\xc3\\xa9', 'é'), (b'\\x94', None), (b'\\xf0', None)]
    """
    units: list[tuple[bytes, str | None]] = []
    pos = 0
    while pos < len(data):
        lead = data[pos]
        # How many bytes a character starting with this byte has (RFC 3629); 0: not a lead byte.
        need = 1 if lead < 0x80 else 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else (
            4 if 0xF0 <= lead <= 0xF4 else 0)
        end = pos + 1
        limit = pos + (need or 3)  # a run of continuation bytes is at most 3 long
        while end < min(limit, len(data)) and 0x80 <= data[end] <= 0xBF:
            end += 1
        unit = data[pos:end]
        try:
            units.append((unit, unit.decode("utf-8") if need else None))
        except UnicodeDecodeError:  # a character cut short, or an invalid sequence
            units.append((unit, None))
        pos = end
    return units


def show_bytes(piece: bytes, whitespace: bool = True) -> str:
    """One token's bytes as a student reads them: its characters (whitespace as · ↵ →), and the
    bytes of a cut character in hex between ⟨ ⟩.

    >>> show_bytes(b" \\xf0\\x9f\\xa4"), show_bytes(b"\\x94"), show_bytes(b" the")
    ('·⟨f0 9f a4⟩', '⟨94⟩', '·the')
    """
    return "".join(_visible(ch, whitespace) if ch is not None else f"⟨{_hex(unit)}⟩"
                   for unit, ch in utf8_units(piece))


def encode_for_display(tokenizer, text: str, allowed_special="all") -> list[int]:
    """Ids as a user of this tokenizer gets them: byte-level BPE with the given special-token rule,
    other tokenizers (WordPiece, characters, SMILES) with their own defaults."""
    from lucidlm.tokenizers.bpe import BPETokenizer

    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode(text, allowed_special=allowed_special) if allowed_special else tokenizer.encode(text)
    return tokenizer.encode(text)


def token_label(tokenizer, token_id: int) -> str:
    """A token on one line, drawn as ``render_tokens`` draws it (for ``--ids`` and ``stats``)."""
    if hasattr(tokenizer, "token_bytes"):
        return show_bytes(tokenizer.token_bytes(token_id)).replace("\n", "")
    return tokenizer.id_to_token(token_id)


def render_tokens(tokenizer, text: str, *, color: bool = True, whitespace: bool = True, allowed_special="all") -> str:
    """The text with each token drawn as one piece: in its own color, or between ``|`` when
    ``color=False``. If a token boundary falls inside a character, a last line shows how."""
    ids = encode_for_display(tokenizer, text, allowed_special)
    if not hasattr(tokenizer, "token_bytes"):
        # WordPiece and friends normalise the text (lowercase, accents, [CLS]...), so tokens do not
        # map back onto the input bytes: show the token strings themselves.
        pieces = ["".join(_visible(ch, whitespace) for ch in tokenizer.id_to_token(i)) for i in ids]
        return ("" if color else "|").join(_paint(p, k, color) for k, p in enumerate(pieces))
    pieces = [tokenizer.token_bytes(i) for i in ids]
    drawn = ("" if color else "|").join(_paint(show_bytes(p, whitespace), k, color) for k, p in enumerate(pieces))
    cut = cut_characters(pieces, color)
    if not cut:
        return drawn
    return drawn + ("" if drawn.endswith("\n") else "\n") + CUT_LEGEND + cut


def cut_characters(pieces: list[bytes], color: bool = False) -> str:
    """The characters that token boundaries cut, each once, with its bytes grouped by token.

    >>> cut_characters([b"I", b" \\xf0\\x9f\\xa4", b"\\x94", b" so"])
    '🤔 = f0 9f a4|94'
    """
    owner = [k for k, piece in enumerate(pieces) for _ in piece]  # which token each byte belongs to
    found: dict[str, str] = {}  # uncolored description -> as drawn
    pos = 0
    for unit, ch in utf8_units(b"".join(pieces)):
        tokens = owner[pos : pos + len(unit)]
        if ch is not None and tokens[0] != tokens[-1]:
            parts = [(k, bytes(b for b, o in zip(unit, tokens) if o == k)) for k in dict.fromkeys(tokens)]
            plain = f"{_visible(ch, True)} = " + "|".join(_hex(part) for _, part in parts)
            found.setdefault(plain, f"{_visible(ch, True)} = " + "|".join(_paint(_hex(part), k, color) for k, part in parts))
        pos += len(unit)
    return ", ".join(found.values())


@dataclass
class TokenStats:
    n_bytes: int
    n_chars: int
    n_words: int
    n_tokens: int
    n_unique: int
    vocab_size: int
    top: list[tuple[int, int]]  # (token id, count)

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / max(self.n_tokens, 1)

    @property
    def tokens_per_word(self) -> float:
        return self.n_tokens / max(self.n_words, 1)


def token_stats(tokenizer, text: str, *, top: int = 20, ids: list[int] | None = None) -> TokenStats:
    """How well a tokenizer compresses a text: bytes/token, tokens/word, the most frequent tokens."""
    if ids is None:
        ids = encode_for_display(tokenizer, text)
    counts = Counter(ids)
    return TokenStats(
        n_bytes=len(text.encode("utf-8")),
        n_chars=len(text),
        n_words=len(re.findall(r"\S+", text)),
        n_tokens=len(ids),
        n_unique=len(counts),
        vocab_size=tokenizer.vocab_size,
        top=counts.most_common(top),
    )


def format_stats(tokenizer, stats: TokenStats, name: str = "") -> str:
    lines = [
        f"{name or getattr(tokenizer, 'name', 'tokenizer')}: vocab {stats.vocab_size:,}",
        f"  {stats.n_bytes:,} bytes, {stats.n_chars:,} characters, {stats.n_words:,} words -> {stats.n_tokens:,} tokens "
        f"({stats.n_unique:,} distinct)",
        f"  bytes/token {stats.bytes_per_token:.3f}   chars/token {stats.n_chars / max(stats.n_tokens, 1):.3f}   "
        f"tokens/word {stats.tokens_per_word:.3f}",
        "  most frequent tokens:",
    ]
    for token_id, count in stats.top:
        lines.append(f"    {token_id:>7}  {count / max(stats.n_tokens, 1):6.2%}  {token_label(tokenizer, token_id)}")
    return "\n".join(lines)
