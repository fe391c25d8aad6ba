"""lucidlm checkpoints: a directory anyone can open without lucidlm, and nothing loaded with pickle.

    my-model/
      config.json         the ModelConfig as JSON (``ModelConfig.load`` reads it)
      model.safetensors   the weights; its metadata says "lucidlm-checkpoint", version 1
      tokenizer.json      the tokenizer in Hugging Face's format (tokenizers.hf_dir)
      tokenizer_config.json   its class, special tokens and chat template, for transformers
      tokenizer.lucidlm.json  lucidlm's own file, for character and SMILES tokenizers

Saving is atomic: everything is written into a temporary sibling directory which is then renamed
into place, so a crash mid-save leaves the previous checkpoint intact, never half of a new one.
Loading checks every tensor name and shape against the config before copying anything, and
names the offending tensor when they disagree.

The helpers here (``read_safetensors``, ``load_state_checked``, ``model_state``) are shared by
the Hugging Face and GGUF loaders.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from lucidlm.loading.quantize import apply_quantized

FORMAT_NAME = "lucidlm-checkpoint"
FORMAT_VERSION = 2  # 2: quantised layers (config extra "quantized", uint8 ".blocks"); plain checkpoints stay 1
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"


# ----------------------------------------------------------------------------------------------
# safetensors, with errors a person can act on


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file. safetensors holds raw tensor bytes and a JSON
    header, never code, which is why checkpoints use it instead of pickle (``torch.save``)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"{path} is not a readable safetensors file (corrupt or truncated? {path.stat().st_size} bytes): {exc}"
        ) from None
    return tensors, metadata


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                      metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    # safetensors refuses views and shared storage: give it one contiguous copy per name.
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~_umask())  # safetensors writes 0600 (via a temporary file): use the usual mode
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------
# state dicts: tied weights and strict, explained loading


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """{alias: canonical name} for parameters that are the same tensor under two names.

    A tied output head (``lm_head.weight`` is ``embed.tokens.weight``) shows up twice in
    ``state_dict()``; a file stores it once, under the name registered first.
    """
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    # buffers too: a quantised tied head holds the embedding's blocks (nn/quantized.py)
    for name, p in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        if id(p) in first:
            aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
    return aliases


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without tied aliases (what a checkpoint file stores)."""
    aliases = tied_aliases(model)
    return {k: v for k, v in model.state_dict().items() if k not in aliases}


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """Copy ``state`` into ``model`` after checking every name and shape; a mismatch raises a
    ValueError that names the tensors. Tied aliases may be absent; when present they must equal
    their canonical tensor. Tensors are cast to the model's dtype. A model built with
    placeholders (``build_model(cfg, init=False)``) gets ``state``'s tensors themselves
    (``_assign_state``), so the caller must not modify them afterwards."""
    expected = model.state_dict()
    aliases = tied_aliases(model)
    state = dict(state)
    for alias, canonical in aliases.items():
        if alias in state:
            if canonical not in state:
                state[canonical] = state[alias]
            elif state[alias].shape != state[canonical].shape or not torch.equal(state[alias], state[canonical]):
                raise ValueError(
                    f"{source}: {alias!r} differs from {canonical!r}, but the config ties them "
                    "(tie_embeddings=True); load with tie_embeddings=False to keep both"
                )
            del state[alias]
    wanted = [k for k in expected if k not in aliases]
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing tensors {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_some(unexpected)}")
    for k in wanted:
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape):
            problems.append(f"tensor {k!r} has shape {tuple(state[k].shape)}, the config needs {tuple(expected[k].shape)}")
    if problems:
        raise ValueError(f"{source} does not match the model config: " + "; ".join(problems))
    if any(t.is_meta for t in expected.values()):
        return _assign_state(model, state)
    with torch.no_grad():
        for k in wanted:
            expected[k].copy_(state[k])  # state_dict() tensors share storage with the parameters
    return model


def _assign_state(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Make ``state``'s tensors the parameters and buffers of a model built with placeholders
    (``build_model(cfg, init=False)``): no copy unless a dtype cast or a non-contiguous view
    needs one, so the model now owns those tensors. Names checked by ``load_state_checked``.

    A tied weight is one Parameter reachable under two names (``lm_head.weight`` and
    ``embed.tokens.weight``): it is replaced once and the new Parameter set under both names,
    so the tie survives (``load_state_dict(assign=True)`` would make two separate Parameters).
    """
    replaced: dict[int, nn.Parameter] = {}  # id(placeholder) -> its loaded Parameter
    for name, old in list(model.named_parameters(remove_duplicate=False)):
        if id(old) not in replaced:  # the first name of a tied pair is the one the state holds
            value = state[name].detach().to(old.dtype).contiguous()
            replaced[id(old)] = nn.Parameter(value, requires_grad=old.requires_grad)
        module_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(module_name), leaf, replaced[id(old)])
    aliases = tied_aliases(model)
    loaded: dict[str, torch.Tensor] = {}
    for name, buf in list(model.named_buffers(remove_duplicate=False)):
        source = aliases.get(name, name)  # a shared buffer: loaded once, set under both names
        if source in state:  # persistent buffers; the others are computed, and real already
            if source not in loaded:
                loaded[source] = state[source].detach().to(buf.dtype).contiguous()
            module_name, _, leaf = name.rpartition(".")
            model.get_submodule(module_name).register_buffer(leaf, loaded[source])
    left = [k for k, t in model.state_dict().items() if t.is_meta]
    if left:  # cannot happen after the checks above; never hand out a model with placeholders
        raise ValueError(f"tensors still unloaded after loading: {_some(left)}")
    return model


def _some(names: list[str], n: int = 8) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return f"[{shown}{', ...' if len(names) > n else ''}] ({len(names)})"


# ----------------------------------------------------------------------------------------------
# atomic directory writes


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` by rename.

    A rename within one file system is atomic, so readers see the old directory or the new one.
    Replacing an existing directory takes two renames (old aside, new in), then the old copy is
    deleted. Only an empty directory or one with a ``config.json`` (an earlier save) is replaced:
    never a directory of unrelated files.
    """
    path = Path(path).absolute()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path} exists and is not a directory")
        if not overwrite:
            raise ValueError(f"{path} exists; pass overwrite=True to replace it")
        if any(path.iterdir()) and not (path / CONFIG_FILE).is_file():
            raise ValueError(f"{path} is a non-empty directory without {CONFIG_FILE}; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()  # not mkdtemp: its 0700 mode would stick to the checkpoint after the rename
    try:
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except OSError:
            os.replace(old / path.name, path)  # put the previous checkpoint back
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# tokenizers in a model directory


def save_tokenizer(tokenizer, folder: Path, *, model_max_length: int | None = None) -> Path:
    """The tokenizer as a Hugging Face tokenizer directory (tokenizer.json, tokenizer_config.json
    with the chat template and special tokens; ``tokenizers.hf_dir``), plus lucidlm's own file
    for the kinds HF's format cannot hold exactly (characters, SMILES). Returns the file lucidlm
    reads the tokenizer back from."""
    from lucidlm.tokenizers.filenames import HF_TOKENIZER_FILE, LUCIDLM_TOKENIZER_FILE
    from lucidlm.tokenizers.hf_dir import save_hf_tokenizer

    save_hf_tokenizer(tokenizer, folder, model_max_length=model_max_length)
    own = folder / LUCIDLM_TOKENIZER_FILE
    return own if own.is_file() else folder / HF_TOKENIZER_FILE


def load_tokenizer_from_dir(folder: Path):
    """The tokenizer saved beside the weights, or None when there is none."""
    from lucidlm.tokenizers.filenames import LUCIDLM_TOKENIZER_FILE
    from lucidlm.tokenizers.formats import load_tokenizer_file

    for name in (LUCIDLM_TOKENIZER_FILE, TOKENIZER_FILE, "vocab.txt"):
        if (folder / name).is_file():
            return load_tokenizer_file(folder / name)
    return None


# ----------------------------------------------------------------------------------------------
# the checkpoint itself


def save_checkpoint(model: nn.Module, path: str | os.PathLike, tokenizer=None, *, overwrite: bool = True,
                    extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``model`` (and ``tokenizer``) as a lucidlm checkpoint directory, atomically.

    ``extra(folder)`` may write more files (a training-state file, say) into the directory
    before it is renamed into place, so they are part of the same atomic save.
    """
    cfg = _config_of(model)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        cfg.save(tmp / CONFIG_FILE)
        version = 2 if cfg.extra.get("quantized") else 1  # older readers refuse what they cannot load
        write_safetensors(model_state(_unwrap(model)), tmp / WEIGHTS_FILE,
                          {"format": "pt", "lucidlm.format": FORMAT_NAME, "lucidlm.version": str(version)})
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp, model_max_length=cfg.max_seq_len)
        if extra is not None:
            extra(tmp)
    return Path(path)


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """A directory whose config.json is a ModelConfig (an HF config.json has "model_type")."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        return False
    try:
        data = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" not in data and "arch" in data


def has_lora_adapters(path: str | os.PathLike) -> bool:
    """Whether a checkpoint directory holds LoRA adapters beside its frozen weights (a LoRA
    fine-tune's ``out_dir/last``). Reads the safetensors header only, no tensor."""
    from safetensors import SafetensorError, safe_open

    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        return False
    try:
        with safe_open(str(weights), framework="pt") as f:
            return any(name.endswith((".lora_A", ".lora_B")) for name in f.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return False


def load_checkpoint(path: str | os.PathLike, *, tokenizer: bool = True,
                    lora: str = "merge") -> tuple[nn.Module, object]:
    """(model in eval mode, tokenizer or None) from a directory written by ``save_checkpoint``.

    ``lora`` matters only for a checkpoint written during a LoRA fine-tune: "merge" (the
    fine-tuned model: adapters merged into the weights) or "off" (the base model it started
    from: the frozen weights, adapters dropped), so the two can be compared.
    """
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model

    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a lucidlm checkpoint: no {CONFIG_FILE}")
    cfg = ModelConfig.load(path / CONFIG_FILE)
    tensors, metadata = read_safetensors(path / WEIGHTS_FILE)
    version = metadata.get("lucidlm.version")
    if version is not None and (not version.isdigit() or int(version) > FORMAT_VERSION):
        raise ValueError(f"{path} was written by a newer lucidlm (checkpoint format {version}; "
                         f"this version reads up to {FORMAT_VERSION}); upgrade lucidlm")
    if lora not in ("merge", "off"):
        raise ValueError(f"lora={lora!r}: choose 'merge' (the fine-tuned model) or 'off' (the base model)")
    if any(name.endswith((".lora_A", ".lora_B")) for name in tensors):
        model = _with_lora(build_model(cfg), tensors, path, merge=lora == "merge")
    elif lora == "off":
        raise ValueError(f"{path} holds no LoRA adapters to turn off: it is a plain checkpoint")
    else:
        model = build_model(cfg, init=False)  # placeholders: every weight is loaded next
        if cfg.extra.get("quantized"):  # written from a quantised model: its layers hold blocks
            apply_quantized(model, cfg.extra["quantized"])
        load_state_checked(model, tensors, source=str(path / WEIGHTS_FILE))
    model.eval()
    return model, load_tokenizer_from_dir(path) if tokenizer else None


def _with_lora(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path, merge: bool) -> nn.Module:
    """A checkpoint written during a LoRA fine-tune (``out_dir/last``) holds the adapters beside
    the frozen weights: rebuild the adapters from its train_config.json, load, and merge them
    in (or drop them: ``merge=False`` gives the base model back), so the result is a plain model
    that runs at the base model's speed."""
    from lucidlm.files.jsonfile import read_json
    from lucidlm.nn.lora import LoRAConfig, apply_lora, remove_lora

    config_file = path / "train_config.json"
    lora = read_json(config_file, "train config").get("lora") if config_file.is_file() else None
    if not lora:
        raise ValueError(f"{path} holds LoRA adapter tensors but no train_config.json with a [lora] table to "
                         "rebuild them from; load the base model and lucidlm.loading.adapters.load_adapters instead")
    lcfg = LoRAConfig(**lora)
    apply_lora(model, rank=lcfg.rank, alpha=lcfg.alpha, targets=lcfg.targets)
    load_state_checked(model, tensors, source=str(path / WEIGHTS_FILE))
    return remove_lora(model, merge=merge)


def _unwrap(model: nn.Module) -> nn.Module:
    """The model under a ``torch.compile`` wrapper (whose names carry an ``_orig_mod.`` prefix)."""
    return getattr(model, "_orig_mod", model)


def _config_of(model: nn.Module):
    cfg = getattr(_unwrap(model), "cfg", None)
    if cfg is None:
        raise ValueError(f"{type(model).__name__} has no .cfg (ModelConfig); only lucidlm models can be saved")
    return cfg
