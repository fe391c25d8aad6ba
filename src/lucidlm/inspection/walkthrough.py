"""Reading a trace: a walk through one forward pass, the logit lens, attention heatmaps.

All three run the model once with a ``Trace`` and print or draw what it recorded; none of them
recomputes anything the model did. They read the two model shapes that take one text:
- a decoder (GPT-2, SmolLM2): causal attention (a token sees itself and the tokens before it),
  ending in next-token scores, the logits;
- an encoder (BERT, MiniLM): bidirectional attention (every token sees every token), ending in
  one vector per token, the hidden states. It predicts no next token, so it has no logit lens.

Indices given by a user (layers, heads) may be negative and then count from the end, as in
Python: -1 is the last layer. Notation: T tokens, S keys (= T here), C width, nh heads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lucidlm.files.plotting import pyplot
from lucidlm.models.transformer import DecoderLM, Encoder
from lucidlm.tokenizers import BPETokenizer, WordPieceTokenizer

# What each recorded stage computes, shown beside it in the walkthrough (a decoder's, by default;
# stage_equations adapts them to the model at hand).
EQUATIONS = {
    "embed.tokens": "x = W_E[ids]                      token embedding lookup",
    "embed.positions": "p = W_P[pos]                      learned position vectors",
    "embed.token_types": "t = W_T[segment]                  segment A/B vectors (BERT)",
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
    "hidden": "the encoder's output              one vector per token",
}

# Masked cells of a heatmap (a causal decoder's future positions, padding): hatched grey, a colour
# the viridis scale never takes, so that "not allowed to look" never reads as "a weight of 0".
MASKED_COLOUR = "#b0b0b0"


def stage_equations(cfg) -> dict[str, str]:
    """EQUATIONS, with the norm, MLP and attention mask of this model spelled out."""
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
    if cfg.kv_heads == cfg.n_head:
        eq["attn.k"] = "k = h W_k"
    if cfg.mlp != "swiglu":
        eq["mlp.out"] = "act(g) W_2                        what the MLP adds"
    if cfg.embed_norm:
        eq["embed.out"] = "x = LayerNorm(tokens + positions (+ segments))   the residual stream starts here"
    if cfg.norm_placement == "post":  # BERT, Vaswani et al.: the norm comes after the addition, so the
        # block reads the stream x itself, not a normalised copy h
        eq.update({k: v.replace("h W_", "x W_") for k, v in eq.items() if k in ("attn.q", "attn.k", "attn.v",
                                                                               "mlp.pre_act")})
        eq["attn.resid"] = "x = LayerNorm(x + attention)      post-norm residual stream"
        eq["mlp.resid"] = "x = LayerNorm(x + mlp)            post-norm residual stream"
    if cfg.arch == "encoder":
        eq["attn.scores_masked"] = "s (+ M: -inf on padding only)     no causal mask: bidirectional"
        eq["attn.weights"] = "a = softmax(s)                    each row sums to 1, over every token"
    return eq


def _equation(name: str, equations: dict[str, str]) -> str:
    key = ".".join(name.split(".")[-2:]) if name.startswith("layers.") else name
    return equations.get(key, "")


def _preview(t: torch.Tensor, n: int = 4) -> str:
    flat = t.flatten()
    vals = ", ".join(f"{v:+.3f}" for v in flat[:n].tolist())
    return f"[{vals}{', ...' if flat.numel() > n else ''}]"


# -- checking what a user asked for --------------------------------------------------------------

def model_kind(model) -> str:
    """Which of the two model shapes that inspect reads this is: "decoder" or "encoder"."""
    if isinstance(model, DecoderLM):
        return "decoder"
    if isinstance(model, Encoder):
        return "encoder"
    raise ValueError(f"inspect reads decoder-only models (GPT-2, SmolLM2) and encoders (BERT, MiniLM), "
                     f"not a {type(model).__name__}, which needs a source and a target text")


def resolve_indices(indices, count: int, noun: str, owner: str = "the model") -> list[int]:
    """User-given indices checked against ``count`` items of ``owner``, as 0..count-1 (negative
    ones count from the end, as in Python), duplicates dropped, order kept.

    >>> resolve_indices([0, -1, 0], 30, "layer")
    [0, 29]
    """
    indices = list(indices)
    if not indices:
        raise ValueError(f"no {noun} given: name at least one (0..{count - 1})")
    resolved: list[int] = []
    for i in indices:
        if not -count <= i < count:
            raise ValueError(f"{noun} {i} does not exist: {owner} has {count} {noun}{'s' if count != 1 else ''} "
                             f"(0..{count - 1}, or -{count}..-1 counting from the end)")
        if i % count not in resolved:
            resolved.append(i % count)
    return resolved


def encode_text(tokenizer, text: str) -> list[int]:
    """The ids the model reads for ``text``. A BPE tokenizer reads the special tokens written in
    the text (a chat template's "<|im_start|>"); WordPiece wraps the text in [CLS] ... [SEP]."""
    if tokenizer is None:
        raise ValueError("this model came without a tokenizer: inspect needs one to turn the text into ids")
    if isinstance(tokenizer, WordPieceTokenizer):
        ids = tokenizer.encode(text) if tokenizer.tokenize(text) else []  # [CLS] [SEP] alone is no input
    elif isinstance(tokenizer, BPETokenizer):
        ids = tokenizer.encode(text, allowed_special="all")
    else:
        ids = tokenizer.encode(text)
    if not ids:
        raise ValueError(f"the text is empty ({text!r} gives no tokens): give at least one token of input, "
                         "e.g. \"The cat sat on the\"")
    return ids


def token_labels(tokenizer, ids: list[int]) -> list[str]:
    """One readable label per token: WordPiece's own pieces ("[CLS]", "##ing", which decoding
    alone would drop or glue), else each id decoded alone."""
    if isinstance(tokenizer, WordPieceTokenizer):
        return [tokenizer.id_to_token(i) for i in ids]
    return [tokenizer.decode([i]) for i in ids]


def run_traced(model, tokenizer, text: str, keep: list[str] | None = None):
    """(ids, trace, output) of one forward pass over ``text``; the output is a decoder's logits
    (1, T, V) or an encoder's hidden states (1, T, C). ``keep``: see ``Trace``."""
    from lucidlm.inspection.trace import Trace

    model_kind(model)
    ids = encode_text(tokenizer, text)
    trace = Trace(keep=keep)
    with torch.inference_mode():
        output = model(torch.tensor([ids]), trace=trace)
    return ids, trace, output


# -- the walkthrough -----------------------------------------------------------------------------

def walkthrough(model, tokenizer, text: str, layers: int | None = 2) -> str:
    """One forward pass, stage by stage: name, shape, first values, the equation it computes.
    ``layers``: show this many blocks in full (the rest are summarised); None for all."""
    kind = model_kind(model)
    n_layer, cfg = len(model.layers), model.cfg
    if layers is not None and not 1 <= layers <= n_layer:
        raise ValueError(f"cannot show {layers} blocks in full: the model has {n_layer} (give 1..{n_layer}, "
                         "or every block with --all-layers / layers=None)")
    ids, trace, output = run_traced(model, tokenizer, text)
    lines = [f"input: {text!r}", f"tokens ({len(ids)}): {token_labels(tokenizer, ids)}", f"ids: {ids}"]
    if kind == "decoder":
        lines += [f"model: a decoder, {n_layer} blocks of {cfg.n_head} attention heads, width {cfg.n_embd}",
                  "  causal attention: each token sees itself and the tokens before it; the output scores the next token"]
    else:
        lines += [f"model: an encoder, {n_layer} blocks of {cfg.n_head} attention heads, width {cfg.n_embd}",
                  "  bidirectional attention: each token sees every token, before and after it;",
                  "  the output is one vector per token, not a next-token prediction"]
    lines.append("")
    equations = stage_equations(cfg)
    for name in trace:
        layer = int(name.split(".")[1]) if name.startswith("layers.") else None
        if layer is not None and layers is not None and layer >= layers:
            if name == f"layers.{layer}.mlp.resid" and layer == n_layer - 1:
                lines.append(f"... layers {layers}..{n_layer - 1} repeat the same steps ...")
            continue
        t = trace[name]
        lines.append(f"{name:<32} {str(tuple(t.shape)):<20} {_preview(t):<44} {_equation(name, equations)}")
    lines.append("")
    lines.extend(_next_token(output, tokenizer) if kind == "decoder" else _sentence_vector(output))
    return "\n".join(lines)


def _next_token(logits: torch.Tensor, tokenizer) -> list[str]:
    probs = torch.softmax(logits[0, -1].float(), -1)  # (V,)
    top = torch.topk(probs, min(5, probs.numel()))
    lines = ["next token after the last position:"]
    for p, i in zip(top.values.tolist(), top.indices.tolist()):
        lines.append(f"  {p:6.1%}  {tokenizer.decode([i])!r}")
    return lines


def _sentence_vector(hidden: torch.Tensor) -> list[str]:
    """The end of an encoder's pass: its hidden states, and the sentence vector that sentence
    encoders (all-MiniLM-L6-v2, ``lucidlm embed``) make of them: the mean over the tokens,
    scaled to length 1 so that a dot product of two of them is their cosine similarity."""
    T, C = hidden.shape[1:]
    sentence = torch.nn.functional.normalize(hidden[0].float().mean(0), dim=0)  # (C,)
    return [
        f"output: {T} vectors of width {C}, one per token (hidden), each computed from the whole text.",
        "an encoder predicts no next token; a sentence encoder averages these vectors into one:",
        f"{'sentence vector':<32} {str(tuple(sentence.shape)):<20} {_preview(sentence):<44} "
        "mean over the tokens, L2-normalised (lucidlm embed)",
    ]


# -- the logit lens ------------------------------------------------------------------------------

def logit_lens(model, tokenizer, text: str, top: int = 1) -> list[tuple[int, list[tuple[str, float]]]]:
    """For each layer, the top token(s) read from the residual stream at the last position through
    the final norm and the output head (nostalgebraist 2020): how the prediction forms."""
    if model_kind(model) != "decoder":
        raise ValueError("the logit lens reads the residual stream through a language model's output head "
                         "(next-token scores), and an encoder like MiniLM has none: it outputs one vector per "
                         "token. Try it on a decoder: --model smollm2-135m-instruct")
    vocab = model.cfg.vocab_size
    if not 1 <= top <= vocab:
        raise ValueError(f"top must be between 1 and {vocab} (the vocabulary size), got {top}: it is how many "
                         "tokens to show per layer")
    ids, trace, _ = run_traced(model, tokenizer, text, keep=["mlp.resid"])
    rows = []
    with torch.inference_mode():
        for i in range(len(model.layers)):
            x = trace[f"layers.{i}.mlp.resid"][:, -1:]  # (1, 1, C)
            if model.norm is not None:
                x = model.norm(x)
            probs = torch.softmax(model.lm_head(x)[0, -1].float(), -1)  # (V,)
            best = torch.topk(probs, top)
            rows.append((i, [(tokenizer.decode([j]), p) for j, p in zip(best.indices.tolist(), best.values.tolist())]))
    return rows


# -- attention heatmaps --------------------------------------------------------------------------

def attention_heatmaps(model, tokenizer, text: str, out_dir: str | Path, layers: list[int] | None = None,
                       heads: list[int] | None = None) -> list[Path]:
    """One PNG per layer: the attention weights of each head (query rows, key columns).
    ``layers``, ``heads``: which to draw (default all; negative indices count from the end)."""
    plt = pyplot("attention heatmaps")
    kind = model_kind(model)
    layers = resolve_indices(layers, len(model.layers), "layer") if layers is not None else range(len(model.layers))
    heads = resolve_indices(heads, model.cfg.n_head, "head") if heads is not None else list(range(model.cfg.n_head))
    ids, trace, _ = run_traced(model, tokenizer, text, keep=["attn.weights", "attn.scores_masked"])
    labels = token_labels(tokenizer, ids)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in layers:
        fig = attention_figure(trace, i, heads, labels, causal=kind == "decoder")
        path = out_dir / f"attention_layer{i:02d}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def attention_figure(trace, layer: int, heads: list[int], labels: list[str], causal: bool):
    """A matplotlib figure: one heatmap per head of ``layer``, on one 0..1 colour scale, masked
    cells (where ``scores_masked`` is -inf) hatched grey, token texts as tick labels (spaces and
    newlines made visible)."""
    import numpy as np
    from matplotlib.patches import Patch

    plt = pyplot("attention heatmaps")
    weights = trace[f"layers.{layer}.attn.weights"][0].float()  # (nh, T, S)
    masked = trace[f"layers.{layer}.attn.scores_masked"][0] == float("-inf")  # (nh, T, S), True = may not look
    T, S = weights.shape[1:]
    labels = [s.replace("\n", "\\n").replace(" ", "␣") for s in labels]
    cols = int(np.ceil(np.sqrt(len(heads))))
    rows = (len(heads) + cols - 1) // cols
    side = min(max(3.2, 0.18 * max(T, S) + 1.2), 8.0)  # inches per panel: room for the token labels
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + 1.2, side * rows + 1.0), squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("viridis").with_extremes(bad=(0, 0, 0, 0))  # masked: transparent, the hatching shows
    show_tokens = max(T, S) <= 40
    image = None
    for n, ax in enumerate(axes.flat):
        if n >= len(heads):
            ax.axis("off")
            continue
        h = heads[n]
        ax.set_facecolor(MASKED_COLOUR)
        ax.patch.set_hatch("///")
        ax.patch.set_edgecolor("white")
        data = np.ma.masked_array(weights[h].numpy(), mask=masked[h].numpy())
        image = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=10)
        if show_tokens:
            size = 7 if max(T, S) <= 20 else 5
            ax.set_xticks(range(S), labels[-S:], rotation=90, fontsize=size)
            ax.set_yticks(range(T), labels[-T:], fontsize=size)
        if n % cols == 0:
            ax.set_ylabel("query token (looking)")
        if n // cols == rows - 1 or n + cols >= len(heads):
            ax.set_xlabel("key token (looked at)")
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    bar.set_label("attention weight: probability, 0 to 1 (each row sums to 1)")
    if causal:
        note = "grey hatched = masked: a token may not look at the tokens after it (causal mask)"
    else:
        note = "bidirectional: every token looks at every token, before and after it"
    if show_tokens and any("␣" in s for s in labels):
        note += ";  ␣ = a space"
    fig.suptitle(f"layer {layer}: attention weights, row = query token, column = key token\n{note}", fontsize=11)
    if bool(masked[heads].any()):
        fig.legend(handles=[Patch(facecolor=MASKED_COLOUR, hatch="///", edgecolor="white",
                                  label="masked: not allowed to look (not a weight of 0)")],
                   loc="outside lower right", fontsize=9)
    return fig
