// Showing token text: tokens often start with a space, end in a newline, or hold a zero-width
// character, and a reader has to see those to understand how the tokenizer split the text.

/** Whitespace with a visible stand-in of its own. */
const VISIBLE = {
  " ": "·",
  "\n": "↵",
  "\t": "→",
  "\r": "␍",
};

// Characters that draw nothing: controls (Cc), format characters such as the zero-width joiner or
// the byte order mark (Cf), lone surrogate halves (Cs), and the variation selectors U+FE00..FE0F
// (which only change how the previous character is drawn).
const INVISIBLE = /^(?:\p{Cc}|\p{Cf}|\p{Cs}|[\uFE00-\uFE0F])$/u;

/**
 * Token text with its invisible characters made visible: " " -> "·", "\n" -> "↵", "\t" -> "→",
 * "\r" -> "␍", and any other control, format or variation-selector character -> "<U+XXXX>".
 * @param {string} s
 * @returns {string}
 * @example visibleText(" the\n") // "·the↵"
 * @example visibleText("a\u200db") // "a<U+200D>b"
 */
export function visibleText(s) {
  let out = "";
  for (const ch of s) { // for..of walks code points, so an emoji stays one character
    if (Object.hasOwn(VISIBLE, ch)) {
      out += VISIBLE[ch];
    } else if (INVISIBLE.test(ch)) {
      out += `<U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}>`;
    } else {
      out += ch;
    }
  }
  return out;
}

/**
 * A token's raw bytes in hex, for tokens that are not whole UTF-8 characters (byte-level BPE
 * splits "日" = e6 97 a5 into pieces such as e6 97 + a5).
 * @param {ArrayLike<number>} bytesArray integers 0..255
 * @returns {string} e.g. bytesLabel([0xe6, 0x97]) === "⟨e6 97⟩"
 * @throws {RangeError} on a value that is not a byte
 */
export function bytesLabel(bytesArray) {
  const hex = Array.from(bytesArray, (b) => {
    if (!Number.isInteger(b) || b < 0 || b > 255) throw new RangeError(`bytesLabel: ${b} is not a byte (0..255)`);
    return b.toString(16).padStart(2, "0");
  });
  return `⟨${hex.join(" ")}⟩`;
}

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/**
 * Escape text for innerHTML and attribute values (token text is untrusted: it comes from the
 * model and from whatever the user pasted).
 * @param {string} s
 * @returns {string}
 * @example escapeHTML('<b class="x">') // "&lt;b class=&quot;x&quot;&gt;"
 */
export function escapeHTML(s) {
  return String(s).replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch]);
}
