"""Sampling molecules: every row starts from ``<bos>`` alone and ends at ``<eos>``.

    ids = [<bos>] * B                                   (B, 1) one column: nothing chosen yet
    repeat: logits = model(newest ids, KV cache)        (B, V)
            token  = draw from process(logits)          (B,)   temperature, top-k, top-p, min-p
            a row that drew <eos> is done; stop when every row is
    SMILES = the tokens before <eos>, joined

The model is never told how a molecule begins (the tutorial this follows seeds every sample
with "C"), so the first atom is drawn from what the model learned, as every later token is.
A model trained with a condition (``conditions.py``: ``<logP=2> <bos> SMILES <eos>``) is asked
for a property by a ``prefix`` of ids put before ``<bos>``: rows then start ``[*prefix, <bos>]``.
A row that reaches ``max_tokens`` without ``<eos>`` is kept as written (``ended == "length"``),
and so is an empty one (``<eos>`` first) or one holding a special token in the middle (decoded
as "<pad>", "<bos>", ... so RDKit rejects it): the metrics count them invalid, nothing is dropped.

Batches are processed as whole tensors: temperature and the filters of ``generate.sampling``
applied to (B, V) at once (``process_batch``), one ``torch.multinomial`` draw for the batch from
one seeded generator (same seed and batch size, same molecules). The per-row
``generate.sampling.process_logits`` is the reference ``process_batch`` is tested against; the
penalties, which depend on each row's history, run through it row by row.
Notation: B batch, V vocabulary.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lucidlm.chem.syntax import SmilesSyntax
from lucidlm.generate.sampling import SamplingParams, apply_logit_bias, make_generator, process_logits
from lucidlm.nn.attention import KVCache

DEFAULT_BATCH = 512


@dataclass(frozen=True)
class Molecule:
    """One generation: its SMILES (possibly invalid or empty), the token ids after ``<bos>``
    (``<eos>`` included when it ended there), how it ended, and its log-probability under the
    model (the raw softmax, before temperature and filters: the model's own belief)."""

    smiles: str
    token_ids: tuple[int, ...]
    ended: str  # "eos" or "length"
    logprob: float


# ----------------------------------------------------------------------------------------------
# the sampler, on (B, V) at once


def process_batch(logits: torch.Tensor, params: SamplingParams,
                  previous: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """Raw logits (B, V) -> the logits to draw from (B, V), -inf where a filter excluded a token:
    what ``generate.sampling.process_logits`` does to each row. ``previous``: each row's tokens so
    far, needed only by the penalties (then applied row by row, through process_logits itself)."""
    x = logits.float()  # (B, V)
    if params.repetition_penalty != 1 or params.frequency_penalty or params.presence_penalty:
        if previous is None:
            raise ValueError("penalties need each row's previous tokens")
        return torch.stack([process_logits(x[b], params, previous[b]) for b in range(x.shape[0])])  # (B, V)
    x = apply_logit_bias(x, params.logit_bias)  # (B, V)
    if params.greedy:
        return x
    if params.temperature != 1.0:
        x = x / params.temperature
    V = x.shape[-1]
    if 0 < params.top_k < V:  # exactly k per row; ties at the k-th place go to the lower ids (a stable sort)
        order = torch.sort(x, dim=-1, descending=True, stable=True).indices  # (B, V)
        x = x.scatter(-1, order[:, params.top_k:], float("-inf"))
    if params.top_p < 1.0:  # keep tokens while the probability mass before them is < p
        order = torch.sort(x, dim=-1, descending=True, stable=True).indices  # (B, V)
        probs = torch.softmax(x.gather(-1, order), dim=-1)  # (B, V) sorted, largest first
        before = torch.cumsum(probs, dim=-1) - probs  # (B, V)
        drop = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before >= params.top_p)  # (B, V)
        x = x.masked_fill(drop, float("-inf"))
    if params.min_p > 0.0:
        probs = torch.softmax(x, dim=-1)  # (B, V)
        x = x.masked_fill(probs < params.min_p * probs.max(dim=-1, keepdim=True).values, float("-inf"))
    return x


def draw(x: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> torch.Tensor:
    """One token per row (B,) from processed logits (B, V): the argmax when greedy, else a draw."""
    if params.greedy:
        return x.argmax(dim=-1)
    probs = torch.softmax(x, dim=-1)  # (B, V) zero where filtered
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


# ----------------------------------------------------------------------------------------------
# molecules from a model


@torch.inference_mode()
def _sample_batch(model, bos: int, eos: int, B: int, max_tokens: int, params: SamplingParams,
                  generator: torch.Generator, prefix: Sequence[int] = (), syntax: SmilesSyntax | None = None
                  ) -> tuple[list[list[int]], list[bool], list[float]]:
    """B rows from ``[*prefix, <bos>]``: (their tokens after ``<bos>``, whether each ended at
    ``<eos>``, their log-probabilities). With ``syntax``, each draw is only among the tokens
    that keep the SMILES parsable (``syntax.py``); the log-probabilities stay the model's own.

    Once half the rows in the cache have written ``<eos>``, they leave it (``_keep_rows``), so a
    few long or never-ending rows do not keep the whole batch running: a row costs its own length.
    b below is the number of rows still in the cache; ``rows`` maps them to the batch's rows."""
    device = next(model.parameters()).device
    penalties = params.repetition_penalty != 1 or params.frequency_penalty or params.presence_penalty
    cache = model.new_cache(B, len(prefix) + 1 + max_tokens)
    start = torch.tensor([*prefix, bos], dtype=torch.long, device=device)
    new = start.expand(B, -1).contiguous()  # (b, P + 1) every row starts at [*prefix, <bos>]
    rows = torch.arange(B, device=device)  # (b,) the batch row of each cache row
    done = torch.zeros(B, dtype=torch.bool, device=device)  # (b,)
    tokens = torch.full((B, max_tokens), eos, dtype=torch.long, device=device)  # (B, max_tokens)
    logprob = torch.zeros(B, dtype=torch.float64, device=device)  # (B,)
    states = syntax.start(B) if syntax else None  # each batch row's parser state
    for step in range(max_tokens):
        logits = model(new, cache=cache, last_only=True)[:, -1].float()  # (b, V)
        previous = tokens[rows, :step].tolist() if penalties else None
        allowed = logits
        if syntax:
            now = [states[r] for r in rows.tolist()]
            allowed = logits.masked_fill(~syntax.mask(now).to(device), float("-inf"))  # (b, V)
        token = draw(process_batch(allowed, params, previous), params, generator)  # (b,)
        token = torch.where(done, eos, token)  # a finished row keeps writing <eos>, which is ignored
        if syntax:
            syntax.push(now, token.tolist())
        chosen = torch.log_softmax(logits, dim=-1).gather(-1, token[:, None]).squeeze(1)  # (b,)
        logprob[rows] += torch.where(done, 0.0, chosen.double())
        tokens[rows, step] = token
        done |= token == eos
        if bool(done.all()):
            break
        if 2 * int(done.sum()) >= len(done):  # half the cache is finished rows: drop them
            keep = (~done).nonzero().squeeze(1)  # (b',)
            cache, rows, done, token = _keep_rows(cache, keep), rows[keep], done[keep], token[keep]
        new = token[:, None]  # (b, 1)
    out, ended = [], []
    for row in tokens.tolist():
        if eos in row:
            out.append(row[: row.index(eos) + 1])
            ended.append(True)
        else:
            out.append(row)
            ended.append(False)
    return out, ended, logprob.tolist()


def _keep_rows(cache: KVCache, keep: torch.Tensor) -> KVCache:
    """A cache of the rows ``keep`` (b',) only: each layer's keys and values, copied."""
    return KVCache.from_tensors([layer.k[keep] for layer in cache.layers], [layer.v[keep] for layer in cache.layers],
                                cache.length)


def sample_molecules(model, tokenizer, n: int, *, params: SamplingParams | None = None, batch_size: int = DEFAULT_BATCH,
                     max_tokens: int | None = None, prefix: Sequence[int] = (), constrained: bool = False,
                     progress: bool = True) -> list[Molecule]:
    """``n`` molecules from ``model`` (a DecoderLM trained on rows of ``<bos> SMILES <eos>``),
    in batches of ``batch_size``, with ``params`` (temperature, top-k, top-p, min-p, seed;
    the default samples the model's own distribution, as MOSES samples its models).
    ``max_tokens``: the longest generation (default: the model's context less the ``<bos>``).
    ``prefix``: ids before ``<bos>``, e.g. a condition token (``conditions.condition_prefix``).
    ``constrained``: draw only tokens that keep the SMILES parsable (``syntax.py``: no unclosed
    ring or branch); off by default, as MOSES samples its models freely."""
    from tqdm.auto import tqdm

    params = params or SamplingParams()
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (molecules to sample) must be a positive integer, got {n!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    bos, eos = getattr(tokenizer, "bos_id", None), getattr(tokenizer, "eos_id", None)
    if bos is None or eos is None:
        raise ValueError(f"{type(tokenizer).__name__} has no <bos>/<eos> token; molecules are sampled from <bos> to "
                         "<eos> (a SmilesTokenizer saved by `lucidlm chem prepare` has both)")
    prefix = [int(i) for i in prefix]
    if any(not 0 <= i < model.cfg.vocab_size for i in prefix):
        raise ValueError(f"prefix {prefix} holds an id outside the model's vocabulary of {model.cfg.vocab_size}")
    context = model.cfg.max_seq_len - len(prefix)  # what is left for <bos> and the molecule
    max_tokens = context - 1 if max_tokens is None else max_tokens
    if not 1 <= max_tokens <= context - 1:
        raise ValueError(f"max_tokens={max_tokens}: the model's context of {model.cfg.max_seq_len} holds "
                         f"{len(prefix)} prefix ids, <bos> and at most {context - 1} generated tokens")
    syntax = None
    if constrained:
        V = model.cfg.vocab_size
        vocab = [tokenizer.id_to_token(i) if i < tokenizer.vocab_size else "<unused>" for i in range(V)]
        syntax = SmilesSyntax(vocab, eos)
    was_training = model.training
    model.eval()
    generator = make_generator(params.seed, next(model.parameters()).device)
    out: list[Molecule] = []
    try:
        with tqdm(total=n, desc="sampling", unit=" mol", disable=not progress) as bar:
            while len(out) < n:
                B = min(batch_size, n - len(out))
                rows, ended, logprobs = _sample_batch(model, bos, eos, B, max_tokens, params, generator, prefix, syntax)
                for ids, at_eos, lp in zip(rows, ended, logprobs):
                    body = ids[:-1] if at_eos else ids
                    smiles = tokenizer.decode(body, skip_special_tokens=False)  # a stray special shows as "<pad>"
                    out.append(Molecule(smiles, tuple(ids), "eos" if at_eos else "length", lp))
                bar.update(B)
    finally:
        model.train(was_training)
    return out


def sample_smiles(model, tokenizer, n: int, **options) -> list[str]:
    """Just the SMILES of ``sample_molecules`` (same options)."""
    return [m.smiles for m in sample_molecules(model, tokenizer, n, **options)]


def summarize(molecules: Sequence[Molecule]) -> str:
    """How the generations ended: "1000 molecules: 998 ended at <eos>, 2 hit max_tokens, 0 empty;
    mean 35.2 tokens, mean log-probability -28.1"."""
    n = len(molecules)
    at_eos = sum(m.ended == "eos" for m in molecules)
    empty = sum(not m.smiles for m in molecules)
    mean_len = sum(len(m.token_ids) - (m.ended == "eos") for m in molecules) / max(n, 1)
    finite = [m.logprob for m in molecules if math.isfinite(m.logprob)]
    mean_lp = sum(finite) / len(finite) if finite else float("nan")
    return (f"{n} molecules: {at_eos} ended at <eos>, {n - at_eos} hit max_tokens, {empty} empty; "
            f"mean {mean_len:.1f} tokens, mean log-probability {mean_lp:.1f}")


def load_molecule_model(path: str | os.PathLike, *, device: str | None = None):
    """(model, tokenizer) of a checkpoint trained by ``lucidlm chem train`` (any decoder-only
    lucidlm checkpoint whose tokenizer has ``<bos>`` and ``<eos>``), in eval mode."""
    from lucidlm.loading.load import load_model

    model, tokenizer = load_model(path, device=device)
    if getattr(model.cfg, "arch", None) != "decoder":
        raise ValueError(f"{path} is not a decoder-only model (arch={model.cfg.arch!r}); molecules are sampled "
                         "from a GPT trained with `lucidlm chem train`")
    if tokenizer is None or getattr(tokenizer, "bos_id", None) is None or getattr(tokenizer, "eos_id", None) is None:
        raise ValueError(f"{path} has no tokenizer with <bos> and <eos>; sample from a checkpoint trained on a "
                         "dataset made by `lucidlm chem prepare`")
    return model.eval(), tokenizer
