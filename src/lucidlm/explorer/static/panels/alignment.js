/**
 * The Cross-attention panel: an encoder-decoder trained on a seq2seq task (lucidlm seq2seq train)
 * answers a source text, and each decoder block shows where it looked in the source while writing
 * each character of the answer. A copy model draws a diagonal, a reverse model an anti-diagonal,
 * a date model blocks (the year digits read the year, the month number reads the month's name).
 *
 *   GET  /api/seq2seq/examples?model=  -> {task, note, chars, examples: [{split, source, target}]}
 *   POST /api/seq2seq {model, text, beam}
 *     -> {output, source_tokens (S), output_tokens (T), n_layer, n_head, weights: (L, nh, T, S)}
 *
 * One heatmap per block: the mean of its heads, or one head. Rows: the character being written
 * (the query that wrote it); columns: the source characters and <eos>; each row sums to 1.
 *
 * URL keys: model, text, beam, head ("" = mean of the heads).
 */

import * as api from "../lib/api.js";
import { viridisRGB } from "../lib/colors.js";
import { h, showError, status } from "../lib/dom.js";
import { fmtWeight } from "../lib/format.js";
import { cellStart, drawColorBar, drawMatrix, drawTokenAxes, hitTest, outline, sizeCanvas } from "../lib/heatmap.js";
import * as state from "../lib/state.js";
import { decodeTensor } from "../lib/tensor.js";
import { visibleText } from "../lib/text.js";

export const title = "Cross-attention";

const FONT = "12px ui-monospace, 'DejaVu Sans Mono', monospace";
const MAX_CELL = 26; // pixels per cell for short sequences
const PLOT_PX = 420; // a block's heatmap at most this wide or tall
const HOW_TO = "No seq2seq model was given to this explorer. Train one (`lucidlm seq2seq train --task date`, " +
  "about a minute) and start `lucidlm explore --model runs/seq2seq/date`.";

/**
 * The (T, S) matrix a heatmap shows: head `head` of block `layer`, or the mean of the block's
 * heads when `head` is null. `data` holds (L, nh, T, S) in C order.
 * @example headMatrix([1, 0, 0, 1, 0, 1, 1, 0], 1, 2, 2, 2, 0, null) // [0.5, 0.5, 0.5, 0.5]
 */
export function headMatrix(data, L, nh, T, S, layer, head) {
  const size = T * S;
  const block = layer * nh * size;
  if (head !== null) return Array.from(data.slice(block + head * size, block + (head + 1) * size));
  const out = new Array(size).fill(0);
  for (let k = 0; k < nh; k++) {
    for (let i = 0; i < size; i++) out[i] += data[block + k * size + i];
  }
  return out.map((v) => v / nh);
}

/**
 * For each row of a (T, S) matrix, the column with the largest weight (the first on a tie): which
 * source character each output character read most.
 * @example strongestColumns([0.1, 0.9, 0.7, 0.3], 2, 2) // [1, 0]
 */
export function strongestColumns(values, T, S) {
  const out = [];
  for (let t = 0; t < T; t++) {
    let best = 0;
    for (let s = 1; s < S; s++) if (values[t * S + s] > values[t * S + best]) best = s;
    out.push(best);
  }
  return out;
}

export async function mount(root, info) {
  root.className = "alignment-panel";
  const models = info.models.filter((m) => m.seq2seq).map((m) => m.name);
  const intro = h("p", { class: "hint" },
    "An encoder-decoder (the 2017 Transformer) reads the source once with its encoder; the decoder then writes ",
    "the answer one character at a time, and in every block its cross-attention decides which source ",
    "characters to read. Each heatmap row is one character being written, each column one source character: ",
    "bright = read most. Rows sum to 1.");
  if (!models.length) {
    root.replaceChildren(intro, h("p", { class: "align-none" }, HOW_TO));
    return;
  }
  const model = h("select", { id: "align-model", "aria-label": "model" },
    ...models.map((name) => h("option", { value: name }, name)));
  model.value = models.includes(state.get("model")) ? state.get("model") : models[0];
  const text = h("input", { type: "text", id: "align-text", "aria-label": "source text", size: 32, spellcheck: "false" });
  const beam = h("select", { id: "align-beam", "aria-label": "beam" },
    ...[1, 2, 4, 8].map((k) => h("option", { value: k }, k === 1 ? "greedy" : `beam ${k}`)));
  beam.value = String(state.getInt("beam", 1));
  const head = h("select", { id: "align-head", "aria-label": "head" }, h("option", { value: "" }, "mean of the heads"));
  const run = h("button", { id: "align-run", class: "primary" }, "Translate");
  const examplesBox = h("div", { class: "align-examples" });
  const message = h("div", { class: "align-message" });
  const answerBox = h("div", { class: "align-answer", role: "status" });
  const plots = h("div", { class: "align-plots" });
  const readout = h("p", { class: "align-readout mono muted" }, "Hover a cell: which source character a written character read.");
  const bar = h("canvas", { class: "align-colorbar" });
  drawColorBar(bar, 160, 12, viridisRGB);
  const legend = h("div", { class: "align-legend" }, "0 ", bar, " 1",
    h("span", { class: "muted" }, " cross-attention weight (each row sums to 1); ○ marks each row's largest"));

  root.replaceChildren(intro,
    h("div", { class: "row align-controls" }, h("label", { for: "align-model" }, "model"), model,
      h("label", { for: "align-text" }, "source"), text, beam, h("label", { for: "align-head" }, "show"), head, run),
    examplesBox, message, answerBox, legend, readout, plots);

  let examples = [];
  let answer = null;

  const loadExamples = async () => {
    const ex = await api.get("seq2seq/examples", { model: model.value });
    examples = ex.examples;
    examplesBox.replaceChildren(h("span", { class: "muted" }, `task ${ex.task}: held-out examples (never trained on) `),
      ...examples.map((e) => h("button", {
        class: "align-example" + (e.split === "extra" ? " extra" : ""), dataset: { source: e.source },
        title: e.split === "extra" ? "beyond the training range (a finding, not a goal)" : "from the test split",
        onclick: () => { text.value = e.source; translate(); },
      }, e.source)));
    if (ex.note) examplesBox.append(h("div", { class: "hint" }, ex.note));
  };

  const draw = () => {
    const { n_layer: L, n_head: nh } = answer;
    const w = answer.tensor;
    const [, , T, S] = w.shape;
    const which = head.value === "" ? null : Number(head.value);
    plots.replaceChildren();
    plots.dataset.blocks = L;
    for (let layer = 0; layer < L; layer++) {
      const values = headMatrix(w.data, L, nh, T, S, layer, which);
      plots.append(blockPlot(layer, which, nh, values, T, S, answer, readout));
    }
  };

  const translate = async () => {
    state.set({ model: model.value, text: text.value, beam: beam.value === "1" ? null : beam.value,
      head: head.value === "" ? null : head.value });
    message.replaceChildren();
    run.disabled = true;
    status(`translating with ${model.value}…`);
    const started = performance.now();
    try {
      const a = await api.post("seq2seq", { model: model.value, text: text.value, beam: Number(beam.value) });
      a.tensor = decodeTensor(a.weights);
      answer = a;
      const keep = head.value;
      head.replaceChildren(h("option", { value: "" }, `mean of the ${a.n_head} heads`),
        ...Array.from({ length: a.n_head }, (_, k) => h("option", { value: k }, `head ${k}`)));
      head.value = keep !== "" && Number(keep) < a.n_head ? keep : "";
      const known = examples.find((e) => e.source === a.source);
      const verdict = known
        ? (known.target === a.output ? h("span", { class: "align-right" }, " ✓ right")
          : h("span", { class: "align-wrong" }, ` ✗ expected ${known.target}`))
        : null;
      answerBox.dataset.output = a.output;
      answerBox.replaceChildren(h("span", { class: "muted" }, `${a.beam === 1 ? "greedy" : `beam ${a.beam}`} answer: `),
        h("span", { class: "mono align-output" }, a.output || "(empty: <eos> first)"), verdict ?? "");
      draw();
      status(`answered in ${Math.round(performance.now() - started)} ms`);
    } catch (error) {
      showError(message, error);
      plots.replaceChildren();
      answerBox.replaceChildren();
      status("");
    } finally {
      run.disabled = false;
    }
  };

  run.addEventListener("click", translate);
  text.addEventListener("keydown", (event) => { if (event.key === "Enter") translate(); });
  head.addEventListener("change", () => {
    state.set({ head: head.value === "" ? null : head.value });
    if (answer) draw();
  });
  model.addEventListener("change", async () => {
    try {
      await loadExamples();
      text.value = examples[0]?.source ?? "";
      await translate();
    } catch (error) {
      showError(message, error);
    }
  });
  try {
    await loadExamples();
  } catch (error) {
    showError(message, error);
    return;
  }
  const linkedHead = state.get("head");
  if (linkedHead !== null) head.append(h("option", { value: linkedHead }, `head ${linkedHead}`));
  head.value = linkedHead ?? "";
  text.value = state.get("text", examples[0]?.source ?? "");
  if (text.value) await translate();
}

/** One block's heatmap with its labels, a ring on each row's largest weight, and a hover readout. */
function blockPlot(layer, head, nh, values, T, S, answer, readout) {
  const rows = answer.output_tokens.map(visibleText);
  const cols = answer.source_tokens.map(visibleText);
  const cell = Math.max(4, Math.min(MAX_CELL, Math.floor(PLOT_PX / Math.max(T, S))));
  const labelSpace = 46;
  const g = { left: 22 + labelSpace, top: 4, width: S * cell, height: T * cell, rows: T, cols: S, labelLeft: 22 };
  g.labelBottom = g.top + g.height + labelSpace;
  const width = Math.max(g.left + g.width + 8, 200);
  const height = g.labelBottom + 20;
  const canvas = h("canvas", { class: "align-heatmap", dataset: { layer } });
  const overlay = h("canvas", { class: "align-overlay" });
  canvas.dataset.plot = JSON.stringify({ left: g.left, top: g.top, width: g.width, height: g.height, rows: T, cols: S });
  const dpr = sizeCanvas(canvas, width, height);
  sizeCanvas(overlay, width, height);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  drawMatrix(ctx, g, values, { rows: T, cols: S });
  drawTokenAxes(ctx, g, cols, T, S, true, height, FONT,
    { rowLabels: rows, rowTitle: "writing →", colTitle: "source (read) →" });
  const strongest = strongestColumns(values, T, S);
  canvas.dataset.strongest = strongest.join(",");
  ctx.strokeStyle = "#ffffff";
  ctx.lineWidth = 1.5;
  for (let t = 0; t < T; t++) { // a ring on the cell each row reads most
    const x = g.left + (cellStart(strongest[t], S, g.width) + cellStart(strongest[t] + 1, S, g.width)) / 2;
    const y = g.top + (cellStart(t, T, g.height) + cellStart(t + 1, T, g.height)) / 2;
    ctx.beginPath();
    ctx.arc(x, y, Math.max(1.5, cell / 2 - 3), 0, 2 * Math.PI);
    ctx.stroke();
  }

  const octx = overlay.getContext("2d");
  const what = head === null ? `mean of ${nh} heads` : `head ${head}`;
  overlay.addEventListener("mousemove", (event) => {
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, width, height);
    const hit = hitTest(event.offsetX, event.offsetY, g);
    if (hit?.region !== "cell") return;
    const x0 = g.left + cellStart(hit.col, S, g.width);
    const x1 = g.left + cellStart(hit.col + 1, S, g.width);
    const y0 = g.top + cellStart(hit.row, T, g.height);
    const y1 = g.top + cellStart(hit.row + 1, T, g.height);
    outline(octx, x0 - 1.5, y0 - 1.5, x1 - x0 + 3, y1 - y0 + 3);
    const w = values[hit.row * S + hit.col];
    readout.classList.remove("muted");
    readout.dataset.value = String(w);
    readout.textContent = `block ${layer} (${what}): writing '${rows[hit.row]}' (output ${hit.row}) read ` +
      `'${cols[hit.col]}' (source ${hit.col}) with weight ${fmtWeight(w)}`;
  });
  overlay.addEventListener("mouseleave", () => octx.clearRect(0, 0, overlay.width, overlay.height));
  return h("figure", { class: "align-block" },
    h("figcaption", {}, `block ${layer}: ${what}`),
    h("div", { class: "align-plot" }, canvas, overlay));
}
