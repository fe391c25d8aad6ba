"""Pre-tokenization split patterns.

Before byte-pair merging, text is cut into chunks with a regular expression, and merges never
cross a chunk boundary. That is why " dog" and "dog." share the token " dog": the pattern keeps
letters, digits, punctuation and whitespace apart. The patterns below are the ones OpenAI's
tokenizers use (see tiktoken's ``tiktoken_ext/openai_public.py``); they need the third-party
``regex`` module for ``\\p{...}`` classes and possessive quantifiers.

Splitting is the slowest step of encoding with a regex engine (~6 MB/s), so for the three
presets ``Splitter`` uses a hand-written C matcher (``_split_kernel.c``, ~10x faster) when it was
built; ``regex.findall`` stays the reference, and tests prove the two agree.
"""

from __future__ import annotations

import functools
import os

import regex

try:  # the optional C splitter (setup.py builds it); the regex path below gives the same chunks
    from lucidlm.tokenizers import _split_kernel
except ImportError:  # pragma: no cover - no compiler at install time
    _split_kernel = None

# GPT-2 (2019): contractions, letters, digits, other symbols, whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

# cl100k_base (GPT-3.5/GPT-4): case-insensitive contractions, digits in groups of at most three,
# a leading non-letter may join a word (" hello", "_hello"), newlines split from other whitespace.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# o200k_base (GPT-4o): words split at case changes (camelCase -> camel, Case) and contractions
# attached to their word.
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# Names accepted wherever a pattern is expected. ``None`` / "none" means: no split, the whole text
# is one chunk (merges may then cross spaces, as in SentencePiece-style tokenizers).
PATTERNS: dict[str, str] = {
    "gpt2": GPT2_PATTERN,
    "cl100k": CL100K_PATTERN,
    "gpt4": CL100K_PATTERN,
    "o200k": O200K_PATTERN,
}


# The presets the C splitter implements, by its names for them.
KERNEL_PATTERNS: dict[str, str] = {GPT2_PATTERN: "gpt2", CL100K_PATTERN: "cl100k", O200K_PATTERN: "o200k"}


def split_kernel_enabled() -> bool:
    """Is the C splitter built and not turned off (``LUCIDLM_NO_KERNEL=1`` turns off all C
    accelerators, ``LUCIDLM_NO_SPLIT_KERNEL=1`` only this one)?"""
    return _split_kernel is not None and not (
        os.environ.get("LUCIDLM_NO_KERNEL") or os.environ.get("LUCIDLM_NO_SPLIT_KERNEL")
    )


def resolve_pattern(pattern: str | None) -> str | None:
    """Map a preset name ("gpt2", "cl100k"/"gpt4", "o200k", "none") to its regex; pass a regex through."""
    if pattern is None or pattern == "none":
        return None
    return PATTERNS.get(pattern, pattern)


_PROPERTY = regex.compile(r"\\p\{(\w+)\}")


def _ranges(cps: set[int]) -> str:
    """Code points as the inside of a character class: runs become ranges."""
    runs: list[list[int]] = []
    for c in sorted(cps):
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in runs)


@functools.cache
def _every_code_point() -> str:
    """All 1.1M code points but the surrogates, as one string (built once, shared by the properties)."""
    return "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)


@functools.cache
def unicode_drift(prop: str) -> tuple[frozenset[int], frozenset[int]]:
    """How the installed ``regex`` module's ``\\p{prop}`` differs from Unicode 16.0, the version of
    tiktoken's Rust regex: (code points it adds, code points it lacks). Both are empty when
    ``regex`` is on Unicode 16.0; a newer ``regex`` adds the characters assigned since."""
    from lucidlm.tokenizers.unicode16 import CATEGORIES

    unicode16: set[int] = set()
    for item in "".join(CATEGORIES[prop]).split():
        a, b = (int(x, 16) for x in item.split("-"))
        unicode16.update(range(a, b + 1))
    installed = {ord(c) for c in regex.findall(rf"\p{{{prop}}}", _every_code_point())}
    return frozenset(installed - unicode16), frozenset(unicode16 - installed)


class Splitter:
    """``regex.findall`` with a pattern, split exactly as under Unicode 16.0 tables.

    For the preset patterns the C splitter does the work when it is available (``use_kernel``;
    pass ``use_kernel=False`` for the regex path). It reads Unicode 16.0 tables of its own, so it
    needs none of the correction below.

    The ``regex`` module answers ``\\p{L}`` from the Unicode version of its own release; each
    year thousands of newly assigned code points become letters or digits and join the words
    next to them, while tiktoken (Rust, Unicode 16.0) keeps them apart. Text without such a code
    point (checked with a set, cheaply) is split by the pattern as written, at full speed; text
    with one goes through a corrected pattern where each ``\\p{X}`` is ``[\\p{X}--[added]]``
    (a set difference, about 2x slower to match). Tests check all 1.1M code points.
    """

    def __init__(self, pattern: str, *, use_kernel: bool | None = None) -> None:
        self.pattern = pattern
        self.kernel_name = KERNEL_PATTERNS.get(pattern)
        available = self.kernel_name is not None and split_kernel_enabled()
        if use_kernel and not available:
            why = "is not built or is turned off" if self.kernel_name else "knows only the preset patterns"
            raise ValueError(f"use_kernel=True, but the C splitter {why}; leave use_kernel unset to use the regex")
        self.use_kernel = available if use_kernel is None else use_kernel
        self._fast: regex.Pattern | None = None
        self._corrected: regex.Pattern | None = None
        self._suspects: frozenset[str] | None = None  # None: the drift is not looked up yet
        if not self.use_kernel:
            self._fast = regex.compile(pattern)

    def _compile_corrected(self) -> None:
        """Find the drift and build the corrected pattern: on the first non-ASCII text only, since
        finding the drift scans all 1.1M code points once per process (~0.2 s on a quiet core,
        most of a tokenizer's load) and no code point that moved since Unicode 16.0 is ASCII."""
        from lucidlm.tokenizers.unicode16 import CATEGORIES

        pattern = self.pattern
        props = sorted(set(_PROPERTY.findall(pattern)) & set(CATEGORIES))
        drift = {p: unicode_drift(p) for p in props}
        suspects = frozenset(chr(c) for added, lacked in drift.values() for c in added | lacked)
        if suspects:

            def fix(m: regex.Match) -> str:
                added, lacked = drift.get(m.group(1), ((), ()))
                if not added and not lacked:
                    return m.group()
                body = f"[\\p{{{m.group(1)}}}{'[' + _ranges(set(lacked)) + ']' if lacked else ''}]"
                return f"[{body}--[{_ranges(set(added))}]]" if added else body

            # V1 enables set operations; -f keeps simple case folding, as in V0 and Rust.
            self._corrected = regex.compile("(?V1-f)" + _PROPERTY.sub(fix, pattern))
        self._suspects = suspects  # last: another thread that sees it finds _corrected ready

    def __call__(self, text: str) -> list[str]:
        if self.use_kernel:
            return _split_kernel.split(text, self.kernel_name)
        return self.regex_split(text)

    def regex_split(self, text: str) -> list[str]:
        """The reference: ``findall`` with the pattern (corrected to Unicode 16.0 where needed)."""
        if self._fast is None:
            self._fast = regex.compile(self.pattern)
        if text.isascii():  # ASCII letters and digits have not moved since Unicode 1.0
            return self._fast.findall(text)
        if self._suspects is None:
            self._compile_corrected()
        # isdisjoint scans the text once at C speed (~14 ms per MB of non-ASCII text).
        if self._corrected is None or self._suspects.isdisjoint(text):
            return self._fast.findall(text)
        return self._corrected.findall(text)

    def __repr__(self) -> str:
        return f"Splitter({self.pattern!r})"
