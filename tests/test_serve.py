"""The OpenAI-compatible server, driven by the official ``openai`` client over real HTTP.

A uvicorn server runs in a background thread on a free loopback port, around a tiny random
Llama-shaped model with SmolLM2's real tokenizer and chat template (fast), and the real
all-MiniLM-L6-v2 for embeddings. References are computed here without the server: greedy text
from a plain full-sequence forward loop (no KV cache), log-probabilities from one forward pass
over prompt + completion, embeddings from ``lucidlm.embed``. One slow test serves the real
SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import pytest
import torch

from lucidlm.generate.chat import render_chat
from lucidlm.generate.decode import encode_prompt
from lucidlm.models import ModelConfig, build_model
from lucidlm.serve.app import create_app
from lucidlm.tokenizers import load_tokenizer

MODEL = "tiny-llama"
EMBED = "all-minilm-l6-v2"
CONTEXT = 256
CAP = 64


class Server:
    """uvicorn in a thread; ``with Server(app) as s: s.url``."""

    def __init__(self, app) -> None:
        import uvicorn

        with socket.socket() as sock:  # a free port, found by binding port 0
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                      intermediate_size=96, max_seq_len=CONTEXT, positions="rope", norm="rmsnorm", mlp="swiglu",
                      activation="silu", bias=False, eos_token_id=2)
    m = build_model(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(4.0)  # sharper argmaxes than GPT-2's init, so greedy paths are stable
    return m


@pytest.fixture(scope="module")
def server(model, tokenizer):
    from lucidlm.embeddings.sentence import load_embedder

    app = create_app(model, tokenizer, model_name=MODEL, embedder=lambda: load_embedder(EMBED),
                     embed_model_name=EMBED, max_tokens_cap=CAP, max_body_bytes=20_000, max_batch=4,
                     max_context=CONTEXT)
    with Server(app) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


@torch.inference_mode()
def greedy_reference(model, tokenizer, prompt_ids: list[int], max_tokens: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy ids and each step's log-softmax, recomputing the whole sequence each step (no cache)."""
    ids, logps = list(prompt_ids), []
    for _ in range(max_tokens):
        logp = torch.log_softmax(model(torch.tensor([ids]))[0, -1], dim=-1)  # (V,)
        token = int(logp.argmax())
        if token == tokenizer.eos_id:
            break
        logps.append(logp)
        ids.append(token)
    return ids[len(prompt_ids):], logps


def chat_prompt_ids(tokenizer, messages) -> list[int]:
    return encode_prompt(tokenizer, render_chat(messages, tokenizer=tokenizer), add_special=False)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a transformer?"}]


def test_models_health_and_docs(server, client):
    assert sorted(m.id for m in client.models.list().data) == sorted([MODEL, EMBED])
    health = httpx2.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL
    assert httpx2.get(f"{server.url}/docs").status_code == 200
    paths = httpx2.get(f"{server.url}/openapi.json").json()["paths"]
    assert {"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models"} <= set(paths)


def test_completion_greedy_matches_reference(client, model, tokenizer):
    prompt = "The capital of France is"
    ids = encode_prompt(tokenizer, prompt)
    want, _ = greedy_reference(model, tokenizer, ids, 12)
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0)
    assert r.choices[0].text == tokenizer.decode(want)
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 12
    assert r.choices[0].finish_reason == "length"
    # streamed: the same text in pieces, and usage in a last chunk when asked
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12
    # echo, token-id prompts, stop strings
    e = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0, echo=True)
    assert e.choices[0].text == prompt + r.choices[0].text
    t = client.completions.create(model=MODEL, prompt=ids, max_tokens=12, temperature=0)
    assert t.choices[0].text == r.choices[0].text
    stop = r.choices[0].text[5:8]
    s = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0, stop=[stop])
    assert s.choices[0].text == r.choices[0].text[: r.choices[0].text.index(stop)]
    assert s.choices[0].finish_reason == "stop"


def test_completion_logprobs(client, model, tokenizer):
    prompt = "Once upon a time"
    ids = encode_prompt(tokenizer, prompt)
    want, logps = greedy_reference(model, tokenizer, ids, 6)
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert lp.tokens == [tokenizer.decode([i]) for i in want]
    assert lp.token_logprobs == pytest.approx([float(logps[k][i]) for k, i in enumerate(want)], abs=1e-4)
    for k, top in enumerate(lp.top_logprobs):
        values, indices = logps[k].topk(3)
        assert top == {tokenizer.decode([int(i)]): pytest.approx(float(v), abs=1e-4) for v, i in zip(values, indices)}


@torch.inference_mode()
def _prompt_scores(model, ids: list[int]) -> torch.Tensor:
    """log P(token t | tokens before it) for t = 1..len-1, from one plain forward pass (no cache)."""
    logp = torch.log_softmax(model(torch.tensor([ids]))[0].float(), dim=-1)  # (T, V)
    return logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])], logp


def test_echo_with_logprobs_scores_each_prompt(server, model, tokenizer):
    """lm-evaluation-harness's log-likelihood request: token-id prompts in a list, echo, logprobs,
    max_tokens 0. Each choice, in order, holds its prompt's tokens scored by the model: the first
    null, then log-softmax of a full forward pass at t - 1, picked at token t; the top 2 there."""
    prompts = [encode_prompt(tokenizer, "The capital of France is Paris"), encode_prompt(tokenizer, "Two plus two")]
    r = _post(server, "/v1/completions", json={"model": MODEL, "prompt": prompts, "echo": True, "logprobs": 2,
                                                "max_tokens": 0, "temperature": 0})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    assert answer["usage"] == {"prompt_tokens": sum(map(len, prompts)), "completion_tokens": 0,
                               "total_tokens": sum(map(len, prompts))}
    for ids, choice in zip(prompts, answer["choices"]):
        lp = choice["logprobs"]
        assert choice["text"] == tokenizer.decode(ids) and choice["finish_reason"] == "length"
        assert lp["tokens"] == [tokenizer.decode([i]) for i in ids]
        want, logp = _prompt_scores(model, ids)
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
        assert lp["token_logprobs"][1:] == pytest.approx(want.tolist(), abs=1e-4)
        for t in range(1, len(ids)):
            values, indices = logp[t - 1].topk(2)
            assert lp["top_logprobs"][t] == {tokenizer.decode([int(i)]): pytest.approx(float(v), abs=1e-4)
                                             for v, i in zip(values, indices)}
        assert lp["text_offset"] == [sum(len(x) for x in lp["tokens"][:t]) for t in range(len(ids))]


def test_logit_bias_forces_and_bans_tokens(server, model, tokenizer):
    """OpenAI's logit_bias: +100 on a token makes greedy decoding pick it at every step; -100 on
    the greedy first token makes the second most likely one come first (the forward pass decides)."""
    prompt = encode_prompt(tokenizer, "The capital of France is")
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 4, "temperature": 0, "ignore_eos": True}
    forced = tokenizer.encode(" Paris")[0]
    r = _post(server, "/v1/completions", json={**body, "logit_bias": {str(forced): 100}, "logprobs": 0})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["logprobs"]["tokens"] == [tokenizer.decode([forced])] * 4
    with torch.no_grad():
        first, second = model(torch.tensor([prompt]))[0, -1].topk(2).indices.tolist()
    r = _post(server, "/v1/completions", json={**body, "max_tokens": 1, "logit_bias": {str(first): -100},
                                                "logprobs": 0})
    assert r.json()["choices"][0]["logprobs"]["tokens"] == [tokenizer.decode([second])]
    r = _post(server, "/v1/chat/completions", json={"model": MODEL, "max_tokens": 2, "temperature": 0,
                                                     "messages": [{"role": "user", "content": "hi"}],
                                                     "logit_bias": {str(forced): 100}})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == " Paris Paris"


def test_echo_logprobs_then_generated_tokens_and_several_prompts(server, client, model, tokenizer):
    prompt = "Once upon a time"
    ids = encode_prompt(tokenizer, prompt)
    want, logps = greedy_reference(model, tokenizer, ids, 4)
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == prompt + tokenizer.decode(want)
    assert len(lp.tokens) == len(ids) + 4 and lp.tokens[len(ids):] == [tokenizer.decode([i]) for i in want]
    scores, _ = _prompt_scores(model, ids)
    assert lp.token_logprobs[1:len(ids)] == pytest.approx(scores.tolist(), abs=1e-4)
    assert lp.token_logprobs[len(ids):] == pytest.approx([float(logps[k][i]) for k, i in enumerate(want)], abs=1e-4)
    assert lp.text_offset[len(ids)] == len(prompt)  # the completion's tokens count from the end of the echo
    # streamed: the first chunk is the prompt and its scores
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0, echo=True,
                                            logprobs=1, stream=True))
    assert chunks[0].choices[0].text == prompt
    assert chunks[0].choices[0].logprobs.token_logprobs[1:] == pytest.approx(scores.tolist(), abs=1e-4)
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text

    # a list of strings: one choice per prompt, each what that prompt alone gets
    texts = ["The capital of France is", "Once upon a time", "hi"]
    many = client.completions.create(model=MODEL, prompt=texts, max_tokens=5, temperature=0)
    alone = [client.completions.create(model=MODEL, prompt=t, max_tokens=5, temperature=0) for t in texts]
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert [c.text for c in many.choices] == [a.choices[0].text for a in alone]
    assert many.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)
    assert many.usage.completion_tokens == 15


def test_n_samples_are_the_seeds_in_turn(client):
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6, n=3, seed=11)
    assert [c.index for c in r.choices] == [0, 1, 2]
    singles = [client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6, seed=11 + j)
               for j in range(3)]
    assert [c.text for c in r.choices] == [s.choices[0].text for s in singles]
    assert r.usage.prompt_tokens == singles[0].usage.prompt_tokens and r.usage.completion_tokens == 18
    two = client.completions.create(model=MODEL, prompt=["a", "b"], max_tokens=2, n=2, seed=0)
    assert [c.index for c in two.choices] == [0, 1, 2, 3]  # prompt 0's samples, then prompt 1's


def test_chat_stream_and_logprobs(client, model, tokenizer):
    ids = chat_prompt_ids(tokenizer, MESSAGES)
    want, logps = greedy_reference(model, tokenizer, ids, 10)
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=10, temperature=0, logprobs=True,
                                       top_logprobs=2)
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == tokenizer.decode(want)
    assert r.usage.prompt_tokens == len(ids)
    content = choice.logprobs.content
    assert [c.token for c in content] == [tokenizer.decode([i]) for i in want]
    assert [c.logprob for c in content] == pytest.approx([float(logps[k][i]) for k, i in enumerate(want)], abs=1e-4)
    assert [[t.token for t in c.top_logprobs] for c in content] == [
        [tokenizer.decode([int(i)]) for i in logps[k].topk(2).indices] for k in range(len(want))]
    assert bytes(content[0].bytes) == tokenizer.token_bytes(want[0])
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=10, temperature=0,
                                            stream=True, logprobs=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == choice.message.content
    streamed = [t.logprob for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert streamed == pytest.approx([c.logprob for c in content], abs=1e-6)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_seeded_sampling_is_reproducible(client):
    def ask(seed):
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16, temperature=1.0,
                                              top_p=0.95, seed=seed).choices[0].message.content

    assert ask(1234) == ask(1234)
    assert len({ask(s) for s in range(4)}) > 1


def test_tokenizer_routes_as_vllm_serves_them(server, tokenizer):
    """/tokenizer_info, /tokenize, /detokenize: what lm-evaluation-harness's remote tokenizer reads."""
    info = httpx2.get(server.url + "/tokenizer_info").json()
    assert info["eos_token"] == "<|im_end|>" and info["model_max_length"] == CONTEXT
    assert info["chat_template"] == tokenizer.chat_template
    text = "<|im_start|>user\nHello, world!<|im_end|>"
    r = _post(server, "/tokenize", json={"prompt": text, "add_special_tokens": False})
    assert r.json()["tokens"] == encode_prompt(tokenizer, text, add_special=False)
    assert r.json()["count"] == len(r.json()["tokens"])
    r = _post(server, "/detokenize", json={"tokens": r.json()["tokens"]})
    assert r.json() == {"prompt": text}
    r = _post(server, "/detokenize", json={"tokens": [1, 10**9]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens"
    r = _post(server, "/tokenize", json={"prompt": "hi", "model": "gpt-5"})
    assert r.status_code == 404


def test_streaming_several_prompts_and_samples_equals_the_whole_answer(client):
    """prompt as a list and n > 1, streamed: each chunk names its choice; joined per index, the text
    equals the same request unstreamed; finish reasons arrive per choice; one usage at the end."""
    request = dict(model=MODEL, prompt=["Once upon a time", "The capital of France"], n=2, max_tokens=8, seed=5,
                   temperature=0.9)
    whole = client.completions.create(**request)
    chunks = list(client.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    texts, finished = {}, {}
    for c in chunks[:-1]:
        (choice,) = c.choices
        texts[choice.index] = texts.get(choice.index, "") + choice.text
        if choice.finish_reason:
            finished[choice.index] = choice.finish_reason
    assert texts == {c.index: c.text for c in whole.choices}
    assert finished == {c.index: c.finish_reason for c in whole.choices}
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_concurrent_streams_batch_and_match_sequential(server, client, model, tokenizer):
    prompts = [f"Question {i}: what comes after {i}?" * (1 + i % 3) for i in range(8)]
    expected = [tokenizer.decode(greedy_reference(model, tokenizer, chat_prompt_ids(
        tokenizer, [{"role": "user", "content": p}]), 20 + i)[0]) for i, p in enumerate(prompts)]

    def run(i):
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompts[i]}],
                                                max_tokens=20 + i, temperature=0, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in stream)

    engine = server.app.state.engine
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(run, range(8)))
    assert got == expected
    assert engine.max_active == 4  # max_batch: requests were decoded together, the rest queued


def test_client_disconnect_frees_the_slot(server, model):
    engine = server.app.state.engine
    body = {"model": MODEL, "prompt": "Tell me a very long story", "max_tokens": CAP, "temperature": 0,
            "stream": True}
    # slow each forward pass down (30 ms) so that the 64 tokens would take ~2 s if nobody cancelled
    hook = model.register_forward_hook(lambda *_: time.sleep(0.03))
    try:
        tokens_before = engine.tokens
        with httpx2.Client(timeout=30) as http:
            with http.stream("POST", f"{server.url}/v1/completions", json=body) as response:
                assert response.status_code == 200
                assert next(response.iter_lines()).startswith("data: ")
        deadline = time.monotonic() + 10
        while engine.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.active == 0 and engine.waiting == 0
        assert engine.tokens - tokens_before < CAP // 2  # stopped early, not run to max_tokens
    finally:
        hook.remove()


def _post(server, path: str, content: bytes | None = None, **kw):
    return httpx2.post(f"{server.url}{path}", content=content, timeout=30, **kw)


@pytest.mark.parametrize("body, status, param, code", [
    (b'{"model": "tiny-llama", "prompt": "hi"', 400, None, "invalid_json"),
    (b'[1, 2]', 400, None, "invalid_body"),
    (json.dumps({"model": "gpt-5", "prompt": "hi"}).encode(), 404, "model", "model_not_found"),
    (json.dumps({"model": MODEL}).encode(), 400, "prompt", "missing_required_parameter"),
    (json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": "5"}).encode(), 400, "max_tokens", "invalid_type"),
    (json.dumps({"model": MODEL, "prompt": "hi", "temperature": 3}).encode(), 400, "temperature", "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": CAP + 1}).encode(), 400, "max_tokens",
     "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": "word " * 200, "max_tokens": CAP}).encode(), 400, "max_tokens",
     "context_length_exceeded"),
    (json.dumps({"model": MODEL, "prompt": "hi", "max_token": 5}).encode(), 400, "max_token", "unknown_parameter"),
    (json.dumps({"model": MODEL, "prompt": "hi", "n": 17}).encode(), 400, "n", "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 0}).encode(), 400, "max_tokens", "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": ["a"] * 65}).encode(), 400, "prompt", "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": [[1, 2], []]}).encode(), 400, "prompt.1", "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": [99999999]}).encode(), 400, "prompt", "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": []}).encode(), 400, "prompt", "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": "hi", "logit_bias": {"abc": 1}}).encode(), 400, "logit_bias",
     "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": "hi", "logit_bias": {"99999999": 1}}).encode(), 400, "logit_bias",
     "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": "hi", "logit_bias": {"5": 101}}).encode(), 400, "logit_bias",
     "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": "word " * 300, "echo": True, "logprobs": 1, "max_tokens": 0}).encode(),
     400, "max_tokens", "context_length_exceeded"),  # scoring a prompt longer than the context: refused, not cut
    (json.dumps({"model": MODEL, "prompt": "hi", "stop": ""}).encode(), 400, "stop", "invalid_value"),
    (json.dumps({"model": MODEL, "prompt": "x" * 30_000}).encode(), 413, None, "request_too_large"),
])
def test_bad_requests_get_openai_errors(server, client, body, status, param, code):
    r = _post(server, "/v1/completions", body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["param"] == param and error["message"]
    assert error["type"] == "invalid_request_error"
    # the server keeps serving
    ok = client.completions.create(model=MODEL, prompt="hi", max_tokens=2, temperature=0)
    assert ok.usage.completion_tokens == 2


def test_bad_requests_other_routes(server, client):
    # a body streamed without Content-Length (chunked) is counted too
    chunked = _post(server, "/v1/chat/completions", (b"x" * 1000 for _ in range(30)),
                    headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert exc.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "hi"}])
    assert exc.value.param == "messages.0.role"
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.chat.completions.create(model=EMBED, messages=MESSAGES)
    missing = _post(server, "/v1/nope", b"{}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3).usage.completion_tokens <= 3


def test_embeddings_match_lucidlm_embed(client):
    import lucidlm

    texts = ["a cat sat on the mat", "the kitten sits on a rug", "stock prices fell sharply"]
    want = lucidlm.embed(texts)  # (3, 384)
    for fmt in ("float", "base64"):  # the client asks for base64 by default and decodes it
        kw = {"encoding_format": fmt} if fmt == "float" else {}
        r = client.embeddings.create(model=EMBED, input=texts, **kw)
        got = torch.tensor([d.embedding for d in r.data])
        assert got.shape == (3, 384)
        assert torch.nn.functional.cosine_similarity(got, want).min() > 0.99999
    assert r.usage.prompt_tokens > 3
    one = client.embeddings.create(model=EMBED, input="a cat sat on the mat")
    assert len(one.data) == 1
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=EMBED, input=texts, dimensions=100)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model=MODEL + "x", input=texts)


def test_omitted_sampling_fields_take_the_models_defaults(model, tokenizer):
    """A request without temperature gets the server's default (the model's recommended one);
    the test server above has none, so OpenAI's temperature 1 applies there."""
    from lucidlm.generate.sampling import SamplingParams

    app = create_app(model, tokenizer, model_name=MODEL, max_batch=2, max_context=CONTEXT,
                     sampling_defaults=SamplingParams(temperature=0.0))
    prompt = "The capital of France is"
    want, _ = greedy_reference(model, tokenizer, encode_prompt(tokenizer, prompt), 8)
    with Server(app) as s:
        c = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0, timeout=60)
        texts = {c.completions.create(model=MODEL, prompt=prompt, max_tokens=8, seed=seed).choices[0].text
                 for seed in range(3)}
    assert texts == {tokenizer.decode(want)}


def test_chat_without_a_template_says_how_to_get_one(tmp_path, capsys):
    """GPT-2's tokenizer has no chat template: the error names what an HTTP client can do, and
    ``--chat-template chatml`` gives the server one."""
    from lucidlm.cli import build_parser
    from lucidlm.cli.serve import build_app
    from lucidlm.loading.checkpoint import save_checkpoint

    gpt2 = load_tokenizer("gpt2")
    torch.manual_seed(0)
    tiny = build_model(ModelConfig(vocab_size=gpt2.vocab_size, n_layer=1, n_head=2, n_embd=16, max_seq_len=64))
    save_checkpoint(tiny, tmp_path / "m", gpt2)
    for extra, want in (([], 400), (["--chat-template", "chatml"], 200)):
        args = build_parser().parse_args(["serve", "--model", str(tmp_path / "m"), "--embed-model", "none",
                                          "--served-name", "m", *extra])
        with Server(build_app(args)) as s:
            r = httpx2.post(f"{s.url}/v1/chat/completions", timeout=60,
                            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert r.status_code == want, r.text
        if want == 400:
            error = r.json()["error"]
            assert error["code"] == "no_chat_template" and "--chat-template chatml" in error["message"]
            assert "/v1/completions" in error["message"] and "template=" not in error["message"]
    out = capsys.readouterr().out
    assert "sampling fields a request leaves out: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05" in out


def test_serve_on_a_taken_port_fails_before_saying_serving(capsys):
    from lucidlm.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--model", "smollm2-135m-instruct", "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"cannot listen on 127.0.0.1:{port}" in captured.err and "--port" in captured.err
    assert "serving" not in captured.out


@pytest.mark.slow
def test_real_smollm2_chat_matches_library_generate():
    from lucidlm.generate.decode import generate
    from lucidlm.generate.sampling import SamplingParams
    from lucidlm.loading.load import load_model

    model, tok = load_model("smollm2-135m-instruct")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    want = generate(model, tok, render_chat(messages, tokenizer=tok), max_tokens=24,
                    params=SamplingParams(temperature=0.0), add_special=False)
    app = create_app(model, tok, model_name="smollm2", max_batch=4)
    with Server(app) as s:
        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0, timeout=120)
        r = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=24, temperature=0)
    assert r.choices[0].message.content == want.text
    assert "Paris" in want.text
