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


def start_server(port: int, threads: int, max_batch: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "lucidlm.cli", "serve", "--model", MODEL, "--port", str(port), "--embed-model",
           "none", "--max-batch", str(max_batch), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx2.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("the server did not become healthy within 180 s")


def one_request(http: httpx2.Client, url: str, topic: str, max_tokens: int) -> dict:
    """Stream one chat completion; returns its timings (seconds) and token count, or its error."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Write a short poem about {topic}."}],
            "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
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
    except httpx2.HTTPError as exc:
        return {"error": repr(exc)}
    if not arrivals or tokens != max_tokens:
        return {"error": f"got {tokens} tokens, expected {max_tokens}"}
    return {"start": start, "end": time.perf_counter(), "ttft": arrivals[0] - start, "tokens": tokens,
            "gaps": [b - a for a, b in zip(arrivals, arrivals[1:])]}


def run_clients(url: str, n: int, requests: int, max_tokens: int, time_limit: float) -> list[dict]:
    results: list[dict] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + time_limit

    def client(i: int) -> None:
        with httpx2.Client(timeout=300) as http:
            for r in range(requests):
                if time.perf_counter() > stop_at:
                    return
                result = one_request(http, url, TOPICS[(i + r * n) % len(TOPICS)], max_tokens)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,4,8,16", help="comma-separated client counts")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--requests", type=int, default=3, help="requests each client sends, one after another")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per client count (no new "
                        "requests after it)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="the server's torch threads")
    parser.add_argument("--max-batch", type=int, default=16, help="the server's --max-batch")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"serve_load: {machine_line()}; server: {MODEL}, {args.threads} torch threads, max_batch "
          f"{args.max_batch}; {args.max_tokens} tokens per request, greedy")
    server = start_server(port, args.threads, args.max_batch)
    try:
        run_clients(url, 1, 1, 4, 60)  # warm-up: first-call allocations, caches
        rows, base = [], None
        for n in counts:
            t0 = time.perf_counter()
            results = run_clients(url, n, args.requests, args.max_tokens, args.time_limit)
            ok = [r for r in results if "error" not in r]
            errors = [r["error"] for r in results if "error" in r]
            for e in errors[:3]:
                print(f"  error (N={n}): {e}")
            wall = (max(r["end"] for r in ok) - min(r["start"] for r in ok)) if ok else time.perf_counter() - t0
            tok_s = sum(r["tokens"] for r in ok) / wall if ok else 0.0
            base = base or tok_s
            ttft = [r["ttft"] for r in ok]
            gaps = [g for r in ok for g in r["gaps"]]
            rows.append([n, len(ok), tok_s, tok_s / base, pct(ttft, 0.5) * 1e3, pct(ttft, 0.99) * 1e3,
                         pct(gaps, 0.5) * 1e3, pct(gaps, 0.99) * 1e3, len(errors)])
        print_table("concurrent streaming clients (times in ms)",
                    ["clients", "requests", "tok/s", "x N=1", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
                     "errors"], rows)
        by_n = {r[0]: r for r in rows}
        if 1 in by_n and 8 in by_n:
            ratio = by_n[8][3]
            print(f"\n8 clients vs 1: {ratio:.2f}x total tok/s (goal >= 3x): {'met' if ratio >= 3 else 'NOT met'}")
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
