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
 * newer one. A column draws its tokens only as far as it is scrolled (drawRange), and an edit
 * redraws from the first token it changed (tokenDiff). Spans are built in DocumentFragments;
 * colours are classes, not styles; hover and click are handled once per column (event
 * delegation); a tooltip is written when its span is first hovered.
 */

import * as api from "../lib/api.js";
import { tokenColor } from "../lib/colors.js";
import { h, showError, status } from "../lib/dom.js";
import { applyMerge, countLine, expandTokens, partLabel, tokenDiff, tokenInfo, tokenLabel } from "../lib/spans.js";
import * as state from "../lib/state.js";

export const title = "Tokens";

const FIRST_DRAW = 600; // tokens drawn at once (a column shows a few hundred before it scrolls)
const DRAW_SLICE = 400; // tokens drawn each time the end of what is drawn scrolls into view
const TOKEN_COLORS = 8; // tokenColor cycles through 8 colours; spans carry them as classes .c0-.c7
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
    col.moreSpans = h("span", { class: "tok-more hint", hidden: true });
    col.moreIds = h("span", { class: "tok-more hint", hidden: true });
    col.drawn = 0;
    col.el = h("section", { class: "tok-col", dataset: { tokenizer: name } },
      col.head, col.msg, col.spans, h("div", { class: "tok-ids-label hint" }, "ids the model reads:"), col.ids, col.info);
    // one listener per column, not one per span: the target's data-i says which token
    const hover = (event) => {
      const el = event.target.closest("[data-i]");
      if (el) highlight(col, Number(el.dataset.i));
    };
    // the end of what is drawn scrolled into view: draw more (see drawRange)
    for (const [scroller, marker] of [[col.spans, col.moreSpans], [col.ids, col.moreIds]]) {
      new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) drawMore(col, scroller, marker);
      }, { root: scroller }).observe(marker);
    }
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

  // -- drawing a column -------------------------------------------------------------------------
  // A column draws its tokens as far as the reader has scrolled: FIRST_DRAW at once (more than it
  // shows before it scrolls), then DRAW_SLICE more whenever the end of what is drawn scrolls into
  // view (a "… more tokens" line watched by an IntersectionObserver). So 10,000 characters cost the
  // page a few hundred elements per column, not thousands, and a keystroke redraws only from the
  // first token it changed (tokenDiff) to the end of what is drawn: often nothing at all.

  /** A span and an id element for token i (the colour cycles with the position). */
  function tokenElements(token, i, ws) {
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

  /** Draw tokens [from, to) after what is drawn, before the "… more" lines. */
  function drawRange(col, from, to) {
    const ws = showWs.checked;
    const tokens = col.result.tokens;
    const spanFrag = document.createDocumentFragment();
    const idFrag = document.createDocumentFragment();
    for (let i = from; i < to; i++) {
      const [span, id] = tokenElements(tokens[i], i, ws);
      spanFrag.append(span);
      idFrag.append(id);
      col.spanEls[i] = span;
      col.idEls[i] = id;
    }
    col.spans.insertBefore(spanFrag, col.moreSpans);
    col.ids.insertBefore(idFrag, col.moreIds);
    col.drawn = to;
    col.el.dataset.drawn = to;
    const left = tokens.length - to;
    col.moreSpans.hidden = col.moreIds.hidden = left <= 0;
    col.moreSpans.textContent = left > 0 ? ` … ${left.toLocaleString("en")} more tokens (scroll to draw them)` : "";
    col.moreIds.textContent = left > 0 ? ` … ${left.toLocaleString("en")} more` : "";
  }

  /** Draw more while the end of what is drawn is in view (the observer's callback). */
  function drawMore(col, scroller, marker) {
    while (col.result && col.drawn < col.result.tokens.length
           && marker.getBoundingClientRect().top < scroller.getBoundingClientRect().bottom) {
      drawRange(col, col.drawn, Math.min(col.result.tokens.length, col.drawn + DRAW_SLICE));
    }
  }

  /** Remove what is drawn from token i on. */
  function cutFrom(col, i) {
    for (let k = i; k < col.drawn; k++) {
      col.spanEls[k].remove();
      col.idEls[k].remove();
    }
    col.spanEls.length = col.idEls.length = Math.min(i, col.drawn);
    col.drawn = Math.min(i, col.drawn);
  }

  /**
   * Show a column's result. After an edit (`before`: the previous tokens of this column, drawn
   * with the same whitespace setting), the tokens before the first change stay as they are.
   */
  function render(col, before = null, beforeLength = 0) {
    const { result } = col;
    col.spanEls[col.lit]?.classList.remove("lit");
    col.idEls[col.lit]?.classList.remove("lit");
    col.lit = -1;
    writeHeader(col);
    const total = result.tokens.length;
    const target = Math.min(total, Math.max(col.drawn ?? 0, FIRST_DRAW)); // keep what was scrolled to
    let from = 0;
    if (before && col.ws === showWs.checked) {
      from = Math.min(tokenDiff(before, beforeLength, result.tokens, result.chars).prefix, col.drawn);
      cutFrom(col, from);
    } else {
      col.ws = showWs.checked;
      col.spans.replaceChildren(col.moreSpans);
      col.ids.replaceChildren(col.moreIds);
      col.spanEls = [];
      col.idEls = [];
      col.drawn = 0;
    }
    drawRange(col, from, Math.max(from, target));
    col.el.dataset.redrawnFrom = from; // the first token drawn again (the browser tests read it)
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
  }

  /** The API's message in the column (e.g. no chat template), the other columns unaffected. */
  function renderError(col, error) {
    col.result = null;
    col.head.textContent = `${col.name} — no tokens`;
    col.spans.replaceChildren(col.moreSpans);
    col.ids.replaceChildren(col.moreIds);
    col.moreSpans.hidden = col.moreIds.hidden = true;
    col.spanEls = [];
    col.idEls = [];
    col.drawn = 0;
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
    generation += 1;
    panel.dataset.gen = generation;
    started = performance.now();
    for (const col of columns) ask(col);
    saveText();
  }

  // The text goes into the URL a moment after typing stops, not on every keystroke: the URL of a
  // 10,000-character text is ~30 KB, and writing it is not free.
  let saveTimer = null;
  function saveText() {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => {
      if (panel.isConnected) {
        state.set({ ttext: text.value === DEFAULT_TEXT ? null : text.value });
      }
    }, 300);
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
  chat.addEventListener("change", () => {
    state.set({ tchat: chat.checked ? "1" : null });
    refresh();
  });
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
