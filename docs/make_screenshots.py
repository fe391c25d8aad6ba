"""Take the README's Explorer screenshots (docs/images/explorer-*.png) from a real `lucidlm explore`.

Run after `make demo` (so the demo's GPT, tokenizer and run are there), from the repository root:

    .venv/bin/python docs/make_screenshots.py

The Cross-attention and Molecules screenshots need their models, each taken only when it is there:
`lucidlm seq2seq train --task date` (runs/seq2seq/date, about a minute) and the MOSES CPU recipe
(runs/moses_cpu/best, configs/moses_cpu.toml).

It starts `lucidlm explore` with its defaults on a free port, opens each panel in Debian's chromium
(Playwright), does what a student would do there (runs a prompt, clicks a head, generates a few
tokens), and saves one 1400 x 900 screenshot per panel.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from browser import launch_chromium  # noqa: E402

OUT = Path(__file__).parent / "images"


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with explorer() as url:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            text = quote("Tokenizers don't see letters: naïve café, привет, 😀\n\tdef square(x): return x ** 2")
            page.goto(f"{url}/?panel=tokens&ttext={text}")
            page.wait_for_selector(".tok-col[data-drawn]")
            page.wait_for_timeout(500)
            page.locator('.tok-col[data-tokenizer="cl100k_base"] .tok').nth(20).click()  # replay a token
            page.wait_for_selector(".tok-merges .merge-parts")
            page.screenshot(path=OUT / "explorer-tokens.png")

            page.goto(f"{url}/?panel=attention&model=smollm2-135m-instruct&text={quote('The capital of France is')}"
                      "&layer=3&head=4")
            page.wait_for_selector(".attn[data-draw-ms]")
            page.wait_for_timeout(300)
            page.screenshot(path=OUT / "explorer-attention.png")

            page.goto(f"{url}/?panel=walkthrough&model=smollm2-135m-instruct&text={quote('The cat sat on the')}")
            page.wait_for_selector("math")
            page.wait_for_timeout(300)
            page.locator("text=attention scores").first.scroll_into_view_if_needed()
            page.screenshot(path=OUT / "explorer-walkthrough.png")

            page.goto(f"{url}/?panel=next&model=smollm2-135m-instruct&text={quote('The capital of France is')}"
                      "&temp=0.7&topp=0.9")
            page.wait_for_selector("text=greedy next")
            page.wait_for_timeout(500)
            page.get_by_role("button", name="generate 10").click()
            page.wait_for_timeout(6000)
            page.screenshot(path=OUT / "explorer-next.png")

            # the head that carries " Paris" (the scan's reddest cell), zeroed: the answer changes
            page.goto(f"{url}/?panel=intervene&model=smollm2-135m-instruct&text={quote('The capital of France is')}"
                      "&edits=zero:head:23:4")
            page.wait_for_selector("#iv-summary:has-text('P(')", timeout=60_000)
            page.click("#iv-scan")
            page.wait_for_selector("[data-cells]", timeout=120_000)
            page.wait_for_timeout(500)
            page.screenshot(path=OUT / "explorer-intervene.png")

            page.goto(f"{url}/?panel=compare")  # France vs Italy: which heads attend differently
            page.wait_for_selector(".cmp[data-kl]", timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=OUT / "explorer-compare.png")

            page.goto(f"{url}/?panel=embeddings")  # embeds its example sentences on opening
            page.wait_for_selector("svg circle")
            page.wait_for_timeout(300)
            page.screenshot(path=OUT / "explorer-embeddings.png")

            page.goto(f"{url}/?panel=runs&run=runs/demo/gpt")
            page.wait_for_selector(".runs-panel[data-points]")
            page.wait_for_timeout(500)
            page.screenshot(path=OUT / "explorer-runs.png")
            browser.close()
    trained_models()
    for path in sorted(OUT.glob("explorer-*.png")):
        print(path)


SEQ2SEQ_MODEL = Path("runs/seq2seq/date")
MOLECULE_MODEL = Path("runs/moses_cpu/best")


def trained_models() -> None:
    """The panels of models a user trains: an encoder-decoder's cross-attention, a SMILES GPT's molecules."""
    from playwright.sync_api import sync_playwright

    models = [m for m in (SEQ2SEQ_MODEL, MOLECULE_MODEL) if m.exists()]
    for m in {SEQ2SEQ_MODEL, MOLECULE_MODEL} - set(models):
        print(f"no {m}: its screenshot is skipped")
    if not models:
        return
    with explorer(*[arg for m in models for arg in ("--model", str(m))]) as url:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            if SEQ2SEQ_MODEL in models:
                page.goto(f"{url}/?panel=alignment&model={quote(str(SEQ2SEQ_MODEL))}&text={quote('March 3, 2021')}")
                page.wait_for_selector(".align-answer[data-output]")
                page.wait_for_timeout(300)
                page.screenshot(path=OUT / "explorer-alignment.png")
            if MOLECULE_MODEL in models:
                page.goto(f"{url}/?panel=molecules&model={quote(str(MOLECULE_MODEL))}&n=8")
                page.wait_for_selector(".mol-grid[data-count='8']", timeout=60_000)
                page.wait_for_timeout(500)
                page.screenshot(path=OUT / "explorer-molecules.png")
            browser.close()


@contextlib.contextmanager
def explorer(*args: str) -> Iterator[str]:
    """`lucidlm explore ARGS` on a free port, until it says where it is; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lucidlm.cli", "explore", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            print(line, end="")
            if "the explorer is at" in line:
                break
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
