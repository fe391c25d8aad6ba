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
    tok.clear_cache()
    tok.use_kernel = True
    with_kernel = tok.encode_ordinary(text)
    tok.clear_cache()
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
    # both caches (the C kernel's and the Python path's dict) are emptied when full, and the ids stay right
    monkeypatch.setattr(bpe, "CACHE_MAX_ENTRIES", 10)
    text = " ".join(f"word{i}" for i in range(100)) + " " + "x" * 300  # the last chunk is too long to cache
    for use_kernel in (True, False):
        tok = bpe.BPETokenizer(tokenizers["merges"].vocab, tokenizers["merges"].merges, pattern="gpt2")
        tok.use_kernel = use_kernel
        ids = tok.encode_ordinary(text)
        assert ids == tok.encode_ordinary_reference(text) and tok.decode(ids) == text
        held = bpe._bpe_kernel.cache_len(tok._kernel_cache) if use_kernel else len(tok._cache)
        assert 0 < held <= 10
        tok.clear_cache()
        assert (bpe._bpe_kernel.cache_len(tok._kernel_cache) if use_kernel else len(tok._cache)) == 0


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
    # chunks of over 64 parts merge through a heap instead of scanning: the same merges, in the same
    # order (ties to the leftmost), checked around the switch and far beyond it
    import random

    tok = tokenizers[mode]
    rng = random.Random(0)
    texts = ["a" * 1000, "ab" * 700, "🙂" * 300, "x" + "\u00e9" * 400, "".join(chr(0x4E00 + 7 * i) for i in range(500))]
    texts += ["".join(rng.choice("etaoinshrd") for _ in range(n)) for n in (62, 63, 64, 65, 66, 130, 2000)]
    texts += ["".join(chr(rng.randint(0x4E00, 0x4E80)) for _ in range(n)) for n in (21, 22, 23, 300)]
    texts += ["aaaa" * 40, "abab" * 40 + "a"]  # many equal-priority pairs: the leftmost must win
    for text in texts:
        tok.clear_cache()
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
    tok.clear_cache()
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


@needs_kernel
def test_threads_sharing_a_tokenizer_get_the_right_ids(tokenizers):
    # encoding releases the GIL: threads on one tokenizer take turns on its chunk cache (a lock)
    import threading

    tok = tokenizers["ranks"]
    texts = [build_mixed_corpus(60_000, seed=seed) for seed in range(6)]
    expected = [tok.encode_ordinary_reference(t[:5000]) + tok.encode_ordinary_reference(t[5000:]) for t in texts]
    tok.clear_cache()
    got = [None] * len(texts)

    def work(k):
        got[k] = tok.encode_ordinary(texts[k][:5000]) + tok.encode_ordinary(texts[k][5000:])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == expected


@needs_kernel
def test_encode_batch_threads_keep_caches_of_their_own(tokenizers, monkeypatch):
    from lucidlm.tokenizers import parallel

    tok = tokenizers["merges"]
    assert tok.encodes_in_threads
    monkeypatch.setattr(parallel, "MIN_CHARS_FOR_THREADS", 0)
    docs = build_mixed_corpus(100_000, seed=7).splitlines(keepends=True)
    tok.clear_cache()
    assert tok.encode_batch(docs, num_workers=3) == [tok.encode_ordinary_reference(d) for d in docs]
    caches = tok.thread_caches(3)
    assert len(caches) == 3 and all(bpe._bpe_kernel.cache_len(c) > 0 for c in caches)
    assert not tok._thread_caches  # the threads are gone, and so are their entries
    import gc

    assert gc.isenabled()  # paused during the batch only
    tok.clear_cache()
    assert all(bpe._bpe_kernel.cache_len(c) == 0 for c in caches)


@needs_kernel
def test_regex_split_and_custom_split_use_the_kernel_cache_too(tokenizers):
    # a split the C splitter does not know: chunks come from Python, merging from the kernel
    from lucidlm.tokenizers.patterns import Splitter

    tok = tokenizers["merges"]
    text = build_mixed_corpus(50_000, seed=9)
    custom = bpe.BPETokenizer(tok.vocab, tok.merges, pattern=lambda t: Splitter(tok.pattern, use_kernel=False)(t))
    assert not custom.encodes_in_threads
    assert custom.encode_ordinary(text) == tok.encode_ordinary(text) == tok.encode_ordinary_reference(text)
    assert bpe._bpe_kernel.cache_len(custom._kernel_cache) > 0
