"""The fast loading paths give what the slow ones gave.

- ``lucidlm.files.gguf`` reads the same metadata and tensor index as ``gguf.GGUFReader``;
- the torch dequantisation of F32/F16/BF16/Q8_0/Q4_0/Q4_1 equals ``gguf.quants.dequantize`` bit for bit;
- a model built with placeholder parameters (``build_model(cfg, init=False)``) and then loaded
  equals one built normally and loaded: every parameter and buffer, ties kept;
- a tensor missing from a file is still a clear error, and a placeholder can never be computed with.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from torch import nn

from lucidlm.files.gguf import open_gguf
from lucidlm.loading.checkpoint import load_checkpoint, load_state_checked, model_state, save_checkpoint
from lucidlm.loading.gguf import FAST_DEQUANTISE, dequantize, dequantize_reference, load_gguf, unpermute_qk
from lucidlm.models import ModelConfig, build_model

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType


# ----------------------------------------------------------------------------------------------
# the GGUF container


def test_header_matches_gguf_reader(smollm2_path):
    ours, ref = open_gguf(smollm2_path), gguf.GGUFReader(smollm2_path)
    expected_keys = [k for k in ref.fields if not k.startswith("GGUF.")]  # the reader's own pseudo-keys
    assert list(ours.metadata) == expected_keys
    for key in expected_keys:
        value = ours.metadata[key]
        if isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf-8") for v in value]  # strings in arrays stay bytes (see GGUFFile)
        assert value == ref.fields[key].contents(), key
    assert list(ours.tensors) == [t.name for t in ref.tensors]
    for t in ref.tensors:
        mine = ours.tensors[t.name]
        assert mine.shape == tuple(int(n) for n in reversed(t.shape))
        assert (mine.type, mine.type_name, mine.offset, mine.nbytes) == (int(t.tensor_type), t.tensor_type.name,
                                                                         t.data_offset, t.n_bytes)
    for name in ("token_embd.weight", "blk.3.attn_q.weight", "output_norm.weight"):
        raw = np.asarray(ref.tensors[[t.name for t in ref.tensors].index(name)].data).view(np.uint8).reshape(-1)
        assert np.array_equal(ours.read_tensor(ours.tensors[name]), raw)


def test_every_metadata_type_round_trips(tmp_path):
    """Values written by the gguf package's writer (the independent reference) read back equal."""
    path = tmp_path / "kv.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    values = {
        "t.u8": (200, gguf.GGUFValueType.UINT8), "t.i8": (-100, gguf.GGUFValueType.INT8),
        "t.u16": (60000, gguf.GGUFValueType.UINT16), "t.i16": (-30000, gguf.GGUFValueType.INT16),
        "t.u32": (4_000_000_000, gguf.GGUFValueType.UINT32), "t.i32": (-2_000_000_000, gguf.GGUFValueType.INT32),
        "t.u64": (2**63 + 5, gguf.GGUFValueType.UINT64), "t.i64": (-(2**62), gguf.GGUFValueType.INT64),
        "t.f32": (0.5, gguf.GGUFValueType.FLOAT32), "t.f64": (1e-300, gguf.GGUFValueType.FLOAT64),
        "t.bool": (True, gguf.GGUFValueType.BOOL), "t.str": ("héllo ✓", gguf.GGUFValueType.STRING),
    }
    for key, (value, kind) in values.items():
        w.add_key_value(key, value, kind)
    w.add_array("t.ints", [1, -2, 3])
    w.add_array("t.strs", ["a", "é", ""])
    w.add_tensor("x", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta = open_gguf(path).metadata
    for key, (value, _) in values.items():
        assert meta[key] == value, key
    assert meta["t.ints"] == [1, -2, 3] and meta["t.strs"] == [b"a", "é".encode(), b""]
    f = open_gguf(path)
    x = f.tensors["x"]
    assert (x.shape, x.type_name) == ((3, 4), "F32")
    assert dequantize(f, x).tolist() == np.arange(12, dtype=np.float32).reshape(3, 4).tolist()


def test_truncated_and_foreign_files_are_refused(tmp_path, smollm2_path):
    data = smollm2_path.read_bytes()[:2_000_000]  # header (1.8 MB) and part of the tensor data
    for size in (20, 1000, 1_500_000, 2_000_000):
        cut = tmp_path / f"cut{size}.gguf"
        cut.write_bytes(data[:size])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            open_gguf(cut)
    (tmp_path / "v1.gguf").write_bytes(b"GGUF" + (1).to_bytes(4, "little") + bytes(16))
    with pytest.raises(ValueError, match="version 1 is not supported"):
        open_gguf(tmp_path / "v1.gguf")
    (tmp_path / "be.gguf").write_bytes(b"GGUF" + (3).to_bytes(4, "big") + bytes(16))
    with pytest.raises(ValueError, match="big-endian"):
        open_gguf(tmp_path / "be.gguf")
    with pytest.raises(FileNotFoundError):
        open_gguf(tmp_path / "missing.gguf")


# ----------------------------------------------------------------------------------------------
# dequantisation


@pytest.mark.parametrize("qtype", [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1])
def test_fast_dequantise_equals_gguf_package(tmp_path, qtype):
    rng = np.random.default_rng(int(qtype))
    x = (rng.standard_normal((8, 96)) * rng.uniform(0.01, 10, (8, 1))).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block: scale 0
    x[1, :32] = 3.0  # a constant block: max == min
    raw = gguf.quants.quantize(x, qtype)
    path = tmp_path / "q.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("w", raw, raw_shape=raw.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = open_gguf(path)
    t = f.tensors["w"]
    assert t.type_name in FAST_DEQUANTISE and t.shape == (8, 96)
    expected = torch.from_numpy(np.asarray(gguf.quants.dequantize(raw, qtype), dtype=np.float32))
    got = dequantize(f, t)
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert torch.equal(dequantize_reference(f.read_tensor(t), t), expected)


def test_smollm2_loads_bit_identical_to_the_gguf_package(smollm2_path):
    """The whole fast path (header, torch dequantisation, placeholders, assignment) against the
    slow one: gguf.GGUFReader + gguf.quants.dequantize, renamed and un-permuted here."""
    from lucidlm.loading.load import load_model

    model, _ = load_model(smollm2_path, tokenizer=False)
    cfg = model.cfg
    reader = gguf.GGUFReader(smollm2_path)
    ref = {t.name: torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
           for t in reader.tensors}
    ours = model.state_dict()
    assert torch.equal(ours["embed.tokens.weight"], ref["token_embd.weight"])
    assert torch.equal(ours["norm.weight"], ref["output_norm.weight"])
    for i in (0, cfg.n_layer - 1):
        b = f"blk.{i}."
        qkv = torch.cat([unpermute_qk(ref[b + "attn_q.weight"], cfg.n_head),
                         unpermute_qk(ref[b + "attn_k.weight"], cfg.kv_heads), ref[b + "attn_v.weight"]])
        assert torch.equal(ours[f"layers.{i}.attn.qkv.weight"], qkv)
        gate_up = torch.cat([ref[b + "ffn_gate.weight"], ref[b + "ffn_up.weight"]])
        assert torch.equal(ours[f"layers.{i}.mlp.gate_up.weight"], gate_up)
        assert torch.equal(ours[f"layers.{i}.mlp.proj.weight"], ref[b + "ffn_down.weight"])
        assert torch.equal(ours[f"layers.{i}.attn.proj.weight"], ref[b + "attn_output.weight"])
        assert torch.equal(ours[f"layers.{i}.norm_attn.weight"], ref[b + "attn_norm.weight"])
    assert model.lm_head.weight is model.embed.tokens.weight
    assert not any(t.is_meta for t in ours.values())


# ----------------------------------------------------------------------------------------------
# placeholders, then loading


CONFIGS = {
    "llama-tied": ModelConfig(vocab_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, max_seq_len=64,
                              positions="rope", norm="rmsnorm", norm_bias=False, mlp="swiglu", activation="silu",
                              bias=False, tie_embeddings=True),
    "gpt2-untied": ModelConfig(vocab_size=64, n_layer=2, n_head=4, n_embd=32, max_seq_len=64, tie_embeddings=False),
    "bert": ModelConfig(arch="encoder", vocab_size=64, n_layer=2, n_head=4, n_embd=32, max_seq_len=64,
                        type_vocab_size=2, embed_norm=True, norm_placement="post", final_norm=False,
                        activation="gelu", tie_embeddings=False),
    "seq2seq": ModelConfig(arch="encoder-decoder", vocab_size=64, n_layer=2, n_encoder_layer=2, n_head=4,
                           n_embd=32, max_seq_len=64, positions="sinusoidal", norm_placement="post",
                           final_norm=False, activation="relu", embedding_scale=True),
}


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    return dict(named)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_placeholders_then_load_equals_init_then_load(name):
    cfg = CONFIGS[name]
    torch.manual_seed(1)
    source = build_model(cfg)  # the weights to load: a random model, not either of the two below
    state = {k: v.clone() for k, v in model_state(source).items()}
    torch.manual_seed(2)
    normal = load_state_checked(build_model(cfg), state)
    empty = build_model(cfg, init=False)
    assert all(p.is_meta for p in empty.parameters())
    assert not any(b.is_meta for b in empty.buffers())  # computed tables are real from the start
    load_state_checked(empty, state)
    a, b = _tensors(normal), _tensors(empty)
    assert list(a) == list(b)
    for key in a:
        assert not b[key].is_meta, key
        assert b[key].dtype == a[key].dtype and b[key].is_contiguous(), key
        assert torch.equal(a[key], b[key]), key
        assert b[key].requires_grad == a[key].requires_grad, key
    # ties are the same Parameter, as in a normally built model
    for model in (normal, empty):
        if cfg.tie_embeddings and hasattr(model, "lm_head"):
            assert model.lm_head.weight is model.embed.tokens.weight
        if cfg.arch == "encoder-decoder":
            assert model.embed.tokens.weight is model.encoder.embed.tokens.weight
    assert len(list(empty.parameters())) == len(list(normal.parameters()))  # no tie was split in two
    # the loaded model owns its weights: training can update them in place
    p = next(empty.parameters())
    with torch.no_grad():
        p.add_(1.0)


def test_placeholders_only_in_the_building_thread():
    from lucidlm.models.transformer import _parameters_on_meta

    built = {}
    with _parameters_on_meta():
        here = nn.Linear(4, 4)
        other = threading.Thread(target=lambda: built.setdefault("linear", nn.Linear(4, 4)))
        other.start()
        other.join()
    assert here.weight.is_meta and not built["linear"].weight.is_meta
    assert not nn.Linear(4, 4).weight.is_meta  # and nothing is left switched on afterwards


def test_building_placeholders_does_not_import_dynamo():
    """``normal_`` on a meta tensor imports torch._dynamo (~1 s): build_model(init=False) must not."""
    code = ("import sys; from lucidlm.models import PRESETS, build_model; "
            "build_model(PRESETS['smollm2-135m'], init=False); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------------
# missing tensors stay errors


def test_missing_tensor_in_state_is_an_error_and_placeholders_cannot_compute():
    cfg = CONFIGS["llama-tied"]
    state = model_state(build_model(cfg))
    del state["layers.1.mlp.proj.weight"]
    model = build_model(cfg, init=False)
    with pytest.raises(ValueError, match=r"missing tensors \['layers\.1\.mlp\.proj\.weight'\]"):
        load_state_checked(model, state)
    with pytest.raises((NotImplementedError, RuntimeError)):  # a placeholder holds no numbers to use
        model(torch.zeros(1, 3, dtype=torch.long))


def test_missing_tensor_in_checkpoint_is_an_error(tmp_path):
    from lucidlm.loading.checkpoint import WEIGHTS_FILE, read_safetensors, write_safetensors

    model = build_model(CONFIGS["gpt2-untied"])
    path = save_checkpoint(model, tmp_path / "ckpt")
    loaded, _ = load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    tensors, meta = read_safetensors(path / WEIGHTS_FILE)
    del tensors["lm_head.weight"]
    write_safetensors(tensors, path / WEIGHTS_FILE, meta)
    with pytest.raises(ValueError, match=r"missing tensors \['lm_head\.weight'\]"):
        load_checkpoint(path)


SHAPES = {"token_embd.weight": (64, 32), "output_norm.weight": (32,), "blk.0.attn_norm.weight": (32,),
          "blk.0.ffn_norm.weight": (32,), "blk.0.attn_q.weight": (32, 32), "blk.0.attn_k.weight": (16, 32),
          "blk.0.attn_v.weight": (16, 32), "blk.0.attn_output.weight": (32, 32), "blk.0.ffn_gate.weight": (48, 32),
          "blk.0.ffn_up.weight": (48, 32), "blk.0.ffn_down.weight": (32, 48)}


@pytest.mark.parametrize(("change", "message"), [
    ({"blk.0.ffn_up.weight": None}, "missing tensor 'blk.0.ffn_up.weight'"),
    ({"blk.0.attn_v.weight": (8, 32)}, r"'blk.0.attn_v.weight' has shape \(8, 32\), the config needs \(16, 32\)"),
    ({"blk.0.ffn_gate.weight": (40, 32)}, r"'blk.0.ffn_gate.weight' has shape \(40, 32\), the config needs \(48, 32\)"),
])
def test_missing_or_misshapen_tensor_in_gguf_is_an_error(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        load_gguf(_write_tiny_llama(tmp_path / "bad.gguf", {**SHAPES, **change}))
    assert load_gguf(_write_tiny_llama(tmp_path / "good.gguf", SHAPES)).cfg.n_layer == 1  # all there: loads


def _write_tiny_llama(path, shapes: dict):
    """One Llama block (C=32, 4 heads, 2 kv heads, hidden 48) with float32 tensors of ``shapes``."""
    w = gguf.GGUFWriter(str(path), "llama")
    for add, value in ((w.add_block_count, 1), (w.add_context_length, 64), (w.add_embedding_length, 32),
                       (w.add_feed_forward_length, 48), (w.add_head_count, 4), (w.add_head_count_kv, 2),
                       (w.add_layer_norm_rms_eps, 1e-5)):
        add(value)
    for name, shape in shapes.items():
        if shape is not None:
            w.add_tensor(name, np.ones(shape, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
