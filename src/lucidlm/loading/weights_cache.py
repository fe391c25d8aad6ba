"""The float32 weights of a GGUF file, kept as safetensors: the fast path of ``read_gguf``.

Dequantising SmolLM2-135M (Q4_1 -> float32) takes ~0.5 s of a quiet core at every load (10 s on
a busy one) and gives the same 135M numbers every time. So the first load keeps them, with the
ModelConfig, in one file of the derived cache (``lucidlm/derived_cache.py`` says where and when
it is still valid):

    weights.safetensors
        metadata  "format": "lucidlm-gguf-weights", "key": which GGUF (JSON, ``source_key``),
                  "config": the ModelConfig (JSON)
        tensors   the state dict ``state_from_gguf`` returned: float32, lucidlm names, q/k
                  un-permuted, q/k/v and gate/up fused

Later loads *map* the file rather than read it (``safetensors.safe_open``): each tensor is a view
of the file's pages in the OS cache, so opening costs ~10 ms and no copy; a page is read when
the first forward pass touches it. The mapping is private (copy-on-write): changing a weight in
place, as training does, changes this process's copy, never the file. The price is disk space:
float32 takes 4 bytes a weight where Q4_1 takes 5/8 of a byte (540 MB beside a 98 MB GGUF).

tests/test_derived_cache.py: the cached tensors equal a fresh dequantisation bit for bit; a
truncated, foreign or stale file is never used.
"""

from __future__ import annotations

import json
import logging
import os

import torch

from lucidlm.files import derived_cache
from lucidlm.loading.checkpoint import read_safetensors, write_safetensors
from lucidlm.models.config import ModelConfig

FORMAT_NAME = "lucidlm-gguf-weights"
WEIGHTS_FILE = "weights.safetensors"

log = logging.getLogger(__name__)


def load_cached_weights(gguf_path: str | os.PathLike) -> tuple[ModelConfig, dict[str, torch.Tensor]] | None:
    """(config, state) from the derived cache of ``gguf_path``, or None when there is no usable
    file (none yet, unreadable, or made from another version of the GGUF)."""
    path = derived_cache.entry_dir(gguf_path) / WEIGHTS_FILE
    if not path.is_file():
        return None
    try:
        tensors, metadata = read_safetensors(path)  # raises ValueError when truncated or not safetensors
        if metadata.get("format") != FORMAT_NAME or json.loads(metadata["key"]) != derived_cache.source_key(gguf_path):
            return None  # another version of the GGUF, or of lucidlm: derived again
        cfg = ModelConfig.from_dict(json.loads(metadata["config"]))
    except (OSError, ValueError, KeyError, TypeError):  # json.JSONDecodeError is a ValueError
        return None
    if any(t.dtype != torch.float32 for t in tensors.values()):
        return None
    log.info("lucidlm: float32 weights of %s mapped from %s", gguf_path, path)
    return cfg, tensors


def save_cached_weights(gguf_path: str | os.PathLike, cfg: ModelConfig, state: dict[str, torch.Tensor]) -> bool:
    """Keep ``state`` (float32) and ``cfg`` for the next load of ``gguf_path``; False if the
    cache cannot be written (then every load dequantises, as without a cache)."""
    from safetensors import SafetensorError

    metadata = {"format": FORMAT_NAME, "key": json.dumps(derived_cache.source_key(gguf_path)),
                "config": json.dumps(cfg.to_dict())}

    def write(tmp) -> None:
        try:
            write_safetensors(state, tmp, metadata)
        except SafetensorError as exc:  # safetensors reports a full disk this way
            raise OSError(str(exc)) from exc

    written = derived_cache.write_derived(gguf_path, WEIGHTS_FILE, write)
    if written:
        log.info("lucidlm: float32 weights of %s kept in %s", gguf_path, derived_cache.entry_dir(gguf_path))
    return written
