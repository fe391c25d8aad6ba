"""Decoding: KV cache == full recompute == a hand-written argmax loop; batched == one at a time;
streaming text never splits a character; stop strings and ids; logprobs; seeds; errors; and
SmolLM2-135M against transformers.

Two kinds of tiny real models (``DecoderLM`` with weights set here, nothing mocked):
- ``random_model``: random weights, scaled up so that the logits are well separated and the
  greedy choice is not decided by rounding;
- ``chain_model``: a bigram machine whose weights make it emit a chosen token sequence exactly
  (every block's weights zero, so the residual stream is the token embedding; the output head
  maps each token's embedding to its successor), for exact tests of streaming and stopping.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lucidlm.generate import (
    SamplingParams,
    generate,
    generate_batch,
    render_chat,
    stream,
)
from lucidlm.generate.text import IncrementalDecoder, StopChecker
from lucidlm.models.config import ModelConfig
from lucidlm.models.transformer import build_model

GREEDY = SamplingParams(temperature=0)
TEXT = "Hello 🦙 naïve 日本語! Stop here, then more text."
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def tok():
    from lucidlm.tokenizers import load_tokenizer

    return load_tokenizer("gpt2")  # byte-level BPE: an emoji spans several tokens


def small_config(vocab_size: int, family: str, **kw) -> ModelConfig:
    if family == "gpt2":
        return ModelConfig(vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=32, max_seq_len=64, tie_embeddings=False,
                           **kw)
    return ModelConfig(vocab_size=vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, max_seq_len=64,
                       positions="rope", norm="rmsnorm", mlp="swiglu", activation="silu", bias=False, tie_embeddings=False, **kw)


def random_model(vocab_size: int = 512, family: str = "llama", seed: int = 0):
    """A model over the first ``vocab_size`` ids of the tokenizer (small, so that each step's
    sort and softmax over V stay cheap); prompts are ids below that."""
    torch.manual_seed(seed)
    model = build_model(small_config(vocab_size, family)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:  # std 1/sqrt(fan_in) instead of 0.02: logits spread over several units
                p.normal_(0.0, p.shape[1] ** -0.5 * (3.0 if p.shape[0] == vocab_size else 1.0))
    return model


def chain_model(vocab_size: int, chain: list[int], n_embd: int = 64):
    """A DecoderLM that, after token chain[i], predicts chain[i + 1] with near certainty."""
    cfg = ModelConfig(vocab_size=vocab_size, n_layer=1, n_head=2, n_embd=n_embd, max_seq_len=128, positions="none",
                      norm="rmsnorm", mlp="swiglu", activation="silu", bias=False, tie_embeddings=False)
    model = build_model(cfg).eval()
    assert len(set(chain[:-1])) == len(chain) - 1 <= n_embd
    with torch.no_grad():
        for p in model.layers.parameters():
            p.zero_() if p.dim() == 2 else None  # blocks add nothing: the residual stream is the embedding
        basis = torch.linalg.qr(torch.randn(n_embd, n_embd, generator=torch.Generator().manual_seed(0)))[0]
        model.lm_head.weight.zero_()
        for i, (a, b) in enumerate(zip(chain, chain[1:])):
            model.embed.tokens.weight[a] = basis[i] * n_embd**0.5  # orthogonal, RMS 1
            model.lm_head.weight[b] = basis[i] * 20  # logit 20 * sqrt(C) for the successor, 0 for the rest
    return model


# ----------------------------------------------------------------------------------------------
# the decoding loop against independent references


def argmax_loop(model, ids: list[int], n: int) -> list[int]:
    """The textbook loop: full forward of the whole sequence, take the argmax, append."""
    ids, out = list(ids), []
    with torch.no_grad():
        for _ in range(n):
            token = int(model(torch.tensor([ids]))[0, -1].argmax())
            ids.append(token)
            out.append(token)
    return out


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_greedy_with_cache_equals_full_recompute_and_the_argmax_loop(tok, family):
    model = random_model(family=family)
    prompt = [464 % 512, 68, 300, 11]
    cached = generate(model, tok, prompt, max_tokens=20, params=GREEDY, ignore_eos=True)
    full = generate(model, tok, prompt, max_tokens=20, params=GREEDY, ignore_eos=True, use_cache=False)
    assert cached.token_ids == full.token_ids == tuple(argmax_loop(model, prompt, 20))
    assert len(set(cached.token_ids)) > 3  # the model is not stuck on one token
    assert cached.finish_reason == "length" and cached.completion_tokens == 20 and cached.prompt_tokens == 4
    assert cached.text == tok.decode(cached.token_ids)


def test_sampling_with_cache_equals_full_recompute(tok):
    model = random_model()
    params = SamplingParams(temperature=0.9, top_k=50, top_p=0.95, repetition_penalty=1.2, seed=11)
    a = generate(model, tok, [40, 41, 42], max_tokens=16, params=params, ignore_eos=True)
    b = generate(model, tok, [40, 41, 42], max_tokens=16, params=params, ignore_eos=True, use_cache=False)
    assert a.token_ids == b.token_ids


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_batched_equals_one_at_a_time(tok, family):
    model = random_model(family=family, seed=1)
    prompts = [[72], [32, 317, 81, 400, 152, 11, 351, 181, 10, 33, 44], [87, 88, 89], [511, 0]]
    for params in (GREEDY, SamplingParams(temperature=0.8, top_p=0.9, seed=5)):
        batched = generate_batch(model, tok, prompts, max_tokens=12, params=params, ignore_eos=True)
        alone = [generate(model, tok, p, max_tokens=12, params=params, ignore_eos=True) for p in prompts]
        assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
        assert [r.text for r in batched] == [r.text for r in alone]
        assert [r.prompt_ids for r in batched] == [tuple(p) for p in prompts]


def test_batched_rows_finish_independently(tok):
    chain = tok.encode(TEXT) + [tok.eos_id]
    model = chain_model(tok.vocab_size, chain)
    results = generate_batch(model, tok, [chain[:1], chain[:15]], max_tokens=30, params=GREEDY)
    assert [r.finish_reason for r in results] == ["stop", "stop"]
    assert results[0].text == tok.decode(chain[1:-1]) and results[1].text == tok.decode(chain[15:-1])


def test_logprobs_equal_log_softmax_of_the_full_forward(tok):
    model = random_model()
    prompt = [300, 301, 302]
    r = generate(model, tok, prompt, max_tokens=6, params=SamplingParams(seed=3), logprobs=4, ignore_eos=True)
    assert len(r.logprobs) == 6
    with torch.no_grad():
        full = torch.log_softmax(model(torch.tensor([prompt + list(r.token_ids)]))[0].double(), dim=-1)  # (T, V)
    for i, info in enumerate(r.logprobs):
        row = full[len(prompt) - 1 + i]  # the distribution the i-th generated token was drawn from
        assert info.token_id == r.token_ids[i] and info.token == tok.decode([info.token_id])
        assert info.logprob == pytest.approx(float(row[info.token_id]), abs=1e-4)
        top = row.topk(4)
        assert [t.token_id for t in info.top] == top.indices.tolist()
        assert [t.logprob for t in info.top] == pytest.approx(top.values.tolist(), abs=1e-4)
    assert generate(model, tok, prompt, max_tokens=2, params=GREEDY).logprobs is None
    own = generate(model, tok, prompt, max_tokens=2, params=GREEDY, token_logprobs=True).logprobs
    assert len(own) == 2 and own[0].top == ()


def test_same_seed_same_text(tok):
    model = random_model()
    run = lambda seed: generate(model, tok, [5, 6], max_tokens=12, params=SamplingParams(seed=seed),  # noqa: E731
                                ignore_eos=True).token_ids
    assert run(42) == run(42)
    assert run(42) != run(43)


# ----------------------------------------------------------------------------------------------
# streaming text and stopping, on the chain model


def test_incremental_decoder_never_splits_a_character(tok):
    ids = tok.encode(TEXT)
    pieces = [tok.token_bytes(i) for i in ids]
    assert any(_invalid_utf8(p) for p in pieces)  # the test needs tokens that cut characters
    decoder = IncrementalDecoder(tok)
    deltas = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(deltas) == TEXT
    assert not any("\ufffd" in d for d in deltas)
    assert "🦙" in deltas[3] and deltas[1:3] == [" ", ""]  # held back until the emoji's last byte
    # A sequence cut inside a character: flush gives U+FFFD, as decode(errors="replace") does.
    d = IncrementalDecoder(tok)
    cut = "".join([d.push(i) for i in ids[:2]] + [d.flush()])
    assert cut == tok.decode(ids[:2]) == "Hello \ufffd"


def _invalid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def test_stream_deltas_concatenate_to_the_text_and_stop_at_eos(tok):
    chain = tok.encode(TEXT) + [tok.eos_id]
    model = chain_model(tok.vocab_size, chain)
    events = list(stream(model, tok, chain[:1], max_tokens=50, params=GREEDY, logprobs=2))
    assert [e.token_id for e in events] == chain[1:]
    assert "".join(e.text for e in events) == TEXT[len("Hello"):]
    assert not any("\ufffd" in e.text for e in events)
    assert [e.finish_reason for e in events] == [None] * (len(events) - 1) + ["stop"]
    assert events[-1].text == ""  # EOS adds no text
    assert [e.position for e in events] == list(range(len(events))) and events[0].prompt_tokens == 1
    assert events[0].logprob.prob > 0.99  # the chain model is sure of its successor
    # ignore_eos: generation goes on past EOS to max_tokens.
    r = generate(model, tok, chain[:1], max_tokens=len(chain) + 2, params=GREEDY, ignore_eos=True)
    assert r.finish_reason == "length" and r.completion_tokens == len(chain) + 2


@pytest.mark.parametrize("stop, expected", [
    (["Stop"], "Hello 🦙 naïve 日本語! "),
    ([" here, th"], "Hello 🦙 naïve 日本語! Stop"),  # ends inside a token
    (["🦙"], "Hello "),  # a stop string made of three tokens' bytes
    (["nothing", "re, "], "Hello 🦙 naïve 日本語! Stop he"),  # the one that occurs
    (["t.", "more"], "Hello 🦙 naïve 日本語! Stop here, then "),  # the earliest of two
])
def test_stop_strings_cut_exactly(tok, stop, expected):
    chain = tok.encode(TEXT) + [tok.eos_id]
    model = chain_model(tok.vocab_size, chain)
    events = list(stream(model, tok, chain[:1], max_tokens=50, params=GREEDY, stop=stop))
    text = "Hello" + "".join(e.text for e in events)
    assert text == expected
    assert events[-1].finish_reason == "stop"
    # The last token is the one that completed the stop string.
    done = tok.decode(chain[: len(events) + 1])
    assert any(s in done for s in stop) and not any(s in tok.decode(chain[: len(events)]) for s in stop)


def test_stop_string_completed_by_the_last_token_and_held_text_at_length(tok):
    chain = tok.encode(TEXT) + [tok.eos_id]
    model = chain_model(tok.vocab_size, chain)
    # max_tokens ends the text while "Sto" is held back as a possible "Stop!": it is emitted.
    n = chain.index(tok.encode(" Stop")[0])
    r = generate(model, tok, chain[:1], max_tokens=n, params=GREEDY, stop=["Stop!"])
    assert r.finish_reason == "length" and r.text == tok.decode(chain[1 : n + 1])


def test_stop_checker_holds_back_partial_matches():
    s = StopChecker(["<|im_end|>", "\nUser:"])
    assert s.feed("Hello <|im") == ("Hello ", False)
    assert s.feed("_e") == ("", False)
    assert s.feed("xtra\n") == ("<|im_extra", False)
    assert s.feed("Us") == ("", False)
    assert s.feed("er: more") == ("", True)
    assert s.flush() == ""
    t = StopChecker(["ab"])
    assert t.feed("xa") == ("x", False) and t.flush() == "a"
    with pytest.raises(ValueError, match="non-empty"):
        StopChecker([""])


def test_stop_ids(tok):
    chain = tok.encode(TEXT) + [tok.eos_id]
    model = chain_model(tok.vocab_size, chain)
    r = generate(model, tok, chain[:1], max_tokens=50, params=GREEDY, stop_ids=[chain[5]])
    assert r.token_ids == tuple(chain[1:6]) and r.finish_reason == "stop"
    assert r.text == tok.decode(chain[1:5])  # the stop token's text is not part of the reply


# ----------------------------------------------------------------------------------------------
# errors


def test_context_limit_is_an_error_or_truncates(tok):
    model = random_model()  # max_seq_len 64
    prompt = list(range(100, 160))  # 60 tokens
    with pytest.raises(ValueError, match="context of 64 tokens; lower max_tokens to 4"):
        generate(model, tok, prompt, max_tokens=10)
    r = generate(model, tok, prompt, max_tokens=10, truncate=True, params=GREEDY, ignore_eos=True)
    assert r.prompt_ids == tuple(prompt[-54:]) and r.completion_tokens == 10
    assert r.token_ids == tuple(argmax_loop(model, prompt[-54:], 10))


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompt=[1, 2, 99999]), "token id 99999 is outside the model's vocabulary"),
    (dict(prompt="hello"), "token id 31373 is outside"),  # the tokenizer knows more ids than the model
    (dict(prompt=[1, -1]), "token id -1"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(logprobs=-1), "logprobs"),
    (dict(stop_ids=[10**6]), "stop id"),
    (dict(stop=[""]), "stop strings"),
    (dict(params={"temperature": 0}), "SamplingParams"),
])
def test_bad_input_is_a_clear_value_error(tok, kwargs, match):
    model = random_model()
    prompt = kwargs.pop("prompt", [1, 2, 3])
    with pytest.raises(ValueError, match=match):
        generate(model, tok, prompt, **kwargs)
    with pytest.raises(ValueError, match=match):
        stream(model, tok, prompt, **kwargs)  # raised at the call, before the first event


def test_encoder_models_cannot_generate(tok):
    cfg = ModelConfig(arch="encoder", vocab_size=100, n_layer=1, n_head=2, n_embd=16, max_seq_len=16)
    with pytest.raises(ValueError, match="decoder-only"):
        generate(build_model(cfg), None, [1, 2])


# ----------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct


@pytest.fixture(scope="module")
def smollm2():
    from lucidlm.loading.load import load_model

    try:
        return load_model("smollm2-135m-instruct")
    except Exception as exc:  # offline and not cached
        pytest.skip(f"smollm2-135m-instruct is not available: {exc}")


def test_smollm2_chat_greedy(smollm2):
    """The first token equals the argmax of transformers' logits (stored reference); 6 cached
    greedy tokens equal our full-forward argmax loop; the answer is Paris."""
    from safetensors.torch import load_file

    model, tok = smollm2
    reference = json.loads((DATA / "smollm2_reference.json").read_text(encoding="utf-8"))
    prompt = render_chat(reference["chat_messages"], tokenizer=tok)
    ids = tok.encode(prompt, allowed_special="all")
    r = generate(model, tok, prompt, max_tokens=6, params=GREEDY, add_special=False)
    assert list(r.prompt_ids) == ids == load_file(DATA / "smollm2_reference.safetensors")["chat.ids"].tolist()
    hf_logits = load_file(DATA / "smollm2_reference.safetensors")["chat.logits"]
    assert r.token_ids[0] == int(hf_logits.argmax())
    assert list(r.token_ids) == argmax_loop(model, ids, len(r.token_ids))
    assert "Paris" in r.text


@pytest.mark.slow
def test_smollm2_greedy_matches_transformers_generate(smollm2):
    transformers = pytest.importorskip("transformers")
    from lucidlm.assets import asset_path

    model, tok = smollm2
    path = asset_path("smollm2-135m-instruct")
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                           dtype=torch.float32).eval()
    for text in ["The Eiffel Tower is in", render_chat([{"role": "user", "content": "Name a fruit."}], tokenizer=tok)]:
        ids = tok.encode(text, allowed_special="all")
        ours = generate(model, tok, ids, max_tokens=8, params=GREEDY, ignore_eos=True)
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, min_new_tokens=8)
        assert list(ours.token_ids) == theirs[0, len(ids):].tolist()


def test_sequence_state_stops_and_releases_held_text(tok):
    """``SequenceState`` alone (no model): held-back text comes out with the last event, a stop
    id adds no text, and the length limit ends the sequence."""
    from lucidlm.generate.sequence import SequenceOptions, SequenceState

    greedy = SamplingParams(temperature=0.0)
    hello, world = tok.encode("Hello")[0], tok.encode(" world")[0]

    def logits_for(token: int) -> torch.Tensor:
        x = torch.zeros(tok.vocab_size)
        x[token] = 10.0
        return x

    seq = SequenceState([1], tok, SequenceOptions(max_tokens=2, params=greedy, stop=(" world!",)))
    first = seq.step(logits_for(hello))
    last = seq.step(logits_for(world))  # " world" might still grow into the stop string: held back
    assert (first.text, first.finish_reason) == ("Hello", None)
    assert (last.text, last.finish_reason, seq.tail) == (" world", "length", " world")
    seq = SequenceState([1], tok, SequenceOptions(max_tokens=5, params=greedy, stop_ids=frozenset({world})))
    assert seq.step(logits_for(world)).finish_reason == "stop" and seq.stopped_by_id and seq.done
    with pytest.raises(ValueError, match="NaN"):
        SequenceState([1], tok, SequenceOptions(max_tokens=5)).step(torch.full((tok.vocab_size,), float("nan")))
