"""One sequence being generated: raw logits in, one event per token out.

Everything that decides *which* token comes next and *when* a sequence ends lives here, once,
for both the library loop (``decode.py``: ``generate``, ``stream``, ``generate_batch``) and the
server's continuous-batching engine (``serve/engine.py``). Those two only decide *how* the
logits are computed (padded batch, shared KV cache, slots); each row then calls
``SequenceState.step(logits)``, which

1. rejects NaN / infinite logits (a broken forward pass, not something to sample from),
2. masks the ids the tokenizer has no token for (a padded embedding table, GPT-2's 50304),
3. samples with the row's own seeded generator (``sampling.sample_token``),
4. measures the token's log-probability and the top-N alternatives, if asked,
5. turns the token into text that never splits a character nor leaks a stop string
   (``text.IncrementalDecoder`` + ``text.StopChecker``),
6. ends the sequence on a stop id, a stop string or ``max_tokens`` ("stop" / "length").

Notation: V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lucidlm.generate.sampling import SamplingParams, check_finite_logits, make_generator, sample_token
from lucidlm.generate.text import IncrementalDecoder, StopChecker

DEFAULT_PARAMS = SamplingParams()  # frozen, so one shared default is safe


@dataclass(frozen=True)
class TokenLogprob:
    """A token with its log-probability under the model (the raw softmax of its logits, before
    penalties, temperature and filters, as OpenAI reports them); ``top``: the N most likely
    tokens at that step, most likely first."""

    token_id: int
    token: str  # the token's own text (a piece of a multi-byte character shows as U+FFFD)
    logprob: float
    top: tuple[TokenLogprob, ...] = ()

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


@dataclass(frozen=True)
class StreamEvent:
    """One generated token. ``text`` may be "" while a character or a possible stop string is
    held back; the texts of a stream concatenate to the final text."""

    token_id: int
    text: str
    logprob: TokenLogprob | None  # with logprobs > 0 or token_logprobs=True
    finish_reason: str | None  # "stop" or "length" on the last event of a sequence, else None
    index: int = 0  # which prompt of a batch
    position: int = 0  # 0 for the first generated token
    prompt_tokens: int = 0


@dataclass(frozen=True)
class SequenceOptions:
    """The settings of one sequence, resolved: ``stop_ids`` already holds EOS when it should stop
    the text (the caller knows the tokenizer and ``ignore_eos``). Checked when built, so a bad
    value fails before any forward pass."""

    max_tokens: int
    params: SamplingParams = DEFAULT_PARAMS
    stop: tuple[str, ...] = ()  # stop strings, never part of the text
    stop_ids: frozenset[int] = frozenset()  # stop tokens, counted but never part of the text
    logprobs: int = 0  # how many alternatives to report with each token
    token_logprobs: bool = False  # the chosen token's own log-probability (implied by logprobs > 0)
    vocab_limit: int | None = None  # ids >= this are model rows the tokenizer has no token for

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {self.max_tokens!r}")
        if not isinstance(self.logprobs, int) or isinstance(self.logprobs, bool) or self.logprobs < 0:
            raise ValueError(
                f"logprobs (the number of alternatives to report) must be an int >= 0, got {self.logprobs!r}")
        if not isinstance(self.params, SamplingParams):
            raise ValueError(f"params must be a SamplingParams, got {type(self.params).__name__}")
        StopChecker(self.stop)  # validates the stop strings

    @property
    def want_logprob(self) -> bool:
        return self.token_logprobs or self.logprobs > 0


class SequenceState:
    """The state of one sequence as it grows: its generator, the ids so far, the text held back.
    ``step`` it with each new row of logits until ``done``."""

    def __init__(self, prompt: Sequence[int], tokenizer, options: SequenceOptions, *, index: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.prompt, self.tokenizer, self.options, self.index = list(prompt), tokenizer, options, index
        self.generator = make_generator(options.params.seed, device)  # per sequence: seeds never interact
        self.decoder = IncrementalDecoder(tokenizer) if tokenizer is not None else None
        self.checker = StopChecker(options.stop)
        self.generated: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.finish_reason: str | None = None
        self.tail = ""  # the held-back text released by the last step (part of its event's text)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def stopped_by_id(self) -> bool:
        """The last token is a stop id (it ended the sequence and adds no text)."""
        return bool(self.generated) and self.generated[-1] in self.options.stop_ids

    def step(self, logits: torch.Tensor) -> StreamEvent:
        """Choose the next token from raw logits (V,) and work out the text it adds. The last
        event's text includes whatever was held back (also kept in ``tail``)."""
        assert not self.done, "step() after the sequence finished"
        opts = self.options
        check_finite_logits(logits, len(self.generated))  # raises ValueError
        if opts.vocab_limit is not None and opts.vocab_limit < logits.shape[-1]:
            logits = logits.clone()
            logits[opts.vocab_limit:] = float("-inf")  # (V,) never sample a token that has no text
        token = sample_token(logits, opts.params, self.generator, self.generated, prompt_ids=self.prompt)
        info = self._logprob(logits, token) if opts.want_logprob else None
        if info is not None:
            self.logprobs.append(info)
        self.generated.append(token)
        reason, text = None, ""
        if token in opts.stop_ids:
            reason, self.tail = "stop", self._drain()  # the stop token adds no text
        elif self.decoder is not None:
            text, stopped = self.checker.feed(self.decoder.push(token))
            reason = "stop" if stopped else None
        if reason is None and len(self.generated) >= opts.max_tokens:
            self.tail = self._drain()
            reason = "stop" if self.checker.stopped else "length"  # the held-back text completed a stop string
        self.finish_reason = reason
        return StreamEvent(token, text + self.tail, info, reason, self.index, len(self.generated) - 1,
                           len(self.prompt))

    def _drain(self) -> str:
        """Text held back by the decoder and the stop checker, at the end of the sequence."""
        if self.decoder is None:
            return ""
        text, stopped = self.checker.feed(self.decoder.flush())
        return text if stopped else text + self.checker.flush()

    def _logprob(self, logits: torch.Tensor, token: int) -> TokenLogprob:
        logp = torch.log_softmax(logits.float(), dim=-1)  # (V,) the model's own distribution
        top = ()
        if self.options.logprobs > 0:
            values, ids = logp.topk(min(self.options.logprobs, logp.shape[-1]))
            top = tuple(TokenLogprob(int(i), token_text(self.tokenizer, int(i)), float(v))
                        for v, i in zip(values.tolist(), ids.tolist()))
        return TokenLogprob(token, token_text(self.tokenizer, token), float(logp[token]), top)


def token_text(tokenizer, token_id: int) -> str:
    """One token's own text; a byte-level token that is part of a character shows as U+FFFD."""
    if tokenizer is None:
        return ""
    if hasattr(tokenizer, "token_bytes"):
        return tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")
    return tokenizer.decode([token_id])
