"""Sentence embeddings and similarity search (all-MiniLM-L6-v2).

- ``sentence.py``: ``embed(texts)`` -> (N, 384) unit vectors, mean-pooled over the tokens of a
  BERT encoder; ``load_embedder`` / ``SentenceEmbedder`` keep the model between calls.
- ``search.py``: rank a corpus by cosine similarity to a query.
``lucidlm.embed(texts)`` is the same function, at the package's front door.
"""

from __future__ import annotations

from lucidlm.embeddings.sentence import DEFAULT_MODEL, SentenceEmbedder, embed, load_embedder, mean_pool

__all__ = ["DEFAULT_MODEL", "SentenceEmbedder", "embed", "load_embedder", "mean_pool"]
