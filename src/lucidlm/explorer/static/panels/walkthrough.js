/**
 * The Walkthrough panel: one forward pass, stage by stage, through one layer.
 *
 *   POST /api/trace                              the prompt's tokens (promptBar)
 *   GET  /api/walkthrough?trace=&layer=&head=    every stage the pass records up to that layer's
 *                                                end, then the output: name, shape, equation
 *                                                (MathML), a 12 x 12 window of the numbers, stats,
 *                                                and the source lines that computed it
 *   GET  /api/source?file=                       one of lucidlm's files, for the "source" links
 *
 * Each stage is a card: a plain-words title, the shape with named axes, the equation (MathML,
 * which Chromium draws natively: the server's string is inserted as HTML), the numbers as a
 * heatmap-coloured table (blue < 0 < red), and links to the code. URL keys: wlayer, whead.
 */

import * as api from "../lib/api.js";
import { h, showError } from "../lib/dom.js";
import { fmtShape } from "../lib/format.js";
import { divergingRGB, drawColorBar, kvHeadOf } from "../lib/heatmap.js";
import { promptBar } from "../lib/promptbar.js";
import * as state from "../lib/state.js";
import { visibleText } from "../lib/text.js";

export const title = "Walkthrough";

/**
 * Each stage in plain words: [title, what it does]. `m` is the trace's meta (norm, mlp, kind),
 * so the words follow the model: RMSNorm or LayerNorm, SwiGLU or a plain MLP, pre- or post-norm.
 */
const STAGES = {
  "embed.tokens": () => ["token embedding lookup",
    "Each token id picks one row of the embedding table W_E: a learned vector that stands for that token."],
  "embed.positions": () => ["position embeddings",
    "A learned vector per position (0, 1, 2, ...), so the model knows the order of the tokens."],
  "embed.token_types": () => ["segment embeddings",
    "A vector for 'sentence A' or 'sentence B' (BERT's token types); here every token is in sentence A."],
  "embed.out": (m) => ["the residual stream starts",
    m.positions === "rope"
      ? "One vector per token. Every layer reads this stream and adds its result to it (positions come in later, by rotating queries and keys: RoPE)."
      : "The embeddings summed: one vector per token. Every layer reads this stream and adds its result to it."],
  "attn.norm": (m) => ["normalise before attention",
    `${normName(m)} rescales each token's vector to a standard size, so what attention reads stays well-behaved.`],
  "attn.q": (m) => ["queries",
    `What each token is looking for: its vector times W_q, split into heads${m.positions === "rope" ? ", then rotated by position (RoPE)" : ""}.`],
  "attn.k": (m) => ["keys",
    "What each token offers to be found by; a query matches a key by their dot product." +
    (m.kv_heads < m.n_head ? ` Grouped-query attention: ${m.n_head / m.kv_heads} query heads share each key head.` : "")],
  "attn.v": () => ["values", "What each token hands over when another token looks at it."],
  "attn.scores": () => ["attention scores",
    "Every query against every key: their dot product, divided by √d_head so the softmax is not too sharp."],
  "attn.scores_masked": (m) => m.causal
    ? ["causal mask", "The scores of later tokens set to −∞ (grey): a token may not look ahead, so the model can be trained to predict the next one."]
    : ["no mask", "An encoder masks nothing: every token may look at every token, before and after it."],
  "attn.weights": () => ["softmax: attention weights",
    "Each row of scores turned into probabilities that sum to 1: how much each token (row) looks at each token (column)."],
  "attn.heads_out": () => ["weighted sum of values",
    "Each token's mix of the values it looks at, weighted by its attention row; all heads side by side."],
  "attn.out": () => ["output projection: what attention adds",
    "The heads' results mixed together by W_o, back to the model's width."],
  "attn.resid": (m) => ["residual: add attention to the stream",
    m.kind === "encoder" ? "The stream plus what attention computed, then normalised (post-norm, as in BERT)."
      : "The stream plus what attention computed. Adding (not replacing) lets every layer keep what came before."],
  "mlp.norm": (m) => ["normalise before the MLP", `${normName(m)} again, now on the stream after attention.`],
  "mlp.pre_act": (m) => m.mlp === "swiglu"
    ? ["gate projection", "Each token's vector widened by W_gate: the gate of SwiGLU."]
    : ["MLP up projection", "Each token's vector widened by W_1 (usually 4 times the model's width)."],
  "mlp.act": (m) => ["activation", m.mlp === "swiglu"
    ? "SwiGLU: the activation of the gate, times a second projection (W_up), number by number."
    : "A non-linearity, number by number: without it the layers would collapse into one matrix."],
  "mlp.out": () => ["down projection: what the MLP adds",
    "Back to the model's width. The MLP works on each token alone (attention is where tokens meet)."],
  "mlp.resid": (m) => ["residual: add the MLP to the stream",
    m.kind === "encoder" ? "The stream plus what the MLP computed, then normalised (post-norm); the next layer reads this."
      : "The stream plus what the MLP computed; the next layer reads this."],
  "final_norm": (m) => ["final normalisation", `${normName(m)} once more, after the last layer.`],
  "logits": () => ["scores for every token in the vocabulary",
    "One score per vocabulary entry at each position (the normalised stream times W_E transposed). " +
    "The last row ranks the next token; the columns shown are its 12 highest."],
  "hidden": () => ["the encoder's output",
    "One vector per token, each computed from the whole text. A sentence encoder averages them into one sentence vector."],
};

function normName(m) {
  return m.norm === "rmsnorm" ? "RMSNorm" : "LayerNorm";
}

/** The named axes of a stage's shape, e.g. (1, 9, 5, 64) of attn.q -> batch, heads, tokens, head width. */
function axisNames(stage, shape) {
  if (shape.length === 4) {
    const attention = ["attn.scores", "attn.scores_masked", "attn.weights"].includes(stage);
    return attention ? ["batch", "heads", "query tokens", "key tokens"] : ["batch", "heads", "tokens", "head width"];
  }
  const last = stage === "logits" ? "vocabulary" : stage === "mlp.pre_act" || stage === "mlp.act" ? "MLP width" : "width";
  if (shape.length === 3) return ["batch", "tokens", last];
  if (shape.length === 2) return ["tokens", last];
  return shape.map((_, i) => `axis ${i}`);
}

export async function mount(root, info) {
  const box = h("div", { class: "wt" });
  root.append(box);
  box.append(h("p", { class: "hint wt-intro" },
    "One forward pass, step by step: every tensor one layer computes, with its equation, a window of its ",
    "numbers, and the lines of lucidlm's code that computed it. Pick a layer and a head below."));
  const view = new WalkthroughView(box);
  const bar = promptBar(box, info, (meta) => view.show(meta), { defaultText: "The cat sat on the" });
  box.append(view.controls, view.message, view.summary, view.flow, view.drawer);
  if (bar.text.value.trim()) await bar.run();
}

class WalkthroughView {
  constructor(box) {
    this.box = box;
    this.meta = null;
    this.request = 0;
    this.sources = new Map(); // file -> its lines
    this.layer = h("select", { id: "wt-layer", "aria-label": "layer", onchange: () => this.pick() });
    this.head = h("select", { id: "wt-head", "aria-label": "head", onchange: () => this.pick() });
    this.controls = h("div", { class: "row wt-controls", hidden: true },
      h("label", {}, "layer ", this.layer), h("label", {}, "head ", this.head),
      h("span", { class: "hint" }, "the head picks which head the per-head stages (queries ... attention weights) show"));
    this.message = h("div", { class: "wt-message" });
    this.summary = h("p", { class: "wt-summary" });
    this.flow = h("div", { class: "wt-flow" });
    this.drawer = h("aside", { class: "wt-source", hidden: true, role: "dialog", "aria-label": "source code" });
    this.onKey = (event) => {
      if (!this.box.isConnected) document.removeEventListener("keydown", this.onKey);
      else if (event.key === "Escape") this.drawer.hidden = true;
    };
    document.addEventListener("keydown", this.onKey);
  }

  /** A new trace: fill the pickers for this model, then fetch and draw the stages. */
  async show(meta) {
    this.meta = meta;
    const options = (select, n, text) => select.replaceChildren(
      ...Array.from({ length: n }, (_, i) => h("option", { value: i }, text(i))));
    options(this.layer, meta.n_layer, (i) => `layer ${i}`);
    const gqa = meta.kv_heads < meta.n_head;
    options(this.head, meta.n_head, (i) => gqa ? `head ${i} · kv ${kvHeadOf(i, meta.n_head, meta.kv_heads)}` : `head ${i}`);
    this.layer.value = clamp(state.getInt("wlayer", 0), 0, meta.n_layer - 1);
    this.head.value = clamp(state.getInt("whead", 0), 0, meta.n_head - 1);
    this.controls.hidden = false;
    await this.load();
  }

  pick() {
    state.set({ wlayer: this.layer.value, whead: this.head.value });
    this.load();
  }

  async load() {
    const meta = this.meta;
    const layer = Number(this.layer.value);
    const head = Number(this.head.value);
    const seq = ++this.request; // a late answer for an earlier pick is dropped
    this.message.replaceChildren();
    try {
      const answer = await api.get("walkthrough", { trace: meta.trace, layer, head });
      if (seq === this.request) this.render(answer);
    } catch (error) {
      if (seq === this.request) showError(this.message, error);
    }
  }

  render(answer) {
    const meta = this.meta;
    const { layer, head, labels, stages } = answer;
    const N = meta.n_layer;
    this.summary.replaceChildren(
      `${labels.length} tokens: `, ...labels.map((s) => h("span", { class: "wt-token mono" }, visibleText(s))),
      h("br"),
      h("span", { class: "muted" }, `${meta.model}: ${meta.kind === "encoder" ? "an encoder (bidirectional)" : "a decoder (causal)"}, ` +
        `${N} layers × ${meta.n_head} heads${meta.kv_heads < meta.n_head ? ` (${meta.kv_heads} KV heads)` : ""}, ` +
        `width ${meta.width}, ${normName(meta)}, ${meta.positions === "rope" ? "RoPE" : meta.positions} positions, ` +
        `${meta.mlp === "swiglu" ? "a SwiGLU" : "a plain"} MLP`));

    const cards = [];
    let group = null;
    stages.forEach((s, i) => {
      const inLayer = s.name.startsWith("layers.");
      const g = inLayer ? s.stage.split(".")[0] : s.stage.startsWith("embed.") ? "embed" : "output";
      if (g !== group) { // a heading when the flow enters the embeddings, the layer's attention or MLP, the output
        if (g === "attn" && layer > 0) cards.push(note(layer === 1 ? "layer 0 does the same steps first (with its own weights)"
          : `layers 0..${layer - 1} repeat the same steps (each with its own weights, each reading the one before)`));
        if (g === "output" && group !== "embed" && layer < N - 1) cards.push(note(layer + 1 === N - 1
          ? `layer ${N - 1} repeats the same steps`
          : `layers ${layer + 1}..${N - 1} repeat the same steps`));
        cards.push(h("h2", { class: "wt-group" }, {
          embed: "Embeddings: token ids become vectors",
          attn: `Layer ${layer}, attention: tokens look at each other`,
          mlp: `Layer ${layer}, MLP: each token on its own`,
          output: meta.kind === "encoder" ? "Output: one vector per token" : "Output: scores for the next token",
        }[g]));
        group = g;
      }
      cards.push(this.card(s, i + 1, labels, head));
    });
    this.flow.replaceChildren(...cards);
    this.flow.dataset.layer = layer;
    this.flow.dataset.head = head;
  }

  /** One stage: title, shape, equation, the numbers, stats, source links. */
  card(s, step, labels, head) {
    const meta = this.meta;
    const [name, what] = (STAGES[s.stage] ?? (() => [s.stage, ""]))(meta);
    const axes = axisNames(s.stage, s.shape);
    const shape = h("div", { class: "wt-shape" }, "shape ", h("span", { class: "mono" }, fmtShape(s.shape)), ": ",
      s.shape.map((n, i) => `${axes[i]} ${n}`).join(" × "));
    const eq = h("div", { class: "wt-eq" });
    eq.innerHTML = s.equation; // MathML from the server's equations.py, which escapes every text it puts in
    let headNote = null;
    if (s.per_head) {
      const kv = meta.kv_heads < meta.n_head && (s.stage === "attn.k" || s.stage === "attn.v")
        ? ` (KV head ${kvHeadOf(head, meta.n_head, meta.kv_heads)}, shared with ${meta.n_head / meta.kv_heads - 1} other query heads)` : "";
      headNote = h("div", { class: "wt-headnote" }, `showing head ${head} of ${s.shape[1]}${kv}`);
    }
    return h("section", { class: "card wt-stage", dataset: { stage: s.stage, name: s.name } },
      h("div", { class: "wt-stage-head" }, h("span", { class: "wt-step" }, String(step)), h("h3", {}, name),
        h("code", { class: "wt-name" }, s.name)),
      what ? h("p", { class: "wt-what" }, what) : null,
      h("div", { class: "wt-body" },
        h("div", { class: "wt-left" }, shape, headNote, eq, stats(s.stats),
          h("div", { class: "wt-links" }, s.source.map((src) => h("button", {
            class: "small wt-srclink", title: `${src.function}: lines ${src.start}–${src.end}`,
            onclick: () => this.openSource(src),
          }, `source: ${src.file}:${src.highlight ?? src.start} (${src.function})`)))),
        valuesTable(s, labels)));
  }

  /** The side panel with the lines of one function, the line that records the stage marked. */
  async openSource(src) {
    const drawer = this.drawer;
    drawer.hidden = false;
    drawer.replaceChildren(h("p", { class: "muted" }, `loading ${src.file}…`));
    try {
      if (!this.sources.has(src.file)) this.sources.set(src.file, (await api.get("source", { file: src.file })).lines);
    } catch (error) {
      showError(drawer, error);
      drawer.prepend(closeButton(drawer));
      return;
    }
    const lines = this.sources.get(src.file);
    const rows = [];
    for (let n = src.start; n <= Math.min(src.end, lines.length); n++) {
      rows.push(h("div", { class: "wt-line" + (n === src.highlight ? " wt-hl" : ""), dataset: { line: n } },
        h("span", { class: "wt-ln" }, String(n)), h("code", {}, lines[n - 1])));
    }
    drawer.replaceChildren(
      h("div", { class: "wt-source-head" }, closeButton(drawer),
        h("div", {}, h("strong", { class: "mono" }, `src/lucidlm/${src.file}`), h("br"),
          h("span", { class: "muted" }, `${src.function}, lines ${src.start}–${src.end}` +
            (src.highlight ? `; line ${src.highlight} (marked) records this stage in the trace` : "")))),
      h("div", { class: "wt-code" }, rows));
    // scroll the code (not the page behind the drawer) so the marked line sits in the middle
    const code = drawer.querySelector(".wt-code");
    const marked = drawer.querySelector(".wt-hl");
    if (marked) code.scrollTop = marked.offsetTop - code.offsetTop - code.clientHeight / 2;
  }
}

// -- pieces of a card ----------------------------------------------------------------------------

function note(text) {
  return h("div", { class: "wt-repeat" }, "⋮ ", text, " ⋮");
}

function closeButton(drawer) {
  return h("button", { class: "small wt-close", "aria-label": "close", onclick: () => { drawer.hidden = true; } }, "✕ close");
}

/** A summary of the whole tensor (not just the window shown). The server leaves the masked scores
 * (−∞) out and counts them in `masked`; null means no finite value was left to summarise. */
function stats(st) {
  const f = (x) => (x === null ? "none" : fmtShort(x, 4));
  const masked = st.masked ? `, finite values only: ${st.masked.toLocaleString("en")} masked entries are −∞` : "";
  return h("div", { class: "wt-stats mono" },
    `min ${f(st.min)} · max ${f(st.max)} · mean ${f(st.mean)} · std ${f(st.std)}`,
    h("span", { class: "muted" }, `  (whole tensor${masked})`));
}

/**
 * The window of numbers as a table: rows = tokens, columns = indices (or tokens: the keys of the
 * attention stages, the vocabulary's top entries for the logits); a colour per cell on a
 * diverging scale centred at 0; the exact value in each cell's tooltip. null is −∞ (masked).
 */
function valuesTable(s, labels) {
  let maxAbs = 0;
  for (const row of s.values) for (const v of row) if (v !== null) maxAbs = Math.max(maxAbs, Math.abs(v));
  const attention = ["attn.scores", "attn.scores_masked", "attn.weights"].includes(s.stage);
  const colName = (c, j) => s.col_labels ? visibleText(s.col_labels[j]) : attention ? visibleText(labels[c]) : String(c);
  const colAxis = s.col_labels ? "the 12 most likely next tokens →" : attention ? "key token (looked at) →"
    : `index along the ${axisNames(s.stage, s.shape).at(-1)} →`;
  const head = h("tr", {}, h("th", { class: "wt-corner" }, "token ↓"),
    s.cols.map((c, j) => h("th", { class: "wt-col", title: s.col_labels ? `token id ${c}` : `column ${c}` }, colName(c, j))));
  const body = s.values.map((row, i) => {
    const rowLabel = visibleText(labels[s.rows[i]]);
    return h("tr", {}, h("th", { class: "wt-row", title: `token ${s.rows[i]}` }, rowLabel),
      row.map((v, j) => {
        const where = `'${rowLabel}' (token ${s.rows[i]}), ${attention ? `key '${visibleText(labels[s.cols[j]])}'` : s.col_labels ? `'${colName(s.cols[j], j)}'` : `column ${s.cols[j]}`}`;
        if (v === null) return h("td", { class: "wt-masked", title: `${where}: −∞ (masked)` }, "−∞");
        const [r, g, b] = divergingRGB(v, maxAbs);
        const dark = Math.abs(v) > 0.6 * maxAbs;
        return h("td", { style: `background: rgb(${r},${g},${b});${dark ? " color: #fff;" : ""}`,
          title: `${where}: ${v}`, dataset: { value: v } }, fmtShort(v, 3));
      }));
  });
  const hidden = [];
  const fullRows = s.shape.at(-2) ?? 1;
  const fullCols = s.shape.at(-1);
  if (s.rows.length < fullRows) hidden.push(`${s.stage === "logits" ? "the last" : "the first"} ${s.rows.length} of ${fullRows} tokens`);
  if (s.cols.length < fullCols) hidden.push(`${s.col_labels ? "the top" : "the first"} ${s.cols.length} of ${fullCols.toLocaleString("en")} columns`);
  return h("div", { class: "wt-values" },
    h("div", { class: "wt-colaxis hint" }, colAxis),
    h("div", { class: "wt-tablescroll" }, h("table", { class: "wt-table mono" }, h("thead", {}, head), h("tbody", {}, body))),
    h("div", { class: "hint" }, hidden.length ? `showing ${hidden.join(" × ")}; hover a cell for its exact value` : "hover a cell for its exact value"),
    legend(maxAbs, s.values.some((row) => row.includes(null))));
}

/** The colour scale of one table: −max (blue) .. 0 (white) .. +max (red). */
function legend(maxAbs, anyMasked) {
  const bar = h("canvas", { class: "wt-colorbar" });
  drawColorBar(bar, 120, 10, (t) => divergingRGB(2 * t - 1, 1));
  return h("div", { class: "wt-legend hint" }, fmtShort(-maxAbs, 3), " ", bar, " ", fmtShort(maxAbs, 3),
    "  colour: blue below 0, white at 0, red above", anyMasked ? h("span", { class: "wt-masked-key" }, "−∞") : null,
    anyMasked ? " masked" : null);
}

/** A number in a few characters: 3 significant digits, exponent form when tiny or huge. */
function fmtShort(x, digits) {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e-2 && a < 1e4) return Number(x.toPrecision(digits)).toString();
  return x.toExponential(digits - 2);
}

function clamp(x, lo, hi) {
  return Math.max(lo, Math.min(hi, x));
}
