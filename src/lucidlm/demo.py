"""``lucidlm demo``: the main job on the bundled Tiny Shakespeare, end to end, in about 4 minutes.

1. Tokenizers: train a byte-level BPE on 90% of the text, measure how well it compresses the
   held-out 10% beside characters and OpenAI's cl100k_base / o200k_base, show how each cuts a
   passage.
2. Data: the text as a character-level token dataset (65 symbols, nanoGPT's shakespeare_char),
   train/val memmaps written by ``lucidlm.data.prepare_dataset``.
3. A small GPT (Llama-style: RoPE, RMSNorm, ReLU^2 MLP) sampled before training: noise.
4. Training with ``lucidlm.train`` for about ``--minutes`` (3 by default): the step count is set
   from a short timing run, so the cosine schedule ends when the time is up.
5. The same prompt sampled from the trained model, the loss plot, and the commands to go further
   with the model just trained (generate, inspect, resume).
Nothing is downloaded (cl100k/o200k are shown only when already cached).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

PASSAGE = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n"
    "It is the east, and Juliet is the sun. 🌅 1599年, «Roméo»"
)
PROMPT = "ROMEO:\n"

# The GPT the demo trains: nanoGPT's CPU size (4 layers, 4 heads, 128 wide) with the choices that
# reached nanoGPT's loss in a third of its time (benchmarks/train_shakespeare.py): rotary
# positions, RMSNorm, ReLU^2, a 3x higher learning rate.
DEMO_MODEL = {"n_layer": 4, "n_head": 4, "n_embd": 128, "max_seq_len": 256, "positions": "rope",
              "norm": "rmsnorm", "activation": "relu2", "bias": False, "dropout": 0.0}
DEMO_TRAIN = {"batch_size": 8, "block_size": 256, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 100,
              "beta2": 0.99, "weight_decay": 0.1, "grad_clip": 1.0, "eval_iters": 20, "log_interval": 50}


def tokenizer_story(out_dir: Path, vocab_size: int, color: bool) -> Path:
    """Part 1: train a BPE tokenizer and compare it; returns the saved tokenizer's path."""
    from lucidlm.assets import cached_path
    from lucidlm.tokenizers import CharTokenizer, load_tokenizer, train_bpe
    from lucidlm.tokenizers.corpus import tiny_shakespeare
    from lucidlm.tokenizers.show import render_tokens, token_stats

    text = tiny_shakespeare()
    split = int(len(text) * 0.9)
    train_text, held_out = text[:split], text[split:]
    print(f"1. Tokenizers. Tiny Shakespeare: {len(text.encode()):,} bytes; train on the first 90%, "
          "measure on the last 10%.")
    start = time.perf_counter()
    ours = train_bpe(train_text, vocab_size, pattern="cl100k", special_tokens={"<|endoftext|>": None},
                     name="shakespeare-bpe")
    path = ours.save(out_dir / "shakespeare-bpe.json")
    first = ", ".join(repr(ours.token_bytes(256 + i).decode("utf-8", "replace")) for i in range(6))
    print(f"   a byte-level BPE with {len(ours.merges)} merges learned in {time.perf_counter() - start:.2f} s "
          f"-> {path}\n   its first merges: {first}")
    tokenizers = {"characters": CharTokenizer.from_text(text), "shakespeare-bpe": ours}
    for name in ("cl100k_base", "o200k_base"):
        if cached_path(name) is not None:  # only when already cached: the demo downloads nothing
            tokenizers[name] = load_tokenizer(name)
    print(f"   {'tokenizer':<18}{'vocab':>9}{'tokens':>10}{'bytes/token':>13}")
    for name, tok in tokenizers.items():
        stats = token_stats(tok, held_out) if name != "characters" else None
        n = stats.n_tokens if stats else len(tok.encode(held_out))
        bpt = stats.bytes_per_token if stats else len(held_out.encode()) / n
        print(f"   {name:<18}{tok.vocab_size:>9,}{n:>10,}{bpt:>13.3f}")
    boundaries = "each color one token" if color else "| between tokens"
    print(f"   How they cut a passage ({boundaries}; · a space, ↵ a newline, ⟨f0 9f⟩ bytes of a cut character):")
    for name in ("shakespeare-bpe", "cl100k_base"):
        if name in tokenizers:
            print(f"   {name}: " + render_tokens(tokenizers[name], PASSAGE, color=color).replace("\n", "\n      "))
    return path


def pick_precision() -> str:
    """bf16 autocast when this CPU computes bf16 natively (its matmuls then run ~2x faster), else fp32."""
    import torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bf16" if native and torch.backends.mkldnn.is_available() else "fp32"


def seconds_per_step(model_cfg, train_cfg: dict, precision: str, steps: int = 8) -> float:
    """Median time of a few training steps of a throwaway copy of the model (sets the step count)."""
    import statistics

    import torch
    import torch.nn.functional as F

    from lucidlm.models.transformer import build_model

    model = build_model(model_cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, model_cfg.vocab_size, (train_cfg["batch_size"], train_cfg["block_size"]))
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        F.cross_entropy(logits.float().flatten(0, 1), x.flatten()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def sample(model, tokenizer, seed: int = 0, n: int = 240) -> str:
    from lucidlm.generate.decode import generate
    from lucidlm.generate.sampling import SamplingParams

    model.eval()
    out = generate(model, tokenizer, PROMPT, max_tokens=n, params=SamplingParams(temperature=0.8, seed=seed),
                   ignore_eos=True)
    return PROMPT + out.text


def indent(text: str) -> str:
    return "   | " + text.replace("\n", "\n   | ")


def run_demo(out_dir: str | Path = "runs/demo", minutes: float = 3.0, vocab_size: int = 1024,
             color: bool | None = None, tokenizers: bool = True) -> dict:
    import torch

    from lucidlm.data import tiny_shakespeare_path
    from lucidlm.data.prepare import prepare_dataset
    from lucidlm.models.transformer import build_model
    from lucidlm.tokenizers import load_tokenizer
    from lucidlm.train import TrainConfig
    from lucidlm.train.loop import train
    from lucidlm.train.metrics import plot_run

    if color is None:
        color = sys.stdout.isatty()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if tokenizers:
        tokenizer_story(out_dir, vocab_size, color)

    print("\n2. Data: Tiny Shakespeare as characters (65 symbols), 90% train / 10% val, as flat uint16 files")
    data_dir = out_dir / "data"
    meta = prepare_dataset([tiny_shakespeare_path()], data_dir, "char", val_fraction=0.1, overwrite=True,
                           progress=False)
    print(f"   {meta['splits']['train']['tokens']:,} train + {meta['splits']['val']['tokens']:,} val tokens "
          f"-> {data_dir}")

    precision = pick_precision()
    run_dir = out_dir / "gpt"
    probe = TrainConfig(out_dir=str(run_dir), data=str(data_dir), model=DEMO_MODEL, **DEMO_TRAIN)
    model_cfg = probe.model_config(meta["vocab_size"])
    torch.manual_seed(probe.seed)
    model = build_model(model_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n3. A GPT with {n_params / 1e6:.2f}M parameters ({model_cfg.n_layer} layers, {model_cfg.n_head} heads, "
          f"{model_cfg.n_embd} wide; RoPE, RMSNorm, ReLU^2), before training - a sample is noise:")
    char_tok = load_tokenizer(data_dir)  # the vocabulary prepare_dataset built
    print(indent(sample(model, char_tok, n=120)))

    step_s = seconds_per_step(model_cfg, DEMO_TRAIN, precision)
    steps = max(50, int(minutes * 60 * 0.92 / step_s))  # ~8% of the time goes to evaluations
    # keep_every: the model at steps 0, 1/6, 2/6 ... of the run (3.2 MB each), for the Explorer's
    # Training runs panel to trace a prompt through each and show the model learning
    cfg = probe.replace(max_steps=steps, eval_interval=max(50, steps // 10), precision=precision,
                        keep_every=max(1, -(-steps // 6)))  # ceil: 7 kept, the last at the end
    tokens = steps * cfg.batch_size * cfg.block_size
    print(f"\n4. Training for ~{minutes:g} min: {steps} steps x {cfg.batch_size} x {cfg.block_size} tokens "
          f"({tokens / 1e6:.1f}M tokens, {precision}, {torch.get_num_threads()} threads; one step took "
          f"{step_s * 1000:.0f} ms)")
    result = train(cfg, model=model, tokenizer=char_tok, overwrite=True)
    print(f"   final val loss {result.val_losses[max(result.val_losses)]:.3f} "
          f"(best {result.best_val_loss:.3f}; nanoGPT's CPU recipe reaches 1.89 in 2000 steps)")

    print("\n5. The same prompt after training:")
    print(indent(sample(model, char_tok)))
    plot = plot_run(run_dir)
    print(f"\nloss curve: {plot}\ncheckpoints: {run_dir / 'best'} (lowest val loss), {run_dir / 'last'}")
    print(f"all done in {(time.perf_counter() - started) / 60:.1f} min")

    activate = ""
    if shutil.which("lucidlm") is None:  # run as .venv/bin/lucidlm (make demo): say how to reach it
        activate = f"  source {Path(sys.prefix) / 'bin' / 'activate'}    # puts lucidlm on your PATH\n"
    best = run_dir / "best"
    # the Explorer finds runs/demo by itself (its default models and runs); elsewhere, name them
    explore = ("lucidlm explore" if out_dir.resolve() == Path("runs/demo").resolve()
               else f"lucidlm explore --model {best} --model smollm2-135m-instruct --runs {out_dir}")
    print(
        "\nNext, with the model you just trained:\n"
        f"{activate}"
        f"  lucidlm generate --model {best} --temperature 0.8 --max-tokens 240 \"JULIET:\"\n"
        f"  lucidlm generate --model {best} --show-probs 3 --max-tokens 20 \"ROMEO:\"   # each token's probability\n"
        f"  lucidlm inspect walkthrough --model {best} \"To be, or not\"   # one forward pass, step by step\n"
        f"  lucidlm inspect attention --model {best} --out {out_dir / 'attention'} \"To be, or not to be\"\n"
        f"  lucidlm train --config configs/shakespeare_modern.toml   # a run of your own (README: Training)\n"
        f"  {explore}   # the Explorer: every step above in your browser\n"
        "  make test    # the test suite; make bench  # speed against tiktoken, transformers, nanoGPT's recipe"
    )
    return {"steps": steps, "val_loss": result.val_losses[max(result.val_losses)], "plot": plot}
