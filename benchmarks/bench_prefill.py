"""Time to first token for a long prompt: SmolLM2-135M-Instruct's Q4_1 GGUF, lucidlm (weights kept
in their blocks, ``load_gguf(keep_quantized=True)``, as ``generate`` and ``serve`` load it) against
llama.cpp (llama-cpp-python, built from its sdist: ``make llama-cpp``) on the same file, with the
same number of threads.

    flock /tmp/lucidlm-bench.lock .venv/bin/python benchmarks/bench_prefill.py [--tokens 512] [--repeat 5]

A prefill is one forward pass over the whole prompt: the time from having the prompt's ids to
having the first new token's logits. Each thread count runs in a fresh process pinned to that many
cores, one engine at a time (each with its own OpenMP setting: ``_common.run_phases``). The floor beside it: the prompt's matrix products (2 x weights x tokens FLOPs) at the float32
matrix-multiply speed PyTorch measures on the same cores (a 2048 x 2048 GEMM); lucidlm's prefill
multiplies in float32 (each weight matrix expanded from its blocks once per prompt), so that is
what it cannot beat. Goal from the issue: time to first token for a 512-token prompt <= llama.cpp's
on one core.
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
    print_table,
    run_phases,
    smollm2_kept_quantized,
    use_cores,
)

TEXT_QUESTION = "Summarise the following passage in two sentences.\n\n"


def prompt_ids(tok, n: int) -> list[int]:
    """A chat prompt of exactly n tokens: a question over a passage of Tiny Shakespeare."""
    from lucidlm.tokenizers.corpus import tiny_shakespeare

    head = tok.encode(f"<|im_start|>user\n{TEXT_QUESTION}", allowed_special="all")
    tail = tok.encode("<|im_end|>\n<|im_start|>assistant\n", allowed_special="all")
    body = tok.encode(tiny_shakespeare()[:20_000])[: n - len(head) - len(tail)]
    return head + body + tail


def phase(threads: int, tokens: int, repeat: int, engine: str) -> dict:
    use_cores(threads)
    path, tok, model = smollm2_kept_quantized()
    ids = prompt_ids(tok, tokens)
    x = torch.tensor([ids])

    @torch.inference_mode()
    def ours():
        cache = model.new_cache(1, len(ids) + 1)
        return int(model(x, cache=cache, last_only=True)[0, -1].argmax())

    result = {"threads": threads, "tokens": len(ids), "ours": [], "peer": []}
    if engine == "llama.cpp":
        try:
            import llama_cpp
        except ImportError:
            result["peer_missing"] = "llama-cpp-python is not installed: `make llama-cpp` builds it (once, ~9 minutes)"
            return result
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=len(ids) + 16, n_batch=len(ids), n_ubatch=len(ids),
                              n_threads=threads, n_threads_batch=threads, verbose=False)

        def peer():
            llm.reset()
            llm.eval(ids)
            return int(llama_cpp_last_logits(llm).argmax())

        result["peer_first"] = peer()
        result["peer"] = [median_time(peer, 1) for _ in range(repeat)]
        return result
    result["our_first"] = ours()
    result["ours"] = [median_time(ours, 1) for _ in range(repeat)]
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    result["gflops"] = 2 * 2048**3 / median_time(lambda: a @ b, 5) / 1e9
    result["matmul_flops"] = 2 * sum(p.numel() for p in _matrices(model)) * len(ids)
    return result


def _matrices(model):
    """Every weight matrix a prompt's tokens pass through (expanded; the tied head counted once, for
    the last position only, as ``last_only`` computes it)."""
    from lucidlm.nn.quantized import QuantizedLinear

    for m in model.modules():
        if isinstance(m, QuantizedLinear) and m is not model.lm_head:
            yield torch.empty(m.out_features, m.in_features, device="meta")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=512, help="prompt length")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--phase", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="lucidlm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase is not None:
        print(json.dumps(phase(args.phase, args.tokens, args.repeat, args.engine)))
        return
    print(f"bench_prefill: {machine_line()}; torch {torch.__version__}")
    rows = []
    for r in run_phases(__file__, (1, 2), "--tokens", str(args.tokens), "--repeat", str(args.repeat)):
        threads = r["threads"]
        ours = statistics.median(r["ours"])
        peer = statistics.median(r["peer"]) if r["peer"] else None
        floor = r["matmul_flops"] / (r["gflops"] * 1e9)
        rows.append([f"{threads} thread(s)", ours, peer if peer else "-", f"{peer / ours:.2f}x" if peer else "-",
                     floor, f"{floor / ours:.0%}", f"{r['gflops']:.0f}"])
        if "peer_first" in r:
            print(f"  {threads} thread(s): first token: lucidlm {r['our_first']}, llama.cpp {r['peer_first']}")
        if r.get("peer_missing"):
            print(f"  llama.cpp column skipped: {r['peer_missing']}")
    print_table(f"time to first token (s) for a {r['tokens']}-token prompt, batch 1; floor = its matrix products at "
                "PyTorch's float32 GEMM speed",
                ["threads", "lucidlm s", "llama.cpp s", "llama.cpp / lucidlm", "floor s", "of floor", "GEMM GFLOP/s"],
                rows)


if __name__ == "__main__":
    main()
