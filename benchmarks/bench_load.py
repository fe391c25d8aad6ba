"""How long ``lucidlm.load_model("smollm2-135m-instruct")`` takes, phase by phase, and how long the
real ``lucidlm generate`` command takes to print its first token, against transformers on the same
GGUF (``AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)``) and against floors.

    flock /tmp/lucidlm-bench.lock .venv/bin/python benchmarks/bench_load.py [--repeat 3] [--ttft-repeat 5]
        [--baseline-src DIR] [--no-peer]

Every measurement runs in a fresh process pinned to one core (a second load in the same process
would find the GGUF header cached), and the tables show medians. Table 1, loading:
- ``import``: torch + lucidlm; ``load model + tokenizer``: the ``load_model`` call, with the
  derived cache warm (float32 weights and vocab kept by an earlier load, ``lucidlm/derived_cache.py``)
  and without it (``LUCIDLM_NO_DERIVED_CACHE=1``: the reference path, dequantising);
- the phases, timed in separate processes that make the same calls one by one: reading the GGUF
  header, dequantising (+ renaming, un-permuting q/k, fusing), building the model, loading the
  state dict into it, the tokenizer from the header; then the fast paths: the weights and the
  tokenizer from the derived cache;
- transformers: ``from_pretrained`` of the same file, float32 (it also dequantises with numpy).

Table 2, time to first token of ``lucidlm generate --model smollm2-135m-instruct "The Eiffel Tower
is in" -n 1 -t 0`` started as a new process (the OS file cache is warm): from the start until the
first generated character arrives on stdout after the echoed prompt. Columns: "wall", what a user
waits; "cpu", the CPU time the process had used by then (read from /proc), which a busy shared
machine inflates far less; "wall - floor", round by round the wall time minus that of
``python -c "import torch"`` in the same round (median of the differences): what lucidlm adds to
the one import it cannot avoid, the figure that moves least with the machine's load. Rows: a warm
derived cache; no derived cache; the ``--baseline-src`` tree; transformers loading the same GGUF,
then generating one token greedily; floors: ``python -c "import torch"``, the same import with the
garbage collector paused (as the ``lucidlm`` process pauses it while a command starts: cli/args.py,
``starts_fast``; without it, its full collections cost ~0.2 s of the import), and reading the GGUF's
bytes; and the first run, which builds the derived cache
(its entry is deleted before each run). After one untimed run, the commands take turns (one run
each per round), so that a shared machine's changing load moves every row alike.

``--baseline-src DIR`` measures another lucidlm source tree too (e.g. ``git archive HEAD src``
unpacked in DIR, with the built ``*.so`` kernels copied in), in the same run, for a before/after table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, pin_to_one_core, print_table  # noqa: E402

MODEL = "smollm2-135m-instruct"
PROMPT = "The Eiffel Tower is in"
PHASES = ["header", "dequantise", "build", "load_state", "tokenizer"]
CACHED_PHASES = ["cached weights", "cached tokenizer"]
NO_CACHE = {"LUCIDLM_NO_DERIVED_CACHE": "1"}
TORCH_FLOOR = 'floor: python -c "import torch"'


# ----------------------------------------------------------------------------------------------
# children: each runs in a fresh process and prints one JSON line of timings


def child_load_model() -> dict[str, float]:
    start = time.perf_counter()
    import torch

    import lucidlm

    torch.set_num_threads(1)
    imported = time.perf_counter()
    model, tok = lucidlm.load_model(MODEL)
    done = time.perf_counter()
    assert tok is not None and not any(p.is_meta for p in model.parameters())
    return {"import": imported - start, "load_model": done - imported}


def child_phases() -> dict[str, float]:
    """load_model's steps for a GGUF asset, one by one (works on trees before and after the
    fast paths: the old one read the header with gguf.GGUFReader, always initialised, and had
    no derived cache)."""
    import inspect

    import torch

    from lucidlm.assets import asset_path
    from lucidlm.loading.checkpoint import load_state_checked
    from lucidlm.loading.gguf import config_from_gguf, read_gguf, state_from_gguf
    from lucidlm.models.transformer import build_model
    from lucidlm.tokenizers import load_tokenizer, patterns
    from lucidlm.tokenizers.gguf_vocab import from_gguf

    torch.set_num_threads(1)
    try:
        from lucidlm.files.gguf import open_gguf
    except ImportError:  # the tree before the fast reader
        from lucidlm.tokenizers.gguf_vocab import open_gguf
    path = asset_path(MODEL)
    has_cache = "cache" in inspect.signature(read_gguf).parameters
    if hasattr(patterns, "unicode_drift"):  # once per process, whichever phase comes first: not timed
        patterns.unicode_drift("L"), patterns.unicode_drift("N")
    times, t = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name], t = now - t, now

    header = open_gguf(path)
    lap("header")
    cfg = config_from_gguf(header, name=path.stem)
    state = state_from_gguf(header, cfg)
    lap("dequantise")
    no_init = "init" in inspect.signature(build_model).parameters
    model = build_model(cfg, init=False) if no_init else build_model(cfg)
    lap("build")
    load_state_checked(model, state, source=str(path))
    lap("load_state")
    from_gguf(path, cache=False) if has_cache else load_tokenizer(path)
    lap("tokenizer")
    if has_cache:
        read_gguf(path)  # from the derived cache (built by an earlier run)
        lap("cached weights")
        from_gguf(path)
        lap("cached tokenizer")
    return times


def child_transformers() -> dict[str, float]:
    start = time.perf_counter()
    import torch
    import transformers

    from lucidlm.assets import asset_path

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    path = asset_path(MODEL)
    imported = time.perf_counter()
    transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    loaded = time.perf_counter()
    transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    done = time.perf_counter()
    return {"import": imported - start, "from_pretrained": loaded - imported, "tokenizer": done - loaded}


def child_transformers_generate() -> None:
    """The peer of ``lucidlm generate``: load the same GGUF, echo the prompt, print one greedy token."""
    import torch
    import transformers

    from lucidlm.assets import asset_path

    transformers.logging.set_verbosity_error()
    path = asset_path(MODEL)
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    print(PROMPT, end="", flush=True)
    ids = tok(PROMPT, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=1, do_sample=False)
    print(tok.decode(out[0, ids.shape[1]:]), flush=True)


CHILDREN = {"load_model": child_load_model, "phases": child_phases, "transformers": child_transformers}


def run_child(mode: str, src: str | None = None, env: dict | None = None) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode], env=_env(src, env), check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def medians(mode: str, repeat: int, src: str | None = None, env: dict | None = None) -> dict[str, float]:
    runs = [run_child(mode, src, env) for _ in range(repeat)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _env(src: str | None = None, extra: dict | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ----------------------------------------------------------------------------------------------
# time to first output of a whole command


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a running process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def first_output(cmd: list[str], skip: int, env: dict[str, str]) -> tuple[float, float | None]:
    """(wall, cpu) seconds from starting ``cmd`` until it has written more than ``skip`` bytes to
    stdout (``skip``: the echoed prompt)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    seen = b""
    while len(seen) <= skip:
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    wall, cpu = time.perf_counter() - start, _cpu_seconds(proc.pid)
    rest, err = proc.communicate()
    if proc.returncode != 0 or len(seen) <= skip:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {(seen + rest)!r} {err.decode()[-2000:]}")
    return wall, cpu


def time_to_first_token(repeat: int, baseline: str | None, peer: bool) -> list[list[object]]:
    """Rows (label, wall, cpu, wall - floor) of medians. The commands take turns, one run each per
    round, so that a shared machine getting busier or quieter meanwhile moves every row alike."""
    from lucidlm.assets import asset_path
    from lucidlm.files import derived_cache

    gguf = asset_path(MODEL)
    entry = derived_cache.entry_dir(gguf)
    generate = [str(Path(sys.executable).parent / "lucidlm"), "generate", "--model", MODEL, PROMPT, "-n", "1", "-t", "0"]
    skip = len(PROMPT.encode("utf-8"))  # the echoed prompt
    python = [sys.executable, "-c"]
    read = "import sys; open(sys.argv[1], 'rb').read(); print('x', flush=True)"
    # label -> (command, bytes before the first token, environment, what to do before each run)
    runs = {"lucidlm, warm derived cache": (generate, skip, _env(), None),
            "lucidlm, no derived cache (LUCIDLM_NO_DERIVED_CACHE=1)": (generate, skip, _env(None, NO_CACHE), None)}
    if baseline:
        runs["baseline tree (--baseline-src)"] = (generate, skip, _env(baseline), None)
    if peer:
        runs["transformers: same GGUF, 1 greedy token"] = (
            [sys.executable, __file__, "--child", "transformers_generate"], skip, _env(), None)
    runs[TORCH_FLOOR] = (python + ["import torch; print('x', flush=True)"], 0, _env(), None)
    runs['floor: the same, collector paused (gc.disable())'] = (
        python + ["import gc; gc.disable(); import torch; print('x', flush=True)"], 0, _env(), None)
    runs[f"floor: read the GGUF ({gguf.stat().st_size / 1e6:.0f} MB)"] = (python + [read, str(gguf)], 0, _env(), None)
    # Last in a round, so that the next round's warm run finds a cache written a round ago.
    runs["lucidlm, first run: builds the derived cache"] = (
        generate, skip, _env(), lambda: shutil.rmtree(entry, ignore_errors=True))
    first_output(generate, skip, _env())  # not timed: builds the cache if missing, warms the OS file cache
    results: dict[str, list[tuple[float, float | None]]] = {label: [] for label in runs}
    for i in range(repeat):
        for label, (cmd, skip_bytes, env, before) in runs.items():
            if before is not None:
                before()
            results[label].append(first_output(cmd, skip_bytes, env))
        print(f"  round {i + 1}/{repeat}: " + ", ".join(f"{r[-1][0]:.2f}" for r in results.values()), file=sys.stderr)
    floor = [w for w, _ in results[TORCH_FLOOR]]
    rows = []
    for label, measured in results.items():
        cpus = [c for _, c in measured if c is not None]
        above = statistics.median(w - f for (w, _), f in zip(measured, floor, strict=True))  # round by round
        rows.append([label, statistics.median(w for w, _ in measured), statistics.median(cpus) if cpus else "", above])
    rows.insert(1, rows.pop())  # shown after the warm cache: the first run
    return rows


# ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per load measurement (median)")
    parser.add_argument("--ttft-repeat", type=int, default=5, help="fresh processes per first-token measurement (median)")
    parser.add_argument("--baseline-src", help="another lucidlm src/ directory to measure too (e.g. before)")
    parser.add_argument("--no-peer", action="store_true", help="skip transformers")
    parser.add_argument("--child", choices=sorted(CHILDREN) + ["transformers_generate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    core = pin_to_one_core()
    if args.child == "transformers_generate":
        child_transformers_generate()
        return
    if args.child:
        print(json.dumps(CHILDREN[args.child]()))
        return
    print(f"{machine_line()}; pinned to core {core}; medians of fresh processes")
    baseline = str(Path(args.baseline_src).resolve()) if args.baseline_src else None
    trees = {"baseline": baseline, "lucidlm": None} if baseline else {"lucidlm": None}
    ttft = time_to_first_token(args.ttft_repeat, baseline, not args.no_peer)  # first: it builds the cache
    results = {name: (medians("load_model", args.repeat, src), medians("phases", args.repeat, src))
               for name, src in trees.items()}
    uncached = medians("load_model", args.repeat, env=NO_CACHE)
    peer = None if args.no_peer else medians("transformers", args.repeat)
    header = ["seconds"] + list(trees) + (["transformers"] if peer else [])
    blank = [""] if peer else []
    rows = [["import"] + [r[0]["import"] for r in results.values()] + ([peer["import"]] if peer else []),
            ["load model + tokenizer"] + [r[0]["load_model"] for r in results.values()]
            + ([peer["from_pretrained"] + peer["tokenizer"]] if peer else []),
            ["  the same, no derived cache"] + [""] * (len(trees) - 1) + [uncached["load_model"]] + blank]
    rows += [[f"  phase: {p}"] + [r[1].get(p, "") for r in results.values()] + blank for p in PHASES + CACHED_PHASES]
    if peer:
        rows.append(["  transformers: model | tokenizer"] + [""] * len(trees)
                    + [f"{peer['from_pretrained']:.3f} | {peer['tokenizer']:.3f}"])
    print_table(f"Loading {MODEL} (GGUF Q4_1) on one core, median of {args.repeat}", header, rows)
    ours = results["lucidlm"][0]["load_model"]
    if peer:
        print(f"\nlucidlm load_model is {(peer['from_pretrained'] + peer['tokenizer']) / ours:.1f}x faster than "
              "transformers (model + tokenizer, imports excluded)")
    if baseline:
        print(f"lucidlm load_model: {results['baseline'][0]['load_model'] / ours:.1f}x faster than the baseline tree")

    print_table(f'Time to first token: lucidlm generate --model {MODEL} "{PROMPT}" -n 1 -t 0, a new process '
                f"on one core, median of {args.ttft_repeat}", ["seconds", "wall", "cpu", "wall - floor"], ttft)
    by_label = {r[0]: r for r in ttft}
    warm, torch_floor = by_label["lucidlm, warm derived cache"], by_label[TORCH_FLOOR]
    print(f"\nlucidlm generate, warm cache: first token {warm[1]:.2f} s, {warm[3]:.2f} s after the "
          f"import-torch floor ({torch_floor[1]:.2f} s; median of the differences within a round)")
    peer_ttft = by_label.get("transformers: same GGUF, 1 greedy token")
    if peer_ttft:
        print(f"lucidlm generate's first token comes {peer_ttft[1] / warm[1]:.1f}x sooner than transformers'")


if __name__ == "__main__":
    main()
