"""Regenerate tests/data/smollm2_reference.{safetensors,json}: next-token logits of
SmolLM2-135M-Instruct (GGUF Q4_1) computed by Hugging Face transformers, which dequantises the
same file with the ``gguf`` package. tests/test_smollm2_gguf.py compares lucidlm against them.

    .venv/bin/python tests/data/smollm2_make_reference.py

The prompt ids come from lucidlm's tokenizer (read from the same GGUF); transformers' own GGUF
tokenizer is run too and whether it agrees is recorded in the JSON (the model comparison feeds
both models the same ids either way).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import jinja2
import torch

HERE = Path(__file__).parent
CHAT = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
PROMPTS = [
    ("plain", "The Eiffel Tower is in"),
    ("story", "Once upon a time, there was a little"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("numbers", "1, 1, 2, 3, 5, 8, 13, 21,"),
    ("chat", None),  # CHAT rendered with the GGUF's chat template
]


def render_chat(template: str, messages: list[dict]) -> str:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders templates
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


def main() -> None:
    import gguf
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lucidlm.assets import asset_path
    from lucidlm.tokenizers import load_tokenizer

    path = asset_path("smollm2-135m-instruct")
    tok = load_tokenizer(path)
    hf_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()

    tensors, prompts = {}, []
    for name, text in PROMPTS:
        if text is None:
            text = render_chat(tok.chat_template, CHAT)
        ids = tok.encode(text, allowed_special="all")
        hf_ids = hf_tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].float()  # (V,)
        tensors[f"{name}.ids"] = torch.tensor(ids, dtype=torch.int64)
        tensors[f"{name}.logits"] = logits.contiguous()
        top5 = logits.topk(5).indices.tolist()
        prompts.append({"name": name, "text": text, "n_tokens": len(ids), "hf_tokenizer_agrees": hf_ids == ids,
                        "top5": top5, "top5_text": [tok.decode([i]) for i in top5]})
        print(name, len(ids), [tok.decode([i]) for i in top5], "hf tokenizer agrees:", hf_ids == ids)

    save_file(tensors, str(HERE / "smollm2_reference.safetensors"),
              metadata={"source": "transformers AutoModelForCausalLM(gguf_file=...) float32"})
    meta = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf (asset smollm2-135m-instruct)",
        "what": "last-position float32 logits of each prompt, computed by transformers from the GGUF",
        "chat_messages": CHAT,
        "prompts": prompts,
        "versions": {"transformers": transformers.__version__, "gguf": _version("gguf", gguf),
                     "torch": torch.__version__, "python": platform.python_version()},
    }
    (HERE / "smollm2_reference.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                                                  encoding="utf-8")


def _version(dist: str, module) -> str:
    from importlib.metadata import version

    return getattr(module, "__version__", None) or version(dist)


if __name__ == "__main__":
    main()
