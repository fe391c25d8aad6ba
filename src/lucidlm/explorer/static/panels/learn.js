/**
 * Watch it learn, the part of the Training runs panel (runs.js) that shows a run's kept models
 * (TrainConfig.keep_every) one step at a time: the same prompt continued by each, one attention
 * head, the next-token top 5, and a marker on the loss chart (through the `mark` callback).
 */

import * as api from "../lib/api.js";
import { viridisRGB } from "../lib/colors.js";
import { h, showError } from "../lib/dom.js";
import { fmtProb } from "../lib/format.js";
import { causalMaskStart, cellAt, clipText, drawColorBar, drawMaskSwatch, drawMatrix, sizeCanvas } from "../lib/heatmap.js";
import { processLogits, topK } from "../lib/sampling.js";
import * as state from "../lib/state.js";
import { decodeTensor } from "../lib/tensor.js";
import { visibleText } from "../lib/text.js";

const PLAY_MS = 1500; // each kept step stays this long while playing
const SAMPLE_TOKENS = 120;
const SAMPLE_SEED = 0; // one seed for every step: the differences between samples are the model's
const DEFAULT_PROMPT = "ROMEO:\n";
const DEFAULT_TEMP = 0.8;
const TOP_NEXT = 5;
const HEAT_PX = 200; // the heatmap's target side, CSS pixels
const HEAT_LABELS_UP_TO = 32; // token labels on its axes up to this many tokens
const HEAT_FONT = "11px ui-monospace, 'DejaVu Sans Mono', monospace";

/**
 * The record of `split` logged closest to `step` (the earlier one on a tie), or null.
 * @example lossAt([{step: 50, split: "val", loss: 2}, {step: 100, split: "val", loss: 1.5}], "val", 90)
 *   // {step: 100, split: "val", loss: 1.5}
 */
export function lossAt(records, split, step) {
  let best = null;
  for (const r of records) {
    if (r.split !== split || typeof r.loss !== "number" || !Number.isFinite(r.loss)) continue;
    const d = Math.abs(r.step - step);
    const bestD = best ? Math.abs(best.step - step) : Infinity;
    if (d < bestD || (d === bestD && r.step < best.step)) best = r;
  }
  return best;
}

/**
 * Watch it learn: the models a run kept every keep_every steps, one at a time. For the chosen
 * step: the prompt continued by that step's model (always seed 0, so the differences between
 * steps are the model's), one attention head on the prompt, and the next-token top 5.
 *
 * Three kinds of answer, each cached by what it depends on:
 *   sample  step, prompt, temperature      POST /api/runs/sample
 *   trace   step, prompt                   POST /api/trace {model: "RUN@STEP"}
 *   head    step, prompt, layer, head      GET  /api/attention/head
 * The sample and the trace each carry a sequence number: an answer that arrives after a newer
 * request went out is dropped, so a slow step can never overwrite the one the slider is on.
 */
export class LearnView {
  constructor(box, run, { records, mark }) {
    this.box = box;
    this.run = run;
    this.records = records; // () => the run's metrics records so far
    this.mark = mark; // (step) => the chart shows it
    this.steps = null; // the kept steps, once known
    this.cache = new Map(); // "kind|step|..." -> Promise of the answer
    this.seq = { sample: 0, trace: 0 };
    this.destroyed = false;
    this.playing = false;
    this.timer = null;
    box.replaceChildren();
    box.className = "learn";
  }

  /** Another run was chosen, or the panel was left: nothing more is drawn, played or put in the URL. */
  get dead() {
    return this.destroyed || !this.box.isConnected;
  }

  destroy() {
    this.destroyed = true;
    this.stop();
  }

  /** Ask which steps the run kept; (re)build the controls when the list changed. */
  async refresh() {
    let steps;
    try {
      steps = (await api.get("runs/checkpoints", { run: this.run })).steps;
    } catch (error) {
      if (this.dead) return;
      this.box.replaceChildren(h("h3", {}, "Watch it learn"), h("div", { class: "learn-message" }));
      showError(this.box.lastChild, error);
      return;
    }
    if (this.dead || JSON.stringify(steps) === JSON.stringify(this.steps)) return;
    const had = this.steps;
    this.steps = steps;
    if (!steps.length) {
      this.box.replaceChildren(h("p", { class: "learn-none muted" },
        "This run kept no checkpoints: train with keep_every = N (make demo does) to watch it learn here."));
      return;
    }
    if (had?.length) { // more steps while it trains: a longer slider, the same step shown
      this.setSteps(steps);
      return;
    }
    this.build();
    this.setSteps(steps);
    const wanted = state.getInt("lstep", steps[steps.length - 1]); // default: the run's latest model
    this.goTo(nearestIndex(steps, wanted));
  }

  // -- the controls ---------------------------------------------------------------------------

  build() {
    const prompt = state.get("lprompt", DEFAULT_PROMPT);
    const temp = state.getFloat("ltemp", DEFAULT_TEMP);
    this.slider = h("input", { type: "range", id: "lstep", min: 0, step: 1, value: 0, "aria-label": "training step" });
    this.stepOut = h("output", { for: "lstep", class: "learn-step mono" });
    this.ticks = h("div", { class: "learn-ticks mono" });
    this.playButton = h("button", { class: "small learn-play", onclick: () => (this.playing ? this.stop() : this.play()) },
      "▶ play");
    this.lossOut = h("span", { class: "learn-loss mono" });
    this.promptBox = h("textarea", { id: "lprompt", rows: 2, "aria-label": "prompt", spellcheck: "false" });
    this.promptBox.value = prompt;
    this.tempBox = h("input", { type: "number", id: "ltemp", min: 0, max: 2, step: 0.1, value: temp,
      "aria-label": "temperature", style: "width: 5em" });
    this.layerPick = h("select", { id: "llayer", "aria-label": "layer" });
    this.headPick = h("select", { id: "lhead", "aria-label": "head" });
    this.message = h("div", { class: "learn-message" });
    this.sampleBox = h("pre", { class: "learn-sample" });
    this.heatTitle = h("span", {});
    this.canvas = h("canvas", { class: "learn-heat" });
    this.readout = h("div", { class: "learn-readout mono muted" }, "Hover a cell: how much a token looks at another.");
    this.bars = h("div", { class: "learn-bars", role: "list" });
    this.barsTitle = h("div", { class: "learn-caption" });
    this.lensTitle = h("div", { class: "learn-caption" });
    this.lens = h("div", { class: "learn-lens mono", role: "list" });

    const colorbar = h("canvas", { class: "learn-colorbar" });
    drawColorBar(colorbar, 110, 10, viridisRGB);
    const swatch = h("canvas", { class: "learn-swatch" });
    drawMaskSwatch(swatch, 12);

    this.box.replaceChildren(
      h("h3", {}, "Watch it learn"),
      h("p", { class: "hint" },
        "The models this run kept as it trained. Each step continues the same prompt with the same random seed, so every ",
        "difference between two steps is what the model learned; press play to watch it go from noise to text."),
      h("div", { class: "learn-controls" },
        h("div", { class: "learn-stepline" },
          h("label", { for: "lstep" }, "step"), h("div", { class: "learn-slider" }, this.slider, this.ticks),
          this.stepOut, this.playButton, this.lossOut),
        h("div", { class: "row learn-inputs" },
          h("label", { for: "lprompt" }, "prompt"), this.promptBox,
          h("label", { for: "ltemp", title: "0 = always the most likely token; higher = more surprising picks" },
            "temperature"), this.tempBox,
          h("span", { class: "muted" }, `seed ${SAMPLE_SEED}, ${SAMPLE_TOKENS} tokens`))),
      this.message,
      h("div", { class: "learn-grid" },
        h("div", { class: "learn-col" },
          h("div", { class: "learn-caption" }, "The prompt (grey) continued by this step's model"), this.sampleBox),
        h("div", { class: "learn-col" },
          h("div", { class: "learn-caption learn-pickers" }, h("label", { for: "llayer" }, "Layer "), this.layerPick,
            h("label", { for: "lhead" }, " head "), this.headPick, this.heatTitle),
          this.canvas, this.readout,
          h("div", { class: "learn-legend hint" }, "0 ", colorbar, " 1 attention weight (each row sums to 1)  ", swatch,
            " masked: a token may not look ahead")),
        h("div", { class: "learn-col" }, this.barsTitle, this.bars, this.lensTitle, this.lens)));

    this.slider.addEventListener("input", () => {
      this.stop(); // a hand on the slider stops the player
      this.goTo(Number(this.slider.value));
    });
    let typing = null;
    this.promptBox.addEventListener("input", () => { // wait for a pause in the typing
      clearTimeout(typing);
      typing = setTimeout(() => {
        state.set({ lprompt: this.promptBox.value === DEFAULT_PROMPT ? null : this.promptBox.value });
        this.show(["sample", "trace"]);
      }, 400);
    });
    this.tempBox.addEventListener("change", () => {
      const t = this.temperature();
      state.set({ ltemp: t === DEFAULT_TEMP ? null : t });
      this.show(["sample"]);
    });
    const pickHead = () => {
      state.set({ llayer: this.layerPick.value, lhead: this.headPick.value });
      this.show(["trace"]);
    };
    this.layerPick.addEventListener("change", pickHead);
    this.headPick.addEventListener("change", pickHead);
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => this.hover(null));
  }

  /** The slider over `steps`, with a label under each (or under some, when there are many). */
  setSteps(steps) {
    const step = this.step ?? steps[steps.length - 1];
    this.slider.max = steps.length - 1;
    this.slider.dataset.steps = JSON.stringify(steps); // for a test, or a reader in the devtools
    const every = Math.ceil(steps.length / 12);
    this.ticks.replaceChildren(...steps.map((s, i) => h("span", {
      class: "learn-tick", dataset: { step: s }, style: `left: ${(100 * i) / Math.max(1, steps.length - 1)}%`,
    }, i % every === 0 || i === steps.length - 1 ? s.toLocaleString("en") : "")));
    this.slider.value = nearestIndex(steps, step);
    this.box.dataset.steps = steps.length;
    if (this.step !== undefined) this.stepOut.textContent = `${this.step.toLocaleString("en")} of ${steps.at(-1).toLocaleString("en")}`;
  }

  /** Show the step at slider position `index`: the slider, the URL, the chart's line, the losses, the answers. */
  goTo(index) {
    if (this.dead) return Promise.resolve();
    this.slider.value = index;
    this.step = this.steps[index];
    state.set({ lstep: this.step });
    this.stepOut.textContent = `${this.step.toLocaleString("en")} of ${this.steps.at(-1).toLocaleString("en")}`;
    this.mark(this.step);
    this.lossChanged();
    for (const tick of this.ticks.children) tick.classList.toggle("current", Number(tick.dataset.step) === this.step);
    return this.show(["sample", "trace"]);
  }

  /** The train and val loss at the step shown, read from the metrics: the nearest logged step,
   * if it is nearer this step than the kept steps beside it (the loss of another model is not shown). */
  lossChanged() {
    if (this.step === undefined || !this.lossOut) return;
    const records = this.records();
    const i = this.steps.indexOf(this.step);
    const gaps = [this.steps[i] - this.steps[i - 1], this.steps[i + 1] - this.steps[i]].filter(Number.isFinite);
    const near = gaps.length ? Math.min(...gaps) / 2 : Infinity;
    let missing = false;
    const part = (split) => {
      const r = lossAt(records, split, this.step);
      if (!r || Math.abs(r.step - this.step) >= near) {
        missing = true;
        return `${split} loss –`;
      }
      return `${split} loss ${r.loss.toFixed(3)}` + (r.step === this.step ? "" : ` (logged at step ${r.step})`);
    };
    const train = part("train");
    const val = part("val");
    let note = "";
    if (missing && this.step === 0 && this.vocab) { // what an untrained model scores: uniform over the vocabulary
      note = ` (–: not logged at step 0; guessing uniformly scores ln ${this.vocab} ≈ ${Math.log(this.vocab).toFixed(2)})`;
    } else if (missing) {
      note = " (–: not logged near this step)";
    }
    this.lossOut.textContent = `at step ${this.step.toLocaleString("en")}: ${train} · ${val}${note}`;
  }

  // -- playing ----------------------------------------------------------------------------------

  /** Step through every kept step, PLAY_MS each (longer when an answer takes longer). */
  async play() {
    this.playing = true;
    this.playButton.textContent = "■ stop";
    let index = Number(this.slider.value);
    if (index >= this.steps.length - 1) index = 0; // at the end: start over
    while (this.playing && !this.dead) {
      const shown = this.goTo(index);
      await Promise.all([shown, new Promise((resolve) => { this.timer = setTimeout(resolve, PLAY_MS); })]);
      if (!this.playing || index >= this.steps.length - 1) break;
      index += 1;
    }
    this.stop();
  }

  stop() {
    this.playing = false;
    clearTimeout(this.timer);
    if (this.playButton) this.playButton.textContent = "▶ play";
  }

  // -- the answers ------------------------------------------------------------------------------

  /** Fetch (or take from the cache) and draw the parts that depend on what changed. */
  show(parts) {
    this.message.replaceChildren();
    const jobs = [];
    if (parts.includes("sample")) jobs.push(this.showSample());
    if (parts.includes("trace")) jobs.push(this.showTrace());
    return Promise.all(jobs);
  }

  /** The temperature box's value (empty: the default; out of range: the API says so). */
  temperature() {
    return this.tempBox.value === "" ? DEFAULT_TEMP : Number(this.tempBox.value);
  }

  /** The cached answer for `key`, or `ask()`'s (a failed answer is forgotten, so it is asked again). */
  cached(key, ask) {
    if (!this.cache.has(key)) {
      const promise = ask();
      promise.catch(() => this.cache.delete(key));
      this.cache.set(key, promise);
    }
    return this.cache.get(key);
  }

  async showSample() {
    const seq = ++this.seq.sample;
    const step = this.step;
    const text = this.promptBox.value;
    const temperature = this.temperature();
    this.sampleBox.classList.add("learn-waiting");
    try {
      const answer = await this.cached(`sample|${step}|${temperature}|${text}`, () => api.post("runs/sample", {
        run: this.run, step, text, max_tokens: SAMPLE_TOKENS, temperature, seed: SAMPLE_SEED }));
      if (seq !== this.seq.sample || this.dead) return; // a newer step or prompt was asked for
      this.sampleBox.replaceChildren(h("span", { class: "learn-prompt" }, text),
        h("span", { class: "learn-text" }, answer.text));
      this.sampleBox.classList.remove("learn-waiting");
      this.box.dataset.sampleStep = step;
    } catch (error) {
      if (seq !== this.seq.sample || this.dead) return;
      showError(this.message, error);
      this.sampleBox.replaceChildren(); // no older sample left under a prompt it did not continue
      this.sampleBox.classList.remove("learn-waiting");
      delete this.box.dataset.sampleStep;
    }
  }

  async showTrace() {
    const seq = ++this.seq.trace;
    const step = this.step;
    const text = this.promptBox.value;
    this.canvas.classList.add("learn-waiting");
    try {
      const trace = () => this.cached(`trace|${step}|${text}`, () => api.post("trace", { model: `${this.run}@${step}`, text }));
      let meta = await trace();
      if (seq !== this.seq.trace || this.dead) return;
      if (this.vocab !== meta.vocab_size) {
        this.vocab = meta.vocab_size; // for the loss line's note at step 0
        this.lossChanged();
      }
      const { layer, head } = this.pickers(meta);
      const key = `head|${step}|${layer}|${head}|${text}`;
      let weights;
      try {
        weights = await this.cached(key, () => api.get("attention/head", { trace: meta.trace, layer, head })
          .then((answer) => decodeTensor(answer.weights)));
      } catch (error) { // the server keeps only its last few traces: trace this step again, once
        if (error.status !== 404) throw error;
        this.cache.delete(`trace|${step}|${text}`);
        meta = await trace();
        weights = await this.cached(key, () => api.get("attention/head", { trace: meta.trace, layer, head })
          .then((answer) => decodeTensor(answer.weights)));
      }
      // the logit lens at the last position: which layer first puts the final answer on top
      const lens = meta.next ? await this.cached(`lens|${step}|${text}`, () => api.get("lens", { trace: meta.trace, last: 1 }))
        .catch((error) => { this.cache.delete(`lens|${step}|${text}`); throw error; }) : null;
      if (seq !== this.seq.trace || this.dead) return;
      this.drawHeat(meta, layer, head, weights);
      this.drawBars(meta);
      this.drawLens(lens);
      this.canvas.classList.remove("learn-waiting");
      this.canvas.hidden = false;
      this.box.dataset.headStep = step;
    } catch (error) {
      if (seq !== this.seq.trace || this.dead) return;
      showError(this.message, error);
      this.canvas.classList.remove("learn-waiting");
      this.canvas.hidden = true; // nothing drawn is left for a prompt or a step it does not belong to
      this.heatTitle.textContent = "";
      this.readout.textContent = "";
      this.barsTitle.textContent = "";
      this.bars.replaceChildren();
      this.lensTitle.textContent = "";
      this.lens.replaceChildren();
      delete this.box.dataset.headStep;
    }
  }

  /** Fill the layer and head pickers from the trace's shape (once); the chosen head, in range. */
  pickers(meta) {
    if (this.layerPick.options.length !== meta.n_layer || this.headPick.options.length !== meta.n_head) {
      const layer = clamp(state.getInt("llayer", meta.n_layer - 1), 0, meta.n_layer - 1); // default: the last layer
      const head = clamp(state.getInt("lhead", 0), 0, meta.n_head - 1);
      this.layerPick.replaceChildren(...range(meta.n_layer).map((i) => h("option", { value: i }, i)));
      this.headPick.replaceChildren(...range(meta.n_head).map((i) => h("option", { value: i }, i)));
      this.layerPick.value = layer;
      this.headPick.value = head;
    }
    return { layer: Number(this.layerPick.value), head: Number(this.headPick.value) };
  }

  // -- drawing ------------------------------------------------------------------------------------

  /** The head's (T, T) weights as a heatmap: rows the token looking, columns the token looked at. */
  drawHeat(meta, layer, head, weights) {
    const [T, S] = weights.shape;
    const labels = meta.labels.map(visibleText);
    const showLabels = Math.max(T, S) <= HEAT_LABELS_UP_TO;
    const ctx = this.canvas.getContext("2d");
    ctx.font = HEAT_FONT;
    const widest = showLabels ? Math.max(...labels.map((s) => ctx.measureText(s).width)) : 0;
    const labelSpace = showLabels ? Math.min(70, Math.ceil(widest) + 8) : 8;
    const cell = Math.max(1, Math.min(36, Math.floor(HEAT_PX / Math.max(T, S))));
    const upright = showLabels && widest <= cell - 2; // one-character tokens: key labels need not turn
    const g = { left: 16 + labelSpace, top: 4, width: S * cell, height: T * cell, rows: T, cols: S };
    const width = Math.max(g.left + g.width + 6, 200); // room for the key axis's title
    const height = g.top + g.height + (upright ? 16 : labelSpace) + 16;
    const dpr = sizeCanvas(this.canvas, width, height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    drawMatrix(ctx, g, weights.data, { rows: T, cols: S, maskStart: meta.causal ? (i) => causalMaskStart(i, T, S) : null });
    ctx.font = HEAT_FONT;
    ctx.fillStyle = "#1d2230";
    if (showLabels) {
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (let i = 0; i < T; i++) {
        ctx.fillText(clipText(ctx, labels[labels.length - T + i], labelSpace - 6), g.left - 4, g.top + (i + 0.5) * cell);
      }
      ctx.textAlign = upright ? "center" : "left";
      ctx.textBaseline = upright ? "top" : "middle";
      for (let j = 0; j < S; j++) { // key labels under their column: upright, or running downwards
        ctx.save();
        ctx.translate(g.left + (j + 0.5) * cell, g.top + g.height + 4);
        if (!upright) ctx.rotate(Math.PI / 2);
        ctx.fillText(clipText(ctx, labels[j], labelSpace - 6), 0, 0);
        ctx.restore();
      }
    }
    ctx.fillStyle = "#6b7280"; // axis titles
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.fillText("key: the token looked at →", g.left + g.width / 2, height - 1);
    ctx.save();
    ctx.translate(11, g.top + g.height / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(g.height >= 160 ? "query: the token looking" : "query", 0, 0);
    ctx.restore();

    this.heat = { g, weights, labels, T, S, causal: meta.causal };
    this.heatTitle.textContent = `: where each prompt token looks (${T} × ${S})`;
    // the last token's row, for a test (or a reader in the devtools): the weights the model used to predict
    this.canvas.dataset.lastRow = JSON.stringify(Array.from(weights.data.subarray((T - 1) * S, T * S)));
    Object.assign(this.canvas.dataset, { layer, head, plot: JSON.stringify({ left: g.left, top: g.top, cell }) });
    this.hover(null);
  }

  /** The readout under the heatmap: the weight of the cell under the pointer. */
  hover(event) {
    const r = this.readout;
    const cell = event && this.heat ? cellAt(event.offsetX, event.offsetY, this.heat.g) : null;
    if (!cell) {
      r.textContent = "Hover a cell: how much the row's token looks at the column's token.";
      r.classList.add("muted");
      delete r.dataset.value;
      return;
    }
    const { labels, weights, T, S, causal } = this.heat;
    const query = labels[labels.length - T + cell.row];
    const key = labels[cell.col];
    const w = weights.data[cell.row * S + cell.col];
    r.classList.remove("muted");
    Object.assign(r.dataset, { row: cell.row, col: cell.col, value: String(w) });
    r.textContent = causal && cell.col >= causalMaskStart(cell.row, T, S)
      ? `'${query}' → '${key}': masked (token ${cell.col} comes after token ${cell.row})`
      : `'${query}' (token ${cell.row}) → '${key}' (token ${cell.col}): ${w.toFixed(3)}`;
  }

  /** The logit lens at the prompt's last token: the residual stream read through the output head
   * after every attention and MLP, top token and its probability, the final answer marked. Over the
   * training steps the answer appears, and moves to earlier layers as the model learns. */
  drawLens(lens) {
    if (!lens) {
      this.lensTitle.textContent = "";
      this.lens.replaceChildren();
      return;
    }
    const final = lens.final_ids[0];
    const tops = lens.rows.map((r) => r.ids[0]);
    const depth = answerDepth(tops, final);
    const label = (id) => visibleText(lens.labels[String(id)] ?? `#${id}`);
    const where = depth < 0 ? "" : ` is on top from layer ${lens.rows[depth].layer} (after ${lens.rows[depth].after}) on`;
    this.lensTitle.textContent = `Logit lens: the top token read after each layer; the answer «${label(final)}»${where}`;
    this.lens.dataset.depth = depth;
    this.lens.dataset.tops = JSON.stringify(tops);
    this.lens.replaceChildren(...lens.rows.map((r, i) => h("div", {
      class: "learn-lens-row" + (r.ids[0] === final ? " answer" : "") + (i === depth ? " first" : ""), role: "listitem" },
    h("span", { class: "muted" }, `L${r.layer} ${r.after}`),
    h("span", { class: "learn-lens-token" }, label(r.ids[0])),
    h("span", { class: "muted" }, fmtProb(r.p[0])))));
  }

  /** The most likely next tokens after the prompt, at temperature 1 (the model's own distribution). */
  drawBars(meta) {
    const last = visibleText(meta.labels[meta.labels.length - 1] ?? "");
    this.barsTitle.textContent = `What the model expects after «…${last}»: its top ${TOP_NEXT} (temperature 1)`;
    if (!meta.next) {
      this.bars.replaceChildren(h("p", { class: "muted" }, "This model is an encoder: it predicts no next token."));
      return;
    }
    const logits = decodeTensor(meta.next.logits).data;
    const rows = topK(processLogits(logits, { temperature: 1 }), TOP_NEXT);
    this.bars.dataset.top = JSON.stringify(rows.map((r) => r.index));
    this.bars.replaceChildren(...rows.map(({ index, p }) => h("div", { class: "learn-bar", role: "listitem",
      dataset: { token: index, p } },
    h("span", { class: "learn-bar-label mono" }, visibleText(meta.next.labels[index] ?? `#${index}`)),
    h("span", { class: "learn-bar-track" }, h("span", { class: "learn-bar-fill", style: `width: ${100 * p}%` })),
    h("span", { class: "learn-bar-p mono" }, fmtProb(p)))),
    h("div", { class: "learn-bar-axis hint" }, "bar length: probability, 0 → 100%"));
  }
}

/**
 * The first logit-lens row from which the top token stays `answer` to the last row, or -1.
 * @example answerDepth([5, 7, 7, 9, 9], 9) // 3
 */
export function answerDepth(tops, answer) {
  let first = -1;
  tops.forEach((t, i) => {
    if (t !== answer) first = -1;
    else if (first < 0) first = i;
  });
  return first;
}

// -- small helpers -------------------------------------------------------------------------------

function clamp(x, lo, hi) {
  return Math.max(lo, Math.min(hi, x));
}

function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

/** The index of the value in (sorted) `values` closest to x. @example nearestIndex([0, 20, 40], 27) // 1 */
export function nearestIndex(values, x) {
  let best = 0;
  values.forEach((v, i) => { if (Math.abs(v - x) < Math.abs(values[best] - x)) best = i; });
  return best;
}
