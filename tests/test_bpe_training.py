"""BPE training: hand-computed merges, fast trainer == textbook trainer, streaming, save/load."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidlm.tokenizers import BPETokenizer, load_tokenizer, train_bpe, train_bpe_reference
from lucidlm.tokenizers.corpus import tiny_shakespeare
from lucidlm.tokenizers.training import count_chunks, count_chunks_streaming, iter_file_blocks


def test_textbook_example_by_hand():
    # "aaabdaaabac" (the Wikipedia BPE example). Pair counts: aa=4, ab=2, others 1 -> merge aa=256.
    # Then (256,a)=2 and (a,b)=2 tie: the smaller pair (97, 98) wins -> ab=257. Then (256,257)=2.
    for trainer in (train_bpe, train_bpe_reference):
        tok = trainer("aaabdaaabac", 259, pattern=None)
        assert tok.merges == [(97, 97), (97, 98), (256, 257)]
        assert tok.token_bytes(258) == b"aaab"
        assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def test_merges_stop_when_nothing_left_to_merge():
    tok = train_bpe("ab ab", 1000, pattern="gpt2")
    # chunks "ab", " ab": pairs (a,b) then (' ', ab); after that every chunk is one token
    assert tok.merges == [(97, 98), (32, 256)]
    assert train_bpe_reference("ab ab", 1000, pattern="gpt2").merges == tok.merges


@pytest.mark.parametrize("pattern", ["cl100k", "gpt2", "o200k", None])
def test_fast_equals_reference_on_a_slice(pattern):
    text = tiny_shakespeare()[:20_000]
    fast = train_bpe(text, 400, pattern=pattern)
    ref = train_bpe_reference(text, 400, pattern=pattern)
    assert fast.merges == ref.merges


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet="ab c\nd", max_size=120), vocab=st.integers(256, 300))
def test_fast_equals_reference_hypothesis(text, vocab):
    assert train_bpe(text, vocab).merges == train_bpe_reference(text, vocab).merges


@pytest.mark.slow
def test_fast_equals_reference_tiny_shakespeare_512_gpt4_pattern():
    text = tiny_shakespeare()
    assert train_bpe(text, 512, pattern="cl100k").merges == train_bpe_reference(text, 512, pattern="cl100k").merges


def test_trained_tokenizer_round_trips_and_compresses():
    text = tiny_shakespeare()
    tok = train_bpe(text[:200_000], 600, special_tokens={"<|endoftext|>": None})
    assert tok.special_tokens == {"<|endoftext|>": 600 - 1}
    assert tok.vocab_size == 600
    sample = text[200_000:260_000]
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample
    assert len(sample.encode()) / len(ids) > 2.0  # learned merges compress held-out English
    assert tok.encode_ordinary_reference(sample) == ids
    assert tok.encode("x<|endoftext|>y", allowed_special="all")[1] == 599


def test_streaming_counts_equal_whole_text_counts(tmp_path):
    text = tiny_shakespeare()[:100_000] + "   \n\n  tail   "
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    whole = count_chunks([text], "cl100k")
    for block in (7, 64, 1000, 1 << 20):  # tiny blocks cut chunks and whitespace runs everywhere
        streamed = count_chunks_streaming(iter_file_blocks([path], block_chars=block), "cl100k")
        assert streamed == whole, block
    from_file = train_bpe(files=[path], vocab_size=300)
    assert from_file.merges == train_bpe(text, 300).merges


def test_streaming_multibyte_split_across_blocks(tmp_path):
    text = "中文字符 " * 100
    path = tmp_path / "cjk.txt"
    path.write_text(text, encoding="utf-8")
    blocks = list(iter_file_blocks([path], block_chars=5))  # cuts inside 3-byte characters
    assert "".join(blocks) == text


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe("hello", 100)
    with pytest.raises(ValueError, match="at least 257"):
        train_bpe("hello", 256, special_tokens={"<|endoftext|>": None})
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8.*byte offset 3"):
        train_bpe(files=[bad], vocab_size=300)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_bpe(files=[tmp_path / "missing.txt"], vocab_size=300)


def test_save_load_round_trip_and_vocab_listing(tmp_path):
    tok = train_bpe(tiny_shakespeare()[:50_000], 350, special_tokens={"<|endoftext|>": None}, name="shakes")
    path = tok.save(tmp_path / "new" / "dir" / "shakes.json")  # missing directories are made
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tok.merges and loaded.vocab == tok.vocab
    assert loaded.special_tokens == tok.special_tokens and loaded.pattern == tok.pattern
    assert load_tokenizer(path).encode("To be, or not to be") == tok.encode("To be, or not to be")
    listing = (tmp_path / "new" / "dir" / "shakes.vocab").read_text(encoding="utf-8")
    assert "<|endoftext|>" in listing and "<-" in listing


def test_corrupt_and_truncated_files(tmp_path):
    tok = train_bpe(tiny_shakespeare()[:20_000], 300)
    path = tok.save(tmp_path / "t.json")
    raw = path.read_text(encoding="utf-8")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(raw[: len(raw) // 2], encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        BPETokenizer.load(truncated)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokenizer(truncated)
    data = json.loads(raw)
    data["merges"][5] = [1, 99999]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="merge #5"):
        BPETokenizer.load(broken)
    data = json.loads(raw)
    data["version"] = 99
    future = tmp_path / "future.json"
    future.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="version 99"):
        BPETokenizer.load(future)
    with pytest.raises(FileNotFoundError):
        BPETokenizer.load(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="neither a registered tokenizer"):
        load_tokenizer(tmp_path / "nope.json")


@pytest.fixture(scope="module")
def shakespeare_bpe():
    return train_bpe(tiny_shakespeare()[:100_000], 500, pattern="gpt2")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=100))
def test_trained_tokenizer_round_trip_any_string(shakespeare_bpe, text):
    ids = shakespeare_bpe.encode_ordinary(text)
    assert shakespeare_bpe.decode(ids) == text
    assert shakespeare_bpe.encode_ordinary_reference(text) == ids
