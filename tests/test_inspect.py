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


# --- what a user may get wrong: one clear line (exit code 2), checked against the model ----------
@pytest.mark.parametrize("args, message", [
    (["attention", "--layers", "99"], "layer 99 does not exist: the model has 3 layers (0..2, or -3..-1"),
    (["attention", "--layers=-4"], "layer -4 does not exist: the model has 3 layers"),
    (["attention", "--layers", "0,x"], "--layers '0,x': expected comma-separated whole numbers"),
    (["attention", "--heads", "4"], "head 4 does not exist: the model has 4 heads (0..3"),
    (["walkthrough", "--layers", "99"], "cannot show 99 blocks in full: the model has 3 (give 1..3"),
    (["walkthrough", "--layers", "0"], "cannot show 0 blocks in full"),
    (["logit-lens", "--top", "0"], "top must be between 1 and 300 (the vocabulary size), got 0"),
    (["logit-lens", "--top", "301"], "top must be between 1 and 300"),
])
def test_out_of_range_options_name_the_valid_range(tiny, tmp_path, capsys, args, message):
    path, _, _ = tiny
    out = ["--out", str(tmp_path)] if args[0] == "attention" else []
    assert main(["inspect", *args, *out, "--model", str(path), "Hi there"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lucidlm: error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.png"))


def test_negative_layer_and_head_indices_count_from_the_end(tiny, tmp_path, capsys):
    path, _, _ = tiny
    assert main(["inspect", "attention", "--model", str(path), "--out", str(tmp_path), "--layers=-1,0,2",
                 "--heads=-1", "Hi there"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["attention_layer00.png", "attention_layer02.png"]


@pytest.mark.parametrize("action", ["walkthrough", "attention", "logit-lens"])
def test_an_empty_text_is_refused(tiny, tmp_path, capsys, action):
    path, _, _ = tiny
    assert main(["inspect", action, "--model", str(path), ""]) == 2
    err = capsys.readouterr().err
    assert "the text is empty" in err and "at least one token" in err and err.count("\n") == 1


def test_logit_lens_shows_exactly_top_tokens(tiny, capsys):
    path, model, tok = tiny
    assert main(["inspect", "logit-lens", "--model", str(path), "--top", "2", "To be"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("layer")]
    assert len(rows) == 3 and all(line.count("%") == 2 for line in rows)


def test_presets_are_refused_unless_random_init(tiny, monkeypatch, capsys):
    import lucidlm.loading.load as load

    _, model, tok = tiny
    loaded = []
    monkeypatch.setattr(load, "load_model", lambda name, **kw: loaded.append(name) or (model, tok))
    assert main(["inspect", "walkthrough", "--model", "gpt2", "Hi"]) == 2
    err = capsys.readouterr().err
    assert "architecture preset" in err and "--random-init" in err and err.count("\n") == 1
    assert loaded == []  # refused before building 124M random weights
    assert main(["inspect", "walkthrough", "--model", "gpt2", "--random-init", "--layers", "1", "Hi"]) == 0
    assert loaded == ["gpt2"]


def test_heatmap_has_a_scale_labels_and_visibly_masked_cells(tiny):
    """The future positions of a causal decoder are masked (not drawn as a weight of 0), on a
    labelled 0..1 colour bar, with the token texts along both axes."""
    import numpy as np

    from lucidlm.inspection.walkthrough import attention_figure, run_traced, token_labels

    _, model, tok = tiny
    ids, trace, _ = run_traced(model, tok, "To be or not")
    T = len(ids)
    fig = attention_figure(trace, 1, [0, 3], token_labels(tok, ids), causal=True)
    heat = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in heat] == ["head 0", "head 3"]
    future = torch.ones(T, T, dtype=torch.bool).triu(1).numpy()  # the causal mask, written independently
    for ax in heat:
        data = ax.images[0].get_array()
        assert np.array_equal(np.ma.getmaskarray(data), future)
        assert ax.get_xlabel().startswith("key token") and [t.get_text() for t in ax.get_xticklabels()] == [
            tok.decode([i]).replace(" ", "␣") for i in ids]
    assert heat[0].get_ylabel().startswith("query token")
    bar = next(ax for ax in fig.axes if not ax.images)  # the colour bar's own axes
    assert "probability" in bar.get_ylabel() and bar.get_ylim() == (0.0, 1.0)
    assert "masked" in fig._suptitle.get_text() and "causal" in fig._suptitle.get_text()

    # rendered: a masked cell does not look like a weight of 0; a visible cell shows its weight
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    ax, cmap = heat[0], heat[0].images[0].get_cmap()

    def colour_at(row, col):
        x, y = ax.transData.transform((col, row))
        return pixels[pixels.shape[0] - int(round(y)), int(round(x))]

    zero = (np.array(cmap(0.0)[:3]) * 255).astype(int)
    assert np.abs(colour_at(0, T - 1) - zero).sum() > 150
    w = float(trace["layers.1.attn.weights"][0, 0, T - 1, 0])
    assert np.abs(colour_at(T - 1, 0) - (np.array(cmap(w)[:3]) * 255)).max() < 12
