// visibleText, bytesLabel, escapeHTML.
import assert from "node:assert/strict";
import { test } from "node:test";

import { bytesLabel, escapeHTML, visibleText } from "../../src/lucidlm/explorer/static/lib/text.js";

test("whitespace gets visible stand-ins", () => {
  assert.equal(visibleText(" the\n"), "·the↵");
  assert.equal(visibleText("\t\r\n"), "→␍↵");
  assert.equal(visibleText(""), "");
});

test("controls, format characters and variation selectors become <U+XXXX>", () => {
  assert.equal(visibleText("a\u200db"), "a<U+200D>b"); // zero-width joiner (Cf)
  assert.equal(visibleText("\u0000\u007f"), "<U+0000><U+007F>"); // Cc
  assert.equal(visibleText("\ufeff"), "<U+FEFF>"); // byte order mark (Cf)
  assert.equal(visibleText("\u00ad"), "<U+00AD>"); // soft hyphen (Cf)
  assert.equal(visibleText("\u2764\ufe0f"), "\u2764<U+FE0F>"); // heart + emoji presentation selector
  assert.equal(visibleText("\u{e0001}"), "<U+E0001>"); // language tag, outside the BMP
  assert.equal(visibleText("\ud800"), "<U+D800>"); // a lone surrogate half
});

test("visible characters pass through unchanged", () => {
  assert.equal(visibleText("héllo, 日本 😀"), "héllo,·日本·😀");
});

test("bytesLabel writes lowercase hex pairs", () => {
  assert.equal(bytesLabel([0xe6, 0x97]), "⟨e6 97⟩");
  assert.equal(bytesLabel(Uint8Array.of(0x0a)), "⟨0a⟩");
  assert.equal(bytesLabel([]), "⟨⟩");
  assert.throws(() => bytesLabel([256]), /256 is not a byte/);
});

test("escapeHTML escapes the five special characters", () => {
  assert.equal(escapeHTML(`<a href="x">&'`), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
  assert.equal(escapeHTML("plain"), "plain");
});
