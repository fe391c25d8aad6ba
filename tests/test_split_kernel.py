"""The C splitter (``_split_kernel.c``) against its reference, ``regex.findall`` with the preset
patterns under Unicode 16.0 (``Splitter.regex_split``), and the fallback when it is missing."""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidlm.tokenizers import patterns
from lucidlm.tokenizers.patterns import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN, Splitter

kernel = pytest.importorskip("lucidlm.tokenizers._split_kernel", reason="C splitter not built")

PRESETS = {"gpt2": GPT2_PATTERN, "cl100k": CL100K_PATTERN, "o200k": O200K_PATTERN}


@pytest.fixture(scope="module")
def references() -> dict[str, Splitter]:
    return {name: Splitter(pattern, use_kernel=False) for name, pattern in PRESETS.items()}


def check(references: dict[str, Splitter], text: str) -> None:
    for name, reference in references.items():
        got = kernel.split(text, name)
        want = reference.regex_split(text)
        if got != want:
            k = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise AssertionError(f"{name}: chunk {k} differs: C {got[k - 2 : k + 3]!r}, regex {want[k - 2 : k + 3]!r}")
        assert kernel.count(text, name) == len(want)  # the benchmark's floor cuts the same chunks


# -- hand-checked examples (each also checked against regex, so a wrong expectation shows up) --------

EXAMPLES = [
    ("gpt2", "I'm  here", ["I", "'m", " ", " here"]),  # \s+(?!\S) leaves one space for " here"
    ("gpt2", "it'S 123abc", ["it", "'", "S", " 123", "abc"]),  # GPT-2 contractions are case-sensitive
    ("gpt2", "x  \n", ["x", "  \n"]),  # \s++$
    ("cl100k", "it'S 12345 ok", ["it", "'S", " ", "123", "45", " ok"]),  # (?i) contractions, digits by 3
    ("cl100k", "a'ſ", ["a", "'ſ"]),  # U+017F long s folds to s
    ("cl100k", "x  \n\n  y", ["x", "  \n\n", " ", " y"]),  # \s*[\r\n] ends at the last newline
    ("cl100k", "_hello!!\n\nok", ["_hello", "!!\n\n", "ok"]),  # punctuation keeps its newlines
    ("o200k", "camelCase HTTPServer's", ["camel", "Case", " HTTPServer's"]),
    ("o200k", "don'T!\n/x", ["don'T", "!\n/", "x"]),  # o200k lets '/' follow the newlines
    ("o200k", "x \n \t", ["x", " \n", " \t"]),  # no \s++$ alternative in o200k
]


@pytest.mark.parametrize(("name", "text", "chunks"), EXAMPLES)
def test_examples(name, text, chunks):
    assert regex.findall(PRESETS[name], text) == chunks
    assert kernel.split(text, name) == chunks


def test_empty_text_and_unknown_pattern():
    assert kernel.split("", "o200k") == []
    with pytest.raises(ValueError, match="gpt2"):
        kernel.split("text", "llama3")


# -- random text made of the characters where splitting is subtle ---------------------------------

TRICKY = [
    " ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2003", "\u2028",
    "\u202f", "\u3000", "\x1c",  # \x1c: str.isspace() says yes, White_Space says no
    "'", "'s", "'S", "'ſ", "'t", "'T", "'ll", "'LL", "'lL", "'ve", "'VE", "'re", "'Re", "'m", "'d", "'D",
    "s", "t", "l", "v", "e", "r", "m", "d", "a", "Z", "Q", "É", "é", "ß", "ǅ", "ʰ", "中", "ー", "𝐀", "𐐀", "𐐨",
    "0", "7", "٣", "½", "Ⅻ", "𝟘",  # digits, a fraction, a Roman numeral letter-number, astral digit
    "\u0301", "\u0903", "\u20dd", "\U000e0100",  # marks: Mn, Mc, Me, astral Mn
    "/", "!", ".", "_", "-", "\x00", "😀", "\u200d", "\ufe0f",
]
tricky_text = st.lists(
    st.one_of(st.sampled_from(TRICKY), st.characters(blacklist_categories=("Cs",))), max_size=40
).map("".join)


@settings(max_examples=1500, deadline=None)
@given(tricky_text)
def test_random_text_matches_regex(references, text):
    check(references, text)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_random_unicode_matches_regex(references, text):
    check(references, text)


def test_lone_surrogates_and_every_string_kind(references):
    # Lone surrogates are neither letters nor spaces ("other"); texts of 1, 2 and 4 bytes per char.
    for text in ["ab\ud800cd 's\udfff\n", "latin-1 only: café  \xa0x", "BMP 中文 's", "astral 𝐀𝐁c 😀 's"]:
        check(references, text)


def test_mixed_corpus_matches_regex(references):
    from lucidlm.tokenizers.corpus import build_mixed_corpus

    check(references, build_mixed_corpus(1_500_000, seed=3))


# -- the class table and every code point ---------------------------------------------------------


def test_class_table_matches_unicode16_and_white_space():
    from lucidlm.tokenizers.unicode16 import CATEGORIES

    def code_points(prop: str) -> set[int]:
        out: set[int] = set()
        for item in "".join(CATEGORIES[prop]).split():
            a, b = (int(x, 16) for x in item.split("-"))
            out.update(range(a, b + 1))
        return out

    letters, numbers, marks = code_points("L"), code_points("N"), code_points("M")
    upperish = set().union(*(code_points(p) for p in ["Lu", "Lt", "Lm", "Lo", "M"]))
    lowerish = set().union(*(code_points(p) for p in ["Ll", "Lm", "Lo", "M"]))
    # White_Space is the same in every Unicode version since 6.0, so the installed regex is a fine judge.
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    spaces = {ord(c) for c in regex.findall(r"\s", every)}
    want_bits = {
        kernel.LETTER: letters, kernel.NUMBER: numbers, kernel.MARK: marks, kernel.UPPERISH: upperish,
        kernel.LOWERISH: lowerish, kernel.SPACE: spaces, kernel.OTHER: set(range(0x110000)) - spaces - letters - numbers,
    }
    bits = [kernel.class_bits(c) for c in range(0x110000)]
    for bit, members in want_bits.items():
        have = {c for c, b in enumerate(bits) if b & bit}
        assert have == members, f"bit {bit}: {sorted(have ^ members)[:5]}"


def contexts(c: str) -> str:
    """One code point among neighbours that exercise every class bit: joins a word or not, a
    number, a case change, a prefix, a contraction, punctuation, newlines, a slash."""
    return f"x{c}x {c}1 A{c}a\n{c}{c}'S !{c}\n/{c}  "


def every_code_point_text(stride: int) -> str:
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and (c < 0x800 or c % stride == 0)]
    return "".join(contexts(chr(c)) for c in cps)


def test_code_points_in_contexts(references):
    check(references, every_code_point_text(stride=97))


@pytest.mark.slow
def test_every_code_point_in_contexts(references):
    check(references, every_code_point_text(stride=1))


# -- the fallback ---------------------------------------------------------------------------------


def test_splitter_uses_the_kernel_for_presets_only():
    assert Splitter(O200K_PATTERN).use_kernel
    assert not Splitter(r"\w+|\s+").use_kernel
    with pytest.raises(ValueError, match="preset"):
        Splitter(r"\w+", use_kernel=True)


@pytest.mark.parametrize("how", ["env", "env-all", "missing"])
def test_fallback_to_regex_gives_the_same_ids(monkeypatch, how):
    from lucidlm.tokenizers import load_tokenizer

    text = "Hello  world's 12345!\n\n  CamelCase ſ 中文 😀  "
    fast = load_tokenizer("o200k_base")
    assert fast._split.use_kernel
    chunks, ids = fast._split(text), fast.encode(text)
    if how == "env":
        monkeypatch.setenv("LUCIDLM_NO_SPLIT_KERNEL", "1")
    elif how == "env-all":
        monkeypatch.setenv("LUCIDLM_NO_KERNEL", "1")
    else:
        monkeypatch.setattr(patterns, "_split_kernel", None)  # as if the extension were not built
    slow = load_tokenizer("o200k_base")
    assert not slow._split.use_kernel
    assert slow._split(text) == chunks
    assert slow.encode(text) == ids
    with pytest.raises(ValueError, match="not built or is turned off"):
        Splitter(CL100K_PATTERN, use_kernel=True)
