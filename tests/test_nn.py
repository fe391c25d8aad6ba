"""The building blocks against independent references: hand-computed numbers, plain torch ops
written out in the test, and Hugging Face's RoPE. Notation: B batch, nh heads, T queries, S keys,
hs head size."""

from __future__ import annotations

import math

import pytest
import torch

from lucidlm.inspection import Trace
from lucidlm.models import DecoderLM, ModelConfig
from lucidlm.nn import (
    MLP,
    Attention,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositions,
    SwiGLU,
    attention_fast,
    attention_reference,
    build_mask,
    make_norm,
    sinusoidal_positions,
)
from lucidlm.nn.norms import rms_norm_reference

ATOL = 1e-5


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def naive_attention(q, k, v, allowed=None):
    """softmax(q k^T / sqrt(hs)) v written out with plain ops; allowed: bool (.., T, S)."""
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = torch.where(allowed, scores, torch.full_like(scores, -1e30))
    e = torch.exp(scores - scores.max(-1, keepdim=True).values)
    return torch.einsum("bhts,bhsd->bhtd", e / e.sum(-1, keepdim=True), v)


# ---------------------------------------------------------------- attention functions


def test_reference_matches_hand_computed_2x2():
    q = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # (1, 1, 2, 2)
    k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    v = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    # scores = [[1/sqrt2, 0], [0, 1/sqrt2]]; row 0 weights: e^a / (e^a + 1), 1 / (e^a + 1)
    a = 1 / math.sqrt(2)
    w0 = math.exp(a) / (math.exp(a) + 1)
    expected = torch.tensor([[w0 * 1 + (1 - w0) * 3, w0 * 2 + (1 - w0) * 4],
                             [(1 - w0) * 1 + w0 * 3, (1 - w0) * 2 + w0 * 4]])
    out, scores, weights = attention_reference(q, k, v)
    torch.testing.assert_close(scores[0, 0], torch.tensor([[a, 0.0], [0.0, a]]))
    torch.testing.assert_close(weights[0, 0], torch.tensor([[w0, 1 - w0], [1 - w0, w0]]))
    torch.testing.assert_close(out[0, 0], expected)
    # causal: the first query sees only the first key, so it returns v[0] exactly
    out_c, _, w_c = attention_reference(q, k, v, build_mask(2, 2, causal=True))
    torch.testing.assert_close(out_c[0, 0, 0], torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(w_c[0, 0], torch.tensor([[1.0, 0.0], [1 - w0, w0]]))


def _padding(lengths, S, left):
    """(B, S) bool, True = real token, padded on the left or the right."""
    pos = torch.arange(S)[None]
    n = torch.tensor(lengths)[:, None]
    return pos >= S - n if left else pos < n


CASES = {
    # name: (T, S, causal, key padding lengths, left padding)
    "no_mask": (5, 5, False, None, False),
    "causal": (6, 6, True, None, False),
    "causal_cache_offset": (3, 8, True, None, False),
    "causal_one_query_cache": (1, 8, True, None, False),
    "pad_right": (6, 6, False, [6, 3], False),
    "pad_left": (6, 6, False, [6, 2], True),
    "causal_pad_left": (6, 6, True, [4, 6], True),
    "causal_pad_left_cache": (2, 7, True, [3, 7], True),
    "cross": (4, 9, False, None, False),
    "cross_pad": (4, 9, False, [9, 5], False),
}


@pytest.mark.parametrize("case", CASES)
def test_reference_and_fast_agree(case):
    T, S, causal, lengths, left = CASES[case]
    B, nh, hs = 2, 3, 8
    q, k, v = rand(B, nh, T, hs, seed=1), rand(B, nh, S, hs, seed=2), rand(B, nh, S, hs, seed=3)
    kp = _padding(lengths, S, left) if lengths else None
    mask = build_mask(T, S, causal=causal, key_padding=kp)

    # the mask written out: query t sits at position S - T + t and sees keys j <= it, and no padding
    allowed = torch.ones(B, 1, T, S, dtype=torch.bool)
    if causal:
        allowed &= (torch.arange(S)[None, :] <= torch.arange(S - T, S)[:, None])[None, None]
    if kp is not None:
        allowed &= kp[:, None, None, :]
    has_any = allowed.any(-1)  # (B, 1, T): query rows that see at least one key (others: padding)
    if mask is not None:
        assert torch.equal(mask.expand(B, 1, T, S)[has_any[..., None].expand(B, 1, T, S)],
                           allowed[has_any[..., None].expand(B, 1, T, S)])

    out_ref, scores, weights = attention_reference(q, k, v, mask)
    out_fast = attention_fast(q, k, v, mask)
    torch.testing.assert_close(out_fast, out_ref, atol=ATOL, rtol=0)
    if causal and T == S and kp is None:
        torch.testing.assert_close(attention_fast(q, k, v, is_causal=True), out_ref, atol=ATOL, rtol=0)
    # against the naive formula on every query that has something to attend to
    naive = naive_attention(q, k, v, allowed)
    rows = has_any.expand(B, nh, T)
    torch.testing.assert_close(out_ref[rows], naive[rows], atol=ATOL, rtol=0)
    # weights: rows sum to 1, exactly 0 where masked; scores are the unmasked q k^T / sqrt(hs)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, nh, T), atol=1e-6, rtol=0)
    assert (weights[(~allowed & has_any[..., None]).expand(B, nh, T, S)] == 0).all()
    torch.testing.assert_close(scores, q @ k.transpose(-2, -1) / math.sqrt(hs))
    assert torch.isfinite(out_ref).all() and torch.isfinite(out_fast).all()


def test_cache_offset_equals_last_rows_of_full_causal():
    """Causal attention of the last T queries over S keys == the last T rows of full causal attention."""
    q, k, v = rand(2, 2, 7, 4, seed=4), rand(2, 2, 7, 4, seed=5), rand(2, 2, 7, 4, seed=6)
    full, _, _ = attention_reference(q, k, v, build_mask(7, 7, causal=True))
    part = attention_fast(q[:, :, -3:], k, v, build_mask(3, 7, causal=True))
    torch.testing.assert_close(part, full[:, :, -3:], atol=ATOL, rtol=0)


def test_padding_matches_unpadded_sequence():
    """Keys hidden by padding contribute nothing: same output as the sequence without them."""
    q, k, v = rand(1, 2, 4, 8, seed=7), rand(1, 2, 6, 8, seed=8), rand(1, 2, 6, 8, seed=9)
    kp = torch.tensor([[False, False, True, True, True, True]])  # two pads on the left
    padded = attention_fast(q, k, v, build_mask(4, 6, causal=False, key_padding=kp))
    alone = attention_fast(q, k[:, :, 2:], v[:, :, 2:])
    torch.testing.assert_close(padded, alone, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- the Attention module


def _split_heads(x, n, hs):
    B, T, _ = x.shape
    return x.view(B, T, n, hs).transpose(1, 2)


@pytest.mark.parametrize("n_head,n_kv_head", [(4, 4), (4, 2), (6, 1)])
def test_attention_module_gqa_against_per_head_loop(n_head, n_kv_head):
    torch.manual_seed(0)
    C, hs = 24, 24 // n_head
    attn = Attention(C, n_head, n_kv_head, causal=True).eval()
    x = rand(2, 5, C, seed=10)
    W, b = attn.qkv.weight, attn.qkv.bias
    q = _split_heads(x @ W[:C].T + b[:C], n_head, hs)
    k = _split_heads(x @ W[C : C + n_kv_head * hs].T + b[C : C + n_kv_head * hs], n_kv_head, hs)
    v = _split_heads(x @ W[C + n_kv_head * hs :].T + b[C + n_kv_head * hs :], n_kv_head, hs)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    group = n_head // n_kv_head
    heads = [naive_attention(q[:, h : h + 1], k[:, h // group : h // group + 1], v[:, h // group : h // group + 1],
                             causal) for h in range(n_head)]  # query head h reads kv head h // group
    expected = attn.proj(torch.cat(heads, dim=1).transpose(1, 2).reshape(2, 5, C))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), expected, atol=ATOL, rtol=0)
        trace = Trace()
        torch.testing.assert_close(attn(x, trace=trace), expected, atol=ATOL, rtol=0)  # reference path
    assert trace["attn.k"].shape == (2, n_head, 5, hs)


def test_cross_attention_module():
    torch.manual_seed(0)
    attn = Attention(16, 4, 2, causal=True, cross=True).eval()  # causal is ignored for cross-attention
    x, memory = rand(2, 3, 16, seed=11), rand(2, 7, 16, seed=12)
    pad = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    with torch.no_grad():
        out = attn(x, memory=memory, key_padding=pad)
        torch.testing.assert_close(attn(x, memory=memory, key_padding=pad, trace=Trace()), out, atol=ATOL, rtol=0)
        alone = attn(x[1:], memory=memory[1:, :4])
    torch.testing.assert_close(out[1:], alone, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="memory"):
        attn(x)


def test_padding_mask_of_wrong_shape_is_a_value_error():
    attn = Attention(16, 4)
    with pytest.raises(ValueError, match="padding mask"):
        attn(rand(2, 3, 16), key_padding=torch.ones(2, 4, dtype=torch.bool))


# ---------------------------------------------------------------- positions


@pytest.mark.parametrize("hs,theta", [(8, 10000.0), (16, 100000.0), (64, 500000.0), (32, 500.0)])
def test_rope_matches_hugging_face(hs, theta):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    n_head, max_pos = 2, 4096
    hf = LlamaRotaryEmbedding(LlamaConfig(hidden_size=hs * n_head, num_attention_heads=n_head, head_dim=hs,
                                          max_position_embeddings=max_pos, rope_theta=theta))
    ours = RotaryEmbedding(hs, max_pos, theta)
    positions = torch.tensor([[0, 1, 2, 7, 100, 4095], [3, 4, 5, 6, 2000, 4000]])  # (B, T)
    q, k = rand(2, n_head, 6, hs, seed=13), rand(2, 1, 6, hs, seed=14)
    cos, sin = hf(q, positions)
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos, sin)
    q_ours, k_ours = ours(q, k, positions)
    torch.testing.assert_close(q_ours, q_hf, atol=1e-6, rtol=0)
    torch.testing.assert_close(k_ours, k_hf, atol=1e-6, rtol=0)
    # (T,) positions broadcast over the batch
    q1, k1 = ours(q, k, positions[0])
    torch.testing.assert_close(q1[0], q_hf[0], atol=1e-6, rtol=0)


def test_rope_is_relative_and_rejects_positions_past_its_table():
    rope = RotaryEmbedding(8, 64)
    q, k = rand(1, 1, 1, 8, seed=15), rand(1, 1, 1, 8, seed=16)
    dots = []
    for p in (0, 10, 40):  # same distance (3) at different absolute positions: same q.k
        qr, _ = rope(q, q, torch.tensor([p + 3]))
        _, kr = rope(k, k, torch.tensor([p]))
        dots.append(float((qr * kr).sum()))
    assert max(dots) - min(dots) < 1e-5
    with pytest.raises(ValueError, match="RoPE table"):
        rope(q, k, torch.tensor([64]))
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7, 8)


@pytest.mark.parametrize("dim", [8, 6, 512])
def test_sinusoidal_table_matches_the_paper(dim):
    table = sinusoidal_positions(60, dim)
    assert table.shape == (60, dim)
    for pos in (0, 1, 5, 59):
        for i in range(0, dim // 2, max(1, dim // 16)):
            angle = pos / 10000 ** (2 * i / dim)  # Vaswani et al. 2017, section 3.5
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    module = SinusoidalPositions(60, dim)
    assert torch.equal(module(torch.tensor([[3, 4]])), table[[3, 4]][None])


# ---------------------------------------------------------------- norms and MLPs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_matches_formula(dtype):
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(rand(16, seed=17))
    x = (rand(2, 3, 16, seed=18) * 3).to(dtype)
    x32 = x.float()
    expected = x32 / torch.sqrt((x32 * x32).mean(-1, keepdim=True) + 1e-5) * norm.weight
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    with torch.no_grad():
        torch.testing.assert_close(norm(x).float(), expected, atol=tol, rtol=tol)
        torch.testing.assert_close(norm(x), rms_norm_reference(x, norm.weight, 1e-5), atol=tol, rtol=tol)


def test_layernorm_matches_formula():
    norm = make_norm("layernorm", 16, 1e-5)
    with torch.no_grad():
        norm.weight.copy_(rand(16, seed=19))
        norm.bias.copy_(rand(16, seed=20))
        x = rand(2, 3, 16, seed=21)
        mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        expected = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias
        torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=0)
    assert make_norm("layernorm", 4, 1e-5, bias=False).bias is None
    assert isinstance(make_norm("rmsnorm", 4, 1e-6), RMSNorm)
    with pytest.raises(ValueError, match="unknown norm"):
        make_norm("batchnorm", 4, 1e-5)


def test_mlp_matches_formula():
    torch.manual_seed(0)
    mlp = MLP(8, 32, "gelu_tanh")
    x = rand(2, 3, 8, seed=22)
    with torch.no_grad():
        h = x @ mlp.fc.weight.T + mlp.fc.bias
        gelu = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))  # GPT-2's gelu_new
        out = mlp(x)
        assert out.shape == (2, 3, 8) and mlp.fc.weight.shape == (32, 8)
        torch.testing.assert_close(out, gelu @ mlp.proj.weight.T + mlp.proj.bias, atol=1e-5, rtol=0)
        exact = MLP(8, 32, "gelu")
        h = x @ exact.fc.weight.T + exact.fc.bias
        erf_gelu = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        torch.testing.assert_close(exact(x), erf_gelu @ exact.proj.weight.T + exact.proj.bias, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="activation"):
        MLP(8, 32, "swish!")


def test_swiglu_matches_formula():
    torch.manual_seed(0)
    mlp = SwiGLU(8, 12)
    x = rand(2, 3, 8, seed=23)
    w_gate, w_up = mlp.gate_up.weight[:12], mlp.gate_up.weight[12:]
    with torch.no_grad():
        g = x @ w_gate.T
        expected = (g * torch.sigmoid(g) * (x @ w_up.T)) @ mlp.proj.weight.T  # W_down(silu(W_gate x) * W_up x)
        out = mlp(x)
    assert out.shape == (2, 3, 8) and mlp.gate_up.weight.shape == (24, 8) and mlp.gate_up.bias is None
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="activation"):
        SwiGLU(8, 12, activation="nope")


# ---------------------------------------------------------------- KV cache and batching, whole model

GPT2_LIKE = ModelConfig(vocab_size=97, n_layer=2, n_head=4, n_embd=32, max_seq_len=64)
LLAMA_LIKE = ModelConfig(vocab_size=97, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=48,
                         max_seq_len=64, positions="rope", rope_theta=500.0, norm="rmsnorm", mlp="swiglu",
                         activation="silu", bias=False)
CONFIGS = {"gpt2": GPT2_LIKE, "llama_gqa": LLAMA_LIKE,
           "llama_mqa": LLAMA_LIKE.replace(n_kv_head=1), "sinusoidal": GPT2_LIKE.replace(positions="sinusoidal")}


def _model(cfg):
    torch.manual_seed(0)
    return DecoderLM(cfg).eval()


def _ids(B, T, seed=0):
    return torch.randint(0, 97, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", CONFIGS)
def test_kv_cache_matches_full_forward(name):
    model = _model(CONFIGS[name])
    ids = _ids(2, 10)
    with torch.no_grad():
        full = model(ids)
        for chunks in ([1] * 10, [4, 1, 3, 2]):
            cache = model.new_cache(batch=2, max_len=16)
            parts, t = [], 0
            for n in chunks:
                parts.append(model(ids[:, t : t + n], cache=cache))
                t += n
            assert cache.length == 10
            torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=ATOL, rtol=0)
        cache = model.new_cache(batch=2, max_len=16)
        model(ids[:, :9], cache=cache)
        torch.testing.assert_close(model(ids[:, 9:], cache=cache, last_only=True), full[:, -1:], atol=ATOL, rtol=0)


def test_kv_cache_overflow_is_a_value_error():
    model = _model(LLAMA_LIKE)
    cache = model.new_cache(batch=1, max_len=4)
    with torch.no_grad():
        model(_ids(1, 3), cache=cache)
        with pytest.raises(ValueError, match="KV cache full"):
            model(_ids(1, 2), cache=cache)
        with pytest.raises(ValueError, match="batch"):
            model(_ids(2, 1), cache=model.new_cache(batch=1, max_len=4))


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("left", [True, False])
def test_padded_batch_matches_each_sequence_alone(name, left):
    model = _model(CONFIGS[name])
    seqs = [_ids(1, 7, seed=1)[0], _ids(1, 4, seed=2)[0], _ids(1, 1, seed=3)[0]]
    T, pad_id = 7, 0
    ids = torch.full((3, T), pad_id)
    mask = torch.zeros(3, T, dtype=torch.long)
    for b, s in enumerate(seqs):
        sl = slice(T - len(s), T) if left else slice(0, len(s))
        ids[b, sl], mask[b, sl] = s, 1
    with torch.no_grad():
        batch = model(ids, attention_mask=mask)
        for b, s in enumerate(seqs):
            alone = model(s[None])
            torch.testing.assert_close(batch[b][mask[b].bool()], alone[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["gpt2", "llama_gqa"])
def test_left_padded_generation_with_cache(name):
    """Prefill a left-padded batch, then decode token by token with the cache and a growing mask."""
    model = _model(CONFIGS[name])
    seqs = [_ids(1, 5, seed=4)[0], _ids(1, 2, seed=5)[0]]
    new = _ids(2, 3, seed=6)  # the tokens "generated" next, fed back one at a time
    ids = torch.zeros(2, 5, dtype=torch.long)
    mask = torch.zeros(2, 5, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, 5 - len(s) :], mask[b, 5 - len(s) :] = s, 1
    with torch.no_grad():
        cache = model.new_cache(batch=2, max_len=8)
        steps = [model(ids, attention_mask=mask, cache=cache, last_only=True)]
        for t in range(3):
            mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
            steps.append(model(new[:, t : t + 1], attention_mask=mask, cache=cache))
        got = torch.cat(steps, dim=1)  # (2, 4, V)
        for b, s in enumerate(seqs):
            alone = model(torch.cat([s, new[b]])[None])[0, len(s) - 1 :]  # (4, V)
            torch.testing.assert_close(got[b], alone, atol=ATOL, rtol=0)
        with pytest.raises(ValueError, match="attention_mask"):
            model(new[:, :1], attention_mask=mask[:, :2], cache=cache)


def test_fast_attention_stays_fp32_under_cpu_autocast():
    """Under CPU bf16 autocast, attention_fast computes in fp32 (the bf16 flash backward kernel is
    slow): same output as outside autocast, and gradients flow."""
    from lucidlm.nn.attention import attention_fast, attention_reference, build_mask

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8, requires_grad=True) for _ in range(3))
    plain = attention_fast(q, k, v, is_causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = attention_fast(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=True)
    assert auto.dtype == torch.float32
    ref, _, _ = attention_reference(q, k, v, build_mask(9, 9, causal=True))
    torch.testing.assert_close(auto, ref, rtol=0.05, atol=0.05)  # inputs were rounded to bf16
    torch.testing.assert_close(plain, ref, rtol=1e-5, atol=1e-5)
    auto.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_attention_dropout_only_in_training():
    """cfg.dropout also drops attention weights (Vaswani et al., GPT-2): in training the output
    changes from call to call and keeps its expectation; in eval it is the deterministic output."""
    from lucidlm.nn.attention import Attention

    torch.manual_seed(0)
    attn = Attention(16, 4, causal=True, dropout=0.5)
    x = torch.randn(2, 6, 16)
    attn.eval()
    ref = attn(x)
    torch.testing.assert_close(attn(x), ref)
    attn.train()
    a, b = attn(x), attn(x)
    assert not torch.allclose(a, b)
    mean = torch.stack([attn(x) for _ in range(3000)]).mean(0)  # inverted dropout keeps the mean
    torch.testing.assert_close(mean, ref, rtol=0.1, atol=0.03)
