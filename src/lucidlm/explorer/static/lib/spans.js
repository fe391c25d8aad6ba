// How the Tokens panel writes one token: its text with whitespace made visible, its raw bytes
// when it is only part of a character, the tooltip that names its id and bytes, and the parts of
// a BPE merge replay. Pure functions (no DOM), so they are tested under Node (tests/js/tokens.test.mjs).

import { bytesLabel, visibleText } from "./text.js";

/**
 * The bytes of a hex string as the API sends them.
 * @param {string|null} hex e.g. "e6 97" (null or "" -> no bytes)
 * @returns {Uint8Array}
 * @example hexToBytes("68 69") // Uint8Array [0x68, 0x69]
 */
export function hexToBytes(hex) {
  if (!hex) return new Uint8Array(0);
  return Uint8Array.from(hex.trim().split(/\s+/), (pair) => {
    if (!/^[0-9a-fA-F]{2}$/.test(pair)) throw new RangeError(`hexToBytes: ${pair} is not a hex byte`);
    return Number.parseInt(pair, 16);
  });
}

// fatal: an invalid sequence (half of a character) throws instead of becoming U+FFFD, which would
// hide exactly what a byte-level tokenizer does with it.
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The text of some bytes when they are valid UTF-8 on their own, else null.
 * @param {Uint8Array} bytes
 * @returns {string|null} e.g. [0xc3, 0xa9] -> "é", [0xc3] -> null
 */
export function decodeUTF8(bytes) {
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * Text with whitespace made visible (visibleText) that still breaks lines where the text does:
 * each newline becomes "↵" followed by a real newline, so a pasted paragraph keeps its shape.
 * @param {string} s
 * @returns {string}
 * @example visibleLines("a b\nc") // "a·b↵\nc"
 */
export function visibleLines(s) {
  return s.split("\n").map(visibleText).join("↵\n");
}

/**
 * What a token span shows. A token whose bytes are not a whole character (text null) shows its
 * bytes, "⟨f0 9f⟩", never U+FFFD; an empty token shows "∅" so it still has something to hover.
 * @param {{text: string|null, hex: string|null}} token as /api/tokens sends it
 * @param {boolean} showWhitespace spaces as "·", newlines as "↵", tabs as "→"
 * @returns {string}
 * @example tokenLabel({text: " the", hex: "20 74 68 65"}, true) // "·the"
 * @example tokenLabel({text: null, hex: "f0 9f"}, true) // "⟨f0 9f⟩"
 */
export function tokenLabel(token, showWhitespace) {
  if (token.text === null || token.text === undefined) return bytesLabel(hexToBytes(token.hex));
  if (token.text === "") return "∅";
  return showWhitespace ? visibleLines(token.text) : token.text;
}

const UTF8 = new TextEncoder();

/**
 * The bytes of a text as the hex string the API uses ("68 69"), for tokens whose text says it all.
 * @param {string} text
 * @returns {string}
 */
export function textHex(text) {
  return Array.from(UTF8.encode(text), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/**
 * POST /api/tokens answers in columns (ids, starts, ends, other, special, and pieces for WordPiece:
 * ~10x faster to send than one object per token); this makes one object per token of them. A
 * token not in `other` or `pieces` is a run of the text: its text is text.slice(start, end).
 * @param {{text: string, ids: number[], starts: (number|null)[], ends: (number|null)[],
 *          other: Object<string, {text: string|null, hex: string|null}>, special: number[]}} result
 * @returns {{id: number, text: string|null, hex: string|null, start: number|null, end: number|null,
 *            special: boolean}[]}
 * @example expandTokens({text: "hi", ids: [5], starts: [0], ends: [2], other: {}, special: []})
 *   // [{id: 5, text: "hi", hex: null, start: 0, end: 2, special: false}]
 */
export function expandTokens(result) {
  const special = new Set(result.special);
  return result.ids.map((id, k) => {
    const other = result.other[k];
    const start = result.starts[k];
    const end = result.ends[k];
    const text = result.pieces ? result.pieces[k] : other ? other.text : result.text.slice(start, end);
    return {id, start, end, special: special.has(k), text, hex: other ? other.hex : null};
  });
}

/**
 * A token's tooltip and info line: its position, id, text and bytes.
 * @param {{id: number, text: string|null, hex: string|null, start: number|null, end: number|null,
 *          special: boolean}} token
 * @param {number} i its position in the list
 * @returns {string}
 * @example tokenInfo({id: 31373, text: "hello", hex: "68 65 6c 6c 6f", start: 0, end: 5, special: false}, 0)
 *   // 'token 0 · id 31373 · "hello" · bytes 68 65 6c 6c 6f · characters 0–5'
 */
export function tokenInfo(token, i) {
  const parts = [`token ${i}`, `id ${token.id}`];
  parts.push(token.text === null ? "part of a character (not valid UTF-8 on its own)" : `"${visibleText(token.text)}"`);
  const hex = token.hex ?? (token.text !== null && token.start !== null ? textHex(token.text) : null);
  if (hex) parts.push(`bytes ${hex}`);
  if (token.start !== null && token.start !== undefined) parts.push(`characters ${token.start}–${token.end}`);
  if (token.special) parts.push("special token");
  return parts.join(" · ");
}

/**
 * The header line of one tokenizer's column.
 * @param {string} name tokenizer
 * @param {number} count tokens
 * @param {number} chars characters of the text tokenized
 * @returns {string}
 * @example countLine("o200k_base", 12, 38) // "o200k_base — 12 tokens, 3.2 chars/token"
 */
export function countLine(name, count, chars) {
  const noun = count === 1 ? "token" : "tokens";
  const ratio = count > 0 ? `, ${(chars / count).toFixed(1)} chars/token` : "";
  return `${name} — ${count.toLocaleString("en")} ${noun}${ratio}`;
}

/**
 * One part of a BPE merge replay (a hex byte string) as text when its bytes are valid UTF-8,
 * whitespace made visible, else as bytes.
 * @param {string} hex e.g. "20 74"
 * @returns {{label: string, text: boolean}} e.g. {label: "·t", text: true}; "e6" -> {label: "⟨e6⟩", text: false}
 */
export function partLabel(hex) {
  const bytes = hexToBytes(hex);
  const text = decodeUTF8(bytes);
  return text === null || text === "" ? { label: bytesLabel(bytes), text: false } : { label: visibleText(text), text: true };
}

/**
 * The parts after one merge step: the pair at `merge` and `merge + 1` joined (the bytes
 * concatenated). /api/merges gives the parts *before* each step; this gives the step's result.
 * @param {string[]} parts hex strings
 * @param {number} merge index of the pair's left part
 * @returns {string[]}
 * @example applyMerge(["68", "65", "6c"], 0) // ["68 65", "6c"]
 */
export function applyMerge(parts, merge) {
  if (!(merge >= 0 && merge + 1 < parts.length)) throw new RangeError(`applyMerge: no pair at ${merge}`);
  return [...parts.slice(0, merge), `${parts[merge]} ${parts[merge + 1]}`, ...parts.slice(merge + 2)];
}

/**
 * What changed between two tokenizations of an edited text: the tokens kept at the start
 * (`prefix`: same id and text at the same place) and at the end (`suffix`: same id and text at the
 * same distance from the end). Typing one character usually changes one or two tokens in the
 * middle, so the page replaces only those instead of redrawing thousands.
 * @param {{id: number, text: string|null, start: number|null, end: number|null}[]} before
 * @param {number} beforeLength the length of the text `before` came from
 * @param {{id: number, text: string|null, start: number|null, end: number|null}[]} after
 * @param {number} afterLength
 * @returns {{prefix: number, suffix: number}} the tokens [prefix, length - suffix) differ
 * @example tokenDiff([{id: 1, text: "a", start: 0, end: 1}], 1, [{id: 1, text: "a", start: 0, end: 1},
 *   {id: 2, text: "b", start: 1, end: 2}], 2) // {prefix: 1, suffix: 0}
 */
export function tokenDiff(before, beforeLength, after, afterLength) {
  const same = (a, b) => a.id === b.id && a.text === b.text && a.special === b.special;
  const max = Math.min(before.length, after.length);
  let prefix = 0;
  while (prefix < max && same(before[prefix], after[prefix]) && before[prefix].start === after[prefix].start) prefix++;
  let suffix = 0;
  while (suffix < max - prefix) {
    const a = before[before.length - 1 - suffix];
    const b = after[after.length - 1 - suffix];
    // the same distance from the end of the text (null spans: WordPiece, BOS: compare tokens only)
    const aligned = a.end === null || b.end === null ? a.end === b.end : beforeLength - a.end === afterLength - b.end;
    if (!same(a, b) || !aligned) break;
    suffix++;
  }
  return { prefix, suffix };
}
