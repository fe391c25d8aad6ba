"""The Explorer's "PNG" / "SVG" header buttons (lib/export.js) on every panel, in a real browser.

For each panel the test opens it, waits until it has drawn, clicks both buttons and catches the
downloads. Then, checked here in Python, independently of the page's code:
- the file names are lucidlm-<panel>-<yyyymmdd-hhmmss>.svg/.png, stamped with the time of the click;
- the SVG parses as XML, is as wide and as tall as the panel's box on the page, holds the text the
  panel shows (read from the page's DOM), and references nothing: no http(s) URL but the XML
  namespaces, no src/href but data: URLs and #fragments, no CSS url() but data:;
- the PNG decodes (Pillow, which matplotlib already needs), is the panel's size at 2x, is not one
  flat colour, and looks like the page: the part of the panel on screen matches the browser's own
  screenshot of it; where the panel draws on a <canvas> (heatmaps, the loss chart) the PNG shows
  that canvas's own pixels (toDataURL) at the canvas's place; a scrolled box (the Tokens panel's
  spans) shows the part scrolled to. Each to a small mean difference.

A tiny random GPT checkpoint (2 layers x 4 heads, a 300-token BPE) serves every model panel, so
the file stays quick; the Embeddings panel uses all-MiniLM-L6-v2 (22M parameters), the runs panel
a metrics.jsonl written here. One server and one browser for the module. The PNGs go to
$LUCIDLM_ARTIFACTS (default test-artifacts/explorer) as export-<panel>.png.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from browser import ConsoleLog, RequestLog, chromium, serve_app, skip_without_browser

ARTIFACTS = Path(os.environ.get("LUCIDLM_ARTIFACTS", "test-artifacts/explorer"))
PROMPT = "To be, or not to be"
RUN = "demo"
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xhtml", "http://www.w3.org/1998/Math/MathML",
              "http://www.w3.org/1999/xlink", "http://www.w3.org/2000/xmlns/"}
LINK_ATTRIBUTES = {"href", "src", "srcset", "poster", "{http://www.w3.org/1999/xlink}href"}

# the Tokens panel is settled: every column answered the latest request and drew its spans
TOKENS_READY = """() => {
  const panel = document.querySelector('.tokens-panel');
  return !!panel && panel.dataset.gen !== undefined && [...panel.querySelectorAll('.tok-col')].every((c) =>
    c.dataset.gen === panel.dataset.gen && c.dataset.drawn !== undefined);
}"""

# The largest canvas with something drawn on it: its place in the panel (CSS px), its pixels, its CSS size.
LARGEST_CANVAS = """() => {
  const panel = document.getElementById('panel').getBoundingClientRect();
  const drawn = [...document.querySelectorAll('#panel canvas')].filter((c) => {
    if (c.width === 0 || c.height === 0) return false;
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) return true;  // some pixel is not transparent
    return false;
  });
  if (!drawn.length) return null;
  const area = (c) => c.getBoundingClientRect().width * c.getBoundingClientRect().height;
  const c = drawn.reduce((a, b) => (area(b) > area(a) ? b : a));
  const box = c.getBoundingClientRect();
  const style = getComputedStyle(c);
  const inset = (side) => parseFloat(style[`border${side}Width`]) + parseFloat(style[`padding${side}`]);
  return {left: box.left - panel.left + inset('Left'), top: box.top - panel.top + inset('Top'),
          width: box.width - inset('Left') - inset('Right'), height: box.height - inset('Top') - inset('Bottom'),
          png: c.toDataURL('image/png'), cls: c.className};
}"""


def _panels(model: str) -> dict[str, tuple[dict, str, str]]:
    """panel -> (URL keys, what says it has drawn (a selector, or a JS function), an element whose
    text the picture must hold)."""
    keys = {"model": model, "text": PROMPT}
    return {
        # 30 lines: the spans' box scrolls; the bell (U+0007) is a character XML 1.0 forbids
        "tokens": ({"ttext": (PROMPT + "\n") * 30 + "a bell: \x07", "toks": "gpt2"}, TOKENS_READY, ".tok-head"),
        "attention": (keys, ".attn[data-draw-ms]", ".attn-headbox h3"),
        "walkthrough": ({**keys, "wlayer": 0}, ".wt-stage:nth-of-type(3)", ".wt-stage h3"),
        "next": ({**keys, "lens": 4}, "#next-lens tbody tr", ".next-bar"),
        "intervene": (keys, "#iv-heatmap", ".iv-strongest"),
        "compare": ({"amodel": model, "atext": PROMPT, "bmodel": model, "btext": PROMPT, "bedit": "zero:head:0:1",
                     "head": "1:1"}, ".cmp-headview canvas.cmp-matrix:nth-of-type(1)", ".cmp-figure figcaption"),
        "embeddings": ({}, "#emb-scatter", "ol.emb-sentences li"),
        "runs": ({"run": RUN}, ".runs-panel[data-points] .uplot canvas", ".runs-panel .u-title"),
    }


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A lucidlm checkpoint directory: a random 2-layer GPT and a BPE trained on 20,000 characters."""
    import torch

    from lucidlm.loading.checkpoint import save_checkpoint
    from lucidlm.models import DecoderLM, ModelConfig
    from lucidlm.tokenizers import train_bpe
    from lucidlm.tokenizers.corpus import tiny_shakespeare

    torch.manual_seed(0)
    tokenizer = train_bpe(tiny_shakespeare()[:20_000], 300, pattern="gpt2")
    config = ModelConfig(vocab_size=300, n_layer=2, n_head=4, n_embd=32, max_seq_len=64)
    path = tmp_path_factory.mktemp("export-model") / "tiny-gpt"
    save_checkpoint(DecoderLM(config).eval(), path, tokenizer)
    return str(path)


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    skip_without_browser()
    from lucidlm.explorer.app import create_app
    from lucidlm.explorer.workspace import Workspace

    runs = tmp_path_factory.mktemp("export-runs")
    records = [{"step": s, "split": "train", "loss": round(10 / (1 + s / 5), 4)} for s in range(1, 41)]
    records += [{"step": s, "split": "val", "loss": round(10 / (1 + s / 5) + 0.3, 4)} for s in (10, 20, 30, 40)]
    (runs / RUN).mkdir()
    (runs / RUN / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with serve_app(create_app(Workspace([tiny_model], runs=[str(runs)]))) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    """A fresh page; after the test, nothing left the machine and the console stayed clean."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)
    page.requests, page.console = RequestLog(page), ConsoleLog(page)
    yield page
    assert page.requests.outside_loopback() == []
    assert page.console.errors == []
    page.close()


def download(page, fmt: str) -> tuple[str, bytes, float]:
    """Click the header's button for `fmt`; (the file's suggested name, its bytes, the click's time)."""
    clicked = time.time()
    with page.expect_download() as caught:
        page.click(f"#export-{fmt}")
    path = caught.value.path()
    return caught.value.suggested_filename, Path(path).read_bytes(), clicked


def check_name(name: str, panel: str, fmt: str, clicked: float) -> None:
    match = re.fullmatch(rf"lucidlm-{panel}-(\d{{8}}-\d{{6}})\.{fmt}", name)
    assert match, name
    stamped = datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").timestamp()  # local time, as the page writes it
    assert clicked - 2 <= stamped <= time.time() + 1, f"{name} is not stamped with the time of the click"


def text_of(el: ET.Element) -> str:
    """The text the picture shows, in document order (as the DOM's textContent), without <style>'s."""
    own = "" if el.tag.endswith("}style") else (el.text or "")
    return own + "".join(text_of(child) + (child.tail or "") for child in el)


def check_self_contained(text: str, svg: ET.Element) -> None:
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= NAMESPACES, f"the SVG names URLs: {sorted(urls - NAMESPACES)}"
    for el in svg.iter():
        for name, value in el.attrib.items():
            if name in LINK_ATTRIBUTES:
                assert value.startswith(("data:", "#")), f"<{el.tag} {name}={value[:60]!r}> points outside the file"
    assert not re.search(r"url\((?!\s*[\"']?data:)", text), "a CSS url() points outside the file"
    assert "@import" not in text


def difference(png, scale: float, box: dict, want) -> float:
    """Mean |PNG - want| (0..255 per channel) over `box` ({left, top, width, height}: CSS px in the
    panel), the PNG's pixels there brought down to `want`'s size (an RGB image of that box)."""
    from PIL import Image

    right, bottom = box["left"] + box["width"], box["top"] + box["height"]
    corners = [round(v * scale) for v in (box["left"], box["top"], right, bottom)]
    got = png.crop(corners).resize(want.size, Image.BOX)
    return float(np.abs(np.asarray(got, dtype=float) - np.asarray(want, dtype=float)).mean())


def canvas_pixels(canvas: dict):
    """A canvas's own pixels (toDataURL) over the white page, at its CSS size."""
    from PIL import Image

    own = Image.open(io.BytesIO(base64.b64decode(canvas["png"].split(",", 1)[1]))).convert("RGBA")
    white = Image.new("RGBA", own.size, (255, 255, 255, 255))
    size = (round(canvas["width"]), round(canvas["height"]))
    return Image.alpha_composite(white, own).convert("RGB").resize(size, Image.BOX)


def visible_part(page, selector: str = "#panel") -> tuple[dict, object]:
    """(box in the panel, the page's screenshot of it) for the part of `selector` that is in the
    viewport (the browser draws it; the export must look the same)."""
    from PIL import Image

    page.evaluate("() => window.scrollTo(0, 0)")
    panel = page.locator("#panel").bounding_box()
    box = page.locator(selector).first.bounding_box()
    header = page.locator("header").bounding_box()  # sticky: it covers what scrolls under it
    viewport = page.viewport_size
    left, top = max(box["x"], 0), max(box["y"], header["y"] + header["height"])
    right, bottom = min(box["x"] + box["width"], viewport["width"]), min(box["y"] + box["height"], viewport["height"])
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB").crop(
        (round(left), round(top), round(right), round(bottom)))
    return {"left": left - panel["x"], "top": top - panel["y"], "width": right - left, "height": bottom - top}, shot


@pytest.mark.parametrize("panel", ["tokens", "attention", "walkthrough", "next", "intervene", "compare",
                                   "embeddings", "runs"])
def test_every_panel_saves_as_svg_and_png(page, server, tiny_model, panel, request):
    from PIL import Image

    if panel == "embeddings":
        request.getfixturevalue("minilm_dir")  # all-MiniLM-L6-v2 cached, or the test is skipped
    keys, ready, text_selector = _panels(tiny_model)[panel]
    page.goto(f"{server}/?{urlencode({'panel': panel, **keys})}")
    if panel == "intervene":  # the head scan: one small heatmap more to draw
        page.locator(".iv[data-edits]").wait_for(state="attached")
        page.click("#iv-scan")
    if ready.startswith("()"):
        page.wait_for_function(ready)
    else:
        page.locator(ready).first.wait_for()
    if panel == "tokens":  # a picture cannot scroll: the part of a scrolled box on screen is the one to save
        page.locator(".tok-spans").first.evaluate("el => { el.scrollTop = 150; }")
        page.wait_for_function(TOKENS_READY)
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")  # painted
    box = page.locator("#panel").bounding_box()
    on_screen = visible_part(page)
    scrolled = visible_part(page, ".tok-spans") if panel == "tokens" else None
    shown = " ".join(page.locator(text_selector).first.text_content().split())
    canvas = page.evaluate(LARGEST_CANVAS)

    name, svg_bytes, clicked = download(page, "svg")
    check_name(name, panel, "svg", clicked)
    svg_text = svg_bytes.decode("utf-8")
    svg = ET.fromstring(svg_text)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    width, height = float(svg.get("width")), float(svg.get("height"))
    assert width == pytest.approx(box["width"], abs=1) and height == pytest.approx(box["height"], abs=1)
    assert shown and shown in " ".join(text_of(svg).split()), f"{shown!r} is not in the picture"
    check_self_contained(svg_text, svg)

    name, png_bytes, clicked = download(page, "png")
    check_name(name, panel, "png", clicked)
    assert png_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png_bytes)).convert("RGB")
    # 2 device pixels per CSS pixel, less where that would pass 64M pixels or 16,384 a side (export.js)
    scale = min(2, 16384 / width, 16384 / height, (64e6 / (width * height)) ** 0.5)
    assert image.width == round(width * scale) and image.height == round(height * scale)
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20, "the PNG is (nearly) one flat colour"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"export-{panel}.png").write_bytes(png_bytes)  # as the browser wrote it
    # Looks like the page: what the browser drew on screen, to a small mean difference (text edges
    # differ: the PNG's text is drawn at 2x and brought down). A line height off by 2 px, a box
    # not kept scrolled or a canvas 8 px off each made these 3-6x larger while the limits were set.
    assert difference(image, scale, *on_screen) < 6, "the PNG does not look like the panel on screen"
    if scrolled:
        assert difference(image, scale, *scrolled) < 10, "the scrolled tokens box shows another part in the PNG"
    if canvas is not None:
        assert difference(image, scale, canvas, canvas_pixels(canvas)) < 8, f"the {canvas['cls']} canvas is missing"
    assert page.locator("#status").inner_text().startswith("saved lucidlm-")
