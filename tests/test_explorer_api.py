"""The Explorer's JSON API, checked against independent references: tiktoken's ids and ranks, the
model's own forward pass and ``Trace``, the OpenAI-compatible server's ``usage``, hand-computed
pooling, softmax and PCA. The browser tests (tests/test_explorer_*_browser.py) check the pages."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lucidlm.explorer.app import MAX_BODY_BYTES, create_app  # noqa: E402
from lucidlm.explorer.tokens import expand  # noqa: E402
from lucidlm.explorer.workspace import Workspace  # noqa: E402
from lucidlm.inspection import Trace  # noqa: E402

SMOL, MINILM = "smollm2-135m-instruct", "all-minilm-l6-v2"


def tiktoken_encoding(name: str):
    """tiktoken's Encoding over the cached rank file (tiktoken's own download needs the internet)."""
    tiktoken = pytest.importorskip("tiktoken")
    from lucidlm.assets import asset_path
    from lucidlm.tokenizers.formats import TIKTOKEN_ENCODINGS, read_tiktoken_ranks

    known = TIKTOKEN_ENCODINGS[name]
    return tiktoken.Encoding(name, pat_str=known["pattern"], mergeable_ranks=read_tiktoken_ranks(asset_path(name)),
                             special_tokens=known["special_tokens"])


def tokens_of(client, **body) -> dict:
    """POST /api/tokens, its columns expanded to one dict per token (as the page does)."""
    r = client.post("/api/tokens", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    out["tokens"] = expand(out, out["text"])
    return out


def tensor(obj: dict) -> np.ndarray:
    """Decode a {"dtype", "shape", "b64"} tensor the way the page does (little-endian, C order)."""
    code = {"float32": "<f4", "float16": "<f2", "uint8": "u1", "int32": "<i4"}[obj["dtype"]]
    return np.frombuffer(base64.b64decode(obj["b64"]), dtype=code).reshape(obj["shape"])


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run = root / "tiny"
    run.mkdir()
    lines = [{"step": s, "split": "train", "loss": 4.0 - s / 100, "lr": 1e-3} for s in range(0, 50, 10)]
    lines.append({"step": 40, "split": "val", "loss": 3.7})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (root / "empty").mkdir()
    (root / "empty" / "config.json").write_text("{}")
    (root / "empty" / "last").mkdir()
    return root


@pytest.fixture(scope="module")
def ws(smollm2_path, minilm_dir, runs_dir):
    return Workspace([SMOL, MINILM], runs=[str(runs_dir)], max_tokens=512, max_chars=5000)


@pytest.fixture(scope="module")
def client(ws):
    return TestClient(create_app(ws))


@pytest.fixture(scope="module")
def traced(client):
    r = client.post("/api/trace", json={"model": SMOL, "text": "The capital of France is"})
    assert r.status_code == 200, r.text
    return r.json()


# -- tokens --------------------------------------------------------------------------------------

def test_token_spans_match_tiktoken_and_cover_the_text(client):
    enc = tiktoken_encoding("o200k_base")
    text = "Hello 🤔 world,\n\tnaïve 1599年 «Roméo»"
    body = tokens_of(client, tokenizer="o200k_base", text=text)
    assert [t["id"] for t in body["tokens"]] == enc.encode(text)
    assert body["count"] == len(enc.encode(text))
    raw = b"".join(bytes.fromhex(t["hex"]) if t["hex"] else t["text"].encode() for t in body["tokens"])
    assert raw == text.encode("utf-8")
    units = text.encode("utf-16-le")  # spans count UTF-16 units, as the page's JavaScript does

    def span(t):
        return units[2 * t["start"]:2 * t["end"]].decode("utf-16-le")

    for t in body["tokens"]:
        piece = enc.decode_single_token_bytes(t["id"])
        assert (bytes.fromhex(t["hex"]) if t["hex"] else t["text"].encode()) == piece
        try:
            assert t["text"] == piece.decode("utf-8")
            assert span(t) == t["text"]  # a whole-character token: its exact span
        except UnicodeDecodeError:
            assert t["text"] is None  # part of a character: bytes, never U+FFFD
            assert span(t) in ("🤔", " 🤔", "年")  # the character it holds part of


def test_chat_mode_count_equals_the_servers_usage(client, ws):
    from lucidlm.serve.app import create_app as create_server

    question = "What is the capital of France?"
    body = tokens_of(client, tokenizer=SMOL, text=question, chat=True)
    assert body["text"].startswith("<|im_start|>system") and body["text"].endswith("<|im_start|>assistant\n")
    assert body["tokens"][0]["special"] and body["tokens"][0]["text"] == "<|im_start|>"
    model, tokenizer = ws.model(SMOL)
    with TestClient(create_server(model, tokenizer, model_name=SMOL)) as server:
        r = server.post("/v1/chat/completions", json={"model": SMOL, "max_tokens": 1,
                                                       "messages": [{"role": "user", "content": question}]})
    assert r.status_code == 200, r.text
    assert body["count"] == r.json()["usage"]["prompt_tokens"]


def test_chat_mode_without_a_template_is_a_clear_400(client):
    r = client.post("/api/tokens", json={"tokenizer": "cl100k_base", "text": "hi", "chat": True})
    assert r.status_code == 400 and "chat template" in r.json()["error"]["message"]


def test_several_tokenizers_in_one_request_each_with_its_own_answer_or_error(client):
    body = client.post("/api/tokens", json={"tokenizers": ["gpt2", "cl100k_base", "nope"], "text": "Hi there",
                                            "chat": False}).json()
    alone = client.post("/api/tokens", json={"tokenizer": "cl100k_base", "text": "Hi there"}).json()
    assert [r["tokenizer"] for r in body["results"]] == ["gpt2", "cl100k_base", "nope"]
    assert body["results"][1] == alone
    assert "unknown tokenizer" in body["results"][2]["error"]["message"]
    chat = client.post("/api/tokens", json={"tokenizers": [SMOL, "gpt2"], "text": "Hi", "chat": True}).json()
    assert chat["results"][0]["count"] > 10 and "chat template" in chat["results"][1]["error"]["message"]
    r = client.post("/api/tokens", json={"text": "Hi"})
    assert r.status_code == 400 and "tokenizer" in r.json()["error"]["message"]


def test_wordpiece_tokens_are_pieces_with_cls_and_sep(client):
    body = tokens_of(client, tokenizer=MINILM, text="Tokenization rocks")
    pieces = [t["text"] for t in body["tokens"]]
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and "##ization" in pieces
    assert body["tokens"][0]["special"] and not body["bpe"]


def test_merge_replay_follows_tiktokens_ranks(client):
    enc = tiktoken_encoding("cl100k_base")
    word = next(w for w in [b" tokenization", b" international", b" understanding", b" information"]
                if len(enc.encode(w.decode())) == 1)
    token = enc.encode_single_token(word)
    body = client.get("/api/merges", params={"tokenizer": "cl100k_base", "id": token}).json()
    assert body["final"] == [word.hex(" ")]
    ranks = [s["rank"] for s in body["steps"]]
    assert ranks == sorted(ranks)  # merges apply in rank order
    for step in body["steps"]:
        parts = [bytes.fromhex(p) for p in step["parts"]]
        merged = parts[step["merge"]] + parts[step["merge"] + 1]
        assert enc.encode_single_token(merged) == step["rank"]  # tiktoken: a token's rank is its id
    assert len(body["steps"]) == len(word) - 1


def test_merges_refuse_specials_and_wordpiece(client, ws):
    r = client.get("/api/merges", params={"tokenizer": MINILM, "id": 101})
    assert r.status_code == 400 and "BPE" in r.json()["error"]["message"]
    im_start = ws.tokenizer(SMOL).special_tokens["<|im_start|>"]
    r = client.get("/api/merges", params={"tokenizer": SMOL, "id": im_start})
    assert r.status_code == 400 and "special" in r.json()["error"]["message"]


# -- one traced forward pass -------------------------------------------------------------------

def test_trace_meta_and_next_token_logits_equal_the_model(traced, ws):
    model, tokenizer = ws.model(SMOL)
    assert traced["labels"] == [" capital", " of", " France", " is"][-4:] or traced["labels"][0] == "The"
    assert (traced["n_layer"], traced["n_head"], traced["kv_heads"], traced["causal"]) == (30, 9, 3, True)
    with torch.inference_mode():
        logits = model(torch.tensor([traced["ids"]]))[0, -1].float().numpy()
    got = tensor(traced["next"]["logits"])
    np.testing.assert_allclose(got, logits, rtol=1e-4, atol=1e-4)
    best = int(logits.argmax())
    assert traced["next"]["labels"][str(best)] == tokenizer.decode([best]) == " Paris"


def test_attention_head_and_grid_equal_the_trace(client, traced, ws):
    model, _ = ws.model(SMOL)
    trace = Trace(keep=["attn.weights"])
    with torch.inference_mode():
        model(torch.tensor([traced["ids"]]), trace=trace)
    want = trace["layers.29.attn.weights"][0, 4].numpy()  # (T, T)
    head = client.get("/api/attention/head", params={"trace": traced["trace"], "layer": -1, "head": 4}).json()
    assert (head["layer"], head["head"]) == (29, 4)
    got = tensor(head["weights"]).astype(np.float32)
    np.testing.assert_allclose(got, want, atol=1e-3)  # float16 on the wire
    np.testing.assert_allclose(got.sum(1), 1.0, atol=5e-3)
    assert np.all(np.triu(got, 1) == 0)  # causal: nothing above the diagonal

    grid = client.get("/api/attention/grid", params={"trace": traced["trace"]}).json()
    T = len(traced["ids"])
    thumbs = tensor(grid["thumbs"])
    assert thumbs.shape == (30, 9, T, T) and grid["size"] == T  # short prompt: one cell per token
    np.testing.assert_allclose(thumbs[29, 4] / 255, want, atol=1 / 255 + 1e-3)


def test_attention_grid_max_pools_long_prompts(client, ws):
    text = " ".join(["word"] * 100)
    meta = client.post("/api/trace", json={"model": SMOL, "text": text}).json()
    T = len(meta["ids"])
    grid = client.get("/api/attention/grid", params={"trace": meta["trace"]}).json()
    head = tensor(client.get("/api/attention/head", params={"trace": meta["trace"], "layer": 3, "head": 0})
                  .json()["weights"]).astype(np.float32)
    n = grid["size"]
    assert n == 32 and T > n
    cells = tensor(grid["thumbs"])[3, 0]
    for i, j in [(0, 0), (5, 2), (31, 31), (31, 0)]:  # adaptive pooling: block [floor(i*T/n), ceil((i+1)*T/n))
        r0, r1 = (i * T) // n, -((-(i + 1) * T) // n)
        c0, c1 = (j * T) // n, -((-(j + 1) * T) // n)
        assert abs(cells[i, j] / 255 - head[r0:r1, c0:c1].max()) <= 1 / 255 + 1e-3


def test_logit_lens_reads_the_residual_stream_through_the_head(client, traced, ws):
    model, _ = ws.model(SMOL)
    lens = client.get("/api/lens", params={"trace": traced["trace"], "last": 2}).json()
    assert len(lens["rows"]) == 60 and lens["positions"] == [len(traced["ids"]) - 2, len(traced["ids"]) - 1]
    trace = Trace(keep=["resid"])
    with torch.inference_mode():
        model(torch.tensor([traced["ids"]]), trace=trace)
        for row in (lens["rows"][10], lens["rows"][-1]):  # layer 5 after attention; the output
            x = trace[f"layers.{row['layer']}.{row['after']}.resid"][0, -2:]
            probs = torch.softmax(model.lm_head(model.norm(x)).float(), -1)  # by hand
            assert row["ids"] == probs.argmax(-1).tolist()
            np.testing.assert_allclose(row["p"], probs.max(-1).values.numpy(), rtol=1e-4)
    logits = tensor(traced["next"]["logits"])
    assert lens["final_ids"][-1] == int(logits.argmax())
    assert lens["rows"][-1]["p_final"] == lens["rows"][-1]["p"]  # the output's top token is the answer
    assert lens["labels"][str(lens["final_ids"][-1])] == " Paris"


def test_walkthrough_stages_equal_the_trace_and_point_at_the_source(client, traced, ws):
    from lucidlm.explorer.sources import PACKAGE

    model, _ = ws.model(SMOL)
    body = client.get("/api/walkthrough", params={"trace": traced["trace"], "layer": 2, "head": 1}).json()
    trace = Trace()
    with torch.inference_mode():
        model(torch.tensor([traced["ids"]]), trace=trace)
    want = [n for n in trace if not n.startswith("layers.") or n.startswith("layers.2.")]
    assert [s["name"] for s in body["stages"]] == want
    for s in body["stages"]:
        t = trace[s["name"]]
        assert s["shape"] == list(t.shape)
        window = t[0, 1] if s["per_head"] else t[0]
        expect = window[s["rows"]][:, s["cols"]].float().numpy()
        got = np.array([[-np.inf if v is None else v for v in row] for row in s["values"]])  # masked: null
        np.testing.assert_allclose(got, expect, atol=1e-4, rtol=1e-4)
        assert s["equation"].startswith("<math") and s["source"], s["name"]
        for src in s["source"]:
            lines = (PACKAGE / src["file"]).read_text().splitlines()
            assert src["start"] <= (src["highlight"] or src["start"]) <= src["end"] <= len(lines)
            if src["highlight"]:
                assert "trace.record(" in lines[src["highlight"] - 1]
    q = next(s for s in body["stages"] if s["stage"] == "attn.q")
    assert any(src["function"] == "RotaryEmbedding.forward" for src in q["source"])  # SmolLM2 rotates q, k


def test_source_serves_only_lucidlms_python_files(client):
    ok = client.get("/api/source", params={"file": "nn/attention.py"}).json()
    assert any("def attention_reference" in line for line in ok["lines"])
    for bad in ["../../../etc/passwd", "/etc/passwd", "data/tinyshakespeare.txt", "explorer/static/app.js"]:
        r = client.get("/api/source", params={"file": bad})
        assert r.status_code == 404 and "lucidlm" in r.json()["error"]["message"], bad


def test_encoder_trace_is_bidirectional_and_has_no_lens(client):
    meta = client.post("/api/trace", json={"model": MINILM, "text": "The cat sat"}).json()
    assert meta["kind"] == "encoder" and not meta["causal"] and "next" not in meta
    assert meta["labels"] == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    head = tensor(client.get("/api/attention/head", params={"trace": meta["trace"], "layer": 0, "head": 0})
                  .json()["weights"]).astype(np.float32)
    assert np.all(head[np.triu_indices(len(head), 1)] > 0)  # every token looks ahead too
    r = client.get("/api/lens", params={"trace": meta["trace"]})
    assert r.status_code == 400 and "encoder" in r.json()["error"]["message"]
    stages = client.get("/api/walkthrough", params={"trace": meta["trace"]}).json()["stages"]
    assert stages[-1]["name"] == "hidden" and "embed.token_types" in [s["name"] for s in stages]


def test_step_gives_the_next_logits_after_any_ids(client, ws, traced):
    model, _ = ws.model(SMOL)
    ids = traced["ids"] + [7042]  # ... is Paris
    body = client.post("/api/step", json={"model": SMOL, "ids": ids}).json()
    with torch.inference_mode():
        want = model(torch.tensor([ids]))[0, -1].float().numpy()
    np.testing.assert_allclose(tensor(body["logits"]), want, rtol=1e-4, atol=1e-4)
    rare = 40000  # far outside the top 100: sent ids are labelled too, so a sampled rare token has its text
    body = client.post("/api/step", json={"model": SMOL, "ids": ids + [rare]}).json()
    assert body["labels"][str(rare)] == ws.model(SMOL)[1].decode([rare]) and body["labels"]["7042"] == " Paris"


# -- embeddings and runs -------------------------------------------------------------------------

def test_embedding_map_cosines_and_pca(client):
    from lucidlm import embed

    sentences = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stocks fell sharply today."]
    body = client.post("/api/embeddings", json={"sentences": sentences}).json()
    e = embed(sentences).double().numpy()
    np.testing.assert_allclose(np.array(body["cosine"]), e @ e.T, atol=1e-4)
    c = e - e.mean(0)
    u, s, vt = np.linalg.svd(c, full_matrices=False)
    xy = np.array(body["xy"])
    for axis in range(2):  # a principal axis is defined up to its sign
        want = c @ vt[axis]
        np.testing.assert_allclose(np.abs(xy[:, axis]), np.abs(want), atol=1e-4)
    np.testing.assert_allclose(body["explained"], (s**2 / (s**2).sum())[:2], atol=1e-6)
    assert body["cosine"][0][1] > body["cosine"][0][2]  # cats closer to kittens than to stocks


def test_runs_and_their_metrics(client):
    runs = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    assert set(runs) == {next(n for n in runs if n.endswith("/tiny")), next(n for n in runs if n.endswith("/empty"))}
    tiny = next(n for n in runs if n.endswith("/tiny"))
    body = client.get("/api/runs/metrics", params={"run": tiny}).json()
    assert body["total"] == 6 and body["records"][-1] == {"step": 40, "split": "val", "loss": 3.7}
    later = client.get("/api/runs/metrics", params={"run": tiny, "since": 4}).json()
    assert len(later["records"]) == 2
    empty = next(n for n in runs if n.endswith("/empty"))
    r = client.get("/api/runs/metrics", params={"run": empty})
    assert r.status_code == 404 and "metrics.jsonl" in r.json()["error"]["message"]


# -- bad input: a clear message, and the app keeps working ---------------------------------------

@pytest.mark.parametrize("body, status, words", [
    ({"model": SMOL, "text": ""}, 400, "empty"),
    ({"model": SMOL, "text": "  \n"}, 400, "empty"),
    ({"model": SMOL, "text": "x" * 6000}, 400, "characters"),
    ({"model": SMOL, "text": "word " * 600}, 400, "tokens"),
    ({"model": "gpt2", "text": "hi"}, 404, "unknown model"),
    ({"model": "/etc/passwd", "text": "hi"}, 404, "unknown model"),
    ({"text": "hi"}, 400, "model"),
])
def test_bad_trace_requests_get_a_clear_message(client, body, status, words):
    r = client.post("/api/trace", json=body)
    assert r.status_code == status and words in r.json()["error"]["message"]
    assert client.post("/api/trace", json={"model": SMOL, "text": "Hello"}).status_code == 200


def test_limits_on_tokens_steps_and_body_size(client):
    r = client.post("/api/tokens", json={"tokenizer": "gpt2", "text": "a" * 5001})
    assert r.status_code == 400 and "at most 5,000" in r.json()["error"]["message"]
    r = client.post("/api/tokens", json={"tokenizer": "/etc/passwd", "text": "a"})
    assert r.status_code == 404 and "unknown tokenizer" in r.json()["error"]["message"]
    r = client.post("/api/step", json={"model": SMOL, "ids": [10**9]})
    assert r.status_code == 400 and "token ids" in r.json()["error"]["message"]
    r = client.post("/api/step", json={"model": SMOL, "ids": [1] * 600})
    assert r.status_code == 400 and "context" in r.json()["error"]["message"]
    r = client.post("/api/tokens", content=b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}",
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.get("/api/attention/grid", params={"trace": "nope"})
    assert r.status_code == 404 and "run the prompt again" in r.json()["error"]["message"]
    r = client.get("/api/attention/head", params={"trace": "nope", "layer": 0, "head": 0})
    assert r.status_code == 404


def test_workspace_refuses_what_it_cannot_open(tmp_path):
    with pytest.raises(ValueError, match="architecture preset"):
        Workspace(["gpt2"])
    with pytest.raises(ValueError, match="neither a model asset"):
        Workspace([str(tmp_path / "missing")])
    with pytest.raises(FileNotFoundError, match="run folder"):
        Workspace([SMOL], runs=[str(tmp_path / "none")])
    with pytest.raises(FileNotFoundError, match="corpus"):
        Workspace([SMOL], corpus=str(tmp_path / "none.txt"))


def test_a_gpt2_style_checkpoint_walks_through_learned_positions_layernorm_and_gelu(tmp_path):
    """The third family: learned positions, LayerNorm with biases, a GELU MLP (GPT-2's choices),
    from a lucidlm checkpoint directory, as the demo's or a user's own model arrives."""
    from lucidlm.loading.checkpoint import save_checkpoint
    from lucidlm.models import DecoderLM, ModelConfig
    from lucidlm.tokenizers import train_bpe
    from lucidlm.tokenizers.corpus import tiny_shakespeare

    torch.manual_seed(0)
    tok = train_bpe(tiny_shakespeare()[:20_000], 300, pattern="gpt2")
    cfg = ModelConfig(vocab_size=300, n_layer=2, n_head=4, n_embd=32, max_seq_len=64, positions="learned",
                      norm="layernorm", mlp="mlp", activation="gelu_tanh", bias=True)
    save_checkpoint(DecoderLM(cfg).eval(), tmp_path / "gpt", tok)
    client = TestClient(create_app(Workspace([str(tmp_path / "gpt")])))
    meta = client.post("/api/trace", json={"model": str(tmp_path / "gpt"), "text": "To be, or not"}).json()
    body = client.get("/api/walkthrough", params={"trace": meta["trace"], "layer": 1}).json()
    stages = {s["stage"]: s for s in body["stages"]}
    assert "embed.positions" in stages and stages["embed.positions"]["shape"][-1] == 32
    assert "LayerNorm" not in stages["attn.norm"]["equation"] and "var" in stages["attn.norm"]["equation"]
    assert "gelu_tanh" in stages["mlp.act"]["equation"] and "RoPE" not in stages["attn.q"]["equation"]
    assert all(src["function"] != "RotaryEmbedding.forward" for src in stages["attn.q"]["source"])
    assert any(src["function"] == "MLP.forward" for src in stages["mlp.act"]["source"])
    lens = client.get("/api/lens", params={"trace": meta["trace"]}).json()
    assert len(lens["rows"]) == 4


def test_corpus_neighbours_equal_lucidlms_search(tmp_path, minilm_dir, smollm2_path):
    from lucidlm.embeddings.search import search_file

    corpus = tmp_path / "lines.txt"
    corpus.write_text("The kitten naps in the sun.\n\nInterest rates went up again.\nIt is raining in Paris.\n"
                      "Dogs love to play fetch.\n")
    client = TestClient(create_app(Workspace([SMOL], corpus=str(corpus))))
    assert client.get("/api/info").json()["corpus"] == "lines.txt"
    sentences = ["A cat sleeping", "The bank raised rates"]
    body = client.post("/api/embeddings", json={"sentences": sentences}).json()
    for sentence, got in zip(sentences, body["neighbours"]):
        want = search_file(corpus, sentence, top=3)
        assert [(n["text"], n["line"]) for n in got] == [(h.text, h.line) for h in want]
        np.testing.assert_allclose([n["score"] for n in got], [h.score for h in want], atol=1e-4)
    assert body["neighbours"][0][0]["line"] == 1 and body["neighbours"][1][0]["line"] == 3


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "o200k_base", SMOL, MINILM])
def test_line_block_encoding_equals_whole_encoding(name, ws):
    """The tokens panel encodes a text in blocks cut after a newline followed by a non-space (one
    keystroke re-encodes one line): the ids must equal the whole text's, whatever the text."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from lucidlm.explorer.tokens import BlockEncoder, prompt_ids

    tok = ws.tokenizer(name)
    blocks = BlockEncoder(tok)
    pieces = st.sampled_from(["\n", "\n\n", " ", "  ", "\t", "\r\n", "a", "Hello", " world", "'s", "'ll", "123",
                              "4567", ".", "!\n", "...", "(", "é", "ï", "日本", "😀", "🤷\u200d♂️", "\u00a0", "ß",
                              "<|im_start|>", "<|endoftext|>", "[CLS]", "Σ", "\u0301", "x", "-", "_", "    def"])

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(pieces, max_size=40).map("".join))
    def check(text):
        assert prompt_ids(tok, text, blocks=blocks) == prompt_ids(tok, text), repr(text)

    check()


# -- interventions -------------------------------------------------------------------------------

def test_intervene_zeroes_a_head_like_a_pytorch_hook_and_leaves_the_next_request_plain(client, traced, ws):
    model, _ = ws.model(SMOL)
    hs = model.cfg.n_embd // model.cfg.n_head

    def pre(module, args):  # the same ablation in plain PyTorch: head 4's columns into layer 20's o_proj
        x = args[0].clone()
        x[..., 4 * hs:5 * hs] = 0
        return (x,)

    handle = model.layers[20].attn.proj.register_forward_pre_hook(pre)
    try:
        with torch.inference_mode():
            want = model(torch.tensor([traced["ids"]]))[0, -1].float().numpy()
    finally:
        handle.remove()
    body = client.post("/api/intervene", json={"trace": traced["trace"],
                                               "edits": [{"kind": "zero", "site": "head", "layer": 20, "head": 4}]})
    assert body.status_code == 200, body.text
    body = body.json()
    np.testing.assert_allclose(tensor(body["next"]["logits"]), want, atol=2e-4, rtol=1e-4)
    p = torch.softmax(torch.tensor(want), -1)
    assert body["target"] == 7042 and body["p_edited"] == pytest.approx(p[7042].item(), abs=1e-5)
    assert body["kl"] >= 0
    # the model is as it was: the same trace request gives the plain logits again
    again = client.post("/api/trace", json={"model": SMOL, "text": "The capital of France is"}).json()
    np.testing.assert_allclose(tensor(again["next"]["logits"]), tensor(traced["next"]["logits"]), atol=1e-6)
    step = client.post("/api/step", json={"model": SMOL, "ids": traced["ids"]}).json()
    np.testing.assert_allclose(tensor(step["logits"]), tensor(traced["next"]["logits"]), atol=2e-4, rtol=1e-4)


def test_patching_from_a_source_prompt_and_bad_edits(client, traced):
    body = client.post("/api/intervene", json={
        "trace": traced["trace"], "source": "The capital of Italy is", "target": 7042,
        "edits": [{"kind": "patch", "site": "resid", "layer": 12, "position": 3}]}).json()
    assert body["p_edited"] < body["p_base"]  # " France" -> " Italy" at layer 12: Paris loses
    for edit, words in [({"kind": "zero", "site": "head", "layer": 99, "head": 0}, "layer 99 does not exist"),
                        ({"kind": "zero", "site": "head", "layer": 0}, "head is named"),
                        ({"kind": "explode", "site": "mlp", "layer": 0}, "kind"),
                        ({"kind": "patch", "site": "resid", "layer": 0, "position": 1}, "source")]:
        r = client.post("/api/intervene", json={"trace": traced["trace"], "edits": [edit]})
        assert r.status_code == 400 and words in r.json()["error"]["message"], (edit, r.text)


def test_ablation_scan_ranks_heads_by_their_effect_on_the_answer(client, traced):
    body = client.post("/api/ablation-scan", json={"trace": traced["trace"]}).json()
    assert body["target"] == 7042 and body["label"] == " Paris"
    p = tensor(body["p_ablated"])
    assert p.shape == (30, 9) and np.all((p >= 0) & (p <= 1))
    assert body["p_base"] == pytest.approx(float(torch.softmax(torch.tensor(tensor(traced["next"]["logits"])),
                                                               -1)[7042]), abs=1e-5)
    assert np.abs(p - body["p_base"]).max() > 1e-3  # some head matters


# -- watching a model learn: the models a run kept -----------------------------------------------

@pytest.fixture(scope="module")
def kept_run(tmp_path_factory):
    """A real (tiny) training run that kept its model at steps 0, 20, 40 (keep_every)."""
    from lucidlm.data import prepare_dataset
    from lucidlm.train import TrainConfig, train

    root = tmp_path_factory.mktemp("learn")
    (root / "t.txt").write_text("to be or not to be, that is the question. " * 300)
    prepare_dataset(str(root / "t.txt"), root / "data", tokenizer="char")
    cfg = TrainConfig(data=str(root / "data"), out_dir=str(root / "runs" / "tiny"), max_steps=40, keep_every=20,
                      batch_size=4, block_size=32, lr=3e-3, eval_interval=20, eval_iters=1, progress=False,
                      log_interval=10, model={"n_layer": 1, "n_head": 2, "n_embd": 32, "max_seq_len": 32})
    train(cfg)
    return root / "runs"


def test_a_runs_kept_models_are_listed_traced_and_sampled(kept_run, smollm2_path):
    client = TestClient(create_app(Workspace([SMOL], runs=[str(kept_run)])))
    run = "runs/tiny"
    assert client.get("/api/runs/checkpoints", params={"run": run}).json() == {"run": run, "steps": [0, 20, 40]}
    samples = [client.post("/api/runs/sample", json={"run": run, "step": s, "text": "to be", "max_tokens": 20,
                                                     "temperature": 0}).json() for s in (0, 40)]
    assert samples[0]["model"] == "runs/tiny@0" and len(samples[1]["text"]) == 20  # characters: one per token
    assert samples[0]["text"] != samples[1]["text"]  # trained 40 steps: another text
    meta = client.post("/api/trace", json={"model": "runs/tiny@40", "text": "to be or"}).json()
    assert meta["n_layer"] == 1 and len(meta["ids"]) == 8
    grid = client.get("/api/attention/grid", params={"trace": meta["trace"]}).json()
    assert grid["thumbs"]["shape"] == [1, 2, 8, 8]
    long = client.post("/api/runs/sample", json={"run": run, "step": 40, "text": "to be", "max_tokens": 400}).json()
    assert len(long["text"]) == 32 - 5  # capped at the model's context of 32 tokens
    for bad in ("runs/tiny@7", "runs/nope@0", "runs/tiny@x"):
        r = client.post("/api/trace", json={"model": bad, "text": "to be"})
        assert r.status_code == 404 and "unknown model" in r.json()["error"]["message"]


# -- comparing two traces ------------------------------------------------------------------------

def test_compare_a_trace_with_itself_is_exactly_zero(client, traced):
    body = client.post("/api/compare", json={"a": traced["trace"], "b": traced["trace"]}).json()
    assert np.all(tensor(body["attention"]) == 0) and body["next"]["kl"] == 0.0
    assert body["answer"]["a"] == body["answer"]["b"] and body["answer"]["a"]["answer"] == 7042


def test_compare_plain_and_edited_equals_the_same_edit_by_a_pytorch_hook(client, traced, ws):
    """Zero head 3 of layer 10: heads up to layer 10 attend exactly as before (the edit is after
    their weights), later ones change; the differences equal those of a run edited by a hook."""
    model, _ = ws.model(SMOL)
    hs = model.cfg.n_embd // model.cfg.n_head
    edited = client.post("/api/trace", json={"model": SMOL, "text": "The capital of France is",
                                             "edits": [{"kind": "zero", "site": "head", "layer": 10, "head": 3}]})
    assert edited.status_code == 200, edited.text
    edited = edited.json()
    assert edited["trace"] != traced["trace"]
    body = client.post("/api/compare", json={"a": traced["trace"], "b": edited["trace"]}).json()
    diff = tensor(body["attention"])
    assert np.all(diff[:11] == 0) and diff[11:].max() > 1e-4

    def pre(module, args):
        x = args[0].clone()
        x[..., 3 * hs:4 * hs] = 0
        return (x,)

    plain, hooked = Trace(keep=["attn.weights"]), Trace(keep=["attn.weights"])
    with torch.inference_mode():
        model(torch.tensor([traced["ids"]]), trace=plain)
        handle = model.layers[10].attn.proj.register_forward_pre_hook(pre)
        try:
            model(torch.tensor([traced["ids"]]), trace=hooked)
        finally:
            handle.remove()
    want = np.array([[(plain[f"layers.{i}.attn.weights"][0, h] - hooked[f"layers.{i}.attn.weights"][0, h]).abs()
                      .mean().item() for h in range(9)] for i in range(30)])
    np.testing.assert_allclose(diff, want, atol=2e-3)  # weights travel as float16
    assert body["next"]["kl"] > 0 and body["next"]["changes"][0]["label"]


def test_compare_two_prompts_and_what_cannot_be_compared(client, traced):
    other = client.post("/api/trace", json={"model": SMOL, "text": "The capital of Italy is a city"}).json()
    body = client.post("/api/compare", json={"a": traced["trace"], "b": other["trace"]}).json()
    assert body["tokens"] == len(traced["ids"]) and not body["same_prefix"]
    assert {c["label"] for c in body["next"]["changes"][:3]} & {" Paris", " in", " of", ","}
    bert = client.post("/api/trace", json={"model": MINILM, "text": "The cat sat"}).json()
    r = client.post("/api/compare", json={"a": traced["trace"], "b": bert["trace"]})
    assert r.status_code == 400 and "differ in shape" in r.json()["error"]["message"]
    r = client.post("/api/trace", json={"model": SMOL, "text": "x", "edits": [
        {"kind": "patch", "site": "resid", "layer": 0, "position": 0}]})
    assert r.status_code == 400 and "/api/intervene" in r.json()["error"]["message"]


# -- copy as Python ------------------------------------------------------------------------------

def _run_python(client, **query) -> dict:
    """GET /api/python for a view, then run the code it gives: the namespace it leaves."""
    r = client.get("/api/python", params=query)
    assert r.status_code == 200, r.text
    namespace: dict = {}
    exec(compile(r.json()["code"], f"<{query['panel']}>", "exec"), namespace)  # noqa: S102 - our own code
    return namespace


def test_copy_as_python_computes_what_each_panel_shows(client, traced, capsys):
    ns = _run_python(client, panel="attention", model=SMOL, text="The capital of France is", layer=3, head=4)
    head = client.get("/api/attention/head", params={"trace": traced["trace"], "layer": 3, "head": 4}).json()
    np.testing.assert_allclose(ns["weights"].numpy(), tensor(head["weights"]).astype(np.float32), atol=1e-3)

    ns = _run_python(client, panel="next", model=SMOL, text="The capital of France is", temp=0.7, topk=20, topp=0.9)
    np.testing.assert_allclose(ns["logits"].float().numpy(), tensor(traced["next"]["logits"]), atol=2e-4, rtol=1e-4)

    ns = _run_python(client, panel="intervene", model=SMOL, text="The capital of France is",
                     edits="zero:head:23:4,scale:mlp:3::0.5")
    api = client.post("/api/intervene", json={"trace": traced["trace"], "edits": [
        {"kind": "zero", "site": "head", "layer": 23, "head": 4},
        {"kind": "scale", "site": "mlp", "layer": 3, "factor": 0.5}]}).json()
    assert ns["edited"][7042].item() == pytest.approx(api["p_edited"], abs=1e-5)

    ns = _run_python(client, panel="tokens", ttext="Hello 🤔 world", toks="o200k_base,gpt2")
    want = tokens_of(client, tokenizer="gpt2", text="Hello 🤔 world")
    assert ns["ids"] == want["ids"]  # the loop's last tokenizer

    ns = _run_python(client, panel="walkthrough", model=SMOL, text="The cat sat", wlayer=2)
    assert "layers.2.attn.q" in ns["trace"]
    ns = _run_python(client, panel="embeddings", sents="A cat sits.\nA kitten is sitting.\nStocks fell.")
    body = client.post("/api/embeddings", json={"sentences": ["A cat sits.", "A kitten is sitting.",
                                                              "Stocks fell."]}).json()
    np.testing.assert_allclose(ns["cosine"].numpy(), np.array(body["cosine"]), atol=1e-4)
    capsys.readouterr()


def test_copy_as_python_serves_only_given_models_and_known_panels(client):
    r = client.get("/api/python", params={"panel": "attention", "model": "/etc/passwd"})
    assert r.status_code == 404 and "unknown model" in r.json()["error"]["message"]
    r = client.get("/api/python", params={"panel": "nope"})
    assert r.status_code == 400 and "no Python" in r.json()["error"]["message"]
    r = client.get("/api/python", params={"panel": "attention", "layer": "x"})
    assert r.status_code == 400 and "whole number" in r.json()["error"]["message"]


def test_copy_as_python_never_pastes_what_a_link_says_into_code(client):
    evil = "__import__('os').system('echo pwned')"
    for query in [{"panel": "intervene", "edits": f"zero:head:{evil}:1"},
                  {"panel": "attention", "layer": evil},
                  {"panel": "next", "temp": evil}]:
        r = client.get("/api/python", params=query)
        assert r.status_code == 400, query
    code = client.get("/api/python", params={"panel": "attention", "text": evil + '"""\nimport os'}).json()["code"]
    import ast

    tree = ast.parse(code)  # the text is a string literal: no import of os, no call of __import__
    assert not any(isinstance(n, ast.Import) and any(a.name == "os" for a in n.names) for n in ast.walk(tree))
    assert not any(isinstance(n, ast.Name) and n.id == "__import__" for n in ast.walk(tree))


def test_export_gives_the_traces_tensors_as_npz_and_json(client, traced, ws):
    import io

    model, _ = ws.model(SMOL)
    trace = Trace(keep=["attn.weights", "mlp.resid"])
    with torch.inference_mode():
        logits = model(torch.tensor([traced["ids"]]), trace=trace)[0, -1]
    r = client.get("/api/export", params={"trace": traced["trace"], "format": "npz"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    arrays = np.load(io.BytesIO(r.content), allow_pickle=False)  # no pickle needed to read it
    assert arrays["ids"].tolist() == traced["ids"] and arrays["attn_weights"].shape == (30, 9, 5, 5)
    np.testing.assert_allclose(arrays["attn_weights"][7, 2], trace["layers.7.attn.weights"][0, 2].numpy(), atol=1e-3)
    np.testing.assert_allclose(arrays["resid_after_mlp"][12], trace["layers.12.mlp.resid"][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(arrays["next_logits"], logits.numpy(), atol=2e-4, rtol=1e-4)
    body = client.get("/api/export", params={"trace": traced["trace"], "format": "json"}).json()
    assert body["labels"][0] == "The" and np.array(body["attn_weights"]).shape == (30, 9, 5, 5)
    r = client.get("/api/export", params={"trace": traced["trace"], "format": "pickle"})
    assert r.status_code == 400 and "npz or json" in r.json()["error"]["message"]
