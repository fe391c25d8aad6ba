"""The weight-name tables (``loading/names.py``): every family's table covers its model's state
dict exactly and reads both ways, and BERT export opens in transformers with equal outputs."""

from __future__ import annotations

import json

import pytest
import torch

from lucidlm.loading import gguf as gguf_loading
from lucidlm.loading.bert import load_bert, save_bert
from lucidlm.loading.hf import HF_FAMILIES, load_hf, save_hf, state_from_hf, state_to_hf
from lucidlm.loading.names import Rule, expand, gather, scatter
from lucidlm.models import ModelConfig, build_model

TINY = dict(vocab_size=99, n_layer=2, n_head=4, n_embd=32, intermediate_size=40, max_seq_len=64)
CONFIGS = {
    "gpt2": ModelConfig(**TINY),
    "gpt2-untied": ModelConfig(**TINY, tie_embeddings=False),
    "llama": ModelConfig(**TINY, n_kv_head=2, positions="rope", norm="rmsnorm", norm_bias=False, mlp="swiglu",
                         activation="silu", bias=False, tie_embeddings=False),
    "bert": ModelConfig(**TINY, arch="encoder", norm_placement="post", final_norm=False, embed_norm=True,
                        activation="gelu", tie_embeddings=False, type_vocab_size=2, pad_token_id=0,
                        norm_eps=1e-12),
}
FAMILY = {"gpt2": "gpt2", "gpt2-untied": "gpt2", "llama": "llama", "bert": "bert"}


def _random_state(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(cfg)
    return {k: torch.randn_like(v) for k, v in model.state_dict().items() if not k.endswith("lm_head.weight")
            or not cfg.tie_embeddings}


def test_expand_fills_layer_and_prefix():
    top, layer = [Rule("a", ("/lm_head.weight",))], [Rule("layers.{i}.x", ("h.{i}.y", "h.{i}.z"), transpose=True)]
    got = [(m.ours, m.theirs, m.transpose) for m in expand(top, layer, 2, "t.")]
    assert got == [("a", ("lm_head.weight",), False), ("layers.0.x", ("t.h.0.y", "t.h.0.z"), True),
                   ("layers.1.x", ("t.h.1.y", "t.h.1.z"), True)]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_hf_table_covers_the_model_and_round_trips(name):
    cfg, family = CONFIGS[name], HF_FAMILIES[FAMILY[name]]
    state = _random_state(cfg)
    mappings = expand(*family.rules(cfg), cfg.n_layer)
    assert sorted(m.ours for m in mappings) == sorted(state)  # every tensor named once, nothing extra
    theirs = state_to_hf(state, cfg, family)
    back = state_from_hf(theirs, cfg, family)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_gguf_table_covers_a_llama_and_round_trips():
    cfg = CONFIGS["llama"]
    state = _random_state(cfg)
    mappings = expand(*gguf_loading.rules(cfg), cfg.n_layer)
    assert sorted(m.ours for m in mappings) == sorted(state)
    assert {n for m in mappings for n in m.theirs} >= {"token_embd.weight", "output.weight", "blk.1.attn_k.weight"}
    back, missing, used = gather(scatter(state, mappings, cfg), mappings)
    assert not missing and all(torch.equal(back[k], state[k]) for k in state)
    # the same table gives the shapes the weight cache checks
    assert {k: tuple(v.shape) for k, v in state.items()} == gguf_loading.state_shapes(cfg)


# --- BERT export -----------------------------------------------------------------------------------
transformers = pytest.importorskip("transformers")


def _compare_with_transformers(model, path, ids, mask, types=None, atol=1e-5):
    hf = transformers.BertModel.from_pretrained(path).eval()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = model(ids, attention_mask=mask, token_types=types)
    real = mask.bool()
    diff = (got[real] - ref[real]).abs().max().item()
    assert diff <= atol, diff


def test_tiny_random_bert_exports_to_transformers(tmp_path):
    cfg = CONFIGS["bert"]
    model = build_model(cfg).eval()
    model.load_state_dict(_random_state(cfg))
    path = save_bert(model, tmp_path / "bert")
    hf_config = json.loads((path / "config.json").read_text())
    assert hf_config["model_type"] == "bert" and hf_config["architectures"] == ["BertModel"]
    ids = torch.randint(1, cfg.vocab_size, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    types = torch.zeros_like(ids)
    types[0, 6:] = 1
    _compare_with_transformers(model, path, ids * mask, mask, types)
    # and back: our loaders read what we wrote, tensor for tensor
    for again in (load_bert(path), load_hf(path)):
        assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values(),
                                                     strict=True))


def test_bert_export_refuses_a_decoder(tmp_path):
    with pytest.raises(ValueError, match="encoders"):
        save_bert(build_model(CONFIGS["gpt2"]), tmp_path / "x")
    with pytest.raises(ValueError, match="type_vocab_size"):
        save_hf(build_model(CONFIGS["bert"].replace(type_vocab_size=0)), tmp_path / "y")


def test_minilm_exports_to_transformers(tmp_path):
    from lucidlm.loading import load_model

    try:
        model, tok = load_model("all-minilm-l6-v2")
    except Exception as exc:  # offline and not cached
        pytest.skip(f"all-MiniLM-L6-v2 cannot be had: {exc}")
    path = save_bert(model, tmp_path / "minilm", tok)
    assert (path / "tokenizer.json").is_file()
    sentences = ["a cat sat on the mat", "Hello!", "Sentence embeddings map text to vectors, one per text."]
    rows = [tok.encode(s) for s in sentences]
    T = max(map(len, rows))
    ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])
    _compare_with_transformers(model, path, ids, mask)
