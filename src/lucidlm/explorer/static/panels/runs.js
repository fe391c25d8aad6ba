/**
 * Training runs: a run's train and val loss against step, followed live while it trains.
 *
 * GET /api/runs lists the runs this explorer found (--runs folders; runs/ by default); GET
 * /api/runs/metrics?run=&since=N returns the records of the run's metrics.jsonl from record N on
 * (train records: step, loss, grad_norm, lr, ms, tok_per_s; val records: step, loss; see
 * lucidlm/train/metrics.py). The panel polls every POLL_MS with since = the records it already
 * has and appends what is new, until the panel is left or another run is chosen.
 *
 * Watch it learn (below the chart, for a run that kept its model every keep_every steps):
 *   GET  /api/runs/checkpoints?run=        the steps kept -> the step slider
 *   POST /api/runs/sample {run, step, ...} the prompt continued by that step's model (seed 0)
 *   POST /api/trace {model: "RUN@STEP"}    the prompt through that step's model -> next-token bars
 *   GET  /api/attention/head?trace=&layer=&head=   one head's weights -> the small heatmap
 * Every answer is cached per step, so moving back to a step asks nothing again.
 *
 * URL state: run (the run's name); lstep, lprompt, ltemp, llayer, lhead (Watch it learn).
 */

import * as api from "../lib/api.js";
import { h, showError } from "../lib/dom.js";
import * as state from "../lib/state.js";
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { LearnView } from "./learn.js";

export const title = "Training runs";

const POLL_MS = 2000;
const PLOT_HEIGHT = 320;
const UPLOT_CSS = "/static/vendor/uplot/uPlot.min.css";
const X_LABEL = "step";
const Y_LABEL = "loss (cross-entropy, nats)";
const TRAIN_COLOR = "#2f5fd0";
const VAL_COLOR = "#d9480f";
const MARK_COLOR = "#2b8a3e"; // the step Watch it learn shows, on the loss chart


export async function mount(root, info) {
  addStylesheet(UPLOT_CSS);
  const panel = h("div", { class: "runs-panel" },
    h("p", { class: "hint" },
      "The loss of a training run against its step: the cross-entropy of the next token on training batches ",
      "(train) and on held-out text (val). A run still training is followed: new points appear every 2 s."));
  root.append(panel);

  let runs;
  try {
    runs = (await api.get("runs")).runs;
  } catch (error) {
    const box = h("div");
    panel.append(box);
    showError(box, error);
    return;
  }
  if (!runs.length) {
    panel.append(h("div", { class: "card runs-none" },
      h("p", {}, "No training runs found."),
      h("p", {}, "Run ", h("code", {}, "make demo"), " to train a small one (it writes runs/demo/gpt), or start the explorer ",
        "on a folder of runs: ", h("code", {}, "lucidlm explore --runs DIR"),
        " (a run is a folder with the metrics.jsonl that ", h("code", {}, "lucidlm train"), " writes).")));
    return;
  }

  const select = h("select", { id: "run", "aria-label": "training run" },
    runs.map((r) => h("option", { value: r.name }, r.has_metrics ? r.name : `${r.name} (no metrics yet)`)));
  const wanted = state.get("run");
  select.value = (runs.find((r) => r.name === wanted) ?? runs.find((r) => r.has_metrics) ?? runs[0]).name;
  const message = h("div", { class: "runs-message" });
  const plotBox = h("div", { class: "runs-plot" });
  const table = h("div", { class: "runs-latest" });
  const footer = h("div", { class: "hint runs-footer" });
  const learnBox = h("section", { class: "learn" });
  // Watch it learn right under the chart: its slider moves the chart's step line
  panel.append(h("div", { class: "row" }, h("label", { for: "run" }, "run"), select), message, plotBox, learnBox, table,
    footer);

  let following = 0; // bumped when another run is chosen: the old poll loop sees it and stops
  let plot = null;
  let records = []; // the chosen run's metrics records, as far as polled
  let learn = null; // the chosen run's Watch it learn view
  let markStep = null; // the step it shows: a vertical line on the chart
  const markAt = (step) => {
    markStep = step;
    plotBox.dataset.markStep = step; // the canvas's line, for tests
    plot?.redraw(false); // runs the draw hook again (markStepLine)
  };

  // uPlot draws at a fixed width: follow the panel's width as the window is resized
  const plotWidth = () => Math.max(320, panel.clientWidth - 8);
  const resize = new ResizeObserver(() => plot?.setSize({ width: plotWidth(), height: PLOT_HEIGHT }));
  resize.observe(panel);

  async function follow(name) {
    const me = ++following;
    const left = () => me !== following || !panel.isConnected;
    state.set({ run: name });
    plot?.destroy();
    plot = null;
    plotBox.replaceChildren();
    table.replaceChildren();
    message.replaceChildren();
    footer.textContent = "";
    records = [];
    learn?.destroy();
    markStep = null;
    learn = new LearnView(learnBox, name, { records: () => records, mark: markAt });
    learn.refresh();
    while (!left()) {
      try {
        // ask from the last record we have, not after it: if it comes back different, the file was
        // rewritten (a resumed run drops the records past its checkpoint) and we start over
        const since = Math.max(0, records.length - 1);
        const got = await api.get("runs/metrics", { run: name, since });
        if (left()) break;
        message.replaceChildren();
        if (records.length && (got.total < records.length ||
            JSON.stringify(got.records[0]) !== JSON.stringify(records[records.length - 1]))) {
          records = [];
          continue; // fetch again from 0 at once
        }
        const fresh = got.records.slice(records.length ? 1 : 0);
        if (fresh.length || !plot) {
          records = records.concat(fresh);
          draw(name, records);
          learn.lossChanged();
          if (fresh.length) learn.refresh(); // a run still training may have kept another step
        }
        footer.textContent = `${records.length.toLocaleString("en")} records · checked ${new Date().toLocaleTimeString()} ` +
          "· polled every 2 s while this panel is open";
      } catch (error) {
        if (left()) break;
        showError(message, error); // e.g. a run with no metrics.jsonl yet: keep polling, it may start
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    if (!panel.isConnected) { // the panel was left: let go of the plot, the observer and the player
      resize.disconnect();
      plot?.destroy();
      learn?.destroy();
    }
  }

  function draw(name, records) {
    const data = lossSeries(records);
    const points = data[1].filter((y) => y !== null).length + data[2].filter((y) => y !== null).length;
    panel.dataset.records = records.length;
    panel.dataset.points = points;
    if (!points) {
      plot?.destroy();
      plot = null;
      message.replaceChildren(h("p", { class: "muted" }, `${name} has no loss values yet; waiting for its first logged step.`));
    } else if (plot) {
      plot.setData(data);
    } else {
      plot = new uPlot(plotOptions(name), data, plotBox);
      Object.assign(plotBox.dataset, { xLabel: X_LABEL, yLabel: Y_LABEL }); // the canvas's text, for tests
    }
    table.replaceChildren(latestTable(records));
  }

  function plotOptions(name) {
    const loss = (u, v) => (v === null || v === undefined ? "–" : v.toFixed(4));
    return {
      title: name,
      width: plotWidth(),
      height: PLOT_HEIGHT,
      // steps, not timestamps; from step 0, where a run keeps its first model
      scales: { x: { time: false, range: (u, min, max) => [Math.min(0, min), max > Math.min(0, min) ? max : 1] } },
      axes: [{ label: X_LABEL }, { label: Y_LABEL, size: 60 }], // drawn on the canvas
      series: [
        { label: "step", value: (u, v) => (v === null || v === undefined ? "–" : v) },
        { label: "train loss", stroke: TRAIN_COLOR, width: 1.5, spanGaps: true, value: loss },
        { label: "val loss", stroke: VAL_COLOR, width: 2, spanGaps: true, value: loss,
          points: { show: true, size: 7, stroke: VAL_COLOR, fill: VAL_COLOR } },
      ],
      legend: { show: true },
      hooks: { draw: [(u) => markStepLine(u, markStep)] },
    };
  }

  select.addEventListener("change", () => follow(select.value));
  follow(select.value);
}

/**
 * uPlot's data from metrics records: [steps, train loss, val loss], one column per distinct step
 * in increasing order, null where a split has no value at that step (the val curve spans the gaps).
 * A repeated step keeps its last record, as the file's reader would.
 * @example lossSeries([{step: 1, split: "train", loss: 3}, {step: 2, split: "val", loss: 2.5}])
 *   // [[1, 2], [3, null], [null, 2.5]]
 */
export function lossSeries(records) {
  const byStep = new Map();
  for (const r of records) {
    if (typeof r.step !== "number" || typeof r.loss !== "number" || !Number.isFinite(r.loss)) continue;
    if (r.split !== "train" && r.split !== "val") continue;
    if (!byStep.has(r.step)) byStep.set(r.step, { train: null, val: null });
    byStep.get(r.step)[r.split] = r.loss;
  }
  const steps = [...byStep.keys()].sort((a, b) => a - b);
  return [steps, steps.map((s) => byStep.get(s).train), steps.map((s) => byStep.get(s).val)];
}

/** The latest train and val values, and the best val loss so far, as a small table. */
function latestTable(records) {
  const last = (split) => records.findLast((r) => r.split === split && typeof r.loss === "number");
  const train = last("train");
  const val = last("val");
  let best = null;
  for (const r of records) if (r.split === "val" && Number.isFinite(r.loss) && (!best || r.loss < best.loss)) best = r;
  const num = (x, digits) => (typeof x === "number" ? x.toFixed(digits) : "–");
  const rows = [
    ["train", train, [num(train?.loss, 4), num(train?.grad_norm, 2), train?.lr === undefined ? "–" : train.lr.toExponential(1),
      num(train?.ms, 1), typeof train?.tok_per_s === "number" ? Math.round(train.tok_per_s).toLocaleString("en") : "–"]],
    ["val", val, [num(val?.loss, 4), "", "", "", ""]],
    ["best val", best, [num(best?.loss, 4), "", "", "", ""]],
  ];
  return h("table", { class: "runs-table", "aria-label": "latest values" },
    h("caption", {}, "latest values"),
    h("thead", {}, h("tr", {}, ["", "step", "loss", "grad-norm", "lr", "ms/step", "tok/s"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map(([label, r, cells]) => h("tr", { dataset: { split: label } },
      h("th", {}, label), h("td", {}, r ? r.step : "–"), cells.map((c) => h("td", {}, c))))));
}

/** Add a stylesheet to the page once (several panels may ask for uPlot's). */
function addStylesheet(href) {
  if ([...document.querySelectorAll("link[rel=stylesheet]")].some((l) => l.getAttribute("href") === href)) return;
  document.head.append(h("link", { rel: "stylesheet", href }));
}

/** The step Watch it learn shows, drawn on the loss chart: a dashed vertical line and its label. */
function markStepLine(u, step) {
  if (step === null) return;
  const x = u.valToPos(step, "x", true); // canvas pixels
  const { left, top, width, height } = u.bbox;
  if (!(x >= left - 1 && x <= left + width + 1)) return;
  const dpr = globalThis.devicePixelRatio || 1;
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = MARK_COLOR;
  ctx.lineWidth = 2 * dpr;
  ctx.setLineDash([6 * dpr, 4 * dpr]);
  ctx.beginPath();
  ctx.moveTo(x, top);
  ctx.lineTo(x, top + height);
  ctx.stroke();
  ctx.fillStyle = MARK_COLOR;
  ctx.font = `bold ${12 * dpr}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  const label = `step ${step.toLocaleString("en")}`;
  const right = x + 6 * dpr + ctx.measureText(label).width > left + width; // near the right edge: label on the left
  ctx.textAlign = right ? "right" : "left";
  ctx.fillText(label, x + (right ? -6 : 6) * dpr, top + 4 * dpr);
  ctx.restore();
}
