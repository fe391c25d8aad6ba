"""The model core: ModelConfig, the trace, the three model shapes, bad input, and parity with
Hugging Face's GPT-2, Llama and BERT on tiny random configs (weights copied by hand here, so the
comparison does not depend on lucidlm's loaders). Notation: B batch, T time, V vocabulary."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import lucidlm.inspection.trace as trace_module
import lucidlm.nn.attention as attention_module
from lucidlm.inspection import Trace
from lucidlm.models import PRESETS, DecoderLM, Encoder, EncoderDecoder, ModelConfig, build_model, get_preset

ATOL = 1e-5
V = 97
GPT2_LIKE = ModelConfig(vocab_size=V, n_layer=2, n_head=4, n_embd=32, max_seq_len=64)
LLAMA_LIKE = ModelConfig(vocab_size=V, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=48,
                         max_seq_len=64, positions="rope", rope_theta=500.0, norm="rmsnorm", mlp="swiglu",
                         activation="silu", bias=False)
BERT_LIKE = ModelConfig(arch="encoder", vocab_size=V, n_layer=2, n_head=4, n_embd=32, intermediate_size=48,
                        max_seq_len=64, norm_eps=1e-12, norm_placement="post", final_norm=False, embed_norm=True,
                        activation="gelu", type_vocab_size=2, tie_embeddings=False, pad_token_id=0)
SEQ2SEQ = ModelConfig(arch="encoder-decoder", vocab_size=V, n_layer=2, n_encoder_layer=2, n_head=4, n_embd=32,
                      intermediate_size=48, max_seq_len=64, positions="sinusoidal", norm_placement="post",
                      final_norm=False, activation="relu", embedding_scale=True)


def _build(cfg):
    torch.manual_seed(0)
    return build_model(cfg).eval()


def _ids(B, T, seed=0, low=0):
    return torch.randint(low, V, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- ModelConfig

BAD_FIELDS = [
    ("arch", "gpt"), ("positions", "alibi"), ("norm", "batchnorm"), ("mlp", "moe"), ("norm_placement", "middle"),
    ("activation", "swish!"), ("vocab_size", 0), ("n_layer", -1), ("n_head", 0), ("n_embd", 32.0),
    ("max_seq_len", True), ("n_kv_head", 0), ("n_kv_head", -2), ("n_kv_head", 3), ("intermediate_size", 0),
    ("n_encoder_layer", -1), ("rope_theta", 0), ("norm_eps", -1e-5), ("bias", "yes"), ("tie_embeddings", 1),
    ("pad_token_id", "0"), ("eos_token_id", -1), ("dropout", 1.0), ("type_vocab_size", -1),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS, ids=[f"{f}={v!r}" for f, v in BAD_FIELDS])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GPT2_LIKE.replace(**{field: value})


def test_config_cross_field_validation():
    with pytest.raises(ValueError, match="n_embd=30 is not divisible by n_head=4"):
        GPT2_LIKE.replace(n_embd=30)
    with pytest.raises(ValueError, match="even head size"):
        LLAMA_LIKE.replace(n_embd=36, n_head=4, n_kv_head=None)  # head size 9
    with pytest.raises(ValueError, match="n_encoder_layer"):
        SEQ2SEQ.replace(n_encoder_layer=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        GPT2_LIKE.n_layer = 3  # configs are never mutated


@pytest.mark.parametrize("cfg", [GPT2_LIKE, LLAMA_LIKE, BERT_LIKE, SEQ2SEQ, *PRESETS.values()],
                         ids=lambda c: c.name or f"{c.arch}-{c.positions}")
def test_config_json_round_trip(cfg, tmp_path):
    cfg = cfg.replace(extra={"source": "test", "license": "MIT"})
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.extra == cfg.extra
    path = cfg.save(tmp_path / "config.json")
    loaded = ModelConfig.load(path)
    assert loaded == cfg and loaded.to_dict() == cfg.to_dict()


def test_config_rejects_unknown_keys_listing_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown ModelConfig keys \['n_layers'\].*valid keys:.*'n_layer'"):
        ModelConfig.from_dict({"n_layers": 2})
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        ModelConfig.load(tmp_path / "list.json")
    with pytest.raises(FileNotFoundError):
        ModelConfig.load(tmp_path / "missing.json")


# Published parameter counts (tied output heads counted once; BERT without the pooler).
PARAMS = {"gpt2": 124_439_808, "smollm2-135m": 134_515_008, "all-minilm-l6-v2": 22_565_376}


@pytest.mark.parametrize("name", PRESETS)
def test_presets_build(name):
    cfg = get_preset(name)
    with torch.device("meta"):  # shapes only: nothing allocated or initialised
        model = build_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    if name in PARAMS:
        assert n == PARAMS[name]
    assert n > 0 and type(model) is {"decoder": DecoderLM, "encoder": Encoder, "encoder-decoder": EncoderDecoder}[cfg.arch]


def test_unknown_preset_lists_presets():
    with pytest.raises(ValueError, match="gpt2.*smollm2-135m"):
        get_preset("gpt5")


# ---------------------------------------------------------------- the trace


def _expected_decoder_names(cfg):
    names = ["embed.tokens"] + (["embed.positions"] if cfg.positions in ("learned", "sinusoidal") else [])
    names.append("embed.out")
    for i in range(cfg.n_layer):
        names += [f"layers.{i}.attn.{s}" for s in
                  ("norm", "q", "k", "v", "scores", "scores_masked", "weights", "heads_out", "out", "resid")]
        names += [f"layers.{i}.mlp.{s}" for s in ("norm", "pre_act", "act", "out", "resid")]
    return [*names, "final_norm", "logits"]


@pytest.mark.parametrize("cfg", [GPT2_LIKE, LLAMA_LIKE], ids=["gpt2", "llama"])
def test_trace_names_shapes_and_equal_logits(cfg):
    model = _build(cfg)
    ids = _ids(2, 6)
    trace = Trace()
    with torch.no_grad():
        plain = model(ids)
        traced = model(ids, trace=trace)
    torch.testing.assert_close(traced, plain, atol=ATOL, rtol=0)
    assert list(trace) == _expected_decoder_names(cfg)
    B, T, C, nh, hs = 2, 6, cfg.n_embd, cfg.n_head, cfg.head_size
    shapes = {"embed.out": (B, T, C), "layers.0.attn.norm": (B, T, C), "layers.0.attn.q": (B, nh, T, hs),
              "layers.0.attn.k": (B, nh, T, hs), "layers.1.attn.v": (B, nh, T, hs),
              "layers.0.attn.scores": (B, nh, T, T), "layers.1.attn.weights": (B, nh, T, T),
              "layers.0.attn.heads_out": (B, T, C), "layers.0.attn.resid": (B, T, C),
              "layers.1.mlp.pre_act": (B, T, cfg.hidden_size), "layers.1.mlp.act": (B, T, cfg.hidden_size),
              "layers.1.mlp.resid": (B, T, C), "final_norm": (B, T, C), "logits": (B, T, V)}
    for name, shape in shapes.items():
        assert tuple(trace[name].shape) == shape, name
    torch.testing.assert_close(trace["logits"], plain, atol=ATOL, rtol=0)
    w = trace["layers.0.attn.weights"]
    assert (w.triu(diagonal=1) == 0).all()  # causal: nothing above the diagonal
    torch.testing.assert_close(w.sum(-1), torch.ones(B, nh, T))
    masked = trace["layers.0.attn.scores_masked"]
    assert torch.isneginf(masked.triu(diagonal=1)[..., 0, 1:]).all()
    # the residual stream: resid after attention = its input + what attention added
    torch.testing.assert_close(trace["layers.1.attn.resid"],
                               trace["layers.0.mlp.resid"] + trace["layers.1.attn.out"], atol=ATOL, rtol=0)


def test_trace_keep_filters_and_missing_names_are_explained():
    model = _build(GPT2_LIKE)
    trace = Trace(keep=["attn.weights", "logits"])
    with torch.no_grad():
        model(_ids(1, 4), trace=trace)
    assert trace.names() == ["layers.0.attn.weights", "layers.1.attn.weights", "logits"]
    assert "logits" in trace and len(trace) == 3
    with pytest.raises(KeyError, match="was not recorded"):
        trace["layers.0.attn.q"]


def test_no_trace_records_nothing_and_skips_the_reference_path(monkeypatch):
    calls = []
    monkeypatch.setattr(trace_module.Trace, "__init__", lambda self, *a, **k: calls.append("init"))
    monkeypatch.setattr(trace_module.Trace, "record", lambda self, *a, **k: calls.append("record"))

    def no_reference(*args, **kwargs):
        raise AssertionError("the reference attention (which builds the weights) ran without a trace")

    monkeypatch.setattr(attention_module, "attention_reference", no_reference)
    with torch.no_grad():
        _build(GPT2_LIKE)(_ids(2, 5), attention_mask=torch.ones(2, 5))
        _build(LLAMA_LIKE)(_ids(2, 5))
        _build(BERT_LIKE)(_ids(2, 5), attention_mask=torch.ones(2, 5))
        _build(SEQ2SEQ)(_ids(2, 5), _ids(2, 4))
    assert calls == []


def test_traced_equals_untraced_for_encoder_and_seq2seq():
    src, src_mask = _ids(2, 6, low=1), torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    tgt, tgt_mask = _ids(2, 5, seed=1, low=1), torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    enc, seq2seq = _build(BERT_LIKE), _build(SEQ2SEQ)
    with torch.no_grad():
        t1 = Trace()
        torch.testing.assert_close(enc(src, attention_mask=src_mask, trace=t1),
                                   enc(src, attention_mask=src_mask), atol=ATOL, rtol=0)
        t2 = Trace()
        torch.testing.assert_close(seq2seq(src, tgt, src_mask=src_mask, tgt_mask=tgt_mask, trace=t2),
                                   seq2seq(src, tgt, src_mask=src_mask, tgt_mask=tgt_mask), atol=ATOL, rtol=0)
    assert "embed.token_types" in t1 and "layers.1.attn.weights" in t1 and "hidden" in t1
    names = list(t2)
    assert names.index("encoder.hidden") < names.index("decoder.embed.out") < names.index("logits")
    cross = t2["decoder.layers.0.cross_attn.weights"]  # (B, nh, T_tgt, S_src): padded sources get 0
    assert cross.shape == (2, 4, 5, 6) and (cross[1, :, :, 4:] == 0).all()


# ---------------------------------------------------------------- Encoder and EncoderDecoder


@pytest.mark.parametrize("left", [False, True])
def test_encoder_padding_invariance(left):
    enc = _build(BERT_LIKE)
    seq, types = _ids(1, 5, seed=3, low=1), torch.tensor([[0, 0, 0, 1, 1]])
    ids, mask, tt = (torch.zeros(1, 8, dtype=torch.long) for _ in range(3))
    sl = slice(3, 8) if left else slice(0, 5)
    ids[:, sl], mask[:, sl], tt[:, sl] = seq, 1, types
    with torch.no_grad():
        padded = enc(torch.cat([ids, _ids(1, 8, seed=4)]), attention_mask=torch.cat([mask, torch.ones_like(mask)]),
                     token_types=torch.cat([tt, tt]))
        alone = enc(seq, token_types=types)
    torch.testing.assert_close(padded[0, sl], alone[0], atol=ATOL, rtol=0)


def test_encoder_decoder_shapes_causality_and_src_padding():
    model = _build(SEQ2SEQ)
    src, tgt = _ids(2, 7, low=1), _ids(2, 5, seed=1, low=1)
    src_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    with torch.no_grad():
        memory = model.encode(src, src_mask)
        logits = model(src, tgt, src_mask=src_mask)
        assert memory.shape == (2, 7, 32) and logits.shape == (2, 5, V)
        torch.testing.assert_close(model.decode(tgt, memory, src_mask=src_mask), logits, atol=ATOL, rtol=0)
        # causal decoder: changing target token 3 leaves the logits at 0..2 unchanged (and changes 3)
        tgt2 = tgt.clone()
        tgt2[:, 3] = (tgt[:, 3] + 1) % V
        changed = model(src, tgt2, src_mask=src_mask)
        torch.testing.assert_close(changed[:, :3], logits[:, :3], atol=ATOL, rtol=0)
        assert not torch.allclose(changed[:, 3], logits[:, 3])
        # a padded source token is never looked at: changing it changes nothing
        src2 = src.clone()
        src2[1, 5] = (src[1, 5] + 1) % V
        torch.testing.assert_close(model(src2, tgt, src_mask=src_mask), logits, atol=ATOL, rtol=0)
        # ... and a real one does
        src2[1, 1] = (src[1, 1] + 1) % V
        assert not torch.allclose(model(src2, tgt, src_mask=src_mask)[1], logits[1])


@pytest.mark.parametrize("placement", ["post", "pre"])
def test_encoder_decoder_cache_matches_full_decoding(placement):
    model = _build(SEQ2SEQ.replace(norm_placement=placement, final_norm=placement == "pre"))
    src, tgt = _ids(2, 7, low=1), _ids(2, 6, seed=1, low=1)
    src_mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    with torch.no_grad():
        memory = model.encode(src, src_mask)
        full = model.decode(tgt, memory, src_mask=src_mask)
        cache = model.new_cache(batch=2, max_len=8)
        steps = [model.decode(tgt[:, :2], memory, src_mask=src_mask, cache=cache)]
        steps += [model.decode(tgt[:, t : t + 1], memory, src_mask=src_mask, cache=cache) for t in range(2, 6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)


def test_encoder_decoder_cache_computes_cross_attention_keys_once():
    """With a cache, the encoder output's keys/values are projected at the first step only."""
    model = _build(SEQ2SEQ)
    src, tgt = _ids(1, 7, low=1), _ids(1, 5, seed=1, low=1)
    calls = []
    hooks = [layer.cross_attn.kv.register_forward_hook(lambda *a: calls.append(1)) for layer in model.layers]
    with torch.no_grad():
        memory = model.encode(src)
        cache = model.new_cache(batch=1, max_len=8)
        for t in range(5):
            model.decode(tgt[:, t : t + 1], memory, cache=cache)
    for h in hooks:
        h.remove()
    assert len(calls) == len(model.layers)  # once per layer, not once per step


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("cfg", [GPT2_LIKE, BERT_LIKE, SEQ2SEQ], ids=["decoder", "encoder", "seq2seq"])
def test_bad_ids(cfg):
    model = _build(cfg)

    def run(ids):
        return model(ids, _ids(1, 3)) if cfg.arch == "encoder-decoder" else model(ids)

    with pytest.raises(ValueError, match=f"token id {V} is outside"):
        run(torch.tensor([[1, V, 2]]))
    with pytest.raises(ValueError, match="token id -1 is outside"):
        run(torch.tensor([[1, -1, 2]]))
    with pytest.raises(ValueError, match="int64 or int32"):
        run(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        run(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="context"):
        run(_ids(1, 65))
    run(torch.tensor([[1, 2, 3]], dtype=torch.int32))  # int32 ids are fine


def test_context_limits_with_cache_and_explicit_positions():
    model = _build(LLAMA_LIKE)
    with torch.no_grad():
        cache = model.new_cache(batch=1)  # max_len defaults to the context, 64
        model(_ids(1, 60), cache=cache)
        with pytest.raises(ValueError, match="context"):
            model(_ids(1, 5), cache=cache)
        with pytest.raises(ValueError, match="context"):
            model(_ids(1, 2), positions=torch.tensor([10, 64]))
        with pytest.raises(ValueError, match=">= 0"):
            model(_ids(1, 2), positions=torch.tensor([-1, 0]))
        with pytest.raises(ValueError, match="positions has shape"):
            model(_ids(1, 2), positions=torch.tensor([0, 1, 2]))


# ---------------------------------------------------------------- parity with Hugging Face


def _perturb(hf):
    """Random weights everywhere (HF initialises norms to 1 and biases to 0, which would hide mix-ups)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return hf.eval()


def _load(model, tensors):
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)


def test_gpt2_matches_hugging_face():
    from transformers import GPT2Config, GPT2LMHeadModel

    hf = _perturb(GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                             bos_token_id=0, eos_token_id=0, attn_implementation="eager")))
    sd = hf.state_dict()
    ours = {"embed.tokens.weight": sd["transformer.wte.weight"], "embed.positions.weight": sd["transformer.wpe.weight"],
            "norm.weight": sd["transformer.ln_f.weight"], "norm.bias": sd["transformer.ln_f.bias"]}
    for i in range(2):
        h = f"transformer.h.{i}."
        for src, dst in [("ln_1", "norm_attn"), ("ln_2", "norm_mlp")]:
            ours[f"layers.{i}.{dst}.weight"], ours[f"layers.{i}.{dst}.bias"] = sd[h + src + ".weight"], sd[h + src + ".bias"]
        for src, dst in [("attn.c_attn", "attn.qkv"), ("attn.c_proj", "attn.proj"), ("mlp.c_fc", "mlp.fc"),
                         ("mlp.c_proj", "mlp.proj")]:
            ours[f"layers.{i}.{dst}.weight"] = sd[h + src + ".weight"].T  # Conv1D stores (in, out)
            ours[f"layers.{i}.{dst}.bias"] = sd[h + src + ".bias"]
    model = _build(GPT2_LIKE)
    _load(model, ours)
    ids = _ids(2, 9)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=1e-4, rtol=0)


def test_llama_matches_hugging_face():
    from transformers import LlamaConfig, LlamaForCausalLM

    hf = _perturb(LlamaForCausalLM(LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rope_theta=500.0, rms_norm_eps=1e-5,
        tie_word_embeddings=True, attn_implementation="eager")))
    sd = hf.state_dict()
    ours = {"embed.tokens.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
    for i in range(2):
        h = f"model.layers.{i}."
        ours[f"layers.{i}.attn.qkv.weight"] = torch.cat([sd[h + f"self_attn.{p}_proj.weight"] for p in "qkv"])
        ours[f"layers.{i}.attn.proj.weight"] = sd[h + "self_attn.o_proj.weight"]
        ours[f"layers.{i}.mlp.gate_up.weight"] = torch.cat([sd[h + "mlp.gate_proj.weight"], sd[h + "mlp.up_proj.weight"]])
        ours[f"layers.{i}.mlp.proj.weight"] = sd[h + "mlp.down_proj.weight"]
        ours[f"layers.{i}.norm_attn.weight"] = sd[h + "input_layernorm.weight"]
        ours[f"layers.{i}.norm_mlp.weight"] = sd[h + "post_attention_layernorm.weight"]
    model = _build(LLAMA_LIKE.replace(norm_eps=1e-5))
    _load(model, ours)
    ids = _ids(2, 9)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=1e-4, rtol=0)


def test_bert_matches_hugging_face():
    from transformers import BertConfig, BertModel

    hf = _perturb(BertModel(BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=48, max_position_embeddings=64, hidden_act="gelu",
                                       attn_implementation="eager"), add_pooling_layer=False))
    sd = hf.state_dict()
    e = "embeddings."
    ours = {"embed.tokens.weight": sd[e + "word_embeddings.weight"], "embed.positions.weight": sd[e + "position_embeddings.weight"],
            "embed.token_types.weight": sd[e + "token_type_embeddings.weight"],
            "embed.norm.weight": sd[e + "LayerNorm.weight"], "embed.norm.bias": sd[e + "LayerNorm.bias"]}
    for i in range(2):
        h = f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            ours[f"layers.{i}.attn.qkv.{kind}"] = torch.cat([sd[h + f"attention.self.{p}.{kind}"]
                                                             for p in ("query", "key", "value")])
            for src, dst in [("attention.output.dense", "attn.proj"), ("attention.output.LayerNorm", "norm_attn"),
                             ("intermediate.dense", "mlp.fc"), ("output.dense", "mlp.proj"),
                             ("output.LayerNorm", "norm_mlp")]:
                ours[f"layers.{i}.{dst}.{kind}"] = sd[h + f"{src}.{kind}"]
    model = _build(BERT_LIKE)
    _load(model, ours)
    ids, types = _ids(2, 7, low=1), torch.tensor([[0] * 4 + [1] * 3] * 2)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])  # right padding, as BERT tokenizers pad
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = model(ids, attention_mask=mask, token_types=types)
    real = mask.bool()
    torch.testing.assert_close(got[real], ref[real], atol=1e-4, rtol=0)


def test_out_of_vocabulary_id_is_named_on_the_cpu_and_queued_on_the_device(monkeypatch):
    """On the CPU the error names the id; on an accelerator the check must not read a value back
    (a host-device sync per step): it goes to torch._assert_async instead (recorded here)."""
    from lucidlm.models import transformer

    with pytest.raises(ValueError, match="token id 7 is outside the model's vocabulary \\(0..4\\)"):
        transformer._check_ids(torch.tensor([[1, 7]]), 5)
    queued = []
    monkeypatch.setattr(torch, "_assert_async", lambda cond, msg: queued.append((bool(cond), msg)))

    class OnDevice(torch.Tensor):  # a CPU tensor that says it lives on an accelerator
        @property
        def device(self):
            return torch.device("cuda")

    transformer._check_ids(torch.tensor([[1, 7]]).as_subclass(OnDevice), 5)
    assert queued == [(False, "a token id is outside the model's vocabulary (0..4)")]
