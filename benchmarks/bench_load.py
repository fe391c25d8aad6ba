"""How long ``lucidlm.load_model("smollm2-135m-instruct")`` takes, phase by phase, against transformers
loading the same GGUF file (``AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)``).

    flock /tmp/lucidlm-bench.lock .venv/bin/python benchmarks/bench_load.py [--repeat 3] [--baseline-src DIR]

Every load runs in a fresh process pinned to one core (a second load in the same process would
find the GGUF header cached), and the table shows the median of ``--repeat``. Rows:
- ``load_model``: the whole call, model + tokenizer (what a user waits for after the imports);
- the phases, timed in separate processes that make the same calls one by one: reading the GGUF
  header, dequantising (+ renaming, un-permuting q/k, fusing), building the model, loading the
  state dict into it, the tokenizer;
- transformers: ``from_pretrained`` of the same file, float32 (it also dequantises with numpy).
``--baseline-src DIR`` measures another lucidlm source tree too (e.g. ``git archive HEAD src``
unpacked in DIR), in the same run, for a before/after table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, pin_to_one_core, print_table  # noqa: E402

MODEL = "smollm2-135m-instruct"
PHASES = ["header", "dequantise", "build", "load_state", "tokenizer"]


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
    fast paths: the old one read the header with gguf.GGUFReader and always initialised)."""
    import inspect

    import torch

    from lucidlm.assets import asset_path
    from lucidlm.loading.checkpoint import load_state_checked
    from lucidlm.loading.gguf import config_from_gguf, state_from_gguf
    from lucidlm.models.transformer import build_model
    from lucidlm.tokenizers import load_tokenizer

    torch.set_num_threads(1)
    try:
        from lucidlm.gguf_file import open_gguf
    except ImportError:  # the tree before the fast reader
        from lucidlm.tokenizers.gguf_vocab import open_gguf
    path = asset_path(MODEL)
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
    load_tokenizer(path)
    lap("tokenizer")
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


CHILDREN = {"load_model": child_load_model, "phases": child_phases, "transformers": child_transformers}


def run_child(mode: str, src: str | None = None) -> dict[str, float]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, __file__, "--child", mode], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def medians(mode: str, repeat: int, src: str | None = None) -> dict[str, float]:
    runs = [run_child(mode, src) for _ in range(repeat)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per measurement (median)")
    parser.add_argument("--baseline-src", help="another lucidlm src/ directory to measure too (before)")
    parser.add_argument("--no-peer", action="store_true", help="skip transformers")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    core = pin_to_one_core()
    if args.child:
        print(json.dumps(CHILDREN[args.child]()))
        return
    print(f"{machine_line()}; pinned to core {core}; median of {args.repeat} fresh processes each")
    trees = {"lucidlm": None}
    if args.baseline_src:
        trees = {"before": str(Path(args.baseline_src).resolve()), "lucidlm": None}
    results = {name: (medians("load_model", args.repeat, src), medians("phases", args.repeat, src))
               for name, src in trees.items()}
    peer = None if args.no_peer else medians("transformers", args.repeat)
    header = ["seconds"] + list(trees) + (["transformers"] if peer else [])
    rows = [["import"] + [r[0]["import"] for r in results.values()] + ([peer["import"]] if peer else []),
            ["load model + tokenizer"] + [r[0]["load_model"] for r in results.values()]
            + ([peer["from_pretrained"] + peer["tokenizer"]] if peer else [])]
    rows += [[f"  phase: {p}"] + [r[1][p] for r in results.values()] + ([""] if peer else []) for p in PHASES]
    if peer:
        rows.append(["  transformers: model | tokenizer"] + [""] * len(trees)
                    + [f"{peer['from_pretrained']:.3f} | {peer['tokenizer']:.3f}"])
    print_table(f"Loading {MODEL} (GGUF Q4_1) on one core", header, rows)
    ours = results["lucidlm"][0]["load_model"]
    if peer:
        print(f"\nlucidlm load_model is {(peer['from_pretrained'] + peer['tokenizer']) / ours:.1f}x faster than "
              "transformers (model + tokenizer, imports excluded)")
    if args.baseline_src:
        print(f"lucidlm load_model: {results['before'][0]['load_model'] / ours:.1f}x faster than before")


if __name__ == "__main__":
    main()
