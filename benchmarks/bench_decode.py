"""Greedy decoding speed of SmolLM2-135M-Instruct (fp32, KV cache, batch 1, one core):
lucidlm against Hugging Face transformers loading the same GGUF, measured in the same run.

    python benchmarks/bench_decode.py [--tokens 64] [--repeat 3]

Also prints the matrix-vector floor: the time of the fp32 matrix-vector products of one token
alone (every weight matrix times one vector), which no fp32 implementation can beat on this core.
Goal from the issue: lucidlm >= 2x transformers' tokens/s.
"""

from __future__ import annotations

import argparse
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


@torch.inference_mode()
def matvec_floor(model, repeat: int, row_major: bool) -> float:
    """Seconds for one token's worth of fp32 matrix-vector products (every Linear weight, head
    included), with the weights row-major (out, in) or column-major (in, out) in memory."""
    mats = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
    mats = [w.contiguous() if row_major else w.t().contiguous().t() for w in mats]
    x = {w.shape[1]: torch.randn(1, w.shape[1]) for w in mats}

    def run():
        for w in mats:
            torch.nn.functional.linear(x[w.shape[1]], w)

    run()
    return median_time(run, repeat * 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pin_to_one_core()
    torch.set_num_threads(1)

    from lucidlm.assets import asset_path
    from lucidlm.models.load import load_model

    print(f"bench_decode: {machine_line()}; torch {torch.__version__}; one core, fp32, batch 1")
    model, tok = load_model("smollm2-135m-instruct")
    model.eval()
    plain = lucidlm_greedy(model, tok.encode(PROMPT, allowed_special="all"), 8)
    ids0 = tok.encode(PROMPT, allowed_special="all")
    t_plain = median_time(lambda: lucidlm_greedy(model, ids0, args.tokens), args.repeat)
    model.use_decode_layout()  # column-major weights: see DecoderLM.use_decode_layout
    assert lucidlm_greedy(model, ids0, 8) == plain
    ids = tok.encode(PROMPT, allowed_special="all")

    import transformers

    gguf = asset_path("smollm2-135m-instruct")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                           torch_dtype=torch.float32).eval()
    ours = lucidlm_greedy(model, ids, args.tokens)
    theirs = hf_greedy(hf, ids, args.tokens)
    same = sum(a == b for a, b in zip(ours, theirs))
    t_ours = median_time(lambda: lucidlm_greedy(model, ids, args.tokens), args.repeat)
    t_hf = median_time(lambda: hf_greedy(hf, ids, args.tokens), args.repeat)
    t_floor_row = matvec_floor(model, args.repeat, row_major=True)
    t_floor = matvec_floor(model, args.repeat, row_major=False)
    rows = [
        ["transformers generate (greedy, KV cache)", args.tokens / t_hf, 1000 * t_hf / args.tokens, 1.0],
        ["lucidlm, default weight layout", args.tokens / t_plain, 1000 * t_plain / args.tokens, t_hf / t_plain],
        ["lucidlm, decode layout (column-major)", args.tokens / t_ours, 1000 * t_ours / args.tokens, t_hf / t_ours],
        ["mat-vec floor, row-major weights", 1 / t_floor_row, 1000 * t_floor_row, t_hf / args.tokens / t_floor_row],
        ["mat-vec floor, column-major weights", 1 / t_floor, 1000 * t_floor, t_hf / args.tokens / t_floor],
    ]
    print_table(f"{args.tokens} new tokens after a {len(ids)}-token prompt (includes the prefill); "
                f"greedy tokens identical to transformers: {same}/{args.tokens}",
                ["decoder", "tok/s", "ms/token", "x transformers"], rows)
    # The trace: off by default. Each recording site is one `if trace is not None` check, so a
    # forward without a trace should cost what it costs; with one, attention takes the reference
    # path (it must build the weights) and every intermediate is copied out.
    from lucidlm.inspect import Trace

    long_ids = torch.tensor([(ids * 8)[:128]])
    with torch.inference_mode():
        t_off = median_time(lambda: model(long_ids), args.repeat)
        t_on = median_time(lambda: model(long_ids, trace=Trace()), args.repeat)
    print_table("one forward pass over a 128-token prompt", ["trace", "ms", "x trace off"],
                [["off (trace=None, the default)", 1000 * t_off, 1.0], ["on (Trace(), everything recorded)", 1000 * t_on, t_on / t_off]])
    print(f"\nlucidlm (decode layout) runs at {t_floor / (t_ours / args.tokens):.0%} of the speed of the "
          "column-major mat-vec floor: the rest is per-op overhead, attention and the prefill.")


if __name__ == "__main__":
    main()
