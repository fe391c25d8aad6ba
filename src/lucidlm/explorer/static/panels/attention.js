/**
 * The Attention panel: where each token looks, in every head of every layer.
 *
 *   POST /api/trace                    run the prompt once (promptBar), keep every weight
 *   GET  /api/attention/grid?trace=    every layer x head as a small thumbnail -> the grid
 *   GET  /api/attention/head?trace=&layer=&head=   one head's full (T, S) weights -> the big heatmap
 *
 * A head's weights are a (T, S) matrix: row i is query token i ("the token looking"), column j is
 * key token j ("the token looked at"), and each row is a softmax, so it sums to 1. A causal
 * decoder masks j > i (a token may not look ahead); an encoder masks nothing.
 *
 * Everything is drawn on canvases, pixel by pixel (lib/heatmap.js): a 1,024-token prompt is a
 * million cells per head, far too many for one element each. URL keys: layer, head (+ the prompt
 * bar's model, text, chat).
 */

import * as api from "../lib/api.js";
import { viridisRGB } from "../lib/colors.js";
import { h, showError, status } from "../lib/dom.js";
import { fmtWeight } from "../lib/format.js";
import {
  causalMaskStart, cellStart, drawColorBar, drawMaskSwatch, drawMatrix, drawTokenAxes, hitTest, kvHeadOf, outline,
  sizeCanvas, thumbMaskStart,
} from "../lib/heatmap.js";
import { promptBar } from "../lib/promptbar.js";
import * as state from "../lib/state.js";
import { decodeTensor } from "../lib/tensor.js";
import { visibleText } from "../lib/text.js";

export const title = "Attention";

const THUMB_PX = 44; // a thumbnail's side, CSS pixels
const HEAD_PX = 480; // the full heatmap's target side (cells are whole pixels, so it varies)
const LABELS_UP_TO = 60; // token labels on the axes up to this many tokens
const FONT = "11px ui-monospace, 'DejaVu Sans Mono', monospace";

export async function mount(root, info) {
  const box = h("div", { class: "attn" });
  root.append(box);
  box.append(h("p", { class: "hint attn-intro" },
    "Each small square is one attention head: its rows are the tokens looking (queries), its columns the ",
    "tokens looked at (keys); brighter = more attention. Click a square to see that head in full."));

  const view = new AttentionView(box);
  const bar = promptBar(box, info, (meta) => view.show(meta));
  box.append(view.message, view.result); // under the prompt bar
  if (bar.text.value.trim()) await bar.run(); // a shared link opens on its own result
}

class AttentionView {
  constructor(box) {
    this.box = box;
    this.message = h("div", { class: "attn-message" });
    this.result = h("div", { class: "attn-result", hidden: true });
    this.meta = null; // the trace: labels, n_layer, n_head, kv_heads, causal
    this.cache = new Map(); // "trace/layer/head" -> decoded (T, S) weights
    this.request = 0; // sequence number: an older head's late answer must not replace a newer one
    this.hover = null; // {row, col} or {row} (a label) under the pointer
    this.locked = false;
    this.onKey = (event) => this.key(event);
    document.addEventListener("keydown", this.onKey);
  }

  /** A new trace: fetch the grid and the selected head together, draw both. */
  async show(meta) {
    const started = performance.now();
    this.meta = meta;
    this.cache.clear();
    this.message.replaceChildren();
    const layer = clamp(state.getInt("layer", 0), 0, meta.n_layer - 1);
    const head = clamp(state.getInt("head", 0), 0, meta.n_head - 1);
    this.selected = { layer, head };
    const seq = ++this.request; // a head still on its way for the previous prompt is not drawn
    try {
      const [grid, weights] = await Promise.all([api.get("attention/grid", { trace: meta.trace }),
        this.fetchHead(layer, head)]);
      if (seq !== this.request) return;
      this.result.hidden = false;
      this.result.replaceChildren(this.legend(), h("div", { class: "attn-body" }, this.grid(grid), this.headBox()));
      this.drawHead(layer, head, weights);
    } catch (error) {
      showError(this.message, error);
      return;
    }
    const ms = Math.round(performance.now() - started);
    this.box.dataset.drawMs = ms; // read by the browser test: grid + head drawn, after the trace's answer
    // the prompt bar has just said how long the model took; add how long the drawing took
    const ran = document.getElementById("status")?.textContent || `${meta.ids.length} tokens through ${meta.model}`;
    status(`${ran}; grid and head drawn in ${ms} ms`);
  }

  // -- the legend ---------------------------------------------------------------------------------

  legend() {
    const meta = this.meta;
    const bar = h("canvas", { class: "attn-colorbar" });
    drawColorBar(bar, 160, 12, viridisRGB);
    const items = [h("span", { class: "attn-legend-item" }, "0 ", bar, " 1",
      h("span", { class: "muted" }, " attention weight 0 → 1 (each row sums to 1)"))];
    if (meta.causal) {
      const swatch = h("canvas", { class: "attn-swatch" });
      drawMaskSwatch(swatch);
      items.push(h("span", { class: "attn-legend-item" }, swatch, " grey = masked: a token may not look ahead"));
    } else {
      items.push(h("span", { class: "attn-legend-item" },
        "bidirectional: every token looks at every token (an encoder has no mask)"));
    }
    if (meta.kv_heads < meta.n_head) {
      items.push(h("span", { class: "attn-legend-item muted" },
        `grouped-query attention: ${meta.n_head} query heads share ${meta.kv_heads} key/value heads, ` +
        `${meta.n_head / meta.kv_heads} each (columns grouped by KV head)`));
    }
    return h("div", { class: "attn-legend" }, items);
  }

  // -- the grid of thumbnails -------------------------------------------------------------------

  /** (L, nh, n, n) bytes -> a grid of canvases: rows = layers, columns = heads. */
  grid(answer) {
    const meta = this.meta;
    const { n_layer: L, n_head: nh, kv_heads: kv } = meta;
    const thumbs = decodeTensor(answer.thumbs); // (L, nh, n, n) uint8, 255 = weight 1
    const n = answer.size;
    const gqa = kv < nh;
    const groupOf = (head) => kvHeadOf(head, nh, kv);
    const maskStart = meta.causal ? (bi) => thumbMaskStart(bi, n, answer.tokens) : null;

    const cells = [];
    const groupStart = (head) => gqa && head > 0 && groupOf(head) !== groupOf(head - 1);
    if (gqa) { // a header over each group of heads that share a KV head
      cells.push(h("div", { class: "attn-corner" }));
      for (let g = 0; g < kv; g++) {
        cells.push(h("div", { class: "attn-kvgroup", style: `grid-column: span ${nh / kv}` },
          `KV head ${g}`));
      }
    }
    cells.push(h("div", { class: "attn-corner" + (gqa ? " attn-second" : "") }));
    for (let head = 0; head < nh; head++) {
      cells.push(h("div", { class: "attn-colhead" + (gqa ? " attn-second" : "") + (groupStart(head) ? " attn-gap" : "") },
        // two spans, so a narrow column wraps between "head 4" and "· kv 1", never inside them
        h("span", {}, `head ${head}`), gqa ? [" ", h("span", {}, `· kv ${groupOf(head)}`)] : null));
    }
    this.thumbs = [];
    for (let layer = 0; layer < L; layer++) {
      cells.push(h("div", { class: "attn-rowhead" }, `layer ${layer}`));
      const row = [];
      for (let head = 0; head < nh; head++) {
        const canvas = h("canvas", {
          class: "attn-thumb" + (groupStart(head) ? " attn-gap" : ""), role: "button", tabindex: -1,
          "aria-label": `layer ${layer}, head ${head}`, dataset: { layer, head },
          title: `layer ${layer}, head ${head}${gqa ? ` (shares KV head ${groupOf(head)})` : ""}: click to see it in full`,
          onclick: () => this.select(layer, head),
        });
        sizeCanvas(canvas, THUMB_PX, THUMB_PX);
        const offset = (layer * nh + head) * n * n;
        drawMatrix(canvas.getContext("2d"), { left: 0, top: 0, width: THUMB_PX, height: THUMB_PX },
          thumbs.data.subarray(offset, offset + n * n), { rows: n, cols: n, scale: 255, maskStart });
        row.push(canvas);
        cells.push(canvas);
      }
      this.thumbs.push(row);
    }
    const gridEl = h("div", { class: "attn-grid", style: `grid-template-columns: auto repeat(${nh}, ${THUMB_PX}px)` },
      cells);
    gridEl.dataset.thumbnails = L * nh;
    const note = answer.tokens > n
      ? `Each square shrinks ${answer.tokens} × ${answer.tokens} weights to ${n} × ${n}: a pixel shows the largest weight in its block.`
      : `Each square shows all ${n} × ${n} weights.`;
    return h("section", { class: "attn-gridbox" },
      h("h3", {}, `All ${L * nh} heads: ${L} layers × ${nh} heads`),
      h("p", { class: "hint" }, note),
      h("div", { class: "attn-gridscroll" }, gridEl));
  }

  /** Select a head (a thumbnail's click, the arrow keys): remember it in the URL, draw it. */
  async select(layer, head) {
    if (!this.meta) return;
    state.set({ layer, head });
    this.selected = { layer, head }; // may run ahead of this.current (the head drawn) while fetching
    this.locked = false;
    this.hover = null;
    const seq = ++this.request;
    this.markSelected(layer, head);
    try {
      const weights = await this.fetchHead(layer, head);
      if (seq === this.request) this.drawHead(layer, head, weights);
    } catch (error) {
      showError(this.message, error);
    }
  }

  markSelected(layer, head) {
    for (const row of this.thumbs ?? []) for (const t of row) {
      t.classList.remove("attn-selected");
      t.tabIndex = -1;
    }
    const t = this.thumbs?.[layer]?.[head];
    if (t) {
      t.classList.add("attn-selected");
      t.tabIndex = 0; // one tab stop for the grid: the selected head
      t.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }

  async fetchHead(layer, head) {
    const trace = this.meta.trace;
    const key = `${trace}/${layer}/${head}`;
    if (!this.cache.has(key)) {
      const answer = await api.get("attention/head", { trace, layer, head });
      if (this.cache.size >= 8) this.cache.delete(this.cache.keys().next().value); // oldest first
      this.cache.set(key, decodeTensor(answer.weights)); // (T, S) float16 -> Float32Array
    }
    return this.cache.get(key);
  }

  // -- one head in full ---------------------------------------------------------------------------

  headBox() {
    this.headTitle = h("h3", {});
    this.readout = h("p", { class: "attn-readout mono" }, " ");
    this.canvas = h("canvas", { class: "attn-heatmap" });
    this.overlay = h("canvas", { class: "attn-overlay" }); // hover marks, redrawn without the heatmap
    this.tip = h("div", { class: "attn-tip", hidden: true });
    this.barsTitle = h("div", { class: "hint" }, "Hover a row (or a token on the left) to see it as bars.");
    this.bars = h("canvas", { class: "attn-bars" });
    this.overlay.addEventListener("mousemove", (e) => this.pointer(e));
    this.overlay.addEventListener("mouseleave", () => { if (!this.locked) this.setHover(null); });
    this.overlay.addEventListener("click", (e) => this.click(e));
    this.headSection = h("section", { class: "attn-headbox" },
      this.headTitle,
      h("p", { class: "hint" }, "Rows: the token looking (query). Columns: the token looked at (key). ",
        "Click a cell to keep it (click again or Esc to let go); arrow keys: ← → heads, ↑ ↓ layers."),
      this.readout,
      h("div", { class: "attn-plot" }, this.canvas, this.overlay, this.tip),
      this.barsTitle, this.bars);
    return this.headSection;
  }

  /** Draw head (layer, head): the heatmap with its axes, then the hover marks (none yet). */
  drawHead(layer, head, weights) {
    const meta = this.meta;
    const [T, S] = weights.shape;
    this.current = { layer, head, weights, T, S };
    this.markSelected(layer, head);
    const kv = meta.kv_heads < meta.n_head ? ` (reads KV head ${kvHeadOf(head, meta.n_head, meta.kv_heads)})` : "";
    this.headTitle.textContent = `Layer ${layer}, head ${head}${kv}: ${T} × ${S} weights`;
    this.box.dataset.layer = layer;
    this.box.dataset.head = head;

    const labels = meta.labels.map(visibleText);
    const showLabels = Math.max(T, S) <= LABELS_UP_TO;
    const ctx = this.canvas.getContext("2d");
    ctx.font = FONT;
    const widest = showLabels ? Math.max(...labels.map((s) => ctx.measureText(s).width)) : 0;
    const labelSpace = showLabels ? Math.min(120, Math.ceil(widest) + 8) : 36;
    // whole pixels per cell; short prompts get big cells (room for the axis title), long ones 1 px
    const fit = Math.floor(HEAD_PX / Math.max(T, S));
    const cell = showLabels ? clamp(fit, 9, 56) : Math.max(1, fit);
    const g = { left: 18 + labelSpace, top: 4, width: S * cell, height: T * cell, rows: T, cols: S };
    g.labelLeft = 18;
    g.labelBottom = g.top + g.height + labelSpace;
    const width = Math.max(g.left + g.width + 10, 260);
    const height = g.top + g.height + labelSpace + 20;
    this.geom = g;
    this.labels = labels;
    // the plot's box in CSS pixels, for a test (or a reader in the devtools) to find a cell
    this.overlay.dataset.plot = JSON.stringify({ left: g.left, top: g.top, width: g.width, height: g.height, rows: T, cols: S });

    // never narrower than the plot: a long prompt's head moves under the grid instead of overflowing
    this.headSection.style.minWidth = `${width}px`;
    const dpr = sizeCanvas(this.canvas, width, height);
    sizeCanvas(this.overlay, width, height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const maskStart = meta.causal ? (i) => causalMaskStart(i, T, S) : null;
    drawMatrix(ctx, g, weights.data, { rows: T, cols: S, maskStart });
    drawTokenAxes(ctx, g, labels, T, S, showLabels, height, FONT);
    this.setHover(null);
  }

  // -- hovering, locking, keys --------------------------------------------------------------------

  pointer(event) {
    if (this.locked || !this.current) return;
    const hit = hitTest(event.offsetX, event.offsetY, this.geom);
    if (hit?.region === "cell") this.setHover({ row: hit.row, col: hit.col }, event);
    else if (hit?.region === "rowLabel") this.setHover({ row: hit.row }, event);
    else this.setHover(null);
  }

  click(event) {
    if (this.locked) { // a second click lets go
      this.locked = false;
      this.pointer(event);
      return;
    }
    const hit = hitTest(event.offsetX, event.offsetY, this.geom);
    if (hit?.region !== "cell" && hit?.region !== "rowLabel") return;
    this.setHover(hit.region === "cell" ? { row: hit.row, col: hit.col } : { row: hit.row }, event);
    this.locked = true;
    this.showReadout();
  }

  key(event) {
    if (!this.box.isConnected) { // the panel was closed: stop listening
      document.removeEventListener("keydown", this.onKey);
      return;
    }
    if (!this.current || event.altKey || event.ctrlKey || event.metaKey) return;
    if (["TEXTAREA", "INPUT", "SELECT"].includes(event.target?.tagName)) return;
    if (event.key === "Escape" && this.locked) {
      this.locked = false;
      this.setHover(null);
      return;
    }
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    const from = this.selected;
    const layer = clamp(from.layer + move[0], 0, this.meta.n_layer - 1);
    const head = clamp(from.head + move[1], 0, this.meta.n_head - 1);
    if (layer !== from.layer || head !== from.head) this.select(layer, head);
  }

  /** Mark the hovered row (and cell), fill the readout, tooltip and bars. */
  setHover(hover, event = null) {
    this.hover = hover;
    const { T, S } = this.current;
    const g = this.geom;
    const dpr = globalThis.devicePixelRatio || 1;
    const ctx = this.overlay.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    this.showReadout();
    this.drawBars(hover?.row ?? null);
    if (!hover) {
      this.tip.hidden = true;
      return;
    }
    const y0 = g.top + cellStart(hover.row, T, g.height);
    const y1 = g.top + cellStart(hover.row + 1, T, g.height);
    outline(ctx, g.left - 0.5, y0 - 0.5, g.width + 1, y1 - y0 + 1); // the query's whole row
    ctx.fillStyle = "rgba(47, 95, 208, 0.15)";
    ctx.fillRect(g.labelLeft, y0, g.left - g.labelLeft - 1, y1 - y0); // ... and its label
    if (hover.col !== undefined) {
      const x0 = g.left + cellStart(hover.col, S, g.width);
      const x1 = g.left + cellStart(hover.col + 1, S, g.width);
      outline(ctx, x0 - 1.5, y0 - 1.5, x1 - x0 + 3, y1 - y0 + 3);
    }
    if (event) {
      this.tip.hidden = false;
      this.tip.textContent = this.readout.textContent;
      // beside the pointer, above it (the rows below stay visible), flipped near the edges
      const right = event.offsetX > this.overlay.clientWidth - 240;
      this.tip.style.left = `${right ? event.offsetX - 250 : event.offsetX + 14}px`;
      this.tip.style.top = `${event.offsetY < 44 ? event.offsetY + 18 : event.offsetY - 34}px`;
    }
  }

  /** The readout line over the heatmap: "query 'x' → key 'y': 0.123" (data-value: exact). */
  showReadout() {
    const r = this.readout;
    for (const key of ["row", "col", "value"]) delete r.dataset[key];
    const hover = this.hover;
    if (!hover) {
      r.textContent = "Hover a cell: how much the row's token looks at the column's token.";
      r.classList.add("muted");
      return;
    }
    r.classList.remove("muted");
    const { T, S, weights } = this.current;
    const query = this.labels[this.labels.length - T + hover.row];
    const lock = this.locked ? "   (kept: click again or Esc to let go)" : "";
    r.dataset.row = hover.row;
    if (hover.col === undefined) {
      r.textContent = `query '${query}' (token ${hover.row}): its weights over every key are the bars below${lock}`;
      return;
    }
    const key = this.labels[hover.col];
    const masked = this.meta.causal && hover.col >= causalMaskStart(hover.row, T, S);
    const w = weights.data[hover.row * S + hover.col];
    r.dataset.col = hover.col;
    r.dataset.value = String(w);
    r.textContent = masked
      ? `query '${query}' → key '${key}': masked (token ${hover.col} comes after token ${hover.row})${lock}`
      : `query '${query}' → key '${key}': ${fmtWeight(w)}${lock}`;
  }

  /** One query's row as bars over the keys, aligned with the heatmap's columns. */
  drawBars(row) {
    const g = this.geom;
    const { T, S, weights } = this.current;
    const height = 84;
    const top = 8;
    const plotH = 72;
    const width = this.overlay.clientWidth || g.left + g.width + 10;
    const dpr = globalThis.devicePixelRatio || 1;
    if (this.bars.width !== Math.round(width * dpr)) sizeCanvas(this.bars, width, height); // only when it changes
    const ctx = this.bars.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    if (row === null) {
      this.barsTitle.textContent = "Hover a row (or a token on the left) to see it as bars.";
      return;
    }
    const values = weights.data.subarray(row * S, (row + 1) * S);
    let max = 0;
    for (const v of values) max = Math.max(max, v);
    const yMax = [0.1, 0.2, 0.25, 0.5, 1].find((m) => m >= max) ?? 1;
    const query = this.labels[this.labels.length - T + row];
    const masked = this.meta.causal && row < T - 1 ? "; the keys after it are masked (0)" : "";
    this.barsTitle.textContent = `Where '${query}' looks: its row of weights, one bar per key token, ` +
      `in the columns above (they sum to 1${masked})`;
    ctx.strokeStyle = "#d9dde5";
    ctx.fillStyle = "#6b7280";
    ctx.font = FONT;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of [0, yMax / 2, yMax]) { // gridlines and their values
      const y = top + plotH - (t / yMax) * plotH;
      ctx.beginPath();
      ctx.moveTo(g.left, y + 0.5);
      ctx.lineTo(g.left + g.width, y + 0.5);
      ctx.stroke();
      ctx.fillText(String(t), g.left - 4, y);
    }
    for (let j = 0; j < S; j++) {
      const x0 = g.left + cellStart(j, S, g.width);
      const x1 = g.left + cellStart(j + 1, S, g.width);
      const barH = (values[j] / yMax) * plotH;
      ctx.fillStyle = j === this.hover?.col ? "#e8590c" : "#2f5fd0";
      ctx.fillRect(x0, top + plotH - barH, Math.max(1, x1 - x0 - (x1 - x0 > 3 ? 1 : 0)), barH);
    }
  }
}

// -- small helpers -------------------------------------------------------------------------------

function clamp(x, lo, hi) {
  return Math.max(lo, Math.min(hi, x));
}

