"""Reading a trace from the command line (on a tiny model saved as a checkpoint), the decode
weight layout, and the trace's cost when off."""

from __future__ import annotations

import pytest
import torch

from lucidlm.cli import main
from lucidlm.models import DecoderLM, ModelConfig
from lucidlm.tokenizers import train_bpe
from lucidlm.tokenizers.corpus import tiny_shakespeare


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from lucidlm.loading.checkpoint import save_checkpoint

    torch.manual_seed(0)
    tok = train_bpe(tiny_shakespeare()[:30_000], 300, pattern="gpt2")
    cfg = ModelConfig(vocab_size=300, n_layer=3, n_head=4, n_kv_head=2, n_embd=32, max_seq_len=64,
                      positions="rope", norm="rmsnorm", mlp="swiglu", activation="silu", bias=False)
    model = DecoderLM(cfg).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(model, path, tok)
    return path, model, tok


def test_walkthrough_lists_every_stage_with_shapes(tiny, capsys):
    path, model, tok = tiny
    assert main(["inspect", "walkthrough", "--model", str(path), "--layers", "1", "To be or not"]) == 0
    out = capsys.readouterr().out
    n = len(tok.encode("To be or not"))
    for stage in ("embed.tokens", "layers.0.attn.q", "layers.0.attn.weights", "layers.0.mlp.act", "logits"):
        assert stage in out
    assert any(line.startswith("layers.0.attn.weights") and f"(1, 4, {n}, {n})" in line for line in out.splitlines())
    assert "layers.1.attn.q" not in out and "layers 1..2 repeat" in out
    assert "next token after the last position" in out


def test_logit_lens_reads_each_layer_through_the_head(tiny, capsys):
    path, model, tok = tiny
    assert main(["inspect", "logit-lens", "--model", str(path), "--top", "1", "To be"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "layer" in line and "%" in line]
    assert len(lines) == 3
    # independent check of the last layer: the lens on the final residual is the model's own prediction
    ids = torch.tensor([tok.encode("To be")])
    with torch.no_grad():
        best = int(model(ids)[0, -1].argmax())
    assert repr(tok.decode([best])) in lines[-1]


def test_attention_heatmaps_are_written(tiny, tmp_path, capsys):
    path, _, _ = tiny
    assert main(["inspect", "attention", "--model", str(path), "--out", str(tmp_path), "--layers", "0,2", "Hi there"]) == 0
    files = sorted(p.name for p in tmp_path.glob("*.png"))
    assert files == ["attention_layer00.png", "attention_layer02.png"]
    assert (tmp_path / files[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_column_major_layout_keeps_values_and_logits(tiny):
    _, model, _ = tiny
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        before = model(ids)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        model.use_column_major_weights()
        after = model(ids)
    assert not model.layers[0].attn.qkv.weight.is_contiguous()  # column-major now
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.allclose(before, after, atol=1e-5)
