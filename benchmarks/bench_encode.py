"""Encoding speed: lucidlm's BPE against tiktoken (Rust), measured in the same run, one core.

    python benchmarks/bench_encode.py [--size 10000000] [--repeat 3]

Rows: a fresh tokenizer (empty chunk cache, the first pass over a text), a second pass (warm
cache), ``encode_batch`` of the text cut into ~10 kB documents on 2 worker processes (fresh
tokenizer; its ratio is against tiktoken encoding the same documents on one core), the pre-tokenizer
split alone (the C splitter, and the ``regex`` reference it replaces), and the readable reference
encoder on a slice. Ratios by wall time and by CPU time (fairer on a loaded machine; for the
2-process row, the longer of the two processes' CPU times). Goals from the issue: single process
>= 0.5x tiktoken; encode_batch on 2 processes >= 1x tiktoken.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, pin_to_one_core, print_table  # noqa: E402


def documents(text: str, size: int = 10_000) -> list[str]:
    """The text cut at line ends into documents of about ``size`` characters (a dataset's shape)."""
    docs, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        docs.append(text[start:end])
        start = end
    return docs


def timed(fn, repeat: int, setup=None) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of ``fn``. The CPU time is what the run would take
    with its core to itself, so it is the fairer figure when other jobs load the machine. With
    worker processes, CPU time is the longest of this process and its (reaped) children."""
    def children_cpu() -> float:  # getrusage has microsecond resolution (os.times: 10 ms)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    walls, cpus = [], []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu()
        fn()
        t1, c1, k1 = time.perf_counter(), time.process_time(), children_cpu()
        walls.append(t1 - t0)
        cpus.append(max(c1 - c0, k1 - k0))
    return statistics.median(walls), statistics.median(cpus)


def measure(name: str, ref, cname: str, text: str, repeat: int) -> list[list[object]]:
    """One corpus, one encoding: the table rows (MB/s by wall time, ratios by wall and CPU time)."""
    from lucidlm.tokenizers import load_tokenizer

    mb = len(text.encode("utf-8")) / 1e6
    docs = documents(text)
    core = pin_to_one_core()
    tik = timed(lambda: ref.encode_ordinary(text), repeat)
    ours = load_tokenizer(name)
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text), "ids differ from tiktoken"
    cold = timed(lambda: ours.encode_ordinary(text), repeat, setup=ours._cache.clear)
    warm = timed(lambda: ours.encode_ordinary(text), repeat)
    # the same list of documents, one by one, on one core: the single-process peer of encode_batch
    tik_docs = timed(lambda: [ref.encode_ordinary(doc) for doc in docs], repeat)
    if core is not None:  # two worker processes: give this process both cores again
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    assert ours.encode_batch(docs, num_workers=2) == [ref.encode_ordinary(doc) for doc in docs]
    batch = timed(lambda: ours.encode_batch(docs, num_workers=2), repeat, setup=ours._cache.clear)
    pin_to_one_core()
    split = ours._split
    t_split = timed(lambda: split(text), repeat)
    split.regex_split("warm up: compile the regex path")
    t_split_regex = timed(lambda: split.regex_split(text), 1)
    piece = text[:200_000]
    t_ref = timed(lambda: ours.encode_ordinary_reference(piece), 1)
    mb_piece = len(piece.encode("utf-8")) / 1e6

    def row(label: str, t: tuple[float, float], peer: tuple[float, float] = tik, size: float = mb) -> list[object]:
        return [cname, label, size / t[0], peer[0] / t[0], peer[1] / t[1]]

    return [
        row("tiktoken encode_ordinary", tik),
        row("lucidlm, fresh cache", cold),
        row("lucidlm, warm cache", warm),
        row(f"tiktoken, {len(docs)} documents one by one", tik_docs),
        row("lucidlm encode_batch of the documents, 2 processes, fresh cache", batch, peer=tik_docs),
        row(f"lucidlm split alone ({'C splitter' if split.use_kernel else 'regex'})", t_split),
        row("lucidlm split alone (regex reference)", t_split_regex),
        # the reference runs on a slice: compare speeds (MB/s), not times
        [cname, "lucidlm reference encoder (first 200k chars)", mb_piece / t_ref[0],
         (mb_piece / t_ref[0]) / (mb / tik[0]), (mb_piece / t_ref[1]) / (mb / tik[1])],
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
        print_table(
            f"{name}: MB/s (UTF-8, wall time); x tiktoken = tiktoken time / lucidlm time, by wall and by CPU time",
            ["corpus", "encoder", "MB/s", "x tiktoken", "x tiktoken (cpu)"], rows,
        )


if __name__ == "__main__":
    main()
