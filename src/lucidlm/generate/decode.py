"""Autoregressive decoding: prompt -> tokens, one at a time, with a KV cache.

    ids = prompt
    repeat: logits = model(ids)[-1]; token = sample(logits); ids += [token]; stop?

Recomputing the whole sequence at every step costs O(T^2) per token; the keys and values of
earlier positions never change, so a KV cache keeps them and each step feeds only the newest
token (``last_only=True``: the output head runs on one position). ``use_cache=False`` is the
textbook loop above, kept as the reference the cached path is tested against.

Batches: prompts of different lengths are *left*-padded, so every row's newest token sits in
the last column, and an ``attention_mask`` (1 = real token) grows by one column per step. With a
mask the model numbers positions by real tokens only, so a padded row computes what it would
alone (``DecoderLM.forward``); batched greedy output equals one-at-a-time output (tested).

What each row does with its logits (sampling, stops, length, log-probabilities, text deltas) is
``sequence.SequenceState``, shared with the server's engine; this file only runs the model.

Events: ``stream`` yields one ``StreamEvent`` per generated token (its id, the text it adds,
optionally its log-probability and the top-N alternatives); the last one carries the
``finish_reason``: "stop" (a stop id or stop string) or "length" (``max_tokens`` reached).
Notation: B batch, T time, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from lucidlm.generate.sampling import SamplingParams
from lucidlm.generate.sequence import (
    DEFAULT_PARAMS,
    SequenceOptions,
    SequenceState,
    StreamEvent,
    TokenLogprob,
)


@dataclass(frozen=True)
class GenerationResult:
    text: str  # the completion, without the stop string or stop token
    token_ids: tuple[int, ...]  # the generated ids, a final stop id included
    finish_reason: str  # "stop" or "length"
    prompt_ids: tuple[int, ...]
    logprobs: tuple[TokenLogprob, ...] | None = None  # one per generated token

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class GenerateOptions:
    """The options of ``generate`` / ``stream`` / ``generate_batch`` / ``stream_batch``, written
    once and passed through (see ``generate`` for what each does). The per-sequence part becomes
    a ``SequenceOptions`` once the model and tokenizer are known (EOS, vocabulary)."""

    max_tokens: int = 128
    params: SamplingParams = DEFAULT_PARAMS
    stop: Sequence[str] = ()
    stop_ids: Sequence[int] = ()
    ignore_eos: bool = False
    logprobs: int = 0
    token_logprobs: bool = False
    use_cache: bool = True
    truncate: bool = False
    add_special: bool = True

    def for_sequence(self, model, tokenizer) -> SequenceOptions:
        cfg = model.cfg
        return SequenceOptions(
            max_tokens=self.max_tokens, params=self.params,
            stop=(self.stop,) if isinstance(self.stop, str) else tuple(self.stop),
            stop_ids=frozenset(_stop_ids(model, tokenizer, self.stop_ids, self.ignore_eos)),
            logprobs=self.logprobs, token_logprobs=self.token_logprobs,
            vocab_limit=min(cfg.vocab_size, getattr(tokenizer, "vocab_size", cfg.vocab_size)))


# ----------------------------------------------------------------------------------------------
# prompts


def encode_prompt(tokenizer, text: str, *, add_special: bool = True) -> list[int]:
    """Text -> ids as the model expects them: special-token text ("<|im_start|>") becomes its
    id, as Hugging Face tokenizers do (chat templates are written that way), and BOS is added
    when the tokenizer's files ask for it (``add_special=False`` to skip; a rendered chat
    template already carries its own)."""
    from lucidlm.tokenizers.bpe import BPETokenizer

    if not isinstance(text, str):
        raise ValueError(f"a prompt is a str or a list of token ids, got {type(text).__name__}")
    ids = tokenizer.encode(text, allowed_special="all") if isinstance(tokenizer, BPETokenizer) else tokenizer.encode(text)
    return with_prompt_specials(tokenizer, ids) if add_special else list(ids)


def with_prompt_specials(tokenizer, ids: Sequence[int]) -> list[int]:
    """A prompt's ids with the special tokens the tokenizer's files ask for (BOS), never a final
    EOS: a prompt that ends in EOS asks for nothing more."""
    ids = list(ids)
    if hasattr(tokenizer, "add_special_ids"):
        ids = tokenizer.add_special_ids(ids)
        if getattr(tokenizer, "add_eos", False) and ids and ids[-1] == tokenizer.eos_id:
            ids = ids[:-1]
    return list(ids)


def _prompt_ids(model, tokenizer, prompt: str | Sequence[int], add_special: bool) -> list[int]:
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError("a text prompt needs a tokenizer; pass one, or pass the prompt as token ids")
        ids = encode_prompt(tokenizer, prompt, add_special=add_special)
    else:
        ids = list(prompt)
        if any(not isinstance(i, int) or isinstance(i, bool) for i in ids):
            raise ValueError("a prompt given as ids must be a list of ints")
    V = model.cfg.vocab_size
    bad = [i for i in ids if not 0 <= i < V]
    if bad:
        raise ValueError(f"prompt token id {bad[0]} is outside the model's vocabulary (0..{V - 1})")
    if not ids:
        bos = getattr(tokenizer, "bos_id", None)
        if bos is None:
            raise ValueError("the prompt is empty and the tokenizer has no BOS token to start from; give some text")
        ids = [bos]
    return ids


def _fit_context(ids: list[int], max_tokens: int, context: int, truncate: bool) -> list[int]:
    if len(ids) + max_tokens <= context:
        return ids
    if truncate and max_tokens < context:
        return ids[len(ids) + max_tokens - context:]  # keep the end of the prompt: it is what gets continued
    if max_tokens >= context:
        raise ValueError(f"max_tokens={max_tokens} alone fills the model's context of {context} tokens, leaving no "
                         f"room for the prompt; ask for at most {context - 1} (the prompt here is {len(ids)} tokens)")
    if len(ids) >= context:
        raise ValueError(
            f"the prompt is {len(ids)} tokens, longer than the model's context of {context} tokens; shorten it "
            f"to at most {context - max_tokens} tokens (with max_tokens={max_tokens}), or pass truncate=True "
            f"(--truncate) to keep only its last {context - max_tokens} tokens")
    raise ValueError(
        f"prompt of {len(ids)} tokens + max_tokens={max_tokens} is longer than the model's context of {context} "
        f"tokens; lower max_tokens to {context - len(ids)} or less, shorten the prompt, or pass truncate=True "
        "(--truncate) to drop the prompt's oldest tokens"
    )


# ----------------------------------------------------------------------------------------------
# the decoding loop


def stream_batch(model, tokenizer, prompts: Sequence[str | Sequence[int]], *,
                 prefill_progress: Callable[[int, int], None] | None = None, **options) -> Iterator[StreamEvent]:
    """Events for several prompts decoded together (``event.index`` says which); ``options`` as
    ``generate``. Each row has its own generator seeded with ``params.seed``, so a row samples
    what it would alone. Bad options raise here, before the first event. ``prefill_progress(done,
    total)`` is called as a long prompt is read, chunk by chunk (a CLI shows it)."""
    opts = GenerateOptions(**options)
    rows = _prepare(model, tokenizer, prompts, opts)
    return _decode(model, rows, opts, prefill_progress)


def _prepare(model, tokenizer, prompts, opts: GenerateOptions) -> list[SequenceState]:
    """Check the options and encode the prompts: one ``SequenceState`` per prompt."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or cfg.arch != "decoder":
        raise ValueError("generation needs a decoder-only lucidlm model (DecoderLM); "
                         f"got {type(model).__name__}" + (f" with arch={cfg.arch!r}" if cfg is not None else ""))
    seq_options = opts.for_sequence(model, tokenizer)  # validates max_tokens, logprobs, params, stops
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of prompts (texts or lists of token ids)")
    ids_list = [_fit_context(_prompt_ids(model, tokenizer, p, opts.add_special), opts.max_tokens, cfg.max_seq_len,
                             opts.truncate) for p in prompts]
    return [SequenceState(ids, tokenizer, seq_options, index=b) for b, ids in enumerate(ids_list)]


def _decode(model, rows: list[SequenceState], opts: GenerateOptions,
            prefill_progress: Callable[[int, int], None] | None = None) -> Iterator[StreamEvent]:
    device = next(model.parameters()).device
    # 1. Prefill: every prompt at once, left-padded to the longest.
    B, T = len(rows), max(len(row.prompt) for row in rows)
    ids = torch.zeros(B, T, dtype=torch.long, device=device)  # (B, T) padding id 0 is never attended to
    mask = torch.zeros(B, T, dtype=torch.long, device=device)  # (B, T) 1 = real token
    for b, row in enumerate(rows):
        ids[b, T - len(row.prompt):] = torch.tensor(row.prompt, device=device)
        mask[b, T - len(row.prompt):] = 1
    with torch.inference_mode():
        cache = model.new_cache(B, T + opts.max_tokens) if opts.use_cache else None
        logits = _prefill(model, ids, mask, cache, prefill_progress)  # (B, V)

    # 2. One token per step. Finished rows keep their place (cheaper than reshaping the cache);
    #    their tokens are ignored. Events are yielded outside inference_mode, so the caller's
    #    code between events does not run in it.
    for _ in range(opts.max_tokens):
        events = []
        with torch.inference_mode():
            new = torch.zeros(B, 1, dtype=torch.long, device=device)  # (B, 1)
            for b, row in enumerate(rows):
                if not row.done:
                    event = row.step(logits[b])
                    new[b, 0] = event.token_id
                    events.append(event)
            if not all(row.done for row in rows):
                mask = torch.cat([mask, torch.ones_like(new)], dim=1)  # (B, S + 1) the mask grows a column
                if opts.use_cache:
                    logits = model(new, attention_mask=mask, cache=cache, last_only=True)[:, -1]  # (B, V)
                else:  # the reference: recompute everything
                    ids = torch.cat([ids, new], dim=1)  # (B, S + 1)
                    logits = model(ids, attention_mask=mask, last_only=True)[:, -1]  # (B, V)
        yield from events
        if all(row.done for row in rows):
            return


PREFILL_CHUNK = 512  # a longer prompt is read in chunks of this many tokens, through the KV cache


def _prefill(model, ids: torch.Tensor, mask: torch.Tensor, cache, progress) -> torch.Tensor:
    """The last position's logits (B, V) after reading the prompts (B, T). A long prompt goes
    through the cache in chunks: the same attention (each chunk's queries see every key before
    them), a T x 512 score matrix per head instead of T x T, and progress to report meanwhile.
    A prompt of at most ``PREFILL_CHUNK`` tokens is one forward pass, as before."""
    T = ids.shape[1]
    if cache is None or T <= PREFILL_CHUNK:
        return model(ids, attention_mask=mask, cache=cache, last_only=True)[:, -1]  # (B, V)
    for start in range(0, T, PREFILL_CHUNK):
        end = min(start + PREFILL_CHUNK, T)
        logits = model(ids[:, start:end], attention_mask=mask[:, :end], cache=cache, last_only=True)[:, -1]
        if progress is not None:
            progress(end, T)
    return logits


def _stop_ids(model, tokenizer, stop_ids: Sequence[int], ignore_eos: bool) -> set[int]:
    stops = {int(i) for i in stop_ids}
    bad = [i for i in stops if not 0 <= i < model.cfg.vocab_size]
    if bad:
        raise ValueError(f"stop id {bad[0]} is outside the model's vocabulary (0..{model.cfg.vocab_size - 1})")
    eos = getattr(tokenizer, "eos_id", None)
    if eos is None:
        eos = model.cfg.eos_token_id
    if eos is not None and not ignore_eos:
        stops.add(int(eos))
    return stops


def stream(model, tokenizer, prompt: str | Sequence[int], **options) -> Iterator[StreamEvent]:
    """Generate one completion, yielding a ``StreamEvent`` per token as it is chosen."""
    return stream_batch(model, tokenizer, [prompt], **options)


def generate_batch(model, tokenizer, prompts: Sequence[str | Sequence[int]], **options) -> list[GenerationResult]:
    """One ``GenerationResult`` per prompt, decoded together in one padded batch (options as
    ``generate``)."""
    return _results(model, tokenizer, prompts, GenerateOptions(**options), None)


def _results(model, tokenizer, prompts, opts: GenerateOptions, prefill_progress) -> list[GenerationResult]:
    rows = _prepare(model, tokenizer, prompts, opts)
    texts: list[list[str]] = [[] for _ in rows]
    for event in _decode(model, rows, opts, prefill_progress):
        texts[event.index].append(event.text)
    return [GenerationResult("".join(texts[b]), tuple(row.generated), row.finish_reason or "length",
                             tuple(row.prompt), tuple(row.logprobs) if row.options.want_logprob else None)
            for b, row in enumerate(rows)]


def generate(
    model,
    tokenizer,
    prompt: str | Sequence[int],
    *,
    max_tokens: int = 128,
    params: SamplingParams = DEFAULT_PARAMS,
    stop: Sequence[str] = (),
    stop_ids: Sequence[int] = (),
    ignore_eos: bool = False,
    logprobs: int = 0,
    token_logprobs: bool = False,
    use_cache: bool = True,
    truncate: bool = False,
    add_special: bool = True,
    prefill_progress: Callable[[int, int], None] | None = None,
) -> GenerationResult:
    """Continue ``prompt`` (text or token ids) by up to ``max_tokens`` tokens.

    - ``params``: temperature, top-k/p, min-p, penalties, seed (``SamplingParams``).
    - ``stop``: strings that end the text (not included in it); ``stop_ids``: token ids that end
      it, in addition to the tokenizer's EOS (unless ``ignore_eos``).
    - ``logprobs=N``: each token's log-probability and the N most likely alternatives
      (``token_logprobs=True`` for the token's own log-probability without alternatives).
    - A prompt plus ``max_tokens`` longer than the model's context raises ValueError, unless
      ``truncate=True``, which drops the prompt's oldest tokens to make room.
    - ``use_cache=False``: recompute the whole sequence each step (the reference loop).
    - ``add_special``: add BOS to a text prompt when the tokenizer asks for it.
    - ``prefill_progress(done, total)``: called as a long prompt is read, chunk by chunk.
    """
    opts = GenerateOptions(max_tokens=max_tokens, params=params, stop=stop, stop_ids=stop_ids, ignore_eos=ignore_eos,
                           logprobs=logprobs, token_logprobs=token_logprobs, use_cache=use_cache, truncate=truncate,
                           add_special=add_special)
    return _results(model, tokenizer, [prompt], opts, prefill_progress)[0]
