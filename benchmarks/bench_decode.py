"""Greedy decoding speed of SmolLM2-135M-Instruct (KV cache, batch 1): lucidlm against Hugging Face
transformers (fp32, one core) and against llama.cpp (the same Q4_1 GGUF file, one and two threads),
each measured in the same run.

    python benchmarks/bench_decode.py [--tokens 64] [--repeat 3] [--skip-fp32]

lucidlm runs three ways: the reference path (PyTorch ops, default weight layout), the same with
column-major weights (``use_column_major_weights``, what runs without a C compiler), and the C
one-token path (``use_fast_decode``, models/decode_fast.py). Also printed, the floors: the time of
one token's fp32 matrix-vector products alone (every weight matrix times one vector) with
PyTorch's F.linear in both layouts and with the C kernel, and the time to merely read that many
bytes at the speed the core sums a large array (``torch.sum``): no fp32 decoder can beat that.
Goal from the issue: lucidlm >= 2x transformers' tokens/s.

Then the quantised part: ``load_gguf(keep_quantized=True)`` keeps the file's Q4_1/Q8_0 blocks and
multiplies by them in C (nn/quantized.py, ``linear_q``), beside llama.cpp (llama-cpp-python built
from its sdist: ``make llama-cpp``; the column is skipped with a message where it is not installed)
on the same file, with the same number of threads. Each thread count and engine runs in a fresh
process pinned to that many cores (llama.cpp's OpenMP threads keep the affinity they start with), with
its own OpenMP setting (``_common.run_phases`` says why), one after the other.
Also printed: whether the quantised model's greedy tokens equal the float32 model's on every
prompt (and, where one differs, the float32 model's margin between its top two logits there), the
weight bytes each reads per token, and the floor those bytes set at the measured read bandwidth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import (  # noqa: E402
    llama_cpp_last_logits,
    machine_line,
    median_time,
    pin_to_one_core,
    print_table,
    run_phases,
    smollm2_kept_quantized,
    use_cores,
)

PROMPT = "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n"
QUESTIONS = ["Write a short poem about the sea.", "What is the capital of France?",
             "Explain photosynthesis to a ten-year-old.", "List three uses of a paperclip."]


def chat_prompt(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


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


@torch.inference_mode()
def greedy_with_logits(model, ids: list[int], n_new: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy tokens and the logits each was chosen from."""
    cache = model.new_cache(1, len(ids) + n_new)
    logits = model(torch.tensor([ids]), cache=cache, last_only=True)[0, -1]
    out, seen = [], []
    for _ in range(n_new):
        seen.append(logits)
        out.append(int(logits.argmax()))
        logits = model(torch.tensor([[out[-1]]]), cache=cache, last_only=True)[0, -1]
    return out, seen


def llama_cpp_greedy(llm, ids: list[int], n_new: int) -> list[int]:
    """llama.cpp's greedy tokens: evaluate the prompt, then one token at a time, argmax of its logits."""
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n_new):
        out.append(int(llama_cpp_last_logits(llm).argmax()))
        llm.eval([out[-1]])
    return out


def quantized_phase(threads: int, tokens: int, repeat: int, engine: str) -> dict:
    """One thread count and one engine ("lucidlm" kept-quantised or "llama.cpp"), in this fresh process."""
    use_cores(threads)
    from lucidlm.models.decode_fast import kernel_info
    from lucidlm.nn.quantized import weight_bytes

    path, tok, model = smollm2_kept_quantized()
    ids = tok.encode(PROMPT, allowed_special="all")
    result = {"threads": threads, "kernel": kernel_info(), "weight_bytes": weight_bytes(model), "ours": [], "peer": []}
    if engine == "llama.cpp":
        try:
            import llama_cpp
        except ImportError:
            result["peer_missing"] = ("llama-cpp-python is not installed: `make llama-cpp` builds it from its "
                                      "sdist (once, ~9 minutes on 2 cores)")
            return result
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=len(ids) + tokens + 8, n_threads=threads,
                              n_threads_batch=threads, verbose=False)
        result["peer_tokens"] = llama_cpp_greedy(llm, ids, tokens)
        result["peer"] = [median_time(lambda: llama_cpp_greedy(llm, ids, tokens), 1) for _ in range(repeat)]
        return result
    result["our_tokens"] = lucidlm_greedy(model, ids, tokens)
    result["ours"] = [median_time(lambda: lucidlm_greedy(model, ids, tokens), 1) for _ in range(repeat)]
    a = torch.ones(256 * 2**20 // 4)  # 256 MB: far beyond the caches
    a.sum()
    result["read_s_per_byte"] = median_time(a.sum, 5) / a.nbytes
    result["matvec_s"] = quantized_matvec_floor(model, repeat)
    return result


@torch.inference_mode()
def quantized_matvec_floor(model, repeat: int) -> float:
    """Seconds for one token's products from the blocks alone (every QuantizedLinear once, the C kernel)."""
    from lucidlm.nn.quantized import QuantizedLinear

    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    xs = {m.in_features: torch.randn(1, m.in_features) for m in layers}

    def run():
        for m in layers:
            m(xs[m.in_features])

    run()
    return median_time(run, repeat * 3)


def quantized_agreement(tokens: int) -> list[list]:
    """Per prompt: greedy tokens of the kept-quantised model equal to the float32 model's, and the
    float32 model's top-2 logit margin where the first one differs."""
    from lucidlm.assets import asset_path
    from lucidlm.loading.gguf import load_gguf
    from lucidlm.tokenizers import load_tokenizer

    path = asset_path("smollm2-135m-instruct")
    tok = load_tokenizer(path)
    floats = load_gguf(path).use_fast_decode()
    kept = load_gguf(path, keep_quantized=True).use_fast_decode()
    rows = []
    for question in QUESTIONS:
        ids = tok.encode(chat_prompt(question), allowed_special="all")
        ref, ref_logits = greedy_with_logits(floats, ids, tokens)
        ours, _ = greedy_with_logits(kept, ids, tokens)
        same = sum(a == b for a, b in zip(ref, ours))
        first = next((i for i, (a, b) in enumerate(zip(ref, ours)) if a != b), None)
        margin = "-"
        if first is not None:
            top2 = ref_logits[first].topk(2).values
            margin = f"token {first}: {float(top2[0] - top2[1]):.4f}"
        rows.append([question, f"{same}/{tokens}", margin])
    return rows


def print_quantized(results: list[dict], agreement: list[list], tokens: int, hf_tok_s: float | None) -> None:
    print(f"\nkept-quantised decoding ({results[0]['kernel']}), SmolLM2-135M-Instruct Q4_1 GGUF "
          f"(Q8_0 embedding/head), {tokens} new tokens after a short prompt, batch 1")
    rows = []
    for r in results:
        ours = tokens / statistics.median(r["ours"])
        floor = 1 / (r["weight_bytes"] * r["read_s_per_byte"])
        peer = tokens / statistics.median(r["peer"]) if r["peer"] else None
        rows.append([f"{r['threads']} thread(s)", ours, peer if peer else "-", f"{ours / peer:.2f}x" if peer else "-",
                     1 / r["matvec_s"], floor, f"{ours / floor:.0%}"])
        if hf_tok_s and r["threads"] == 1:
            print(f"  1 thread: {ours / hf_tok_s:.2f}x transformers' float32 decoding measured above ({hf_tok_s:.1f} tok/s)")
        if r.get("peer_tokens") is not None:
            same = sum(a == b for a, b in zip(r["peer_tokens"], r["our_tokens"]))
            print(f"  {r['threads']} thread(s): greedy tokens identical to llama.cpp's: {same}/{tokens}")
        if r.get("peer_missing"):
            print(f"  llama.cpp column skipped: {r['peer_missing']}")
    print_table(f"tokens/s; floor = reading the {results[0]['weight_bytes'] / 1e6:.0f} MB of weights once per token "
                "at torch.sum's bandwidth with as many threads",
                ["threads", "lucidlm tok/s", "llama.cpp tok/s", "lucidlm / llama.cpp", "products alone tok/s",
                 "read floor tok/s", "of read floor"], rows)
    print_table("greedy tokens of the kept-quantised model vs the float32 (dequantised) model, per prompt",
                ["prompt", "identical", "first difference: fp32 top-2 margin"], agreement)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-fp32", action="store_true", help="only the quantised part (against llama.cpp)")
    parser.add_argument("--phase", type=int, default=None, help=argparse.SUPPRESS)  # internal: one thread count
    parser.add_argument("--engine", default="lucidlm", help=argparse.SUPPRESS)  # internal: with --phase
    args = parser.parse_args()
    if args.phase is not None:
        print(json.dumps(quantized_phase(args.phase, args.tokens, args.repeat, args.engine)))
        return
    # first, while this process may still use every core it was given
    results = run_phases(__file__, (1, 2), "--tokens", str(args.tokens), "--repeat", str(args.repeat))
    hf_tok_s = None if args.skip_fp32 else fp32_part(args)
    pin_to_one_core()
    torch.set_num_threads(1)
    print_quantized(results, quantized_agreement(args.tokens), args.tokens, hf_tok_s)


def fp32_part(args) -> float:
    """The float32 tables; returns transformers' tok/s."""
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
    return 1 / per_token


if __name__ == "__main__":
    main()
