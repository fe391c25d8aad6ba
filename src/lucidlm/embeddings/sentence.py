"""Sentence embeddings: a text -> one unit vector, so that cosine similarity measures closeness of meaning.

    e = normalize( sum_t m_t h_t / sum_t m_t )       h: the encoder's last hidden states (B, T, C),
                                                    m: the attention mask (1 = token, 0 = padding)

This is sentence-transformers' recipe for all-MiniLM-L6-v2 (Reimers & Gurevych 2019): mean pooling
over the real tokens, then L2 normalisation, so a dot product of two embeddings is their cosine.

    >>> from lucidlm.embeddings import embed
    >>> e = embed(["a cat sat on the mat", "the kitten sits on a rug"])   # (2, 384)
    >>> float(e[0] @ e[1])                                              # cosine similarity

Speed: texts are tokenized once, sorted by length and batched, so a batch holds texts of similar
length and little padding (sentence-transformers' trick); a batch without padding skips the mask.

Length: a text longer than ``max_length`` word pieces (default 256 for all-MiniLM-L6-v2, the
``max_seq_length`` sentence-transformers uses; at most the model's 512 positions) keeps [CLS], its
first ``max_length - 2`` word pieces and [SEP], as sentence-transformers truncates. A warning says
how many texts were cut; ``truncate=False`` raises instead. (Its tokenizer.json pins 128, the
length the model was fine-tuned at; we follow sentence-transformers so the vectors match.)

(``lucidlm.embed``, the package, is callable: ``lucidlm.embed(texts)`` calls ``embed`` here.)
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-minilm-l6-v2"
# sentence-transformers' max_seq_length per model (its sentence_bert_config.json)
_DEFAULT_MAX_LENGTH = {"all-minilm-l6-v2": 256}


class SentenceEmbedder:
    """An encoder + its tokenizer + mean pooling. ``load_embedder`` builds (and caches) one."""

    def __init__(self, model: torch.nn.Module, tokenizer, *, max_length: int | None = None,
                 name: str = "") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        n_positions = model.cfg.max_seq_len
        self.max_length = n_positions if max_length is None else max_length
        if not 2 < self.max_length <= n_positions:
            raise ValueError(f"max_length={self.max_length} must be in 3..{n_positions} "
                             "(the model's positions)")

    @property
    def dim(self) -> int:
        return self.model.cfg.n_embd

    def tokenize(self, texts: Sequence[str], max_length: int, truncate: bool) -> list[list[int]]:
        """Ids with [CLS]/[SEP] of each text, cut to ``max_length`` (or an error if ``truncate=False``)."""
        rows, cut = [], 0
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is a {type(text).__name__}, not a str")
            ids = self.tokenizer.encode(text)
            if len(ids) > max_length:
                if not truncate:
                    raise ValueError(
                        f"text {i} is {len(ids)} tokens long, more than max_length={max_length}; shorten it, "
                        "raise max_length (<= the model's positions) or pass truncate=True")
                # the tokenizer cuts the text's pieces and keeps [CLS] ... [SEP] (words are cached: cheap)
                ids = self.tokenizer.encode(text, max_length=max_length)
                cut += 1
            rows.append(ids)
        if cut:
            log.warning("%d of %d texts were longer than %d tokens and were truncated",
                        cut, len(texts), max_length)
        return rows

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, batch_size: int = 32, max_length: int | None = None,
               truncate: bool = True, normalize: bool = True) -> torch.Tensor:
        """Texts -> embeddings (N, C), in the order given."""
        if isinstance(texts, str):
            texts = [texts]
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        max_length = self.max_length if max_length is None else max_length
        if not 2 < max_length <= self.model.cfg.max_seq_len:
            raise ValueError(f"max_length={max_length} must be in 3..{self.model.cfg.max_seq_len}")
        rows = self.tokenize(texts, max_length, truncate)
        device = next(self.model.parameters()).device
        out = torch.empty(len(rows), self.dim, device=device)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # longest first
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            T = len(rows[idx[0]])  # the longest of the batch (sorted)
            ids = torch.tensor([rows[i] + [pad] * (T - len(rows[i])) for i in idx], device=device)  # (B, T)
            mask = torch.tensor([[1] * len(rows[i]) + [0] * (T - len(rows[i])) for i in idx], device=device)
            padded = len(rows[idx[-1]]) < T
            h = self.model(ids, attention_mask=mask if padded else None)  # (B, T, C)
            out[torch.tensor(idx, device=device)] = mean_pool(h, mask)
        return F.normalize(out, p=2, dim=1) if normalize else out

    def __repr__(self) -> str:
        return f"SentenceEmbedder({self.name!r}, dim={self.dim}, max_length={self.max_length})"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) hidden states, (B, T) mask -> (B, C): the mean over the positions where mask is 1."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, C)


@functools.lru_cache(maxsize=4)
def _load_cached(model: str, device: str | None) -> SentenceEmbedder:
    from lucidlm.loading.bert import load_bert
    from lucidlm.tokenizers import load_tokenizer

    if model == DEFAULT_MODEL:
        from lucidlm.assets import asset_path

        weights = asset_path(model, "model")
        config = asset_path(model, "config.json")
        return SentenceEmbedder(load_bert(weights, config=config, device=device), load_tokenizer(model),
                                max_length=_DEFAULT_MAX_LENGTH[model], name=model)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ValueError(f"unknown embedding model {model!r}: give {DEFAULT_MODEL!r} or a directory holding "
                         "config.json, model.safetensors and tokenizer.json (a Hugging Face BERT)")
    max_length = None
    st_config = path / "sentence_bert_config.json"  # a sentence-transformers directory says its length
    if st_config.is_file():
        from lucidlm.files.jsonfile import read_json

        max_length = read_json(st_config, "sentence_bert_config.json").get("max_seq_length")
    tokenizer = load_tokenizer(path / "tokenizer.json")
    return SentenceEmbedder(load_bert(path, device=device), tokenizer, max_length=max_length, name=str(path))


def load_embedder(model: str | os.PathLike = DEFAULT_MODEL, *, device: str | torch.device | None = None
                  ) -> SentenceEmbedder:
    """The embedder for ``model`` (``"all-minilm-l6-v2"`` or a Hugging Face BERT directory), loaded
    once per process and device, then reused."""
    key = str(model) if str(model) == DEFAULT_MODEL else str(Path(model).expanduser().resolve())
    return _load_cached(key, None if device is None else str(torch.device(device)))


def embed(
    texts: str | Sequence[str],
    model: str | os.PathLike | SentenceEmbedder = DEFAULT_MODEL,
    batch_size: int = 32,
    *,
    max_length: int | None = None,
    truncate: bool = True,
    normalize: bool = True,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Sentence embeddings (N, C) of ``texts`` (a single str counts as a list of one), mean-pooled
    over the attention mask and L2-normalised; row i belongs to texts[i].

    ``max_length``: word pieces kept per text, [CLS] and [SEP] included (default: the model's,
    256 for all-MiniLM-L6-v2); longer texts are truncated (a warning), or raise if ``truncate=False``.
    """
    embedder = model if isinstance(model, SentenceEmbedder) else load_embedder(model, device=device)
    return embedder.encode(texts, batch_size=batch_size, max_length=max_length, truncate=truncate,
                           normalize=normalize)


__all__ = ["DEFAULT_MODEL", "SentenceEmbedder", "embed", "load_embedder", "mean_pool"]
