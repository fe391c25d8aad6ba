"""Load test of ``lucidlm serve``: N concurrent streaming clients against SmolLM2-135M-Instruct.

    flock /tmp/lucidlm-bench.lock python benchmarks/serve_load.py [--clients 1,4,8,16] [--max-tokens 32]

Starts the server as a subprocess on a free loopback port (it gets the machine's cores: --threads
torch threads; the clients are light threads in this process that mostly wait on sockets), then for
each N runs N clients, each sending --requests streaming chat requests one after another (greedy,
``ignore_eos`` so that every request generates exactly --max-tokens tokens), stopping early at
--time-limit seconds per N. Prints per N: total generated tok/s, its ratio to N=1 (N=1 is the
same requests sent one at a time), p50/p99 time to first token, p50/p99 time between tokens, and
errors (must be 0). Goal from the issue: tok/s at 8 clients >= 3x a single client, which only
continuous batching gives (one forward pass serves every active request).

Then the same clients against llama.cpp's own OpenAI server (``python -m llama_cpp.server``, from
llama-cpp-python with its ``[server]`` extras: ``make llama-cpp`` installs both) on the same GGUF
with the same threads (EOS is kept from ending a request by a ``logit_bias`` of -100, since it has
no ``ignore_eos``), and each server's resident memory (VmRSS after the run, VmHWM its peak); also
that of ``lucidlm serve --dequantize`` (float32 weights: what lucidlm served before it kept the
GGUF's blocks). Goals: aggregate tok/s at 8 clients >= 2x llama.cpp's server; lucidlm's memory
<= 1/3 of the float32 server's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, print_table  # noqa: E402

MODEL = "smollm2-135m-instruct"
TOPICS = ["the sea", "a lighthouse", "mountains", "a city at night", "autumn leaves", "a robot", "the moon",
          "a library", "rain", "a train journey", "a garden", "snow", "a market", "the desert", "a river", "bees"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, threads: int, max_batch: int, server: str = "lucidlm") -> subprocess.Popen:
    """``server``: "lucidlm", "lucidlm-dequantized" (``--dequantize``) or "llama.cpp"."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if server == "llama.cpp":
        from lucidlm.assets import asset_path

        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(asset_path(MODEL)), "--host", "127.0.0.1",
               "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", "2048",
               "--interrupt_requests", "False"]  # queue concurrent requests (its default: a new one cancels the last)
        health = f"http://127.0.0.1:{port}/v1/models"
    else:
        cmd = [sys.executable, "-m", "lucidlm.cli", "serve", "--model", MODEL, "--port", str(port), "--embed-model",
               "none", "--max-batch", str(max_batch), "--log-level", "warning"]
        cmd += ["--dequantize"] if server == "lucidlm-dequantized" else []
        health = f"http://127.0.0.1:{port}/health"
    quiet = subprocess.DEVNULL if server == "llama.cpp" else None  # it logs every request
    proc = subprocess.Popen(cmd, env=env, stdout=quiet, stderr=quiet)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {server} server exited with code {proc.returncode}")
        try:
            if httpx2.get(health, timeout=2).status_code == 200:
                return proc
        except httpx2.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("the server did not become healthy within 180 s")


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB: its resident memory now, and at its peak."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# llama.cpp's server has no ignore_eos: SmolLM2's end tokens (<|endoftext|>, <|im_end|>) get a bias of -100
NO_EOS = {"0": -100, "2": -100}


def one_request(http: httpx2.Client, url: str, topic: str, max_tokens: int, peer: bool = False) -> dict:
    """Stream one chat completion; returns its timings (seconds) and token count, or its error."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Write a short poem about {topic}."}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True}
    body |= {"logit_bias": NO_EOS} if peer else {"ignore_eos": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    arrivals, tokens = [], 0
    try:
        with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                return {"error": f"HTTP {response.status_code}: {response.read()[:200]!r}"}
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return {"error": chunk["error"]["message"]}
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    arrivals.append(time.perf_counter())
                    tokens += peer  # llama.cpp's server sends one token a chunk, and no usage
    except httpx2.HTTPError as exc:
        return {"error": repr(exc)}
    if not arrivals or tokens != max_tokens:
        return {"error": f"got {tokens} tokens, expected {max_tokens}"}
    return {"start": start, "end": time.perf_counter(), "ttft": arrivals[0] - start, "tokens": tokens,
            "gaps": [b - a for a, b in zip(arrivals, arrivals[1:])]}


def run_clients(url: str, n: int, requests: int, max_tokens: int, time_limit: float, peer: bool = False) -> list[dict]:
    results: list[dict] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + time_limit

    def client(i: int) -> None:
        with httpx2.Client(timeout=300) as http:
            for r in range(requests):
                if time.perf_counter() > stop_at:
                    return
                result = one_request(http, url, TOPICS[(i + r * n) % len(TOPICS)], max_tokens, peer)
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def measure(server: str, counts: list[int], args) -> tuple[list[list], tuple[float, float]]:
    """Rows of the table for one server, and its (VmRSS, VmHWM) after the run."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    peer = server == "llama.cpp"
    proc = start_server(port, args.threads, args.max_batch, server)
    try:
        run_clients(url, 1, 1, 4, 60, peer)  # warm-up: first-call allocations, caches
        rows, base = [], None
        for n in counts:
            t0 = time.perf_counter()
            results = run_clients(url, n, args.requests, args.max_tokens, args.time_limit, peer)
            ok = [r for r in results if "error" not in r]
            errors = [r["error"] for r in results if "error" in r]
            for e in errors[:3]:
                print(f"  error ({server}, N={n}): {e}")
            wall = (max(r["end"] for r in ok) - min(r["start"] for r in ok)) if ok else time.perf_counter() - t0
            tok_s = sum(r["tokens"] for r in ok) / wall if ok else 0.0
            base = base or tok_s
            ttft = [r["ttft"] for r in ok]
            gaps = [g for r in ok for g in r["gaps"]]
            rows.append([n, len(ok), tok_s, tok_s / base, pct(ttft, 0.5) * 1e3, pct(ttft, 0.99) * 1e3,
                         pct(gaps, 0.5) * 1e3, pct(gaps, 0.99) * 1e3, len(errors)])
        return rows, memory_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,4,8,16", help="comma-separated client counts")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--requests", type=int, default=3, help="requests each client sends, one after another")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per client count (no new "
                        "requests after it)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="each server's threads")
    parser.add_argument("--max-batch", type=int, default=16, help="the lucidlm server's --max-batch")
    parser.add_argument("--no-peer", action="store_true", help="skip llama.cpp's server and the float32 server")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    print(f"serve_load: {machine_line()}; {MODEL} (Q4_1 GGUF), {args.threads} threads per server, lucidlm "
          f"max_batch {args.max_batch}; {args.max_tokens} tokens per request, greedy")
    header = ["clients", "requests", "tok/s", "x N=1", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "errors"]
    rows, memory = measure("lucidlm", counts, args)
    print_table("lucidlm serve: concurrent streaming clients (times in ms)", header, rows)
    by_n = {r[0]: r for r in rows}
    if 1 in by_n and 8 in by_n:
        ratio = by_n[8][3]
        print(f"\n8 clients vs 1: {ratio:.2f}x total tok/s (goal >= 3x): {'met' if ratio >= 3 else 'NOT met'}")
    memories = [["lucidlm serve (GGUF blocks kept)", *memory]]
    if not args.no_peer:
        try:
            import llama_cpp.server.app  # noqa: F401  (the [server] extras)

            peer_rows, peer_memory = measure("llama.cpp", counts, args)
            print_table("llama_cpp.server, the same clients (times in ms)", header, peer_rows)
            memories.append(["python -m llama_cpp.server", *peer_memory])
            peer_by_n = {r[0]: r for r in peer_rows}
            print_table("aggregate tok/s, lucidlm / llama.cpp's server (goal at 8 clients: >= 2x)",
                        ["clients", "lucidlm tok/s", "llama.cpp tok/s", "ratio"],
                        [[n, by_n[n][2], peer_by_n[n][2], f"{by_n[n][2] / peer_by_n[n][2]:.2f}x"]
                         for n in counts if n in peer_by_n and peer_by_n[n][2] > 0])
        except ImportError as exc:
            print(f"\nllama.cpp's server skipped: {exc} (make llama-cpp installs llama-cpp-python[server])")
        _, float_memory = measure("lucidlm-dequantized", [1], args)
        memories.append(["lucidlm serve --dequantize (float32)", *float_memory])
    print_table("resident memory of each server after its run (MB)", ["server", "VmRSS", "VmHWM (peak)"], memories)
    if len(memories) > 1 and memories[-1][0].endswith("(float32)"):
        print(f"lucidlm's peak memory: {memories[0][2] / memories[-1][2]:.2f} of the float32 server's (goal <= 1/3)")


if __name__ == "__main__":
    main()
