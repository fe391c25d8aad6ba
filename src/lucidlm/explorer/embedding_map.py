"""The Embeddings panel: sentences -> their cosine similarities and a 2-D map (PCA).

Sentence embeddings are unit vectors, so the (N, N) cosine matrix is E E^T. The map projects them
on their two directions of largest variance (PCA: the top right-singular vectors of the centred
E), and says how much of the variance those two directions keep, so nobody reads a squashed
picture as the whole truth.
"""

from __future__ import annotations

import torch

from lucidlm.embeddings.search import rank

MAX_SENTENCES = 64
MAX_SENTENCE_CHARS = 1000


def check_sentences(sentences) -> list[str]:
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise ValueError("sentences must be a list of strings, one sentence each")
    sentences = [s.strip() for s in sentences if s.strip()]
    if not sentences:
        raise ValueError("no sentences: write one sentence per line")
    if len(sentences) > MAX_SENTENCES:
        raise ValueError(f"{len(sentences)} sentences; the map takes at most {MAX_SENTENCES}")
    long = [i for i, s in enumerate(sentences) if len(s) > MAX_SENTENCE_CHARS]
    if long:
        raise ValueError(f"sentence {long[0] + 1} has {len(sentences[long[0]])} characters; at most "
                         f"{MAX_SENTENCE_CHARS} each")
    return sentences


def pca_2d(e: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """(N, C) -> ((N, 2) coordinates, the fraction of the variance each of the 2 axes keeps).
    Fewer than 3 points: the missing axes are 0."""
    centred = e.double() - e.double().mean(0, keepdim=True)  # (N, C)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # s (min(N, C),), vh (min, C)
    k = min(2, vh.shape[0])
    coords = torch.zeros(e.shape[0], 2, dtype=torch.float64)
    coords[:, :k] = centred @ vh[:k].T  # (N, k)
    var = s**2
    total = float(var.sum())
    explained = [(float(var[i]) / total if total > 0 and i < len(var) else 0.0) for i in range(2)]
    return coords.float(), explained


def sentence_map(embedder, sentences: list[str], corpus=None, top: int = 3) -> dict:
    """Cosine matrix, PCA map and, when a corpus (``embeddings.search.Corpus``) is given, each
    sentence's ``top`` nearest corpus lines."""
    sentences = check_sentences(sentences)
    e = embedder.encode(sentences)  # (N, C), unit rows
    cosine = (e @ e.T).clamp(-1, 1)  # (N, N)
    coords, explained = pca_2d(e)
    out = {"sentences": sentences, "model": embedder.name, "dim": int(e.shape[1]),
           "cosine": [[round(v, 4) for v in r] for r in cosine.tolist()],
           "xy": [[round(v, 5) for v in r] for r in coords.tolist()], "explained": explained, "neighbours": None}
    if corpus is not None:
        out["corpus"] = str(corpus.path.name)
        out["neighbours"] = [[{"text": corpus.texts[i], "line": corpus.lines[i], "score": round(score, 4)}
                              for i, score in rank(q, corpus.embeddings, top)] for q in e]
    return out
