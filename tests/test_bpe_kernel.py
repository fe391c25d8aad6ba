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
