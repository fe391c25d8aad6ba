"""``lucidlm tokenizer show`` draws each token as one piece, with tiktoken as the reference for where
the token boundaries are; and the ``.vocab`` listing has one readable line per token."""

from __future__ import annotations

import re
import unicodedata

import pytest

from lucidlm.cli import main

tiktoken = pytest.importorskip("tiktoken")

ANSI_PIECE = re.compile(r"\x1b\[30;48;5;\d+m(.*?)\x1b\[0m", re.S)


def tiktoken_encoding(name: str, monkeypatch):
    """tiktoken's own Encoding for ``name`` (its pattern and special tokens, from tiktoken_ext), reading
    the rank file lucidlm cached instead of downloading it."""
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext import openai_public

    from lucidlm.assets import asset_path

    path = str(asset_path(name))
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: load_tiktoken_bpe(path))
    return tiktoken.Encoding(**getattr(openai_public, name)())


def drawn_bytes(piece: str) -> bytes:
    """Undo the drawing of one token: · is a space, ⟨f0 9f⟩ are bytes in hex, the rest is text."""
    out = b""
    for m in re.finditer(r"⟨([0-9a-f]{2}(?: [0-9a-f]{2})*)⟩|(.)", piece, re.S):
        out += bytes.fromhex(m[1]) if m[1] else (" " if m[2] == "·" else m[2]).encode("utf-8")
    return out


def show(args: list[str], capsys) -> list[str]:
    assert main(["tokenizer", "show", *args]) == 0
    return capsys.readouterr().out.split("\n")


@pytest.mark.parametrize(
    "name, text, cut",
    [
        # o200k_base token 93643 is b" \xf0\x9f\xa4": a space and the first 3 of the 4 bytes of 🤔 (f0 9f a4 94)
        ("o200k_base", "Let me think 🤔🤔 about it.", "🤔 = f0 9f a4|94"),
        ("cl100k_base", "a 🌅 b, 1599年 «Roméo» 🤔", "🌅 = f0 9f|8c|85, 🤔 = f0 9f|a4|94"),
    ],
)
def test_show_draws_each_token_as_one_piece(name, text, cut, capsys, monkeypatch):
    reference = tiktoken_encoding(name, monkeypatch)
    ids = reference.encode(text)
    if name == "o200k_base":
        assert 93643 in ids and reference.decode_single_token_bytes(93643) == b" \xf0\x9f\xa4"
    expected = [reference.decode_single_token_bytes(i) for i in ids]

    lines = show(["-t", name, "--color", "never", text], capsys)
    pieces = lines[0].split("|")
    assert len(pieces) == len(ids)
    assert [drawn_bytes(p) for p in pieces] == expected
    assert lines[1] == "⟨ ⟩ holds bytes of a character cut across tokens: " + cut
    assert "\ufffd" not in "\n".join(lines)

    # In color, the same pieces, one color each.
    colored = show(["-t", name, "--color", "always", text], capsys)
    assert ANSI_PIECE.findall(colored[0]) == pieces
    assert ANSI_PIECE.sub(r"\1", colored[1]) == lines[1]


def test_show_ids_lists_tokens_as_drawn(capsys, monkeypatch):
    reference = tiktoken_encoding("o200k_base", monkeypatch)
    lines = show(["-t", "o200k_base", "--color", "never", "--ids", "I 🤔"], capsys)
    listed = [line.split(None, 1) for line in lines if re.match(r"^ +\d+  ", line)]
    assert [int(i) for i, _ in listed] == reference.encode("I 🤔")
    assert [label for _, label in listed] == lines[0].split("|") == ["I", "·⟨f0 9f a4⟩", "⟨94⟩"]


def test_vocab_listing_has_one_readable_line_per_token(tmp_path):
    from lucidlm.tokenizers import train_bpe

    tok = train_bpe("the cat sat on the mat, the end", 262, special_tokens={"<|endoftext|>": None})
    tok.save(tmp_path / "tok.json")
    listing = (tmp_path / "tok.vocab").read_text(encoding="utf-8")
    lines = listing.splitlines()  # also splits at \x0b \x0c \x1c-\x1e \x85 \u2028 \u2029
    assert len(lines) == 1 + 262  # a header, then one line per token
    for i in range(9):  # bytes 0x00-0x08, written by hand
        assert lines[1 + i] == f"{i}\t\\x{i:02x}"
    assert lines[1 + 0x0B] == "11\t\\x0b" and lines[1 + 0x1F] == "31\t\\x1f" and lines[1 + 0x7F] == "127\t\\x7f"
    assert lines[1 + 0x80] == "128\t\\x80"  # not UTF-8 on its own
    assert lines[1 + 0xC3] == "195\t\\xc3"
    assert all(ch == "\t" or unicodedata.category(ch) != "Cc" for ch in listing.replace("\n", ""))
