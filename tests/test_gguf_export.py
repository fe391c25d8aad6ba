"""GGUF export, Llama and GPT-2 families (lucidlm.loading.gguf_export, files/gguf_write.py, loading/quantize.py) against
independent readers: the ``gguf`` package (llama.cpp's own Python reader and quantisers: bytes
equal), transformers' GGUF loader (logits and token ids equal), lucidlm's reader (round trip),
and llama.cpp itself through llama-cpp-python where it is installed (``make llama-cpp``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lucidlm.cli import main
from lucidlm.loading import load_model, save_checkpoint
from lucidlm.loading.gguf_export import export_gguf
from lucidlm.loading.quantize import tensor_bytes
from lucidlm.models.config import ModelConfig
from lucidlm.models.transformer import build_model
from lucidlm.tokenizers import train_bpe
from lucidlm.tokenizers.corpus import tiny_shakespeare

gguf = pytest.importorskip("gguf")
TEXT = "First Citizen: Before we proceed any further, hear me speak.\nAll: Speak, speak."


@pytest.fixture(scope="module")
def tokenizer():
    tok = train_bpe(tiny_shakespeare()[:60_000], 300, pattern="gpt2", special_tokens={"<|endoftext|>": None},
                    name="shakespeare")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}<|endoftext|>{% endfor %}"
    return tok


def llama_cfg(**changes) -> ModelConfig:
    base = dict(name="tiny-llama", vocab_size=320, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                intermediate_size=128, max_seq_len=64, positions="rope", norm="rmsnorm", mlp="swiglu",
                activation="silu", bias=False, norm_bias=False, tie_embeddings=True)
    return ModelConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(llama_cfg()).eval()


@pytest.fixture(scope="module")
def exported(model, tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    return {w: export_gguf(model, tokenizer, folder / f"m-{w}.gguf", weights=w) for w in ("f32", "q8_0", "q4_1")}


# ----------------------------------------------------------------------------------------------
# quantisation: bytes equal to the gguf package's (bit-exact ports of ggml's reference quantisers)


def _edge_blocks() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    rows = [torch.randn(32, generator=g) * s for s in (1e-3, 1.0, 30.0)]
    rows.append(torch.zeros(32))  # d = 0
    rows.append(torch.full((32,), -2.5))  # one value: min == max
    rows.append(torch.arange(32, dtype=torch.float32) / 2 - 8)  # halves: ties in rounding
    r = torch.randn(32, generator=g)
    r[5] = -9.0  # the largest in size is negative (Q4_0's signed scale)
    rows.append(r)
    return torch.stack(rows).repeat(1, 2)  # (7, 64)


@pytest.mark.parametrize("kind", ["q8_0", "q4_0", "q4_1", "f16"])
def test_quantisation_bytes_equal_the_gguf_package(kind):
    qtype = getattr(gguf.GGMLQuantizationType, kind.upper())
    g = torch.Generator().manual_seed(0)
    for w in (_edge_blocks(), torch.randn(48, 96, generator=g), torch.randn(8, 256, generator=g) ** 3):
        ours = np.frombuffer(tensor_bytes(w, kind), dtype=np.uint8)
        ref = gguf.quants.quantize(w.numpy(), qtype)
        assert ours.tobytes() == np.ascontiguousarray(ref).view(np.uint8).tobytes()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=32, max_size=32))
@example([0.0] * 31 + [2.6400463067879554e-42])  # 1 / d overflows: found by hypothesis in CI
@example([0.0] * 30 + [-3e-40, 2e-41])
@example([1e-39] * 32)
def test_q8_0_and_q4_1_bytes_on_any_block(values):
    w = torch.tensor([values], dtype=torch.float32)
    for kind in ("q8_0", "q4_1", "q4_0"):
        ref = gguf.quants.quantize(w.numpy(), getattr(gguf.GGMLQuantizationType, kind.upper()))
        assert tensor_bytes(w, kind) == np.ascontiguousarray(ref).view(np.uint8).tobytes()


# ----------------------------------------------------------------------------------------------
# the file


def test_the_gguf_package_reads_what_was_written(exported, model, tokenizer):
    reader = gguf.GGUFReader(str(exported["f32"]))
    fields = {f.name: f for f in reader.fields.values()}

    def scalar(key):
        f = fields[key]
        return f.parts[f.data[0]].tolist()[0] if f.types[0] != gguf.GGUFValueType.STRING else \
            bytes(f.parts[f.data[0]]).decode()

    assert scalar("general.architecture") == "llama"
    assert scalar("llama.block_count") == 2 and scalar("llama.attention.head_count_kv") == 2
    assert scalar("llama.context_length") == 64 and scalar("tokenizer.ggml.pre") == "gpt-2"
    assert fields["llama.rope.freq_base"].types[0] == gguf.GGUFValueType.FLOAT32
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == 320
    assert bytes(tokens.parts[tokens.data[tokenizer.special_tokens["<|endoftext|>"]]]).decode() == "<|endoftext|>"
    by_name = {t.name: t for t in reader.tensors}
    assert len(by_name) == 2 + 2 * 9  # token_embd, output_norm; per block q k v o, gate up down, 2 norms
    emb = by_name["token_embd.weight"]
    assert emb.tensor_type == gguf.GGMLQuantizationType.F32
    assert np.array_equal(np.asarray(emb.data).reshape(320, 64), model.embed.tokens.weight.detach().numpy())
    q4 = {t.name: t for t in gguf.GGUFReader(str(exported["q4_1"])).tensors}
    assert q4["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q4_1
    assert q4["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32  # norms stay f32


def test_lucidlm_reads_it_back(exported, model, tokenizer):
    ids = torch.tensor([tokenizer.encode(TEXT)])
    again, tok = load_model(exported["f32"])
    with torch.no_grad():
        assert torch.equal(again(ids), model(ids))  # f32: the same weights, bit for bit
    assert tok.encode(TEXT) == tokenizer.encode(TEXT) and tok.chat_template == tokenizer.chat_template
    # quantised: every weight is what the gguf package's quantise -> dequantise gives
    for kind in ("q8_0", "q4_1"):
        q, _ = load_model(exported[kind])
        w = model.layers[1].mlp.proj.weight.detach()
        qtype = getattr(gguf.GGMLQuantizationType, kind.upper())
        ref = gguf.quants.dequantize(gguf.quants.quantize(w.numpy(), qtype), qtype)
        assert np.array_equal(q.layers[1].mlp.proj.weight.detach().numpy(), ref)


def test_transformers_reads_it(exported, model, tokenizer):
    transformers = pytest.importorskip("transformers")
    folder, name = exported["f32"].parent, exported["f32"].name
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
    ids = tokenizer.encode(TEXT)
    assert hf_tok.encode(TEXT, add_special_tokens=False) == ids
    with torch.no_grad():
        ours = model(torch.tensor([ids]))
        theirs = hf(torch.tensor([ids])).logits
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)


def test_llama_cpp_runs_it(exported, model, tokenizer):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make llama-cpp builds it)")
    llm = llama_cpp.Llama(model_path=str(exported["f32"]), n_ctx=64, logits_all=True, verbose=False, n_threads=1)
    ids = tokenizer.encode(TEXT)
    assert llm.tokenize(TEXT.encode(), add_bos=False, special=False) == ids
    llm.eval(ids)
    theirs = torch.tensor(np.asarray(llm.scores[: len(ids)]))
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0]
    torch.testing.assert_close(theirs, ours, atol=1e-3, rtol=0)  # f32: the same weights, another summation order
    # greedy continuation: the same tokens
    from lucidlm.generate import generate
    from lucidlm.generate.sampling import SamplingParams

    expected = generate(model, tokenizer, ids[:8], max_tokens=16, params=SamplingParams(temperature=0)).token_ids
    llm.reset()
    got = []
    for token in llm.generate(ids[:8], temp=0.0, top_k=1):
        got.append(token)
        if len(got) == len(expected):
            break
    llm.close()
    assert got == list(expected)
    # quantised files: llama.cpp's logits beside lucidlm's on the same blocks (llama.cpp also rounds
    # the activations to 8 bits for its dot products, hence the looser bound), the same argmax
    for kind in ("q8_0", "q4_1"):
        ours_q, _ = load_model(exported[kind])
        llm = llama_cpp.Llama(model_path=str(exported[kind]), n_ctx=64, logits_all=True, verbose=False, n_threads=1)
        llm.eval(ids)
        theirs = torch.tensor(np.asarray(llm.scores[: len(ids)]))
        llm.close()
        with torch.no_grad():
            ours = ours_q(torch.tensor([ids]))[0]
        torch.testing.assert_close(theirs, ours, atol=0.03, rtol=0)
        assert torch.equal(theirs.argmax(-1), ours.argmax(-1))


@pytest.fixture(scope="module")
def gpt2_exported(tokenizer, tmp_path_factory):
    """A GPT-2-shaped model (learned positions, LayerNorm, GELU, biases) as llama.cpp's "gpt2". Its
    1024 positions are GPT-2's: transformers' GGUF reader builds every GPT-2 with n_positions 1024."""
    cfg = ModelConfig(name="tiny-gpt2", vocab_size=320, n_layer=2, n_head=4, n_embd=64, max_seq_len=1024,
                      positions="learned", norm="layernorm", mlp="mlp", activation="gelu_tanh", bias=True,
                      norm_bias=True, tie_embeddings=True)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)  # biases that matter: a missing one would show in the logits
    return model, export_gguf(model, tokenizer, tmp_path_factory.mktemp("gpt2") / "gpt2.gguf")


def test_gpt2_family_in_transformers_and_llama_cpp(gpt2_exported, tokenizer):
    transformers = pytest.importorskip("transformers")
    model, path = gpt2_exported
    reader = gguf.GGUFReader(str(path))
    names = {t.name for t in reader.tensors}
    assert {"position_embd.weight", "blk.1.attn_qkv.bias", "output.weight", "output_norm.bias"} <= names
    ids = tokenizer.encode(TEXT)
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0]
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(torch.tensor([ids])).logits[0], ours, atol=1e-4, rtol=0)
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make llama-cpp builds it)")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, logits_all=True, verbose=False, n_threads=1)
    assert llm.tokenize(TEXT.encode(), add_bos=False, special=False) == ids
    llm.eval(ids)
    theirs = torch.tensor(np.asarray(llm.scores[: len(ids)]))
    llm.close()
    torch.testing.assert_close(theirs, ours, atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------------------------
# what cannot be exported, and the command


def test_what_llama_cpp_cannot_run_is_refused(tokenizer, tmp_path):
    from lucidlm.tokenizers.simple import CharTokenizer

    relu2 = build_model(llama_cfg(mlp="mlp", activation="relu2"))
    with pytest.raises(ValueError, match="GGUF .llama.cpp's llama.*mlp='swiglu'"):
        export_gguf(relu2, tokenizer, tmp_path / "a.gguf")
    llama = build_model(llama_cfg())
    with pytest.raises(ValueError, match="byte-level BPE"):
        export_gguf(llama, CharTokenizer.from_text("abc"), tmp_path / "b.gguf")
    cl = train_bpe("some text " * 20, 270, pattern=r"\w+|\s", name="odd")
    with pytest.raises(ValueError, match="pre-tokenizer regexes"):
        export_gguf(llama, cl, tmp_path / "c.gguf")
    relu_gpt2 = build_model(ModelConfig(vocab_size=320, n_layer=1, n_head=2, n_embd=32, max_seq_len=32,
                                        positions="learned", norm="layernorm", mlp="mlp", activation="relu"))
    with pytest.raises(ValueError, match="gpt2 graph uses GELU"):
        export_gguf(relu_gpt2, tokenizer, tmp_path / "e.gguf")
    with pytest.raises(ValueError, match="unknown weight type 'q5_k'"):
        export_gguf(llama, tokenizer, tmp_path / "d.gguf", weights="q5_k")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_export(model, tokenizer, tmp_path, capsys):
    save_checkpoint(model, tmp_path / "ckpt", tokenizer=tokenizer)
    out = tmp_path / "m.gguf"
    assert main(["export", str(tmp_path / "ckpt"), "--to", "gguf", "--out", str(out), "--weights", "q8_0"]) == 0
    assert "matrices in q8_0" in capsys.readouterr().out
    again, _ = load_model(out)
    assert again.cfg.n_layer == 2
    assert main(["export", str(tmp_path / "ckpt"), "--to", "gguf", "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "ckpt"), "--to", "gguf", "--out", str(tmp_path / "m.bin")]) == 2
    assert "something.gguf" in capsys.readouterr().err
    assert main(["export", "smollm2-135m", "--to", "gguf", "--out", str(tmp_path / "x.gguf")]) == 2
    assert "random" in capsys.readouterr().err
    # --to hf: a directory transformers opens, tokenizer included
    transformers = pytest.importorskip("transformers")
    assert main(["export", str(tmp_path / "ckpt"), "--to", "hf", "--out", str(tmp_path / "hf")]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    ids = hf_tok.encode(TEXT)
    assert ids == tokenizer.encode(TEXT)
    with torch.no_grad():
        torch.testing.assert_close(hf(torch.tensor([ids])).logits, model(torch.tensor([ids])), atol=1e-4, rtol=0)
