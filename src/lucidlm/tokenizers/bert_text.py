"""BERT's character classes and the Unicode tables behind them, as Hugging Face ``tokenizers`` has them.

The BasicTokenizer steps of WordPiece (see ``wordpiece.py``) ask of each character: is it whitespace,
a control character, punctuation, a CJK ideograph? HF's answers come from older Unicode tables than
Python's; the end of this file lists the code points that differ, so that our ids match HF's.
"""

from __future__ import annotations

import unicodedata

import regex

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
