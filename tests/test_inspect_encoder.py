"""``lucidlm inspect`` on an encoder (all-MiniLM-L6-v2): the trace's attention weights against
transformers' BertModel (eager attention, ``output_attentions``) on the same files, the
walkthrough's bidirectional story and sentence vector, the heatmaps, and the logit lens refusing.

Needs the ``all-minilm-l6-v2`` asset and transformers; skips with the reason when either is missing.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from lucidlm.cli import main  # noqa: E402
from lucidlm.inspection import walkthrough  # noqa: E402

MODEL = "all-minilm-l6-v2"
TEXT = "The Eiffel Tower is in Paris."


@pytest.fixture(scope="module")
def ours(minilm_dir):
    from lucidlm.loading.load import load_model

    model, tok = load_model(MODEL)
    return model.eval(), tok


@pytest.fixture(scope="module")
def reference(minilm_dir):
    """transformers' BertModel (eager attention, so it can return the weights) + HF tokenizers."""
    d = minilm_dir
    model = transformers.BertModel.from_pretrained(d, attn_implementation="eager").eval()
    hf_tok = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    hf_tok.no_padding()  # the file pads to 128 for sentence-transformers' batches
    ids = hf_tok.encode(TEXT).ids
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    return ids, out


def test_encoder_trace_attention_matches_transformers(ours, reference):
    model, tok = ours
    ref_ids, ref = reference
    ids, trace, hidden = walkthrough.run_traced(model, tok, TEXT)
    assert ids == ref_ids  # [CLS] ... [SEP], as HF's tokenizer makes them
    assert len(ref.attentions) == len(model.layers) == 6
    for i, expected in enumerate(ref.attentions):  # (1, nh, T, T) each
        got = trace[f"layers.{i}.attn.weights"]
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() < 1e-5, f"layer {i}"
    assert (hidden - ref.last_hidden_state).abs().max().item() < 1e-4


def test_encoder_walkthrough_is_bidirectional_and_ends_in_a_sentence_vector(ours, reference, capsys):
    _, ref = reference
    assert main(["inspect", "walkthrough", "--model", MODEL, "--layers", "1", TEXT]) == 0
    out = capsys.readouterr().out
    assert "['[CLS]', 'the', 'e', '##iff', '##el', 'tower', 'is', 'in', 'paris', '.', '[SEP]']" in out
    assert "encoder" in out and "bidirectional" in out
    assert "next token after" not in out  # an encoder predicts no next token
    lines = out.splitlines()
    hidden = next(line for line in lines if line.startswith("hidden "))
    assert "(1, 11, 384)" in hidden
    # the sentence vector printed is the mean-pooled, L2-normalised output of transformers' model
    line = next(line for line in lines if line.startswith("sentence vector"))
    shown = [float(v) for v in line.split("[")[1].split(", ...]")[0].split(", ")]
    expected = F.normalize(ref.last_hidden_state[0].mean(0), dim=0)[:4]
    assert torch.allclose(torch.tensor(shown), expected, atol=1.5e-3)


def test_encoder_attention_heatmaps(ours, tmp_path, capsys):
    model, tok = ours
    args = ["inspect", "attention", "--model", MODEL, "--out", str(tmp_path), "--layers=0,-1", "--heads", "0,11", TEXT]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["attention_layer00.png", "attention_layer05.png"]
    # nothing is masked in an encoder: every query row sees every key
    ids, trace, _ = walkthrough.run_traced(model, tok, TEXT)
    fig = walkthrough.attention_figure(trace, 0, [0, 11], walkthrough.token_labels(tok, ids), causal=False)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    for image in images:
        assert not image.get_array().mask.any()
    assert "bidirectional" in fig._suptitle.get_text()
    assert [t.get_text() for t in images[0].axes.get_xticklabels()][:3] == ["[CLS]", "the", "e"]


def test_logit_lens_refuses_an_encoder_in_one_line(ours, capsys):
    assert main(["inspect", "logit-lens", "--model", MODEL, TEXT]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lucidlm: error: the logit lens") and err.count("\n") == 1
    assert "encoder" in err and "smollm2-135m-instruct" in err


@pytest.mark.parametrize("text", ["", "   \n "])
def test_encoder_refuses_an_empty_text(ours, text, capsys):
    # WordPiece would still give [CLS] [SEP]: two tokens but no input
    assert main(["inspect", "walkthrough", "--model", MODEL, text]) == 2
    assert "the text is empty" in capsys.readouterr().err
