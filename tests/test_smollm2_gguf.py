"""SmolLM2-135M-Instruct from its GGUF (Q4_1) against transformers loading the same file.

The reference logits in tests/data/smollm2_reference.safetensors were computed once by
transformers (tests/data/smollm2_make_reference.py); the default tests compare against them, the
``slow`` one runs transformers live. Also: llama.cpp's q/k permutation, a tiny GGUF written here
(exact float32 weights, GQA) against a tiny transformers Llama, and the errors for files lucidlm
cannot load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lucidlm.loading.gguf import load_gguf, permute_qk, read_gguf, unpermute_qk
from lucidlm.loading.load import load_model
from lucidlm.models import PRESETS

gguf = pytest.importorskip("gguf")
DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "smollm2_reference.json").read_text(encoding="utf-8"))
PROMPTS = [p["name"] for p in REFERENCE["prompts"]]


@pytest.fixture(scope="module")
def gguf_path():
    from lucidlm.assets import asset_path

    try:
        return asset_path("smollm2-135m-instruct")
    except Exception as exc:  # offline and not cached: nothing to compare against
        pytest.skip(f"asset smollm2-135m-instruct is not available: {exc}")


@pytest.fixture(scope="module")
def smollm2(gguf_path):
    return load_model(gguf_path)  # (model, tokenizer), loaded once for the module


@pytest.fixture(scope="module")
def reference():
    from safetensors.torch import load_file

    return load_file(DATA / "smollm2_reference.safetensors")


@pytest.fixture(scope="module")
def our_logits(smollm2, reference):
    """Last-position logits of every reference prompt, by lucidlm."""
    model, _ = smollm2
    with torch.no_grad():
        return {name: model(reference[f"{name}.ids"][None], last_only=True)[0, -1] for name in PROMPTS}


@pytest.mark.parametrize("name", PROMPTS)
def test_logits_agree_with_transformers(our_logits, reference, name):
    ours, theirs = our_logits[name], reference[f"{name}.logits"]
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-3, f"{name}: max |logit difference| {diff:.2e}"
    assert ours.topk(5).indices.tolist() == theirs.topk(5).indices.tolist()


def test_reference_prompts(smollm2, reference):
    """The stored ids are what lucidlm's GGUF tokenizer makes of the texts, the chat prompt is the
    GGUF's own template rendered, and the prompts cover >= 4 cases including a chat."""
    jinja2 = pytest.importorskip("jinja2")
    _, tok = smollm2
    assert len(PROMPTS) >= 4 and "chat" in PROMPTS
    for p in REFERENCE["prompts"]:
        assert tok.encode(p["text"], allowed_special="all") == reference[f"{p['name']}.ids"].tolist()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    chat = env.from_string(tok.chat_template).render(messages=REFERENCE["chat_messages"], add_generation_prompt=True)
    assert chat == next(p["text"] for p in REFERENCE["prompts"] if p["name"] == "chat")
    assert chat.endswith("<|im_start|>assistant\n")


def test_answers_sensibly(smollm2, our_logits):
    _, tok = smollm2
    assert tok.decode([int(our_logits["plain"].argmax())]) == " Paris"  # "The Eiffel Tower is in"


def test_config_from_metadata(smollm2):
    model, tok = smollm2
    cfg = model.cfg
    preset = PRESETS["smollm2-135m"]
    for field in ("vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "intermediate_size", "max_seq_len",
                  "positions", "rope_theta", "norm", "mlp", "activation", "bias", "tie_embeddings",
                  "bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(cfg, field) == getattr(preset, field), field
    assert cfg.norm_eps == pytest.approx(1e-5)
    assert cfg.extra["format"] == "gguf" and "Q4_1" in cfg.extra["quantisation"]
    assert model.lm_head.weight is model.embed.tokens.weight  # no output.weight in the file: tied
    assert not model.training
    assert (tok.bos_id, tok.eos_id) == (1, 2) and "<|im_start|>" in tok.chat_template


# ----------------------------------------------------------------------------------------------
# llama.cpp's q/k permutation


def llama_cpp_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """Copied from llama.cpp convert_hf_to_gguf.py (LlamaModel.permute), the independent reference."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


@pytest.mark.parametrize(("n_head", "n_kv_head"), [(4, 4), (9, 3), (4, 1)])
def test_unpermute_inverts_llama_cpp(n_head, n_kv_head):
    hs, C = 8, 16
    q = torch.randn(n_head * hs, C)
    k = torch.randn(n_kv_head * hs, C)
    q_gguf = torch.from_numpy(llama_cpp_permute(q.numpy(), n_head, n_head))
    k_gguf = torch.from_numpy(llama_cpp_permute(k.numpy(), n_head, n_kv_head))
    assert not torch.equal(q_gguf, q)
    assert torch.equal(permute_qk(q, n_head), q_gguf) and torch.equal(permute_qk(k, n_kv_head), k_gguf)
    assert torch.equal(unpermute_qk(q_gguf, n_head), q) and torch.equal(unpermute_qk(k_gguf, n_kv_head), k)


def test_unpermute_example():
    rows = torch.tensor([[0.0], [10.0], [1.0], [11.0]])  # one head, GGUF order [a0, b0, a1, b1]
    assert unpermute_qk(rows, 1).flatten().tolist() == [0.0, 1.0, 10.0, 11.0]  # [a0, a1, b0, b1]


# ----------------------------------------------------------------------------------------------
# tiny GGUF files written here


def write_llama_gguf(path: Path, hf_model=None, *, arch: str = "llama", bad_tensor: bool = False) -> Path:
    """A GGUF file as llama.cpp's converter writes one: llama.* metadata, blk.* names, q/k permuted."""
    cfg = hf_model.config if hf_model is not None else None
    writer = gguf.GGUFWriter(str(path), arch)
    n_head, n_kv = (cfg.num_attention_heads, cfg.num_key_value_heads) if cfg else (4, 2)
    writer.add_block_count(cfg.num_hidden_layers if cfg else 1)
    writer.add_context_length(cfg.max_position_embeddings if cfg else 64)
    writer.add_embedding_length(cfg.hidden_size if cfg else 32)
    writer.add_feed_forward_length(cfg.intermediate_size if cfg else 48)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"] if cfg else 10000.0)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps if cfg else 1e-5)
    writer.add_vocab_size(cfg.vocab_size if cfg else 64)
    if hf_model is not None:
        names = {"embed_tokens": "token_embd", "norm": "output_norm", "input_layernorm": "attn_norm",
                 "post_attention_layernorm": "ffn_norm", "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v",
                 "o_proj": "attn_output", "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
        for name, p in hf_model.state_dict().items():
            if name == "lm_head.weight":
                if not cfg.tie_word_embeddings:
                    writer.add_tensor("output.weight", p.numpy())
                continue
            parts = name.removeprefix("model.").split(".")
            w = p.numpy()
            if parts[-2] in ("q_proj", "k_proj"):
                w = llama_cpp_permute(w, n_head, n_head if parts[-2] == "q_proj" else n_kv)
            gguf_name = ".".join(["blk", parts[1], names[parts[-2]], parts[-1]] if parts[0] == "layers"
                                 else [names[parts[0]], parts[-1]])
            writer.add_tensor(gguf_name, np.ascontiguousarray(w))
    if bad_tensor:  # Q8_1: a type llama.cpp uses for activations; the gguf package cannot dequantise it
        writer.add_tensor("token_embd.weight", np.zeros((64, 32 // 32 * 40), dtype=np.uint8),
                          raw_dtype=gguf.GGMLQuantizationType.Q8_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_tiny_gguf_equals_transformers(tmp_path, tie):
    """float32 weights, so the agreement is exact up to float rounding: the un-permutation is right."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   rms_norm_eps=1e-5, tie_word_embeddings=tie,
                                   rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    model = load_gguf(write_llama_gguf(tmp_path / "tiny.gguf", hf))
    assert model.cfg.tie_embeddings == tie and model.cfg.rope_theta == 100000.0
    x = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(x) - hf(x).logits).abs().max().item()
    assert diff <= 1e-5


def test_unsupported_architecture(tmp_path):
    with pytest.raises(ValueError, match="architecture 'gpt2' is not supported"):
        read_gguf(write_llama_gguf(tmp_path / "gpt2.gguf", arch="gpt2"))


def test_unsupported_tensor_type(tmp_path):
    with pytest.raises(ValueError, match="'token_embd.weight' has type Q8_1"):
        read_gguf(write_llama_gguf(tmp_path / "q81.gguf", bad_tensor=True))


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 8)
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        read_gguf(path)


# ----------------------------------------------------------------------------------------------
# live comparison (needs transformers + accelerate; slow)


@pytest.mark.slow
def test_live_against_transformers(smollm2, gguf_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # transformers needs it to open GGUF files
    hf = transformers.AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                           dtype=torch.float32).eval()
    model, tok = smollm2
    ids = torch.tensor([tok.encode("Gravity is the force that")])
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-3
    assert ours[0, -1].topk(5).indices.tolist() == theirs[0, -1].topk(5).indices.tolist()
