"""The split patterns, and the Unicode-version correction of ``patterns.Splitter``."""

from __future__ import annotations

import pytest
import regex

from lucidlm.tokenizers import patterns
from lucidlm.tokenizers.patterns import CL100K_PATTERN, GPT2_PATTERN, Splitter


def test_splitter_equals_findall_when_tables_agree():
    text = "Hello world's 12345  \n\n done"
    assert Splitter(GPT2_PATTERN)(text) == regex.findall(GPT2_PATTERN, text)
    assert Splitter(CL100K_PATTERN)(text) == regex.findall(CL100K_PATTERN, text)


def test_correction_path_removes_code_points_a_newer_unicode_added(monkeypatch):
    # Pretend the installed regex module counts 'é' as a letter and '٣' as a digit that Unicode 16.0 lacks,
    # the way a newer regex counts newly assigned characters: the Splitter must take them out.
    fake = {"L": (frozenset({ord("é")}), frozenset()), "N": (frozenset({ord("٣")}), frozenset())}
    monkeypatch.setattr(patterns, "unicode_drift", lambda prop: fake.get(prop, (frozenset(), frozenset())))
    split = Splitter(CL100K_PATTERN, use_kernel=False)
    assert split("café au lait") == ["caf", "é", " au", " lait"]  # 'é' no longer joins the word
    assert split("x ١٣٥") == ["x", " ", "١", "٣", "٥"]  # Arabic-Indic 3 is no digit: digits split around it
    assert regex.findall(CL100K_PATTERN, "x ١٣٥") == ["x", " ", "١٣٥"]
    assert split("plain ascii text") == regex.findall(CL100K_PATTERN, "plain ascii text")  # fast path


def test_correction_path_adds_code_points_an_older_unicode_lacked(monkeypatch):
    # And the reverse: a regex module older than Unicode 16.0 lacks letters tiktoken knows.
    fake = {"L": (frozenset(), frozenset({ord("€")}))}
    monkeypatch.setattr(patterns, "unicode_drift", lambda prop: fake.get(prop, (frozenset(), frozenset())))
    assert Splitter(CL100K_PATTERN, use_kernel=False)("x €uro") == ["x", " €uro"]


def test_ascii_text_never_looks_up_the_drift(monkeypatch):
    """Finding the drift scans every code point (most of a tokenizer's load): ASCII text skips it."""
    monkeypatch.setattr(patterns, "unicode_drift", lambda prop: pytest.fail("drift looked up for ASCII text"))
    text = "The Eiffel Tower, 1889"
    assert Splitter(CL100K_PATTERN, use_kernel=False)(text) == regex.findall(CL100K_PATTERN, text)
