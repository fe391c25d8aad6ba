"""The continuous-batching engine: requests decoded together give what each gives alone.

The reference is the plainest decoding loop there is: one request, a B=1 KV cache, no masks, no
explicit positions (as benchmarks/bench_decode.py). Tiny random models (Llama-like with RoPE and
grouped-query attention; GPT-2-like with learned positions) make each test take well under a second.
"""

from __future__ import annotations

import string
import time

import pytest
import torch

from lucidlm.generate.sampling import SamplingParams, make_generator, sample_token
from lucidlm.models import ModelConfig, build_model
from lucidlm.serve.engine import DoneEvent, Engine, ErrorEvent, GenerationRequest, PromptEvent, TokenEvent
from lucidlm.tokenizers import CharTokenizer

TOK = CharTokenizer(string.printable)
GREEDY = SamplingParams(temperature=0.0)

CONFIGS = {
    "llama": ModelConfig(vocab_size=TOK.vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                         intermediate_size=48, max_seq_len=128, positions="rope", norm="rmsnorm", mlp="swiglu",
                         activation="silu", bias=False),
    "gpt2": ModelConfig(vocab_size=TOK.vocab_size, n_layer=2, n_head=4, n_embd=32, max_seq_len=128),
}


def tiny_model(kind: str = "llama", seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(CONFIGS[kind]).eval()
    with torch.no_grad():  # larger logits than GPT-2's init: sharper argmaxes, fewer near-ties
        model.lm_head.weight.mul_(8.0)
    return model


def decode_alone(model, req: GenerationRequest) -> list[int]:
    """The reference: generated ids (a stop id ends it and is not included)."""
    return decode_alone_logprobs(model, req)[0]


@torch.inference_mode()
def decode_alone_logprobs(model, req: GenerationRequest) -> tuple[list[int], list[float]]:
    """Generated ids and each one's log probability under the model."""
    generator = make_generator(req.params.seed)
    cache = model.new_cache(1, len(req.prompt_ids) + req.max_tokens)
    logits = model(torch.tensor([req.prompt_ids]), cache=cache, last_only=True)  # (1, 1, V)
    out: list[int] = []
    logprobs: list[float] = []
    for _ in range(req.max_tokens):
        token = sample_token(logits[0, -1], req.params, generator, out, prompt_ids=req.prompt_ids)
        if token in req.stop_ids:
            break
        out.append(token)
        logprobs.append(float(torch.log_softmax(logits[0, -1], dim=-1)[token]))
        logits = model(torch.tensor([[token]]), cache=cache, last_only=True)
    return out, logprobs


def assert_same_as_alone(model, req: GenerationRequest, sink) -> None:
    """Same tokens, and the same log probabilities: the numbers show any error in positions or
    masking even where it does not flip an argmax."""
    ids, logprobs = decode_alone_logprobs(model, req)
    assert sink.ids == ids
    got = [e.logprob for e in sink.events if isinstance(e, TokenEvent)]
    assert got == pytest.approx(logprobs, abs=1e-4)


def request(prompt: str, max_tokens: int, **kw) -> GenerationRequest:
    kw.setdefault("logprobs", 0)
    return GenerationRequest(tuple(TOK.encode(prompt)), max_tokens, kw.pop("params", GREEDY), **kw)


class Collector:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    @property
    def ids(self) -> list[int]:
        return [e.token_id for e in self.events if isinstance(e, TokenEvent)]

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, (TokenEvent, DoneEvent)))

    @property
    def done(self) -> bool:
        return bool(self.events) and not isinstance(self.events[-1], TokenEvent)


def run_schedule(engine: Engine, schedule: dict[int, list[GenerationRequest]]) -> list[Collector]:
    """Submit each request at the step the schedule says; step until every one is done."""
    sinks, step = [], 0
    while step <= max(schedule) or not all(s.done for s in sinks):
        for req in schedule.get(step, []):
            sinks.append(Collector())
            engine.submit(req, sinks[-1])
        engine.step()
        step += 1
        assert step < 1000
    return sinks


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast-decode"])
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_batched_equals_alone_with_requests_joining_and_leaving(kind, fast):
    """With ``fast``, the engine's one-token steps run the C decode path (models/decode_fast.py)
    and each request is still compared with the reference path decoding it alone."""
    model = tiny_model(kind)
    # max_batch 3 < 7 requests: some wait for a slot; prompts longer than the running cache make it
    # grow (holes in the other rows); different max_tokens make rows leave at different steps.
    schedule = {
        0: [request("Hello there", 20), request("Hi!", 7)],  # prefilled together, left-padded
        2: [request("a", 12), request("The quick brown fox jumps over the lazy dog", 9)],
        5: [request("To be, or not to be, that is the question:", 30), request("xy", 5)],
        11: [request("Once upon a time", 16)],
    }
    engine = Engine(model.use_fast_decode(fast), TOK, max_batch=3)
    sinks = run_schedule(engine, schedule)
    model.use_fast_decode(False)
    reqs = [r for step in sorted(schedule) for r in schedule[step]]
    for req, sink in zip(reqs, sinks):
        assert_same_as_alone(model, req, sink)
        assert sink.text == TOK.decode(sink.ids)
        assert isinstance(sink.events[-1], DoneEvent) and sink.events[-1].finish_reason == "length"
        assert sink.events[-1].completion_tokens == req.max_tokens
    assert engine.max_active == 3 and engine.active == 0 and engine.steps < sum(r.max_tokens for r in reqs)
    assert engine.prefills < len(reqs)


def test_prompt_logprobs_in_a_batch_equal_one_forward_pass_alone():
    """Prompts scored together with others of different lengths, some already decoding: each one's
    prompt log-probabilities are those of a plain forward pass over it alone (no cache, no padding),
    and max_tokens=0 ends the request after scoring without a token."""
    model = tiny_model()
    engine = Engine(model, TOK, max_batch=4)
    texts = ["the quick brown fox", "ab", "jumps over the lazy dog again"]
    schedule = {0: [request("hello there", 6)],
                2: [request(texts[0], 0, prompt_logprobs=3), request(texts[1], 2, prompt_logprobs=0),
                    request(texts[2], 0, prompt_logprobs=1)]}
    first, *sinks = run_schedule(engine, schedule)
    assert_same_as_alone(model, schedule[0][0], first)  # the row already decoding is undisturbed
    for text, sink, k in zip(texts, sinks, (3, 0, 1)):
        ids = TOK.encode(text)
        scored = [e for e in sink.events if isinstance(e, PromptEvent)]
        assert len(scored) == 1 and sink.events[0] is scored[0]
        with torch.inference_mode():
            logp = torch.log_softmax(model(torch.tensor([ids]))[0].float(), dim=-1)  # (T, V)
        want = [logp[t - 1, ids[t]].item() for t in range(1, len(ids))]
        assert scored[0].token_logprobs[0] is None and scored[0].top_logprobs[0] is None
        assert list(scored[0].token_logprobs[1:]) == pytest.approx(want, abs=1e-4)
        for t in range(1, len(ids)):
            top = scored[0].top_logprobs[t]
            assert [i for i, _ in top] == logp[t - 1].topk(k).indices.tolist() if k else top == ()
        done = sink.events[-1]
        assert isinstance(done, DoneEvent) and done.prompt_tokens == len(ids)
    assert sinks[0].ids == [] and sinks[0].events[-1].completion_tokens == 0
    assert len(sinks[1].ids) == 2  # scored, then generated as usual
    with pytest.raises(ValueError, match="max_tokens=0 generates nothing"):
        GenerationRequest((1, 2), 0)
    with pytest.raises(ValueError, match="max_tokens must be an int >= 0"):
        GenerationRequest((1, 2), -1, prompt_logprobs=0)


def test_compaction_when_the_shared_length_reaches_the_context():
    model = tiny_model("llama", seed=1)
    # max_context 48: the rows' holes push the shared length to 48, so the cache must be packed.
    schedule = {0: [request("ab", 40)], 4: [request("0123456789" * 2, 25)], 12: [request("hello world " * 3, 10)],
                20: [request("z" * 30, 15)]}
    engine = Engine(model, TOK, max_batch=4, max_context=48, compact_slack=4)
    sinks = run_schedule(engine, schedule)
    assert engine.compactions >= 1
    reqs = [r for step in sorted(schedule) for r in schedule[step]]
    for req, sink in zip(reqs, sinks):
        assert_same_as_alone(model, req, sink)


def test_seeded_sampling_and_penalties_per_row():
    """Each row has its own generator and penalties: batched draws equal solo draws."""
    model = tiny_model("llama", seed=2)
    p1 = SamplingParams(temperature=1.0, top_k=20, seed=123)
    p2 = SamplingParams(temperature=0.7, top_p=0.9, repetition_penalty=1.3, frequency_penalty=0.5, seed=7)
    schedule = {0: [request("Sample me", 15, params=p1)], 3: [request("And me too", 12, params=p2)],
                4: [request("greedy", 10)]}
    sinks = run_schedule(Engine(model, TOK, max_batch=4), schedule)
    reqs = [r for step in sorted(schedule) for r in schedule[step]]
    for req, sink in zip(reqs, sinks):
        assert_same_as_alone(model, req, sink)


def test_stop_strings_stop_ids_and_logprobs():
    model = tiny_model("llama")
    free = decode_alone(model, request("Hello there", 30))
    text = TOK.decode(free)
    stop = text[10:12]  # a string the greedy continuation is known to contain
    sink = Collector()
    engine = Engine(model, TOK)
    engine.submit(request("Hello there", 30, stop=(stop,), logprobs=3), sink)
    while not sink.done:
        engine.step()
    assert sink.text == text[: text.index(stop)]
    assert sink.events[-1].finish_reason == "stop"
    # logprobs: the model's log-softmax at each step, computed here without the engine
    with torch.inference_mode():
        ids = torch.tensor([TOK.encode("Hello there") + sink.ids])
        logp = torch.log_softmax(model(ids)[0], dim=-1)  # (T, V)
    n_prompt = len(TOK.encode("Hello there"))
    for i, event in enumerate(e for e in sink.events if isinstance(e, TokenEvent)):
        row = logp[n_prompt - 1 + i]
        assert event.logprob == pytest.approx(float(row[event.token_id]), abs=1e-4)
        assert [t for t, _ in event.top_logprobs] == row.topk(3).indices.tolist()
    # a stop id: the token is neither shown nor counted as text
    eos = free[5]
    sink = Collector()
    engine.submit(request("Hello there", 30, stop_ids=frozenset({eos})), sink)
    while not sink.done:
        engine.step()
    assert sink.ids == free[: free.index(eos)]
    assert sink.events[-1].finish_reason == "stop"


def test_threaded_engine_cancel_timeout_and_context_check():
    model = tiny_model("llama")
    with Engine(model, TOK, max_batch=2) as engine:
        # events from the thread, through generate()
        ids = [e.token_id for e in engine.generate(request("abc", 8)) if isinstance(e, TokenEvent)]
        assert ids == decode_alone(model, request("abc", 8))
        # a consumer that stops reading frees its row
        stream = engine.generate(request("abc", 100))
        next(stream)
        stream.close()
        deadline = time.monotonic() + 5
        while engine.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.active == 0
        # a request past its time limit ends with a timeout error
        events = list(engine.generate(request("abc", 100, timeout_s=0.0)))
        assert isinstance(events[-1], ErrorEvent) and events[-1].kind == "timeout"
        with pytest.raises(ValueError, match="context window"):
            engine.submit(request("abc", 126), print)


@pytest.mark.parametrize("stop", [("w ",), ()], ids=["stop-string", "length"])
def test_engine_events_equal_the_library_generate(stop):
    """The engine and ``lucidlm.generate`` run the same ``SequenceState``: the same ids, text,
    finish reason and log probabilities for a request alone."""
    from lucidlm.generate import generate

    model = tiny_model("llama")
    params = SamplingParams(temperature=0.8, top_k=20, seed=3)
    lib = generate(model, TOK, TOK.encode("Hello there"), max_tokens=20, params=params, stop=stop, logprobs=2,
                   ignore_eos=True)
    sink = Collector()
    engine = Engine(model, TOK)
    engine.submit(request("Hello there", 20, params=params, stop=stop, logprobs=2), sink)
    while not sink.done:
        engine.step()
    assert sink.ids == list(lib.token_ids) and sink.text == lib.text
    assert sink.events[-1].finish_reason == lib.finish_reason == ("stop" if stop else "length")
    tokens = [e for e in sink.events if isinstance(e, TokenEvent)]
    assert [e.logprob for e in tokens] == pytest.approx([lp.logprob for lp in lib.logprobs], abs=1e-4)
    assert [[t for t, _ in e.top_logprobs] for e in tokens] == [[t.token_id for t in lp.top] for lp in lib.logprobs]


def test_kv_cache_over_preallocated_slots_writes_in_place():
    """``KVCache.from_tensors``: a cache over views of a larger store (the engine's slots)."""
    from lucidlm.nn.attention import KVCache

    store_k, store_v = torch.zeros(4, 2, 8, 3), torch.zeros(4, 2, 8, 3)  # (slots, nkv, capacity, hs)
    cache = KVCache.from_tensors([store_k[1:3]], [store_v[1:3]], length=2)
    assert cache.length == 2 and cache.max_len == 8
    k, v = cache.layers[0].append(torch.ones(2, 2, 1, 3), torch.full((2, 2, 1, 3), 2.0))
    assert k.shape == (2, 2, 3, 3) and cache.length == 3
    assert bool((store_k[1:3, :, 2] == 1).all()) and bool((store_v[1:3, :, 2] == 2).all())
    assert float(store_k[0].abs().sum() + store_k[3].abs().sum()) == 0.0  # other slots untouched
