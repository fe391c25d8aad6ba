"""Generation: logits -> sampler -> ids -> text, one token at a time.

- ``sampling``: ``SamplingParams`` and one short function per sampler (temperature, top-k,
  top-p, min-p, penalties); ``sample_token`` chains them.
- ``defaults``: the sampling settings a model recommends, and where they come from.
- ``sequence``: one sequence's state, written once: sample, stop (ids, strings, length),
  log-probabilities, UTF-8-safe text deltas; used by ``decode`` and by the server's engine.
- ``decode``: ``generate`` / ``stream`` / ``generate_batch`` with a KV cache, stop strings and
  ids, per-token log-probabilities.
- ``text``: text deltas that never split a character; stop strings that never leak.
- ``chat``: ``render_chat(messages)``, the model's Jinja chat template rendered as HF does.
- ``prompting``: few-shot prompts, chain of thought, self-consistency.
"""

from __future__ import annotations

from lucidlm.generate.chat import CHATML_TEMPLATE, render_chat
from lucidlm.generate.decode import (
    GenerationResult,
    StreamEvent,
    TokenLogprob,
    encode_prompt,
    generate,
    generate_batch,
    stream,
    stream_batch,
)
from lucidlm.generate.sampling import (
    SamplingParams,
    make_generator,
    process_logits,
    sample_token,
    sampling_probs,
)
from lucidlm.generate.text import IncrementalDecoder, StopChecker

__all__ = [
    "CHATML_TEMPLATE",
    "GenerationResult",
    "IncrementalDecoder",
    "SamplingParams",
    "StopChecker",
    "StreamEvent",
    "TokenLogprob",
    "encode_prompt",
    "generate",
    "generate_batch",
    "make_generator",
    "process_logits",
    "render_chat",
    "sample_token",
    "sampling_probs",
    "stream",
    "stream_batch",
]
