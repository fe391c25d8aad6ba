"""Hugging Face pre-tokenizers (and normalizers): HF's sequence of splits, and one regex that does the same.

The pre-tokenizer is the subtle part of a ``tokenizer.json``. ``BPETokenizer`` splits text with
one regex, but HF applies a *sequence* of splits, each inside the pieces of the one before: SmolLM2
first cuts every digit out (``Digits``), then runs the GPT-2 regex inside each remaining piece.
``PreTokenizer`` is that sequence, written the way HF runs it (the reference). For the
configurations real models use we also know one regex that gives the same chunks (the fast path,
and what ``BPETokenizer`` stores); tests check the two agree. When no single regex exists (a
normalizer, ``add_prefix_space``, or an unusual sequence) the ``PreTokenizer`` itself is the
tokenizer's splitter.

Regexes in tokenizer.json are Oniguruma's dialect; ``hf_regex.onig_to_python`` translates them.
"""

from __future__ import annotations

import unicodedata

import regex

from lucidlm.tokenizers.hf_regex import onig_to_python
from lucidlm.tokenizers.patterns import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN

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
