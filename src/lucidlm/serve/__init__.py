"""Serving: an OpenAI-compatible HTTP API over a lucidlm model.

- ``engine``: continuous batching; one thread decodes every active request in one forward pass
  per token, and new requests join between steps.
- ``app``: ``create_app(model, tokenizer, model_name=...)``, the FastAPI routes (completions,
  chat, embeddings, models, health) with OpenAI's request and error shapes.
- ``schemas``: the request bodies (pydantic), strictly typed.
- ``cli``: ``lucidlm serve --model M``.

Nothing is imported until used, so that building the ``lucidlm`` command line (which imports
``lucidlm.serve.cli``) pulls in neither torch nor FastAPI.
"""

import importlib

_EXPORTS = {"create_app": "app", "Engine": "engine", "GenerationRequest": "engine", "TokenEvent": "engine",
            "DoneEvent": "engine", "ErrorEvent": "engine"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"lucidlm.serve.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lucidlm.serve' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
