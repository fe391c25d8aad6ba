"""Encoding many texts on several threads or processes.

When a tokenizer encodes in C with the GIL released (BPE with its C kernel and a preset split:
``tokenizer.encodes_in_threads``), a batch is shared out to threads, each with a chunk cache of its
own: nothing is copied or sent anywhere. Otherwise Python threads cannot run the encoder in
parallel (the GIL), so large batches go to worker processes. On Linux the workers are forked: they
start with a copy of the tokenizer, its chunk cache included, without pickling anything. Small
batches stay in one thread, where starting workers would cost more than it saves.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
from array import array
from collections.abc import Sequence

# Below this many characters in total, one process is faster: starting workers, sending texts and
# ids between processes, and warming two chunk caches cost ~0.1 s (measured: 1 MB in 112 documents
# encodes faster in one process; 11 MB in 996 documents ~1.7x faster on two).
MIN_CHARS_FOR_WORKERS = 4 << 20
# Threads cost little to start (~0.1 ms), but each warms a chunk cache of its own: below this many
# characters one thread is as fast.
MIN_CHARS_FOR_THREADS = 1 << 18


def _encode_in_worker(conn, tokenizer, texts: list[str], kwargs: dict) -> None:
    """A worker's whole job: encode its texts, send back the counts, then all ids as one flat
    array. Raw bytes through a pipe: pickling lists of ints would build and read back one object
    per id (1.7M ids: 85 ms instead of 50). Each message starts with b"o" (ok) or b"e" (an
    error: its type and message, re-raised in the calling process)."""
    try:
        flat, counts = array("q"), array("q")
        for t in texts:
            ids = tokenizer.encode(t, **kwargs)
            flat.extend(ids)
            counts.append(len(ids))
        conn.send_bytes(b"o" + counts.tobytes())
        conn.send_bytes(b"o" + flat.tobytes())
    except Exception as exc:  # noqa: BLE001 - any failure goes back to the caller, named
        conn.send_bytes(b"e" + f"{type(exc).__name__}\n{exc}".encode("utf-8", "replace"))
    finally:
        conn.close()


def _receive(conn, proc) -> tuple[array, array]:
    """(flat ids, counts) from one worker, or the worker's error raised here."""
    parts = []
    try:
        for _ in range(2):
            message = conn.recv_bytes()
            if message[:1] == b"e":
                kind, _, text = message[1:].decode("utf-8", "replace").partition("\n")
                raise (ValueError if kind == "ValueError" else RuntimeError)(
                    text if kind == "ValueError" else f"{kind} in an encode_batch worker: {text}")
            part = array("q")
            part.frombytes(message[1:])
            parts.append(part)
    except EOFError:
        proc.join()
        raise RuntimeError(f"an encode_batch worker process died (exit code {proc.exitcode}) before sending "
                           "its ids (out of memory?)") from None
    finally:
        conn.close()
    proc.join()
    counts, flat = parts
    return flat, counts


def _unflatten(flat: array, counts: array) -> list[list[int]]:
    """Inverse of the packing in ``_encode_in_worker``.

    >>> _unflatten(array("q", [5, 6, 7]), array("q", [2, 0, 1]))
    [[5, 6], [], [7]]
    """
    ids, out, start = flat.tolist(), [], 0
    for n in counts:
        out.append(ids[start : start + n])
        start += n
    return out


def _groups(texts: Sequence[str], n_groups: int) -> list[list[int]]:
    """Split text indices into at most ``n_groups`` consecutive runs of similar total length.

    >>> _groups(["aa", "b", "c", "dddd"], 2)
    [[0, 1, 2], [3]]
    """
    total = sum(len(t) for t in texts) or 1
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    seen = 0
    for i, t in enumerate(texts):
        groups[min(n_groups - 1, seen * n_groups // total)].append(i)
        seen += len(t)
    return [g for g in groups if g]


def _encode_on_threads(tokenizer, texts: list[str], num_workers: int, encode_kwargs: dict) -> list[list[int]]:
    """The texts on ``num_workers`` threads (this one included), each thread with its own chunk
    cache; an error in any thread is raised here.

    Each thread owns a consecutive run of texts (neighbouring texts share words, so its cache
    serves it well) and takes them from the front; a thread that runs out takes the last text of
    the run with the most left, so that no thread idles while another still has work."""
    runs = [[g[0], g[-1] + 1] for g in _groups(texts, num_workers)]  # [next, end) of each thread's run
    caches = tokenizer.thread_caches(len(runs))
    out: list[list[int] | None] = [None] * len(texts)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def take(k: int) -> int | None:
        with lock:
            if errors:
                return None
            if runs[k][0] < runs[k][1]:
                runs[k][0] += 1
                return runs[k][0] - 1
            longest = max(runs, key=lambda run: run[1] - run[0])
            if longest[0] < longest[1]:
                longest[1] -= 1
                return longest[1]
            return None

    def work(k: int) -> None:
        me = threading.get_ident()
        tokenizer._thread_caches[me] = caches[k]
        try:
            while (i := take(k)) is not None:
                out[i] = tokenizer.encode(texts[i], **encode_kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread below
            errors.append(exc)
        finally:
            del tokenizer._thread_caches[me]

    # The garbage collector would walk every result list (of ints only: never part of a cycle)
    # again and again as the batch allocates them, holding the GIL that the other threads wait for:
    # 8% of a batch's time on 10 MB of code. So it waits until the batch is done.
    collecting = gc.isenabled()
    gc.disable()
    try:
        helpers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(1, len(runs))]
        for thread in helpers:
            thread.start()
        work(0)
        for thread in helpers:
            thread.join()
    finally:
        if collecting:
            gc.enable()
    if errors:
        raise errors[0]
    return out  # type: ignore[return-value]


def encode_batch(tokenizer, texts: Sequence[str], *, num_workers: int | None = None, **encode_kwargs) -> list[list[int]]:
    """``[tokenizer.encode(t, **encode_kwargs) for t in texts]``, on ``num_workers`` threads or
    processes (default: the CPU count; threads when ``tokenizer.encodes_in_threads``) when the batch
    is large enough."""
    if isinstance(texts, str):
        raise TypeError("encode_batch takes a list of texts; for one text use encode()")
    texts = list(texts)
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    total = sum(len(t) for t in texts)
    threads = getattr(tokenizer, "encodes_in_threads", False)
    if num_workers == 1 or len(texts) < 2 or total < (MIN_CHARS_FOR_THREADS if threads else MIN_CHARS_FOR_WORKERS):
        return [tokenizer.encode(t, **encode_kwargs) for t in texts]
    if threads:
        return _encode_on_threads(tokenizer, texts, num_workers, encode_kwargs)

    # This process works too: it encodes its share while num_workers - 1 forked helpers encode
    # theirs, so one fork and one share's worth of sending ids between processes are saved.
    groups = _groups(texts, num_workers)
    if len(groups) < 2:
        return [tokenizer.encode(t, **encode_kwargs) for t in texts]
    mine, theirs = groups[0], groups[1:]
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if hasattr(tokenizer, "warm_up"):  # build lazy tables (BPE's C kernel) once, before the fork shares them
        tokenizer.warm_up()
    # Plain processes and pipes, not a Pool: a Pool's helper threads in this process would compete
    # for the GIL with this process's own share (measured: the worker's half then finished up to
    # 0.5 s late on 11 MB). Forked workers see the texts without pickling them.
    # Freeze the garbage collector's view of existing objects while forking: otherwise the first
    # collection in each worker writes to every object's header, copying the parent's pages
    # (the tokenizer's large dicts) and making the workers about half as fast.
    workers = []
    gc.freeze()
    try:
        for g in theirs:
            receive_end, send_end = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_encode_in_worker, daemon=True,
                               args=(send_end, tokenizer, [texts[i] for i in g], encode_kwargs))
            proc.start()
            send_end.close()  # this process only reads; EOF then means the worker is gone
            workers.append((proc, receive_end))
    finally:
        gc.unfreeze()
    try:
        results = [[tokenizer.encode(texts[i], **encode_kwargs) for i in mine]]
        results += [_unflatten(*_receive(conn, proc)) for proc, conn in workers]
    finally:  # on success the workers have exited; after an error, none outlives the call
        for proc, _ in workers:
            if proc.is_alive():
                proc.terminate()
            proc.join()
    out: list[list[int]] = [None] * len(texts)  # type: ignore[list-item]
    for g, ids_list in zip(groups, results):
        for i, ids in zip(g, ids_list):
            out[i] = ids
    return out
