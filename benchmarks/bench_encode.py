"""Encoding speed: lucidlm's BPE against tiktoken (Rust), measured in the same run, one core.

    python benchmarks/bench_encode.py [--size 10000000] [--repeat 3]

Rows: a fresh tokenizer (empty chunk cache, the first pass over a text), a second pass (warm
cache), ``encode_batch`` of the text cut into ~10 kB documents on 2 worker processes (fresh
tokenizer; its ratio is against tiktoken encoding the same documents on one core), the pre-tokenizer
split alone (the C splitter, and the ``regex`` reference it replaces), and the readable reference
encoder on a slice. Goals from the issue: single process >= 0.5x tiktoken; encode_batch on
2 processes >= 1x tiktoken.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, median_time, pin_to_one_core, print_table  # noqa: E402


def documents(text: str, size: int = 10_000) -> list[str]:
    """The text cut at line ends into documents of about ``size`` characters (a dataset's shape)."""
    docs, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        docs.append(text[start:end])
        start = end
    return docs


def measure(name: str, ref, cname: str, text: str, repeat: int) -> list[list[object]]:
    """One corpus, one encoding: the table rows."""
    import os

    from lucidlm.tokenizers import load_tokenizer

    mb = len(text.encode("utf-8")) / 1e6
    docs = documents(text)
    core = pin_to_one_core()
    t_tik = median_time(lambda: ref.encode_ordinary(text), repeat)
    ours = load_tokenizer(name)
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text), "ids differ from tiktoken"
    t_cold = median_time(lambda: ours.encode_ordinary(text), repeat, setup=ours._cache.clear)
    t_warm = median_time(lambda: ours.encode_ordinary(text), repeat)
    # the same list of documents, one by one, on one core: the single-process peer of encode_batch
    t_tik_docs = median_time(lambda: [ref.encode_ordinary(doc) for doc in docs], repeat)
    if core is not None:  # two worker processes: give this process both cores again
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    assert ours.encode_batch(docs, num_workers=2) == [ref.encode_ordinary(doc) for doc in docs]
    t_batch = median_time(lambda: ours.encode_batch(docs, num_workers=2), repeat, setup=ours._cache.clear)
    pin_to_one_core()
    split = ours._split
    t_split = median_time(lambda: split(text), repeat)
    split.regex_split("warm up: compile the regex path")
    t_split_regex = median_time(lambda: split.regex_split(text), 1)
    piece = text[:200_000]
    t_ref = median_time(lambda: ours.encode_ordinary_reference(piece), 1)
    mb_piece = len(piece.encode("utf-8")) / 1e6
    return [
        [cname, "tiktoken encode_ordinary", mb / t_tik, 1.0],
        [cname, "lucidlm, fresh cache", mb / t_cold, t_tik / t_cold],
        [cname, "lucidlm, warm cache", mb / t_warm, t_tik / t_warm],
        [cname, f"tiktoken, {len(docs)} documents one by one", mb / t_tik_docs, t_tik / t_tik_docs],
        [cname, "lucidlm encode_batch of the documents, 2 processes, fresh cache", mb / t_batch, t_tik_docs / t_batch],
        [cname, f"lucidlm split alone ({'C splitter' if split.use_kernel else 'regex'})", mb / t_split, t_tik / t_split],
        [cname, "lucidlm split alone (regex reference)", mb / t_split_regex, t_tik / t_split_regex],
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
