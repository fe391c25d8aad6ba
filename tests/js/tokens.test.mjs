// lib/spans.js: how the Tokens panel writes tokens, their info and BPE merge parts.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  applyMerge, countLine, decodeUTF8, expandTokens, hexToBytes, partLabel, textHex, tokenDiff, tokenInfo,
  tokenLabel, visibleLines,
} from "../../src/lucidlm/explorer/static/lib/spans.js";

test("hexToBytes reads the API's space-separated hex", () => {
  assert.deepEqual(Array.from(hexToBytes("68 65 6c")), [0x68, 0x65, 0x6c]);
  assert.deepEqual(Array.from(hexToBytes("F0")), [0xf0]);
  assert.equal(hexToBytes(null).length, 0);
  assert.equal(hexToBytes("").length, 0);
  assert.throws(() => hexToBytes("6"), RangeError);
  assert.throws(() => hexToBytes("zz"), RangeError);
});

test("decodeUTF8 refuses half a character instead of writing U+FFFD", () => {
  assert.equal(decodeUTF8(Uint8Array.of(0xc3, 0xa9)), "é");
  assert.equal(decodeUTF8(Uint8Array.of(0xc3)), null);
  assert.equal(decodeUTF8(Uint8Array.of(0xf0, 0x9f, 0x98)), null); // 😀 = f0 9f 98 80, cut short
  assert.equal(decodeUTF8(Uint8Array.of(0x80)), null); // a continuation byte alone
});

test("visibleLines keeps the real line breaks after ↵", () => {
  assert.equal(visibleLines("a b\nc"), "a·b↵\nc");
  assert.equal(visibleLines("\n\n"), "↵\n↵\n");
  assert.equal(visibleLines("\tx"), "→x");
  assert.equal(visibleLines(""), "");
});

test("tokenLabel: text, visible whitespace, bytes for partial characters", () => {
  assert.equal(tokenLabel({ text: " the\n", hex: "20 74 68 65 0a" }, true), "·the↵\n");
  assert.equal(tokenLabel({ text: " the\n", hex: "20 74 68 65 0a" }, false), " the\n");
  assert.equal(tokenLabel({ text: null, hex: "20 f0 9f 98" }, true), "⟨20 f0 9f 98⟩");
  assert.equal(tokenLabel({ text: null, hex: "80" }, false), "⟨80⟩");
  assert.equal(tokenLabel({ text: "", hex: "" }, true), "∅");
  assert.equal(tokenLabel({ text: "[CLS]", hex: null }, true), "[CLS]"); // WordPiece: no bytes
  assert.ok(!tokenLabel({ text: null, hex: "e6 97" }, true).includes("\ufffd"));
});

test("tokenInfo names the id, the text or the fact that it is a partial character, the bytes", () => {
  assert.equal(tokenInfo({ id: 31373, text: "hello", hex: "68 65 6c 6c 6f", start: 0, end: 5, special: false }, 0),
    'token 0 · id 31373 · "hello" · bytes 68 65 6c 6c 6f · characters 0–5');
  assert.equal(tokenInfo({ id: 222, text: null, hex: "80", start: 6, end: 7, special: false }, 2),
    "token 2 · id 222 · part of a character (not valid UTF-8 on its own) · bytes 80 · characters 6–7");
  assert.equal(tokenInfo({ id: 101, text: "[CLS]", hex: null, start: null, end: null, special: true }, 0),
    'token 0 · id 101 · "[CLS]" · special token');
});

test("countLine: tokens and characters per token", () => {
  assert.equal(countLine("o200k_base", 12, 38), "o200k_base — 12 tokens, 3.2 chars/token");
  assert.equal(countLine("gpt2", 1, 5), "gpt2 — 1 token, 5.0 chars/token");
  assert.equal(countLine("gpt2", 0, 0), "gpt2 — 0 tokens");
  assert.equal(countLine("gpt2", 12345, 50000), "gpt2 — 12,345 tokens, 4.1 chars/token");
});

test("partLabel decodes whole characters, shows bytes otherwise", () => {
  assert.deepEqual(partLabel("20 74"), { label: "·t", text: true });
  assert.deepEqual(partLabel("e6 97 a5"), { label: "日", text: true });
  assert.deepEqual(partLabel("e6 97"), { label: "⟨e6 97⟩", text: false });
  assert.deepEqual(partLabel("0a"), { label: "↵", text: true });
});

test("applyMerge joins the pair at the index (the step's result)", () => {
  // gpt2's "hello": 68 65 6c 6c 6f -> he l l o -> he ll o -> hell o -> hello
  let parts = ["68", "65", "6c", "6c", "6f"];
  for (const merge of [0, 1, 0, 0]) parts = applyMerge(parts, merge);
  assert.deepEqual(parts, ["68 65 6c 6c 6f"]);
  assert.deepEqual(applyMerge(["61", "62", "63"], 1), ["61", "62 63"]);
  assert.throws(() => applyMerge(["61"], 0), RangeError);
  assert.throws(() => applyMerge(["61", "62"], -1), RangeError);
});

test("expandTokens: a token not in `other` is a slice of the text (UTF-16 offsets, as the API sends)", () => {
  // "Hi 😀" in o200k_base-like columns: the emoji is two UTF-16 units, so " 😀" spans 2..5
  const result = { text: "Hi 😀!", ids: [1, 2, 3], starts: [0, 2, 5], ends: [2, 5, 6],
    other: { 2: { text: null, hex: "21" } }, special: [0] };
  const tokens = expandTokens(result);
  assert.deepEqual(tokens[0], { id: 1, start: 0, end: 2, special: true, text: "Hi", hex: null });
  assert.equal(tokens[1].text, " 😀");
  assert.equal(tokens[2].text, null);
  assert.equal(tokens[2].hex, "21");
});

test("textHex: UTF-8 bytes of a text", () => {
  assert.equal(textHex("hé"), "68 c3 a9");
  assert.equal(textHex("😀"), "f0 9f 98 80");
});

test("tokenDiff: typing at the end keeps every token before the edit", () => {
  const t = (id, text, start) => ({ id, text, start, end: start + text.length, special: false });
  const before = [t(1, "The", 0), t(2, " cat", 3), t(3, " sa", 7)];
  const after = [t(1, "The", 0), t(2, " cat", 3), t(4, " sat", 7)];
  assert.deepEqual(tokenDiff(before, 10, after, 11), { prefix: 2, suffix: 0 });
});

test("tokenDiff: an edit in the middle keeps the tail at the same distance from the end", () => {
  const t = (id, text, start) => ({ id, text, start, end: start + text.length, special: false });
  const before = [t(1, "a", 0), t(2, " b", 1), t(3, " c", 3)];
  const after = [t(1, "a", 0), t(5, " bb", 1), t(3, " c", 4)]; // " b" -> " bb": " c" moved by one
  assert.deepEqual(tokenDiff(before, 5, after, 6), { prefix: 1, suffix: 1 });
  // same ids at shifted places do not count as kept at the start
  assert.deepEqual(tokenDiff([t(1, "a", 0)], 1, [t(1, "a", 1)], 2), { prefix: 0, suffix: 1 });
});

test("tokenDiff: identical lists are all prefix", () => {
  const t = (id, text, start) => ({ id, text, start, end: start + text.length, special: false });
  const list = [t(1, "a", 0), t(2, "b", 1)];
  assert.deepEqual(tokenDiff(list, 2, list, 2), { prefix: 2, suffix: 0 });
});
