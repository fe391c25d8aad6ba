/**
 * The Next-token panel: what a language model predicts after the prompt, and how sampling turns
 * that prediction into text.
 *
 *   1. Probability bars: the next token's distribution, before and after the sampling controls
 *      (temperature, top-k, top-p, min-p). The controls run in the browser (lib/sampling.js, the
 *      same pipeline as Python's lucidlm.generate.sampling) on logits the page already has, so
 *      moving a slider asks the server nothing.
 *   2. Generation token by token: each step sends the branch's ids to POST /api/step, gets the
 *      next-token logits, and draws a token with the controls. Clicking another token at any step
 *      starts a new branch there; every branch stays in the tree (lib/tree.js).
 *   3. The logit lens (GET /api/lens): the token the model would predict if it stopped after each
 *      attention and each MLP, read through the final norm and the output head.
 *
 * URL keys: temp, topk, topp, minp (controls), bars (tokens shown), seed, gen (the current
 * branch's generated ids), lens (positions in the lens), lenscolor ("final" or not).
 */

import * as api from "../lib/api.js";
import {probColor, viridis} from "../lib/colors.js";
import {h, showError, status} from "../lib/dom.js";
import {fmtProb} from "../lib/format.js";
import {promptBar} from "../lib/promptbar.js";
import {mulberry32, processLogits, sampleIndex, softmax, topK} from "../lib/sampling.js";
import * as state from "../lib/state.js";
import {decodeTensor} from "../lib/tensor.js";
import {visibleText} from "../lib/text.js";
import * as tree from "../lib/tree.js";

export const title = "Next token";

/** Thrown when an answer arrives for a prompt that has since been replaced: dropped quietly. */
class Stale extends Error {}

const GENERATE_MANY = 10;
// Special tokens that end a model's turn: generation stops after one of them.
const END_TOKENS = new Set(["<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<eos>"]);

/** A slider with its number read-out. `fmt` writes the value, `off` says when the control does nothing. */
function slider({key, label, min, max, step, value, hint, fmt, onInput}) {
  const input = h("input", {type: "range", min, max, step, value, id: `next-${key}`, "aria-label": label});
  const out = h("output", {for: `next-${key}`, class: "mono"}, fmt(value));
  input.addEventListener("input", () => {
    out.textContent = fmt(Number(input.value));
    onInput(key, Number(input.value));
  });
  return {input, out, element: h("label", {class: "next-slider", title: hint}, h("span", {}, label), input, out)};
}

/** A colour legend: a gradient strip of `color(t)` for t in 0..1, with end labels. */
function legend(color, left, right, caption) {
  const stops = Array.from({length: 11}, (_, i) => `${color(i / 10)} ${i * 10}%`).join(", ");
  return h("div", {class: "next-legend"}, h("span", {}, caption), h("span", {class: "mono"}, left),
    h("span", {class: "next-legend-strip", style: `background: linear-gradient(to right, ${stops})`}),
    h("span", {class: "mono"}, right));
}

export async function mount(root, info) {
  const panel = h("div", {class: "next-panel"});
  root.append(panel);
  panel.append(h("p", {class: "hint next-intro"},
    "A language model reads the prompt and gives every token of its vocabulary a probability of coming next. ",
    "Sampling picks one (the controls reshape the distribution first), the token is appended, and the model runs again."));

  // -- what the panel knows about the current prompt -------------------------------------------
  let meta = null; // /api/trace's answer
  let labels = new Map(); // token id -> text, from every answer so far
  let t = tree.createTree(); // the continuations; node 0 is the prompt
  let current = 0; // the node whose branch is the current one
  let view = {node: 0, picked: null}; // the bars show the distribution after `node`; `picked` = the token drawn there
  let logits = new Map(); // node id -> Float32Array (V,) next-token logits after that node's branch
  let raw = new Map(); // node id -> Float64Array (V,) softmax of those logits (temperature 1, no filter)
  let rng = null;
  let epoch = 0; // bumped on each new trace, so answers to an older prompt are dropped
  let busy = false;
  let firstTrace = true;

  const labelOf = (id) => labels.get(id) ?? `#${id}`;
  const learn = (map) => { for (const [id, text] of Object.entries(map ?? {})) labels.set(Number(id), text); };

  // -- the sampling controls -----------------------------------------------------------------
  const clamp = (x, lo, hi) => Math.min(Math.max(x, lo), hi);
  const controls = {
    temperature: clamp(state.getFloat("temp", 1), 0, 2),
    topK: clamp(state.getInt("topk", 0), 0, 200),
    topP: clamp(state.getFloat("topp", 1), 0.01, 1),
    minP: clamp(state.getFloat("minp", 0), 0, 1),
  };
  const KEYS = {temp: "temperature", topk: "topK", topp: "topP", minp: "minP"};
  const onSlider = (key, value) => {
    controls[KEYS[key]] = value;
    state.set({[key]: value});
    renderBars(); // cached logits only: no request
  };
  const sliders = [
    slider({key: "temp", label: "temperature", min: 0, max: 2, step: 0.05, value: controls.temperature,
      hint: "logits / T: below 1 sharpens the distribution, above 1 flattens it; 0 always takes the most likely token",
      fmt: (v) => (v === 0 ? "0 (greedy)" : v.toFixed(2)), onInput: onSlider}),
    slider({key: "topk", label: "top-k", min: 0, max: 200, step: 1, value: controls.topK,
      hint: "keep only the k most likely tokens (0 = off)", fmt: (v) => (v === 0 ? "off" : String(v)), onInput: onSlider}),
    slider({key: "topp", label: "top-p", min: 0.01, max: 1, step: 0.01, value: controls.topP,
      hint: "keep the most likely tokens until their probabilities add up to p (1 = off)",
      fmt: (v) => (v === 1 ? "off" : v.toFixed(2)), onInput: onSlider}),
    slider({key: "minp", label: "min-p", min: 0, max: 1, step: 0.01, value: controls.minP,
      hint: "keep tokens at least min-p times as likely as the top one (0 = off)",
      fmt: (v) => (v === 0 ? "off" : v.toFixed(2)), onInput: onSlider}),
  ];
  const barCount = h("input", {type: "number", min: 1, max: 50, value: clamp(state.getInt("bars", 10), 1, 50),
    id: "next-bars", "aria-label": "tokens shown", style: "width: 4.5em"});
  barCount.addEventListener("input", () => { state.set({bars: barCount.value}); renderBars(); });

  // -- the page's parts ------------------------------------------------------------------------
  const message = h("div");
  const barsTitle = h("h3");
  const barsNote = h("div", {class: "next-note"});
  const bars = h("div", {class: "next-bars", role: "list"});
  const barsSection = h("section", {class: "card"},
    h("h2", {}, "1. The next token's probabilities"),
    h("div", {class: "next-controls"}, sliders.map((s) => s.element),
      h("label", {class: "next-slider"}, h("span", {}, "tokens shown"), barCount)),
    barsTitle, barsNote, bars,
    h("div", {class: "hint"}, "Dark bar: the probability sampling uses, after the controls. Faint bar: the model's own ",
      "probability (temperature 1, no filter). Click a token to continue the text with it."));

  const seed = h("input", {type: "number", id: "next-seed", value: state.getInt("seed", 1), style: "width: 7em",
    "aria-label": "seed"});
  seed.addEventListener("change", () => { state.set({seed: seed.value}); rng = mulberry32(Number(seed.value)); });
  const buttons = {
    sample: h("button", {class: "primary", id: "next-sample", onclick: () => generate(1, false)}, "sample next"),
    many: h("button", {class: "primary", id: "next-generate", onclick: () => generate(GENERATE_MANY, false)},
      `generate ${GENERATE_MANY}`),
    greedy: h("button", {class: "primary", id: "next-greedy", onclick: () => generate(1, true)}, "greedy next"),
  };
  const text = h("div", {class: "next-text", id: "next-text"});
  const genMessage = h("div");
  const treeBox = h("div", {class: "next-tree", id: "next-tree"});
  const genSection = h("section", {class: "card"},
    h("h2", {}, "2. Generate token by token"),
    h("div", {class: "row"}, buttons.sample, buttons.many, buttons.greedy,
      h("label", {title: "the same seed, prompt and clicks give the same tokens"}, "seed ", seed)),
    h("div", {class: "hint"}, "Each step runs the model on the prompt plus the tokens so far and draws the next one with ",
      "the controls above. Click a generated token to see the distribution it was drawn from."),
    text,
    legend(probColor, "0%", "100%", "token colour = the model's probability of it:"),
    genMessage,
    h("h3", {}, "The tree of continuations"),
    h("div", {class: "hint"}, "Picking another token at some step starts a new branch there; the old one stays. ",
      "Click a token in the tree to make its branch the current one."),
    treeBox);

  const lensLast = h("input", {type: "number", min: 1, max: 64, id: "next-lens-last", style: "width: 4.5em",
    value: clamp(state.getInt("lens", 12), 1, 64), "aria-label": "positions in the lens"});
  const byFinal = h("input", {type: "checkbox", id: "next-lens-final"});
  byFinal.checked = state.get("lenscolor") === "final";
  const lensBox = h("div", {class: "next-lens-box"});
  const lensLegend = h("div");
  let lensData = null;
  lensLast.addEventListener("change", () => { state.set({lens: lensLast.value}); loadLens(); });
  byFinal.addEventListener("change", () => { state.set({lenscolor: byFinal.checked ? "final" : null}); renderLens(); });
  const lensSection = h("section", {class: "card"},
    h("h2", {}, "3. Logit lens: when does the answer appear?"),
    h("div", {class: "hint"}, "Each row reads the residual stream after one attention or MLP through the model's final ",
      "norm and output head, as if the model stopped there (nostalgebraist 2020). Each cell: the top token and its probability."),
    h("div", {class: "row"}, h("label", {}, "last ", lensLast, " positions"),
      h("label", {}, byFinal, " colour by the probability of the final answer")),
    lensLegend, lensBox);

  const body = h("div", {class: "next-body"}, barsSection, genSection, lensSection);
  body.hidden = true;

  const bar = promptBar(panel, info, onTrace, {hint: "Ctrl+Enter runs the prompt; then move the sliders or generate."});
  panel.append(message, body);

  // -- a new prompt ----------------------------------------------------------------------------
  async function onTrace(answer) {
    epoch += 1;
    message.replaceChildren();
    if (answer.kind !== "decoder" || !answer.next) {
      body.hidden = true;
      firstTrace = false;
      message.append(h("div", {class: "error", role: "alert"},
        `${answer.model} is an encoder: it predicts no next token. Pick a decoder model (SmolLM2) to see `,
        "its next-token probabilities."));
      return;
    }
    meta = answer;
    labels = new Map();
    meta.ids.forEach((id, i) => labels.set(id, meta.labels[i]));
    learn(meta.next.labels);
    t = tree.createTree();
    current = 0;
    view = {node: 0, picked: null};
    logits = new Map([[0, decodeTensor(meta.next.logits).data]]);
    raw = new Map();
    rng = mulberry32(Number(seed.value));
    genMessage.replaceChildren();
    body.hidden = false;
    // the first prompt after a reload may come with a branch in the URL; a new prompt starts afresh
    const restore = firstTrace ? (state.get("gen") ?? "").split(",").filter((s) => /^\d+$/.test(s)).map(Number) : [];
    firstTrace = false;
    if (!restore.length) state.set({gen: null});
    renderAll();
    const lensLoaded = loadLens();
    if (restore.length) await follow(restore);
    await lensLoaded;
  }

  /** The logits after node `id`'s branch: cached, or one POST /api/step. */
  async function logitsOf(id) {
    if (!logits.has(id)) {
      const mine = epoch;
      const answer = await api.post("step", {model: meta.model, ids: meta.ids.concat(tree.pathTo(t, id))});
      if (mine !== epoch) throw new Stale("a new prompt was run meanwhile");
      learn(answer.labels);
      logits.set(id, decodeTensor(answer.logits).data);
    }
    return logits.get(id);
  }

  function rawOf(id) {
    if (!raw.has(id)) raw.set(id, softmax(logits.get(id)));
    return raw.get(id);
  }

  /** Run `work` with the buttons off; an API error (context full...) is shown, and the page goes on. */
  async function guarded(work) {
    if (busy) return;
    busy = true;
    for (const b of Object.values(buttons)) b.disabled = true;
    genMessage.replaceChildren();
    try {
      await work();
    } catch (error) {
      if (!(error instanceof Stale)) showError(genMessage, error);
    } finally {
      busy = false;
      for (const b of Object.values(buttons)) b.disabled = false;
      renderAll();
    }
  }

  /** Append `token` after node `parentId`; the new (or existing) child becomes the current branch. */
  function append(parentId, token) {
    const node = tree.addChild(t, parentId, token, rawOf(parentId)[token]);
    current = node.id;
    view = {node: current, picked: null};
    state.set({gen: tree.pathTo(t, current).join(",")});
    return node;
  }

  /** Generate `count` tokens after the current branch, by the controls or greedily. */
  function generate(count, greedy) {
    return guarded(async () => {
      const started = performance.now();
      let made = 0;
      for (let i = 0; i < count; i++) {
        status(`step ${i + 1} of ${count}…`);
        const next = await logitsOf(current);
        const probs = processLogits(next, greedy ? {temperature: 0} : controls);
        const token = greedy ? probs.indexOf(1) : sampleIndex(probs, rng);
        append(current, token);
        made += 1;
        renderText();
        renderTree();
        if (END_TOKENS.has(labels.get(token))) break; // the model ended its turn
      }
      await logitsOf(current); // so the bars show what would come next
      status(`${made} token${made === 1 ? "" : "s"} in ${Math.round(performance.now() - started)} ms`);
    });
  }

  /** Rebuild a branch from a list of ids (the URL's `gen` key), asking for each step's logits. */
  function follow(ids) {
    return guarded(async () => {
      status("restoring the branch from the link…");
      for (const id of ids) {
        await logitsOf(current);
        append(current, id);
      }
      await logitsOf(current);
      status("");
    });
  }

  /** A click on a token in the bars: continue with it from the node the bars show (maybe a new branch). */
  function choose(token) {
    return guarded(async () => {
      append(view.node, token);
      await logitsOf(current);
    });
  }

  // -- drawing -----------------------------------------------------------------------------------
  function renderAll() {
    renderBars();
    renderText();
    renderTree();
  }

  function tokenChip(node, {onclick, title: tip, selected}) {
    return h("button", {class: "next-token" + (selected ? " selected" : ""), style: `background: ${probColor(node.p)}`,
      title: tip ?? `${visibleText(labelOf(node.token))}: the model gave it ${fmtProb(node.p)}`,
      dataset: {node: node.id, token: node.token}, onclick}, visibleText(labelOf(node.token)));
  }

  function renderBars() {
    if (!meta) return;
    const branch = tree.nodesTo(t, view.node);
    const last = branch.length ? visibleText(labelOf(branch[branch.length - 1].token)) : visibleText(meta.labels.at(-1));
    if (view.picked === null) {
      barsTitle.textContent = `What comes after «…${last}» (${meta.ids.length + branch.length} tokens so far):`;
    } else {
      barsTitle.replaceChildren(`Step ${branch.length + 1}: «${visibleText(labelOf(view.picked))}» was drawn from this ` +
        "distribution (shown with the current controls); click another token to branch here. ",
      h("button", {class: "small", onclick: () => { view = {node: current, picked: null}; renderAll(); }},
        "back to what comes next"));
    }
    if (!logits.has(view.node)) {
      barsNote.textContent = "";
      bars.replaceChildren(h("div", {class: "muted"}, "asking the model…"));
      return;
    }
    const model = rawOf(view.node);
    let probs;
    try {
      probs = processLogits(logits.get(view.node), controls);
    } catch (error) {
      showError(bars, error);
      return;
    }
    let kept = 0;
    for (let i = 0; i < probs.length; i++) if (probs[i] > 0) kept++;
    barsNote.textContent = `${kept.toLocaleString("en")} of ${probs.length.toLocaleString("en")} tokens can be sampled` +
      (controls.temperature === 0 ? " (temperature 0 is greedy: always the most likely one)." : ".");
    // the model's most likely tokens: the controls keep their order, they only reshape and cut
    const rows = topK(model, clamp(Number(barCount.value) || 10, 1, 50));
    bars.replaceChildren(h("div", {class: "next-bar-axis"}, h("span", {}), h("span", {class: "mono"}, "0%"),
      h("span", {class: "mono"}, "probability →"), h("span", {class: "mono"}, "100%")),
    ...rows.map(({index}) => {
      const p = probs[index];
      const pRaw = model[index];
      return h("div", {class: "next-bar" + (index === view.picked ? " picked" : "") + (p === 0 ? " cut" : ""),
        role: "listitem", dataset: {token: index, p, raw: pRaw}, onclick: () => choose(index),
        title: `token ${index}: ${fmtProb(p)} after the controls, ${fmtProb(pRaw)} for the model`},
      h("span", {class: "next-bar-label mono"}, visibleText(labelOf(index))),
      h("span", {class: "next-bar-track"},
        h("span", {class: "next-bar-raw", style: `width: ${100 * pRaw}%`}),
        h("span", {class: "next-bar-fill", style: `width: ${100 * p}%`})),
      h("span", {class: "next-bar-p mono"}, p === 0 ? "cut" : fmtProb(p)),
      h("span", {class: "next-bar-rawp mono"}, `model ${fmtProb(pRaw)}`));
    }));
  }

  function renderText() {
    if (!meta) return;
    const branch = tree.nodesTo(t, current);
    text.replaceChildren(h("span", {class: "next-prompt"}, meta.labels.join("")),
      ...branch.map((node) => tokenChip(node, {
        selected: view.picked !== null && node.parent === view.node && node.token === view.picked,
        onclick: () => { view = {node: node.parent, picked: node.token}; renderBars(); renderText(); },
      })),
      ...(branch.length ? [] : [h("span", {class: "muted"}, "  (nothing generated yet: press a button above)")]));
  }

  function renderTree() {
    if (!meta) return;
    const chains = tree.chains(t);
    const leaves = chains.filter((c) => c.leaf).length;
    treeBox.replaceChildren(
      h("div", {class: "next-tree-root"}, h("button", {class: "next-token root" + (current === 0 ? " current" : ""),
        dataset: {node: 0}, onclick: () => select(0), title: "the prompt: click to start again from here"},
      `prompt «…${visibleText(meta.labels.slice(-3).join(""))}»`),
      h("span", {class: "muted"}, `  ${leaves} branch${leaves === 1 ? "" : "es"}`)),
      ...chains.map((chain) => h("div", {class: "next-chain", style: `margin-left: ${1.2 + 1.6 * chain.depth}em`,
        dataset: chain.leaf ? {leaf: chain.nodes.at(-1).id} : {}},
      h("span", {class: "next-tree-edge"}, "└"),
      chain.nodes.map((node) => tokenChip(node, {
        selected: tree.isOnPath(t, node.id, current), onclick: () => select(node.id),
      })))));
  }

  /** Make node `id`'s branch the current one. */
  function select(id) {
    if (busy) return;
    current = id;
    view = {node: id, picked: null};
    state.set({gen: tree.pathTo(t, id).join(",") || null});
    renderAll();
    if (!logits.has(id)) guarded(() => logitsOf(id));
  }

  // -- the logit lens ----------------------------------------------------------------------------
  async function loadLens() {
    const mine = epoch;
    lensBox.replaceChildren(h("div", {class: "muted"}, "reading the residual stream…"));
    try {
      const answer = await api.get("lens", {trace: meta.trace, last: lensLast.value});
      if (mine !== epoch) return;
      learn(answer.labels);
      lensData = answer;
      renderLens();
    } catch (error) {
      if (mine === epoch) showError(lensBox, error);
    }
  }

  function renderLens() {
    if (!lensData) return;
    const final = byFinal.checked;
    lensLegend.replaceChildren(legend(viridis, "0%", "100%", final
      ? "cell colour = the probability this reading gives the model's final answer:"
      : "cell colour = the probability of the cell's top token:"),
    h("div", {class: "hint"}, "✓ = the top token here is already the model's final answer at that position."));
    const {positions, rows, final_ids: finalIds} = lensData;
    const n = rows.length;
    const head = h("tr", {}, h("th", {class: "next-lens-corner"}, h("div", {}, "input token →"),
      h("div", {class: "next-lens-final"}, "final prediction →")),
      positions.map((pos, c) => h("th", {title: `position ${pos}`},
        h("div", {class: "mono"}, visibleText(meta.labels[pos])),
        h("div", {class: "next-lens-final mono"}, `→ ${visibleText(labelOf(finalIds[c]))}`))));
    const short = (text) => (text.length > 9 ? text.slice(0, 8) + "…" : text);
    const body = rows.map((row, r) => h("tr", {class: r === n - 1 ? "next-lens-output" : null},
      h("th", {class: "next-lens-row"}, `layer ${row.layer} · after ${row.after === "attn" ? "attention" : "MLP"}` +
        (r === n - 1 ? " = output" : "")),
      row.ids.map((id, c) => {
        const shade = final ? row.p_final[c] : row.p[c];
        const hit = id === finalIds[c];
        return h("td", {class: "mono" + (hit ? " hit" : ""), dataset: {token: id, p: row.p[c]},
          style: `background: ${viridis(shade)}; color: ${shade > 0.55 ? "#111" : "#fff"}`,
          title: `layer ${row.layer} after ${row.after}, position ${positions[c]}: top «${visibleText(labelOf(id))}» ` +
            `${fmtProb(row.p[c])}; the final answer «${visibleText(labelOf(finalIds[c]))}» ${fmtProb(row.p_final[c])}`},
        (hit ? "✓" : "") + short(visibleText(labelOf(id))),
        h("span", {class: "next-lens-p"}, fmtProb(row.p[c])));
      })));
    lensBox.replaceChildren(h("table", {class: "next-lens", id: "next-lens"}, h("thead", {}, head),
      h("tbody", {}, body)));
  }

  await bar.run();
}
