"""The optional C inner loop gives the same ids as the Python fast path and the textbook encoder."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidlm.tokenizers import bpe, load_tokenizer, train_bpe
from lucidlm.tokenizers.corpus import build_mixed_corpus, tiny_shakespeare

needs_kernel = pytest.mark.skipif(bpe._bpe_kernel is None, reason="C kernel not built (no compiler at install)")


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler on this machine")
def test_kernel_is_built_where_a_compiler_exists():
    # setup.py builds it with optional=True, which hides a failed build: catch that here.
    assert bpe._bpe_kernel is not None
    assert load_tokenizer("cl100k_base").use_kernel or os.environ.get("LUCIDLM_NO_KERNEL")


@pytest.fixture(scope="module")
def tokenizers():
    """ranks mode (tiktoken file) and merges mode (trained here), each with kernel on and off."""
    trained = train_bpe(tiny_shakespeare()[:200_000], 700, pattern="gpt2")
    return {"ranks": load_tokenizer("cl100k_base"), "merges": trained}


@needs_kernel
@pytest.mark.parametrize("mode", ["ranks", "merges"])
def test_kernel_equals_python_on_mixed_corpus(tokenizers, mode):
    tok = tokenizers[mode]
    text = build_mixed_corpus(400_000, seed=3)
    tok._cache.clear()
    tok.use_kernel = True
    with_kernel = tok.encode_ordinary(text)
    tok._cache.clear()
    tok.use_kernel = False
    try:
        assert tok.encode_ordinary(text) == with_kernel
    finally:
        tok.use_kernel = True
    assert tok.encode_ordinary_reference(text[:50_000]) == tok.encode_ordinary(text[:50_000])


@needs_kernel
@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=150))
def test_kernel_equals_reference_hypothesis(tokenizers, text):
    for tok in tokenizers.values():
        assert tok.encode_ordinary(text) == tok.encode_ordinary_reference(text)


@needs_kernel
def test_kernel_cache_bound(tokenizers, monkeypatch):
    tok = tokenizers["ranks"]
    monkeypatch.setattr(bpe, "CACHE_MAX_ENTRIES", 10)
    tok._cache.clear()
    ids = tok.encode_ordinary(" ".join(f"word{i}" for i in range(100)))
    assert len(tok._cache) <= 10
    assert tok.decode(ids) == " ".join(f"word{i}" for i in range(100))


# ---- the kernel's pair table, checked against the Python definition of "may merge" ---------------


def _ranks_mode_copy(tok):
    """The same vocab read as a tiktoken rank file (ids = ranks, no merges list)."""
    return bpe.BPETokenizer(tok.vocab, None, pattern="gpt2")


@needs_kernel
@pytest.mark.parametrize("mode", ["ranks", "merges"])
def test_pair_table_holds_exactly_the_pairs_python_merges(tokenizers, mode):
    # Every pair of the 700 tokens (490k pairs): the C table agrees with bpe.py's priority rule,
    # (a, b) -> encoder[a + b] in ranks mode, pair_priority[(a, b)] in merges mode.
    trained = tokenizers["merges"]
    tok = trained if mode == "merges" else _ranks_mode_copy(trained)
    tok.warm_up()
    table = tok._kernel_table
    expected = {}
    for a, pa in tok.vocab.items():
        for b, pb in tok.vocab.items():
            merged = tok._encoder.get(pa + pb)
            if mode == "ranks" and merged is not None:
                expected[a, b] = (merged, merged)
            elif mode == "merges" and (pa, pb) in tok._pair_priority:
                expected[a, b] = (tok._pair_priority[pa, pb], merged)
    found = {(a, b): bpe._bpe_kernel.table_pair(table, a, b) for a in tok.vocab for b in tok.vocab}
    assert {k: v for k, v in found.items() if v is not None} == expected
    assert bpe._bpe_kernel.table_sizes(table)[:2] == (len(tok.vocab), len(expected))


@needs_kernel
def test_pair_table_on_cl100k_splits(tokenizers):
    # cl100k: for 3000 tokens, every split into two tokens is a pair that merges into the token,
    # and a pair whose bytes join into no token is absent.
    tok = tokenizers["ranks"]
    tok.warm_up()
    checked = 0
    for piece, rank in list(tok._encoder.items())[::33]:
        for k in range(1, len(piece)):
            left, right = tok._encoder.get(piece[:k]), tok._encoder.get(piece[k:])
            if left is not None and right is not None:
                assert bpe._bpe_kernel.table_pair(tok._kernel_table, left, right) == (rank, rank)
                checked += 1
    assert checked > 1000
    not_a_token = (tok.token_to_id(b" the"), tok.token_to_id(b" the"))
    assert tok.vocab[not_a_token[0]] + tok.vocab[not_a_token[1]] not in tok._encoder
    assert bpe._bpe_kernel.table_pair(tok._kernel_table, *not_a_token) is None


# ---- encoding edge cases the hypothesis test does not reach -------------------------------------


@needs_kernel
@pytest.mark.parametrize("mode", ["ranks", "merges"])
def test_long_chunks_equal_reference(tokenizers, mode):
    # chunks over 256 bytes merge in heap memory instead of stack arrays
    tok = tokenizers[mode]
    texts = ["a" * 1000, "ab" * 700, "🙂" * 300, "x" + "\u00e9" * 400, "".join(chr(0x4E00 + 7 * i) for i in range(500))]
    for text in texts:
        tok._cache.clear()
        assert tok.encode_ordinary(text) == tok.encode_ordinary_reference(text), text[:20]


@needs_kernel
def test_missing_bytes_are_dropped_like_the_reference(tokenizers):
    # merges mode with allow_missing_bytes: bytes without a token vanish before merging (HF's BPE)
    trained = tokenizers["merges"]
    used = {i for merge in trained.merges for i in merge}
    dropped = [i for i, piece in trained.vocab.items() if len(piece) == 1 and i not in used and piece[0] < 0x20][:3]
    assert dropped
    vocab = {i: p for i, p in trained.vocab.items() if i not in dropped}
    tok = bpe.BPETokenizer(vocab, trained.merges, pattern="gpt2", allow_missing_bytes=True)
    text = "Hello\x01 world\x02\x03 again \x01\x02" + "".join(chr(trained.vocab[i][0]) for i in dropped)
    assert tok.use_kernel
    assert tok.encode_ordinary(text) == tok.encode_ordinary_reference(text)
    tok.use_kernel = False
    tok._cache.clear()
    assert tok.encode_ordinary(text) == tok.encode_ordinary_reference(text)


@needs_kernel
def test_pickled_tokenizer_rebuilds_its_table(tokenizers):
    import pickle

    tok = tokenizers["ranks"]
    tok.warm_up()
    copy = pickle.loads(pickle.dumps(tok))
    assert copy._kernel_table is None  # C memory is not pickled, it is rebuilt on first use
    text = build_mixed_corpus(20_000, seed=5)
    assert copy.encode_ordinary(text) == tok.encode_ordinary(text)
    assert copy._kernel_table is not None


@needs_kernel
def test_vocab_beyond_kernel_limits_falls_back_to_python():
    # ids must fit the kernel's 32-bit arrays; a larger id makes it step aside, not fail
    vocab = {i: bytes([i]) for i in range(256)}
    vocab[2**33] = b"ab"
    tok = bpe.BPETokenizer(vocab, None, pattern="gpt2")
    assert tok.encode_ordinary("abc ab") == [2**33, 99, 32, 2**33]
    assert not tok.use_kernel
