"""Reading a trace: a walk through one forward pass, the logit lens, attention heatmaps.

All three run the model once with a ``Trace`` and print or draw what it recorded; none of them
recomputes anything the model did.
"""

from __future__ import annotations

from pathlib import Path

import torch

# What each recorded stage computes, shown beside it in the walkthrough.
EQUATIONS = {
    "embed.tokens": "x = W_E[ids]                      token embedding lookup",
    "embed.positions": "p = W_P[pos]                      learned position vectors",
    "embed.out": "x = tokens (+ positions)          the residual stream starts here",
    "attn.norm": "h = norm(x)",
    "attn.q": "q = h W_q  (after RoPE rotation when the model uses RoPE)",
    "attn.k": "k = h W_k  (shared by a group of query heads under GQA)",
    "attn.v": "v = h W_v",
    "attn.scores": "s = q k^T / sqrt(d_head)",
    "attn.scores_masked": "s + M                             M = -inf above the diagonal (causal)",
    "attn.weights": "a = softmax(s + M)                each row sums to 1",
    "attn.heads_out": "o = a v, heads concatenated",
    "attn.out": "o W_o                             what attention adds",
    "attn.resid": "x = x + attention                 residual stream",
    "mlp.norm": "h = norm(x)",
    "mlp.pre_act": "g = h W_1",
    "mlp.act": "act(g)",
    "mlp.out": "(...) W_down                       what the MLP adds",
    "mlp.resid": "x = x + mlp                       residual stream",
    "final_norm": "norm(x) after the last block",
    "logits": "logits = norm(x) W_E^T            scores for every token in the vocabulary",
}


def _equations(cfg) -> dict[str, str]:
    """EQUATIONS, with the norm and MLP of this model spelled out."""
    eq = dict(EQUATIONS)
    norm = ("RMSNorm: x / sqrt(mean(x^2) + eps) * g" if cfg.norm == "rmsnorm"
            else "LayerNorm: (x - mean(x)) / sqrt(var(x) + eps) * g + b")
    eq["attn.norm"] = f"h = norm(x)                       {norm}"
    if cfg.mlp == "swiglu":
        eq["mlp.pre_act"] = "g = h W_gate"
        eq["mlp.act"] = f"{cfg.activation}(g) * (h W_up)            SwiGLU"
    else:
        eq["mlp.pre_act"] = "g = h W_1"
        eq["mlp.act"] = f"{cfg.activation}(g)"
    if cfg.positions != "rope":
        eq["attn.q"] = "q = h W_q"
    return eq


def _equation(name: str, equations: dict[str, str]) -> str:
    key = ".".join(name.split(".")[-2:]) if name.startswith("layers.") else name
    return equations.get(key, "")


def _preview(t: torch.Tensor, n: int = 4) -> str:
    flat = t.flatten()
    vals = ", ".join(f"{v:+.3f}" for v in flat[:n].tolist())
    return f"[{vals}{', ...' if flat.numel() > n else ''}]"


def run_traced(model, tokenizer, text: str):
    from lucidlm.inspect.trace import Trace

    ids = tokenizer.encode(text, allowed_special="all") if hasattr(tokenizer, "special_tokens") else tokenizer.encode(text)
    trace = Trace()
    with torch.inference_mode():
        logits = model(torch.tensor([ids]), trace=trace)
    return ids, trace, logits


def walkthrough(model, tokenizer, text: str, layers: int | None = 2) -> str:
    """One forward pass, stage by stage: name, shape, first values, the equation it computes.
    ``layers``: show this many blocks in full (the rest are summarised); None for all."""
    ids, trace, logits = run_traced(model, tokenizer, text)
    pieces = [tokenizer.decode([i]) for i in ids]
    lines = [f"input: {text!r}", f"tokens ({len(ids)}): {pieces}", f"ids: {ids}", ""]
    n_layer = len(model.layers)
    equations = _equations(model.cfg)
    for name in trace:
        layer = int(name.split(".")[1]) if name.startswith("layers.") else None
        if layer is not None and layers is not None and layer >= layers:
            if name == f"layers.{layer}.mlp.resid" and layer == n_layer - 1:
                lines.append(f"... layers {layers}..{n_layer - 1} repeat the same steps ...")
            continue
        t = trace[name]
        lines.append(f"{name:<32} {str(tuple(t.shape)):<20} {_preview(t):<44} {_equation(name, equations)}")
    probs = torch.softmax(logits[0, -1].float(), -1)
    top = torch.topk(probs, 5)
    lines.append("")
    lines.append("next token after the last position:")
    for p, i in zip(top.values.tolist(), top.indices.tolist()):
        lines.append(f"  {p:6.1%}  {tokenizer.decode([i])!r}")
    return "\n".join(lines)


def logit_lens(model, tokenizer, text: str, top: int = 1) -> list[tuple[int, list[tuple[str, float]]]]:
    """For each layer, the top token(s) read from the residual stream at the last position through
    the final norm and the output head (nostalgebraist 2020): how the prediction forms."""
    ids, trace, _ = run_traced(model, tokenizer, text)
    rows = []
    with torch.inference_mode():
        for i in range(len(model.layers)):
            x = trace[f"layers.{i}.mlp.resid"][:, -1:]  # (1, 1, C)
            if model.norm is not None:
                x = model.norm(x)
            probs = torch.softmax(model.lm_head(x)[0, -1].float(), -1)
            best = torch.topk(probs, top)
            rows.append((i, [(tokenizer.decode([j]), p) for j, p in zip(best.indices.tolist(), best.values.tolist())]))
    return rows


def attention_heatmaps(model, tokenizer, text: str, out_dir: str | Path, layers: list[int] | None = None) -> list[Path]:
    """One PNG per layer: a grid of the attention weights of every head (query rows, key columns)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("attention heatmaps need matplotlib: pip install matplotlib") from None
    ids, trace, _ = run_traced(model, tokenizer, text)
    labels = [tokenizer.decode([i]).replace("\n", "\\n").replace(" ", "␣") for i in ids]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in layers if layers is not None else range(len(model.layers)):
        w = trace[f"layers.{i}.attn.weights"][0]  # (nh, T, T)
        nh = w.shape[0]
        cols = min(nh, 4)
        rows = (nh + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
        for h in range(rows * cols):
            ax = axes[h // cols][h % cols]
            ax.axis("off")
            if h < nh:
                ax.imshow(w[h].float().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
                ax.set_title(f"head {h}", fontsize=9)
                if len(labels) <= 24:
                    ax.axis("on")
                    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
                    ax.set_yticks(range(len(labels)), labels, fontsize=6)
        fig.suptitle(f"layer {i}: attention weights (row = query, column = key)")
        fig.tight_layout()
        path = out_dir / f"attention_layer{i:02d}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
