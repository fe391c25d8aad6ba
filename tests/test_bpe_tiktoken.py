"""lucidlm's BPE against tiktoken (the independent reference) on OpenAI's own rank files."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lucidlm.tokenizers import load_tokenizer
from lucidlm.tokenizers.corpus import build_mixed_corpus
from lucidlm.tokenizers.formats import TIKTOKEN_ENCODINGS, read_tiktoken_ranks

tiktoken = pytest.importorskip("tiktoken")

ENCODINGS = ["cl100k_base", "o200k_base"]


@pytest.fixture(scope="module", params=ENCODINGS)
def pair(request):
    """(lucidlm tokenizer, tiktoken Encoding) built from the same rank file."""
    from lucidlm.assets import asset_path

    name = request.param
    known = TIKTOKEN_ENCODINGS[name]
    reference = tiktoken.Encoding(
        name,
        pat_str=known["pattern"],
        mergeable_ranks=read_tiktoken_ranks(asset_path(name)),
        special_tokens=known["special_tokens"],
    )
    return load_tokenizer(name), reference


@pytest.fixture(scope="module")
def mixed_corpus():
    return build_mixed_corpus(1_500_000, seed=1)


def test_mixed_corpus_ids_identical(pair, mixed_corpus):
    ours, ref = pair
    assert ours.encode_ordinary(mixed_corpus) == ref.encode_ordinary(mixed_corpus)
    # line by line too: chunk boundaries at the start and end of a text are special cases
    lines = mixed_corpus.splitlines(keepends=True)[:3000]
    assert [ours.encode(line) for line in lines] == [ref.encode(line) for line in lines]


def test_code_and_chinese_corpora_ids_identical(pair):
    # the benchmark's other corpora: source code (long runs of spaces, punctuation) and real
    # Chinese prose (long chunks of 3-byte characters, few repeated), each from a fresh cache
    from lucidlm.tokenizers.corpus import chinese_reviews, code_corpus

    ours, ref = pair
    for text in (code_corpus(400_000), chinese_reviews()[:300_000]):
        ours.clear_cache()
        assert ours.encode_ordinary(text) == ref.encode_ordinary(text)


@pytest.mark.slow
def test_ten_megabyte_corpus_ids_identical(pair):
    corpus = build_mixed_corpus(10_000_000, seed=0)
    assert len(corpus.encode("utf-8")) > 10_000_000
    ours, ref = pair
    assert ours.encode_ordinary(corpus) == ref.encode_ordinary(corpus)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_hypothesis_unicode_ids_identical_and_round_trip(pair, text):
    ours, ref = pair
    ids = ours.encode_ordinary(text)
    assert ids == ref.encode_ordinary(text)
    assert ours.decode(ids) == text
    assert ours.encode_ordinary_reference(text) == ids


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.lists(
        st.sampled_from(list(" \t\n\r\u00a0\u3000aZ09'sé中🙂\u200d.,!") + ["'ll", "<|endoftext|>", "<|endofprompt|>"]),
        max_size=60,
    ).map("".join)
)
def test_hypothesis_edge_alphabet(pair, text):
    """Whitespace runs, contractions, digits and special-token strings, densely mixed."""
    ours, ref = pair
    assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    assert ours.encode(text, disallowed_special=()) == ref.encode(text, disallowed_special=())


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\n\n\n",
        "    leading and trailing    ",
        "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs",
        "1234567890 12,345.678 ٣٤٥ १२३",
        "I'll we've THEY'RE it’s",
        "camelCaseWord HTTPServer __init__",
        "\r\n\r\n  \t\t x",
        "a" * 5000,
        " " * 1000 + "x",
    ],
)
def test_edge_cases(pair, text):
    ours, ref = pair
    assert ours.encode(text) == ref.encode(text)
    assert ours.decode(ours.encode(text)) == text


def test_special_token_rules_match_tiktoken(pair):
    ours, ref = pair
    text = "hello <|endoftext|> world"
    with pytest.raises(ValueError):
        ref.encode(text)
    with pytest.raises(ValueError, match="disallowed"):
        ours.encode(text)
    assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    assert ours.encode(text, allowed_special={"<|endoftext|>"}) == ref.encode(text, allowed_special={"<|endoftext|>"})
    assert ours.encode(text, disallowed_special=()) == ref.encode(text, disallowed_special=())
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text)
    with pytest.raises(ValueError, match="not special tokens"):
        ours.encode(text, allowed_special={"<|nope|>"})


def test_vocab_size_and_token_bytes(pair):
    ours, ref = pair
    assert ours.vocab_size == ref.n_vocab
    for i in [0, 255, 1000, ref.eot_token]:
        assert ours.token_bytes(i) == ref.decode_single_token_bytes(i)


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_encode_batch_matches_single(pair, mixed_corpus, monkeypatch, workers):
    from lucidlm.tokenizers import parallel

    ours, ref = pair
    lines = mixed_corpus.splitlines(keepends=True)
    assert ours.encodes_in_threads  # C kernel and C splitter: encoding releases the GIL
    if workers == "processes":  # what a tokenizer without the C kernel does
        monkeypatch.setattr(type(ours), "encodes_in_threads", False)
    monkeypatch.setattr(parallel, "MIN_CHARS_FOR_WORKERS", 0)
    monkeypatch.setattr(parallel, "MIN_CHARS_FOR_THREADS", 0)
    assert ours.encode_batch(lines, num_workers=2) == ref.encode_ordinary_batch(lines)
    assert ours.encode_batch(lines[:10], num_workers=1) == [ref.encode(x) for x in lines[:10]]
    with pytest.raises(TypeError):
        ours.encode_batch("one string")
    # an error in a worker (here: a disallowed special token in the worker's half) is raised in
    # the caller with tiktoken's message, and no worker is left behind
    import multiprocessing

    bad = lines[:40] + ["a <|endoftext|> b"]
    with pytest.raises(ValueError, match="special token"):
        ours.encode_batch(bad, num_workers=2)
    with pytest.raises(ValueError, match="special token"):
        ref.encode_batch(bad)
    assert not multiprocessing.active_children()


def test_decode_invalid_utf8_and_unknown_ids(pair):
    ours, _ = pair
    ids = ours.encode("中")
    assert ours.decode_bytes(ids) == "中".encode()
    # a lone continuation byte cannot be decoded
    lone = ours.token_to_id(b"\x80")
    assert ours.decode([lone]) == "\ufffd"
    with pytest.raises(ValueError, match="invalid UTF-8"):
        ours.decode([lone], errors="strict")
    with pytest.raises(ValueError, match="unknown token id 10000000"):
        ours.decode(ids + [10_000_000])
    with pytest.raises(ValueError, match="unknown token id"):
        ours.decode([-1])
    with pytest.raises(ValueError, match="unknown token id"):
        ours.token_bytes(10_000_000)


def test_lone_surrogates_become_replacement_like_tiktoken(pair):
    ours, ref = pair
    text = "a\ud83db \udc00 ok"
    assert ours.encode(text) == ref.encode(text)
    assert ours.encode_ordinary_reference(text) == ref.encode(text)


def _all_code_points() -> list[str]:
    return [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


# Each code point in a context where its Unicode class decides the split: a letter joins " A" and
# the contraction, a digit joins digits, whitespace joins whitespace, a mark or symbol does not.
# A different Unicode version in the regex engine (corrected by patterns.Splitter) shows up here.
CODE_POINT_PROBES = {
    "letter-contraction": lambda c: " A" + c + "'s",
    "x-space": lambda c: "x" + c + " ",
    "digit": lambda c: c + "1 ",
    "doubled": lambda c: c + c + "\n",
    "case": lambda c: "aB" + c + "c ",
}


@pytest.mark.parametrize("probe", ["letter-contraction"])
def test_every_code_point_splits_like_tiktoken(pair, probe):
    ours, ref = pair
    text = "".join(map(CODE_POINT_PROBES[probe], _all_code_points()))
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text)


@pytest.mark.slow
@pytest.mark.parametrize("probe", sorted(set(CODE_POINT_PROBES) - {"letter-contraction"}))
def test_every_code_point_splits_like_tiktoken_more_contexts(pair, probe):
    test_every_code_point_splits_like_tiktoken(pair, probe)


def test_rank_file_written_by_lucidlm_reads_back_in_tiktoken(pair, tmp_path):
    from tiktoken.load import load_tiktoken_bpe

    from lucidlm.tokenizers.formats import save_tiktoken_file

    ours, ref = pair
    path = save_tiktoken_file(ours, tmp_path / "copy.tiktoken")
    assert load_tiktoken_bpe(str(path)) == ref._mergeable_ranks
