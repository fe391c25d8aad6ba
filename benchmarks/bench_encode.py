"""Encoding speed: lucidlm's BPE against tiktoken (Rust), measured in the same run, one core.

    python benchmarks/bench_encode.py [--size 10000000] [--repeat 3]

Rows: a fresh tokenizer (empty chunk cache, the first pass over a text), a second pass (warm
cache), ``encode_batch`` on 2 worker processes (fresh tokenizer), and the readable reference
encoder on a slice. Goals from the issue: single process >= 0.5x tiktoken; encode_batch on
2 processes >= 1x tiktoken.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, median_time, pin_to_one_core, print_table  # noqa: E402


def measure(name: str, ref, cname: str, text: str, repeat: int) -> list[list[object]]:
    """One corpus, one encoding: the table rows."""
    import os

    from lucidlm.tokenizers import load_tokenizer

    mb = len(text.encode("utf-8")) / 1e6
    lines = text.splitlines(keepends=True)
    core = pin_to_one_core()
    t_tik = median_time(lambda: ref.encode_ordinary(text), repeat)
    ours = load_tokenizer(name)
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text), "ids differ from tiktoken"
    t_cold = median_time(lambda: ours.encode_ordinary(text), repeat, setup=ours._cache.clear)
    t_warm = median_time(lambda: ours.encode_ordinary(text), repeat)
    t_tik_lines = median_time(lambda: ref.encode_ordinary_batch(lines, num_threads=1), repeat)
    if core is not None:  # two worker processes: give this process both cores again
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    t_batch = median_time(lambda: ours.encode_batch(lines, num_workers=2), repeat, setup=ours._cache.clear)
    pin_to_one_core()
    piece = text[:200_000]
    t_ref = median_time(lambda: ours.encode_ordinary_reference(piece), 1)
    mb_piece = len(piece.encode("utf-8")) / 1e6
    return [
        [cname, "tiktoken encode_ordinary", mb / t_tik, 1.0],
        [cname, "lucidlm, fresh cache", mb / t_cold, t_tik / t_cold],
        [cname, "lucidlm, warm cache", mb / t_warm, t_tik / t_warm],
        [cname, "lucidlm encode_batch, 2 processes (vs tiktoken on the same lines)", mb / t_batch, t_tik_lines / t_batch],
        [cname, "lucidlm reference encoder (first 200k chars)", mb_piece / t_ref, (mb_piece / t_ref) / (mb / t_tik)],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000_000, help="characters of mixed corpus")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--encodings", default="cl100k_base,o200k_base")
    args = parser.parse_args()

    import tiktoken

    from lucidlm.assets import asset_path
    from lucidlm.tokenizers.corpus import build_mixed_corpus, tiny_shakespeare
    from lucidlm.tokenizers.formats import TIKTOKEN_ENCODINGS, read_tiktoken_ranks

    corpora = {"tiny-shakespeare": tiny_shakespeare(), "mixed": build_mixed_corpus(args.size, seed=0)}
    print(f"bench_encode: {machine_line()}; tiktoken {tiktoken.__version__}")
    for name in args.encodings.split(","):
        known = TIKTOKEN_ENCODINGS[name]
        ref = tiktoken.Encoding(name, pat_str=known["pattern"], mergeable_ranks=read_tiktoken_ranks(asset_path(name)),
                                special_tokens=known["special_tokens"])
        rows = []
        for cname, text in corpora.items():
            rows += measure(name, ref, cname, text, args.repeat)
        print_table(f"{name}: MB/s (UTF-8), ratio = tiktoken time / lucidlm time", ["corpus", "encoder", "MB/s", "x tiktoken"], rows)


if __name__ == "__main__":
    main()
