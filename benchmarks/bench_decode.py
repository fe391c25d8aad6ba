"""Greedy decoding speed of SmolLM2-135M-Instruct (fp32, KV cache, batch 1, one core):
lucidlm against Hugging Face transformers loading the same GGUF, measured in the same run.

    python benchmarks/bench_decode.py [--tokens 64] [--repeat 3]

lucidlm runs three ways: the reference path (PyTorch ops, default weight layout), the same with
column-major weights (``use_column_major_weights``, what runs without a C compiler), and the C
one-token path (``use_fast_decode``, models/decode_fast.py). Also printed, the floors: the time of
one token's fp32 matrix-vector products alone (every weight matrix times one vector) with
PyTorch's F.linear in both layouts and with the C kernel, and the time to merely read that many
bytes at the speed the core sums a large array (``torch.sum``): no fp32 decoder can beat that.
Goal from the issue: lucidlm >= 2x transformers' tokens/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, median_time, pin_to_one_core, print_table  # noqa: E402

PROMPT = "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n"


@torch.inference_mode()
def lucidlm_greedy(model, ids: list[int], n_new: int) -> list[int]:
    cache = model.new_cache(1, len(ids) + n_new)
    logits = model(torch.tensor([ids]), cache=cache, last_only=True)
    out = []
    for _ in range(n_new):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        logits = model(torch.tensor([[nxt]]), cache=cache, last_only=True)
    return out


@torch.inference_mode()
def hf_greedy(model, ids: list[int], n_new: int) -> list[int]:
    out = model.generate(torch.tensor([ids]), max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                         use_cache=True, pad_token_id=0)
    return out[0, len(ids):].tolist()


def weight_matrices(model) -> list[torch.Tensor]:
    """Every Linear weight once (the tied head is the embedding: read once per token)."""
    seen, mats = set(), []
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and m.weight.data_ptr() not in seen:
            seen.add(m.weight.data_ptr())
            mats.append(m.weight.detach().contiguous())
    return mats


@torch.inference_mode()
def matvec_floor(mats: list[torch.Tensor], repeat: int, how: str) -> float:
    """Seconds for one token's worth of fp32 matrix-vector products: ``how`` is "row-major" or
    "column-major" (F.linear with W stored (out, in) or (in, out)) or "C kernel"."""
    from lucidlm.models.decode_fast import K

    if how == "column-major":
        mats = [w.t().contiguous().t() for w in mats]
    x = {w.shape[1]: torch.randn(1, w.shape[1]) for w in mats}
    out = {w.shape[0]: torch.empty(1, w.shape[0]) for w in mats}

    def run():
        for w in mats:
            if how == "C kernel":
                K.linear(out[w.shape[0]].data_ptr(), x[w.shape[1]].data_ptr(), w.data_ptr(), 0, 1, *w.shape, 0)
            else:
                torch.nn.functional.linear(x[w.shape[1]], w)

    run()
    return median_time(run, repeat * 3)


@torch.inference_mode()
def read_floor(n_bytes: int, repeat: int) -> float:
    """Seconds to read n_bytes once at the core's streaming speed (a sum over a larger-than-cache array)."""
    a = torch.ones(n_bytes // 4)
    a.sum()
    return median_time(a.sum, repeat * 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pin_to_one_core()
    torch.set_num_threads(1)

    from lucidlm.assets import asset_path
    from lucidlm.loading.load import load_model

    print(f"bench_decode: {machine_line()}; torch {torch.__version__}; one core, fp32, batch 1")
    model, tok = load_model("smollm2-135m-instruct")
    model.eval()
    from lucidlm.models.decode_fast import kernel_info

    print(f"fast decode path: {kernel_info()}")
    ids = tok.encode(PROMPT, allowed_special="all")
    reference = lucidlm_greedy(model, ids, args.tokens)
    model.use_fast_decode()
    fast = lucidlm_greedy(model, ids, args.tokens)

    import transformers

    gguf = asset_path("smollm2-135m-instruct")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                           torch_dtype=torch.float32).eval()
    theirs = hf_greedy(hf, ids, args.tokens)
    same = sum(a == b for a, b in zip(fast, theirs))
    same_ref = sum(a == b for a, b in zip(fast, reference))

    # The two decoders the goal compares take turns, so that a change in the machine's load
    # (it is shared) falls on both alike; the median of each is reported.
    times = {"ours": [], "hf": []}
    for _ in range(args.repeat):
        times["ours"].append(median_time(lambda: lucidlm_greedy(model, ids, args.tokens), 1))
        times["hf"].append(median_time(lambda: hf_greedy(hf, ids, args.tokens), 1))
    t_ours, t_hf = statistics.median(times["ours"]), statistics.median(times["hf"])
    hf = None  # freed before the other runs and the floors, which copy the weights
    model.use_fast_decode(False)
    t_plain = median_time(lambda: lucidlm_greedy(model, ids, args.tokens), args.repeat)
    model.use_column_major_weights()
    t_colmajor = median_time(lambda: lucidlm_greedy(model, ids, args.tokens), args.repeat)
    mats = weight_matrices(model)
    n_bytes = sum(w.numel() * 4 for w in mats)
    floors = {how: matvec_floor(mats, args.repeat, how) for how in ("row-major", "column-major", "C kernel")}
    t_read = read_floor(n_bytes, args.repeat)
    per_token = t_hf / args.tokens

    def row(name, seconds_per_token):
        return [name, 1 / seconds_per_token, 1000 * seconds_per_token, per_token / seconds_per_token]

    rows = [
        row("transformers generate (greedy, KV cache)", per_token),
        row("lucidlm, reference path (PyTorch ops)", t_plain / args.tokens),
        row("lucidlm, PyTorch ops, column-major weights", t_colmajor / args.tokens),
        row("lucidlm, use_fast_decode (C one-token path)", t_ours / args.tokens),
        row("floor: mat-vec products, F.linear row-major", floors["row-major"]),
        row("floor: mat-vec products, F.linear column-major", floors["column-major"]),
        row("floor: mat-vec products, C kernel", floors["C kernel"]),
        row(f"floor: reading {n_bytes / 1e6:.0f} MB at torch.sum's speed", t_read),
    ]
    print_table(f"{args.tokens} new tokens after a {len(ids)}-token prompt (the prefill is included); greedy tokens "
                f"of the fast path identical to transformers: {same}/{args.tokens}, to lucidlm's reference path: "
                f"{same_ref}/{args.tokens}", ["decoder", "tok/s", "ms/token", "x transformers"], rows)
    paired = sorted(h / o for h, o in zip(times["hf"], times["ours"]))
    print(f"use_fast_decode vs transformers, turn by turn: {', '.join(f'{r:.2f}x' for r in paired)}")
    print(f"weights streamed at {n_bytes / floors['C kernel'] / 1e9:.1f} GB/s by the C kernel, "
          f"{n_bytes / t_read / 1e9:.1f} GB/s by torch.sum")
    # The trace: off by default. Each recording site is one `if trace is not None` check, so a
    # forward without a trace should cost what it costs; with one, attention takes the reference
    # path (it must build the weights) and every intermediate is copied out.
    from lucidlm.inspection import Trace

    long_ids = torch.tensor([(ids * 8)[:128]])
    with torch.inference_mode():
        t_off = median_time(lambda: model(long_ids), args.repeat)
        t_on = median_time(lambda: model(long_ids, trace=Trace()), args.repeat)
    print_table("one forward pass over a 128-token prompt", ["trace", "ms", "x trace off"],
                [["off (trace=None, the default)", 1000 * t_off, 1.0], ["on (Trace(), everything recorded)", 1000 * t_on, t_on / t_off]])
    print(f"\nlucidlm (use_fast_decode) runs at {floors['C kernel'] / (t_ours / args.tokens):.0%} of the speed of "
          f"its mat-vec floor and {t_read / (t_ours / args.tokens):.0%} of the read floor: the rest is attention, "
          "norms, the per-call overhead and the prefill.")


if __name__ == "__main__":
    main()
