"""Where each stage of a forward pass is computed: the exact source lines of the model at hand.

``source_of(model, stage)`` asks Python (``inspect``) for the function that ran the stage in
*this* model (its norm class, its attention, its MLP or SwiGLU), so the link follows the code as it
changes; the line that records the stage into the trace is highlighted. ``read_source`` serves
those files and only those: Python files inside the lucidlm package.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from lucidlm.nn.attention import attention_reference, build_mask
from lucidlm.nn.norms import make_norm

PACKAGE = Path(__file__).resolve().parents[1]  # src/lucidlm
MAX_SOURCE_BYTES = 200_000


def _ours(cls) -> bool:
    return Path(inspect.getsourcefile(cls)).resolve().is_relative_to(PACKAGE)


def _norm(norm) -> list:
    """A norm's forward, or, for PyTorch's own LayerNorm (GPT-2, BERT), lucidlm's line that builds it."""
    return [type(norm).forward] if _ours(type(norm)) else [make_norm]


def _functions(model, stage: str) -> list:
    """The functions that computed ``stage`` (the first is the one that records it)."""
    layer = model.layers[0]
    attn = type(layer.attn)
    group, _, part = stage.partition(".")
    if group == "embed":
        return [type(model.embed).forward]
    if stage in ("attn.norm", "mlp.norm"):
        return [type(layer)._sub, *_norm(layer.norm_attn)]
    if stage in ("attn.q", "attn.k", "attn.v"):
        rope = [type(layer.attn.rope).forward] if layer.attn.rope is not None and stage != "attn.v" else []
        return [attn.forward, *rope]
    if stage in ("attn.scores", "attn.weights"):
        return [attn.forward, attention_reference]
    if stage == "attn.scores_masked":
        return [attn.forward, build_mask]
    if stage == "attn.heads_out":
        return [attn.forward, attention_reference]
    if part in ("out", "resid"):
        return [type(layer)._sub, attn.forward if group == "attn" else type(layer.mlp).forward]
    if group == "mlp":
        return [type(layer.mlp).forward]
    if stage == "final_norm" or stage == "logits":
        return [type(model).forward, *(_norm(model.norm) if model.norm is not None else [])]
    if stage == "hidden":
        return [type(model).forward]
    return []


def source_of(model, stage: str) -> list[dict]:
    """``[{"file", "start", "end", "highlight", "function"}]``: each function that computed
    ``stage`` (``file`` relative to the package, lines 1-based and inclusive); ``highlight`` is
    the line that records the stage, when the function records it."""
    out = []
    record = stage.rsplit(".", 1)[-1]
    for f in _functions(model, stage):
        lines, start = inspect.getsourcelines(f)
        path = Path(inspect.getsourcefile(f)).resolve()
        highlight = None
        for n, text in enumerate(lines):
            if "trace.record(" in text and (f'.{record}"' in text or f'"{record}"' in text
                                            or f'}}{record}"' in text):
                highlight = start + n
                break
        out.append({"file": path.relative_to(PACKAGE).as_posix(), "start": start, "end": start + len(lines) - 1,
                    "highlight": highlight, "function": f.__qualname__})
    return out


def read_source(file: str) -> dict:
    """The lines of one of lucidlm's own Python files (``nn/attention.py``); anything else is refused."""
    path = (PACKAGE / file).resolve()
    if path.suffix != ".py" or not path.is_relative_to(PACKAGE) or not path.is_file():
        raise FileNotFoundError(f"{file!r} is not a Python file of the lucidlm package; the source view shows "
                                "only lucidlm's own code")
    text = path.read_text(encoding="utf-8")[:MAX_SOURCE_BYTES]
    return {"file": path.relative_to(PACKAGE).as_posix(), "lines": text.splitlines()}
