"""lucidlm: understand large language models by running one.

The package follows the path data takes through a language model:
text -> ``lucidlm.tokenizers`` -> ids -> model -> logits -> sampler -> ids -> text.
Its layers, lowest first, are drawn in ``docs/architecture.md``. This file is the front door,
above every layer: two entry points that import their layer only when called, so that
``import lucidlm`` stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_model(name_or_path, **options):
    """``(model, tokenizer)`` for a pretrained model, a preset, a checkpoint or Hugging Face
    directory, or a GGUF file: ``lucidlm.loading.load_model``."""
    from lucidlm.loading.load import load_model as _load_model

    return _load_model(name_or_path, **options)


def embed(texts, model: str = "all-minilm-l6-v2", batch_size: int = 32, **options):
    """Sentence embeddings of ``texts``, (N, C) unit vectors: ``lucidlm.embeddings.embed``."""
    from lucidlm.embeddings.sentence import embed as _embed

    return _embed(texts, model, batch_size, **options)
