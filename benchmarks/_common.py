"""Shared by the benchmarks: pin to one core, time with medians, print tables with ratios."""

from __future__ import annotations

import os
import pickle
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable


def pin_to_one_core() -> int | None:
    """Run this process (and the Rust peers' thread pools) on a single core, as the issue asks."""
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers' thread pool
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if hasattr(os, "sched_setaffinity"):
        core = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {core})
        return core
    return None


def median_time(fn: Callable[[], object], repeat: int = 3, setup: Callable[[], object] | None = None) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs (``setup`` runs untimed before each)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    print(f"\n{title}")
    cells = [header] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))


def machine_line() -> str:
    return f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} CPUs"


def use_cores(threads: int) -> None:
    """This process on its first ``threads`` cores, with as many torch threads (the lucidlm kernels
    follow torch's count); llama.cpp started afterwards gets the same cores."""
    import torch

    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, set(cores))
    torch.set_num_threads(threads)


def smollm2_kept_quantized():
    """(GGUF path, tokenizer, model) of SmolLM2-135M-Instruct as generate and serve load it: its
    blocks kept (``load_gguf(keep_quantized=True)``), one-token steps in C."""
    from lucidlm.assets import asset_path
    from lucidlm.loading.gguf import load_gguf
    from lucidlm.tokenizers import load_tokenizer

    path = asset_path("smollm2-135m-instruct")
    return path, load_tokenizer(path), load_gguf(path, keep_quantized=True).use_fast_decode()


def llama_cpp_last_logits(llm):
    """The logits of the last position llama.cpp evaluated, read in place (llama-cpp-python keeps no
    copy unless logits_all)."""
    import numpy as np

    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def run_phases(script: str, thread_counts: tuple[int, ...], *args: str) -> list[dict]:
    """``script --phase N --engine E *args`` in a fresh process per thread count and engine (pinned
    there by ``use_cores``), each printing one JSON line; returns per thread count lucidlm's result
    with llama.cpp's "peer*" fields merged in. The counts beyond this process's cores are skipped.

    Why a process per engine: both use OpenMP, whose idle threads spin by default. lucidlm runs
    with ``OMP_WAIT_POLICY=PASSIVE``, as its CLI sets it (PyTorch's spinning threads would steal
    the C kernels' second core); llama.cpp with OpenMP's default, since PASSIVE makes it ~2.7x
    slower at two threads (measured)."""
    import json
    import subprocess
    import sys

    def one(threads: int, engine: str, env: dict) -> dict:
        out = subprocess.run([sys.executable, script, "--phase", str(threads), "--engine", engine, *args],
                             check=True, capture_output=True, text=True, env=env).stdout
        return json.loads(out.strip().splitlines()[-1])

    results = []
    for threads in thread_counts:
        if threads > len(os.sched_getaffinity(0)):
            print(f"(skipping {threads} threads: this process may use {len(os.sched_getaffinity(0))} core(s))")
            continue
        ours = one(threads, "lucidlm", {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        peer = one(threads, "llama.cpp", dict(os.environ))
        results.append(ours | {k: v for k, v in peer.items() if k.startswith("peer")})
    return results


def in_child(fn: Callable[..., dict], *args) -> dict:
    """``fn(*args)``'s dict, computed in a forked process, plus ``peak_mb``: that process's peak RSS
    (each run's own peak, including what the parent held at the fork). The dict comes back pickled
    through a pipe from our own child: nothing untrusted is unpickled."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            out = fn(*args)
            out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        except BaseException as exc:  # reported by the parent
            out = {"error": repr(exc)}
        with os.fdopen(write_end, "wb") as f:
            f.write(pickle.dumps(out))
        sys.stdout.flush()  # os._exit skips the interpreter's own flush
        sys.stderr.flush()
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        out = pickle.loads(f.read())
    os.waitpid(pid, 0)
    if "error" in out:
        raise RuntimeError(f"benchmark child failed: {out['error']}")
    return out
