"""Similarity search: rank texts by the cosine similarity of their sentence embeddings to a query.

Embeddings are unit vectors (``lucidlm.embed``), so cosine(q, d) = q . d and ranking a corpus is
one matrix-vector product: scores = E q, with E the (N, C) corpus embeddings.

A corpus file is one text per line (blank lines skipped, line numbers kept). Embedding it is the
slow part, so its embeddings are cached as safetensors under ``<home>/embeddings/<model>/``, named
by the sha256 of the file's bytes and the max length (home: ``$LUCIDLM_HOME``, else
``~/.cache/lucidlm``): a changed file gets a new entry; an unreadable entry is recomputed.

CLI (``register_cli``):
    lucidlm embed search --corpus FILE --query TEXT [--top 5]
    lucidlm embed encode TEXT [TEXT ...]
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lucidlm.embeddings.sentence import DEFAULT_MODEL, SentenceEmbedder, embed, load_embedder

log = logging.getLogger(__name__)
_CACHE_FORMAT = "lucidlm-embeddings-1"


@dataclass(frozen=True)
class SearchHit:
    rank: int  # 1 = the best match
    score: float  # cosine similarity, in [-1, 1]
    index: int  # position in the corpus list
    text: str
    line: int | None = None  # 1-based line number when the corpus came from a file


@dataclass(frozen=True)
class Corpus:
    """The non-blank lines of a file, their line numbers and their embeddings (N, C)."""

    path: Path
    texts: list[str]
    lines: list[int]
    embeddings: torch.Tensor
    cached: bool  # the embeddings came from the cache


def read_corpus(path: str | os.PathLike) -> tuple[list[str], list[int], bytes]:
    """(texts, 1-based line numbers, raw bytes) of a UTF-8 text file; blank lines are skipped."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"corpus {path} is not a file (give a text file with one text per line)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark is not part of the first line
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(f"corpus {path} is not UTF-8: byte 0x{raw[exc.start]:02x} at line {line} "
                         f"(offset {exc.start}); convert it, e.g. `iconv -f latin1 -t utf-8`") from None
    texts, lines = [], []
    # split on "\n" only: splitlines() would also cut at \x0c, \x1c or \u2028 inside a line
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            texts.append(line)
            lines.append(n)
    if not texts:
        raise ValueError(f"corpus {path} is empty: it has no non-blank lines to search")
    return texts, lines, raw


def cache_root() -> Path:
    from lucidlm.assets import cache_dir

    return cache_dir().parent / "embeddings"  # cache_dir() is <home>/assets


def _cache_file(embedder: SentenceEmbedder, digest: str, max_length: int) -> Path:
    tag = re.sub(r"[^a-z0-9._-]", "_", embedder.name.lower())
    if tag != embedder.name:  # a directory path: a short stable name
        tag = f"{Path(embedder.name).name[:40]}-{hashlib.sha256(embedder.name.encode()).hexdigest()[:12]}"
        tag = re.sub(r"[^A-Za-z0-9._-]", "_", tag)
    return cache_root() / tag / f"{digest}-L{max_length}.safetensors"


def _read_cache(file: Path, n: int, dim: int, meta: dict[str, str]) -> torch.Tensor | None:
    from safetensors import safe_open

    if not file.is_file():
        return None
    try:
        with safe_open(file, "pt") as f:
            stored = f.metadata() or {}
            e = f.get_tensor("embeddings")
    except Exception as exc:  # a truncated or foreign file: recompute it
        log.warning("ignoring unreadable embedding cache %s: %s", file, exc)
        return None
    if any(stored.get(k) != v for k, v in meta.items()) or tuple(e.shape) != (n, dim):
        log.warning("ignoring embedding cache %s: it was made for another corpus or model", file)
        return None
    return e


def _write_cache(file: Path, e: torch.Tensor, meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = file.with_name(f".{file.name}.tmp{os.getpid()}")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": e.contiguous().cpu()}, str(tmp), metadata=meta)
        os.replace(tmp, file)  # a reader never sees half a file
    except OSError as exc:  # a read-only cache is not a reason to fail the search
        log.warning("could not cache embeddings at %s: %s", file, exc)
    finally:
        tmp.unlink(missing_ok=True)


def embed_corpus(path: str | os.PathLike, *, model: str | os.PathLike | SentenceEmbedder = DEFAULT_MODEL,
                 batch_size: int = 32, max_length: int | None = None, cache: bool = True) -> Corpus:
    """Read a corpus file and embed its lines, through the cache when ``cache``."""
    texts, lines, raw = read_corpus(path)
    embedder = model if isinstance(model, SentenceEmbedder) else load_embedder(model)
    max_length = embedder.max_length if max_length is None else max_length
    digest = hashlib.sha256(raw).hexdigest()
    meta = {"format": _CACHE_FORMAT, "model": embedder.name, "max_length": str(max_length),
            "sha256": digest}
    file = _cache_file(embedder, digest, max_length)
    if cache and (e := _read_cache(file, len(texts), embedder.dim, meta)) is not None:
        return Corpus(Path(path), texts, lines, e, cached=True)
    e = embedder.encode(texts, batch_size=batch_size, max_length=max_length)
    if cache:
        _write_cache(file, e, meta)
    return Corpus(Path(path), texts, lines, e, cached=False)


def rank(query_embedding: torch.Tensor, corpus_embeddings: torch.Tensor, top: int) -> list[tuple[int, float]]:
    """(index, cosine) of the ``top`` rows most similar to the query, best first; ties keep corpus order.

    query (C,), corpus (N, C), both unit vectors: cosine = corpus @ query."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    scores = corpus_embeddings @ query_embedding.to(corpus_embeddings.dtype)  # (N,)
    order = torch.sort(scores, descending=True, stable=True).indices[:top]
    return [(int(i), float(scores[i])) for i in order]


def search(query: str, corpus: Sequence[str], *, top: int = 5,
           model: str | os.PathLike | SentenceEmbedder = DEFAULT_MODEL,
           corpus_embeddings: torch.Tensor | None = None, batch_size: int = 32,
           max_length: int | None = None) -> list[SearchHit]:
    """The ``top`` texts of ``corpus`` closest in meaning to ``query``, best first.

    Pass ``corpus_embeddings`` (N, C) from an earlier ``embed(corpus)`` to skip embedding it again."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query is empty; give a text to search for")
    if isinstance(corpus, str):
        raise TypeError("corpus must be a list of texts, not one str")
    if len(corpus) == 0:
        raise ValueError("the corpus is empty: nothing to search")
    embedder = model if isinstance(model, SentenceEmbedder) else load_embedder(model)
    if corpus_embeddings is None:
        corpus_embeddings = embed(corpus, embedder, batch_size, max_length=max_length)
    elif corpus_embeddings.shape != (len(corpus), embedder.dim):
        raise ValueError(f"corpus_embeddings has shape {tuple(corpus_embeddings.shape)}, "
                         f"expected ({len(corpus)}, {embedder.dim})")
    q = embed([query], embedder, max_length=max_length)[0]  # (C,)
    best = rank(q, corpus_embeddings, top)
    return [SearchHit(r, score, i, corpus[i]) for r, (i, score) in enumerate(best, start=1)]


def search_file(path: str | os.PathLike, query: str, *, top: int = 5,
                model: str | os.PathLike | SentenceEmbedder = DEFAULT_MODEL, batch_size: int = 32,
                max_length: int | None = None, cache: bool = True) -> list[SearchHit]:
    """``search`` over the non-blank lines of a UTF-8 file, its embeddings cached (see module doc)."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query is empty; give a text to search for")
    c = embed_corpus(path, model=model, batch_size=batch_size, max_length=max_length, cache=cache)
    hits = search(query, c.texts, top=top, model=model, corpus_embeddings=c.embeddings, max_length=max_length)
    return [SearchHit(h.rank, h.score, h.index, h.text, c.lines[h.index]) for h in hits]
