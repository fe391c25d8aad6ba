"""Interventions (Trace edits) against the same ablation done in plain PyTorch with module hooks,
on a Llama-style (SmolLM2, grouped-query), a GPT-2-style and a BERT-style (MiniLM) model."""

from __future__ import annotations

import pytest
import torch

from lucidlm import load_model
from lucidlm.inspection import Trace
from lucidlm.inspection.interventions import Edit, ablation_scan, build_edits, next_token_logits
from lucidlm.models import DecoderLM, ModelConfig

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def smol(smollm2_path):
    model, tok = load_model("smollm2-135m-instruct")
    return model.eval(), tok


@pytest.fixture(scope="module")
def gpt2_style():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=200, n_layer=3, n_head=4, n_embd=32, max_seq_len=64, positions="learned",
                      norm="layernorm", mlp="mlp", activation="gelu_tanh", bias=True)
    return DecoderLM(cfg).eval()


def plain_logits(model, ids, hooks) -> torch.Tensor:
    """The next-token logits of a plain forward pass (no trace) with PyTorch hooks registered."""
    handles = [register(model) for register in hooks]
    try:
        with torch.inference_mode():
            return model(torch.tensor([ids]))[0, -1].float()
    finally:
        for h in handles:
            h.remove()


def zero_head_hook(layer: int, head: int, hs: int):
    """Zero head ``head``'s columns of the input of layer ``layer``'s output projection."""
    def register(model):
        def pre(module, args):
            x = args[0].clone()
            x[..., head * hs:(head + 1) * hs] = 0
            return (x,)
        return model.layers[layer].attn.proj.register_forward_pre_hook(pre)
    return register


def test_zeroing_a_head_equals_a_hook_on_the_output_projection(smol):
    model, tok = smol
    ids = tok.encode(PROMPT)
    hs = model.cfg.n_embd // model.cfg.n_head
    for layer, head in [(0, 0), (7, 4), (29, 8)]:
        edits = build_edits(model, ids, [Edit("zero", "head", layer, head=head)])
        got = next_token_logits(model, ids, edits)
        want = plain_logits(model, ids, [zero_head_hook(layer, head, hs)])
        torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)
    base = next_token_logits(model, ids)
    torch.testing.assert_close(base, plain_logits(model, ids, []), atol=2e-4, rtol=1e-4)
    assert not torch.allclose(got, base, atol=1e-3)  # the last head did change the answer's scores


def test_scaling_an_mlp_and_a_head_of_a_gpt2_style_model(gpt2_style):
    model = gpt2_style
    ids = [5, 17, 42, 99, 3, 150]

    def scale_mlp(model):
        return model.layers[1].mlp.register_forward_hook(lambda m, a, out: out * 0.5)

    got = next_token_logits(model, ids, build_edits(model, ids, [Edit("scale", "mlp", 1, factor=0.5)]))
    torch.testing.assert_close(got, plain_logits(model, ids, [scale_mlp]), atol=1e-5, rtol=1e-5)
    got = next_token_logits(model, ids, build_edits(model, ids, [Edit("zero", "head", -1, head=2),
                                                                 Edit("zero", "mlp", 0)]))

    def zero_mlp0(model):
        return model.layers[0].mlp.register_forward_hook(lambda m, a, out: torch.zeros_like(out))

    want = plain_logits(model, ids, [zero_head_hook(2, 2, 8), zero_mlp0])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_patching_the_residual_stream_from_another_prompt(smol):
    model, tok = smol
    ids, source = tok.encode("The capital of France is"), tok.encode("The capital of Italy is")
    assert len(ids) == len(source)
    layer, position = 12, 3  # " France" <- " Italy", after block 12
    captured = {}

    def capture(model):
        return model.layers[layer].register_forward_hook(lambda m, a, out: captured.__setitem__("x", out.clone()))

    plain_logits(model, source, [capture])

    def patch(model):
        def hook(m, a, out):
            out = out.clone()
            out[:, position] = captured["x"][:, position]
            return out
        return model.layers[layer].register_forward_hook(hook)

    got = next_token_logits(model, ids, build_edits(model, ids, [Edit("patch", "resid", layer, position=position)],
                                                    source_ids=source))
    torch.testing.assert_close(got, plain_logits(model, ids, [patch]), atol=2e-4, rtol=1e-4)
    rome, paris = tok.encode(" Rome")[0], tok.encode(" Paris")[0]
    assert got[rome] - got[paris] > next_token_logits(model, ids)[rome] - next_token_logits(model, ids)[paris]


def test_a_bert_head_zeroed_equals_the_hook(minilm_dir):
    model, tok = load_model("all-minilm-l6-v2")
    model.eval()
    ids = tok.encode("The cat sat on the mat")
    hs = model.cfg.n_embd // model.cfg.n_head
    trace = Trace(keep=["hidden"], edits=build_edits(model, ids, [Edit("zero", "head", 2, head=5)]))
    with torch.inference_mode():
        got = model(torch.tensor([ids]), trace=trace)
    handle = zero_head_hook(2, 5, hs)(model)
    try:
        with torch.inference_mode():
            want = model(torch.tensor([ids]))
    finally:
        handle.remove()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert trace.applied == {"layers.2.attn.heads_out"}


def test_ablation_scan_equals_one_run_per_head_and_leaves_the_model_as_it_was(smol):
    model, tok = smol
    ids = tok.encode(PROMPT)
    paris = tok.encode(" Paris")[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = plain_logits(model, ids, [])
    scan = ablation_scan(model, ids, paris, max_cells=9 * len(ids) ** 2 * 40)  # several batches
    assert scan["p_ablated"].shape == (30, 9)
    assert scan["p_base"] == pytest.approx(torch.softmax(plain, -1)[paris].item(), abs=1e-5)
    hs = model.cfg.n_embd // model.cfg.n_head
    for layer, head in [(0, 3), (15, 0), (29, 8)]:
        want = torch.softmax(plain_logits(model, ids, [zero_head_hook(layer, head, hs)]), -1)[paris].item()
        assert scan["p_ablated"][layer, head].item() == pytest.approx(want, abs=1e-4)
    # nothing of the model changed: weights, and what a plain forward pass gives
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(plain_logits(model, ids, []), plain)


def test_only_the_stages_the_pass_goes_on_from_can_be_edited():
    with pytest.raises(ValueError, match="cannot be edited"):
        Trace(edits={"layers.0.attn.weights": lambda x: x})
    with pytest.raises(ValueError, match="head is named"):
        Edit("zero", "head", 0)
    with pytest.raises(ValueError, match="patch"):
        Edit("patch", "mlp", 0, position=1)
