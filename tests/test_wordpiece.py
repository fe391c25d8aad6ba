"""WordPieceTokenizer against Hugging Face ``tokenizers`` (the independent reference).

The real files are all-MiniLM-L6-v2's tokenizer.json and vocab.txt, fetched through
``lucidlm.assets``; tests that need them skip with the reason when they cannot be had. A tiny
hand-made vocab covers the algorithm itself, with no download.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidlm.tokenizers.wordpiece import WordPieceTokenizer

hf_tokenizers = pytest.importorskip("tokenizers")


def _asset(key: str) -> Path:
    try:
        from lucidlm.assets import asset_path
    except ImportError as exc:
        pytest.skip(f"lucidlm.assets is not available ({exc})")
    try:
        return asset_path("all-minilm-l6-v2", key)
    except (RuntimeError, OSError, ValueError) as exc:
        pytest.skip(f"all-MiniLM-L6-v2 {key} cannot be had (offline? set LUCIDLM_WHEELHOUSE): {exc}")


@pytest.fixture(scope="module")
def tokenizer_json() -> Path:
    return _asset("tokenizer.json")


@pytest.fixture(scope="module")
def vocab_txt() -> Path:
    return _asset("vocab.txt")


@pytest.fixture(scope="module")
def ours(tokenizer_json: Path) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_tokenizer_json(tokenizer_json)


@pytest.fixture(scope="module")
def hf(tokenizer_json: Path):
    """HF's tokenizer without the file's truncation and padding (those are tested on batches)."""
    tok = hf_tokenizers.Tokenizer.from_file(str(tokenizer_json))
    tok.no_truncation()
    tok.no_padding()
    return tok


CORPUS = [
    # English prose: punctuation, contractions, numbers
    "The quick brown fox jumps over the lazy dog.",
    "I can't believe it's not butter! He said: \"Well, we'll see...\" (didn't he?)",
    "Prices rose 3.5% to $1,234.56 on 2024-01-15; e.g. 10x faster -- approx. #1 @home ~ok^2 `x` |y| <z>",
    "Unaffable, unbelievably un-American; O'Neill's rock'n'roll.",
    # accented Latin
    "Café naïve résumé Ångström crème brûlée ÉCOLE ÇA DÉJÀ",
    "El niño comió piñata en España; Über Straße, Grüße an den Fußgänger.",
    "Øresund, Søren Kierkegaard, Æble, Œuvre, İstanbul, ǅemal, ﬁne ﬀ",
    # other scripts
    "Η γρήγορη καφέ αλεπού πηδάει. ΟΔΟΣ ΣΊΣΥΦΟΣ",
    "Съешь же ещё этих мягких французских булок, да выпей чаю!",
    "مرحبا بالعالم، كيف حالك؟ ١٢٣",
    "नमस्ते दुनिया, आप कैसे हैं? क्षत्रिय",
    "שלום עולם",
    "ภาษาไทยไม่มีช่องว่าง",
    # CJK mixed with Latin
    "我爱自然语言处理。BERT模型很好用！",
    "東京タワーは333メートルです。Tokyo Tower, ひらがな カタカナ",
    "한국어 텍스트와 English 섞기: 안녕하세요!",
    "𠀀𠀁 CJK ext B, 豈 compatibility, 𪜀 ext C",
    # emoji, symbols, compatibility forms
    "I ❤️ NLP 🤗🎉 👩‍👩‍👧 👍🏽 🇫🇷",
    "Ⅻ ½ ² ³ ① ™ ℃ ㈱ ＡＢＣ１２３！ ≠ ≤ ∑",
    "a\u0301\u0327 e\u0308\u0304 combining marks on their own: \u0301\u0302",
    # control characters and odd whitespace
    "tab\there\nnew line\r\nzero\x00width\u200bjoiner\u200dsoft\xadhyphen\ufeffbom\x7fdel\ufffdrepl",
    "line\u2028separator\u2029paragraph\x0bvtab\x0cff\x85nel\u3000ideo\u00a0nbsp\u202fnarrow",
    "\x01\x02\x1b[31mred\x1b[0m",
    # long words
    "a" * 100,
    "a" * 101,
    "supercalifragilisticexpialidocious" * 4,
    "pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    # URLs, code, markup
    "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2?tab=readme#usage",
    "def f(x):\n    return {'a': x**2}  # comment\n",
    '<div class="x">a &amp; b</div> user@example.com C:\\Users\\me\\file.txt',
    # special tokens typed in the text (matched case-sensitively, before normalization)
    "[CLS] Hello [SEP] world [MASK]! [cls] [Sep] [UNK][PAD]x[MASK]y",
    "[[SEP]] [ SEP ] [SEP[SEP]",
    # nothing
    "   \t\n\u3000\u00a0 ",
    "",
]


@pytest.mark.parametrize("text", CORPUS)
def test_ids_identical_to_hf(ours, hf, text):
    assert ours.encode(text) == hf.encode(text).ids
    assert ours.encode(text, add_special_tokens=False) == hf.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("text", CORPUS)
def test_tokens_and_decode_identical_to_hf(ours, hf, text):
    ids = hf.encode(text).ids
    assert ours.tokenize(text) == hf.encode(text, add_special_tokens=False).tokens
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=False) == hf.decode(ids, skip_special_tokens=False)


# Arbitrary text, plus an alphabet that hits the interesting classes far more often than chance.
_TRICKY = st.sampled_from(
    list("aZé ßİΣ\t\n\r\x00\x0b\x85\u2028\u3000\u00a0\u200b\ufffd.,'!?-$#@[]()")
    + [
        "[SEP]",
        "[MASK]",
        "[CLS]",
        "[sep]",
        "\u0301",
        "\u0338",
        "你",
        "豈",
        "한",
        "ー",
        "😀",
        "🏽",
        "##",
        "ing",
    ]
)


@settings(max_examples=1000, deadline=None)
@given(text=st.text(max_size=30) | st.lists(_TRICKY, max_size=20).map("".join))
def test_arbitrary_unicode_identical_to_hf(ours, hf, text):
    assert ours.encode(text) == hf.encode(text).ids


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.integers(0, 30521), max_size=20))
def test_decode_arbitrary_ids_identical_to_hf(ours, hf, ids):
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=False) == hf.decode(ids, skip_special_tokens=False)


def test_pairs_with_token_type_ids_identical_to_hf(ours, hf):
    for a, b in [
        ("How old are you?", "I'm 6 years old."),
        ("", "only b"),
        ("only a", ""),
        ("你好", "[MASK] ok"),
    ]:
        ref = hf.encode(a, b)
        assert ours.encode(a, b) == ref.ids
        assert ours.encode_with_type_ids(a, b) == (ref.ids, ref.type_ids)
        assert ours.encode_with_type_ids(a, b, add_special_tokens=False) == (
            hf.encode(a, b, add_special_tokens=False).ids,
            hf.encode(a, b, add_special_tokens=False).type_ids,
        )


def _batch_matches(batch, encodings) -> None:
    assert batch.input_ids == [e.ids for e in encodings]
    assert batch.attention_mask == [e.attention_mask for e in encodings]
    assert batch.token_type_ids == [e.type_ids for e in encodings]


LONG = " ".join(CORPUS) * 3  # well over 128 tokens


def test_batch_uses_the_files_truncation_and_padding(ours, tokenizer_json):
    # all-MiniLM-L6-v2's tokenizer.json pins truncation and fixed padding at 128 (not 512).
    ref = hf_tokenizers.Tokenizer.from_file(str(tokenizer_json))
    assert (ours.max_length, ours.padding) == (128, 128)
    texts = ["short", "a somewhat longer sentence, with punctuation!", LONG, ""]
    batch = ours.encode_batch(texts)
    _batch_matches(batch, ref.encode_batch(texts))
    assert [len(row) for row in batch.input_ids] == [128] * 4
    assert batch.attention_mask[0] == [1, 1, 1] + [0] * 125
    assert batch.input_ids[2][-1] == ours.token_to_id("[SEP]")


@pytest.mark.parametrize("max_length", [5, 8, 16, 17])
def test_batch_of_pairs_longest_first_truncation_identical_to_hf(ours, tokenizer_json, max_length):
    ref = hf_tokenizers.Tokenizer.from_file(str(tokenizer_json))
    ref.enable_truncation(max_length)
    ref.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in the batch
    # Not LONG: HF keeps every overflowing window of both texts, pairwise, which explodes.
    texts = ["one two three four five six seven", "a", CORPUS[1], "x y"]
    pairs = ["b", "nine ten eleven twelve thirteen fourteen", CORPUS[2], "z"]
    batch = ours.encode_batch(texts, pairs, max_length=max_length, padding="longest")
    _batch_matches(batch, ref.encode_batch(list(zip(texts, pairs, strict=True))))


def test_batch_padding_options(ours):
    batch = ours.encode_batch(["a b c", "a"], padding="longest", max_length=512)
    assert batch.input_ids == [[101, 1037, 1038, 1039, 102], [101, 1037, 102, 0, 0]]
    assert batch.attention_mask == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert len(batch) == 2
    ragged = ours.encode_batch(["a b c", "a"], padding=False)
    assert ragged.input_ids == [[101, 1037, 1038, 1039, 102], [101, 1037, 102]]
    assert ours.encode_batch(["a"], padding="max_length", max_length=6).input_ids == [
        [101, 1037, 102, 0, 0, 0]
    ]
    assert ours.encode("a b c d", max_length=4) == [101, 1037, 1038, 102]
    with pytest.raises(ValueError, match="special tokens"):
        ours.encode("a b", max_length=1)
    with pytest.raises(TypeError, match="list of texts"):
        ours.encode_batch("not a list")


def test_from_vocab_file_gives_the_same_ids(ours, vocab_txt):
    from_vocab = WordPieceTokenizer.from_vocab_file(vocab_txt, lowercase=True)
    assert from_vocab.vocab_size == ours.vocab_size == 30522
    for text in CORPUS:
        assert from_vocab.encode(text) == ours.encode(text)
        assert from_vocab.decode(ours.encode(text)) == ours.decode(ours.encode(text))


def test_lookups(ours):
    assert ours.token_to_id("[CLS]") == 101 and ours.token_to_id("##ing") == 2075
    assert ours.token_to_id("not-a-token") is None
    assert ours.id_to_token(101) == "[CLS]"
    assert ours.pad_token_id == 0 and ours.unk_token_id == 100
    assert ours.special_tokens == {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    assert ours.tokenize("Unaffable!") == ["una", "##ffa", "##ble", "!"]
    assert ours.tokenize("Héllo WORLD 大学") == ["hello", "world", "大", "学"]


def test_save_writes_a_tokenizer_json_that_hf_and_we_read(ours, hf, tmp_path):
    path = ours.save(tmp_path / "tokenizer.json")
    again = WordPieceTokenizer.load(path)
    theirs = hf_tokenizers.Tokenizer.from_file(str(path))
    theirs.no_padding()
    theirs.no_truncation()
    for text in CORPUS:
        assert again.encode(text) == ours.encode(text) == theirs.encode(text).ids == hf.encode(text).ids
    assert again.to_dict() == ours.to_dict()


def test_bad_inputs(ours, tmp_path):
    with pytest.raises(ValueError, match="unknown token id 30522.*vocab_size 30522"):
        ours.decode([101, 30522])
    with pytest.raises(ValueError, match="-1"):
        ours.id_to_token(-1)
    with pytest.raises(TypeError):
        ours.encode(b"bytes")
    with pytest.raises(FileNotFoundError):
        WordPieceTokenizer.from_tokenizer_json(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError):
        WordPieceTokenizer.from_vocab_file(tmp_path / "missing.txt")
    bpe = tmp_path / "bpe.json"
    bpe.write_text(json.dumps({"model": {"type": "BPE", "vocab": {}, "merges": []}}))
    with pytest.raises(ValueError, match="BPE tokenizer.json, not a WordPiece"):
        WordPieceTokenizer.from_tokenizer_json(bpe)
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"hidden_size": 384}))
    with pytest.raises(ValueError, match="no 'model' section"):
        WordPieceTokenizer.from_tokenizer_json(other)
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": ')
    with pytest.raises(ValueError, match="not valid JSON"):
        WordPieceTokenizer.from_tokenizer_json(broken)


# -- a tiny vocab: the algorithm itself, no download needed -------------------------------------

TINY = "[PAD] [UNK] [CLS] [SEP] [MASK] un ##aff ##able a ##ff ##a ! run ##ning ##n ##i ##g".split()


@pytest.fixture(scope="module")
def tiny() -> WordPieceTokenizer:
    return WordPieceTokenizer({t: i for i, t in enumerate(TINY)}, max_input_chars_per_word=9)


@pytest.fixture(scope="module")
def hf_tiny():
    return _build_hf_tiny()


def _build_hf_tiny():
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

    tok = hf_tokenizers.Tokenizer(
        models.WordPiece({t: i for i, t in enumerate(TINY)}, unk_token="[UNK]", max_input_chars_per_word=9)
    )
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return tok


def test_greedy_longest_match_first(tiny):
    assert tiny.wordpiece("unaffable") == ["un", "##aff", "##able"]
    assert tiny.wordpiece("running") == ["run", "##ning"]  # longest "##ning", not "##n" + ...
    assert tiny.wordpiece("runnig") == ["run", "##n", "##i", "##g"]
    assert tiny.wordpiece("unx") == ["[UNK]"]  # "x" cannot be covered: the whole word is unknown
    assert tiny.wordpiece("runningg") == ["run", "##ning", "##g"]
    assert tiny.wordpiece("runningggg") == ["[UNK]"]  # 10 characters > max_input_chars_per_word
    assert tiny.tokenize("Un-affable!! RUNNING") == [
        "un",
        "[UNK]",
        "a",
        "##ff",
        "##able",
        "!",
        "!",
        "run",
        "##ning",
    ]
    assert tiny.decode(tiny.encode("unaffable running !")) == "unaffable running!"


def test_normalize_and_pre_tokenize_steps(tiny):
    assert tiny.normalize("Héllo\tWORLD\x00\u200b 你好") == "hello world  你  好 "
    assert tiny.pre_tokenize("hello, world! don't") == ["hello", ",", "world", "!", "don", "'", "t"]
    assert tiny.normalize("ΟΔΟΣ") == "οδοσ"  # one character at a time: no final-sigma rule


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(st.sampled_from([*"unafblerig!- UNAFF\u0301", "[MASK]", "[SEP]"]), max_size=30).map("".join)
)
def test_tiny_vocab_identical_to_hf(tiny, hf_tiny, text):
    assert tiny.encode(text) == hf_tiny.encode(text).ids
    ids = hf_tiny.encode(text).ids
    assert tiny.decode(ids) == hf_tiny.decode(ids)


# -- every code point (slow) ------------------------------------------------------------------


@pytest.mark.slow
def test_every_code_point_normalizes_and_splits_like_hf(ours, hf):
    """All 1.1M code points, each between two letters, through steps 1a-d."""
    normalizer, pre_tokenizer = hf.normalizer, hf.pre_tokenizer
    bad = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        text = f"a{chr(cp)}b"
        normalized = normalizer.normalize_str(text)
        if ours.normalize(text) != normalized or ours.pre_tokenize(normalized) != [
            w for w, _ in pre_tokenizer.pre_tokenize_str(normalized)
        ]:
            bad.append(f"U+{cp:04X} ({unicodedata.category(chr(cp))})")
    assert not bad, f"{len(bad)} code points differ from HF, e.g. {bad[:20]}"


@pytest.mark.parametrize("strategy", ["only_first", "only_second"])
def test_only_first_and_only_second_truncation_identical_to_hf(tokenizer_json, strategy):
    ref = hf_tokenizers.Tokenizer.from_file(str(tokenizer_json))
    ref.no_padding()
    ref.enable_truncation(12, strategy=strategy)
    tok = WordPieceTokenizer.from_tokenizer_json(tokenizer_json)
    tok.truncation_strategy = strategy
    a, b = "one two three four five six seven eight", "nine ten eleven twelve thirteen fourteen"
    batch = tok.encode_batch([a], [b], padding=False, max_length=12)
    _batch_matches(batch, ref.encode_batch([(a, b)]))
    with pytest.raises(ValueError, match="cutting only"):
        tok.encode_batch(["x"], ["y z"], padding=False, max_length=4)


def test_unsupported_tokenizer_json_settings_are_named(tokenizer_json, tmp_path):
    data = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    data["normalizer"] = {"type": "NFKC"}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer.json: normalizer 'NFKC' is not supported"):
        WordPieceTokenizer.from_tokenizer_json(path)
    del data["model"]["vocab"]
    data["normalizer"] = None
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="corrupt WordPiece tokenizer.json: missing or malformed 'vocab'"):
        WordPieceTokenizer.from_tokenizer_json(path)


def test_tokenizer_json_with_normalized_added_token_and_no_decoder(tmp_path):
    """Other code paths of the loader: BertProcessing, an added token matched after normalization
    (with an id past the vocab), and no decoder (HF then joins tokens with spaces)."""
    ref = _build_hf_tiny()
    ref.add_tokens([hf_tokenizers.AddedToken("Running Man", normalized=True)])
    ref.decoder = None
    path = tmp_path / "tokenizer.json"
    ref.save(str(path))
    ours = WordPieceTokenizer.from_tokenizer_json(path)
    assert ours.vocab_size == len(TINY) + 1 == ref.get_vocab_size()
    for text in ["RUNNING MAN un", "running man", "Running  Man", "xrunning many", "[SEP]running man[MASK]", ""]:
        ids = ref.encode(text).ids
        assert ours.encode(text) == ids, text
        assert ours.decode(ids) == ref.decode(ids)
        assert ours.decode(ids, skip_special_tokens=False) == ref.decode(ids, skip_special_tokens=False)
