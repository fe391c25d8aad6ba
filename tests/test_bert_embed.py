"""BERT loading (``lucidlm.loading.bert``), sentence embeddings (``lucidlm.embed``) and similarity
search, each against transformers run live on the same files (transformers is a test dependency).

The MiniLM tests need the ``all-minilm-l6-v2`` asset and skip with the reason when it cannot be had.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from lucidlm.cli.embeddings import register_cli  # noqa: E402
from lucidlm.embeddings import embed, load_embedder, mean_pool  # noqa: E402
from lucidlm.embeddings.search import (  # noqa: E402
    embed_corpus,
    read_corpus,
    search,
    search_file,
)
from lucidlm.loading.bert import config_from_hf, load_bert  # noqa: E402
from lucidlm.loading.hf import HF_FAMILIES, state_from_hf  # noqa: E402

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "minilm_corpus.txt"

# Varied lengths (one far beyond 512 word pieces, one empty), punctuation, accents, CJK, emoji.
SENTENCES = [
    "a cat sat on the mat",
    "Hello!",
    "",
    "The quick brown fox jumps over the lazy dog, and then it runs back into the forest to sleep "
    "under an old oak tree while the farmer, who has seen it all before, simply shrugs and goes "
    "back to reading his newspaper about the weather and the price of wheat.",
    "naïve café — Ünïcödé 東京 🙂",
    "3.14159 is approximately pi; e = 2.71828... (Euler's number)",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "tokenization " * 300,
    "Sentence embeddings map text to vectors.",
]


# --- a tiny random BERT saved by transformers ---------------------------------------------------
def _tiny_bert(tmp_path: Path, cls_name: str = "BertModel", hidden_act: str = "gelu") -> tuple[Path, object]:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=64, type_vocab_size=2,
                                  hidden_act=hidden_act)
    model = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():  # BERT's init leaves LayerNorms at 1/0 and biases at 0: make every tensor count
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out = tmp_path / cls_name
    model.save_pretrained(out)
    return out, model


def _batch(B: int = 3, T: int = 11, vocab: int = 99, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    lengths = [T, T - 4, 3][:B]
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    ids = ids * mask  # right padding with id 0
    types = torch.zeros_like(ids)
    types[0, 6:] = 1  # a sentence pair in row 0
    return ids, mask, types


@pytest.mark.parametrize("cls_name, hidden_act", [("BertModel", "gelu"), ("BertModel", "gelu_new"),
                                                  ("BertForMaskedLM", "gelu")])
def test_tiny_random_bert_matches_transformers(tmp_path, cls_name, hidden_act):
    path, hf = _tiny_bert(tmp_path, cls_name, hidden_act)
    ours = load_bert(path)
    ids, mask, types = _batch()
    with torch.no_grad():
        hf_base = hf if cls_name == "BertModel" else hf.bert
        ref = hf_base(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = ours(ids, attention_mask=mask, token_types=types)
    real = mask.bool()
    assert got.shape == ref.shape
    assert (got[real] - ref[real]).abs().max().item() < 1e-4
    # without padding (the mask-free path) too
    with torch.no_grad():
        ref = hf_base(input_ids=ids[:1], token_type_ids=types[:1]).last_hidden_state
        got = ours(ids[:1], token_types=types[:1])
    assert (got - ref).abs().max().item() < 1e-4


def test_config_from_hf_maps_bert_and_rejects_variants():
    hf = transformers.BertConfig(hidden_size=48, num_attention_heads=6, num_hidden_layers=3).to_dict()
    cfg = config_from_hf(hf)
    assert (cfg.arch, cfg.norm_placement, cfg.embed_norm, cfg.final_norm) == ("encoder", "post", True, False)
    assert (cfg.n_embd, cfg.n_head, cfg.n_layer, cfg.activation) == (48, 6, 3, "gelu")
    with pytest.raises(ValueError, match="position_embedding_type"):
        config_from_hf({**hf, "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="hidden_act"):
        config_from_hf({**hf, "hidden_act": "mish"})
    with pytest.raises(ValueError, match="model_type"):
        config_from_hf({**hf, "model_type": "gpt2"})
    with pytest.raises(ValueError, match="num_hidden_layers"):
        config_from_hf({k: v for k, v in hf.items() if k != "num_hidden_layers"})


def test_bad_checkpoints_name_the_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    path, _ = _tiny_bert(tmp_path)
    tensors = load_file(path / "model.safetensors")
    cfg = config_from_hf(json.loads((path / "config.json").read_text()))
    missing = {k: v for k, v in tensors.items() if k != "encoder.layer.1.attention.self.key.bias"}
    with pytest.raises(ValueError, match=r"encoder\.layer\.1\.attention\.self\.key\.bias"):
        state_from_hf(missing, cfg, HF_FAMILIES["bert"])
    with pytest.raises(ValueError, match=r"unexpected tensors \['encoder\.layer\.1\."):
        state_from_hf(tensors, cfg.replace(n_layer=1), HF_FAMILIES["bert"])
    bad = dict(tensors, **{"encoder.layer.0.intermediate.dense.weight": torch.zeros(36, 32)})
    save_file(bad, path / "model.safetensors")
    with pytest.raises(ValueError, match=r"layers\.0\.mlp\.fc\.weight"):
        load_bert(path)
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="pickle"):
        load_bert(path)
    with pytest.raises(FileNotFoundError):
        load_bert(tmp_path / "nowhere")


def test_embed_from_a_bert_directory(tmp_path, minilm_dir):
    """Any HF BERT directory with a tokenizer.json embeds (a tiny model with the MiniLM vocab)."""
    from lucidlm.tokenizers import load_tokenizer

    vocab = load_tokenizer(minilm_dir / "tokenizer.json").vocab_size
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, max_position_embeddings=40)
    transformers.BertModel(cfg).save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes((minilm_dir / "tokenizer.json").read_bytes())
    e = embed(["one", "two words", "x " * 100], model=tmp_path)  # default max_length: the 40 positions
    assert e.shape == (3, 16)
    assert torch.allclose(e.norm(dim=1), torch.ones(3))


# --- all-MiniLM-L6-v2 -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder(minilm_dir):
    return load_embedder()


@pytest.fixture(scope="module")
def reference(minilm_dir):
    """transformers' BertModel + HF tokenizers (truncating at 256, as sentence-transformers) + pooling."""
    tokenizers = pytest.importorskip("tokenizers")
    d = minilm_dir
    model = transformers.BertModel.from_pretrained(d).eval()
    tok = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding()

    def run(texts: list[str]) -> torch.Tensor:
        enc = tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        with torch.no_grad():
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        return F.normalize(mean_pool(h, mask), dim=1)

    return run


def test_minilm_embeddings_match_transformers(embedder, reference, caplog):
    with caplog.at_level(logging.WARNING, logger="lucidlm.embed"):
        got = embed(SENTENCES, batch_size=3)  # three batches, each padded, in sorted order
    assert "1 of 9 texts were longer than 256 tokens" in caplog.text
    ref = reference(SENTENCES)
    assert got.shape == (len(SENTENCES), 384)
    cos = (got * ref).sum(dim=1)
    print(f"min cosine to transformers: {cos.min().item():.8f}")
    assert cos.min().item() >= 0.9999
    assert torch.allclose(got.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5)
    # batching and order do not matter
    one_by_one = torch.cat([embed([s]) for s in SENTENCES[:4]])
    assert torch.allclose(one_by_one, got[:4], atol=1e-5)


def test_front_door_function_and_single_text(embedder):
    import lucidlm

    e = lucidlm.embed(["a cat sat on the mat"])
    assert torch.equal(e, embed("a cat sat on the mat"))
    assert e.shape == (1, 384)
    assert embed([]).shape == (0, 384)
    assert load_embedder() is embedder  # loaded once per process


def test_length_limits(embedder):
    long = "word " * 600  # 600 word pieces + [CLS], [SEP]: beyond the 512 positions
    with pytest.raises(ValueError, match="602 tokens long, more than max_length=256"):
        embed([long], truncate=False)
    with pytest.raises(ValueError, match="max_length=513"):
        embed([long], max_length=513)
    # the rule: [CLS] + the first max_length - 2 word pieces + [SEP]
    rows = embedder.tokenize([long], 512, truncate=True)
    tok = embedder.tokenizer
    assert len(rows[0]) == 512
    assert (rows[0][0], rows[0][-1]) == (tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]"))
    assert embed([long], max_length=512).shape == (1, 384)
    with pytest.raises(TypeError, match="text 1 is a int"):
        embed(["ok", 3])
    with pytest.raises(ValueError, match="batch_size"):
        embed(["ok"], batch_size=0)


# --- search --------------------------------------------------------------------------------------
def test_search_ranks_the_obvious_neighbour_first(embedder):
    texts, lines, _ = read_corpus(CORPUS)
    assert lines == [1, 2, 3, 5, 6, 7]  # line 4 is blank
    hits = search("a cat sat on the mat", texts, top=3, model=embedder)
    assert hits[0].text == "the kitten sits on a rug"
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score > hits[1].score + 0.2
    hits = search_file(CORPUS, "a rocket reached the red planet", top=10, model=embedder, cache=False)
    assert (hits[0].line, hits[0].text) == (5, "The spacecraft entered orbit around Mars.")
    assert len(hits) == 6  # top is capped by the corpus size
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_corpus_embeddings_are_cached_by_content(embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("LUCIDLM_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS.read_text(encoding="utf-8"), encoding="utf-8")
    first = embed_corpus(corpus, model=embedder)
    second = embed_corpus(corpus, model=embedder)
    assert not first.cached and second.cached
    assert torch.equal(first.embeddings, second.embeddings)
    files = list((tmp_path / "home" / "embeddings").rglob("*.safetensors"))
    assert len(files) == 1 and files[0].name.endswith("-L256.safetensors")
    corpus.write_text("just one line\n", encoding="utf-8")  # new content: a new entry
    assert not embed_corpus(corpus, model=embedder).cached
    files[0].write_bytes(b"not safetensors")  # a broken entry is recomputed, not trusted
    corpus.write_text(CORPUS.read_text(encoding="utf-8"), encoding="utf-8")
    again = embed_corpus(corpus, model=embedder)
    assert not again.cached and torch.allclose(again.embeddings, first.embeddings)


def test_search_bad_input(embedder, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\t\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        search_file(empty, "x", model=embedder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        search_file(tmp_path / "missing.txt", "x", model=embedder)
    with pytest.raises(ValueError, match="not a file"):
        search_file(tmp_path, "x", model=embedder)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("first line\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8: byte 0xe9 at line 2"):
        search_file(latin1, "x", model=embedder)
    with pytest.raises(ValueError, match="query is empty"):
        search_file(CORPUS, "  ", model=embedder)
    with pytest.raises(ValueError, match="top must be >= 1"):
        search("x", ["a", "b"], top=0, model=embedder)
    with pytest.raises(ValueError, match="corpus is empty"):
        search("x", [], model=embedder)
    with pytest.raises(ValueError, match="shape"):
        search("x", ["a", "b"], model=embedder, corpus_embeddings=torch.zeros(3, 384))


# --- command line --------------------------------------------------------------------------------
def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lucidlm")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_search_and_encode(embedder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUCIDLM_HOME", str(tmp_path))
    assert _run(["embed", "search", "--corpus", str(CORPUS), "--query", "a cat sat on the mat",
                 "--top", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("  1  0.")
    assert out[0].endswith("line 1: the kitten sits on a rug")
    assert _run(["embed", "search", "--corpus", str(CORPUS), "--query", "guitar concert", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5 and hits[0]["line"] == 7 and hits[0]["rank"] == 1
    assert _run(["embed", "encode", "hello world", "good morning", "--show", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "shape (2, 384)  (L2-normalised, mean-pooled)" and out[1].endswith("...]  hello world")
    assert _run(["embed", "encode", "hello world", "--json"]) == 0
    vec = torch.tensor(json.loads(capsys.readouterr().out))
    assert vec.shape == (1, 384) and torch.allclose(vec, embed(["hello world"]), atol=1e-6)
    with pytest.raises(SystemExit):
        _run(["embed", "search", "--corpus", str(CORPUS), "--query", "x", "--top", "0"])
    assert "expected a positive integer" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        _run(["embed", "search", "--corpus", str(tmp_path / "nope.txt"), "--query", "x"])
