"""Which sampling settings to use when the user names none: the model's own, else safe ones.

``SamplingParams()`` (temperature 1, no filter) samples from the model's raw distribution. For a
small model that tail is long: over a 150-word answer, a token of probability 0.1% is drawn
often enough to derail the text ("L'Abruecé, la Ciampérière..."). Model authors therefore
publish settings, and tools read them from the files they ship, in this order:

1. a Hugging Face ``generation_config.json`` beside the weights (what ``transformers``'
   ``generate`` uses): ``do_sample`` true -> its ``temperature``/``top_k``/``top_p``/``min_p``/
   ``repetition_penalty``, with transformers' own defaults (1.0, 50, 1.0) for the ones it omits;
   ``do_sample`` false -> greedy;
2. GGUF metadata ``general.sampling.*`` (``temp``, ``top_k``, ``top_p``, ``min_p``,
   ``penalty_repeat``), which llama.cpp reads;
3. the model card of a model lucidlm ships (``MODEL_CARDS``), for files that carry neither;
4. otherwise llama.cpp's defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05): widely
   used, and they cut the tail that garbles text while keeping variety.

Options the user gives always win over these; ``resolve_sampling`` merges the two and says
where each value came from, so the CLI can print it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lucidlm.generate.sampling import SamplingParams

# llama.cpp's common_params_sampling defaults: the "well-known safe" fallback.
FALLBACK = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
FALLBACK_SOURCE = "llama.cpp's defaults: the model ships no recommendation"

# Recommendations from model cards, for the model assets lucidlm ships (their files carry none).
MODEL_CARDS: dict[str, tuple[dict, str]] = {
    # huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct: generate(..., temperature=0.2, top_p=0.9, do_sample=True)
    "smollm2-135m-instruct": ({"temperature": 0.2, "top_p": 0.9}, "SmolLM2-135M-Instruct's model card"),
}

# Hugging Face's GenerationConfig defaults, for the fields a generation_config.json omits.
_HF_DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0}
_GGUF_KEYS = {"temperature": "general.sampling.temp", "top_k": "general.sampling.top_k",
              "top_p": "general.sampling.top_p", "min_p": "general.sampling.min_p",
              "repetition_penalty": "general.sampling.penalty_repeat"}


@dataclass(frozen=True)
class SamplingDefaults:
    """A model's recommended sampling settings and where they come from (for the user to see)."""

    values: dict  # SamplingParams field -> value; fields not named keep SamplingParams' "off" value
    source: str

    def params(self) -> SamplingParams:
        return SamplingParams(**self.values)


def model_sampling_defaults(name_or_path: str | os.PathLike) -> SamplingDefaults:
    """The sampling settings recommended for a model (a ``load_model`` name or path), by the
    order in the module docstring. Never raises for a missing or unreadable file: it falls back."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    found = None
    if path.is_dir():
        found = _from_generation_config(path / "generation_config.json")
    elif path.is_file() and path.suffix == ".safetensors":
        found = _from_generation_config(path.parent / "generation_config.json")
    elif path.is_file():
        found = _from_gguf(path)
    if found is None and name in MODEL_CARDS:
        found = SamplingDefaults(*MODEL_CARDS[name])
    return found or SamplingDefaults(dict(FALLBACK), FALLBACK_SOURCE)


def resolve_sampling(defaults: SamplingDefaults, **given) -> tuple[SamplingParams, str]:
    """The model's defaults with the user's options (``None`` = not given) on top, and a one-line
    description: "temperature 0.2, top-p 0.9 (SmolLM2-135M-Instruct's model card)".

    >>> p, text = resolve_sampling(SamplingDefaults({"temperature": 0.2, "top_p": 0.9}, "a card"), temperature=0.0)
    >>> p.temperature, p.top_p, text
    (0.0, 0.9, 'greedy (temperature 0 from your options)')
    """
    known = {f.name for f in fields(SamplingParams)}
    unknown = set(given) - known
    if unknown:
        raise ValueError(f"unknown sampling option(s) {sorted(unknown)}; known: {sorted(known)}")
    chosen = {k: v for k, v in given.items() if v is not None}
    params = replace(defaults.params(), **chosen)
    return params, describe(params, defaults.source, overridden=set(chosen) - {"seed"})


def describe(params: SamplingParams, source: str, overridden: set[str] = frozenset()) -> str:
    """The settings that are on, in words, with where they came from."""
    if params.greedy:
        where = "from your options" if "temperature" in overridden else f"from {source}"
        return f"greedy (temperature 0 {where})"
    off = SamplingParams()
    parts = [f"{f.name.replace('_', '-')} {getattr(params, f.name):g}" for f in fields(SamplingParams)
             if f.name not in ("seed", "logit_bias")
             and (f.name == "temperature" or getattr(params, f.name) != getattr(off, f.name))]
    if params.logit_bias:
        parts.append(f"logit-bias on {len(params.logit_bias)} token(s)")
    if params.seed is not None:
        parts.append(f"seed {params.seed}")
    origin = source if not overridden else (f"{source}; yours: {', '.join(sorted(o.replace('_', '-') for o in overridden))}")
    return f"{', '.join(parts)} ({origin})"


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _from_generation_config(path: Path) -> SamplingDefaults | None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or "do_sample" not in config:
        return None  # no sampling recommendation in this file (it may only name special tokens)
    source = f"{path.name} beside the weights"
    if not config["do_sample"]:
        return SamplingDefaults({"temperature": 0.0}, source)
    values = {}
    for key, default in _HF_DEFAULTS.items():
        value = _number(default if config.get(key) is None else config[key])
        if value is not None:
            values[key] = int(value) if key == "top_k" else value
    return SamplingDefaults(_valid(values), source)


def _from_gguf(path: Path) -> SamplingDefaults | None:
    from lucidlm.files.gguf import open_gguf

    try:
        metadata = open_gguf(path).metadata
    except (OSError, ValueError):
        return None
    values = {}
    for key, gguf_key in _GGUF_KEYS.items():
        value = _number(metadata.get(gguf_key))
        if value is not None:
            values[key] = int(value) if key == "top_k" else value
    return SamplingDefaults(_valid(values), f"{path.name}'s general.sampling metadata") if values else None


def _valid(values: dict) -> dict:
    """Drop values SamplingParams would refuse (a file's 0 for "off" top-p, say) rather than fail."""
    kept = {}
    for key, value in values.items():
        try:
            SamplingParams(**{key: value})
        except ValueError:
            continue
        kept[key] = value
    return kept
