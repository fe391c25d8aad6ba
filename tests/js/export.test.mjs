// lib/export.js's pure helpers: the file name, which CSS a picture may carry, the canvas stand-in's
// style, the PNG's scale, the SVG wrapper. (The DOM part runs in Chromium: tests/test_explorer_export.py.)
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CANVAS_PROPERTIES, canvasStyle, escapeXml, exportFileName, pngScale, referencesOutside, resolveViewportUnits,
  selfContainedCss, svgDocument, xmlSafe,
} from "../../src/lucidlm/explorer/static/lib/export.js";

test("exportFileName: lucidlm-<panel>-<yyyymmdd-hhmmss>.<ext> in local time, zero-padded", () => {
  const date = new Date(2025, 0, 2, 3, 4, 5); // 2 January 2025, 03:04:05 local
  assert.equal(exportFileName("attention", "svg", date), "lucidlm-attention-20250102-030405.svg");
  assert.equal(exportFileName("runs", "png", new Date(2031, 11, 31, 23, 59, 58)), "lucidlm-runs-20311231-235958.png");
});

test("exportFileName: a panel name is made safe for a file name", () => {
  const date = new Date(2025, 0, 2, 3, 4, 5);
  assert.equal(exportFileName("Next token", "png", date), "lucidlm-next-token-20250102-030405.png");
  assert.equal(exportFileName("../../etc", "png", date), "lucidlm-etc-20250102-030405.png");
  assert.equal(exportFileName("", "svg", date), "lucidlm-panel-20250102-030405.svg");
  assert.equal(exportFileName(undefined, "svg", date), "lucidlm-panel-20250102-030405.svg");
});

test("referencesOutside: url() other than data:, and @import", () => {
  assert.equal(referencesOutside(".a { color: red; }"), false);
  assert.equal(referencesOutside(".a { background: url(\"data:image/png;base64,AAAA\"); }"), false);
  assert.equal(referencesOutside(".a { background: url( 'data:image/svg+xml,<svg/>' ); }"), false);
  assert.equal(referencesOutside(".a { background-image: radial-gradient(circle, #888 1.6px, transparent 2px); }"),
    false);
  assert.equal(referencesOutside(".a { background: url(\"/static/bg.png\"); }"), true);
  assert.equal(referencesOutside(".a { background: url(https://cdn.example/x.png); }"), true);
  assert.equal(referencesOutside("@font-face { font-family: X; src: URL('x.woff2'); }"), true);
  assert.equal(referencesOutside("@import url(\"other.css\");"), true);
  assert.equal(referencesOutside("@import \"other.css\";"), true);
});

test("selfContainedCss keeps the other rules, in order, one a line", () => {
  const rules = [".a { color: red; }", ".b { background: url(\"x.png\"); }", ".c { margin: 0px; }"];
  assert.equal(selfContainedCss(rules), ".a { color: red; }\n.c { margin: 0px; }");
  assert.equal(selfContainedCss([]), "");
});

test("canvasStyle: the listed properties that have a value, in the list's order", () => {
  const computed = { width: "300px", display: "block", position: "absolute", cursor: "crosshair", color: "red",
    "image-rendering": "pixelated", "z-index": "" };
  assert.equal(canvasStyle((p) => computed[p]),
    "display: block; position: absolute; width: 300px; image-rendering: pixelated");
  // what places a canvas is copied; what only matters to a live page (the pointer) is not
  for (const p of ["width", "height", "left", "top", "margin-top", "border-left-width", "grid-column-start"]) {
    assert.ok(CANVAS_PROPERTIES.includes(p), p);
  }
  assert.ok(!CANVAS_PROPERTIES.includes("cursor"));
});

test("pngScale: 2 unless the PNG would pass 16,384 px a side or 64M pixels", () => {
  assert.equal(pngScale(1000, 800), 2);
  assert.equal(pngScale(1400, 8000), 2); // 2,800 x 16,000: under both limits
  assert.equal(pngScale(1000, 10000), 1.6384); // 16,384 / 10,000
  assert.equal(pngScale(20000, 100), 16384 / 20000); // a very wide panel
  assert.equal(pngScale(8000, 8000), 1); // 64M pixels exactly
  assert.equal(pngScale(1, 1, 3), 3);
  assert.throws(() => pngScale(0, 100), /nothing to draw/);
});

test("resolveViewportUnits: vh, vw, vmin, vmax become the page's pixels; nothing else changes", () => {
  // a 1400 x 900 window: 1vw = 14px, 1vh = 9px, vmin = vh, vmax = vw
  assert.equal(resolveViewportUnits(".a { max-height: 78vh; }", 1400, 900), ".a { max-height: 702px; }");
  assert.equal(resolveViewportUnits(".a { width: min(760px, 60vw); }", 1400, 900), ".a { width: min(760px, 840px); }");
  assert.equal(resolveViewportUnits(".a { margin: -5vh .5vw 10vmin 10vmax; }", 1400, 900),
    ".a { margin: -45px 7px 90px 140px; }");
  assert.equal(resolveViewportUnits(".a { height: calc(100dvh - 20px); }", 1400, 900), ".a { height: calc(900px - 20px); }");
  assert.equal(resolveViewportUnits(".a { height: 33.3vh; }", 1400, 900), ".a { height: 299.7px; }");
  // not a length: class names, other units, colours are left alone
  const untouched = ".b-2vh .x12vw { width: 12px; font-size: 1.2em; color: #12fvh; }";
  assert.equal(resolveViewportUnits(untouched, 1400, 900), untouched);
});

test("xmlSafe: characters XML 1.0 forbids become U+FFFD; tab, newline, CR and the rest stay", () => {
  assert.equal(xmlSafe("a\u0000b\u0001c\u0008d\u000Be\u000Cf\u001Fg\uFFFEh\uFFFF"),
    "a\uFFFDb\uFFFDc\uFFFDd\uFFFDe\uFFFDf\uFFFDg\uFFFDh\uFFFD");
  assert.equal(xmlSafe("tab\tnl\ncr\r é 日本 😀 \u007F"), "tab\tnl\ncr\r é 日本 😀 \u007F");
});

test("escapeXml", () => {
  assert.equal(escapeXml("a < b & \"c\" > d"), "a &lt; b &amp; &quot;c&quot; &gt; d");
  assert.equal(escapeXml(42), "42");
});

test("svgDocument: the panel's size at the scale, its own coordinates in the viewBox, on white", () => {
  const xhtml = "<body xmlns=\"http://www.w3.org/1999/xhtml\"><p>hi</p></body>";
  const svg = svgDocument(xhtml, 300, 150, { scale: 2, title: "lucidlm explorer: A & B" });
  assert.equal(svg,
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"300\" viewBox=\"0 0 300 150\">" +
    "<title>lucidlm explorer: A &amp; B</title>" +
    "<rect width=\"300\" height=\"150\" fill=\"#ffffff\"/>" +
    "<foreignObject x=\"0\" y=\"0\" width=\"300\" height=\"150\">" + xhtml + "</foreignObject></svg>");
  assert.ok(svgDocument(xhtml, 10, 20).startsWith("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"20\" "));
  assert.ok(!svgDocument(xhtml, 10, 20).includes("<title>"));
});
