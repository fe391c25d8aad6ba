"""The C merge loop of BPE training (``_train_kernel.c``) against three independent references: the
Python loop (``learn_merges(use_kernel=False)``), the textbook trainer (``train_bpe_reference``) and
HF tokenizers' trainer. Same merges, ties and ``min_frequency`` included; bad input raises clearly.

(``tests/test_bpe_training.py`` checks ``train_bpe``, which runs the kernel when built, against the
textbook trainer on English and an "ab c" alphabet; here: other scripts, emoji, repeated pairs.)
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidlm.tokenizers import train_bpe, train_bpe_reference, training
from lucidlm.tokenizers.corpus import build_mixed_corpus
from lucidlm.tokenizers.hf import python_to_onig, token_to_bytes
from lucidlm.tokenizers.patterns import CL100K_PATTERN
from lucidlm.tokenizers.training import _replace_pair, count_chunks, learn_merges

# Tests that run the kernel; the others also run where it was not built (no C compiler).
needs_kernel = pytest.mark.skipif(training._train_kernel is None, reason="the C training kernel is not built")

# Texts where kernel == Python loop == textbook trainer must hold (for each split pattern).
TEXTS = {
    "mixed scripts and emoji": build_mixed_corpus(8_000, seed=3),
    "repeated pairs": "aaaa aaa aaaaa bababa abab aaab baaa " * 7 + "aaaaaaaaa",
    "all ties": "ab cd ef gh ij kl mn op",  # every pair occurs once: the smallest (a, b) goes first
    "emoji and joiners": "👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽👍🏽 🇯🇵🇯🇵🇯🇵 " * 5,
    "cjk without spaces": "人人生而自由，在尊严和权利上一律平等。" * 4 + "自由自由自由",
    "empty": "",
}


def both_loops(counts, n_merges: int, min_frequency: int = 1) -> list[tuple[int, int]]:
    """The kernel's merges, after checking that the Python loop learns the same ones."""
    kernel = learn_merges(counts, n_merges, min_frequency=min_frequency, use_kernel=True)
    assert kernel == learn_merges(counts, n_merges, min_frequency=min_frequency, use_kernel=False)
    return kernel


@needs_kernel
@pytest.mark.parametrize("name", TEXTS)
@pytest.mark.parametrize("pattern", ["cl100k", None])
def test_kernel_equals_python_and_textbook(name, pattern):
    text = TEXTS[name]
    if pattern is None and len(text) > 1000:
        text = text[:1000]  # one chunk: the textbook trainer recounts it all every step
    merges = both_loops(count_chunks([text], pattern), 400)
    assert merges == train_bpe_reference(text, 256 + 400, pattern=pattern).merges


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="aab 中文é😀\u200d\n", max_size=80), n_merges=st.integers(0, 60),
       pattern=st.sampled_from(["cl100k", "gpt2", None]))
def test_kernel_equals_textbook_hypothesis(text, n_merges, pattern):
    expected = train_bpe_reference(text, 256 + n_merges, pattern=pattern).merges
    assert both_loops(count_chunks([text], pattern), n_merges) == expected


def merge_counts(text: str, merges: list[tuple[int, int]]) -> list[int]:
    """How often each merge's pair occurred when it was made, replaying the merges the textbook way."""
    words = [list(chunk.encode()) for chunk in count_chunks([text], "cl100k").elements()]
    counts = []
    for new_id, pair in enumerate(merges, start=256):
        counts.append(sum(Counter(zip(w, w[1:]))[pair] for w in words))
        words = [_replace_pair(w, pair, new_id) for w in words]
    return counts


@needs_kernel
@pytest.mark.parametrize("min_frequency", [0, 1, 2, 5, 40, 10**6])
def test_min_frequency_stops_at_the_first_rarer_pair(min_frequency):
    text = TEXTS["mixed scripts and emoji"][:3000] + TEXTS["repeated pairs"]
    full = train_bpe_reference(text, 256 + 300).merges
    counts = merge_counts(text, full)
    assert counts == sorted(counts, reverse=True)  # the best count never grows, so a prefix is kept
    expected = full[: sum(c >= min_frequency for c in counts)]
    assert both_loops(count_chunks([text], "cl100k"), 300, min_frequency) == expected


def hf_merges(text: str, n_merges: int, min_frequency: int = 0):
    """HF tokenizers' trainer on the GPT-4 split (its merges as byte pairs) and the trained tokenizer."""
    pytest.importorskip("tokenizers")
    from tokenizers import Regex, Tokenizer, models, trainers
    from tokenizers import pre_tokenizers as pt

    tok = Tokenizer(models.BPE())
    split = Regex(python_to_onig(CL100K_PATTERN))  # Oniguruma reads \p{N}{1,3}+ as (\p{N}{1,3})+
    tok.pre_tokenizer = pt.Sequence([pt.Split(split, behavior="isolated"),
                                     pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=256 + n_merges, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pt.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]  # "a b" strings, or [a, b] in newer versions
    return [tuple(token_to_bytes(s) for s in (m.split(" ") if isinstance(m, str) else m)) for m in merges], tok


# HF breaks ties by its own token ids, which sort the byte alphabet's characters: that is byte order
# only for printable ASCII without the space (0x21-0x7E) and bytes 0xA1-0xFF but 0xAD. On text made
# of those bytes (é = C3 A9, ü = C3 BC) the tie-breaks coincide, so the merges must be identical.
@needs_kernel
@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet="aab1!,.éü", min_size=1, max_size=150), n_merges=st.integers(1, 40),
       min_frequency=st.sampled_from([0, 2, 3]))
def test_kernel_equals_hf_tokenizers_trainer(text, n_merges, min_frequency):
    expected, hf_tok = hf_merges(text, n_merges, min_frequency)
    ours = train_bpe(text, 256 + n_merges, min_frequency=min_frequency)
    assert [(ours.vocab[a], ours.vocab[b]) for a, b in ours.merges] == expected
    hf_pieces = [token_to_bytes(token) for token in hf_tok.encode(text).tokens]
    assert [ours.token_bytes(i) for i in ours.encode_ordinary(text)] == hf_pieces


@needs_kernel
def test_edge_inputs():
    assert both_loops({}, 100) == []
    assert both_loops(Counter(["a", "b", "€"]), 100) == [(0x82, 0xAC), (0xE2, 256)]  # "€" = E2 82 AC: a tie
    assert both_loops({"ab": 3}, 0) == []
    # A chunk counted 0 times is as good as absent (Counter.subtract leaves such entries).
    assert both_loops({"ab": 2, "cd": 0, "ce": 1}, 10) == both_loops({"ab": 2, "ce": 1}, 10) == [(97, 98), (99, 101)]
    # A mapping that is not a dict works too.
    assert both_loops(tuple({"xy": 2}.items()), 5) == [(120, 121)]


@needs_kernel
def test_counts_beyond_64_bits_fall_back_to_python():
    counts = count_chunks([TEXTS["mixed scripts and emoji"]], "cl100k")
    huge = {chunk: c << 70 for chunk, c in counts.items()}  # scaling every count keeps the merges
    assert learn_merges(huge, 200, use_kernel=True) == both_loops(counts, 200)
    assert learn_merges(counts, 200, min_frequency=1 << 70, use_kernel=True) == []


@pytest.mark.parametrize("use_kernel", [pytest.param(True, marks=needs_kernel), False])
def test_bad_inputs(use_kernel):
    with pytest.raises(TypeError, match="keys must be str.*bytes"):
        learn_merges({b"ab": 1}, 10, use_kernel=use_kernel)
    with pytest.raises(TypeError, match=r"chunk_counts\['ab'\] must be an int count, got float"):
        learn_merges({"ab": 1.5}, 10, use_kernel=use_kernel)
    with pytest.raises(ValueError, match=r"chunk_counts\['ab'\] = -1: counts must be >= 0"):
        learn_merges({"ab": -1}, 10, use_kernel=use_kernel)
    with pytest.raises(ValueError, match="n_merges must be an int >= 0"):
        learn_merges({"ab": 1}, -1, use_kernel=use_kernel)
    with pytest.raises(ValueError, match="min_frequency must be an int >= 0"):
        learn_merges({"ab": 1}, 10, min_frequency=-2, use_kernel=use_kernel)
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate has no UTF-8 bytes
        learn_merges({"a\ud800": 1}, 10, use_kernel=use_kernel)


def test_kernel_switches(monkeypatch):
    class Refuses:
        @staticmethod
        def learn_merges(*args):
            raise AssertionError("the kernel ran")

    monkeypatch.setattr(training, "_train_kernel", Refuses)
    monkeypatch.setenv("LUCIDLM_NO_KERNEL", "1")
    assert learn_merges({"abab": 2}, 5) == [(97, 98), (256, 256)]  # the env var picks the Python loop
    with pytest.raises(AssertionError, match="the kernel ran"):
        learn_merges({"abab": 2}, 5, use_kernel=True)
    monkeypatch.setattr(training, "_train_kernel", None)  # as if built without a compiler
    monkeypatch.delenv("LUCIDLM_NO_KERNEL")
    assert learn_merges({"abab": 2}, 5) == [(97, 98), (256, 256)]
    with pytest.raises(ValueError, match="not built.*build_ext"):
        learn_merges({"abab": 2}, 5, use_kernel=True)


@needs_kernel
def test_progress_reports_and_bar():
    from lucidlm.tokenizers import _train_kernel

    counts = count_chunks([build_mixed_corpus(100_000, seed=5)], "cl100k")
    reports: list[int] = []
    merges = _train_kernel.learn_merges(counts, 2500, 1, reports.append)
    assert reports == [1024, 2048, 2500] and len(merges) == 2500
    assert learn_merges(counts, 2500, progress=True, use_kernel=True) == merges
