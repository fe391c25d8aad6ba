/**
 * The Compare panel: two versions of a computation side by side (A and B), and where they differ.
 * A version is a model, a prompt and an optional edit, so one panel compares two prompts, two
 * models of one architecture (a base and its fine-tune, two kept steps RUN@STEP of a training run),
 * or the model with and without an edit.
 *
 *   POST /api/trace {model, text, edits}   each version run once (the edit applied while it runs)
 *   POST /api/compare {a, b}               per head: mean |weights_a - weights_b| (L, nh); the KL of
 *                                          the next-token distributions and the tokens that moved most;
 *                                          the layer from which each version's answer stays on top
 *   GET  /api/attention/head               a clicked head's full weights, in A and in B
 *
 * Why mean |ΔA| per head: a head's weights (T, T) say where each token looks. Zeroing layer 10's
 * head 3 removes what that head adds to the residual stream, after every weight of layers 0..10 was
 * computed, so those cells are exactly 0 (drawn white with a dot); the cells after it show the
 * edit's effect spreading through the later layers.
 *
 * URL keys: amodel, atext, aedit, bmodel, btext, bedit (an edit as intervene.js writes it, e.g.
 * "zero:head:10:3" or "scale:mlp:5::0.5"), head ("layer:head" of the head opened below).
 */

import * as api from "../lib/api.js";
import {viridis, viridisRGB} from "../lib/colors.js";
import {h, showError, status} from "../lib/dom.js";
import {fmtProb} from "../lib/format.js";
import {divergingRGB, drawColorBar, MASKED_RGB, sizeCanvas} from "../lib/heatmap.js";
import * as state from "../lib/state.js";
import {decodeTensor} from "../lib/tensor.js";
import {visibleText} from "../lib/text.js";
import {decodeEdits, encodeEdit, fmtKL, fmtPts, toRequest} from "../lib/edits.js";

export const title = "Compare";

const DEFAULT_MODEL = "smollm2-135m-instruct";
const DEFAULTS = {a: "The capital of France is", b: "The capital of Italy is"};
const FONT = "11px ui-monospace, 'DejaVu Sans Mono', monospace";

/** The value of a ΔA cell as text: "0 (identical)" for exactly 0, else 3 significant digits. */
function fmtDelta(v) {
  return v === 0 ? "0 (identical)" : v < 1e-4 ? v.toExponential(2) : v.toPrecision(3);
}

export async function mount(root, info) {
  const panel = h("div", {class: "cmp"});
  root.append(panel);
  panel.append(h("p", {class: "hint cmp-intro"},
    "Run two versions side by side: two prompts, two models of one architecture (a base and its fine-tune, two " +
    "steps of a training run), or the model with and without an edit, and see where they differ."));

  // -- the two columns: model, prompt, edit ----------------------------------------------------------
  const names = info.models.filter((m) => !m.seq2seq).map((m) => m.name);
  const sides = {a: column("a"), b: column("b")};
  const runButton = h("button", {class: "primary", id: "cmp-run", onclick: () => compare()}, "Compare");
  const message = h("div", {class: "cmp-message", id: "cmp-message"});
  panel.append(h("div", {class: "cmp-columns"}, sides.a.element, sides.b.element),
    h("div", {class: "row"}, runButton, h("span", {class: "hint"},
      "Runs both versions through their models (each edit applied while it runs), then compares them.")),
    message);

  /** One version's controls; its URL keys are <side>model, <side>text, <side>edit. */
  function column(side) {
    const model = h("select", {id: `cmp-${side}-model`, "aria-label": `model ${side.toUpperCase()}`},
      names.map((n) => h("option", {value: n}, n)));
    const linked = state.get(`${side}model`, names.includes(DEFAULT_MODEL) ? DEFAULT_MODEL : names[0]);
    if (!names.includes(linked)) model.append(h("option", {value: linked}, linked)); // a RUN@STEP from a link
    model.value = linked;
    const text = h("textarea", {id: `cmp-${side}-text`, rows: 2, spellcheck: "false", "aria-label": `prompt ${side.toUpperCase()}`});
    text.value = state.get(`${side}text`, DEFAULTS[side]);
    text.addEventListener("keydown", (event) => { if (event.key === "Enter" && event.ctrlKey) compare(); });
    // the edit: none, zero one head, or scale one MLP
    const kind = h("select", {id: `cmp-${side}-edit`, "aria-label": `edit ${side.toUpperCase()}`},
      h("option", {value: ""}, "no edit"), h("option", {value: "head"}, "zero head"),
      h("option", {value: "mlp"}, "scale MLP"));
    const layer = h("input", {type: "number", id: `cmp-${side}-layer`, min: 0, value: 0, "aria-label": "layer"});
    const head = h("input", {type: "number", id: `cmp-${side}-head`, min: 0, value: 0, "aria-label": "head"});
    const factor = h("input", {type: "number", id: `cmp-${side}-factor`, step: 0.1, value: 0.5, "aria-label": "factor"});
    const headPart = h("label", {}, "head ", head);
    const factorPart = h("label", {}, "by ", factor);
    const layerPart = h("label", {}, "layer ", layer);
    const [e] = decodeEdits(state.get(`${side}edit`, ""));
    if (e && e.kind === "zero" && e.site === "head") {
      [kind.value, layer.value, head.value] = ["head", e.layer, e.head];
    } else if (e && e.kind === "scale" && e.site === "mlp") {
      [kind.value, layer.value, factor.value] = ["mlp", e.layer, e.factor];
    }
    const sync = () => {
      layerPart.hidden = kind.value === "";
      headPart.hidden = kind.value !== "head";
      factorPart.hidden = kind.value !== "mlp";
    };
    kind.addEventListener("change", sync);
    sync();
    const element = h("section", {class: "card cmp-col", dataset: {side}},
      h("h2", {}, `Version ${side.toUpperCase()}`),
      h("div", {class: "row"}, h("label", {}, "model ", model)), text,
      h("div", {class: "row cmp-edit"}, h("label", {}, "edit ", kind), layerPart, headPart, factorPart));

    /** The edit the controls describe (or null), checked for whole numbers. */
    function edit() {
      if (kind.value === "") return null;
      const L = Number.parseInt(layer.value, 10);
      if (!Number.isInteger(L)) throw new Error(`version ${side.toUpperCase()}: the layer must be a whole number, e.g. 10`);
      if (kind.value === "head") {
        const hd = Number.parseInt(head.value, 10);
        if (!Number.isInteger(hd)) throw new Error(`version ${side.toUpperCase()}: the head must be a whole number, e.g. 3`);
        return {kind: "zero", site: "head", layer: L, head: hd, position: null};
      }
      const f = Number(factor.value);
      if (factor.value === "" || !Number.isFinite(f)) throw new Error(`version ${side.toUpperCase()}: the factor must be a number, e.g. 0.5`);
      return {kind: "scale", site: "mlp", layer: L, head: null, position: null, factor: f};
    }
    return {element, model, text, edit};
  }

  // kept steps of training runs join the model lists as RUN@STEP (a run without any adds nothing)
  addRunSteps().catch((error) => showError(message, error));
  async function addRunSteps() {
    const runs = (await api.get("runs")).runs;
    for (const run of runs) {
      let steps = [];
      try {
        steps = (await api.get("runs/checkpoints", {run: run.name})).steps;
      } catch {
        continue; // a run still starting may have no checkpoint folder: nothing to list
      }
      for (const side of Object.values(sides)) {
        for (const step of steps) {
          const name = `${run.name}@${step}`;
          if (![...side.model.options].some((o) => o.value === name)) side.model.append(h("option", {value: name}, name));
        }
      }
    }
  }

  // -- the results -----------------------------------------------------------------------------------
  const nextBox = h("section", {class: "card cmp-next", id: "cmp-next"});
  const attnBox = h("section", {class: "card cmp-attn", id: "cmp-attn"});
  const answerBox = h("section", {class: "card cmp-answer", id: "cmp-answer"});
  const headBox = h("div", {class: "cmp-headview", id: "cmp-headview"});
  const results = h("div", {class: "cmp-results"}, nextBox, attnBox, answerBox);
  results.hidden = true;
  panel.append(results);

  let metas = null; // {a, b}: /api/trace's answers
  let request = 0; // only the newest comparison is drawn
  const tag = (side) => h("span", {class: `cmp-tag ${side}`}, side.toUpperCase());

  async function compare() {
    const mine = ++request;
    message.replaceChildren();
    let edits;
    try {
      edits = {a: sides.a.edit(), b: sides.b.edit()};
    } catch (error) {
      showError(message, error);
      return;
    }
    const keys = {};
    for (const side of ["a", "b"]) {
      keys[`${side}model`] = sides[side].model.value;
      keys[`${side}text`] = sides[side].text.value;
      keys[`${side}edit`] = edits[side] ? encodeEdit(edits[side]) : null;
    }
    state.set(keys);
    runButton.disabled = true;
    const started = performance.now();
    try {
      const traced = {};
      for (const side of ["a", "b"]) { // one after the other: the server computes one at a time anyway
        status(`running version ${side.toUpperCase()} (${sides[side].model.value})…`);
        traced[side] = await api.post("trace", {model: sides[side].model.value, text: sides[side].text.value,
          edits: edits[side] ? [toRequest(edits[side])] : []});
      }
      status("comparing…");
      const answer = await api.post("compare", {a: traced.a.trace, b: traced.b.trace});
      if (mine !== request) return;
      metas = traced;
      render(answer);
      status(`compared in ${Math.round(performance.now() - started)} ms`);
    } catch (error) {
      if (mine === request) {
        showError(message, error);
        results.hidden = true; // no stale comparison under a message about a new one
        status("");
      }
    } finally {
      if (mine === request) runButton.disabled = false;
    }
  }

  function render(answer) {
    results.hidden = false;
    panel.dataset.kl = answer.next ? answer.next.kl : "";
    panel.dataset.tokens = answer.tokens;
    renderNext(answer);
    renderAttention(answer);
    renderAnswer(answer);
  }

  // (1) the next token: KL and the tokens that moved most --------------------------------------------
  function renderNext(answer) {
    if (!answer.next) {
      nextBox.replaceChildren(h("h2", {}, "1. The next token"),
        h("p", {}, "No next-token distributions to compare: an encoder (BERT, MiniLM) predicts no next token."));
      return;
    }
    const {kl, changes} = answer.next;
    const rows = changes.map((c) => h("div", {class: "cmp-bar", role: "listitem",
      dataset: {token: c.id, pa: c.p_a, pb: c.p_b}, title: `${visibleText(c.label)}: ${fmtProb(c.p_a)} in A, ${fmtProb(c.p_b)} in B`},
    h("span", {class: "cmp-label mono"}, visibleText(c.label)),
    h("span", {class: "cmp-track"}, h("span", {class: "cmp-fill a", style: `width: ${100 * c.p_a}%`}),
      h("span", {class: "cmp-fill b", style: `width: ${100 * c.p_b}%`})),
    h("span", {class: "cmp-p mono"}, fmtProb(c.p_a)), h("span", {class: "cmp-p mono"}, fmtProb(c.p_b)),
    h("span", {class: "cmp-delta mono" + (c.p_b < c.p_a ? " down" : c.p_b > c.p_a ? " up" : "")},
      c.p_b === c.p_a ? "=" : fmtPts(c.p_b - c.p_a))));
    nextBox.replaceChildren(h("h2", {}, "1. The next token"),
      h("p", {class: "cmp-kl", id: "cmp-kl"}, "KL(A ‖ B) = ", h("b", {}, `${fmtKL(kl)} nats`),
        h("span", {class: "muted"}, " · how far B's whole next-token distribution is from A's (0: the same)")),
      h("div", {class: "cmp-legend"}, h("span", {class: "cmp-swatch a"}), "A", h("span", {class: "cmp-swatch b"}), "B",
        h("span", {class: "muted"}, ` · the ${changes.length} tokens whose probability changed most`)),
      h("div", {class: "cmp-bars", id: "cmp-bars", role: "list"},
        h("div", {class: "cmp-bar cmp-axis"}, h("span", {}, "token"), h("span", {}, "probability: 0 → 100%"),
          h("span", {}, "A"), h("span", {}, "B"), h("span", {}, "B − A")), rows));
  }

  // (2) the attention difference: a layers x heads grid of cells --------------------------------------
  function renderAttention(answer) {
    const t = decodeTensor(answer.attention); // (L, nh)
    const [L, nh] = t.shape;
    const values = Array.from(t.data);
    const max = Math.max(...values);
    const T = answer.tokens;
    const readout = h("p", {class: "cmp-readout mono", id: "cmp-readout"}, "Hover a cell to read it; click it to see the two heads.");
    const grid = h("div", {class: "cmp-grid", id: "cmp-grid", style: `grid-template-columns: 3.2em repeat(${nh}, 30px)`});
    grid.append(h("span", {class: "cmp-axislabel"}, "layer"),
      ...Array.from({length: nh}, (_, c) => h("span", {class: "cmp-collabel"}, c)));
    for (let r = 0; r < L; r++) {
      grid.append(h("span", {class: "cmp-rowlabel"}, r));
      for (let c = 0; c < nh; c++) {
        const v = values[r * nh + c];
        const describe = `layer ${r} head ${c}: mean |ΔA| = ${fmtDelta(v)}`;
        grid.append(h("span", {class: "cmp-cell" + (v === 0 ? " cmp-zero" : ""), title: describe,
          style: v === 0 ? null : `background: ${viridis(max > 0 ? v / max : 0)}`,
          dataset: {layer: r, head: c, value: v},
          onmouseenter: () => { readout.textContent = describe; },
          onclick: () => openHead(r, c)}));
      }
    }
    const colorBar = h("canvas", {class: "cmp-colorbar"});
    drawColorBar(colorBar, 180, 12, (x) => viridisRGB(x));
    const zeros = values.filter((v) => v === 0).length;
    const legend = h("div", {class: "cmp-legend"},
      h("span", {}, `mean |ΔA| per head over the first ${T} token${T === 1 ? "" : "s"}:`),
      h("span", {class: "mono"}, "0"), colorBar, h("span", {class: "mono"}, fmtDelta(max)),
      h("span", {class: "cmp-zero cmp-swatchcell"}), h("span", {}, `identical (exactly 0): ${zeros} of ${L * nh}`));
    const order = values.map((_, i) => i).filter((i) => values[i] > 0).sort((i, j) => values[j] - values[i]).slice(0, 5);
    const top = h("div", {class: "cmp-top", id: "cmp-top"}, h("div", {}, "The heads that changed most:"),
      order.length ? order.map((i) => h("button", {class: "small", dataset: {layer: Math.floor(i / nh), head: i % nh},
        onclick: () => openHead(Math.floor(i / nh), i % nh)},
      `layer ${Math.floor(i / nh)} head ${i % nh}: ${fmtDelta(values[i])}`)) : h("span", {class: "muted"}, "none: every head is identical"));
    const notes = [];
    if (!answer.same_prefix) { // the first token where the prompts part: attention differs from layer 0 on
      const k = metas.a.ids.findIndex((id, i) => i < T && id !== metas.b.ids[i]);
      notes.push(`The prompts differ from token ${k} on (${visibleText(metas.a.labels[k])} in A, ` +
        `${visibleText(metas.b.labels[k])} in B), so attention can differ from layer 0 on` +
        (metas.a.causal ? `; the rows of tokens 0..${k - 1} cannot (a causal model's tokens see only the past).` : "."));
    }
    const lengths = [metas.a.ids.length, metas.b.ids.length];
    if (lengths[0] !== lengths[1]) notes.push(`A has ${lengths[0]} tokens and B ${lengths[1]}: only the first ${T} are compared.`);
    headBox.replaceChildren();
    attnBox.replaceChildren(h("h2", {}, "2. Where attention differs: layers × heads"),
      h("p", {class: "hint"}, "Each cell: how much one head's attention weights differ between A and B, averaged over every ",
        "(query, key) pair of the first tokens (1 would be a head looking at entirely different tokens)."),
      ...notes.map((n) => h("p", {class: "hint"}, n)),
      legend, h("div", {class: "cmp-attn-body"}, h("div", {}, h("div", {class: "cmp-headaxis"}, "head →"), grid),
        h("div", {class: "cmp-side"}, readout, top)), headBox);
    const linked = (state.get("head") ?? "").split(":").map(Number);
    if (linked.length === 2 && linked[0] < L && linked[1] < nh) openHead(linked[0], linked[1]);
  }

  // the two heads' weights side by side and their difference
  let headRequest = 0;
  async function openHead(layer, head) {
    const mine = ++headRequest;
    state.set({head: `${layer}:${head}`});
    for (const cell of attnBox.querySelectorAll(".cmp-cell.selected")) cell.classList.remove("selected");
    attnBox.querySelector(`.cmp-cell[data-layer="${layer}"][data-head="${head}"]`)?.classList.add("selected");
    headBox.replaceChildren(h("p", {class: "muted"}, `loading layer ${layer} head ${head}…`));
    try {
      const [wa, wb] = await Promise.all(["a", "b"].map((side) =>
        api.get("attention/head", {trace: metas[side].trace, layer, head})));
      if (mine !== headRequest) return;
      const A = decodeTensor(wa.weights);
      const B = decodeTensor(wb.weights);
      const T = Math.min(A.shape[0], B.shape[0]);
      const causal = metas.a.causal;
      const at = (m, i, j) => m.data[i * m.shape[1] + j];
      const masked = (i, j) => causal && j > i;
      let maxAbs = 0;
      for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) maxAbs = Math.max(maxAbs, Math.abs(at(A, i, j) - at(B, i, j)));
      const weightColour = (m) => (i, j) => (masked(i, j) ? MASKED_RGB : viridisRGB(at(m, i, j)));
      const diffColour = (i, j) => (masked(i, j) ? MASKED_RGB : divergingRGB(at(B, i, j) - at(A, i, j), maxAbs || 1));
      const readout = h("p", {class: "cmp-readout mono"}, "Hover a cell: the query token (row) looks at the key token (column).");
      const show = (name, labels, value) => (i, j) => {
        readout.textContent = `${name}: «${visibleText(labels[i])}» → «${visibleText(labels[j])}»: ${value(i, j)}`;
      };
      const diffLegend = h("canvas", {class: "cmp-colorbar"});
      drawColorBar(diffLegend, 120, 10, (x) => divergingRGB((2 * x - 1) * (maxAbs || 1), maxAbs || 1));
      const weightLegend = h("canvas", {class: "cmp-colorbar"});
      drawColorBar(weightLegend, 120, 10, (x) => viridisRGB(x));
      headBox.replaceChildren(h("h3", {}, `Layer ${layer} head ${head}: where each token looks`),
        h("div", {class: "cmp-legend"}, "weight 0", weightLegend, "1", h("span", {class: "cmp-gap"}),
          `B − A: ${(-maxAbs).toPrecision(2)}`, diffLegend, `+${maxAbs.toPrecision(2)}`, h("span", {class: "cmp-gap"}),
          h("span", {class: "cmp-swatch masked"}), "future token (masked)"),
        h("div", {class: "cmp-matrices"},
          matrix("A", metas.a.labels, A.shape[0], weightColour(A), show("A", metas.a.labels, (i, j) => at(A, i, j).toFixed(3))),
          matrix("B", metas.b.labels, B.shape[0], weightColour(B), show("B", metas.b.labels, (i, j) => at(B, i, j).toFixed(3))),
          matrix(`B − A (first ${T} tokens; A's labels)`, metas.a.labels.slice(0, T), T, diffColour,
            show("B − A", metas.a.labels, (i, j) => (at(B, i, j) - at(A, i, j)).toFixed(4)))),
        readout);
      headBox.dataset.layer = layer;
      headBox.dataset.head = head;
    } catch (error) {
      if (mine === headRequest) showError(headBox, error);
    }
  }

  // (3) the answer forms at ----------------------------------------------------------------------------
  function renderAnswer(answer) {
    const line = (side) => {
      const a = answer.answer[side];
      const meta = metas[side];
      if (!a) return h("li", {dataset: {side}}, tag(side), " no answer to follow (an encoder predicts no next token)");
      const label = meta.next?.labels[String(a.answer)] ?? `#${a.answer}`;
      return h("li", {dataset: {side, layer: a.layer, after: a.after}}, tag(side), ` «${visibleText(label)}» is the top token from `,
        h("b", {}, `layer ${a.layer}'s ${a.after === "attn" ? "attention" : "MLP"}`), ` on (layers 0–${meta.n_layer - 1})`);
    };
    answerBox.replaceChildren(h("h2", {}, "3. The answer forms at"),
      h("p", {class: "hint"}, "Reading the residual stream through the output head after each sub-block (the logit lens): ",
        "the first point from which each version's final answer stays its most likely token."),
      h("ul", {class: "cmp-answers"}, line("a"), line("b")));
  }

  if (sides.a.text.value.trim() && sides.b.text.value.trim()) await compare();
}

/**
 * One attention matrix on a canvas: n x n cells, colour(i, j) -> [r, g, b], the token labels on the
 * left (queries) and on top (keys, every one when they fit), onHover(i, j) for the read-out.
 */
function matrix(name, labels, n, colour, onHover) {
  const cell = Math.max(6, Math.min(28, Math.floor(260 / n)));
  const left = 70;
  const top = 18;
  const canvas = h("canvas", {class: "cmp-matrix"});
  const width = left + n * cell + 4;
  const height = top + n * cell + 4;
  const dpr = sizeCanvas(canvas, width, height);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.font = FONT;
  ctx.fillStyle = "#1d2230";
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  ctx.fillText("key →", left, 8);
  ctx.textAlign = "right";
  const every = Math.ceil(11 / cell); // a label every few rows when the rows are thinner than the text
  for (let i = 0; i < n; i++) {
    if (i % every === 0) ctx.fillText(visibleText(labels[i] ?? "").slice(0, 9), left - 4, top + (i + 0.5) * cell);
    for (let j = 0; j < n; j++) {
      ctx.fillStyle = `rgb(${colour(i, j).join(",")})`;
      ctx.fillRect(left + j * cell, top + i * cell, cell, cell);
    }
    ctx.fillStyle = "#1d2230";
  }
  canvas.addEventListener("mousemove", (event) => {
    const box = canvas.getBoundingClientRect();
    const j = Math.floor((event.clientX - box.left - left) / cell);
    const i = Math.floor((event.clientY - box.top - top) / cell);
    if (i >= 0 && j >= 0 && i < n && j < n) onHover(i, j);
  });
  return h("figure", {class: "cmp-figure"}, h("figcaption", {}, name), canvas);
}
