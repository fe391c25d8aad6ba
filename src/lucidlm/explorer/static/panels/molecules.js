/**
 * The Molecules panel: a GPT trained on SMILES (lucidlm chem train) writes molecules, one token
 * at a time from <bos> to <eos>. Each molecule is drawn (RDKit), marked valid or not (RDKit reads
 * and sanitizes it, as MOSES's Valid counts), and written out token by token, each token coloured
 * by the probability the model gave it (temperature 1, the model's own belief).
 *
 *   POST /api/molecules {model, n, temperature, top_k, top_p, seed}
 *     -> {molecules: [{smiles, valid, canonical, ended, logprob, tokens: [{id, text, p}], svg}], valid, unique}
 *
 * The drawings arrive as SVG text and are shown as <img src="data:image/svg+xml,...">: an image
 * cannot run script, whatever the text holds.
 *
 * URL keys: model, n, temp, topk, topp, seed.
 */

import * as api from "../lib/api.js";
import {probColor} from "../lib/colors.js";
import {h, showError, status} from "../lib/dom.js";
import {fmtProb} from "../lib/format.js";
import * as state from "../lib/state.js";

export const title = "Molecules";

const DEFAULTS = {n: 12, temp: 1.0, topk: 0, topp: 1.0, seed: 0};
const HOW_TO = "No molecule model was given to this explorer. Train one (`lucidlm chem prepare`, then " +
  "`lucidlm chem train --config configs/moses_cpu.toml`) and start `lucidlm explore --model runs/moses_cpu/best`.";

/** The mean of the token probabilities' logs, as a probability: how sure the model was on average.
 * @example geometricMean([0.5, 0.5]) // 0.5 */
export function geometricMean(ps) {
  if (!ps.length) return NaN;
  return Math.exp(ps.reduce((s, p) => s + Math.log(p), 0) / ps.length);
}

/** The token the model was least sure of: {index, p}, or null for no tokens.
 * @example leastLikely([{p: 0.9}, {p: 0.2}, {p: 0.5}]) // {index: 1, p: 0.2} */
export function leastLikely(tokens) {
  let best = null;
  tokens.forEach((t, index) => { if (!best || t.p < best.p) best = {index, p: t.p}; });
  return best;
}

export async function mount(root, info) {
  root.className = "molecules-panel";
  const models = info.models.filter((m) => m.molecules).map((m) => m.name);
  if (!models.length) {
    root.replaceChildren(h("p", {class: "hint"}, "Molecules: a GPT trained on SMILES strings writes new molecules."),
      h("p", {class: "mol-none"}, HOW_TO));
    return;
  }
  const linked = state.get("model");
  const model = h("select", {id: "mol-model", "aria-label": "model"},
    ...models.map((name) => h("option", {value: name}, name)));
  model.value = models.includes(linked) ? linked : models[0];
  const number = (id, label, key, attrs) => {
    const input = h("input", {type: "number", id, "aria-label": label, value: state.getFloat(key, DEFAULTS[key]),
      style: "width: 5.5em", ...attrs});
    return [h("label", {for: id}, label), input];
  };
  const [nLabel, n] = number("mol-n", "molecules", "n", {min: 1, max: 64, step: 1});
  const [tLabel, temp] = number("mol-temp", "temperature", "temp", {min: 0, max: 2, step: 0.1});
  const [kLabel, topk] = number("mol-topk", "top-k", "topk", {min: 0, step: 1});
  const [pLabel, topp] = number("mol-topp", "top-p", "topp", {min: 0.05, max: 1, step: 0.05});
  const [sLabel, seed] = number("mol-seed", "seed", "seed", {min: 0, step: 1});
  const run = h("button", {id: "mol-run", class: "primary"}, "Generate");
  const summary = h("div", {class: "mol-summary", role: "status"});
  const message = h("div", {class: "mol-message"});
  const grid = h("div", {class: "mol-grid", role: "list"});
  const legend = h("div", {class: "mol-legend hint"}, "token colour: the model's probability of the token it wrote ",
    ...[0.02, 0.1, 0.3, 0.6, 0.95].map((p) => h("span", {class: "mol-token", style: `background: ${probColor(p)}`},
      fmtProb(p))));

  root.replaceChildren(
    h("p", {class: "hint"}, "A GPT trained on SMILES strings writes new molecules, one token (an atom, a bond, a ring ",
      "digit) at a time, from <bos> until it writes <eos>. RDKit draws each one; an invalid string is one RDKit cannot ",
      "read. Hover a token: the probability the model gave it."),
    h("div", {class: "row mol-controls"}, h("label", {for: "mol-model"}, "model"), model, nLabel, n, tLabel, temp,
      kLabel, topk, pLabel, topp, sLabel, seed, run),
    legend, message, summary, grid);

  const generate = async () => {
    const body = {model: model.value, n: Number(n.value), temperature: Number(temp.value), top_k: Number(topk.value),
      top_p: Number(topp.value), seed: Number(seed.value)};
    const keys = {model: model.value};
    for (const [key, input] of [["n", n], ["temp", temp], ["topk", topk], ["topp", topp], ["seed", seed]]) {
      keys[key] = Number(input.value) === DEFAULTS[key] ? null : input.value;
    }
    state.set(keys);
    run.disabled = true;
    message.replaceChildren();
    status("sampling molecules…");
    const started = performance.now();
    try {
      const answer = await api.post("molecules", body);
      draw(grid, summary, answer);
      status(`${answer.molecules.length} molecules in ${Math.round(performance.now() - started)} ms`);
    } catch (error) {
      showError(message, error);
      grid.replaceChildren();
      summary.replaceChildren();
      status("");
    } finally {
      run.disabled = false;
    }
  };
  run.addEventListener("click", generate);
  await generate();
}

/** One card per molecule: the drawing (or why there is none), the SMILES as coloured tokens. */
function draw(grid, summary, answer) {
  const mols = answer.molecules;
  summary.textContent = `${mols.length} molecules: ${answer.valid} valid (${fmtProb(answer.valid / mols.length)}), ` +
    `${answer.unique} unique among the valid · temperature ${answer.params.temperature}, seed ${answer.params.seed}`;
  grid.dataset.count = mols.length;
  grid.replaceChildren(...mols.map((m, i) => {
    const weakest = leastLikely(m.tokens);
    const picture = m.svg
      ? h("img", {class: "mol-drawing", alt: m.smiles, src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(m.svg)}`})
      : h("div", {class: "mol-invalid"}, m.smiles ? "RDKit cannot read this SMILES" : "empty: <eos> came first");
    const tokens = h("div", {class: "mol-tokens mono"}, ...m.tokens.map((t, j) => h("span", {
      class: "mol-token" + (weakest && j === weakest.index ? " weakest" : ""), dataset: {p: t.p, id: t.id},
      style: `background: ${probColor(t.p)}`, title: `token ${j + 1}: ${t.text}  p = ${fmtProb(t.p)}`,
    }, t.text)));
    const mark = m.valid ? h("span", {class: "mol-valid"}, "✓ valid") : h("span", {class: "mol-bad"}, "✗ invalid");
    const ended = m.ended === "eos" ? "" : " · stopped at the length limit";
    return h("div", {class: "mol-card" + (m.valid ? "" : " invalid"), role: "listitem",
      dataset: {valid: m.valid, smiles: m.smiles}},
    h("div", {class: "mol-head"}, h("span", {class: "muted"}, `${i + 1}.`), mark,
      h("span", {class: "muted"}, `mean p ${fmtProb(geometricMean(m.tokens.map((t) => t.p)))}${ended}`)),
    picture, tokens);
  }));
}
