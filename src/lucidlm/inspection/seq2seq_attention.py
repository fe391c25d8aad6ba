"""Where the decoder looked: cross-attention alignment of an encoder-decoder, as numbers and a PNG.

While writing output token t, each decoder block's cross-attention spreads weight over the source
positions; averaged over the heads, that is a (T_out, S) matrix whose rows sum to 1. For "reverse"
a trained model draws an anti-diagonal, for "copy" a diagonal, for dates a block structure (year
digits to year digits, the month name to the month number).

Rows are labelled by the token the decoder *produced* at that step (the query at step t reads
<bos> + output[:t] and predicts output[t]); columns by the source characters and their <eos>.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lucidlm.data.seq2seq_tasks import BOS, EOS, Vocab
from lucidlm.files.plotting import pyplot
from lucidlm.generate.seq2seq_decode import encode_sources, translate
from lucidlm.inspection.trace import Trace


@dataclass
class Alignment:
    source_tokens: list[str]  # the source characters + "<eos>"            (S,)
    output_tokens: list[str]  # the produced characters + "<eos>"          (T,)
    weights: torch.Tensor  # cross-attention weights (n_layer, nh, T, S); each row sums to 1
    output: str


@torch.no_grad()
def cross_attention(model, vocab: Vocab, text: str, *, output: str | None = None, beam: int = 1) -> Alignment:
    """The cross-attention of every decoder block while the model writes its answer to ``text``
    (its own greedy or beam output, or ``output`` when given: then the alignment of that answer)."""
    if output is None:
        output = translate(model, vocab, [text], beam=beam)[0]
    src, src_mask = encode_sources([text], vocab, next(model.parameters()).device)  # (1, S)
    tgt = torch.tensor([[BOS] + vocab.encode(output)], device=src.device)  # (1, T)
    if tgt.shape[1] > model.cfg.max_seq_len:
        raise ValueError(f"output of {tgt.shape[1] - 1} characters is longer than the model's context")
    trace = Trace(keep=["cross_attn.weights"])
    model(src, tgt, src_mask=src_mask, trace=trace)
    weights = torch.stack([trace[f"decoder.layers.{i}.cross_attn.weights"][0]
                           for i in range(model.cfg.n_layer)])  # (n_layer, nh, T, S)
    source_tokens = [vocab.token(i) for i in src[0].tolist()]
    output_tokens = list(output) + [vocab.token(EOS)]
    return Alignment(source_tokens, output_tokens, weights, output)


def plot_alignment(alignment: Alignment, out: str | os.PathLike, *, heads: bool = False,
                   title: str | None = None) -> Path:
    """A PNG: one panel per decoder block (heads averaged), or with ``heads`` one row per block
    and one column per head; source on the x axis, output on the y axis, a shared colour scale 0..1."""
    plt = pyplot("alignment plots")
    w = alignment.weights  # (L, nh, T, S)
    L, nh, T, S = w.shape
    panels = [[w[i, h] for h in range(nh)] for i in range(L)] if heads else [[w[i].mean(0)] for i in range(L)]
    names = [[f"block {i}, head {h}" for h in range(nh)] for i in range(L)] if heads else \
        [[f"block {i} (mean of {nh} heads)"] for i in range(L)]
    rows, cols = (L, nh) if heads else (1, L)
    if not heads:
        panels, names = [[p[0] for p in panels]], [[n[0] for n in names]]
    cell = 0.32
    fig, axes = plt.subplots(rows, cols, squeeze=False, dpi=110, layout="constrained",
                             figsize=(max(3.5, cols * (S * cell + 1.2)) + 1.0, rows * (T * cell + 1.2) + 0.6))
    image = None
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            image = ax.imshow(panels[r][c].float().numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="equal")
            ax.set_xticks(range(S), [_label(t) for t in alignment.source_tokens], fontsize=8)
            for tick in ax.get_xticklabels():
                if len(tick.get_text()) > 1:  # "<eos>" upright would collide with its neighbours
                    tick.set_rotation(90)
            ax.set_yticks(range(T), [_label(t) for t in alignment.output_tokens], fontsize=8)
            ax.set_xlabel("source", fontsize=8)
            ax.set_ylabel("output (token being written)", fontsize=8)
            ax.set_title(names[r][c], fontsize=9)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, label="cross-attention weight (rows sum to 1)")
    source = "".join(t for t in alignment.source_tokens if t != "<eos>")
    fig.suptitle(title or f"cross-attention: {source!r} -> {alignment.output!r}", fontsize=10)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(token: str) -> str:
    """A visible tick label: a space is shown as '␣'."""
    return "␣" if token == " " else token
