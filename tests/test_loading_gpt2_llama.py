"""Loading and saving weights: Hugging Face GPT-2 and Llama directories (against transformers on tiny
random models, no download), lucidlm checkpoints (round trip, atomic save, corrupt files), and
``load_model``'s errors."""

from __future__ import annotations

import json

import pytest
import torch

from lucidlm.loading import load_checkpoint, load_hf, read_safetensors, save_checkpoint, save_hf
from lucidlm.loading.checkpoint import model_state, write_safetensors
from lucidlm.loading.load import MODEL_ASSETS, load_model
from lucidlm.models import PRESETS, ModelConfig, build_model

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

VOCAB, T = 96, 12


def ids(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))  # (B, T)


def hf_logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logits


def our_logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> None:
    assert a.shape == b.shape
    diff = (a - b).abs().max().item()
    assert diff <= tol, f"max |logit difference| {diff:.2e} > {tol}"


# ----------------------------------------------------------------------------------------------
# GPT-2


def tiny_hf_gpt2(**changes):
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=0, eos_token_id=0, **changes)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("changes", [
    {},
    {"n_inner": 48, "activation_function": "gelu", "layer_norm_epsilon": 1e-6},
    {"tie_word_embeddings": False},
])
def test_gpt2_from_transformers(tmp_path, changes):
    hf = tiny_hf_gpt2(**changes)
    with torch.no_grad():  # random init leaves LayerNorms at 1/0 and biases at 0: make them count
        for name, p in hf.named_parameters():
            if "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    model, tok = load_model(tmp_path)
    assert tok is None  # no tokenizer file in the directory
    assert model.cfg.tie_embeddings == hf.config.tie_word_embeddings
    assert_close(our_logits(model, ids()), hf_logits(hf, ids()))


def test_gpt2_export_opens_in_transformers(tmp_path):
    cfg = ModelConfig(name="tiny-gpt2", vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, max_seq_len=32)
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    save_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    assert_close(hf_logits(hf, ids()), our_logits(model, ids()))
    # and back: the exported directory loads in lucidlm to the same weights
    again, _ = load_model(tmp_path / "hf")
    assert all(torch.equal(a, b) for a, b in zip(model_state(model).values(), model_state(again).values()))


def test_gpt2_conv1d_is_transposed(tmp_path):
    """The HF file holds c_attn as (in, 3C); lucidlm's qkv is (3C, in), the same numbers transposed."""
    hf = tiny_hf_gpt2()
    hf.save_pretrained(tmp_path)
    model = load_hf(tmp_path)
    c_attn = hf.transformer.h[0].attn.c_attn.weight
    assert c_attn.shape == (32, 96)
    assert torch.equal(model.layers[0].attn.qkv.weight, c_attn.t())


# ----------------------------------------------------------------------------------------------
# Llama


def tiny_hf_llama(n_kv_heads: int, tie: bool, theta: float = 50000.0):
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=n_kv_heads, max_position_embeddings=64, rms_norm_eps=1e-5,
        tie_word_embeddings=tie, rope_parameters={"rope_type": "default", "rope_theta": theta},
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return hf


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_llama_from_transformers(tmp_path, n_kv_heads, tie):
    hf = tiny_hf_llama(n_kv_heads, tie)
    hf.save_pretrained(tmp_path)
    model, _ = load_model(tmp_path)
    assert (model.cfg.kv_heads, model.cfg.tie_embeddings, model.cfg.rope_theta) == (n_kv_heads, tie, 50000.0)
    assert (model.lm_head.weight is model.embed.tokens.weight) == tie
    assert_close(our_logits(model, ids()), hf_logits(hf, ids()))


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_llama_export_opens_in_transformers(tmp_path, tie):
    cfg = PRESETS["smollm2-135m"].replace(name="tiny-llama", vocab_size=VOCAB, n_layer=2, n_head=4, n_kv_head=2,
                                          n_embd=32, intermediate_size=48, max_seq_len=64, tie_embeddings=tie)
    torch.manual_seed(2)
    model = build_model(cfg).eval()
    save_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert_close(hf_logits(hf, ids()), our_logits(model, ids()))


def test_llama_unsupported_settings_are_named(tmp_path):
    hf = tiny_hf_llama(2, True)
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="llama3"):
        load_model(tmp_path)
    config["model_type"] = "mistral"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'mistral'.*gpt2, llama"):
        load_model(tmp_path)


def test_hf_tensor_mismatch_names_the_tensor(tmp_path):
    hf = tiny_hf_llama(2, False)
    hf.save_pretrained(tmp_path)
    tensors, meta = read_safetensors(tmp_path / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_proj.weight"]
    tensors["model.layers.0.extra.weight"] = torch.zeros(3)
    write_safetensors(tensors, tmp_path / "model.safetensors", meta)
    with pytest.raises(ValueError, match=r"missing.*layers\.1\.self_attn\.k_proj.*unexpected.*layers\.0\.extra"):
        load_model(tmp_path)


def test_hf_pickle_checkpoints_are_refused(tmp_path):
    tiny_hf_gpt2().config.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not opened")
    with pytest.raises(ValueError, match="pickle"):
        load_model(tmp_path)


# ----------------------------------------------------------------------------------------------
# lucidlm checkpoints


def tiny_tokenizer():
    from lucidlm.tokenizers.hf import PretrainedBPETokenizer

    specials = {"<|endoftext|>": 256, "<|im_start|>": 257, "<|im_end|>": 258}
    return PretrainedBPETokenizer({i: bytes([i]) for i in range(256)}, [], special_tokens=specials,
                                  bos_id=256, eos_id=258, chat_template="{{ messages }}", name="tiny")


TINY_CONFIGS = {
    "gpt2": ModelConfig(name="tiny-gpt2", vocab_size=259, n_layer=2, n_head=4, n_embd=32, max_seq_len=32),
    "llama": PRESETS["smollm2-135m"].replace(name="tiny-llama", vocab_size=259, n_layer=2, n_head=4, n_kv_head=2,
                                             n_embd=32, intermediate_size=48, max_seq_len=32),
}


@pytest.mark.parametrize("family", TINY_CONFIGS)
def test_checkpoint_round_trip(tmp_path, family):
    torch.manual_seed(3)
    model, tok = build_model(TINY_CONFIGS[family]).eval(), tiny_tokenizer()
    path = save_checkpoint(model, tmp_path / "ckpt", tok)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                      "tokenizer_config.json"]
    assert read_safetensors(path / "model.safetensors")[1]["lucidlm.format"] == "lucidlm-checkpoint"
    again, tok2 = load_model(path)
    assert again.cfg == model.cfg and not again.training
    assert again.lm_head.weight is again.embed.tokens.weight  # still tied, stored once
    assert_close(our_logits(again, ids()), our_logits(model, ids()), tol=0.0)
    text = "<|im_start|>hi there<|im_end|>"
    assert tok2.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert (tok2.bos_id, tok2.eos_id, tok2.chat_template) == (256, 258, "{{ messages }}")
    # the weights file alone points at its directory
    assert load_model(path / "model.safetensors", tokenizer=False)[1] is None


def test_checkpoint_save_is_atomic(tmp_path):
    torch.manual_seed(4)
    first, second = build_model(TINY_CONFIGS["gpt2"]), build_model(TINY_CONFIGS["gpt2"])
    path = save_checkpoint(first, tmp_path / "ckpt")

    def crash(folder):
        (folder / "train_state.safetensors").write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(second, path, extra=crash)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary directory left behind
    assert torch.equal(load_checkpoint(path)[0].lm_head.weight, first.lm_head.weight)  # old one intact
    save_checkpoint(second, path)  # replacing an earlier checkpoint works
    assert torch.equal(load_checkpoint(path)[0].lm_head.weight, second.lm_head.weight)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to replace"):
        save_checkpoint(second, tmp_path / "notes")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_weights_give_a_clear_error(tmp_path, damage):
    path = save_checkpoint(build_model(TINY_CONFIGS["llama"]), tmp_path / "ckpt")
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00" * 64, "empty": b""}[damage])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_model(path)


def test_checkpoint_config_mismatch_names_the_tensor(tmp_path):
    path = save_checkpoint(build_model(TINY_CONFIGS["llama"]), tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "intermediate_size": 64}))
    with pytest.raises(ValueError, match=r"'layers\.0\.mlp\.gate_up\.weight' has shape \(96, 32\), the config needs \(128, 32\)"):
        load_model(path)
    (path / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(ValueError, match=r"missing tensors \['layers\.2\.norm_attn\.weight'"):
        load_model(path)
    (path / "config.json").write_text(json.dumps({**config, "n_layer": 1}))
    with pytest.raises(ValueError, match=r"unexpected tensors \['layers\.1\."):
        load_model(path)


def test_untied_head_in_a_tied_config_is_refused(tmp_path):
    path = save_checkpoint(build_model(TINY_CONFIGS["gpt2"]), tmp_path / "ckpt")
    tensors, meta = read_safetensors(path / "model.safetensors")
    tensors["lm_head.weight"] = torch.randn_like(tensors["embed.tokens.weight"])
    write_safetensors(tensors, path / "model.safetensors", meta)
    with pytest.raises(ValueError, match="'lm_head.weight' differs from 'embed.tokens.weight'"):
        load_model(path)


# ----------------------------------------------------------------------------------------------
# load_model's other inputs


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as err:
        load_model("gpt-5")
    for name in [*PRESETS, *MODEL_ASSETS]:
        assert name in str(err.value)


def test_preset_is_a_fresh_model():
    model, tok = load_model("gpt2", tokenizer=False)
    assert model.cfg == PRESETS["gpt2"] and tok is None
    assert sum(p.numel() for p in model.parameters()) == 124_439_808  # GPT-2 small, tied head counted once


def test_other_files_are_refused(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="not a model lucidlm can load"):
        load_model(tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="no config.json"):
        load_model(tmp_path)


def test_minilm_asset_loads_through_the_bert_loader():
    pytest.importorskip("lucidlm.loading.bert")
    from lucidlm.assets import is_cached

    if not is_cached("all-minilm-l6-v2", "model"):
        pytest.skip("asset all-minilm-l6-v2 is not cached")
    model, tok = load_model("all-minilm-l6-v2")
    assert type(model).__name__ == "Encoder" and model.cfg.n_layer == 6 and not model.training
    assert tok.encode("hello world")  # the WordPiece tokenizer from the same folder
