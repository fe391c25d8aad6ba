"""The Explorer in a real browser (Playwright driving Debian's chromium), against the issue's goals:

- first paint of the page once the model is loaded (goal < 1 s);
- the Tokens panel: one keystroke in 10,000 characters until every column shows its new tokens
  (goal 100 ms), with one tokenizer and with the five default ones;
- the Attention panel: a 512-token SmolLM2 prompt, from the trace's answer until the layers x heads
  grid and the first head are drawn (goal 2 s).

The explorer runs as a user runs it, `lucidlm explore` in its own process (a server thread inside
the benchmark's process would share its interpreter lock with Playwright's driver). Each figure is
printed beside its floor, measured in the same run and browser: for a keystroke,
the browser's own frame for the same keystroke in the same 10,000-character textarea on an empty
page, plus one empty round trip to the same server (GET /api/info); for the first paint, an empty page from the server.

    python benchmarks/bench_explorer.py [--keystrokes 15]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _common import machine_line, print_table  # noqa: E402
from browser import TOKENS_KEYSTROKE as KEYSTROKE  # noqa: E402
from browser import launch_chromium  # noqa: E402

SMOL, MINILM = "smollm2-135m-instruct", "all-minilm-l6-v2"
TEXT = ("The quick brown fox, naïve café 😀 jumps.\n\tdef f(x): return x ** 2\n" * 200)[:10_000]
PLAIN = (open(Path(__file__).parents[1] / "src/lucidlm/data/tinyshakespeare.txt").read())[:10_000]
DEFAULT_COLUMNS = "gpt2,cl100k_base,o200k_base,smollm2-135m-instruct,all-minilm-l6-v2"


# the browser's own cost of a keystroke: the textarea changed, until the frame that shows it is done
RELAYOUT = """() => new Promise((resolve) => { const ta = document.querySelector('textarea');
  const t0 = performance.now(); ta.value += 'x'; ta.dispatchEvent(new Event('input'));
  requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - t0), 0)); })"""

ROUND_TRIP = """async () => { const t0 = performance.now(); await (await fetch('/api/info')).json();
  return performance.now() - t0; }"""


@contextlib.contextmanager
def explorer():
    """`lucidlm explore` on a free port, its first model loaded; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "lucidlm.cli", "explore", "--model", SMOL, "--model", MINILM, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "the explorer is at" in line:
                break
        else:
            raise RuntimeError(f"lucidlm explore did not start: exit code {proc.wait()}")
        url = f"http://127.0.0.1:{port}"
        for name in DEFAULT_COLUMNS.split(","):  # load every tokenizer before timing
            request = urllib.request.Request(f"{url}/api/tokens", data=json.dumps({"tokenizer": name, "text": "hi"})
                                             .encode(), headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request).read()
        yield url
    finally:
        proc.terminate()
        proc.wait()


def keystrokes(page, n: int) -> float:
    """Median ms from a keystroke to the frame that shows every column's new tokens."""
    times = []
    for _ in range(n):
        times.append(page.evaluate(KEYSTROKE))
        page.wait_for_timeout(150)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keystrokes", type=int, default=15)
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        print(f"skipped: {exc} (pip install playwright; the browser is Debian's chromium: make test installs it)")
        return
    if not Path("/usr/bin/chromium").exists():
        print("skipped: /usr/bin/chromium is missing (apt-get install -y --no-install-recommends chromium)")
        return
    from lucidlm.explorer.workspace import Workspace

    print(machine_line())
    ws = Workspace([SMOL, MINILM])  # here only to find a 512-token prompt
    rows = []
    with explorer() as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        # first paint: the page and its first panel, against an empty page from the same server
        paints, ready = [], []
        for _ in range(5):
            started = time.perf_counter()
            page.goto(f"{url}/?panel=tokens&toks=gpt2")
            page.wait_for_selector(".tok-col[data-drawn]")
            ready.append((time.perf_counter() - started) * 1000)
            paints.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
        empty = []
        for _ in range(5):
            page.goto(f"{url}/api/info")
            empty.append(page.evaluate("performance.timing.responseEnd - performance.timing.navigationStart"))
        rows.append(["first contentful paint (goal < 1000 ms)", statistics.median(paints),
                     f"empty response {statistics.median(empty):.0f} ms"])
        rows.append(["  tokens panel drawn (navigation to spans)", statistics.median(ready), ""])

        # the floor of a keystroke: this browser's frame for it in a bare textarea, one round trip
        page.goto(f"{url}/?panel=tokens&toks=gpt2")
        page.wait_for_selector(".tok-col[data-drawn]")
        round_trip = statistics.median([page.evaluate(ROUND_TRIP) for _ in range(15)])
        page.set_content("<textarea rows=4 style='width:100%;font-family:system-ui,sans-serif'></textarea>")
        for label, text in (("10,000 chars, emoji + code", TEXT), ("10,000 chars of Tiny Shakespeare", PLAIN)):
            page.fill("textarea", text)
            relayout = statistics.median([page.evaluate(RELAYOUT) for _ in range(15)])
            floor = f"keystroke frame {relayout:.0f} + round trip {round_trip:.0f} = {relayout + round_trip:.0f} ms"
            for columns in ("gpt2", DEFAULT_COLUMNS):
                page.goto(f"{url}/?panel=tokens&ttext=x&toks={columns}")
                page.wait_for_selector(".tok-col[data-drawn]")
                page.fill("#ttext", text)
                page.wait_for_timeout(1500)
                n = len(columns.split(","))
                rows.append([f"keystroke, {label}, {n} tokenizer{'s' if n > 1 else ''} (goal 100 ms)",
                             keystrokes(page, args.keystrokes), floor])
            page.set_content("<textarea rows=4 style='width:100%;font-family:system-ui,sans-serif'></textarea>")

        # attention: a 512-token prompt, from the trace's answer to the grid and head drawn
        words = ("The cat sat on the mat and watched the birds in the old tree outside. " * 60).split(" ")
        lo, hi = 1, len(words)
        while lo < hi:  # the most words whose text is <= 512 tokens
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if len(ws.prompt_ids(SMOL, " ".join(words[:mid]))) <= 512 else (lo, mid - 1)
        text = " ".join(words[:lo])
        draws = []
        for _ in range(3):
            page.goto(f"{url}/?panel=attention&model={SMOL}")
            page.fill("#prompt", text)
            page.click("#run")
            page.wait_for_selector(".attn[data-draw-ms]", timeout=60_000)
            draws.append(float(page.get_attribute(".attn", "data-draw-ms")))
        rows.append([f"attention, {len(ws.prompt_ids(SMOL, text))} tokens, 30 x 9 grid + one head (goal 2000 ms)",
                     statistics.median(draws), "after the trace's answer"])
        browser.close()
    print_table("Explorer in chromium (medians, ms)", ["what", "ms", "floor / note"], rows)


if __name__ == "__main__":
    main()
