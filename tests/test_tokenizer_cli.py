"""The command line, as a user runs it: ``lucidlm tokenizer ...`` and ``lucidlm demo``."""

from __future__ import annotations

import json

import pytest

from lucidlm.cli import main
from lucidlm.tokenizers import load_tokenizer


@pytest.fixture()
def corpus_file(tmp_path):
    from lucidlm.tokenizers.corpus import tiny_shakespeare

    path = tmp_path / "shakespeare.txt"
    path.write_text(tiny_shakespeare()[:60_000], encoding="utf-8")
    return path


def test_train_encode_decode_round_trip(tmp_path, corpus_file, capsys):
    out = tmp_path / "tok.json"
    assert main(["tokenizer", "train", str(corpus_file), "--vocab-size", "400", "--special", "<|endoftext|>",
                 "-o", str(out), "--quiet"]) == 0
    assert "trained 143 merges (vocab 400)" in capsys.readouterr().out
    tok = load_tokenizer(out)
    assert main(["tokenizer", "encode", "-t", str(out), "--json", "To be or not<|endoftext|>"]) == 0
    ids = json.loads(capsys.readouterr().out)
    assert ids == tok.encode("To be or not<|endoftext|>", allowed_special="all")
    assert ids[-1] == 399
    assert main(["tokenizer", "decode", "-t", str(out), *map(str, ids)]) == 0
    assert capsys.readouterr().out == "To be or not<|endoftext|>\n"


def test_encode_matches_tiktoken_ids(capsys):
    assert main(["tokenizer", "encode", "-t", "cl100k_base", "Hello there"]) == 0
    assert capsys.readouterr().out.split() == ["9906", "1070"]  # tiktoken's ids for cl100k_base


def test_show_prints_boundaries_and_cut_characters(capsys):
    assert main(["tokenizer", "show", "-t", "cl100k_base", "--color", "never", "a 🌅 b"]) == 0
    out = capsys.readouterr().out
    # the sunrise emoji is 4 bytes cut into 3 tokens (tiktoken: 11410, 234, 227): each token one piece,
    # then the character named once with its bytes per token
    assert out.startswith("a|·⟨f0 9f⟩|⟨8c⟩|⟨85⟩|·b\n")
    assert "🌅 = f0 9f|8c|85" in out
    assert "\ufffd" not in out
    assert main(["tokenizer", "show", "-t", "cl100k_base", "--color", "always", "hi there"]) == 0
    assert "\x1b[" in capsys.readouterr().out


def test_stats_lists_compression_and_top_tokens(corpus_file, capsys):
    assert main(["tokenizer", "stats", "-t", "cl100k_base,o200k_base", "--file", str(corpus_file), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("bytes/token") == 2 and "most frequent tokens" in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["tokenizer", "encode", "-t", str(tmp_path / "missing.json"), "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lucidlm: error:") and "Traceback" not in err
    assert main(["tokenizer", "decode", "-t", "cl100k_base", "1", "99999999"]) == 2
    assert "unknown token id 99999999" in capsys.readouterr().err
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("olé".encode("latin-1"))
    assert main(["tokenizer", "train", str(bad), "-o", str(tmp_path / "t.json"), "--quiet", "--vocab-size", "300"]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["tokenizer", "train", str(bad), "-o", str(tmp_path / "t.json"), "--vocab-size", "10"]) == 2
    assert "too small" in capsys.readouterr().err
    assert main(["tokenizer", "encode", "-t", "cl100k_base", "--allowed-special", "", "x<|endoftext|>"]) == 2
    assert "disallowed" in capsys.readouterr().err


def test_train_on_an_empty_file_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for extra in ([], ["--reference"]):
        assert main(["tokenizer", "train", str(empty), "-o", str(tmp_path / "t.json"), "--quiet", *extra]) == 2
        assert capsys.readouterr().err == f"lucidlm: error: the training text is empty: {empty} (0 bytes)\n"
    assert not (tmp_path / "t.json").exists()


def test_train_warns_when_the_text_is_too_small_for_the_vocab_size(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("ab ab", encoding="utf-8")
    # chunks "ab", " ab": merges (a, b) then (space, ab), then nothing is left to merge (by hand);
    # --vocab-size 1024 asks for 1024 - 256 byte tokens - 1 special = 767 merges
    assert main(["tokenizer", "train", str(small), "-o", str(tmp_path / "t.json"), "--quiet",
                 "--special", "<|endoftext|>"]) == 0
    out, err = capsys.readouterr()
    assert "trained 2 merges (vocab 259)" in out
    assert err.startswith("lucidlm: warning: learned only 2 of the 767 merges asked for (--vocab-size 1024)")
    assert "--vocab-size 259" in err
    # enough text for every merge asked for: no warning
    assert main(["tokenizer", "train", str(small), "-o", str(tmp_path / "t.json"), "--quiet", "--vocab-size", "258"]) == 0
    assert capsys.readouterr().err == ""


def test_show_and_stats_work_for_wordpiece_and_char_tokenizers(tmp_path, capsys):
    assert main(["tokenizer", "show", "-t", "all-minilm-l6-v2", "--color", "never", "--ids", "Hello wörld"]) == 0
    out = capsys.readouterr().out
    assert "[CLS]|hello|world|[SEP]" in out and "7592  hello" in out  # ids from HF's tokenizer
    from lucidlm.tokenizers import CharTokenizer

    path = CharTokenizer.from_text("hello world").save(tmp_path / "chars.json")
    assert main(["tokenizer", "stats", "-t", str(path), "--top", "2", "hello"]) == 0
    assert "tokens/word 5.000" in capsys.readouterr().out
