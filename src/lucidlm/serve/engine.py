"""A continuous-batching decode engine: many requests share one forward pass per generated token.

Decoding one token for one sequence multiplies every weight matrix by a single vector, so the time
goes into streaming the weights from memory, not into arithmetic. Eight sequences decoded together
read those weights once for eight vectors: a step of batch 8 costs far less than 8 steps of batch
1. *Continuous* batching (Yu et al. 2022, "Orca") lets a new request join the running batch between
two steps, and lets a finished one leave, instead of waiting for the whole batch to drain.

One background thread owns the model. Each loop:
1. admit waiting requests (up to ``max_batch`` rows): prefill their prompts into free rows of the
   batch KV cache (prompts of similar length in one left-padded pass) and sample each first token;
2. one forward pass of the last token of every active row (B, 1) -> logits (B, V);
3. hand each row's logits to its ``SequenceState`` (generate/sequence.py, the same per-sequence
   code as ``lucidlm.generate``: sampling with the request's own seeded generator, stops, length,
   log-probabilities, text deltas) and send the resulting events to the request's ``sink``;
4. drop the rows that finished (stop, length, cancel, timeout).

This file keeps only what batching adds: the queue, the slots, the schedule and the batch KV cache.

The batch KV cache. Storage per layer: (max_batch, nkv, capacity, hs); active rows are slots
0..B-1 and the forward pass sees ``storage[:B]`` (a view: no copy). The time axis is shared (one
``length`` L for all rows, as ``KVCache`` requires), but rows do not have to be aligned: a per-slot
boolean mask (max_batch, capacity) says which of the L columns hold a real token of that row, and
each row passes its own position (its own token count) explicitly. A joining row with a prompt of
P tokens is written at columns [L - P, L) (L first grows to P if shorter; the other rows' new
columns are masked out). So rows have holes; attention never sees them (masked), and when the
holes waste too much (L > 2 x the longest row, or the capacity is reached) ``_compact`` packs
every row to the right. A finished row's slot is refilled by moving the last row into it.
Proven equal to decoding each request alone in tests/test_engine.py.

Notation: B active rows, L shared cache length, P prompt length, V vocabulary, nkv kv heads,
hs head size.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from lucidlm.generate.sampling import SamplingParams
from lucidlm.generate.sequence import SequenceOptions, SequenceState
from lucidlm.nn.attention import KVCache

log = logging.getLogger(__name__)


# -- what goes in and what comes out ------------------------------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to continue. ``logprobs``: None for none, k >= 0 for the chosen token's log
    probability plus the k most likely alternatives (from the model's raw distribution).
    ``prompt_logprobs``: the same for every prompt token after the first (one ``PromptEvent``
    before any token; what a client scoring text asks for, e.g. lm-evaluation-harness's
    log-likelihood tasks). ``max_tokens`` may then be 0: score the prompt, generate nothing."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    params: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()  # stop strings (not included in the output)
    stop_ids: frozenset[int] = frozenset()  # e.g. the end-of-sequence token (not included either)
    logprobs: int | None = None
    timeout_s: float | None = None  # wall-clock budget from submission; None = no limit
    prompt_logprobs: int | None = None

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError("prompt_ids is empty: a prompt needs at least one token")
        for name in ("logprobs", "prompt_logprobs"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be None or >= 0, got {getattr(self, name)}")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 0:
            raise ValueError(f"max_tokens must be an int >= 0, got {self.max_tokens!r}")
        if self.max_tokens == 0 and self.prompt_logprobs is None:
            raise ValueError("max_tokens=0 generates nothing: it is for scoring a prompt (prompt_logprobs)")
        self.sequence_options()  # checks max_tokens, params and the stop strings

    def sequence_options(self, vocab_limit: int | None = None) -> SequenceOptions:
        """The per-sequence settings, as ``lucidlm.generate`` spells them (the same code runs both)."""
        return SequenceOptions(max_tokens=max(self.max_tokens, 1), params=self.params, stop=tuple(self.stop),
                               stop_ids=frozenset(self.stop_ids), logprobs=self.logprobs or 0,
                               token_logprobs=self.logprobs is not None, vocab_limit=vocab_limit)


@dataclass(frozen=True)
class TokenEvent:
    """One generated token. ``text``: what may be shown now (possibly "", held back by a partial
    UTF-8 character or a possible stop string)."""

    token_id: int
    text: str
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] | None = None


@dataclass(frozen=True)
class PromptEvent:
    """The log-probability of each prompt token given the tokens before it (None for the first,
    which nothing predicts), and the ``prompt_logprobs`` most likely tokens at each position."""

    token_logprobs: tuple[float | None, ...]
    top_logprobs: tuple[tuple[tuple[int, float], ...] | None, ...]


@dataclass(frozen=True)
class DoneEvent:
    """The request finished: ``finish_reason`` "stop" (stop string or id) or "length"; ``text`` is
    the last held-back text to show."""

    finish_reason: str
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class ErrorEvent:
    """The request failed: ``kind`` "timeout" or "server_error"."""

    kind: str
    message: str


Event = PromptEvent | TokenEvent | DoneEvent | ErrorEvent


class Handle:
    """What ``Engine.submit`` returns: ``cancel()`` frees the request's row at the next step."""

    def __init__(self, request: GenerationRequest, sink: Callable[[Event], None]) -> None:
        self.request = request
        self.sink = sink
        self.deadline = None if request.timeout_s is None else time.monotonic() + request.timeout_s
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


# -- the engine ---------------------------------------------------------------------------------


@dataclass
class _Row:
    """An active request: its sequence state and where it is in the batch cache."""

    handle: Handle
    seq: SequenceState
    n_cached: int = 0  # tokens of this row in the KV cache = the position of ``pending``
    pending: int = -1  # sampled but not yet fed to the model


class Engine:
    """Continuous batching over one ``DecoderLM``. ``start()`` the thread, ``submit`` requests,
    ``stop()`` at the end (or use it as a context manager)."""

    def __init__(self, model, tokenizer, *, max_batch: int = 8, max_context: int | None = None,
                 compact_slack: int = 64) -> None:
        cfg = model.cfg
        if cfg.arch != "decoder":
            raise ValueError(f"the engine decodes with a decoder-only model, got arch={cfg.arch!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        # Longest prompt + completion one request may have: the model's context, or less to bound
        # the cache's memory (max_batch x layers x 2 x nkv x context x hs floats).
        self.max_context = min(cfg.max_seq_len, max_context or cfg.max_seq_len)
        self.compact_slack = compact_slack
        # ids >= this are model rows the tokenizer has no token for (a padded embedding table)
        self._vocab_limit = min(cfg.vocab_size, getattr(tokenizer, "vocab_size", cfg.vocab_size))
        p = next(model.parameters())
        self._dtype, self._device = p.dtype, p.device
        self._queue: queue.Queue[Handle] = queue.Queue()
        self._rows: list[_Row] = []
        self._k: list[torch.Tensor] = []  # per layer (max_batch, nkv, capacity, hs)
        self._v: list[torch.Tensor] = []
        self._mask = torch.zeros(max_batch, 0, dtype=torch.bool, device=self._device)  # (max_batch, capacity)
        self._length = 0  # L: columns in use, shared by all rows
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.steps = 0  # batched decode steps run
        self.tokens = 0  # tokens generated
        self.max_active = 0  # largest batch seen
        self.compactions = 0
        self.prefills = 0  # prefill forward passes (one per group of joining requests)

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> Engine:
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="lucidlm-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def submit(self, request: GenerationRequest, sink: Callable[[Event], None]) -> Handle:
        """Queue a request; ``sink(event)`` is called from the engine thread for each event (it
        must be quick and thread-safe, e.g. ``loop.call_soon_threadsafe(q.put_nowait, event)``)."""
        n = len(request.prompt_ids) + request.max_tokens
        if n > self.max_context:
            raise ValueError(f"prompt ({len(request.prompt_ids)} tokens) + max_tokens ({request.max_tokens}) = {n} "
                             f"is beyond the context window ({self.max_context}); shorten the prompt or lower "
                             "max_tokens")
        handle = Handle(request, sink)
        self._queue.put(handle)
        return handle

    def generate(self, request: GenerationRequest) -> Iterator[Event]:
        """Submit and yield the events as they come (blocking: the engine must be started)."""
        events: queue.Queue[Event] = queue.Queue()
        handle = self.submit(request, events.put)
        try:
            while True:
                event = events.get()
                yield event
                if not isinstance(event, (TokenEvent, PromptEvent)):
                    return
        finally:
            handle.cancel()  # a consumer that stops early frees the row

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def active(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    # -- the loop -----------------------------------------------------------------------------

    def step(self, block: bool = False) -> None:
        """One turn of the loop: admit waiting requests, then one decode step for every row.
        The thread calls this; a test may call it by hand (without ``start``) to choose exactly
        when requests join. ``block``: wait briefly for a request when there is nothing to do."""
        with torch.inference_mode():
            try:
                self._admit(block=block and not self._rows)
                self._drop_finished()
                if self._rows:
                    self._step()
                    self._drop_finished()
            except Exception as exc:  # a failed step must not take the server down with it
                log.exception("engine step failed")
                for row in self._rows:
                    self._finish(row, ErrorEvent("server_error", f"generation failed: {exc}"))
                self._drop_finished()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.step(block=True)
        for row in self._rows:  # shutting down: nobody will read further tokens
            self._finish(row, ErrorEvent("server_error", "the server is shutting down"))
        self._drop_finished()

    def _admit(self, block: bool) -> None:
        """Take waiting requests into the free rows, prefilling prompts of similar length together."""
        handles: list[Handle] = []
        while len(self._rows) + len(handles) < self.max_batch:
            try:
                handle = self._queue.get(timeout=0.05) if block else self._queue.get_nowait()
            except queue.Empty:
                break
            block = False
            if handle.cancelled:
                continue
            if handle.deadline is not None and time.monotonic() > handle.deadline:
                handle.sink(ErrorEvent("timeout", "the request timed out while waiting in the queue"))
                continue
            handles.append(handle)
        # One padded forward pass per group; a group's longest prompt is at most about twice its
        # shortest, so padding never costs more than the real tokens.
        handles.sort(key=lambda h: len(h.request.prompt_ids))
        groups: list[list[Handle]] = []
        for handle in handles:
            if groups and len(handle.request.prompt_ids) <= 2 * len(groups[-1][0].request.prompt_ids) + 16:
                groups[-1].append(handle)
            else:
                groups.append([handle])
        for group in groups:
            try:
                self._prefill(group)
            except Exception as exc:
                log.exception("prefill failed")
                for handle in group:
                    handle.sink(ErrorEvent("server_error", f"prefill failed: {exc}"))
                    handle.cancel()

    def _prefill(self, handles: list[Handle]) -> None:
        """Write the prompts' keys/values into the next free slots, row i right-aligned at columns
        [L - P_i, L), and sample each one's first token. Shorter prompts are left-padded to the
        longest, Pmax; the padding is masked out and never attended to."""
        if self._rows and self._length > 2 * self._longest() + self.compact_slack:
            self._compact()  # too many holes: attention would spend its time on masked columns
        lengths = [len(h.request.prompt_ids) for h in handles]
        P, n, s = max(lengths), len(handles), len(self._rows)
        if P > self._length:  # the other rows' new columns [L, P) stay masked out
            self._ensure_capacity(P)
            self._length = P
        L = self._length
        self._mask[s : s + n] = False
        rows_ids, rows_pos = [], []
        for i, (handle, p) in enumerate(zip(handles, lengths)):
            self._mask[s + i, L - p : L] = True
            rows_ids.append([0] * (P - p) + list(handle.request.prompt_ids))
            rows_pos.append([0] * (P - p) + list(range(p)))  # each row counts its own tokens from 0
        ids = torch.tensor(rows_ids, device=self._device)  # (n, P)
        positions = torch.tensor(rows_pos, device=self._device)  # (n, P)
        scoring = any(h.request.prompt_logprobs is not None for h in handles)
        logits = self.model(ids, attention_mask=self._mask[s : s + n, :L], positions=positions,
                            cache=self._view(s, s + n, L - P), last_only=not scoring)  # (n, 1 or P, V)
        self.prefills += 1
        for i, (handle, p) in enumerate(zip(handles, lengths)):
            seq = SequenceState(handle.request.prompt_ids, self.tokenizer,
                                handle.request.sequence_options(self._vocab_limit), device=self._device)
            row = _Row(handle, seq, n_cached=p)
            self._rows.append(row)
            if handle.request.prompt_logprobs is not None:
                handle.sink(self._prompt_event(handle.request, logits[i, P - p : P - 1]))  # row i's (p - 1, V)
            if handle.request.max_tokens == 0:  # scored, nothing to generate: the row leaves at once
                self._finish(row, DoneEvent("length", "", p, 0))
            else:
                self._sample(row, logits[i, -1])
        self.max_active = max(self.max_active, len(self._rows))

    def _prompt_event(self, request: GenerationRequest, logits: torch.Tensor) -> PromptEvent:
        """Prompt token t's log-probability from the logits at t - 1 ((p - 1, V): positions
        0..p-2 predict tokens 1..p-1), and the ``prompt_logprobs`` most likely tokens there."""
        logp = torch.log_softmax(logits.float(), dim=-1)  # (p - 1, V)
        targets = torch.tensor(request.prompt_ids[1:], device=logp.device)  # (p - 1,)
        chosen = logp.gather(1, targets[:, None])[:, 0].tolist()
        k = request.prompt_logprobs
        tops: list = [None]
        if k:
            values, indices = logp.topk(min(k, logp.shape[-1]), dim=-1)  # (p - 1, k)
            tops += [tuple(zip(ix, vx)) for ix, vx in zip(indices.tolist(), values.tolist())]
        else:
            tops += [()] * len(chosen)
        return PromptEvent(tuple([None] + chosen), tuple(tops))

    def _step(self) -> None:
        """One token for every active row: (B, 1) ids -> (B, V) logits."""
        B = len(self._rows)
        if self._length + 1 > self.max_context or self._length > 2 * self._longest() + self.compact_slack:
            # Packing always makes room: an active row holds P + generated - 1 < P + max_tokens
            # <= max_context tokens (checked in ``submit``).
            self._compact()
        self._ensure_capacity(self._length + 1)
        L = self._length
        ids = torch.tensor([[r.pending] for r in self._rows], device=self._device)  # (B, 1)
        positions = torch.tensor([[r.n_cached] for r in self._rows], device=self._device)  # (B, 1)
        self._mask[:B, L] = True
        logits = self.model(ids, attention_mask=self._mask[:B, : L + 1], positions=positions,
                            cache=self._view(0, B, L), last_only=True)[:, -1]  # (B, V)
        self._length = L + 1
        self.steps += 1
        for i, row in enumerate(self._rows):
            row.n_cached += 1
            self._sample(row, logits[i])

    def _sample(self, row: _Row, logits: torch.Tensor) -> None:
        """Choose the next token of one row from its raw logits (V,), and report it. A stop id
        is counted but sends no ``TokenEvent``: it has no text, and clients never see it."""
        handle = row.handle
        if handle.cancelled:
            return
        if handle.deadline is not None and time.monotonic() > handle.deadline:
            self._finish(row, ErrorEvent("timeout", f"the request ran past its {handle.request.timeout_s} s limit"))
            return
        seq = row.seq
        try:
            event = seq.step(logits)
        except ValueError as exc:  # NaN logits, broken weights: every request would fail the same way
            self._finish(row, ErrorEvent("server_error", str(exc)))
            return
        self.tokens += 1
        if not seq.stopped_by_id:
            text = event.text[: len(event.text) - len(seq.tail)]  # the held-back tail goes with DoneEvent
            lp = event.logprob
            top = None if lp is None else tuple((t.token_id, t.logprob) for t in lp.top)
            handle.sink(TokenEvent(event.token_id, text, None if lp is None else lp.logprob, top))
        if seq.done:
            self._finish(row, DoneEvent(seq.finish_reason, seq.tail, len(seq.prompt), len(seq.generated)))
        else:
            row.pending = event.token_id

    def _finish(self, row: _Row, event: Event) -> None:
        row.handle.sink(event)
        row.handle.cancel()  # marks the row for _drop_finished

    # -- the batch cache ----------------------------------------------------------------------

    def _capacity(self) -> int:
        return self._mask.shape[1]

    def _longest(self) -> int:
        return max((r.n_cached for r in self._rows), default=0)

    def _ensure_capacity(self, need: int) -> None:
        """Grow the time axis of the storage (doubling, up to max_context) to hold ``need`` columns."""
        cap = self._capacity()
        if need <= cap:
            return
        if need > self.max_context:
            raise RuntimeError(f"batch cache needs {need} columns > max_context {self.max_context}")  # never: _compact
        new_cap = min(self.max_context, max(need, 2 * cap, 64))
        cfg = self.model.cfg
        shape = (self.max_batch, cfg.kv_heads, new_cap, cfg.head_size)
        L = self._length
        for store in (self._k, self._v):
            old = list(store) or [None] * cfg.n_layer
            store.clear()
            for t in old:
                new = torch.zeros(shape, dtype=self._dtype, device=self._device)
                if t is not None:
                    new[:, :, :L] = t[:, :, :L]
                store.append(new)
        mask = torch.zeros(self.max_batch, new_cap, dtype=torch.bool, device=self._device)
        mask[:, :L] = self._mask[:, :L]
        self._mask = mask

    def _view(self, start: int, stop: int, length: int) -> KVCache:
        """A ``KVCache`` over slots [start, stop) of the storage (views: the model writes in place)."""
        return KVCache.from_tensors([k[start:stop] for k in self._k], [v[start:stop] for v in self._v], length)

    def _compact(self) -> None:
        """Pack every row's real columns to the right end of [0, L'), L' = the longest row."""
        L_new = self._longest()
        self.compactions += 1
        for s, row in enumerate(self._rows):
            cols = self._mask[s, : self._length].nonzero().squeeze(1)  # (n,) this row's columns, in order
            n = row.n_cached
            assert cols.numel() == n, (cols.numel(), n)
            for k, v in zip(self._k, self._v):
                k[s, :, L_new - n : L_new] = k[s][:, cols]  # (nkv, n, hs); the gather copies first
                v[s, :, L_new - n : L_new] = v[s][:, cols]
            self._mask[s] = False
            self._mask[s, L_new - n : L_new] = True
        self._length = L_new

    def _drop_finished(self) -> None:
        """Remove finished rows: the last row moves into the freed slot (one row's copy)."""
        s = 0
        while s < len(self._rows):
            if not self._rows[s].handle.cancelled:
                s += 1
                continue
            last = len(self._rows) - 1
            if s != last:
                L = self._length
                for k, v in zip(self._k, self._v):
                    k[s, :, :L] = k[last, :, :L]
                    v[s, :, :L] = v[last, :, :L]
                self._mask[s] = self._mask[last]
                self._rows[s] = self._rows[last]
            self._mask[last] = False
            self._rows.pop()
        if not self._rows:
            self._length = 0
            if self._capacity() > 1024:  # idle after a long request: give the memory back
                self._k, self._v = [], []
                self._mask = torch.zeros(self.max_batch, 0, dtype=torch.bool, device=self._device)


def collect(events: Sequence[Event] | Iterator[Event]) -> tuple[list[int], str, Event]:
    """(token ids, text, last event) of one request's events."""
    ids, text, last = [], [], None
    for event in events:
        last = event
        if isinstance(event, TokenEvent):
            ids.append(event.token_id)
            text.append(event.text)
        elif isinstance(event, DoneEvent):
            text.append(event.text)
    return ids, "".join(text), last

