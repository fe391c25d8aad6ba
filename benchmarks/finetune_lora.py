"""Does a LoRA finetune teach SmolLM2-135M-Instruct a task it fails at? Held-out accuracy before/after.

    flock /tmp/lucidlm-bench.lock .venv/bin/python benchmarks/finetune_lora.py [--steps 60] [--n-test 150]

1. Generate the reverse-words task (``lucidlm.data.tasks``): train and held-out items never overlap.
2. Base model: greedy replies to the held-out prompts (rendered with the model's chat template),
   scored exactly (the reversed words and nothing else) and leniently (the answer somewhere in the reply).
3. LoRA (``lucidlm.nn.lora``) on every attention and MLP matrix, trained with the lucidlm trainer
   (``lucidlm.train.train`` with the instruction batches of ``lucidlm.train.instruct``: loss on the
   assistant's tokens only), fp32 on one CPU core.
4. Merge the adapters into the weights and score the same held-out prompts again.
Accuracies carry a 95% Wilson score interval (Wilson 1927), which stays inside [0, 1] near 0 and 1.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, pin_to_one_core, print_table  # noqa: E402

MODEL = "smollm2-135m-instruct"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def score(model, tokenizer, items, batch: int, max_tokens: int) -> tuple[int, int, list[str]]:
    """(exactly right, answer contained, replies) for greedy replies to the items' prompts."""
    from lucidlm.data.tasks import contains_answer, is_correct
    from lucidlm.generate.chat import render_chat
    from lucidlm.generate.decode import encode_prompt, generate_batch
    from lucidlm.generate.sampling import SamplingParams

    prompts = [encode_prompt(tokenizer, render_chat(it.messages(with_answer=False), tokenizer=tokenizer),
                             add_special=False) for it in items]
    replies: list[str] = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            results = generate_batch(model, tokenizer, prompts[i : i + batch], max_tokens=max_tokens,
                                     params=SamplingParams(temperature=0))
            replies += [r.text for r in results]
    exact = sum(is_correct(r, it.answer) for r, it in zip(replies, items))
    contained = sum(contains_answer(r, it.answer) for r, it in zip(replies, items))
    return exact, contained, replies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps")
    ap.add_argument("--batch-size", type=int, default=8, help="conversations per step")
    ap.add_argument("--n-train", type=int, default=2000, help="generated training conversations")
    ap.add_argument("--n-test", type=int, default=150, help="held-out items scored before and after")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    core = pin_to_one_core()
    torch.set_num_threads(1)
    from lucidlm.data.tasks import reverse_words
    from lucidlm.loading.load import load_model
    from lucidlm.nn.lora import apply_lora, merge_lora
    from lucidlm.train import TrainConfig, train
    from lucidlm.train.instruct import ChatBatches, tokenize_conversations

    print(f"{machine_line()}; pinned to core {core}, 1 torch thread")
    train_items, test_items = reverse_words(args.n_train, args.n_test, seed=args.seed)
    assert not {t.prompt for t in train_items} & {t.prompt for t in test_items}

    # -- base model ----------------------------------------------------------------------------
    base, tok = load_model(MODEL)
    base.use_fast_decode()  # faster one-token decoding; same numbers
    t0 = time.perf_counter()
    base_exact, base_contained, base_replies = score(base, tok, test_items, batch=16, max_tokens=32)
    t_eval_base = time.perf_counter() - t0
    del base
    print(f"base: {base_exact}/{len(test_items)} exact in {t_eval_base:.0f} s; e.g. {base_replies[0]!r} "
          f"(answer {test_items[0].answer!r})")

    # -- LoRA finetune with the trainer --------------------------------------------------------
    model, tok = load_model(MODEL)
    apply_lora(model, rank=args.rank, alpha=args.alpha, targets=("qkv", "proj", "gate_up"))
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    block = 128
    val_items = train_items[-64:]  # the trainer's val loss: training-distribution items not trained on
    batches = ChatBatches(
        tokenize_conversations([it.messages() for it in train_items[:-64]], tok, block_size=block),
        tokenize_conversations([it.messages() for it in val_items], tok, block_size=block), pad_id=tok.eos_id)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(out_dir=out, init_from=MODEL, batch_size=args.batch_size, block_size=block,
                          max_steps=args.steps, lr=args.lr, min_lr=args.lr / 10, warmup_steps=max(1, args.steps // 10),
                          weight_decay=0.0, eval_interval=args.steps, eval_iters=4, log_interval=10,
                          progress=False, save_best=False, device="cpu", precision="fp32", seed=args.seed)
        t0 = time.perf_counter()
        result = train(cfg, model=model, tokenizer=tok, get_batch=batches)
        t_train = time.perf_counter() - t0
    first = sum(list(result.losses.values())[:5]) / 5
    last = sum(list(result.losses.values())[-5:]) / 5

    model.eval()
    merge_lora(model).use_fast_decode()  # the merged model decodes at the base model's speed
    t0 = time.perf_counter()
    lora_exact, lora_contained, lora_replies = score(model, tok, test_items, batch=16, max_tokens=32)
    t_eval_lora = time.perf_counter() - t0
    print(f"LoRA: e.g. {lora_replies[0]!r} (answer {test_items[0].answer!r})")

    n = len(test_items)
    rows = []
    for name, exact, contained in (("base", base_exact, base_contained), ("LoRA", lora_exact, lora_contained)):
        lo, hi = wilson(exact, n)
        rows.append([name, f"{exact}/{n}", f"{exact / n:.1%}", f"[{lo:.1%}, {hi:.1%}]", f"{contained / n:.1%}"])
    print_table(f"reverse-words, {n} held-out items, greedy, exact match after the chat template",
                ["model", "exact", "accuracy", "95% Wilson", "answer contained"], rows)
    print(f"\nimprovement: {(lora_exact - base_exact) / n:+.1%} exact match ({base_exact} -> {lora_exact} of {n})")
    print(f"LoRA: rank {args.rank}, alpha {args.alpha:g}, targets qkv/proj/gate_up, {n_trainable:,} trainable of "
          f"{n_total:,} parameters ({n_trainable / n_total:.2%})")
    print(f"training: {result.step} steps x {args.batch_size} conversations, lr {args.lr:g} (cosine), "
          f"loss {first:.3f} -> {last:.3f} (mean of first/last 5 steps), val loss {result.best_val_loss:.4f}, "
          f"{t_train:.0f} s; eval {t_eval_base:.0f} s (base) / {t_eval_lora:.0f} s (LoRA, merged)")


if __name__ == "__main__":
    main()
