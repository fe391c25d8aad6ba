"""GGUF vocabularies: lucidlm's reader against HF ``tokenizers``, llama.cpp's test vectors and tiktoken."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lucidlm.tokenizers.bpe import BPETokenizer
from lucidlm.tokenizers.corpus import build_mixed_corpus, tiny_shakespeare
from lucidlm.tokenizers.formats import load_tokenizer_file
from lucidlm.tokenizers.gguf_vocab import GGUF_PRE_TOKENIZERS, from_gguf
from lucidlm.tokenizers.hf import PretrainedBPETokenizer, bytes_to_token, to_tokenizer_json
from lucidlm.tokenizers.patterns import GPT2_PATTERN
from lucidlm.tokenizers.training import train_bpe

gguf = pytest.importorskip("gguf")
tokenizers = pytest.importorskip("tokenizers")
from tokenizers import AddedToken, Tokenizer, decoders, models  # noqa: E402
from tokenizers import pre_tokenizers as pt  # noqa: E402

# Characters Python's unicodedata knows (Unicode 14 on 3.11); see test_hf_format.py for why.
ASSIGNED_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cn")), max_size=200)
CHATS = [
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\n<|im_end|>x<|endoftext|><|endoftext|>  <file_sep>def f(x):\n    return x**2<|im_end|>",
    "<|im_start|><|im_start|>user 2024-01-01 <repo_name>it's I'M<gh_stars>100<|im_end|>\n",
]
# SmolLM2's vocab lacks 21 byte tokens (\x04, \x06, \x13, \x14, \x16, \x1d, lead bytes 0xf1/0xf2, ...)
MISSING_BYTE_TEXTS = [
    "a\x04b",
    "the\x04re",
    "x\x13\x14\x16\x1dy",
    "\U00040000\U00080001 hi",
    "\x04",
    "1\x062",
]


def asset(name: str, key: str):
    from lucidlm.assets import asset_path

    try:
        return asset_path(name, key)
    except Exception as exc:  # offline and not cached: nothing to compare against
        pytest.skip(f"asset {name}/{key} is not available: {exc}")


@pytest.fixture(scope="module")
def mixed_lines() -> list[str]:
    return build_mixed_corpus(300_000).splitlines(keepends=True)


# ----------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct: lucidlm's GGUF reader vs an HF tokenizer built independently from the file


@pytest.fixture(scope="module")
def smollm2(smollm2_path) -> PretrainedBPETokenizer:
    return from_gguf(smollm2_path)


@pytest.fixture(scope="module")
def smollm2_hf(smollm2_path) -> Tokenizer:
    """HF's tokenizer for SmolLM2, from the GGUF's tokens and merges read with the gguf package, and
    the pre-tokenizer SmolLM2's tokenizer.json uses: Digits(individual) then ByteLevel."""
    reader = gguf.GGUFReader(smollm2_path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ")) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    ref = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    ref.pre_tokenizer = pt.Sequence(
        [
            pt.Digits(individual_digits=True),
            pt.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    ref.decoder = decoders.ByteLevel()
    ref.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3]
    )
    return ref


def assert_same_ids(ours: BPETokenizer, ref: Tokenizer, texts: list[str]) -> None:
    expected = [e.ids for e in ref.encode_batch(texts, add_special_tokens=False)]
    got = [ours.encode(t, allowed_special="all") for t in texts]
    bad = [i for i in range(len(texts)) if expected[i] != got[i]]
    assert not bad, (
        f"{len(bad)} texts differ, first {texts[bad[0]]!r}: HF {expected[bad[0]]} lucidlm {got[bad[0]]}"
    )


def test_smollm2_encodes_exactly_like_hf(smollm2, smollm2_hf, mixed_lines):
    assert isinstance(smollm2.pattern, str)  # Digits + ByteLevel composed into one regex: the fast path
    assert_same_ids(smollm2, smollm2_hf, mixed_lines + CHATS + MISSING_BYTE_TEXTS)
    ids = smollm2.encode(CHATS[0] + mixed_lines[11], allowed_special="all")
    assert smollm2.decode(ids) == smollm2_hf.decode(ids, skip_special_tokens=False)
    assert smollm2.encode_ordinary_reference(MISSING_BYTE_TEXTS[1]) == smollm2.encode_ordinary(
        MISSING_BYTE_TEXTS[1]
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ASSIGNED_TEXT)
def test_hypothesis_smollm2_matches_hf(smollm2, smollm2_hf, text):
    ids = smollm2_hf.encode(text, add_special_tokens=False).ids
    assert smollm2.encode(text, allowed_special="all") == ids
    assert smollm2.decode(ids) == smollm2_hf.decode(ids, skip_special_tokens=False)


def test_smollm2_metadata(smollm2):
    assert (smollm2.bos_id, smollm2.eos_id, smollm2.pad_id, smollm2.unk_id) == (1, 2, 2, 0)
    assert smollm2.add_bos is False and smollm2.add_special_ids([5, 6]) == [5, 6]
    assert smollm2.token_to_id("<|im_end|>") == smollm2.eos_id
    assert len(smollm2.special_tokens) == 17 and sorted(smollm2.special_tokens.values()) == list(range(17))
    assert smollm2.chat_template.startswith("{% for message in messages %}")
    assert "<|im_start|>" in smollm2.chat_template
    assert smollm2.metadata["gguf"]["tokenizer.ggml.pre"] == "smollm"
    assert smollm2.metadata["gguf"]["tokenizer.ggml.token_type"][0] == "control"
    assert smollm2.vocab_size == 49152


def test_smollm2_exported_to_tokenizer_json_loads_in_hf(smollm2, smollm2_hf, mixed_lines, tmp_path):
    path = tmp_path / "tokenizer.json"
    data = to_tokenizer_json(smollm2, path)
    assert data["pre_tokenizer"]["pretokenizers"][0] == {"type": "Digits", "individual_digits": True}
    exported = Tokenizer.from_file(str(path))
    texts = mixed_lines[:3000] + CHATS
    assert [e.ids for e in exported.encode_batch(texts, add_special_tokens=False)] == [
        e.ids for e in smollm2_hf.encode_batch(texts, add_special_tokens=False)
    ]


# ----------------------------------------------------------------------------------------------
# GPT-2 (llama.cpp's vocab-only GGUF): llama.cpp's own test vectors, and tiktoken


@pytest.fixture(scope="module")
def gpt2() -> PretrainedBPETokenizer:
    return from_gguf(asset("gpt2", "tokenizer"))


def read_llama_cpp_vectors(inp_path, out_path) -> list[tuple[str, list[int]]]:
    """llama.cpp's tests/test-tokenizer-0 format: the .inp texts are separated by the line
    "__ggml_vocab_test__" (each text ends with the newline before it); .out has one line of
    space-separated ids per text, for ``llama_tokenize(add_special=false, parse_special=false)``."""
    texts = inp_path.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    assert texts[-1] == ""  # the file ends with a separator
    expected = [[int(t) for t in line.split()] for line in out_path.read_text(encoding="utf-8").splitlines()]
    assert len(texts) - 1 == len(expected)
    return list(zip(texts[:-1], expected))


def test_gpt2_matches_llama_cpp_test_vectors(gpt2):
    vectors = read_llama_cpp_vectors(asset("gpt2", "tests.inp"), asset("gpt2", "tests.out"))
    assert len(vectors) == 46
    for text, expected in vectors:
        assert gpt2.encode_ordinary(text) == expected, text  # parse_special=false: specials are text


@pytest.fixture(scope="module")
def gpt2_tiktoken(gpt2):
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {piece: i for i, piece in gpt2.vocab.items()}  # GPT-2's ids are its merge order: r50k_base
    return tiktoken.Encoding(
        "gpt2-from-gguf", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )


def test_gpt2_matches_tiktoken(gpt2, gpt2_tiktoken, mixed_lines):
    corpus = "".join(mixed_lines)
    assert gpt2.encode_ordinary(corpus) == gpt2_tiktoken.encode_ordinary(corpus)
    assert [gpt2.encode(t, allowed_special="all") for t in mixed_lines + CHATS] == [
        gpt2_tiktoken.encode(t, allowed_special="all") for t in mixed_lines + CHATS
    ]
    assert (gpt2.bos_id, gpt2.eos_id, gpt2.chat_template) == (50256, 50256, None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ASSIGNED_TEXT)
def test_hypothesis_gpt2_matches_tiktoken(gpt2, gpt2_tiktoken, text):
    assert gpt2.encode_ordinary(text) == gpt2_tiktoken.encode_ordinary(text)


def test_gpt2_as_tiktoken_ranks_exported_to_hf_matches_tiktoken(gpt2, gpt2_tiktoken, mixed_lines):
    """ranks mode -> tokenizer.json: merges derived from ranks (every split) + ignore_merges."""
    ranks_mode = BPETokenizer(gpt2.vocab, None, pattern=GPT2_PATTERN, special_tokens=gpt2.special_tokens)
    data = to_tokenizer_json(ranks_mode)
    assert data["model"]["ignore_merges"] is True
    hf = Tokenizer.from_str(json.dumps(data))
    texts = mixed_lines[:3000]
    assert [
        e.ids for e in hf.encode_batch(texts, add_special_tokens=False)
    ] == gpt2_tiktoken.encode_ordinary_batch(texts)


# ----------------------------------------------------------------------------------------------
# small GGUF files written here: token types, flags, errors


def write_gguf(path, *, model="gpt2", pre="gpt-2", tokens=None, types=None, merges=None, extra=None):
    writer = gguf.GGUFWriter(str(path), "llama")
    if model is not None:
        writer.add_tokenizer_model(model)
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    if tokens is not None:
        writer.add_token_list(tokens)
    if types is not None:
        writer.add_token_types(types)
    if merges is not None:
        writer.add_token_merges(merges)
    for add in extra or ():
        add(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def small_source() -> BPETokenizer:
    return train_bpe(tiny_shakespeare()[:30_000], 300, pattern="gpt2")


def small_gguf(path, source: BPETokenizer, **kwargs):
    """``source``'s vocab as a GGUF, plus a control token and a user-defined token at the end."""
    n = len(source.vocab)
    tokens = [bytes_to_token(source.vocab[i]) for i in range(n)] + ["<|endoftext|>", "<tool>"]
    types = [1] * n + [3, 4]
    merges = [
        f"{bytes_to_token(source.vocab[a])} {bytes_to_token(source.vocab[b])}" for a, b in source.merges
    ]
    return write_gguf(path, tokens=tokens, types=types, merges=merges, **kwargs), n


def test_small_gguf_token_types_and_flags(tmp_path, small_source):
    extra = [
        lambda w: w.add_bos_token_id(len(small_source.vocab)),
        lambda w: w.add_eos_token_id(len(small_source.vocab)),
        lambda w: w.add_add_bos_token(True),
        lambda w: w.add_chat_template("{{ messages }}"),
    ]
    path, n = small_gguf(tmp_path / "small.gguf", small_source, extra=extra)
    tok = load_tokenizer_file(path)  # formats.py recognises GGUF by its magic bytes
    assert isinstance(tok, PretrainedBPETokenizer)
    assert tok.special_tokens == {"<|endoftext|>": n, "<tool>": n + 1}
    assert tok.metadata["gguf"]["tokenizer.ggml.token_type"] == {n: "control", n + 1: "user_defined"}
    assert (tok.bos_id, tok.eos_id, tok.add_bos, tok.chat_template) == (n, n, True, "{{ messages }}")
    text = "To be, or not<tool> to be<|endoftext|>"
    assert tok.encode(text, allowed_special="all")[-1] == n
    assert tok.add_special_ids(tok.encode("hi")) == [n] + small_source.encode("hi")
    assert tok.encode_ordinary(text) == small_source.encode_ordinary(text)
    post = to_tokenizer_json(tok)["post_processor"]  # BOS survives the way to tokenizer.json
    hf = Tokenizer.from_str(json.dumps(to_tokenizer_json(tok)))
    assert post["type"] == "TemplateProcessing" and hf.encode("hi").ids == [n] + small_source.encode("hi")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model": "llama"}, "SentencePiece"),
        ({"model": "bert"}, "WordPiece"),
        ({"model": None}, "no tokenizer"),
        ({"pre": "deepseek-coder"}, "smollm"),  # names the supported ones
        ({"pre": None}, "pre-tokenizer None"),
        ({"merges": None}, "tokenizer.ggml.merges"),
        ({"types": [1, 1]}, "token types"),
    ],
)
def test_unsupported_gguf_tokenizers_raise_clear_errors(tmp_path, small_source, kwargs, message):
    n = len(small_source.vocab)
    tokens = [bytes_to_token(small_source.vocab[i]) for i in range(n)]
    merges = [
        f"{bytes_to_token(small_source.vocab[a])} {bytes_to_token(small_source.vocab[b])}"
        for a, b in small_source.merges
    ]
    args = {"tokens": tokens, "types": [1] * n, "merges": merges, **kwargs}
    path = write_gguf(tmp_path / "bad.gguf", **args)
    with pytest.raises(ValueError, match=message):
        from_gguf(path)


def test_not_a_gguf_and_truncated_gguf(tmp_path):
    with pytest.raises(FileNotFoundError):
        from_gguf(tmp_path / "missing.gguf")
    (tmp_path / "text.gguf").write_text("just some text, not a model\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a GGUF file"):
        from_gguf(tmp_path / "text.gguf")
    data = asset("gpt2", "tokenizer").read_bytes()
    for size in (1000, 200_000, len(data) - 1000):
        cut = tmp_path / f"cut{size}.gguf"
        cut.write_bytes(data[:size])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            from_gguf(cut)


def test_pre_tokenizer_table_builds():
    from lucidlm.tokenizers.hf import PreTokenizer

    for name, spec in GGUF_PRE_TOKENIZERS.items():
        assert isinstance(PreTokenizer(None, spec).as_pattern(), str), name  # all compose into one regex


@pytest.mark.slow
def test_smollm2_matches_hf_on_a_large_corpus(smollm2, smollm2_hf):
    lines = build_mixed_corpus(5_000_000, seed=7).splitlines(keepends=True)
    assert_same_ids(smollm2, smollm2_hf, lines)
