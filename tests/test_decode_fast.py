"""The C one-token decode path (models/decode_fast.py, nn/_decode_kernel.c) against the reference.

Each kernel is checked against its PyTorch equation on awkward sizes (not multiples of the vector
width); then whole models of every decoder family decode with the fast path on and off and must
give the same logits and the same KV cache, one row or a left-padded batch with per-row
positions (the server's continuous batching); finally SmolLM2 decodes its reference prompts'
last tokens and must match the logits transformers computed. Notation: B rows, C width.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from lucidlm.models import ModelConfig, build_model, decode_fast
from lucidlm.nn.attention import attention_reference, build_mask, repeat_kv
from lucidlm.nn.mlp import ACTIVATIONS

K = decode_fast.K
needs_kernel = pytest.mark.skipif(K is None, reason="the C decode kernel is not built (no C compiler at install)")

V = 101
LLAMA = ModelConfig(vocab_size=V, n_layer=3, n_head=6, n_kv_head=2, n_embd=48, intermediate_size=70,
                    max_seq_len=64, positions="rope", rope_theta=500.0, norm="rmsnorm", mlp="swiglu",
                    activation="silu", bias=False)
GPT2 = ModelConfig(vocab_size=V, n_layer=3, n_head=4, n_embd=36, max_seq_len=64)
FAMILIES = {
    "llama": LLAMA,
    "gpt2": GPT2,
    "gpt2-no-final-norm-relu2": dataclasses.replace(GPT2, activation="relu2", final_norm=False, norm_bias=False),
    "rope-layernorm-gelu-mlp": dataclasses.replace(LLAMA, norm="layernorm", mlp="mlp", activation="gelu", bias=True),
    "sinusoidal-scaled-relu-untied": dataclasses.replace(GPT2, positions="sinusoidal", activation="relu",
                                                         embedding_scale=True, tie_embeddings=False),
    "swiglu-gelu-tanh-mha": dataclasses.replace(LLAMA, n_kv_head=None, activation="gelu_tanh"),
}


SIMD = ["portable"] + (["avx2+fma"] if K is not None and K.simd() == "avx2+fma" else [])


@pytest.fixture(params=SIMD)
def simd(request):
    """Each dot-product implementation this CPU can run: the portable one is checked here too."""
    before = K.simd()
    K.set_simd(request.param)
    yield request.param
    K.set_simd(before)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- the kernels, one by one --------------------------------------------------------------------

@needs_kernel
@pytest.mark.parametrize("B,n_out,n_in", [(1, 5, 37), (3, 17, 64), (2, 9, 1), (4, 6, 75)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("accumulate", [0, 1])
def test_linear(B, n_out, n_in, bias, accumulate, simd):
    x, w, b = rand(B, n_in, seed=1), rand(n_out, n_in, seed=2), rand(n_out, seed=3)
    out = rand(B, n_out, seed=4)
    expected = F.linear(x.double(), w.double(), b.double() if bias else None)
    if accumulate:
        expected += out.double()
    K.linear(out.data_ptr(), x.data_ptr(), w.data_ptr(), b.data_ptr() if bias else 0, B, n_out, n_in, accumulate)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


@needs_kernel
@pytest.mark.parametrize("n_in", [1, 7, 8, 31, 37, 64, 75])
def test_linear_rows_are_bit_identical_alone_or_in_a_batch(n_in, simd):
    """Rows go through the kernel two at a time; a row's result must not depend on its place."""
    B, n_out = 5, 11
    x, w, b = rand(B, n_in, seed=5), rand(n_out, n_in, seed=6), rand(n_out, seed=7)
    together = torch.empty(B, n_out)
    K.linear(together.data_ptr(), x.data_ptr(), w.data_ptr(), b.data_ptr(), B, n_out, n_in, 0)
    for r in range(B):
        alone = torch.empty(n_out)
        K.linear(alone.data_ptr(), x[r].data_ptr(), w.data_ptr(), b.data_ptr(), 1, n_out, n_in, 0)
        assert torch.equal(alone, together[r]), r


@needs_kernel
@pytest.mark.parametrize("is_rms", [0, 1])
@pytest.mark.parametrize("bias", [False, True])
def test_norm(is_rms, bias):
    B, C, eps = 3, 37, 1e-5
    x, w, b = rand(B, C, seed=1) * 3 + 1, rand(C, seed=2), rand(C, seed=3)
    out = torch.empty(B, C)
    if is_rms:
        expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
        bias = False
    else:
        expected = F.layer_norm(x, (C,), w, b if bias else None, eps)
    K.norm(out.data_ptr(), x.data_ptr(), w.data_ptr(), b.data_ptr() if bias else 0, B, C, eps, is_rms)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@needs_kernel
@pytest.mark.parametrize("per_row", [0, 1])
def test_rope_matches_rotate_half(per_row):
    from lucidlm.nn.embeddings import RotaryEmbedding

    B, nh, hs, extra = 3, 5, 10, 7  # each row: 5 heads, then 7 other floats the kernel must not touch
    rope = RotaryEmbedding(hs, 32, theta=100.0)
    x = rand(B, nh * hs + extra)
    pos = torch.tensor([4, 0, 31]) if per_row else torch.tensor([9])
    heads = x[:, : nh * hs].reshape(B, nh, 1, hs)  # (B, nh, T=1, hs)
    expected, _ = rope(heads, heads, pos[:, None] if per_row else pos)
    out = x.clone()
    K.rope(out.data_ptr(), nh * hs + extra, rope.cos.data_ptr(), rope.sin.data_ptr(), pos.data_ptr(), per_row, B, nh, hs)
    torch.testing.assert_close(out[:, : nh * hs], expected.reshape(B, nh * hs), atol=1e-6, rtol=1e-6)
    assert torch.equal(out[:, nh * hs:], x[:, nh * hs:])


@needs_kernel
@pytest.mark.parametrize("nh,nkv", [(4, 4), (6, 2), (3, 1)])
@pytest.mark.parametrize("padded", [False, True])
def test_attend_matches_reference(nh, nkv, padded, simd):
    B, hs, L, max_len = 3, 8, 6, 10
    q, k, v = rand(B, nh, 1, hs, seed=1), rand(B, nkv, 1, hs, seed=2), rand(B, nkv, 1, hs, seed=3)
    k_cache, v_cache = rand(B, nkv, max_len, hs, seed=4), rand(B, nkv, max_len, hs, seed=5)
    key_ok = torch.ones(B, L + 1, dtype=torch.bool)
    if padded:
        key_ok[0, :3] = False  # a left-padded row
        key_ok[2, :] = False  # a row with no real key: attends to everything, as build_mask does
    k_all = torch.cat([k_cache[:, :, :L], k], dim=2)
    v_all = torch.cat([v_cache[:, :, :L], v], dim=2)
    mask = build_mask(1, L + 1, causal=True, key_padding=key_ok if padded else None)
    expected, _, _ = attention_reference(q, repeat_kv(k_all, nh // nkv), repeat_kv(v_all, nh // nkv), mask)

    qkv = torch.cat([q.reshape(B, -1), k.reshape(B, -1), v.reshape(B, -1)], dim=1).contiguous()
    out = torch.empty(B, nh * hs)
    K.attend(out.data_ptr(), qkv.data_ptr(), qkv.shape[1], k_cache.data_ptr(), v_cache.data_ptr(),
             key_ok.data_ptr() if padded else 0, B, nh, nkv, hs, L, max_len)
    torch.testing.assert_close(out, expected.reshape(B, nh * hs), atol=1e-5, rtol=1e-5)
    assert torch.equal(k_cache[:, :, L], k[:, :, 0]) and torch.equal(v_cache[:, :, L], v[:, :, 0])


@needs_kernel
@pytest.mark.parametrize("kind", sorted(decode_fast.ACTIVATION_CODES))
def test_activations(kind):
    code = decode_fast.ACTIVATION_CODES[kind]
    x = torch.linspace(-6, 6, 301)
    h = x.clone()
    K.act(h.data_ptr(), h.numel(), code)
    torch.testing.assert_close(h, ACTIVATIONS[kind](x), atol=1e-6, rtol=1e-5)
    gate_up = rand(2, 2 * 13)
    out = torch.empty(2, 13)
    K.gated(out.data_ptr(), gate_up.data_ptr(), 2, 13, code)
    torch.testing.assert_close(out, ACTIVATIONS[kind](gate_up[:, :13]) * gate_up[:, 13:], atol=1e-6, rtol=1e-5)


# -- whole models: fast path on and off --------------------------------------------------------

def _model(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # norms away from their 1/0 initialisation, so that a swapped weight shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _decode(model, prompt, steps, fast, mask=None, positions=None):
    """Prefill, then ``steps`` one-token steps; returns the logits of every step and the cache."""
    model.use_fast_decode(fast)
    B = prompt.shape[0]
    cache = model.new_cache(B, prompt.shape[1] + steps)
    out = []
    with torch.inference_mode():
        logits = model(prompt, cache=cache, attention_mask=mask, last_only=True)
        for i in range(steps):
            nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            if mask is not None:
                mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype)], dim=1)
            pos = None if positions is None else positions[:, i : i + 1]
            logits = model(nxt, cache=cache, attention_mask=mask, positions=pos, last_only=True)
            out.append(logits)
    return torch.cat(out, dim=1), cache


@needs_kernel
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fast_decode_equals_reference(family, simd):
    model = _model(FAMILIES[family])
    prompt = torch.randint(0, V, (1, 9), generator=torch.Generator().manual_seed(1))
    calls = []
    real = decode_fast.decode_step

    def counting(*args):
        result = real(*args)
        calls.append(result is not None)
        return result

    ref, ref_cache = _decode(model, prompt, 12, fast=False)
    decode_fast.decode_step = counting
    try:
        fast, fast_cache = _decode(model, prompt, 12, fast=True)
    finally:
        decode_fast.decode_step = real
    assert calls == [True] * 12  # every one-token step took the fast path
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(fast_cache.layers, ref_cache.layers):
        assert a.length == b.length == 21
        torch.testing.assert_close(a.k, b.k, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.v, b.v, atol=1e-5, rtol=1e-5)


@needs_kernel
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_fast_decode_left_padded_batch(family, simd):
    """Rows of different lengths, left-padded, with the mask covering cache + new token, and
    per-row positions given explicitly as the server's engine does."""
    model = _model(FAMILIES[family])
    prompt = torch.randint(1, V, (3, 7), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, :4] = 0
    mask[1, :1] = 0
    prompt[mask == 0] = 0
    start = mask.sum(1, keepdim=True)  # (B, 1): each row's first generated position
    positions = start + torch.arange(6)[None]  # (B, 6)
    ref, _ = _decode(model, prompt, 6, fast=False, mask=mask, positions=positions)
    fast, _ = _decode(model, prompt, 6, fast=True, mask=mask, positions=positions)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


@needs_kernel
def test_falls_back_where_it_does_not_apply():
    from lucidlm.nn.lora import apply_lora, lora_modules, merge_lora

    model = _model(LLAMA).use_fast_decode()
    ids = torch.tensor([[3]])
    positions = torch.tensor([0])
    with torch.inference_mode():
        assert decode_fast.decode_step(model, ids, positions, None, model.new_cache(1, 4)) is not None
        bf16 = _model(LLAMA).to(torch.bfloat16).use_fast_decode()
        assert decode_fast.decode_step(bf16, ids, positions, None, bf16.new_cache(1, 4)) is None
        apply_lora(model, rank=2)
        for m in lora_modules(model).values():
            torch.nn.init.normal_(m.lora_B)
        cache = model.new_cache(1, 4)
        assert decode_fast.decode_step(model, ids, positions, None, cache) is None
        assert cache.length == 0  # nothing was written
        reference = model(ids, cache=cache)  # the reference path ran instead
        merge_lora(model)  # W <- W + BA: a merged LoRA layer is a plain linear again
        fast = decode_fast.decode_step(model, ids, positions, None, model.new_cache(1, 4))
        torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    model = _model(LLAMA).use_fast_decode(False)
    assert not model._fast_decode


@needs_kernel
def test_bad_input_still_gets_clear_errors():
    model = _model(LLAMA).use_fast_decode()
    with torch.inference_mode():
        cache = model.new_cache(1, 2)
        model(torch.tensor([[1, 2]]), cache=cache)
        with pytest.raises(ValueError, match="KV cache full"):
            model(torch.tensor([[3]]), cache=cache)
        cache = model.new_cache(1, 4)
        with pytest.raises(ValueError, match="outside the model's vocabulary"):
            model(torch.tensor([[V]]), cache=cache)
        assert cache.length == 0
        with pytest.raises(ValueError, match="attention_mask has shape"):
            model(torch.tensor([[1]]), cache=cache, attention_mask=torch.ones(1, 3))
        with pytest.raises(ValueError, match="padding mask has shape"):  # positions given: no cumsum check
            model(torch.tensor([[1]]), cache=cache, attention_mask=torch.ones(1, 3), positions=torch.tensor([0]))
        with pytest.raises(ValueError, match="KV cache was made for"):
            model(torch.tensor([[1], [2]]), cache=cache)


@needs_kernel
def test_smollm2_last_token_matches_transformers():
    """Prefill all but the last token of each reference prompt, decode the last one through the
    fast path: its logits must match the ones transformers computed (tests/data)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    from lucidlm.assets import asset_path
    from lucidlm.loading.load import load_model

    try:
        path = asset_path("smollm2-135m-instruct")
    except Exception as exc:  # offline and not cached
        pytest.skip(f"asset smollm2-135m-instruct is not available: {exc}")
    data = Path(__file__).parent / "data"
    reference = load_file(data / "smollm2_reference.safetensors")
    names = [p["name"] for p in json.loads((data / "smollm2_reference.json").read_text())["prompts"]]
    model, _ = load_model(path)
    model.eval().use_fast_decode()
    with torch.inference_mode():
        for name in names:
            ids = reference[f"{name}.ids"][None]  # (1, T)
            cache = model.new_cache(1, ids.shape[1])
            model(ids[:, :-1], cache=cache)
            ours = model(ids[:, -1:], cache=cache)[0, -1]
            theirs = reference[f"{name}.logits"]
            assert (ours - theirs).abs().max().item() <= 1e-3, name
            assert ours.topk(5).indices.tolist() == theirs.topk(5).indices.tolist(), name
    assert math.isfinite(float(ours.sum()))


def test_without_the_kernel_use_fast_decode_stores_weights_column_major(monkeypatch):
    """lucidlm installed without a C compiler: use_fast_decode falls back to the column-major
    layout (PyTorch's ops stream it faster at one token), with the same logits."""
    monkeypatch.setattr(decode_fast, "K", None)
    model = _model(LLAMA)
    ids = torch.randint(0, V, (1, 6), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        before = model(ids)
        model.use_fast_decode()
        assert not model._fast_decode and decode_fast.unsupported_reason(model) == "the C decode kernel is not built"
        assert not model.layers[0].attn.qkv.weight.is_contiguous()  # column-major
        torch.testing.assert_close(model(ids), before, atol=1e-5, rtol=1e-5)


@needs_kernel
def test_set_simd_rejects_unknown_names():
    with pytest.raises(ValueError, match="not available"):
        K.set_simd("avx9000")


@needs_kernel
@pytest.mark.parametrize("threads", [2, 3, 5])
def test_threads_give_bit_identical_results(threads):
    """linear splits the weight rows between threads (nn/_thread_pool.h); every output is still
    computed whole by one thread, so the result is the same to the bit."""
    B, n_out, n_in = 3, 1001, 300  # big enough to be split (B * n_out * n_in >= 65536)
    x, w, b = rand(B, n_in, seed=8), rand(n_out, n_in, seed=9), rand(n_out, seed=10)
    outs = []
    before = K.threads()
    try:
        for n in (1, threads, threads, 1):
            K.set_threads(n)
            out = torch.empty(B, n_out)
            K.linear(out.data_ptr(), x.data_ptr(), w.data_ptr(), b.data_ptr(), B, n_out, n_in, 0)
            outs.append(out)
    finally:
        K.set_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    torch.testing.assert_close(outs[0], F.linear(x, w, b), atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="threads must be"):
        K.set_threads(0)


THREAD_STRESS = r"""
import os, sys, threading, torch
from lucidlm.models.decode_fast import K
K.set_threads(2)
w, x = torch.randn(2048, 256), torch.randn(2, 256)
expected = torch.nn.functional.linear(x, w)
def check():
    out = torch.empty(2, 2048)
    for _ in range(200):
        K.linear(out.data_ptr(), x.data_ptr(), w.data_ptr(), 0, 2, 2048, 256, 0)
        assert torch.allclose(out, expected, atol=1e-4), "wrong result"
check()  # the helper thread now exists
pid = os.fork()  # the child has no helpers: it must start its own, not wait for the parent's
if pid == 0:
    check()
    os._exit(0)
errors = []
def check_in_thread():
    try:
        check()
    except Exception as exc:
        errors.append(exc)
threads = [threading.Thread(target=check_in_thread) for _ in range(3)]  # callers at once: one uses the pool
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors
_, status = os.waitpid(pid, 0)
assert status == 0, status
print("ok")
"""


@needs_kernel
def test_thread_pool_survives_fork_and_concurrent_callers():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", THREAD_STRESS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@needs_kernel
def test_weights_changed_in_place_mid_generation_are_seen():
    """An ablation between two steps (a weight edited in place) reaches the fast path at once."""
    fast_model, ref_model = _model(LLAMA).use_fast_decode(), _model(LLAMA)
    caches = [m.new_cache(1, 8) for m in (fast_model, ref_model)]
    with torch.inference_mode():
        for model, cache in zip((fast_model, ref_model), caches):
            model(torch.tensor([[1, 2, 3]]), cache=cache)
            model(torch.tensor([[4]]), cache=cache)
            model.layers[1].mlp.proj.weight.zero_()  # knock out block 1's MLP
        fast, ref = (m(torch.tensor([[5]]), cache=c) for m, c in zip((fast_model, ref_model), caches))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
