"""Sentence embeddings and similarity search (all-MiniLM-L6-v2); see ``sentence.py``.

``lucidlm.embed(texts)`` and ``lucidlm.embed.embed(texts)`` both return (N, 384) unit vectors.
This file stays light (no torch import) so that the command line starts fast; the work happens
in ``sentence.py`` and ``search.py``, imported on first use.
"""

from __future__ import annotations

import sys
import types

DEFAULT_MODEL = "all-minilm-l6-v2"
_LAZY = {"SentenceEmbedder", "load_embedder", "mean_pool"}


def embed(texts, model=DEFAULT_MODEL, batch_size: int = 32, **kwargs):
    """Sentence embeddings of ``texts``: (N, C) float tensor, mean-pooled and L2-normalised."""
    from lucidlm.embed.sentence import embed as _embed

    return _embed(texts, model, batch_size, **kwargs)


def __getattr__(name: str):
    if name in _LAZY:
        from lucidlm.embed import sentence

        return getattr(sentence, name)
    raise AttributeError(f"module 'lucidlm.embed' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Lets ``lucidlm.embed(texts)`` work although ``lucidlm.embed`` is this package: importing a
    submodule binds the package's attribute to the module, which would hide a function of that name."""

    def __call__(self, *args, **kwargs):
        return embed(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["DEFAULT_MODEL", "SentenceEmbedder", "embed", "load_embedder", "mean_pool"]
