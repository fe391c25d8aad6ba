"""Hugging Face ``tokenizer.json`` for byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2): read and write.

A ``tokenizer.json`` describes a pipeline, applied to each stretch of text between added tokens:

    normalizer (NFC, lowercase, ...) -> pre-tokenizer (split into chunks) -> model (BPE merges)

and, separately, a post-processor (adds BOS/EOS ids) and a decoder (ids -> text).

Byte-level BPE works on bytes, but the JSON stores tokens as strings, so GPT-2 mapped each of the
256 bytes to a printable character (``bytes_to_unicode``): " hello" is stored as "Ġhello". We undo
that mapping on reading and apply it on writing; lucidlm itself works on real bytes.

The pre-tokenizer is the subtle part. ``BPETokenizer`` splits text with one regex, but HF applies a
*sequence* of splits, each inside the pieces of the one before: SmolLM2 first cuts every digit out
(``Digits``), then runs the GPT-2 regex inside each remaining piece. ``PreTokenizer`` is that
sequence, written the way HF runs it (the reference). For the configurations real models use we
also know one regex that gives the same chunks (the fast path, and what ``BPETokenizer`` stores);
tests check the two agree. When no single regex exists (a normalizer, ``add_prefix_space``, or an
unusual sequence) the ``PreTokenizer`` itself is the tokenizer's splitter.

Regexes in tokenizer.json are Oniguruma's dialect (Ruby syntax), which differs from Python's
``regex`` in a few places that matter: ``$`` and ``^`` are line anchors, and ``\\p{N}{1,3}+`` means
``(\\p{N}{1,3})+`` rather than a possessive repeat. ``onig_to_python``/``python_to_onig`` translate.
Unicode versions differ too: the ``regex`` module knows letters and digits added in Unicode 16-17
that HF's Oniguruma does not (about 17k code points, all unassigned in Unicode 14), so text using
those newest characters can split differently than in HF.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import regex

from lucidlm.tokenizers.bpe import BPETokenizer, _atomic_write_text
from lucidlm.tokenizers.patterns import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN

# ----------------------------------------------------------------------------------------------
# 1. GPT-2's byte <-> character table


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to 256 printable characters.

    Bytes that are printable Latin-1 characters map to themselves ("!".."~", "¡".."¬", "®".."ÿ");
    the other 68 (control codes, space, DEL, NBSP, soft hyphen) map, in order, to U+0100, U+0101...
    So a token's string never contains whitespace or control characters:

    >>> t = bytes_to_unicode(); t[ord("a")], t[ord(" ")], t[ord("\\n")], t[0]
    ('a', 'Ġ', 'Ċ', 'Ā')
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def bytes_to_token(piece: bytes) -> str:
    """Token bytes -> the string stored in tokenizer.json / GGUF (b" hi" -> "Ġhi")."""
    return "".join(BYTE_TO_CHAR[b] for b in piece)


def token_to_bytes(token: str) -> bytes:
    """The string stored in tokenizer.json / GGUF -> token bytes ("Ġhi" -> b" hi")."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in token)
    except KeyError as exc:
        raise ValueError(
            f"token {token!r} contains {exc.args[0]!r}, which is not in GPT-2's byte alphabet; "
            "this is not a byte-level BPE vocabulary"
        ) from None


# ----------------------------------------------------------------------------------------------
# 2. Two regex dialects: Oniguruma (HF, Ruby syntax) and Python's ``regex``

_INTERVAL = regex.compile(r"\{\d*(?:,\d*)?\}")
_GROUP_OPEN = regex.compile(
    r"\(\?(?:(?P<look>[:=!>]|<=|<!)|P?<(?P<name>\w+)>|'(?P<qname>\w+)'|(?P<flags>[a-zA-Z]*(?:-[a-zA-Z]*)?)(?P<end>[:)]))"
)


def onig_to_python(pattern: str) -> str:
    """An Oniguruma (Ruby syntax) regex from tokenizer.json -> the same regex for Python's ``regex``.

    >>> onig_to_python(r"\\p{N}{1,3}+|\\s+$")
    '(?:\\\\p{N}{1,3})+|\\\\s+(?=\\\\n|\\\\Z)'
    """
    return _translate(pattern, to="python")


def python_to_onig(pattern: str) -> str:
    """A Python ``regex`` pattern -> the same regex in Oniguruma's Ruby syntax (for tokenizer.json).

    >>> python_to_onig(r"\\p{N}{1,3}+|\\s++$")
    '(?>\\\\p{N}{1,3})|\\\\s++\\\\Z'
    """
    return _translate(pattern, to="onig")


def _translate(pattern: str, *, to: str) -> str:
    """Rewrite the constructs whose meaning differs between the dialects; copy everything else.

    Differences handled (Python meaning <-> Oniguruma meaning):
      ``$``  end, or before a final newline    <-> before any newline (Onig: ``\\Z``)
      ``^``  start of text                     <-> start of any line (Onig: ``\\A``)
      ``\\Z`` end of text                       <-> end, or before a final newline (Onig: ``\\z``)
      ``X{m,n}+`` possessive repeat            <-> one or more runs of ``X{m,n}``
      ``(?s)`` dot matches newline             <-> spelled ``(?m)`` in Ruby syntax
      ``\\x{HH}``, ``\\h`` (hex digit)  Oniguruma only;  ``\\U0001F600``, ``\\N{name}``  Python only
    Capture groups become non-capturing: ``BPETokenizer`` uses ``findall``, which would return the
    groups instead of the whole match. Not handled: ``\\w`` differs on 8 characters (Python counts
    U+200C/U+200D as word characters, Oniguruma counts ¹²³¼½¾), and backreferences (refused).
    """
    out: list[str] = []
    groups: list[int] = []  # index in ``out`` where each open group starts
    atom: int | None = None  # index in ``out`` where the last quantifiable item starts
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            j = _escape_end(pattern, i)
            atom = len(out)
            out.append(_translate_escape(pattern[i:j], to, in_class=False))
            i = j
        elif c == "[":
            j, text = _translate_class(pattern, i, to)
            atom = len(out)
            out.append(text)
            i = j
        elif c == "(":
            m = _GROUP_OPEN.match(pattern, i)
            if not pattern.startswith("(?", i):
                groups.append(len(out))
                out.append("(?:")
                i += 1
            elif m is None:
                raise ValueError(f"regex {pattern!r}: unsupported group syntax at index {i}")
            elif m.group("look"):
                groups.append(len(out))
                out.append(m.group())
                i = m.end()
            elif m.group("name") or m.group("qname"):
                groups.append(len(out))
                out.append("(?:")
                i = m.end()
            else:
                flags = "".join(_translate_flag(f, to, pattern) if f != "-" else f for f in m.group("flags"))
                if m.group("end") == ":":
                    groups.append(len(out))
                    atom = None
                out.append(f"(?{flags}{m.group('end')}")
                i = m.end()
        elif c == ")":
            if not groups:
                raise ValueError(f"regex {pattern!r}: unbalanced ')' at index {i}")
            atom = groups.pop()
            out.append(")")
            i += 1
        elif c == "{" and (m := _INTERVAL.match(pattern, i)) and m.group() != "{}":
            out.append(m.group())
            i = m.end()
            if i < n and pattern[i] == "+" and atom is not None:
                body = "".join(out[atom:])
                del out[atom:]
                out.append(f"(?>{body})" if to == "onig" else f"(?:{body})+")
                i += 1
        elif c in "$^":
            if to == "onig":
                out.append(r"\Z" if c == "$" else r"\A")
            else:
                out.append(r"(?=\n|\Z)" if c == "$" else r"(?m:^)")
            atom = None
            i += 1
        else:
            if c not in "*+?|":
                atom = len(out)
            elif c == "|":
                atom = None
            out.append(c)
            i += 1
    if groups:
        raise ValueError(f"regex {pattern!r}: unbalanced '('")
    return "".join(out)


def _translate_flag(flag: str, to: str, pattern: str) -> str:
    source = "onig" if to == "python" else "python"
    table = {"onig": {"i": "i", "m": "s", "x": "x"}, "python": {"i": "i", "s": "m", "x": "x"}}[source]
    if flag not in table:
        raise ValueError(
            f"regex {pattern!r}: the inline flag {flag!r} has no equivalent in the other dialect"
        )
    return table[flag]


def _escape_end(pattern: str, i: int) -> int:
    """Index just past the escape sequence starting at ``pattern[i] == '\\\\'``."""
    if i + 1 >= len(pattern):
        raise ValueError(f"regex {pattern!r} ends with a lone backslash")
    c = pattern[i + 1]
    if c in "pPxN" and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 2)
        if end < 0:
            raise ValueError(f"regex {pattern!r}: unterminated \\{c}{{ at index {i}")
        return end + 1
    if c in "pP":
        return i + 3
    if c == "x":
        return i + 4
    if c == "u":
        return i + 6
    if c == "U":
        return i + 10
    if c.isdigit() and c != "0" or c in "kg":
        raise ValueError(f"regex {pattern!r}: backreferences are not supported (index {i})")
    return i + 2


def _translate_escape(esc: str, to: str, *, in_class: bool) -> str:
    kind = esc[1]
    if kind == "x" and esc.startswith(r"\x{"):
        cp = int(esc[3:-1], 16)
        return f"\\U{cp:08X}" if to == "python" else esc
    if kind == "U" and to == "onig":
        return f"\\x{{{int(esc[2:], 16):X}}}"
    if kind == "N" and to == "onig":
        return f"\\x{{{ord(unicodedata.lookup(esc[3:-1])):X}}}"
    if to == "python" and kind in "hH":  # Oniguruma's hex-digit class
        if in_class:
            if kind == "H":
                raise ValueError(r"\H inside a character class has no Python equivalent")
            return "0-9a-fA-F"
        return "[0-9a-fA-F]" if kind == "h" else "[^0-9a-fA-F]"
    if not in_class and kind == "Z":
        return r"\z" if to == "onig" else r"(?=\n?\Z)"
    if not in_class and kind == "z" and to == "python":
        return r"\Z"
    return esc


def _translate_class(pattern: str, i: int, to: str) -> tuple[int, str]:
    """Translate the character class starting at ``pattern[i] == '['``; return (end, text)."""
    out = ["["]
    j = i + 1
    if pattern.startswith("^", j):
        out.append("^")
        j += 1
    if pattern.startswith("]", j):  # a ']' first in the class is a literal
        out.append("]")
        j += 1
    while j < len(pattern):
        c = pattern[j]
        if c == "]":
            out.append("]")
            return j + 1, "".join(out)
        if c == "\\":
            k = _escape_end(pattern, j)
            out.append(_translate_escape(pattern[j:k], to, in_class=True))
            j = k
        elif c == "[":
            m = regex.match(r"\[:\^?\w+:\]", pattern[j:])
            if not m:
                raise ValueError(f"regex {pattern!r}: nested character classes are not supported (index {j})")
            out.append(m.group())
            j += m.end()
        elif pattern.startswith("&&", j):
            raise ValueError(f"regex {pattern!r}: class intersection '&&' is not supported (index {j})")
        else:
            out.append(c)
            j += 1
    raise ValueError(f"regex {pattern!r}: unterminated character class at index {i}")


# ----------------------------------------------------------------------------------------------
# 3. The pre-tokenizer: HF's sequence of splits, and one regex that does the same when possible

# The regex inside HF's ByteLevel pre-tokenizer (tokenizers/src/pre_tokenizers/byte_level.rs).
# It splits exactly like lucidlm's GPT2_PATTERN (tiktoken's spelling, tuned for speed).
HF_BYTELEVEL_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Digits(individual_digits=true) then the ByteLevel regex inside each piece (SmolLM2, StarCoder),
# as one regex. Inside a piece, a piece boundary acts like the end of the text, and every digit
# is a boundary. So: (1) a digit is always a chunk of its own; (2) "\s+(?!\S)" must also stop
# before a digit: "(?!\S)" becomes "(?![^\s\p{N}])"; (3) " ?\p{N}+" can no longer match.
# With individual_digits=false runs of digits stay together: "\p{N}+".
_AFTER_DIGITS = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
DIGITS_THEN_BYTELEVEL = {True: r"\p{N}|" + _AFTER_DIGITS, False: r"\p{N}+|" + _AFTER_DIGITS}

# Llama 3 and Qwen2 as written in their tokenizer.json (Oniguruma; also valid Python).
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Regexes known to match somewhere at every position of any text (every character is a letter,
# a digit, whitespace or "other"), so an Isolated split by them never leaves gaps.
COVERING_PATTERNS = frozenset(
    [HF_BYTELEVEL_PATTERN, GPT2_PATTERN, CL100K_PATTERN, O200K_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN]
    + list(DIGITS_THEN_BYTELEVEL.values())
)

BEHAVIORS = {  # tokenizer.json spelling -> ours
    "Removed": "removed",
    "Isolated": "isolated",
    "MergedWithPrevious": "merged_with_previous",
    "MergedWithNext": "merged_with_next",
    "Contiguous": "contiguous",
}
_PREFIX_SPACE = "prefix_space"  # the step of ByteLevel(add_prefix_space=true)


class _Split:
    """One regex split with an HF delimiter behavior (``normalizer.rs: NormalizedString::split``)."""

    def __init__(self, pattern: str, behavior: str = "isolated", invert: bool = False) -> None:
        self.pattern, self.behavior, self.invert = pattern, behavior, invert
        try:
            self._regex = regex.compile(pattern)
        except regex.error as exc:
            raise ValueError(f"pre-tokenizer regex {pattern!r} does not compile: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Split) and (self.pattern, self.behavior, self.invert) == (
            other.pattern,
            other.behavior,
            other.invert,
        )

    def split(self, text: str) -> list[str]:
        spans = []  # (start, end, is_match) covering the text
        pos = 0
        for m in self._regex.finditer(text):
            if m.start() > pos:
                spans.append((pos, m.start(), False))
            spans.append((m.start(), m.end(), True))
            pos = m.end()
        if pos < len(text):
            spans.append((pos, len(text), False))
        if self.invert:
            spans = [(a, b, not is_match) for a, b, is_match in spans]
        out: list[list[int]] = []
        previous_match = False
        if self.behavior == "isolated":
            out = [[a, b] for a, b, _ in spans]
        elif self.behavior == "removed":
            out = [[a, b] for a, b, is_match in spans if not is_match]
        elif self.behavior == "merged_with_previous":  # a match joins the gap before it
            for a, b, is_match in spans:
                if is_match and not previous_match and out:
                    out[-1][1] = b
                else:
                    out.append([a, b])
                previous_match = is_match
        elif self.behavior == "merged_with_next":  # a match joins the gap after it
            for a, b, is_match in reversed(spans):
                if is_match and not previous_match and out:
                    out[-1][0] = a
                else:
                    out.append([a, b])
                previous_match = is_match
            out.reverse()
        else:  # contiguous: adjacent matches become one piece
            for a, b, is_match in spans:
                if is_match == previous_match and out:
                    out[-1][1] = b
                else:
                    out.append([a, b])
                previous_match = is_match
        return [text[a:b] for a, b in out if b > a]  # HF drops empty pieces

    def as_findall_regex(self) -> str | None:
        """A regex whose ``findall`` gives the same pieces, or None.

        A "gap" (text where the pattern P finds no match) is ``(?:(?!P)[\\s\\S])+``: characters at
        which P cannot start. Only valid if P never matches the empty string.
        """
        p = self.pattern
        if _matches_empty(p):
            return None
        gap = f"(?:(?!(?:{p}))[\\s\\S])+"
        if self.invert:
            return {"isolated": f"(?:{p})|{gap}", "removed": p}.get(self.behavior)
        if self.behavior == "isolated":
            return p if p in COVERING_PATTERNS else f"(?:{p})|{gap}"
        return {
            "removed": gap,
            "merged_with_previous": f"{gap}(?:{p})?|(?:{p})",
            "merged_with_next": f"(?:{p})(?:(?!(?:{p}))[\\s\\S])*|{gap}",
            "contiguous": f"(?:{p})+|{gap}",
        }[self.behavior]


def _matches_empty(pattern: str) -> bool:
    """Can the pattern match the empty string? (Probed on a few texts: a heuristic, not a proof.)"""
    compiled = regex.compile(pattern)
    return any(
        m.start() == m.end()
        for probe in ("", "a", " ", "\n", "1", ".", "a b")
        for m in compiled.finditer(probe)
    )


class PreTokenizer:
    """A tokenizer.json normalizer + pre-tokenizer as a function: text -> chunks.

    ``reference(text)`` runs the steps one after another, the way HF does. ``split_regex`` is a
    single regex whose ``findall`` gives the same chunks (ignoring the normalizer), or None if we
    know none. ``as_pattern()`` is what ``BPETokenizer(pattern=...)`` should get.

    Supported: normalizers NFC/NFD/NFKC/NFKD, Lowercase, Replace, Prepend, Strip, Sequence;
    pre-tokenizers ByteLevel (last), Split, Digits, Whitespace, WhitespaceSplit, Sequence.
    """

    def __init__(self, normalizer: dict | None, pre_tokenizer: dict | None) -> None:
        self.normalizer_json, self.pre_tokenizer_json = normalizer, pre_tokenizer
        self.normalizers: list[tuple] = []
        self._add_normalizer(normalizer)
        self.steps: list[_Split | str] = []
        self._add_pre_tokenizer(pre_tokenizer)
        if not self.steps or not self._ends_with_byte_level:
            raise ValueError(
                f"pre-tokenizer {_type_name(pre_tokenizer)} does not end with ByteLevel: lucidlm reads "
                "byte-level BPE only (ByteLevel must be the last pre-tokenizer)"
            )
        self.split_regex = self._compose()
        fast = self.split_regex is not None and _PREFIX_SPACE not in self.steps
        self._fast = regex.compile(self.split_regex).findall if fast else None

    # -- building from JSON -----------------------------------------------------------------------

    def _add_normalizer(self, spec: dict | None) -> None:
        if spec is None:
            return
        kind = spec.get("type")
        if kind == "Sequence":
            for sub in spec.get("normalizers", []):
                self._add_normalizer(sub)
        elif kind in ("NFC", "NFD", "NFKC", "NFKD"):
            self.normalizers.append(("unicode", kind))
        elif kind == "Lowercase":
            self.normalizers.append(("lowercase",))
        elif kind == "Replace":
            self.normalizers.append(
                ("replace", regex.compile(_pattern_from_json(spec["pattern"])), spec["content"])
            )
        elif kind == "Prepend":
            self.normalizers.append(("prepend", spec["prepend"]))
        elif kind == "Strip":
            self.normalizers.append(("strip", bool(spec.get("strip_left")), bool(spec.get("strip_right"))))
        else:
            raise ValueError(
                f"normalizer {kind!r} is not supported; lucidlm applies NFC, NFD, NFKC, NFKD, Lowercase, "
                "Replace, Prepend, Strip and Sequence"
            )

    def _add_pre_tokenizer(self, spec: dict | None) -> None:
        if spec is None:
            return
        if self._ends_with_byte_level:
            raise ValueError(
                "ByteLevel must be the last pre-tokenizer: steps after it would see mapped bytes"
            )
        kind = spec.get("type")
        if kind == "Sequence":
            for sub in spec.get("pretokenizers", []):
                self._add_pre_tokenizer(sub)
        elif kind == "ByteLevel":
            if spec.get("add_prefix_space", False):
                self.steps.append(_PREFIX_SPACE)
            if spec.get("use_regex", True):
                self.steps.append(_Split(HF_BYTELEVEL_PATTERN))
            self.steps.append("byte_level")
        elif kind == "Split":
            behavior = BEHAVIORS.get(spec.get("behavior"))
            if behavior is None:
                raise ValueError(f"Split behavior {spec.get('behavior')!r} is not one of {sorted(BEHAVIORS)}")
            self.steps.append(_Split(_pattern_from_json(spec["pattern"]), behavior, bool(spec.get("invert"))))
        elif kind == "Digits":
            individual = bool(spec.get("individual_digits", False))
            self.steps.append(_Split(r"\p{N}" if individual else r"\p{N}+"))
        elif kind == "Whitespace":
            self.steps.append(_Split(r"\w+|[^\w\s]+", "removed", invert=True))
        elif kind == "WhitespaceSplit":
            self.steps.append(_Split(r"\s+", "removed"))
        else:
            raise ValueError(
                f"pre-tokenizer {kind!r} is not supported; lucidlm reads ByteLevel, Split, Digits, "
                "Whitespace, WhitespaceSplit and Sequence"
            )

    @property
    def _ends_with_byte_level(self) -> bool:
        return bool(self.steps) and self.steps[-1] == "byte_level"

    def _compose(self) -> str | None:
        splits = [s for s in self.steps if isinstance(s, _Split)]
        if not splits:
            return None  # one chunk per text: BPETokenizer's pattern=None
        if len(splits) == 1:
            return splits[0].as_findall_regex()
        if len(splits) == 2 and splits[1] == _Split(HF_BYTELEVEL_PATTERN):
            for individual, digits in ((True, r"\p{N}"), (False, r"\p{N}+")):
                if splits[0] == _Split(digits):
                    return DIGITS_THEN_BYTELEVEL[individual]
        return None

    def as_pattern(self) -> str | None | PreTokenizer:
        """One regex when that is all it takes, None when there is no split at all, else ``self``."""
        if self.normalizers or _PREFIX_SPACE in self.steps:
            return self
        if not any(isinstance(step, _Split) for step in self.steps):
            return None
        return self.split_regex if self.split_regex is not None else self

    # -- running ----------------------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        for step in self.normalizers:
            kind = step[0]
            if kind == "unicode":
                text = unicodedata.normalize(step[1], text)
            elif kind == "lowercase":  # HF lowercases char by char: no final-sigma rule
                text = "".join([c.lower() for c in text])
            elif kind == "replace":
                text = step[1].sub(lambda _m, content=step[2]: content, text)
            elif kind == "prepend":
                text = step[1] + text if text else text
            else:  # strip: HF strips Unicode White_Space, which is what regex's \s matches
                text = regex.sub(r"^\s+", "", text) if step[1] else text
                text = regex.sub(r"\s+$", "", text) if step[2] else text
        return text

    def reference(self, text: str) -> list[str]:
        """Normalize, then apply each step to every piece of the previous one, as HF does."""
        text = self.normalize(text)
        pieces = [text] if text else []
        for step in self.steps:
            if step == _PREFIX_SPACE:
                pieces = [p if p.startswith(" ") else " " + p for p in pieces]
            elif isinstance(step, _Split):
                pieces = [q for p in pieces for q in step.split(p)]
        return pieces

    def __call__(self, text: str) -> list[str]:
        if self._fast is not None:
            return self._fast(self.normalize(text))
        return self.reference(text)

    def __repr__(self) -> str:
        return f"PreTokenizer({_type_name(self.pre_tokenizer_json)}, normalizer={_type_name(self.normalizer_json)})"

    def __getstate__(self) -> dict:
        return {"normalizer": self.normalizer_json, "pre_tokenizer": self.pre_tokenizer_json}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["normalizer"], state["pre_tokenizer"])


def _pattern_from_json(spec: dict) -> str:
    """A Split/Replace ``pattern``: {"Regex": onig regex} or {"String": literal}."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"pattern {spec!r} is neither {{'Regex': ...}} nor {{'String': ...}}")
    if "String" in spec:
        return regex.escape(spec["String"])
    if "Regex" in spec:
        return onig_to_python(spec["Regex"])
    raise ValueError(f"pattern {spec!r} is neither {{'Regex': ...}} nor {{'String': ...}}")


def _type_name(spec: dict | None) -> str:
    if spec is None:
        return "None"
    if spec.get("type") == "Sequence":
        subs = spec.get("pretokenizers", spec.get("normalizers", []))
        return "Sequence[" + ", ".join(_type_name(s) for s in subs) + "]"
    return str(spec.get("type"))


# ----------------------------------------------------------------------------------------------
# 4. A BPETokenizer that remembers what the model's files say


class PretrainedBPETokenizer(BPETokenizer):
    """A ``BPETokenizer`` read from a model's files (tokenizer.json, GGUF), plus their metadata.

    ``encode`` never adds BOS/EOS (like HF's ``add_special_tokens=False`` and llama.cpp's
    ``add_special=false``); ``add_special_ids(ids)`` adds what the files ask for (``add_bos``,
    ``add_eos``). ``eos_id`` is the id that ends a reply; ``chat_template`` is the Jinja template
    the model was trained with (GGUF ``tokenizer.chat_template``, or ``tokenizer_config.json``
    beside a tokenizer.json). ``metadata`` holds the rest: for tokenizer.json the original
    sections (``metadata["hf"]``), for GGUF the ``tokenizer.*`` keys (``metadata["gguf"]``).
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: Sequence[tuple[int, int]] | None = None,
        *,
        bos_id: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        unk_id: int | None = None,
        add_bos: bool = False,
        add_eos: bool = False,
        chat_template: str | None = None,
        metadata: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__(vocab, merges, **kwargs)
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = bos_id, eos_id, pad_id, unk_id
        self.add_bos, self.add_eos = bool(add_bos), bool(add_eos)
        self.chat_template = chat_template
        self.metadata = dict(metadata or {})
        for role, token_id in (("bos", bos_id), ("eos", eos_id), ("pad", pad_id), ("unk", unk_id)):
            if token_id is not None and token_id not in self._decoder:
                raise ValueError(f"{role} token id {token_id} is not a token of {self.name}")
        for role, wanted, token_id in (("bos", add_bos, bos_id), ("eos", add_eos, eos_id)):
            if wanted and token_id is None:
                raise ValueError(f"add_{role}=True needs a {role}_id")

    def add_special_ids(self, ids: Sequence[int]) -> list[int]:
        """``ids`` with BOS/EOS added as the model expects: ``[bos] + ids`` when ``add_bos``, etc."""
        return [self.bos_id] * self.add_bos + list(ids) + [self.eos_id] * self.add_eos

    def __repr__(self) -> str:
        return (
            f"PretrainedBPETokenizer(name={self.name!r}, vocab_size={self.vocab_size}, mode={self.mode!r}, "
            f"bos_id={self.bos_id}, eos_id={self.eos_id}, add_bos={self.add_bos})"
        )


# ----------------------------------------------------------------------------------------------
# 5. Reading tokenizer.json


def from_tokenizer_json(source: str | os.PathLike | dict) -> PretrainedBPETokenizer:
    """A byte-level BPE tokenizer from a Hugging Face ``tokenizer.json`` (a path, or the parsed dict).

    Added tokens (special or not) become ``special_tokens``: HF cuts every added token out of the
    text before BPE, which lucidlm does for ``encode(text, allowed_special="all")``. Added tokens
    also present in the model vocab are removed from it (lucidlm keeps special ids apart). A
    ``tokenizer_config.json`` beside the file supplies ``chat_template`` and the eos/bos tokens.
    """
    data, label, folder = _read_json(source)
    model = data.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"{label} has no 'model' section; is it a Hugging Face tokenizer.json?")
    model_type = model.get("type", "BPE" if "merges" in model else None)
    if model_type != "BPE":
        raise ValueError(
            f"{label} holds a {model_type!r} model; lucidlm reads byte-level 'BPE' from tokenizer.json "
            "(for 'WordPiece' use lucidlm.tokenizers.wordpiece.WordPieceTokenizer)"
        )
    try:
        _check_bpe_options(model)
        pre = PreTokenizer(data.get("normalizer"), data.get("pre_tokenizer"))
        decoder = data.get("decoder")
        if decoder is not None and decoder.get("type") != "ByteLevel":
            raise ValueError(
                f"decoder {_type_name(decoder)} is not supported; byte-level BPE decodes with ByteLevel"
            )
        added, non_special = _added_tokens(data.get("added_tokens") or [], pre)
        vocab, merges = _vocab_and_merges(model, set(added.values()))
        pieces = set(vocab.values())
        missing = [b for b in range(256) if bytes([b]) not in pieces]
        if missing and model.get("unk_token") is not None:
            raise ValueError(
                f"the vocab lacks {len(missing)} single-byte tokens (e.g. byte {missing[0]}) and HF would "
                f"encode them as unk_token {model['unk_token']!r}, which lucidlm does not support"
            )
        prefix, suffix = _post_processor_ids(data.get("post_processor"))
        config = _read_config(folder, added, vocab)
        bos_id = prefix[0] if len(prefix) == 1 else config.get("bos_id")
        eos_id = config.get("eos_id", suffix[0] if len(suffix) == 1 else None)
        metadata = {
            "format": "tokenizer.json",
            "hf": {k: data.get(k) for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder")},
            "non_special_added_tokens": sorted(non_special),
        }
        return PretrainedBPETokenizer(
            vocab,
            merges,
            pattern=pre.as_pattern(),
            special_tokens=added,
            ignore_merges=bool(model.get("ignore_merges", False)),
            allow_missing_bytes=True,  # without unk_token HF drops bytes that have no token
            name=folder.name if folder is not None else "tokenizer.json",
            bos_id=bos_id,
            eos_id=eos_id,
            pad_id=config.get("pad_id"),
            unk_id=config.get("unk_id"),
            add_bos=len(prefix) == 1 and prefix[0] == bos_id,
            add_eos=len(suffix) == 1 and suffix[0] == eos_id,
            chat_template=config.get("chat_template"),
            metadata=metadata,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{label} is not a valid tokenizer.json ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None


def _read_json(source: str | os.PathLike | dict) -> tuple[dict, str, Path | None]:
    if isinstance(source, dict):
        return source, "<tokenizer.json dict>", None
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON (truncated or corrupt?): {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds JSON {type(data).__name__}, not a tokenizer.json object")
    return data, str(path), path.parent


def _check_bpe_options(model: dict) -> None:
    if model.get("dropout") not in (None, 0, 0.0):
        raise ValueError("BPE dropout is random; lucidlm encodes deterministically (set dropout to null)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ValueError(f"BPE {key}={model[key]!r} is not supported in byte-level BPE")
    if model.get("byte_fallback"):
        raise ValueError(
            "byte_fallback (SentencePiece-style BPE) is not supported; lucidlm reads byte-level BPE"
        )


def _added_tokens(entries: list[dict], pre: PreTokenizer) -> tuple[dict[str, int], set[str]]:
    added, non_special = {}, set()
    for entry in entries:
        content, token_id = entry["content"], int(entry["id"])
        for flag in ("lstrip", "rstrip", "single_word"):
            if entry.get(flag):
                raise ValueError(f"added token {content!r} has {flag}=true, which lucidlm does not support")
        if entry.get("normalized") and pre.normalizers and pre.normalize(content) != content:
            raise ValueError(f"added token {content!r} is matched after normalization, which changes it")
        added[content] = token_id
        if not entry.get("special", False):
            non_special.add(content)
    return added, non_special


def _vocab_and_merges(model: dict, added_ids: set[int]) -> tuple[dict[int, bytes], list[tuple[int, int]]]:
    strings: dict[str, int] = model["vocab"]
    vocab: dict[int, bytes] = {}
    for token, token_id in strings.items():
        if token_id in added_ids:
            continue  # a special token that HF also lists in the model vocab
        if token_id in vocab:
            raise ValueError(f"vocab gives id {token_id} to two tokens")
        vocab[int(token_id)] = token_to_bytes(token)
    merges = []
    for rank, merge in enumerate(model.get("merges", [])):
        parts = merge.split(" ") if isinstance(merge, str) else merge
        if len(parts) != 2:
            raise ValueError(f"merge #{rank} {merge!r} is not two tokens ('a b' or [a, b])")
        a, b = parts
        if a not in strings or b not in strings or a + b not in strings:
            raise ValueError(f"merge #{rank} {merge!r} names a token that is not in the vocab")
        ids = (strings[a], strings[b], strings[a + b])
        if not added_ids.intersection(ids):  # merges into added tokens never run: HF cuts them out first
            merges.append(ids[:2])
    return vocab, merges


def _post_processor_ids(spec: dict | None) -> tuple[list[int], list[int]]:
    """The ids a post-processor puts before and after one sequence ([], [] if none or unknown)."""
    if spec is None:
        return [], []
    kind = spec.get("type")
    if kind == "Sequence":
        prefix, suffix = [], []
        for sub in spec.get("processors", []):
            p, s = _post_processor_ids(sub)
            prefix, suffix = p + prefix, suffix + s
        return prefix, suffix
    if kind == "TemplateProcessing":
        single = spec["single"]
        where = next((i for i, item in enumerate(single) if "Sequence" in item), None)
        if where is None:
            return [], []

        def ids(items: list[dict]) -> list[int]:
            return [i for item in items for i in spec["special_tokens"][item["SpecialToken"]["id"]]["ids"]]

        return ids(single[:where]), ids(single[where + 1 :])
    if kind in ("RobertaProcessing", "BertProcessing"):
        return [int(spec["cls"][1])], [int(spec["sep"][1])]
    return [], []  # ByteLevel (offsets only) and processors we do not interpret


def _read_config(folder: Path | None, added: dict[str, int], vocab: dict[int, bytes]) -> dict:
    """chat_template and special-token ids from tokenizer_config.json beside tokenizer.json, if any."""
    path = folder / "tokenizer_config.json" if folder is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    encoder = {piece: i for i, piece in vocab.items()}
    out: dict = {}
    for role in ("bos", "eos", "pad", "unk"):
        token = config.get(f"{role}_token")
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str):
            token_id = added.get(token, encoder.get(token.encode("utf-8")))
            if token_id is not None:
                out[f"{role}_id"] = token_id
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if isinstance(template, str):
        out["chat_template"] = template
    return out


# ----------------------------------------------------------------------------------------------
# 6. Writing tokenizer.json


def merges_from_ranks(vocab: dict[int, bytes]) -> list[tuple[int, int]]:
    """An HF merge list that reproduces tiktoken's ``ranks`` rule ("a+b may merge if it is a
    token; lowest rank first"): for every token, every split into two tokens is a merge, ordered by
    the token's rank (then by the ranks of the halves, as ``transformers`` does).

    Exact together with ``ignore_merges`` (a chunk that is a token is returned whole), except for
    one rare tie: two *different* adjacent pairs that make the same token. tiktoken merges the
    leftmost; HF merges the one listed first.

    >>> v = {0: b"a", 1: b"b", 2: b"ab", 3: b"bab"}
    >>> merges_from_ranks(v)
    [(0, 1), (1, 2)]
    """
    encoder = {piece: i for i, piece in vocab.items()}
    merges = []
    for _, piece in sorted(vocab.items()):
        merges += sorted(
            (encoder[piece[:k]], encoder[piece[k:]])
            for k in range(1, len(piece))
            if piece[:k] in encoder and piece[k:] in encoder
        )
    return merges


def to_tokenizer_json(tokenizer: BPETokenizer, path: str | os.PathLike | None = None) -> dict:
    """Describe ``tokenizer`` as a Hugging Face tokenizer.json (returned; also written to ``path``).

    ``merges`` mode is written as it is. ``ranks`` mode (tiktoken files) becomes
    ``merges_from_ranks`` plus ``ignore_merges``: see there for the one rare tie where HF and
    tiktoken can differ. The split regex becomes ``Split(Regex(p)) + ByteLevel(use_regex=false)``
    with ``p`` in Oniguruma's spelling; a tokenizer read from a tokenizer.json or GGUF keeps its
    original normalizer, pre-tokenizer and post-processor.
    """
    if tokenizer.merges is None:
        merges, ignore_merges = merges_from_ranks(tokenizer.vocab), True
    else:
        merges, ignore_merges = tokenizer.merges, tokenizer.ignore_merges
    metadata = getattr(tokenizer, "metadata", {})
    sections = dict(metadata.get("hf") or {})
    if not sections:
        normalizer, pre_tokenizer = _pre_tokenizer_json(tokenizer.pattern)
        sections = {
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": _template_json(tokenizer),
        }
    non_special = set(metadata.get("non_special_added_tokens", ()))
    tokens = tokenizer.vocab
    vocab = {bytes_to_token(piece): i for i, piece in sorted(tokens.items())}
    # HF keeps an added token's id only if the token is also in the model vocab (otherwise it
    # renumbers it after the vocab), so list the special tokens there too, as HF's own files do.
    for text, i in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1]):
        vocab.setdefault(text, i)
    data = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": text,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": text not in non_special,
            }
            for text, i in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1])
        ],
        "normalizer": sections.get("normalizer"),
        "pre_tokenizer": sections.get("pre_tokenizer"),
        "post_processor": sections.get("post_processor"),
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": ignore_merges,
            "vocab": vocab,
            # "a b" strings: byte-level tokens never contain a space, and every HF version reads them
            "merges": [f"{bytes_to_token(tokens[a])} {bytes_to_token(tokens[b])}" for a, b in merges],
        },
    }
    if path is not None:
        _atomic_write_text(Path(path), json.dumps(data, ensure_ascii=False, indent=2))
    return data


def _pre_tokenizer_json(pattern) -> tuple[dict | None, dict]:
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    if isinstance(pattern, PreTokenizer):
        return pattern.normalizer_json, pattern.pre_tokenizer_json
    if callable(pattern):
        raise ValueError(f"cannot describe the pre-tokenizer {pattern!r} in tokenizer.json")
    if pattern is None:
        return None, byte_level
    if pattern == HF_BYTELEVEL_PATTERN:
        return None, {**byte_level, "use_regex": True}
    for individual, composed in DIGITS_THEN_BYTELEVEL.items():
        if pattern == composed:
            digits = {"type": "Digits", "individual_digits": individual}
            return None, {"type": "Sequence", "pretokenizers": [digits, {**byte_level, "use_regex": True}]}
    # BPETokenizer keeps only what findall matches; for a regex that matches everywhere that is
    # HF's usual Isolated split, otherwise HF's Removed split of the *inverted* regex.
    behavior, invert = ("Isolated", False) if pattern in COVERING_PATTERNS else ("Removed", True)
    split = {
        "type": "Split",
        "pattern": {"Regex": python_to_onig(pattern)},
        "behavior": behavior,
        "invert": invert,
    }
    return None, {"type": "Sequence", "pretokenizers": [split, byte_level]}


def _template_json(tokenizer: BPETokenizer) -> dict | None:
    """TemplateProcessing for a PretrainedBPETokenizer that adds BOS/EOS (e.g. read from GGUF)."""
    add_bos, add_eos = getattr(tokenizer, "add_bos", False), getattr(tokenizer, "add_eos", False)
    if not (add_bos or add_eos):
        return None
    single, special = [], {}
    for wanted, token_id in ((add_bos, tokenizer.bos_id), (None, None), (add_eos, tokenizer.eos_id)):
        if token_id is None and wanted is None:
            single.append({"Sequence": {"id": "A", "type_id": 0}})
        elif wanted:
            text = tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")
            single.append({"SpecialToken": {"id": text, "type_id": 0}})
            special[text] = {"id": text, "ids": [token_id], "tokens": [text]}
    pair = single + [{"Sequence": {"id": "B", "type_id": 1}}]
    return {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special}
