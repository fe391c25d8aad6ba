"""Oniguruma (Hugging Face ``tokenizers``, Ruby syntax) <-> Python ``regex``: one pattern, two dialects.

HF's ``tokenizers`` is written in Rust and compiles the regexes of a ``tokenizer.json`` (Split and
Replace patterns) with Oniguruma, in its Ruby syntax; lucidlm's ``BPETokenizer`` runs Python's
``regex`` module. Most of a tokenizer's regex means the same in both, but a few constructs differ
in ways that matter: ``$`` and ``^`` are line anchors in Oniguruma (in Python they anchor the
whole text), and ``\\p{N}{1,3}+`` means ``(\\p{N}{1,3})+`` rather than a possessive repeat. Copying a pattern
across unchanged would silently split text differently, so ``onig_to_python`` (reading) and
``python_to_onig`` (writing) rewrite exactly those constructs; ``_translate`` lists them all.

Unicode versions differ too: the ``regex`` module knows letters and digits added in Unicode 16-17
that HF's Oniguruma does not (about 17k code points, all unassigned in Unicode 14), so text using
those newest characters can split differently than in HF.
"""

from __future__ import annotations

import unicodedata

import regex

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
