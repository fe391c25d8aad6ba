"""Streaming text out of tokens, one token at a time.

Two problems appear when text is shown as it is generated:

1. A byte-level BPE token is a run of *bytes*, and a character outside ASCII takes 2-4 bytes in
   UTF-8, which may be split across tokens (an emoji is often 3 or 4 tokens). Decoding each token
   on its own would print U+FFFD replacement characters; ``IncrementalDecoder`` holds back the
   bytes of an unfinished character until the rest arrives.
2. A stop string ("\\nUser:") may arrive in pieces across several tokens. Text that could be the
   start of a stop string must be held back until we know; ``StopChecker`` does that, and never
   emits the stop string itself.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class IncrementalDecoder:
    """Token ids in, text deltas out; the deltas concatenate to ``tokenizer.decode(ids)``.

    Byte-level tokenizers (with ``token_bytes``) go through Python's incremental UTF-8 decoder,
    which keeps an incomplete character's bytes until it is complete. Others (character-level)
    decode everything so far and emit what is new.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._bytes = hasattr(tokenizer, "token_bytes")
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ids: list[int] = []
        self._emitted = 0  # characters already returned (text-diff path)

    def push(self, token_id: int) -> str:
        """The text this token completes ("" while a character is still unfinished)."""
        if self._bytes:
            return self._utf8.decode(self.tokenizer.token_bytes(token_id))
        self._ids.append(token_id)
        text = self.tokenizer.decode(self._ids)
        delta = text[self._emitted:]
        self._emitted = len(text)
        return delta

    def flush(self) -> str:
        """Whatever is held back: an unfinished character's bytes become U+FFFD, as
        ``decode(ids, errors="replace")`` would have it."""
        return self._utf8.decode(b"", final=True) if self._bytes else ""


class StopChecker:
    """Text deltas in, text that is safe to show out; stops at the first stop string.

    ``feed`` returns (text to emit, stopped). Text that could still grow into a stop string is
    held back; once a stop string appears, everything before it is emitted and ``stopped`` is
    True (the stop string and anything after it are dropped, as OpenAI's API does).

    >>> s = StopChecker(["END"]); s.feed("abcE"), s.feed("N"), s.feed("D!")
    (('abc', False), ('', False), ('', True))
    """

    def __init__(self, stop_strings: Sequence[str]) -> None:
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        if any(not isinstance(s, str) or not s for s in stop_strings):
            raise ValueError(f"stop strings must be non-empty strings, got {list(stop_strings)!r}")
        self.stop_strings = tuple(stop_strings)
        self._held = ""  # text not yet emitted: a possible start of a stop string
        self.stopped = False

    def feed(self, delta: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        text = self._held + delta
        # The earliest stop string wins (a later one may already be complete in the same text).
        hits = [i for i in (text.find(s) for s in self.stop_strings) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return text[: min(hits)], True
        keep = self._partial_suffix(text)
        self._held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """The held-back text, at the end of generation (it never became a stop string)."""
        text, self._held = self._held, ""
        return "" if self.stopped else text

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop_strings:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
