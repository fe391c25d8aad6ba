/**
 * Tokens: the same text cut into tokens by several tokenizers side by side (POST /api/tokens).
 *
 * Each column is one tokenizer: a count line, the text as coloured spans (one per token), and the
 * ids the model reads. Hovering a span highlights its id and the other way round; clicking a token
 * of a byte-level BPE tokenizer replays the merges that built it from bytes (GET /api/merges).
 *
 * URL state: ttext (the text), toks (tokenizers, comma-separated), ws (show whitespace, "0" = off),
 * tchat ("1": the text as one user message through the chat template).
 *
 * Speed (10,000 characters are thousands of spans per column): a keystroke re-tokenizes at once,
 * one request per column in flight at most (ask); every request carries the generation it was
 * sent for, and an answer for an older generation is dropped, so a slow answer never overwrites a
 * newer one. An edit replaces only the tokens that changed (patch, tokenDiff). Full draws are
 * built in DocumentFragments, one row (a line of the text) per block: the first screenful is drawn
 * at once and the rest in later frames; rows scrolled out of view are skipped by the browser
 * (content-visibility in style.css); colours are classes, not styles; hover and click are handled
 * once per column (event delegation); a tooltip is written when its span is first hovered.
 */

import * as api from "../lib/api.js";
import { tokenColor } from "../lib/colors.js";
import { h, showError, status } from "../lib/dom.js";
import { applyMerge, countLine, expandTokens, partLabel, rowEnds, tokenDiff, tokenInfo, tokenLabel } from "../lib/spans.js";
import * as state from "../lib/state.js";

export const title = "Tokens";

const DEBOUNCE_MS = 0; // ask at once (the next task): an answer for an older keystroke is dropped anyway
const MAX_SPANS = 20000; // spans drawn per tokenizer; a longer text is counted in full but drawn in part
const FIRST_DRAW = 600; // tokens drawn before the first paint (a column shows a few hundred unscrolled)
const DRAW_SLICE = 1000; // tokens drawn per later frame (small, so typing stays responsive meanwhile)
const ROW_MAX = 500; // tokens in one row at most (rows are cut at line ends; see rowEnds)
const TOKEN_COLORS = 8; // tokenColor cycles through 8 colours; spans carry them as classes .c0-.c7
const PATCH_MAX = 400; // an edit that changes at most this many tokens is patched in place, not redrawn
const PLAY_MS = 700; // one merge step per PLAY_MS when the replay is played
const DEFAULT_TEXT = "Tokenizers don't see letters. naïve café, 日本語, 😀\n\tdef square(x): return x ** 2";
// the default columns, in this order, where this explorer has them
const DEFAULT_TOKENIZERS = ["trained (runs/demo)", "gpt2", "cl100k_base", "o200k_base", "smollm2-135m-instruct",
  "all-minilm-l6-v2", "smiles"];

export async function mount(root, info) {
  const names = info.tokenizers;
  const fromUrl = state.get("toks");
  let chosen = fromUrl === null
    ? DEFAULT_TOKENIZERS.filter((n) => names.includes(n))
    : fromUrl.split(",").filter((n) => names.includes(n));

  // -- controls ---------------------------------------------------------------------------------
  const text = h("textarea", { id: "ttext", rows: 4, spellcheck: "false", "aria-label": "text to tokenize" });
  text.value = state.get("ttext", DEFAULT_TEXT);
  const showWs = h("input", { type: "checkbox", id: "tws" });
  showWs.checked = state.get("ws", "1") !== "0";
  const chat = h("input", { type: "checkbox", id: "tchat" });
  chat.checked = state.get("tchat") === "1";
  const pickers = names.map((name) => {
    const box = h("input", { type: "checkbox", value: name });
    box.checked = chosen.includes(name);
    box.addEventListener("change", () => {
      chosen = box.checked ? [...chosen, name] : chosen.filter((n) => n !== name);
      state.set({ toks: chosen.join(",") });
      buildColumns();
      refresh();
    });
    return h("label", { class: "tok-pick" }, box, " ", name);
  });

  const grid = h("div", { class: "tok-grid" });
  const merges = h("div", { class: "card tok-merges", hidden: true });
  const panel = h("div", { class: "tokens-panel" },
    h("p", { class: "hint" },
      "A model never reads letters: a tokenizer cuts the text into tokens and the model reads their ids. ",
      "Each column cuts the same text with a different tokenizer. Hover a token for its id and bytes; ",
      "click a token of a BPE tokenizer to replay the merges that built it from bytes."),
    h("div", { class: "card" },
      text,
      h("div", { class: "row" },
        h("label", {}, showWs, " show whitespace (· space, ↵ newline, → tab)"),
        h("label", { title: "only tokenizers that ship a chat template accept this (smollm2-135m-instruct does)" },
          chat, " as a chat message (the text as one user turn, through the chat template)")),
      h("div", { class: "row tok-picks" }, h("span", { class: "muted" }, "tokenizers:"), pickers),
      h("div", { class: "hint" },
        "Colours only tell neighbouring tokens apart (8 colours, cycling). ",
        h("span", { class: "tok special" }, "dark"), " = a special token (added by the tokenizer or the chat template); ",
        h("span", { class: "tok bytes" }, "⟨e6 97⟩"), " = bytes that are only part of a character.")),
    grid, merges);
  root.append(panel);
  // the token colours as CSS variables (--tc0..--tc7, used by .c0-.c7 in style.css): a span then
  // needs only a class, which is much cheaper than a style per span when there are thousands
  for (let k = 0; k < TOKEN_COLORS; k++) panel.style.setProperty(`--tc${k}`, tokenColor(k));

  // -- columns ----------------------------------------------------------------------------------
  let columns = []; // one per chosen tokenizer: {name, el, head, info, spans, ids, msg, result, spanEls, idEls, lit}
  let generation = 0; // bumped on every refresh; answers for an older one are stale
  let started = 0;

  function buildColumns() {
    columns = chosen.map((name) => makeColumn(name));
    grid.replaceChildren(...columns.map((c) => c.el));
    if (!columns.length) grid.append(h("p", { class: "muted" }, "Pick a tokenizer above."));
  }

  function makeColumn(name) {
    const col = { name, result: null, spanEls: [], idEls: [], lit: -1 };
    col.head = h("div", { class: "tok-head" }, name);
    col.info = h("div", { class: "tok-info hint" }, "hover a token to see its id and bytes");
    col.spans = h("div", { class: "tok-spans", "aria-label": `${name} tokens` });
    col.ids = h("div", { class: "tok-ids", "aria-label": `${name} token ids` });
    col.msg = h("div", { class: "tok-msg" });
    col.el = h("section", { class: "tok-col", dataset: { tokenizer: name } },
      col.head, col.msg, col.spans, h("div", { class: "tok-ids-label hint" }, "ids the model reads:"), col.ids, col.info);
    // one listener per column, not one per span: the target's data-i says which token
    const hover = (event) => {
      const el = event.target.closest("[data-i]");
      if (el) highlight(col, Number(el.dataset.i));
    };
    col.spans.addEventListener("mouseover", hover);
    col.ids.addEventListener("mouseover", hover);
    col.spans.addEventListener("click", (event) => {
      const el = event.target.closest("[data-i]");
      if (el) showMerges(col.name, col.result.tokens[Number(el.dataset.i)]);
    });
    return col;
  }

  /** Highlight token i's span and id together, write its info line, and give its span a tooltip. */
  function highlight(col, i) {
    if (col.lit === i || !col.result) return;
    col.spanEls[col.lit]?.classList.remove("lit");
    col.idEls[col.lit]?.classList.remove("lit");
    col.lit = i;
    const token = col.result.tokens[i];
    const span = col.spanEls[i];
    const id = col.idEls[i];
    span.classList.add("lit");
    id.classList.add("lit");
    span.title ||= tokenInfo(token, i); // written on first hover, before the browser shows it
    id.title ||= span.title;
    col.info.textContent = tokenInfo(token, i);
    scrollWithin(col.spans, span);
    scrollWithin(col.ids, id);
  }

  /**
   * Draw a column's tokens: the count line, then the spans and ids row by row (rowEnds). The first
   * FIRST_DRAW tokens, more than a column shows before it scrolls, are drawn at once; the rest
   * follow DRAW_SLICE at a time in later frames, so a long text never blocks typing. A newer
   * draw of the same column (the next keystroke's answer) makes this one stop.
   */
  /** A span and an id element for token i (the colour cycles with the position). */
  function tokenElements(col, token, i, ws) {
    const span = document.createElement("span");
    span.className = token.special ? "tok special" : `tok c${i % TOKEN_COLORS}`; // .c0-.c7: tokenColor(i)
    if (token.text === null) span.className += " bytes";
    else if (token.hex === null && token.start === null && !token.text.startsWith("##")) span.className += " word";
    span.dataset.i = i;
    span.textContent = tokenLabel(token, ws);
    const id = document.createElement("span");
    id.className = "tid";
    id.dataset.i = i;
    id.textContent = token.id;
    return [span, id];
  }

  /**
   * After an edit, replace only the tokens that changed (tokenDiff): one keystroke in 10,000
   * characters touches a token or two, where a redraw would rebuild thousands of spans. The tokens
   * after the change keep their elements; their positions (data-i, and the cycling colour) move
   * by the change in count. Returns false when a full draw is needed instead.
   */
  function patch(col, before, beforeLength) {
    const { result } = col;
    const after = result.tokens;
    if (!before || col.drawing || col.ws !== showWs.checked || after.length > MAX_SPANS
        || col.spanEls.length !== before.length) return false;
    const { prefix, suffix } = tokenDiff(before, beforeLength, after, result.chars);
    const removed = before.length - prefix - suffix;
    const added = after.length - prefix - suffix;
    if (removed > PATCH_MAX || added > PATCH_MAX) return false;
    const ws = showWs.checked;
    const tailSpans = col.spanEls.slice(before.length - suffix);
    const tailIds = col.idEls.slice(before.length - suffix);
    for (const el of col.spanEls.slice(prefix, before.length - suffix)) el.remove();
    for (const el of col.idEls.slice(prefix, before.length - suffix)) el.remove();
    // new elements go where the removed ones were: before the first kept tail element, or at the end
    const spanAnchor = tailSpans[0] ?? null;
    const idAnchor = tailIds[0] ?? null;
    const spanParent = spanAnchor?.parentNode ?? col.spans.lastElementChild ?? col.spans;
    const idParent = idAnchor?.parentNode ?? col.ids.lastElementChild ?? col.ids;
    const newSpans = [];
    const newIds = [];
    for (let i = prefix; i < prefix + added; i++) {
      const [span, id] = tokenElements(col, after[i], i, ws);
      spanParent.insertBefore(span, spanAnchor);
      idParent.insertBefore(id, idAnchor);
      idParent.insertBefore(document.createTextNode(" "), idAnchor); // ids wrap between ids, never inside one
      newSpans.push(span);
      newIds.push(id);
    }
    tailSpans.forEach((span, k) => { // the tail's tooltips name its character offsets, which moved
      const i = prefix + added + k;
      if (span.title) span.title = tailIds[k].title = ""; // written again on the next hover
      if (added === removed) return;
      span.dataset.i = tailIds[k].dataset.i = i; // renumbered, and its colours re-cycled
      if (!after[i].special) span.className = span.className.replace(/\bc\d\b/, `c${i % TOKEN_COLORS}`);
    });
    col.spanEls = [...col.spanEls.slice(0, prefix), ...newSpans, ...tailSpans];
    col.idEls = [...col.idEls.slice(0, prefix), ...newIds, ...tailIds];
    col.el.dataset.drawn = after.length;
    col.el.dataset.patched = `${removed}-${added}`;
    return true;
  }

  async function render(col, before = null, beforeLength = 0) {
    const { result } = col;
    col.spanEls[col.lit]?.classList.remove("lit");
    col.idEls[col.lit]?.classList.remove("lit");
    col.lit = -1;
    if (patch(col, before, beforeLength)) {
      writeHeader(col);
      return;
    }
    col.ws = showWs.checked;
    const drawing = (col.drawing = {}); // this draw's identity: a newer one replaces it
    writeHeader(col);
    delete col.el.dataset.patched;
    const tokens = result.tokens.length > MAX_SPANS ? result.tokens.slice(0, MAX_SPANS) : result.tokens;
    col.spanEls = new Array(tokens.length);
    col.idEls = new Array(tokens.length);
    col.spans.replaceChildren();
    col.ids.replaceChildren();
    delete col.el.dataset.drawn;
    const ws = showWs.checked;
    let start = 0;
    let budget = FIRST_DRAW;
    let spanFrag = document.createDocumentFragment();
    let idFrag = document.createDocumentFragment();
    for (const end of rowEnds(tokens, ROW_MAX)) {
      const row = document.createElement("div");
      const idRow = document.createElement("div");
      row.className = idRow.className = "tok-row";
      for (let i = start; i < end; i++) {
        const [span, id] = tokenElements(col, tokens[i], i, ws);
        row.append(span);
        col.spanEls[i] = span;
        idRow.append(id, " "); // the space lets a row of ids wrap between ids, never inside one
        col.idEls[i] = id;
      }
      spanFrag.append(row);
      idFrag.append(idRow);
      budget -= end - start;
      start = end;
      if (budget <= 0 && end < tokens.length) { // show what is built, let the page breathe, go on
        col.spans.append(spanFrag);
        col.ids.append(idFrag);
        spanFrag = document.createDocumentFragment();
        idFrag = document.createDocumentFragment();
        await new Promise(requestAnimationFrame);
        if (col.drawing !== drawing) return; // a newer draw took over this column
        budget = DRAW_SLICE;
      }
    }
    col.spans.append(spanFrag);
    col.ids.append(idFrag);
    col.el.dataset.drawn = tokens.length;
    col.drawing = null; // done: the next answer may patch this drawing
  }

  /** A column's count line, class names and info line for its current result. */
  function writeHeader(col) {
    const { result } = col;
    col.msg.replaceChildren();
    const chars = chat.checked ? ` · the chat prompt: ${result.chars.toLocaleString("en")} characters` : "";
    col.head.textContent = countLine(col.name, result.count, result.chars) + chars;
    col.el.dataset.count = result.count;
    col.el.classList.remove("failed");
    col.el.classList.toggle("bpe", result.bpe);
    // WordPiece sends pieces without bytes or character spans: it lowercased the text and split it
    // at spaces first, so its tokens hold no spaces; "##" marks a piece that continues a word
    const wordPiece = result.tokens.some((t) => t.hex === null && t.start === null);
    col.el.classList.toggle("wordpiece", wordPiece);
    col.info.textContent = result.bpe ? "hover a token to see its id and bytes; click it to replay its merges"
      : wordPiece ? "WordPiece drops the spaces (a gap here starts a word; ## continues one). Hover a token to see its id"
        : "hover a token to see its id";
    if (result.tokens.length > MAX_SPANS) {
      col.msg.append(h("p", { class: "hint" }, `showing the first ${MAX_SPANS.toLocaleString("en")} of `,
        `${result.tokens.length.toLocaleString("en")} tokens (drawing them all would make typing slow)`));
    }
  }

  /** The API's message in the column (e.g. no chat template), the other columns unaffected. */
  function renderError(col, error) {
    col.result = null;
    col.drawing = null; // stops a draw in progress
    col.head.textContent = `${col.name} — no tokens`;
    col.spans.replaceChildren();
    col.ids.replaceChildren();
    col.spanEls = [];
    col.idEls = [];
    col.lit = -1;
    delete col.el.dataset.count;
    col.el.classList.add("failed");
    col.info.textContent = "";
    showError(col.msg, error);
  }

  // One request asks every column's tokenizer (POST /api/tokens with `tokenizers`): one round
  // trip per keystroke, not one per column. Columns asking for the same generation share it.
  let batch = { gen: -1, answer: null };

  async function answerFor(name, body, gen) {
    if (batch.gen !== gen) {
      batch = { gen, answer: api.post("tokens", { tokenizers: columns.map((c) => c.name), ...body }) };
    }
    const answer = await batch.answer;
    const result = answer.results.find((r) => r.tokenizer === name);
    if (!result) throw new Error(`no answer for ${name}`);
    if (result.error) throw new api.ApiError(result.error.message, 400);
    return result;
  }

  async function tokenize(col, body, gen) {
    try {
      const result = await answerFor(col.name, body, gen);
      if (gen !== generation || !columns.includes(col)) return; // a newer request supersedes this answer
      result.tokens = expandTokens(result);
      const before = col.result;
      col.result = result;
      render(col, before?.tokens ?? null, before?.chars ?? 0);
    } catch (error) {
      if (gen !== generation || !columns.includes(col)) return;
      renderError(col, error);
    }
    col.el.dataset.gen = gen;
    if (columns.every((c) => c.el.dataset.gen === String(gen))) {
      const ms = Math.round(performance.now() - started);
      panel.dataset.ms = ms;
      status(`${columns.length} tokenizers in ${ms} ms`);
    }
  }

  /** Ask every column's tokenizer again (the text, chat mode or the columns changed). */
  function refresh() {
    if (!panel.isConnected) return; // the panel was left
    state.set({ ttext: text.value === DEFAULT_TEXT ? null : text.value, tchat: chat.checked ? "1" : null });
    generation += 1;
    panel.dataset.gen = generation;
    started = performance.now();
    for (const col of columns) ask(col);
  }

  /**
   * Tokenize the current text in one column. At most one request per column is out at a time: a
   * keystroke meanwhile marks the column to ask again when the answer comes (for the newest text
   * then), so fast typing never queues requests, and the first keystroke is sent at once.
   */
  async function ask(col) {
    if (col.busy) {
      col.again = true;
      return;
    }
    col.busy = true;
    do {
      col.again = false;
      await tokenize(col, { text: text.value, chat: chat.checked }, generation);
    } while (col.again && columns.includes(col) && panel.isConnected);
    col.busy = false;
  }

  text.addEventListener("input", refresh);
  chat.addEventListener("change", refresh);
  showWs.addEventListener("change", () => {
    state.set({ ws: showWs.checked ? null : "0" });
    for (const col of columns) if (col.result) render(col); // the same tokens, drawn again: no request
  });

  // -- BPE merge replay -------------------------------------------------------------------------
  let mergeRequest = 0; // like `generation`, for clicks: only the latest click's answer is drawn
  let playTimer = null;

  async function showMerges(tokenizer, token) {
    const asked = ++mergeRequest;
    clearInterval(playTimer);
    merges.hidden = false;
    merges.replaceChildren(h("p", { class: "muted" }, `asking how ${tokenizer} builds token ${token.id}…`));
    let replay;
    try {
      replay = await api.get("merges", { tokenizer, id: token.id });
    } catch (error) {
      if (asked !== mergeRequest) return;
      merges.replaceChildren(h("h3", {}, `${tokenizer}, token ${token.id} "${tokenLabel(token, true)}"`));
      merges.append(h("div", { class: "error", role: "alert" }, error.message));
      return;
    }
    if (asked !== mergeRequest) return;
    drawMerges(tokenizer, token, replay);
  }

  function partsRow(parts, pair) {
    return h("div", { class: "merge-parts" }, parts.map((hex, i) => {
      const { label, text: isText } = partLabel(hex);
      const inPair = pair !== null && (i === pair || i === pair + 1);
      return h("span", { class: `merge-part${isText ? "" : " bytes"}${inPair ? " pair" : ""}`, title: `bytes ${hex}` }, label);
    }));
  }

  function drawMerges(tokenizer, token, replay) {
    const steps = replay.steps;
    const rows = steps.map((step, s) => h("div", { class: "merge-step", dataset: { step: s + 1 } },
      h("span", { class: "merge-n" }, `step ${s + 1}`),
      partsRow(step.parts, step.merge),
      h("span", { class: "merge-rank hint" },
        `merge ${partLabel(step.parts[step.merge]).label} + ${partLabel(step.parts[step.merge + 1]).label} `,
        `→ ${partLabel(applyMerge(step.parts, step.merge)[step.merge]).label}, rank ${step.rank.toLocaleString("en")}`)));
    const final = h("div", { class: "merge-step final" },
      h("span", { class: "merge-n" }, "result"), partsRow(replay.final, null),
      h("span", { class: "merge-rank hint" }, replay.final.length === 1 ? `= token ${token.id}` : ""));
    const play = h("button", { class: "small", id: "merge-play" }, "▶ Play");
    play.addEventListener("click", () => {
      // reveal the steps one at a time, the current one marked, until the token stands whole
      clearInterval(playTimer);
      const all = [...rows, final];
      all.forEach((row, s) => { row.hidden = s > 0; row.classList.toggle("current", s === 0); });
      let shown = 0;
      playTimer = setInterval(() => {
        if (!merges.isConnected || shown + 1 >= all.length) return clearInterval(playTimer);
        all[shown].classList.remove("current");
        shown += 1;
        all[shown].hidden = false;
        all[shown].classList.add("current");
      }, PLAY_MS);
    });
    merges.replaceChildren(
      h("h3", {}, `How ${tokenizer} builds token ${token.id} "${tokenLabel(token, true)}" from its bytes`),
      h("p", { class: "hint" },
        "BPE starts from the token's bytes (", replay.bytes, ") and, again and again, merges the neighbouring pair ",
        "whose merge was learned first (the lowest rank). The highlighted pair is merged at each step."),
      steps.length
        ? h("div", { class: "row" }, play, h("span", { class: "hint" }, `${steps.length} merge${steps.length === 1 ? "" : "s"}`))
        : h("p", {}, replay.final.length === 1
          ? "A single byte: it is in the vocabulary from the start, no merge builds it."
          : "No learned merge joins these bytes: the token was added to the vocabulary whole."),
      h("div", { class: "merge-steps" }, rows, final));
    merges.dataset.steps = steps.length;
  }

  buildColumns();
  refresh();
}

/** Scroll `box` (and only it, not the page) so that `el` is visible. */
function scrollWithin(box, el) {
  const top = el.getBoundingClientRect().top - box.getBoundingClientRect().top + box.scrollTop - box.clientTop;
  if (top < box.scrollTop) box.scrollTop = top;
  else if (top + el.offsetHeight > box.scrollTop + box.clientHeight) box.scrollTop = top + el.offsetHeight - box.clientHeight;
}
