"""Decoding an encoder-decoder: greedy and beam search, with the KV cache.

The encoder reads the source once. Each decoder step then feeds one new token: its self-attention
keys and values are appended to the KV cache, and its cross-attention reuses the encoder output's
keys and values, computed at the first step and kept in the cache (``LayerCache.memory_kv``).
``use_cache=False`` recomputes everything from the whole prefix at every step (the reference the
cached path is tested against).

Beam search (Sutskever et al. 2014; with the length penalty of GNMT, Wu et al. 2016, eq. 14):

    score(Y) = log P(Y | X) / lp(Y),    lp(Y) = ((5 + |Y|) / 6) ** alpha

Without the penalty (alpha = 0), every extra token lowers log P, so search prefers short outputs;
alpha in 0.6..1 evens that out. Per source, keep the ``beam`` best unfinished prefixes; at each
step extend each by every token; a prefix extended by <eos> is a finished hypothesis, scored
with lp. A hypothesis that reaches ``max_len`` tokens without <eos> ends there, scored the same
way. Search stops early only when no unfinished prefix can still beat the best finished one:
with alpha >= 0 a prefix's final score is at most log P(prefix) / lp(max_len) (its log P can only
fall, and lp(max_len) is the largest divisor), so the result is the same as without stopping.
With a beam as wide as the search space this is exhaustive search (tested).

<pad> and <bos> are never outputs: their logits are set to -inf before the softmax, in every path.
Notation: B sources, K beam, S source length, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lucidlm.data.seq2seq_tasks import BOS, EOS, PAD, Vocab, pad


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha: 1 for one token; length 7, alpha 1 -> 2.0."""
    return ((5 + length) / 6) ** alpha


def next_logprobs(logits: torch.Tensor) -> torch.Tensor:
    """log-probabilities (..., V) of the next token, <pad> and <bos> excluded (renormalised)."""
    logits = logits.float().clone()
    logits[..., PAD] = float("-inf")
    logits[..., BOS] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def _check(model, src: torch.Tensor, max_len: int) -> None:
    if getattr(getattr(model, "cfg", None), "arch", None) != "encoder-decoder":
        raise ValueError("seq2seq decoding needs an encoder-decoder model (arch='encoder-decoder')")
    if src.dim() != 2:
        raise ValueError(f"src must be a (batch, time) tensor of ids, got shape {tuple(src.shape)}")
    if not 1 <= max_len <= model.cfg.max_seq_len:
        raise ValueError(f"max_len={max_len} must be 1..{model.cfg.max_seq_len} (the model's max_seq_len)")


@torch.no_grad()
def greedy_decode(model, src: torch.Tensor, src_mask: torch.Tensor | None = None, *, max_len: int = 64,
                  use_cache: bool = True) -> list[list[int]]:
    """The most likely next token at every step, for each source row; ids without the <eos>."""
    _check(model, src, max_len)
    B = src.shape[0]
    memory = model.encode(src, src_mask)  # (B, S, C): the encoder runs once
    cache = model.new_cache(B, max_len) if use_cache else None
    ys = torch.full((B, 1), BOS, dtype=torch.long, device=src.device)  # (B, 1 + generated)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        step_in = ys[:, -1:] if use_cache else ys  # with a cache only the newest token is new
        logits = model.decode(step_in, memory, src_mask=src_mask, cache=cache)[:, -1]  # (B, V)
        nxt = next_logprobs(logits).argmax(-1)  # (B,)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)  # finished rows only pad
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= nxt == EOS
        if bool(done.all()):
            break
    return [_until_eos(row) for row in ys[:, 1:].tolist()]


def _until_eos(ids: list[int]) -> list[int]:
    return ids[: ids.index(EOS)] if EOS in ids else [i for i in ids if i != PAD]


@dataclass
class Hypothesis:
    ids: list[int]  # the output tokens, without <eos>
    logprob: float  # log P(ids + <eos> | source), or of ids alone when cut at max_len
    score: float  # logprob / length_penalty(number of tokens, <eos> included)
    finished: bool  # ended with <eos> (False: cut at max_len)


@torch.no_grad()
def beam_search(model, src: torch.Tensor, src_mask: torch.Tensor | None = None, *, beam: int = 4,
                alpha: float = 0.6, max_len: int = 64) -> list[list[Hypothesis]]:
    """For each source row, the finished hypotheses best first (at most ``beam``); see the module
    docstring for the rule. ``[0]`` of each list is the answer."""
    _check(model, src, max_len)
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0 (the early stop relies on it), got {alpha}")
    B, K, dev = src.shape[0], beam, src.device
    # 1. encode once; each source's memory serves its K hypotheses
    memory = model.encode(src, src_mask).repeat_interleave(K, dim=0)  # (B*K, S, C)
    mem_mask = src_mask.repeat_interleave(K, dim=0) if src_mask is not None else None
    cache = model.new_cache(B * K, max_len)
    tokens = torch.full((B * K, 1), BOS, dtype=torch.long, device=dev)  # the newest token of each hypothesis
    scores = torch.full((B, K), float("-inf"), device=dev)  # log P of each unfinished prefix
    scores[:, 0] = 0.0  # one empty prefix per source at the start (the others are copies to ignore)
    history = torch.zeros((B, K, 0), dtype=torch.long, device=dev)  # (B, K, t) tokens so far
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    rows = torch.arange(B, device=dev)[:, None] * K  # (B, 1) first row of each source in B*K
    for t in range(1, max_len + 1):  # t: the hypotheses' length once this step's token is added
        logits = model.decode(tokens, memory, src_mask=mem_mask, cache=cache)[:, -1]  # (B*K, V)
        V = logits.shape[-1]
        total = scores[:, :, None] + next_logprobs(logits).view(B, K, V)  # (B, K, V) log P(prefix + token)
        # 2. prefixes + <eos> are finished hypotheses
        lp = length_penalty(t, alpha)
        _collect(finished, total[:, :, EOS], history, lp, eos=True)
        total[:, :, EOS] = float("-inf")
        # 3. the K best unfinished extensions of each source's prefixes survive
        scores, flat = total.view(B, K * V).topk(K, dim=-1)  # (B, K)
        parent, token = flat // V, flat % V
        history = torch.cat([history.gather(1, parent[:, :, None].expand(-1, -1, t - 1)), token[:, :, None]], dim=2)
        if t == max_len:  # out of room: the survivors end here, cut
            _collect(finished, scores, history, lp, eos=False)
            break
        cache.reorder((rows + parent).flatten())  # each survivor continues from its parent's keys/values
        tokens = token.reshape(B * K, 1)
        # 4. stop when no unfinished prefix can beat the best finished hypothesis (module docstring)
        bound = scores.max(dim=-1).values / length_penalty(max_len, alpha)  # (B,)
        best = torch.tensor([max((h.score for h in f), default=float("-inf")) for f in finished], device=dev)
        if bool((best >= bound).all()):
            break
    return [sorted(f, key=lambda h: h.score, reverse=True)[:K] for f in finished]


def _collect(finished: list[list[Hypothesis]], logprobs: torch.Tensor, history: torch.Tensor, lp: float,
             eos: bool) -> None:
    """Add each finite entry of ``logprobs`` (B, K) as a finished hypothesis with ids ``history``."""
    values, ids = logprobs.tolist(), history.tolist()
    for b, row in enumerate(values):
        for k, value in enumerate(row):
            if math.isfinite(value):
                finished[b].append(Hypothesis(ids[b][k], value, value / lp, eos))


def encode_sources(texts: Sequence[str], vocab: Vocab, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(src (B, S), src_mask (B, S)) for ``texts``: characters + <eos>, right-padded."""
    src = pad([vocab.encode(t) + [EOS] for t in texts]).to(device)
    return src, (src != PAD).long()


def translate(model, vocab: Vocab, texts: Sequence[str], *, beam: int = 1, alpha: float = 0.6,
              max_len: int | None = None) -> list[str]:
    """Decode each text: greedy for ``beam=1``, else beam search."""
    if isinstance(texts, str):
        texts = [texts]
    device = next(model.parameters()).device
    src, src_mask = encode_sources(texts, vocab, device)
    max_len = max_len or model.cfg.max_seq_len - 1  # room to feed the whole output back (alignment plots)
    if beam == 1:
        outs = greedy_decode(model, src, src_mask, max_len=max_len)
    else:
        outs = [h[0].ids if h else [] for h in beam_search(model, src, src_mask, beam=beam, alpha=alpha,
                                                            max_len=max_len)]
    return [vocab.decode(ids) for ids in outs]
