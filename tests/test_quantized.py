"""Weights kept in llama.cpp's blocks (nn/quantized.py, ``linear_q`` in nn/_decode_kernel.c,
``load_gguf(keep_quantized=True)``) against independent references.

- The expansion of blocks to float32 is bit for bit the gguf package's (llama.cpp's own Python
  code), in torch and in every vector path of the C kernel, fp16 scales of every kind included
  (subnormal, negative, zero).
- The C product ``x @ W.T`` from the blocks equals a float64 product of the expanded weights
  within float32 rounding, for 1..9 rows, with bias and accumulation, on every vector path and
  thread count; and a row's result does not depend on the other rows of its batch.
- A GGUF file written by lucidlm's exporter loads with its blocks kept: far fewer bytes, the same
  logits as the dequantised load within float32 rounding, the same greedy tokens, fast path or not.
- SmolLM2-135M's Q4_1 file: the kept-quantised model's greedy tokens equal the float32 model's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lucidlm.loading.quantize import tensor_bytes
from lucidlm.nn import quantized as Q

gguf = pytest.importorskip("gguf")
K = Q.K
needs_kernel = pytest.mark.skipif(K is None, reason="the C decode kernel is not built (no C compiler at install)")
KINDS = ["q8_0", "q4_0", "q4_1"]


def _simds() -> list[str]:
    if K is None:
        return []
    available = []
    for name in ("portable", "avx2+fma", "avx512"):
        try:
            K.set_simd(name)
            available.append(name)
        except ValueError:
            pass
    return available


SIMDS = _simds()
BEST = SIMDS[-1] if SIMDS else None


@pytest.fixture
def simd(request):
    K.set_simd(request.param)
    yield request.param
    K.set_simd(BEST)


def blocks_of(w: torch.Tensor, kind: str) -> torch.Tensor:
    """The (rows, row bytes) uint8 blocks of w, quantised as llama.cpp does (loading/quantize.py)."""
    raw = np.frombuffer(tensor_bytes(w, kind), dtype=np.uint8)
    return torch.from_numpy(raw.copy()).reshape(w.shape[0], -1)


def random_blocks(kind: str, rows: int, n_in: int, seed: int = 0) -> torch.Tensor:
    """Blocks whose bytes are random, with fp16 scales of every kind (normal, subnormal, zero,
    negative) but never inf or nan: what any file may hold, not only what a quantiser writes."""
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(0, 256, (rows, n_in // 32 * Q.BLOCK_BYTES[kind]), dtype=torch.uint8, generator=g)
    per_block = b.view(rows, n_in // 32, Q.BLOCK_BYTES[kind])
    n_halves = 2 if kind == "q4_1" else 1
    for h in range(n_halves):  # the high byte of each fp16: exponent bits 0x7c00 never all set
        high = per_block[:, :, 2 * h + 1]
        high &= 0xBF  # clears one exponent bit: finite
    return b


@pytest.mark.parametrize("kind", KINDS)
def test_torch_dequantisation_equals_the_gguf_package(kind):
    qtype = getattr(gguf.GGMLQuantizationType, kind.upper())
    for blocks in (random_blocks(kind, 12, 96), blocks_of(torch.randn(10, 64) * 3, kind)):
        ref = gguf.quants.dequantize(blocks.numpy(), qtype)
        n_in = blocks.shape[1] // Q.BLOCK_BYTES[kind] * 32
        ours = Q.DEQUANTIZE[kind](blocks, torch.empty(blocks.shape[0], n_in)).reshape(blocks.shape[0], n_in)
        assert np.array_equal(ours.numpy(), ref)


@needs_kernel
@pytest.mark.parametrize("simd", SIMDS, indirect=True)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_expands_blocks_bit_for_bit(simd, kind, threads):
    blocks = random_blocks(kind, 301, 256, seed=3)  # enough values to be split between threads
    ref = gguf.quants.dequantize(blocks.numpy(), getattr(gguf.GGMLQuantizationType, kind.upper()))
    K.set_threads(threads)
    try:
        ours = Q.dequantize(blocks, kind, 256)  # through K.dequantize_q
    finally:
        K.set_threads(1)
    assert np.array_equal(ours.numpy(), ref)


def _within_rounding(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias=None, start=None) -> None:
    """y equals x @ w.T (+ bias, + start) up to float32 rounding of sums in any order: compared
    with a float64 product, each error below 2^-20 of the sum of |terms|."""
    ref = x.double() @ w.double().T
    scale = x.double().abs() @ w.double().abs().T + 1e-30
    if bias is not None:
        ref = ref + bias.double()
        scale = scale + bias.double().abs()
    if start is not None:
        ref = ref + start.double()
        scale = scale + start.double().abs()
    err = ((y.double() - ref).abs() / scale).max().item()
    assert err < 2.0**-20, err


@needs_kernel
@pytest.mark.parametrize("simd", SIMDS, indirect=True)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("threads", [1, 2])
def test_linear_q_equals_the_dequantised_product(simd, kind, threads):
    g = torch.Generator().manual_seed(1)
    n_out, n_in = 37, 160  # rows not a multiple of anything; 5 blocks a row
    blocks = blocks_of(torch.randn(n_out, n_in, generator=g), kind)
    w = Q.dequantize(blocks, kind, n_in)
    bias = torch.randn(n_out, generator=g)
    K.set_threads(threads)
    try:
        for B in range(1, 10):
            x = torch.randn(B, n_in, generator=g)
            out = torch.empty(B, n_out)
            K.linear_q(out.data_ptr(), x.data_ptr(), blocks.data_ptr(), Q.KIND_CODES[kind], 0, B, n_out, n_in, 0)
            _within_rounding(out, x, w)
            start = torch.randn(B, n_out, generator=g)
            acc = start.clone()
            K.linear_q(acc.data_ptr(), x.data_ptr(), blocks.data_ptr(), Q.KIND_CODES[kind], bias.data_ptr(),
                       B, n_out, n_in, 1)
            _within_rounding(acc, x, w, bias, start)
    finally:
        K.set_threads(1)


@needs_kernel
@pytest.mark.parametrize("kind", KINDS)
def test_a_rows_result_does_not_depend_on_its_batch(kind):
    """The server batches requests: a row's numbers must be the same alone or beside others."""
    g = torch.Generator().manual_seed(2)
    layer = Q.QuantizedLinear(blocks_of(torch.randn(50, 96, generator=g), kind), kind, 96)
    x = torch.randn(9, 96, generator=g)
    with torch.no_grad():
        together = layer(x)
        for i in range(9):
            assert torch.equal(layer(x[i : i + 1]), together[i : i + 1])


@pytest.mark.parametrize("kind", KINDS)
def test_quantized_linear_kernel_and_reference_agree(kind):
    g = torch.Generator().manual_seed(4)
    blocks = blocks_of(torch.randn(24, 64, generator=g), kind)
    layer = Q.QuantizedLinear(blocks, kind, 64, bias=torch.randn(24, generator=g))
    x = torch.randn(2, 3, 64, generator=g)
    with torch.no_grad():
        fast = layer(x)  # 6 rows: the C kernel where it is built
    with torch.enable_grad():
        reference = layer(x)  # with gradients on: always dequantise + F.linear
    assert fast.shape == reference.shape == (2, 3, 24)
    torch.testing.assert_close(fast, reference.detach(), rtol=1e-5, atol=1e-5)
    assert layer.weight_bytes() == blocks.numel() + 24 * 4
    torch.testing.assert_close(layer.weight, Q.dequantize(blocks, kind, 64), rtol=0, atol=0)


def test_quantized_embedding_looks_up_dequantised_rows():
    g = torch.Generator().manual_seed(5)
    table = torch.randn(40, 64, generator=g)
    blocks = blocks_of(table, "q8_0")
    emb = Q.QuantizedEmbedding(blocks, "q8_0", 64)
    ids = torch.tensor([[3, 0, 39], [7, 7, 1]])
    assert torch.equal(emb(ids), Q.dequantize(blocks, "q8_0", 64)[ids])


def test_bad_blocks_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="blocks of 32"):
        Q.QuantizedLinear(torch.zeros(4, 20, dtype=torch.uint8), "q4_1", 33)
    with pytest.raises(ValueError, match=r"\(rows, 40\) uint8"):
        Q.QuantizedLinear(torch.zeros(4, 20, dtype=torch.uint8), "q4_1", 64)
    with pytest.raises(ValueError, match="unknown block type"):
        Q.QuantizedLinear(torch.zeros(4, 20, dtype=torch.uint8), "q5_k", 64)


# ----------------------------------------------------------------------------------------------
# whole models from GGUF files


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """A random Llama written by lucidlm's GGUF exporter, every matrix (the tied embedding too) in
    one block type, norms in f32."""
    from lucidlm.loading.gguf_export import export_gguf
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model
    from lucidlm.tokenizers import train_bpe
    from lucidlm.tokenizers.corpus import tiny_shakespeare

    tok = train_bpe(tiny_shakespeare()[:30_000], 300, pattern="gpt2", special_tokens={"<|endoftext|>": None})
    cfg = ModelConfig(name="tiny", vocab_size=320, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, intermediate_size=128,
                      max_seq_len=64, positions="rope", norm="rmsnorm", mlp="swiglu", activation="silu", bias=False,
                      norm_bias=False, tie_embeddings=True)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    folder = tmp_path_factory.mktemp("qgguf")
    return {w: export_gguf(model, tok, folder / f"m-{w}.gguf", weights=w) for w in ("q4_1", "q8_0", "q4_0")}


def _greedy(model, ids: torch.Tensor, n: int) -> list[int]:
    cache = model.new_cache(1, ids.shape[1] + n)
    with torch.inference_mode():
        logits = model(ids, cache=cache, last_only=True)
        out = []
        for _ in range(n):
            out.append(int(logits[0, -1].argmax()))
            logits = model(torch.tensor([[out[-1]]]), cache=cache, last_only=True)
    return out


@pytest.mark.parametrize("weights", ["q4_1", "q8_0", "q4_0"])
def test_gguf_kept_quantized_equals_the_dequantised_model(tiny_gguf, weights):
    from lucidlm.loading.gguf import load_gguf

    path = tiny_gguf[weights]
    floats = load_gguf(path, cache=False)
    kept = load_gguf(path, keep_quantized=True)
    assert kept.cfg.extra["kept_quantized"] is True
    assert isinstance(kept.layers[0].attn.qkv, Q.QuantizedLinear)
    assert isinstance(kept.embed.tokens, Q.QuantizedEmbedding)
    assert kept.lm_head.blocks.data_ptr() == kept.embed.tokens.blocks.data_ptr()  # tied: one table
    assert Q.weight_bytes(kept) < Q.weight_bytes(floats) / 3
    for name, p in floats.state_dict().items():  # every weight dequantises to the float load's
        if name.endswith(".weight") and name.rsplit(".", 2)[0] + ".blocks" in kept.state_dict():
            module = kept.get_submodule(name.rsplit(".", 1)[0])
            assert torch.equal(module.weight, p), name
    ids = torch.tensor([[1, 5, 9, 200, 17, 3]])
    with torch.inference_mode():
        torch.testing.assert_close(kept(ids), floats(ids), rtol=1e-4, atol=1e-4)
    expected = _greedy(floats.use_fast_decode(), ids, 12)
    assert _greedy(kept, ids, 12) == expected  # the reference path, one token at a time
    assert _greedy(kept.use_fast_decode(), ids, 12) == expected  # the C path from the blocks


def test_smollm2_kept_quantized_decodes_as_float32():
    from lucidlm.assets import asset_path
    from lucidlm.loading import load_model
    from lucidlm.loading.gguf import load_gguf

    try:
        path = asset_path("smollm2-135m-instruct")
    except Exception as exc:  # offline and not cached
        pytest.skip(f"asset smollm2-135m-instruct is not available: {exc}")
    floats, tok = load_model(path)
    kept = load_gguf(path, keep_quantized=True)
    assert Q.weight_bytes(kept) < 110e6 < 500e6 < Q.weight_bytes(floats)
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = torch.tensor([tok.encode(prompt, allowed_special="all")])
    a = _greedy(floats.use_fast_decode(), ids, 24)
    b = _greedy(kept.use_fast_decode(), ids, 24)
    assert a == b
    assert tok.decode(b).startswith("The capital of France is Paris.")


# ----------------------------------------------------------------------------------------------
# quantising lucidlm's own models: quantize_model, checkpoints, `lucidlm quantize`


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from lucidlm.loading import save_checkpoint
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model
    from lucidlm.tokenizers import train_bpe
    from lucidlm.tokenizers.corpus import tiny_shakespeare

    tok = train_bpe(tiny_shakespeare()[:30_000], 300, pattern="gpt2", special_tokens={"<|endoftext|>": None})
    cfg = ModelConfig(name="tiny-gpt2", vocab_size=320, n_layer=2, n_head=2, n_embd=64, max_seq_len=128)  # GPT-2 shape
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "m"
    save_checkpoint(build_model(cfg).eval(), folder, tok)
    return folder


@pytest.mark.parametrize("kind", KINDS)
def test_quantize_model_writes_llama_cpp_blocks_and_checkpoints_keep_them(tiny_checkpoint, tmp_path, kind):
    from lucidlm.loading import load_model, save_checkpoint
    from lucidlm.loading.quantize import quantize_model

    model, tok = load_model(tiny_checkpoint)
    floats = {name: m.weight.detach().clone() for name, m in model.named_modules()
              if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))}
    plan = quantize_model(model, kind)
    assert "lm_head" in plan and "embed.tokens" in plan and "layers.0.attn.qkv" in plan
    assert "embed.positions" not in plan  # learned positions stay float32
    qtype = getattr(gguf.GGMLQuantizationType, kind.upper())
    for name in plan:  # the bytes of llama.cpp's own quantiser (the gguf package)
        expected = gguf.quants.quantize(floats[name].numpy(), qtype)
        assert np.array_equal(model.get_submodule(name).blocks.numpy(), expected.view(np.uint8)), name
    assert model.lm_head.blocks.data_ptr() == model.embed.tokens.blocks.data_ptr()
    ids = torch.tensor([[1, 2, 3, 50, 60]])
    with torch.no_grad():
        before = model(ids)
    save_checkpoint(model, tmp_path / "q", tok)
    again, _ = load_model(tmp_path / "q")
    assert again.cfg.extra["quantized"] == plan
    assert again.lm_head.blocks.data_ptr() == again.embed.tokens.blocks.data_ptr()  # still one table
    with torch.no_grad():
        assert torch.equal(again(ids), before)


def test_quantize_command_measures_and_writes(tiny_checkpoint, tmp_path, capsys):
    import json

    from lucidlm.cli import main
    from lucidlm.loading import load_model

    text = tmp_path / "held_out.txt"
    text.write_text("Before we proceed any further, hear me speak.\n" * 20, encoding="utf-8")
    assert main(["quantize", str(tiny_checkpoint), "--to", "q8_0", "--out", str(tmp_path / "q8"),
                 "--text", str(text), "--context", "64"]) == 0
    out = capsys.readouterr().out
    assert "q8_0:" in out and "perplexity" in out and "smaller" in out
    report = json.loads((tmp_path / "q8" / "quantization.json").read_text())
    assert report["quantized_layers"] == 10 and report["weight_bytes_quantized"] < report["weight_bytes_float32"] / 2
    assert abs(report["perplexity_change"]) < 0.02  # 8-bit weights: within 2% of float32
    model, _ = load_model(tmp_path / "q8")
    assert isinstance(model.layers[1].mlp.fc, Q.QuantizedLinear)
    # bad input: clear errors, exit code 2, nothing written
    assert main(["quantize", str(tiny_checkpoint), "--to", "q8_0", "--out", str(tmp_path / "q8")]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    assert main(["quantize", str(tiny_checkpoint), "--to", "q4_1", "--out", str(tmp_path / "x"),
                 "--text", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("T", [3, 40, 100])
def test_a_sequence_gives_the_same_numbers_alone_or_in_a_batch(T):
    """Prompts are batched too (prefill): the path (C kernel for short sequences, dequantise + GEMM
    for long ones) follows the sequence's length, not the batch's rows, so each row stays the same."""
    g = torch.Generator().manual_seed(6)
    layer = Q.QuantizedLinear(blocks_of(torch.randn(48, 64, generator=g), "q4_1"), "q4_1", 64)
    x = torch.randn(3, T, 64, generator=g)
    with torch.no_grad():
        together = layer(x)
        for i in range(3):
            assert torch.equal(layer(x[i : i + 1]), together[i : i + 1])
