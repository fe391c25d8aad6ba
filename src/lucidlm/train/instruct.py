"""Instruction data: chat conversations -> token ids, with a loss on the assistant's tokens only.

One conversation per JSONL line (the format OpenAI's and TRL's finetuning tools read):

    {"messages": [{"role": "user", "content": "Reverse: a b c"}, {"role": "assistant", "content": "c b a"}]}

The conversation is rendered with the model's own chat template (``lucidlm.generate.chat``), so
finetuning sees the exact text the model was trained on and will be prompted with. Only the
assistant's replies are learned: a label is the next token for assistant tokens and -100 (ignored
by ``F.cross_entropy``) for everything else, so the model is not taught to predict the user's
words or the template's role headers.

Where does a reply start and end in the token ids? Rendering the prefixes tells us, without
parsing any template (the approach of HF's ``return_assistant_tokens_mask`` and TRL):

    render(messages[:i], add_generation_prompt=True)  -> "...<|im_start|>assistant\\n"   (reply starts here)
    render(messages[:i + 1])                          -> "...<|im_start|>assistant\\nREPLY<|im_end|>\\n"

The reply's tokens are those between the two prefixes' token counts, cut after the end-of-turn
token (the tokenizer's EOS, ``<|im_end|>`` for SmolLM2): the "\\n" the template adds after it is
layout, not something the model must say. Tokenizing a prefix alone could in principle merge
across the boundary differently than the whole text does; this is checked for every prefix, and
a mismatch is an error rather than a silently shifted mask.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

ROLES = ("system", "user", "assistant", "tool")
IGNORE = -100  # F.cross_entropy's ignore_index: no loss at this position


@dataclass(frozen=True)
class ChatExample:
    """One tokenized conversation: ``labels[i]`` is ``ids[i]`` where token i belongs to an
    assistant reply (its content and end-of-turn token), else -100."""

    ids: tuple[int, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        assert len(self.ids) == len(self.labels)

    @property
    def n_labelled(self) -> int:
        return sum(label != IGNORE for label in self.labels)


# ----------------------------------------------------------------------------------------------
# reading JSONL


def check_messages(messages, where: str = "conversation") -> list[dict]:
    """The messages, after checking roles and contents; a ValueError says what is wrong where."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list of {{'role': ..., 'content': ...}} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"{where}: message {i} is {str(m)[:80]!r}; each message needs 'role' and 'content'")
        if m["role"] not in ROLES:
            raise ValueError(f"{where}: message {i} has unknown role {m['role']!r}; use one of {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise ValueError(f"{where}: message {i} content must be a string, got {type(m['content']).__name__}")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{where}: no assistant message, so nothing to learn; every conversation needs at least "
                         "one {'role': 'assistant', ...} reply")
    return messages


def read_chat_jsonl(path: str | os.PathLike) -> list[list[dict]]:
    """Conversations from a JSONL file, one ``{"messages": [...]}`` per line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no instruction data at {path} (expected a JSONL file of {{\"messages\": [...]}})")
    conversations = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg}); each line must be one JSON object "
                                 "like {\"messages\": [...]}") from None
            if not isinstance(record, dict) or "messages" not in record:
                raise ValueError(f"{path}:{n}: no 'messages' key; each line must look like "
                                 "{\"messages\": [{\"role\": \"user\", \"content\": ...}, ...]}")
            conversations.append(check_messages(record["messages"], where=f"{path}:{n}"))
    if not conversations:
        raise ValueError(f"{path} holds no conversations")
    return conversations


def write_chat_jsonl(conversations: Sequence[list[dict]], path: str | os.PathLike) -> Path:
    from lucidlm.files.jsonfile import write_text_atomic

    lines = [json.dumps({"messages": list(c)}, ensure_ascii=False) for c in conversations]
    write_text_atomic(Path(path), "\n".join(lines) + "\n")
    return Path(path)


# ----------------------------------------------------------------------------------------------
# one conversation -> ids and labels


def _encode(tokenizer, text: str) -> list[int]:
    """A rendered chat as ids: special-token text becomes its id; no BOS added (a template that
    wants one writes it into the text itself)."""
    from lucidlm.generate.decode import encode_prompt

    return encode_prompt(tokenizer, text, add_special=False)


def tokenize_chat(messages: list[dict], tokenizer, *, template: str | None = None,
                  end_id: int | None = None) -> ChatExample:
    """Render ``messages`` with the chat template and mark the assistant tokens (see the module
    docstring). ``end_id``: the end-of-turn token that closes a reply (default: the tokenizer's
    EOS); tokens the template puts after it in the same turn get no loss."""
    from lucidlm.generate.chat import render_chat

    messages = check_messages(messages)

    def render(msgs: list[dict], gen: bool) -> str:
        return render_chat(msgs, template=template, tokenizer=tokenizer, add_generation_prompt=gen)

    full_text = render(messages, False)
    ids = _encode(tokenizer, full_text)
    end_id = getattr(tokenizer, "eos_id", None) if end_id is None else end_id
    labels = [IGNORE] * len(ids)

    def boundary(text: str, what: str) -> int:
        """How many of the full conversation's tokens ``text`` (a prefix of it) covers."""
        if not full_text.startswith(text):
            raise ValueError(f"the chat template renders {what} as text that is not a prefix of the whole "
                             "conversation, so the assistant tokens cannot be located; the template must render "
                             "a conversation's prefixes as prefixes of it")
        prefix_ids = _encode(tokenizer, text)
        if ids[: len(prefix_ids)] != prefix_ids:
            raise ValueError(f"the tokens of {what} are not a prefix of the conversation's tokens (a token merges "
                             "across the boundary); the assistant mask would be shifted")
        return len(prefix_ids)

    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = boundary(render(messages[:i], True), f"messages[:{i}] + generation prompt")
        end = boundary(render(messages[: i + 1], False), f"messages[:{i + 1}]")
        span = ids[start:end]
        if end_id is not None and end_id in span:
            end = start + len(span) - span[::-1].index(end_id)  # just after the last end-of-turn token
        labels[start:end] = ids[start:end]
    return ChatExample(tuple(ids), tuple(labels))


def tokenize_conversations(conversations: Sequence[list[dict]], tokenizer, *, block_size: int,
                           template: str | None = None) -> list[ChatExample]:
    """Tokenize and truncate each conversation to ``block_size + 1`` tokens (x and y are the same
    window shifted by one). Conversations whose replies all fall past the cut are dropped; if all
    are, that is an error."""
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2, got {block_size}")
    out = []
    for c in conversations:
        ex = tokenize_chat(c, tokenizer, template=template)
        ex = ChatExample(ex.ids[: block_size + 1], ex.labels[: block_size + 1])
        if any(label != IGNORE for label in ex.labels[1:]):  # labels[0] is never a target
            out.append(ex)
    if not out:
        raise ValueError(f"block_size={block_size} cuts off every assistant reply; raise block_size")
    return out


# ----------------------------------------------------------------------------------------------
# batches for the trainer


def collate(examples: Sequence[ChatExample], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y), int64 (B, T), T = the longest example - 1: x = ids[:-1], y = labels[1:] (the next
    token where it is an assistant token, else -100). Shorter rows are padded on the right: with
    causal attention a real token never sees the padding after it, and padded targets are -100."""
    T = max(len(ex.ids) for ex in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)  # (B, T)
    y = torch.full((len(examples), T), IGNORE, dtype=torch.long)  # (B, T)
    for b, ex in enumerate(examples):
        n = len(ex.ids) - 1
        x[b, :n] = torch.tensor(ex.ids[:-1])
        y[b, :n] = torch.tensor(ex.labels[1:])
    return x, y


class ChatBatches:
    """``get_batch(split, n, generator) -> (x, y)`` over tokenized train/val conversations, the
    batch source ``lucidlm.train.train(cfg, get_batch=...)`` takes. Rows are drawn uniformly with
    replacement from the generator (so a resumed run draws what it would have drawn)."""

    def __init__(self, train: Sequence[ChatExample], val: Sequence[ChatExample], pad_id: int = 0) -> None:
        if not train or not val:
            raise ValueError("need at least one train and one val conversation")
        self.splits = {"train": list(train), "val": list(val)}
        self.pad_id = pad_id

    def __call__(self, split: str, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.splits[split]
        rows = torch.randint(len(data), (n,), generator=generator).tolist()
        return collate([data[i] for i in rows], self.pad_id)


def chat_batches(path: str | os.PathLike, tokenizer, *, block_size: int, template: str | None = None,
                 val_path: str | os.PathLike | None = None, val_every: int = 20) -> ChatBatches:
    """Batches from a JSONL file. Without ``val_path``, every ``val_every``-th conversation (at
    least one) is held out for validation. A tokenizer without a chat template (GPT-2: a base
    model, never taught to chat) gets ChatML, as TRL's ``setup_chat_format`` gives one; its markers
    are then plain text, and a reply's labels run to the end of its turn."""
    conversations = read_chat_jsonl(path)
    if template is None and not getattr(tokenizer, "chat_template", None):
        from lucidlm.generate.chat import CHATML_TEMPLATE

        print("the tokenizer has no chat template: rendering the chats as ChatML (<|im_start|>role ... <|im_end|>)")
        template = CHATML_TEMPLATE
    if val_path is not None:
        train_c, val_c = conversations, read_chat_jsonl(val_path)
    else:
        if len(conversations) < 2:
            raise ValueError(f"{path} has one conversation; need two or more (one is held out for validation)")
        held = set(range(0, len(conversations), val_every))
        train_c = [c for i, c in enumerate(conversations) if i not in held]
        val_c = [c for i, c in enumerate(conversations) if i in held]
    pad = getattr(tokenizer, "pad_id", None)
    pad = pad if pad is not None else (getattr(tokenizer, "eos_id", None) or 0)
    return ChatBatches(tokenize_conversations(train_c, tokenizer, block_size=block_size, template=template),
                       tokenize_conversations(val_c, tokenizer, block_size=block_size, template=template), pad)


# ----------------------------------------------------------------------------------------------
# `lucidlm train` with instruction data and/or LoRA


def finetune(cfg, *, resume: bool = False, overwrite: bool = False, handle_signals: bool = False,
             get_batch: Callable | None = None):
    """Finetune ``cfg.init_from`` (a lucidlm checkpoint, HF directory, GGUF file or asset name) on
    ``cfg.data``: a ``.jsonl`` of chats when ``cfg.resolved_task`` is "chat", else a token dataset
    directory, with LoRA adapters when ``cfg.lora`` is set. Writes ``out_dir/adapter`` (the adapters alone) after a LoRA run. Returns
    the trainer's ``TrainResult``."""
    from lucidlm.loading.adapters import save_adapters
    from lucidlm.loading.load import load_model
    from lucidlm.nn.lora import LoRAConfig, apply_lora
    from lucidlm.train.loop import train

    if cfg.init_from == "scratch":
        raise ValueError("finetuning needs init_from = a model to start from (a checkpoint, Hugging Face "
                         "directory, .gguf file or an asset such as 'smollm2-135m-instruct')")
    lora_cfg = None
    if cfg.lora:
        try:
            lora_cfg = LoRAConfig(**cfg.lora)
        except TypeError as exc:
            raise ValueError(f"[lora]: {exc}; valid keys: rank, alpha, targets, dropout") from None
    model, tokenizer = load_model(cfg.init_from)
    if get_batch is None and cfg.resolved_task == "chat":
        if tokenizer is None:
            raise ValueError(f"{cfg.init_from} has no tokenizer; instruction data needs one to render chats")
        get_batch = chat_batches(cfg.data, tokenizer, block_size=cfg.block_size)
    if lora_cfg is not None:
        apply_lora(model, lora_cfg.rank, lora_cfg.alpha, lora_cfg.targets, lora_cfg.dropout)
    result = train(cfg, model=model, tokenizer=tokenizer, get_batch=get_batch, resume=resume,
                   overwrite=overwrite, handle_signals=handle_signals)
    if lora_cfg is not None:
        adapter = save_adapters(model, Path(cfg.out_dir) / "adapter", base_model=cfg.init_from)
        print(f"LoRA adapters: {adapter} (load with lucidlm.loading.adapters.load_adapters)")
    return result
