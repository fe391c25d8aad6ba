// The Explorer's views as notebook widgets: the same drawing code (heatmap.js, colors.js,
// spans.js, tensor.js) fed from JSON embedded in the page instead of the HTTP API, because a
// notebook's output has no server behind it.
//
// Python (lucidlm/explorer/notebook.py) computes the data with the functions the API answers
// with (forward.attention_grid, forward.attention_head, forward.logit_lens, tokens.token_spans),
// inlines this module and the ones it imports into the output, and calls mountWidget(root, data).
//
// The panels (panels/*.js) ask the server for each head as it is clicked and keep their state
// in the page's URL; a widget has every head it can show in `data` already and keeps its state
// in its own element, so several widgets share one notebook page without clashing: nothing
// here reads or writes an element id, the URL or a document-wide listener.

import { tokenColor, viridis, viridisRGB } from "./colors.js";
import { h } from "./dom.js";
import { fmtProb, fmtWeight } from "./format.js";
import {
  causalMaskStart, cellStart, drawColorBar, drawMaskSwatch, drawMatrix, drawTokenAxes, hitTest, kvHeadOf, outline,
  sizeCanvas, thumbMaskStart,
} from "./heatmap.js";
import { expandTokens, tokenInfo, tokenLabel } from "./spans.js";
import { decodeTensor } from "./tensor.js";
import { visibleText } from "./text.js";

const THUMB_PX = 40; // a thumbnail's side, CSS pixels
const HEAD_PX = 420; // the full heatmap's target side (cells are whole pixels, so it varies)
const LABELS_UP_TO = 60; // token labels on the axes up to this many tokens
const FONT = "11px ui-monospace, 'DejaVu Sans Mono', monospace";

/**
 * Draw the widget `data.kind` ("attention", "lens" or "tokens") into `root`, replacing what is there.
 * @param {HTMLElement} root
 * @param {object} data what notebook.py embedded (see each widget below)
 */
export function mountWidget(root, data) {
  const widgets = { attention: attentionWidget, lens: lensWidget, tokens: tokensWidget };
  const widget = widgets[data.kind];
  if (!widget) throw new Error(`unknown widget kind ${JSON.stringify(data.kind)}`);
  root.replaceChildren();
  widget(root, data);
  root.dataset.ready = "1"; // read by the tests: drawn without an error
}

// -- attention ---------------------------------------------------------------------------------

/**
 * Every layer x head as a thumbnail, and one head in full with its token labels; click a
 * thumbnail to open that head. data: {meta: {labels, n_layer, n_head, kv_heads, causal},
 * grid: forward.attention_grid, heads: {"layer/head": (T, S) float16 tensor}, selected}.
 */
function attentionWidget(root, data) {
  const { meta, grid } = data;
  const view = { meta, heads: data.heads, current: null, hover: null, thumbs: [] };
  root.append(attentionLegend(meta));
  if (data.note) root.append(h("p", { class: "lw-hint" }, data.note));
  view.headBox = h("section", { class: "lw-headbox" });
  root.append(h("div", { class: "lw-attn-body" }, thumbnailGrid(view, grid, (l, hd) => selectHead(view, l, hd)),
    view.headBox));
  selectHead(view, data.selected.layer, data.selected.head);
}

function attentionLegend(meta) {
  const bar = h("canvas", { class: "lw-colorbar" });
  drawColorBar(bar, 140, 11, viridisRGB);
  const items = [h("span", { class: "lw-legend-item" }, "0 ", bar, " 1 ",
    h("span", { class: "lw-muted" }, "attention weight (each row sums to 1)"))];
  if (meta.causal) {
    const swatch = h("canvas", { class: "lw-swatch" });
    drawMaskSwatch(swatch, 14);
    items.push(h("span", { class: "lw-legend-item" }, swatch, " masked: a token may not look ahead"));
  } else {
    items.push(h("span", { class: "lw-legend-item" }, "bidirectional: every token looks at every token"));
  }
  if (meta.kv_heads < meta.n_head) {
    items.push(h("span", { class: "lw-legend-item lw-muted" },
      `grouped-query attention: ${meta.n_head} query heads share ${meta.kv_heads} key/value heads`));
  }
  return h("div", { class: "lw-legend" }, items);
}

/** (L, nh, n, n) bytes -> a grid of canvases: rows = layers, columns = heads. */
function thumbnailGrid(view, grid, onSelect) {
  const { n_layer: L, n_head: nh, kv_heads: kv } = view.meta;
  const thumbs = decodeTensor(grid.thumbs); // (L, nh, n, n) uint8, 255 = weight 1
  const n = grid.size;
  const maskStart = view.meta.causal ? (bi) => thumbMaskStart(bi, n, grid.tokens) : null;
  const cells = [h("div", {})];
  for (let head = 0; head < nh; head++) {
    cells.push(h("div", { class: "lw-colhead" }, kv < nh ? `h${head} kv${kvHeadOf(head, nh, kv)}` : `head ${head}`));
  }
  for (let layer = 0; layer < L; layer++) {
    cells.push(h("div", { class: "lw-rowhead" }, `layer ${layer}`));
    const row = [];
    for (let head = 0; head < nh; head++) {
      const canvas = h("canvas", {
        class: "lw-thumb", role: "button", tabindex: 0, "aria-label": `layer ${layer}, head ${head}`,
        dataset: { layer, head }, title: `layer ${layer}, head ${head}: click to see it in full`,
        onclick: () => onSelect(layer, head),
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onSelect(layer, head); } },
      });
      sizeCanvas(canvas, THUMB_PX, THUMB_PX);
      const offset = (layer * nh + head) * n * n;
      drawMatrix(canvas.getContext("2d"), { left: 0, top: 0, width: THUMB_PX, height: THUMB_PX },
        thumbs.data.subarray(offset, offset + n * n), { rows: n, cols: n, scale: 255, maskStart });
      row.push(canvas);
      cells.push(canvas);
    }
    view.thumbs.push(row);
  }
  const note = grid.tokens > n
    ? `Each square shrinks ${grid.tokens} × ${grid.tokens} weights to ${n} × ${n}: a pixel shows the largest weight in its block.`
    : `Each square shows all ${n} × ${n} weights.`;
  return h("section", { class: "lw-gridbox" },
    h("div", { class: "lw-title" }, `All ${L * nh} heads: ${L} layers × ${nh} heads`),
    h("p", { class: "lw-hint" }, note, " Click a square to see that head in full."),
    h("div", { class: "lw-gridscroll" },
      h("div", { class: "lw-grid", style: `grid-template-columns: auto repeat(${nh}, ${THUMB_PX}px)` }, cells)));
}

/** Show head (layer, head) in full, or say how to get it when its weights were not embedded. */
function selectHead(view, layer, head) {
  for (const row of view.thumbs) for (const t of row) t.classList.remove("lw-selected");
  view.thumbs[layer]?.[head]?.classList.add("lw-selected");
  view.headBox.dataset.layer = layer;
  view.headBox.dataset.head = head;
  const tensor = view.heads[`${layer}/${head}`];
  if (!tensor) {
    view.current = null;
    view.headBox.replaceChildren(h("div", { class: "lw-title" }, `Layer ${layer}, head ${head}`),
      h("p", { class: "lw-message" }, `Layer ${layer}'s full weights are not in this widget (it holds layer `,
        `${embeddedLayers(view.heads).join(", ")} only, to keep the notebook small): call `,
        `show_attention(trace, layer=${layer}) to see them.`));
    return;
  }
  drawHead(view, layer, head, decodeTensor(tensor)); // (T, S) float16 -> Float32Array
}

function drawHead(view, layer, head, weights) {
  const meta = view.meta;
  const [T, S] = weights.shape;
  view.current = { T, S, weights };
  const kv = meta.kv_heads < meta.n_head ? ` (reads KV head ${kvHeadOf(head, meta.n_head, meta.kv_heads)})` : "";
  const canvas = h("canvas", { class: "lw-heatmap" });
  const overlay = h("canvas", { class: "lw-overlay" }); // hover marks, redrawn without the heatmap
  view.readout = h("p", { class: "lw-readout lw-mono" });
  view.overlay = overlay;
  view.headBox.replaceChildren(
    h("div", { class: "lw-title" }, `Layer ${layer}, head ${head}${kv}: ${T} × ${S} weights`),
    h("p", { class: "lw-hint" }, "Rows: the token looking (query). Columns: the token looked at (key). Hover a cell."),
    view.readout, h("div", { class: "lw-plot" }, canvas, overlay));

  const labels = meta.labels.map(visibleText);
  const showLabels = Math.max(T, S) <= LABELS_UP_TO;
  const ctx = canvas.getContext("2d");
  ctx.font = FONT;
  const widest = showLabels ? Math.max(...labels.map((s) => ctx.measureText(s).width)) : 0;
  const labelSpace = showLabels ? Math.min(110, Math.ceil(widest) + 8) : 36;
  const fit = Math.floor(HEAD_PX / Math.max(T, S)); // whole pixels per cell
  const cell = showLabels ? clamp(fit, 9, 48) : Math.max(1, fit);
  const g = { left: 18 + labelSpace, top: 4, width: S * cell, height: T * cell, rows: T, cols: S, labelLeft: 18 };
  g.labelBottom = g.top + g.height + labelSpace;
  const width = Math.max(g.left + g.width + 10, 240);
  const height = g.top + g.height + labelSpace + 20;
  view.geom = g;
  view.labels = labels;
  // the plot's box in CSS pixels, for a test (or a reader in the devtools) to find a cell
  overlay.dataset.plot = JSON.stringify({ left: g.left, top: g.top, width: g.width, height: g.height, rows: T, cols: S });
  const dpr = sizeCanvas(canvas, width, height);
  sizeCanvas(overlay, width, height);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const maskStart = meta.causal ? (i) => causalMaskStart(i, T, S) : null;
  drawMatrix(ctx, g, weights.data, { rows: T, cols: S, maskStart });
  drawTokenAxes(ctx, g, labels, T, S, showLabels, height, FONT);
  overlay.addEventListener("mousemove", (e) => {
    const hit = hitTest(e.offsetX, e.offsetY, g);
    setHover(view, hit?.region === "cell" ? { row: hit.row, col: hit.col } : null);
  });
  overlay.addEventListener("mouseleave", () => setHover(view, null));
  setHover(view, null);
}

/** Outline the hovered cell and write its weight in the readout (data-value: the exact number). */
function setHover(view, hover) {
  const { T, S, weights } = view.current;
  const g = view.geom;
  const r = view.readout;
  const dpr = globalThis.devicePixelRatio || 1;
  const ctx = view.overlay.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, view.overlay.width, view.overlay.height);
  for (const key of ["row", "col", "value"]) delete r.dataset[key];
  if (!hover) {
    r.textContent = "Hover a cell: how much the row's token looks at the column's token.";
    r.classList.add("lw-muted");
    return;
  }
  r.classList.remove("lw-muted");
  const y0 = g.top + cellStart(hover.row, T, g.height);
  const y1 = g.top + cellStart(hover.row + 1, T, g.height);
  const x0 = g.left + cellStart(hover.col, S, g.width);
  const x1 = g.left + cellStart(hover.col + 1, S, g.width);
  outline(ctx, x0 - 1.5, y0 - 1.5, x1 - x0 + 3, y1 - y0 + 3);
  const query = view.labels[view.labels.length - T + hover.row];
  const key = view.labels[hover.col];
  const w = weights.data[hover.row * S + hover.col];
  const masked = view.meta.causal && hover.col >= causalMaskStart(hover.row, T, S);
  Object.assign(r.dataset, { row: hover.row, col: hover.col, value: String(w) });
  r.textContent = masked
    ? `query '${query}' (token ${hover.row}) → key '${key}' (token ${hover.col}): masked, it comes later`
    : `query '${query}' (token ${hover.row}) → key '${key}' (token ${hover.col}): ${fmtWeight(w)}`;
}

/** The layers whose full weights the widget holds, in order ("layer/head" keys of `heads`). */
function embeddedLayers(heads) {
  return [...new Set(Object.keys(heads).map((key) => Number(key.split("/")[0])))].sort((a, b) => a - b);
}

// -- the logit lens ----------------------------------------------------------------------------

/**
 * The top token read from the residual stream after every attention and MLP (rows), at the last
 * positions (columns). data: {meta: {labels}, lens: forward.logit_lens}.
 */
function lensWidget(root, data) {
  const { positions, rows, final_ids: finalIds, labels: names } = data.lens;
  const inputs = data.meta.labels;
  const labelOf = (id) => names[String(id)] ?? `#${id}`;
  const byFinal = h("input", { type: "checkbox" });
  const legend = h("div", { class: "lw-legend" });
  const table = h("div", { class: "lw-lensbox" });
  const short = (text) => (text.length > 9 ? text.slice(0, 8) + "…" : text);
  function render() {
    const final = byFinal.checked;
    const bar = h("canvas", { class: "lw-colorbar" });
    drawColorBar(bar, 140, 11, viridisRGB);
    legend.replaceChildren(h("span", { class: "lw-legend-item" }, "0% ", bar, " 100% ", h("span", { class: "lw-muted" },
      final ? "cell colour: the probability of the model's final answer there" : "cell colour: the probability of the cell's top token")),
    h("span", { class: "lw-legend-item lw-muted" }, "✓ = already the model's final answer"));
    const head = h("tr", {}, h("th", { class: "lw-lens-corner" }, h("div", {}, "input token →"),
      h("div", { class: "lw-lens-final" }, "final prediction →")),
    positions.map((pos, c) => h("th", { title: `position ${pos}` }, h("div", { class: "lw-mono" }, visibleText(inputs[pos])),
      h("div", { class: "lw-lens-final lw-mono" }, `→ ${visibleText(labelOf(finalIds[c]))}`))));
    const body = rows.map((row, r) => h("tr", { class: r === rows.length - 1 ? "lw-lens-output" : null },
      h("th", { class: "lw-lens-row" }, `layer ${row.layer} · after ${row.after === "attn" ? "attention" : "MLP"}` +
        (r === rows.length - 1 ? " = output" : "")),
      row.ids.map((id, c) => {
        const shade = final ? row.p_final[c] : row.p[c];
        const hit = id === finalIds[c];
        return h("td", {
          class: "lw-mono" + (hit ? " lw-hit" : ""), dataset: { token: id, p: row.p[c] },
          style: `background: ${viridis(shade)}; color: ${shade > 0.55 ? "#111" : "#fff"}`,
          title: `layer ${row.layer} after ${row.after}, position ${positions[c]}: top «${visibleText(labelOf(id))}» ` +
            `${fmtProb(row.p[c])}; the final answer «${visibleText(labelOf(finalIds[c]))}» ${fmtProb(row.p_final[c])}`,
        }, (hit ? "✓" : "") + short(visibleText(labelOf(id))), h("span", { class: "lw-lens-p" }, fmtProb(row.p[c])));
      })));
    table.replaceChildren(h("table", { class: "lw-lens" }, h("thead", {}, head), h("tbody", {}, body)));
  }
  byFinal.addEventListener("change", render);
  root.append(h("p", { class: "lw-hint" }, "Each row reads the residual stream after one attention or MLP through the ",
    "model's final norm and output head, as if the model stopped there (the logit lens, nostalgebraist 2020)."),
  h("label", { class: "lw-hint" }, byFinal, " colour by the probability of the final answer"), legend, table);
  render();
}

// -- tokens --------------------------------------------------------------------------------------

/**
 * A text as coloured token spans, ids below, id and bytes on hover.
 * data: {name, text, spans: tokens.token_spans}.
 */
function tokensWidget(root, data) {
  const tokens = expandTokens({ text: data.text, ...data.spans });
  const showWs = h("input", { type: "checkbox", checked: true });
  const spans = h("div", { class: "lw-spans" });
  const ids = h("div", { class: "lw-ids" });
  const info = h("div", { class: "lw-info lw-mono" });
  let lit = -1;
  const light = (i) => {
    for (const k of [lit, i]) {
      spans.children[k]?.classList.toggle("lw-lit", k === i);
      ids.children[k]?.classList.toggle("lw-lit", k === i);
    }
    lit = i;
    info.textContent = i >= 0 ? tokenInfo(tokens[i], i) : "Hover a token to see its id and bytes.";
  };
  function render() {
    spans.replaceChildren(...tokens.map((token, i) => h("span", {
      class: "lw-tok" + (token.special ? " lw-special" : "") + (token.text === null ? " lw-bytes" : ""),
      style: token.special ? null : `background: ${tokenColor(i)}`, title: tokenInfo(token, i), dataset: { i },
    }, tokenLabel(token, showWs.checked))));
    ids.replaceChildren(...tokens.map((token, i) => h("span", { class: "lw-tid", dataset: { i } }, token.id)));
    lit = -1;
    light(-1);
  }
  for (const box of [spans, ids]) {
    box.addEventListener("mouseover", (e) => { const i = e.target.dataset?.i; if (i !== undefined) light(Number(i)); });
  }
  showWs.addEventListener("change", render);
  root.append(h("label", { class: "lw-hint" }, showWs, " show whitespace (· space, ↵ newline, → tab)"),
    spans, h("div", { class: "lw-hint" }, "ids, in order:"), ids, info);
  render();
}

// -- small helpers -------------------------------------------------------------------------------

function clamp(x, lo, hi) {
  return Math.max(lo, Math.min(hi, x));
}

