"""How well a model predicts a text: log-likelihood, perplexity and bits per byte.

A language model gives every token a probability given the tokens before it; the text's
log-likelihood is the sum of their logs, and

    mean NLL    = -(sum of log p) / tokens            nats per token
    perplexity  = exp(mean NLL)                       "as unsure as a uniform choice among this many"
    bits/byte   = -(sum of log p) / ln 2 / bytes      comparable across tokenizers

A text longer than the model's context is scored in windows of ``context`` tokens that advance
by ``stride``; each window scores only the tokens the previous one did not, with everything
before them in the window as their context (the sliding window of Hugging Face's perplexity
guide). stride = context is fastest (each token sees only the tokens of its own window); a
smaller stride gives every token more context and a lower, fairer perplexity. The first token
has nothing before it and is not scored (a model with a BOS token gets it prepended, and then
every token of the text is scored).

Notation: T tokens in a window, V vocabulary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Perplexity:
    tokens: int  # tokens scored
    nll: float  # -(sum of log p) over them, in nats
    bytes: int  # UTF-8 bytes of the text they spell
    seconds: float

    @property
    def mean_nll(self) -> float:
        return self.nll / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_nll)

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.bytes

    def summary(self) -> str:
        return (f"{self.tokens:,} tokens ({self.bytes:,} bytes): mean NLL {self.mean_nll:.4f} nats/token, "
                f"perplexity {self.perplexity:.3f}, {self.bits_per_byte:.4f} bits/byte; "
                f"{self.tokens / max(self.seconds, 1e-9):,.0f} tokens/s")


def _windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first) per window over ids[0:n]: the window feeds ids[start:end - 1] (at most
    ``context`` ids), which predict ids[start + 1:end], and scores ids[first:end]; together the
    windows score ids[1:n] once each (id 0 has no context).

    >>> _windows(10, 4, 2)
    [(0, 5, 1), (2, 7, 5), (4, 9, 7), (5, 10, 9)]
    """
    out, scored_to = [], 1
    while scored_to < n:
        end = min(n, context + 1 if not out else scored_to + stride)
        out.append((max(0, end - 1 - context), end, scored_to))
        scored_to = end
    return out


@torch.inference_mode()
def token_nll(model, ids: Sequence[int], *, context: int | None = None, stride: int | None = None,
              progress: bool = False) -> torch.Tensor:
    """-log p(ids[i] | ids[:i]) for i = 1 .. len(ids) - 1, as float64 (N - 1,), in windows of
    ``context`` tokens (default: the model's) advancing by ``stride`` (default: ``context``)."""
    from tqdm.auto import tqdm

    context = context or model.cfg.max_seq_len
    stride = stride or context
    if not 2 <= context <= model.cfg.max_seq_len:
        raise ValueError(f"context={context}: between 2 and the model's {model.cfg.max_seq_len} tokens")
    if not 1 <= stride <= context:
        raise ValueError(f"stride={stride}: between 1 and context={context}")
    if len(ids) < 2:
        raise ValueError(f"{len(ids)} token(s): a perplexity needs at least 2 (the first is only context)")
    device = next(model.parameters()).device
    x = torch.as_tensor(list(ids), dtype=torch.long, device=device)
    out = torch.empty(len(ids) - 1, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for start, end, first in tqdm(_windows(len(ids), context, stride), desc="scoring", unit=" window",
                                      disable=not progress):
            logits = model(x[None, start:end - 1])[0].float()  # (T, V): position t predicts id start + t + 1
            logp = torch.log_softmax(logits[first - 1 - start:], dim=-1)  # the rows that predict ids[first:end]
            out[first - 1:end - 1] = -logp.gather(-1, x[first:end, None]).squeeze(-1).double().cpu()
    finally:
        model.train(was_training)
    return out


def perplexity(model, tokenizer, text: str, *, context: int | None = None, stride: int | None = None,
               add_bos: bool = True, progress: bool = False) -> Perplexity:
    """The perplexity of ``model`` on ``text`` (see the module docstring). With ``add_bos`` and a
    tokenizer that has a BOS token, it goes first, so the text's first token is scored too."""
    if not text:
        raise ValueError("the text is empty: nothing to score")
    ids = list(tokenizer.encode(text))
    bos = getattr(tokenizer, "bos_id", None)
    if add_bos and bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    result = perplexity_of_ids(model, tokenizer, ids, context=context, stride=stride, progress=progress)
    if bos is not None and ids[0] == bos:  # every token of the text was scored: its bytes, exactly
        result = replace(result, bytes=len(text.encode("utf-8")))
    return result


def perplexity_of_ids(model, tokenizer, ids: Sequence[int], *, context: int | None = None, stride: int | None = None,
                      progress: bool = False) -> Perplexity:
    """The perplexity of ``model`` on token ids already made (a prepared dataset's split): every
    id but the first is scored; bytes are those of the scored ids, decoded by ``tokenizer``."""
    start = time.perf_counter()
    nll = token_nll(model, ids, context=context, stride=stride, progress=progress)
    seconds = time.perf_counter() - start
    scored_bytes = len(tokenizer.decode([int(i) for i in ids[1:]]).encode("utf-8"))
    return Perplexity(int(nll.numel()), float(nll.sum()), scored_bytes, seconds)
