"""Serving: an OpenAI-compatible HTTP API over a lucidlm model.

- ``engine``: continuous batching; one thread decodes every active request in one forward pass
  per token, and new requests join between steps.
- ``app``: ``create_app(model, tokenizer, model_name=...)``, the FastAPI routes (completions,
  chat, embeddings, models, health) with OpenAI's request and error shapes.
- ``schemas``: the request bodies (pydantic), strictly typed.
The command is ``lucidlm serve --model M`` (``lucidlm/cli/serve.py``).
"""

from lucidlm.serve.app import create_app
from lucidlm.serve.engine import DoneEvent, Engine, ErrorEvent, GenerationRequest, TokenEvent

__all__ = ["DoneEvent", "Engine", "ErrorEvent", "GenerationRequest", "TokenEvent", "create_app"]
