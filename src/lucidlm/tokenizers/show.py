"""Seeing tokenization: colored token boundaries in the terminal, and compression statistics.

A token is a run of *bytes*, not of characters: one Chinese character (3 bytes in UTF-8) or one
emoji (4 bytes, more with joiners) may be cut across tokens. ``render_tokens`` never prints a
replacement glyph for such a cut: it prints the whole character once, then its bytes in brackets
with ``|`` where a token boundary falls, e.g. ``中⟨e4|b8 ad⟩``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

# Background colors (ANSI 256-color codes) for consecutive tokens; black text on light colors.
PALETTE = [153, 216, 187, 225, 229, 158, 189, 223]
RESET = "\x1b[0m"
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


def encode_for_display(tokenizer, text: str, allowed_special="all") -> list[int]:
    """Ids as a user of this tokenizer gets them: byte-level BPE with the given special-token rule,
    other tokenizers (WordPiece, characters, SMILES) with their own defaults."""
    from lucidlm.tokenizers.bpe import BPETokenizer

    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode(text, allowed_special=allowed_special) if allowed_special else tokenizer.encode(text)
    return tokenizer.encode(text)


def token_label(tokenizer, token_id: int) -> str:
    """A token shown readably: its bytes for byte-level BPE, its vocabulary string otherwise."""
    from lucidlm.tokenizers.bpe import render_piece

    if hasattr(tokenizer, "token_bytes"):
        return render_piece(tokenizer.token_bytes(token_id))
    return tokenizer.id_to_token(token_id)


def render_tokens(tokenizer, text: str, *, color: bool = True, whitespace: bool = True, allowed_special="all") -> str:
    """The text with each token shown in its own color (or between ``|`` when ``color=False``)."""
    ids = encode_for_display(tokenizer, text, allowed_special)
    if not hasattr(tokenizer, "token_bytes"):
        # WordPiece and friends normalise the text (lowercase, accents, [CLS]...), so tokens do not
        # map back onto the input bytes: show the token strings themselves.
        pieces = ["".join(_visible(ch, whitespace) for ch in tokenizer.id_to_token(i)) for i in ids]
        return ("" if color else "|").join(_paint(p, k, color) for k, p in enumerate(pieces))
    pieces = [tokenizer.token_bytes(i) for i in ids]
    data = b"".join(pieces)
    owner = [k for k, piece in enumerate(pieces) for _ in piece]  # which token each byte belongs to

    out: list[str] = []
    pos = 0
    previous_token = -1
    for ch in data.decode("utf-8", errors="replace"):
        n = len(ch.encode("utf-8")) if ch != "\ufffd" else 1
        piece = data[pos : pos + n]
        first, last = owner[pos], owner[pos + n - 1]
        shown = _visible(ch, whitespace)
        if first == last:
            if not color and first != previous_token and previous_token >= 0:
                out.append("|")
            out.append(_paint(shown, first, color))
        else:  # one character cut across tokens: show it whole, then its bytes per token
            if not color and previous_token >= 0:
                out.append("|")
            groups = []
            for k in range(first, last + 1):
                part = bytes(b for b, o in zip(piece, owner[pos : pos + n]) if o == k)
                groups.append(_paint(" ".join(f"{b:02x}" for b in part), k, color))
            out.append(shown + "⟨" + "|".join(groups) + "⟩")
        previous_token = last
        pos += n
    return "".join(out)


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
