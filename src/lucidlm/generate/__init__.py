"""Generation: logits -> sampler -> ids -> text, one token at a time.

- ``sampling``: ``SamplingParams`` and one short function per sampler (temperature, top-k,
  top-p, min-p, penalties); ``sample_token`` chains them.
- ``decode``: ``generate`` / ``stream`` / ``generate_batch`` with a KV cache, stop strings and
  ids, per-token log-probabilities.
- ``stream``: text deltas that never split a character; stop strings that never leak.
- ``chat``: ``render_chat(messages)``, the model's Jinja chat template rendered as HF does.
"""

from __future__ import annotations

import importlib

# Imported on first use, so that building the command line parser (which imports
# ``lucidlm.generate.cli``) does not import torch.
_LAZY = {
    "CHATML_TEMPLATE": "chat", "render_chat": "chat",
    "GenerationResult": "decode", "StreamEvent": "decode", "TokenLogprob": "decode", "encode_prompt": "decode",
    "generate": "decode", "generate_batch": "decode", "stream": "decode", "stream_batch": "decode",
    "SamplingParams": "sampling", "make_generator": "sampling", "process_logits": "sampling",
    "sample_token": "sampling", "sampling_probs": "sampling",
    "IncrementalDecoder": "stream", "StopChecker": "stream",
}


# ``stream`` names both a submodule (text deltas) and decode's streaming function; the function
# wins, as it did when this package imported everything eagerly. Load the (light, torch-free)
# submodule now and drop the attribute its import sets, so the lookup below finds the function.
importlib.import_module("lucidlm.generate.stream")
del stream  # noqa: F821 (set by the import above)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"lucidlm.generate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lucidlm.generate' has no attribute {name!r}")


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
