"""The peer of ``train_shakespeare.py``: nanoGPT's CPU recipe run on Hugging Face's GPT-2.

nanoGPT is not on PyPI, so the peer measured in the same run is the same recipe on an
independent, widely used implementation of the same architecture: ``transformers``'
``GPT2LMHeadModel`` (learned positions, pre-LayerNorm, exact GELU, tied embeddings, residual
projections initialised with std 0.02/sqrt(2 n_layer), as nanoGPT does), trained by the loop
nanoGPT's ``train.py`` runs on a CPU: AdamW (betas 0.9/0.99, weight decay 0.1 on >= 2-D weights),
100 warmup steps then cosine decay to lr/10, gradient clipping at 1.0, fp32, no compile, random
windows from the token file, evaluation every 250 steps on 20 batches. The one difference from
nanoGPT's recipe: HF's GPT-2 has biases (nanoGPT runs with bias=False), about 3% more parameters.
The issue's own nanoGPT figures on this machine are printed beside it for reference.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch


def cosine_lr(step: int, lr: float, min_lr: float, warmup: int, decay_steps: int) -> float:
    """nanoGPT's schedule: linear warmup, cosine decay to min_lr, then flat."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step > decay_steps:
        return min_lr
    ratio = (step - warmup) / (decay_steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def train_peer(train: np.ndarray, val: np.ndarray, *, vocab_size: int, n_layer=4, n_head=4, n_embd=128,
               block_size=64, batch_size=12, max_iters=2000, lr=1e-3, min_lr=1e-4, warmup=100,
               eval_interval=250, eval_iters=20, seed=1337, log=print) -> dict:
    """Train the peer; returns {"ms_per_iter", "tok_per_s", "val_loss", "wall_s", "curve"}."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_embd=n_embd, n_layer=n_layer,
                     n_head=n_head, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)
    model = GPT2LMHeadModel(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99))

    def batch(data: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([torch.from_numpy(data[i : i + block_size].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + block_size].astype(np.int64)) for i in ix])
        return x, y

    def loss_of(x, y):
        logits = model(input_ids=x).logits
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            out = sum(float(loss_of(*batch(val))) for _ in range(eval_iters)) / eval_iters
        model.train()
        return out

    curve, step_times = [], []
    val_loss = float("nan")
    start = time.perf_counter()
    for it in range(max_iters + 1):
        if it % eval_interval == 0 or it == max_iters:
            val_loss = eval_loss()
            curve.append((it, val_loss))
            log(f"  peer step {it}: val loss {val_loss:.4f}")
        if it == max_iters:
            break
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = cosine_lr(it, lr, min_lr, warmup, max_iters)
        loss = loss_of(*batch(train))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    ms = 1000 * float(np.median(step_times))
    return {"ms_per_iter": ms, "tok_per_s": batch_size * block_size / (ms / 1000), "val_loss": val_loss,
            "wall_s": wall, "curve": curve}
