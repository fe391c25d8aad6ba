/**
 * The Intervene panel: switch off (or change) one part of the model and see what it predicts then.
 * Looking at attention weights shows where a head looks; only an intervention shows whether the
 * model *needs* it: a causal test of what each part does.
 *
 *   POST /api/trace           the prompt run once (promptBar): the plain next-token logits
 *   POST /api/intervene       the prompt run again with the edits: the edited logits, the KL
 *                             divergence plain -> edited, and the target's probability both ways
 *   POST /api/ablation-scan   every head zeroed in turn: the target's probability each time, (L, nh)
 *
 * An edit names a site and what to do there:
 *   site: a head (its slice of the heads' outputs, before the output projection mixes them), an
 *         attention sub-block or an MLP (what it adds to the residual stream), the residual stream
 *         after a block;
 *   kind: zero it, scale it by a factor, or patch it (residual stream only) with its value from a
 *         second prompt's run at one position (activation patching, Meng et al. 2022).
 * Several edits apply together. URL keys: edits (e.g. "zero:head:20:4,scale:mlp:3::0.5", each
 * kind:site:layer:head:factor:position with empty fields for what it lacks), target (a token id),
 * source (the patch's source prompt) + the prompt bar's model, text, chat.
 */

import * as api from "../lib/api.js";
import {h, showError, status} from "../lib/dom.js";
import {decodeEdits, encodeEdit, fmtChange, fmtKL, fmtPts, SITES, toRequest} from "../lib/edits.js";
import {fmtProb} from "../lib/format.js";
import {divergingRGB, drawColorBar, sizeCanvas} from "../lib/heatmap.js";
import {promptBar} from "../lib/promptbar.js";
import {softmax, topK} from "../lib/sampling.js";
import * as state from "../lib/state.js";
import {decodeTensor} from "../lib/tensor.js";
import {visibleText} from "../lib/text.js";

export const title = "Intervene";

const SITE_HINTS = {
  head: "A head's output, before the output projection mixes the heads: what this one head adds to each token.",
  attn: "What the whole attention sub-block (all its heads, after the projection) adds to the residual stream.",
  mlp: "What the MLP adds to the residual stream.",
  resid: "The residual stream after the block: the running sum of everything the model has computed so far.",
};
const PATCH_HINT = "Patching runs the source prompt too and copies its residual stream (after this layer, at this " +
  "position) into this prompt's run. If the answer flips (Paris → Rome), that layer and position carry the fact.";
const BARS = 10; // tokens in the bars and the target list
const SOURCE_DEFAULT = "The capital of Italy is";
const CELL_W = 34; // head-scan cell, CSS pixels
const CELL_H = 15;
const FONT = "11px ui-monospace, 'DejaVu Sans Mono', monospace";

export async function mount(root, info) {
  const panel = h("div", {class: "iv"});
  root.append(panel);
  panel.append(h("p", {class: "hint iv-intro"},
    "Switch off or change one part of the model and see what it predicts then: a causal test of what each part does."));

  // -- what the panel knows --------------------------------------------------------------------
  let meta = null; // /api/trace's answer
  let plain = null; // Float64Array (V,): the plain model's next-token probabilities
  let labels = new Map(); // token id -> text
  let target = null; // the token whose probability we follow
  let edits = []; // the edits in force (the result shows them all applied together)
  let result = null; // {answer, probs (V,) edited} of the last /api/intervene, or null when no edit is active
  let sourceUsed = null; // the source prompt the patches in `edits` took their values from
  let scan = null; // {answer, p (L*nh) Float32Array} of the last head scan
  let hover = null; // {layer, head} under the pointer in the scan
  let request = 0; // sequence number: only the newest intervene answer is drawn
  let firstTrace = true;
  const labelOf = (id) => labels.get(id) ?? `#${id}`;
  const quoted = (id) => `«${visibleText(labelOf(id))}»`;

  // -- 1. the edit controls --------------------------------------------------------------------
  const kindSel = h("select", {id: "iv-kind", "aria-label": "kind of edit"},
    h("option", {value: "zero"}, "Zero"), h("option", {value: "scale"}, "Scale"),
    h("option", {value: "patch"}, "Patch"));
  const siteSel = h("select", {id: "iv-site", "aria-label": "site"},
    Object.entries(SITES).map(([value, text]) => h("option", {value}, text)));
  const layerIn = h("input", {type: "number", id: "iv-layer", value: 0, min: 0, style: "width: 4.5em", "aria-label": "layer"});
  const headIn = h("input", {type: "number", id: "iv-head", value: 0, min: 0, style: "width: 4.5em", "aria-label": "head"});
  const factorIn = h("input", {type: "number", id: "iv-factor", value: 0.5, step: 0.1, style: "width: 5em",
    "aria-label": "factor"});
  const posSel = h("select", {id: "iv-position", "aria-label": "position"});
  const sourceIn = h("input", {type: "text", id: "iv-source", value: state.get("source", SOURCE_DEFAULT), size: 30,
    "aria-label": "source prompt", spellcheck: "false"});
  const applyBtn = h("button", {class: "primary", id: "iv-apply", onclick: () => addEdit()}, "Apply");
  const layerWord = h("span");
  const parts = {
    head: h("label", {}, "head ", headIn),
    factor: h("label", {}, "by ", factorIn),
    source: h("label", {}, "from the source prompt ", sourceIn),
  };
  const siteHint = h("div", {class: "hint"});
  const editList = h("div", {class: "iv-edits", id: "iv-edits"});
  const targetSel = h("select", {id: "iv-target", "aria-label": "target token"});
  const targetRow = h("label", {class: "iv-target"}, "follow the probability of ", targetSel);
  const message = h("div", {class: "iv-message"});
  const controls = h("section", {class: "card"},
    h("h2", {}, "1. Edit the model"),
    h("div", {class: "row iv-sentence"}, kindSel, siteSel, h("label", {}, layerWord, layerIn), parts.head,
      parts.factor, h("label", {}, "at ", posSel), parts.source, applyBtn),
    siteHint, editList, targetRow, message);

  // what the controls show depends on the kind and site: the sentence reads as the edit does
  function syncControls() {
    const patch = kindSel.value === "patch";
    if (patch) siteSel.value = "resid"; // a patch copies the residual stream
    siteSel.disabled = patch;
    const site = siteSel.value;
    layerWord.textContent = site === "resid" ? "after layer " : site === "head" ? "in layer " : "of layer ";
    parts.head.hidden = site !== "head";
    parts.factor.hidden = kindSel.value !== "scale";
    parts.source.hidden = !patch;
    posSel.querySelector("option[value='']")?.toggleAttribute("disabled", patch); // a patch needs one position
    if (patch && posSel.value === "") posSel.value = String(meta ? meta.ids.length - 1 : 0);
    siteHint.textContent = patch ? PATCH_HINT : SITE_HINTS[site];
  }
  kindSel.addEventListener("change", syncControls);
  siteSel.addEventListener("change", syncControls);

  /** The edit the controls describe. */
  function editFromControls() {
    const kind = kindSel.value;
    const site = siteSel.value;
    const e = {kind, site, layer: Number.parseInt(layerIn.value, 10), head: null,
      position: posSel.value === "" ? null : Number(posSel.value)};
    if (!Number.isInteger(e.layer)) throw new Error("the layer must be a whole number, e.g. 20");
    if (site === "head") {
      e.head = Number.parseInt(headIn.value, 10);
      if (!Number.isInteger(e.head)) throw new Error("the head must be a whole number, e.g. 4");
    }
    if (kind === "scale") {
      e.factor = Number(factorIn.value);
      if (factorIn.value === "" || !Number.isFinite(e.factor)) throw new Error("the factor must be a number, e.g. 0.5");
    }
    return e;
  }

  /** "zeroing layer 20 head 4", "scaling layer 3's MLP by 0.5 at position 4 (·France)", ... */
  function describe(e) {
    const what = {head: `layer ${e.layer} head ${e.head}`, attn: `layer ${e.layer}'s attention`,
      mlp: `layer ${e.layer}'s MLP`, resid: `the residual stream after layer ${e.layer}`}[e.site];
    const label = meta?.labels.at(e.position);
    const where = e.position === null ? "" : ` at position ${e.position}${label === undefined ? "" : ` (${visibleText(label)})`}`;
    if (e.kind === "zero") return `zeroing ${what}${where}`;
    if (e.kind === "scale") return `scaling ${what} by ${e.factor}${where}`;
    return `patching ${what}${where} from «${sourceUsed ?? sourceIn.value}»`;
  }
  const capital = (s) => s.charAt(0).toUpperCase() + s.slice(1);

  // -- 2. the result ---------------------------------------------------------------------------
  const summary = h("p", {class: "iv-summary", id: "iv-summary"});
  const bars = h("div", {class: "iv-bars", id: "iv-bars", role: "list"});
  const topNote = h("div", {class: "iv-topnote"});
  const resultTitle = h("h2", {}, "2. What the model predicts now");
  const barsLegend = h("div", {class: "iv-legend"}, h("span", {class: "iv-swatch plain"}), "plain model",
    h("span", {class: "iv-swatch edited"}), "with the edits",
    h("span", {class: "muted"}, " · the model's 10 most likely next tokens; click one to follow its probability"));
  const klHint = h("div", {class: "hint"}, "KL divergence: how far the whole edited distribution moved from the plain ",
    "one, in nats (0 = not at all). It counts every token, not only the 10 shown.");
  const resultSection = h("section", {class: "card"}, resultTitle, summary, barsLegend, bars, topNote, klHint);

  // -- 3. the head scan ------------------------------------------------------------------------
  const scanBtn = h("button", {class: "primary", id: "iv-scan", onclick: () => runScan()}, "Head scan");
  const scanMessage = h("div");
  const scanBox = h("div", {class: "iv-scanbox", id: "iv-scanbox"});
  const scanIntro = h("span", {class: "hint"});
  const scanSection = h("section", {class: "card"},
    h("h2", {}, "3. Which heads matter? Zero each one in turn"),
    h("div", {class: "row"}, scanBtn, scanIntro), scanMessage, scanBox);

  const body = h("div", {class: "iv-body"}, controls, resultSection, scanSection);
  body.hidden = true;
  const bar = promptBar(panel, info, onTrace, {defaultText: "The capital of France is"});
  panel.append(body);

  // -- a new prompt ----------------------------------------------------------------------------
  async function onTrace(answer) {
    meta = answer;
    request += 1; // an edited run of the previous prompt is no longer drawn
    scan = null;
    scanBox.replaceChildren();
    scanMessage.replaceChildren();
    message.replaceChildren();
    result = null;
    body.hidden = false;
    const decoder = meta.kind === "decoder" && meta.next;
    labels = new Map(meta.ids.map((id, i) => [id, meta.labels[i]]));
    for (const [id, text] of Object.entries(decoder ? meta.next.labels : {})) labels.set(Number(id), text);
    plain = decoder ? softmax(decodeTensor(meta.next.logits).data) : null;
    layerIn.max = meta.n_layer - 1;
    headIn.max = meta.n_head - 1;
    posSel.replaceChildren(h("option", {value: ""}, "all positions"),
      ...meta.labels.map((text, i) => h("option", {value: i}, `position ${i}: ${visibleText(text)}`)));
    // the target: the link's, if the model gives it a top-100 probability; else the top token
    if (decoder) {
      const top = topK(plain, BARS).map((t) => t.index);
      const linked = state.getInt("target", null);
      target = firstTrace && linked !== null && labels.has(linked) ? linked : top[0];
      const choices = top.includes(target) ? top : [...top, target];
      targetSel.replaceChildren(...choices.map((id) =>
        h("option", {value: id}, `${visibleText(labelOf(id))} (${fmtProb(plain[id])})`)));
      targetSel.value = String(target);
      state.set({target: target === top[0] ? null : target});
    } else {
      target = null;
      state.set({target: null});
    }
    targetRow.hidden = !decoder;
    scanBtn.disabled = !decoder;
    scanIntro.textContent = decoder
      ? `${meta.n_layer * meta.n_head} runs of the prompt (${meta.n_layer} layers × ${meta.n_head} heads), each with one ` +
        "head zeroed; the map shows how the target's probability changes."
      : `${meta.model} is an encoder: it predicts no next token, so there is no probability to scan.`;
    syncControls();
    // the link's edits on the first prompt; on a new prompt, the same edits again
    const wanted = firstTrace ? decodeEdits(state.get("edits")) : edits;
    firstTrace = false;
    edits = [];
    render();
    if (wanted.length && !(await apply(wanted))) {
      message.prepend(h("div", {class: "hint"}, "The edits did not fit this prompt, so none is active now:"));
      saveEdits();
    }
  }

  // -- running the edits -----------------------------------------------------------------------
  function saveEdits() {
    state.set({edits: edits.map(encodeEdit).join(",") || null,
      source: edits.some((e) => e.kind === "patch") ? sourceUsed : null});
  }

  /** Run the prompt with `list` applied (none: the plain model, no request). On an error the
   * message is shown and the edits and result stay as they were; returns whether it worked. */
  async function apply(list) {
    const mine = ++request;
    message.replaceChildren();
    if (!list.length) {
      edits = [];
      result = null;
      saveEdits();
      render();
      return true;
    }
    const patching = list.some((e) => e.kind === "patch");
    const source = patching ? sourceIn.value : undefined;
    applyBtn.disabled = true;
    status(`running ${meta.model} with ${list.length} edit${list.length === 1 ? "" : "s"}…`);
    const started = performance.now();
    try {
      const answer = await api.post("intervene", {trace: meta.trace, edits: list.map(toRequest), source,
        chat: state.get("chat") === "1", // the source prompt goes through the chat template as the prompt did
        target: target ?? undefined});
      if (mine !== request) return false;
      edits = list;
      sourceUsed = patching ? source : null;
      let probs = null;
      if (answer.kind === "decoder") {
        for (const [id, text] of Object.entries(answer.next.labels)) labels.set(Number(id), text);
        probs = softmax(decodeTensor(answer.next.logits).data);
      }
      result = {answer, probs};
      saveEdits();
      render();
      status(`edited run in ${Math.round(performance.now() - started)} ms`);
      return true;
    } catch (error) {
      if (mine === request) {
        showError(message, error);
        status("");
      }
      return false;
    } finally {
      if (mine === request) applyBtn.disabled = false;
    }
  }

  const same = (a, b) => encodeEdit(a) === encodeEdit(b);

  /** Apply: the controls' edit joins the list (replacing an identical one). */
  function addEdit() {
    let e;
    try {
      e = editFromControls();
    } catch (error) {
      showError(message, error);
      return;
    }
    apply([...edits.filter((x) => !same(x, e)), e]);
  }

  targetSel.addEventListener("change", () => setTarget(Number(targetSel.value)));

  /** Follow another token: the edited run again (its probability comes from the server), the scan is cleared. */
  function setTarget(id) {
    if (id === target || !plain) return;
    target = id;
    targetSel.value = String(id);
    state.set({target: id === topK(plain, 1)[0].index ? null : id});
    if (scan) {
      scan = null;
      scanBox.replaceChildren(h("p", {class: "hint"}, `The scan was for another token: press Head scan again for ${quoted(id)}.`));
    }
    if (edits.length) apply(edits);
    else render();
  }

  // -- drawing the edits and the result --------------------------------------------------------
  function render() {
    renderEdits();
    const decoder = meta.kind === "decoder" && plain;
    resultTitle.textContent = decoder ? "2. What the model predicts now" : "2. How far the edits move the output";
    barsLegend.hidden = klHint.hidden = !decoder;
    if (decoder) renderDecoder();
    else renderEncoder();
    if (scan) drawScan();
  }

  function renderEdits() {
    editList.replaceChildren(
      h("span", {class: "iv-edits-title"}, edits.length ? "Active edits, applied together:" : "No edit active."),
      ...edits.map((e, i) => h("span", {class: "iv-chip", dataset: {edit: encodeEdit(e)}}, describe(e),
        h("button", {class: "iv-remove", title: "remove this edit", "aria-label": `remove ${describe(e)}`,
          onclick: () => apply(edits.filter((_, j) => j !== i))}, "✕"))),
      ...(edits.length > 1 ? [h("button", {class: "small", onclick: () => apply([])}, "remove all")] : []));
  }

  function renderDecoder() {
    const edited = result?.probs ?? plain; // no edit: the plain model, exactly
    const answer = result?.answer;
    const pBase = answer ? answer.p_base : plain[target];
    const pEdited = answer ? answer.p_edited : plain[target];
    const kl = answer ? answer.kl : 0;
    // full precision for a test (or a reader in the devtools)
    Object.assign(panel.dataset, {pBase, pEdited, kl, target, edits: edits.map(encodeEdit).join(",")});
    delete panel.dataset.cosine;
    const change = `P(${quoted(target)}) ${fmtChange(pBase, pEdited)}, KL ${fmtKL(kl)} nats`;
    summary.replaceChildren(edits.length
      ? h("span", {}, `${capital(edits.map(describe).join(" + "))}: `, h("b", {class: "iv-change"}, change))
      : h("span", {}, "No edit yet: this is the plain model. ",
        h("b", {class: "iv-change"}, `P(${quoted(target)}) ${fmtProb(pBase)}, KL 0 nats`),
        h("span", {class: "muted"}, ". Pick an edit above and press Apply, or run the head scan below.")));
    const rows = topK(plain, BARS);
    bars.replaceChildren(h("div", {class: "iv-bar iv-axis"}, h("span", {}, "token"), h("span", {}, "probability: 0 → 100%"),
      h("span", {}, "plain"), h("span", {}, "edited"), h("span", {}, "change")),
    ...rows.map(({index, p}) => {
      const q = edited[index];
      return h("div", {class: "iv-bar" + (index === target ? " target" : ""), role: "listitem",
        dataset: {token: index, plain: p, edited: q}, onclick: () => setTarget(index),
        title: `${visibleText(labelOf(index))}: ${fmtProb(p)} plain, ${fmtProb(q)} with the edits; click to follow it`},
      h("span", {class: "iv-label mono"}, visibleText(labelOf(index))),
      h("span", {class: "iv-track"}, h("span", {class: "iv-fill plain", style: `width: ${100 * p}%`}),
        h("span", {class: "iv-fill edited", style: `width: ${100 * q}%`})),
      h("span", {class: "iv-p mono plain"}, fmtProb(p)),
      h("span", {class: "iv-p mono edited"}, fmtProb(q)),
      h("span", {class: "iv-delta mono" + (q < p ? " down" : q > p ? " up" : "")}, q === p ? "=" : fmtPts(q - p)));
    }));
    const best = topK(edited, 1)[0];
    topNote.replaceChildren(result && best.index !== rows[0].index
      ? h("span", {}, `The edited model's most likely token is now ${quoted(best.index)} (${fmtProb(best.p)}), `,
        `not ${quoted(rows[0].index)}.`)
      : "");
  }

  function renderEncoder() {
    const cosine = result?.answer?.cosine_last;
    Object.assign(panel.dataset, {edits: edits.map(encodeEdit).join(",")});
    for (const key of ["pBase", "pEdited", "kl", "target"]) delete panel.dataset[key];
    if (cosine === undefined) delete panel.dataset.cosine;
    else panel.dataset.cosine = cosine;
    const last = visibleText(meta.labels.at(-1));
    summary.replaceChildren(h("span", {},
      `${meta.model} is an encoder: it predicts no next token, so there are no probabilities to compare. `,
      edits.length
        ? h("span", {}, `${capital(edits.map(describe).join(" + "))}: the last token's (${last}) output vector has `,
          h("b", {class: "iv-change"}, `cosine ${cosine.toFixed(5)}`), " with the plain one (1 = unchanged).")
        : `Apply an edit to see how far it moves the last token's (${last}) output vector (cosine 1 = unchanged).`));
    bars.replaceChildren();
    topNote.replaceChildren();
  }

  // -- the head scan ---------------------------------------------------------------------------
  async function runScan() {
    if (!meta || meta.kind !== "decoder") return;
    const trace = meta.trace;
    const runs = meta.n_layer * meta.n_head;
    scanBtn.disabled = true;
    scanMessage.replaceChildren();
    scanBox.replaceChildren(h("p", {class: "iv-running"}, `running ${runs} ablations…`));
    status(`running ${runs} ablations…`);
    const started = performance.now();
    try {
      const answer = await api.post("ablation-scan", {trace, target});
      if (trace !== meta.trace || answer.target !== target) return; // a new prompt or target meanwhile
      scan = {answer, p: decodeTensor(answer.p_ablated).data};
      hover = null;
      scanBox.replaceChildren();
      drawScan();
      status(`${runs} ablations in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (error) {
      scanBox.replaceChildren();
      showError(scanMessage, error);
      status("");
    } finally {
      scanBtn.disabled = meta.kind !== "decoder";
    }
  }

  /** The layers x heads map of p_ablated - p_base, its legend, the hover read-out, the strongest heads. */
  function drawScan() {
    const {answer, p} = scan;
    const L = meta.n_layer;
    const nh = meta.n_head;
    const delta = Array.from(p, (x) => x - answer.p_base); // (L * nh), layer-major
    const maxAbs = Math.max(1e-9, ...delta.map(Math.abs)); // a symmetric scale: white is always "no change"
    const g = {left: 62, top: 34, width: nh * CELL_W, height: L * CELL_H, rows: L, cols: nh};
    const canvas = h("canvas", {class: "iv-heatmap", id: "iv-heatmap",
      dataset: {plot: JSON.stringify({left: g.left, top: g.top, width: g.width, height: g.height, rows: L, cols: nh})}});
    const readout = h("p", {class: "iv-readout", id: "iv-readout"});
    const zeroed = new Set(edits.filter((e) => e.site === "head" && e.kind === "zero" && e.position === null)
      .map((e) => `${e.layer}/${e.head}`));
    const view = {answer, p, delta, maxAbs, g, canvas, readout, zeroed, nh};
    paintScan(view);

    const cellOf = (event) => {
      const box = canvas.getBoundingClientRect();
      const x = event.clientX - box.left - g.left;
      const y = event.clientY - box.top - g.top;
      if (x < 0 || y < 0 || x >= g.width || y >= g.height) return null;
      return {layer: Math.floor(y / CELL_H), head: Math.floor(x / CELL_W)};
    };
    canvas.addEventListener("mousemove", (event) => {
      const cell = cellOf(event);
      if (cell?.layer === hover?.layer && cell?.head === hover?.head) return;
      hover = cell;
      paintScan(view);
    });
    canvas.addEventListener("mouseleave", () => { hover = null; paintScan(view); });
    canvas.addEventListener("click", (event) => {
      const cell = cellOf(event);
      if (cell) zeroHead(cell.layer, cell.head);
    });

    // the legend: the change in probability along the bar, red (the head helps) to blue (it hurts)
    const colorBar = h("canvas", {class: "iv-colorbar"});
    drawColorBar(colorBar, 180, 12, (t) => divergingRGB(-(2 * t - 1) * maxAbs, maxAbs));
    const legend = h("div", {class: "iv-scan-legend"},
      h("span", {}, `change in P(${quoted(answer.target)}) when the head is zeroed:`),
      h("span", {class: "mono"}, fmtPts(-maxAbs)), colorBar, h("span", {class: "mono"}, fmtPts(maxAbs)),
      h("span", {class: "muted"}, "red: the head helps this answer (zeroing it lowers the probability); white: no ",
        "change; blue: the head works against it."));
    // the heads that matter most, each a button that zeroes it
    const order = delta.map((d, i) => i).sort((a, b) => delta[a] - delta[b]);
    const chip = (i) => h("button", {class: "small iv-headchip", onclick: () => zeroHead(Math.floor(i / nh), i % nh)},
      `layer ${Math.floor(i / nh)} head ${i % nh}: ${fmtPts(delta[i])}`);
    const helps = order.slice(0, 5).filter((i) => delta[i] < 0);
    const hurts = order.slice(-5).reverse().filter((i) => delta[i] > 0);
    const strongest = h("div", {class: "iv-strongest"},
      h("div", {}, "Helps the most (zeroing it costs the most):"), h("div", {class: "row"}, helps.length ? helps.map(chip) : "none"),
      h("div", {}, "Works against it the most:"), h("div", {class: "row"}, hurts.length ? hurts.map(chip) : "none"));
    scanBox.replaceChildren(
      h("p", {}, `With every head: P(${quoted(answer.target)}) = ${fmtProb(answer.p_base)}. `,
        "Each cell: the plain model with that one head zeroed (the edits above are not part of the scan)."),
      legend, h("div", {class: "iv-scan-body"}, canvas, h("div", {class: "iv-scan-side"}, readout, strongest)));
    scanBox.dataset.cells = L * nh;
  }

  /** Paint the scan's canvas (the cells, the axes, outlines for zeroed and hovered heads) and its read-out. */
  function paintScan({answer, p, delta, maxAbs, g, canvas, readout, zeroed, nh}) {
    // colour by minus the change: red (positive in divergingRGB) = zeroing the head lowers the probability
    const rgb = (d) => `rgb(${divergingRGB(-d, maxAbs).join(",")})`;
    const width = g.left + g.width + 12;
    const height = g.top + g.height + 8;
    const dpr = sizeCanvas(canvas, width, height);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;
    ctx.fillStyle = "#1d2230";
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.fillText("head →", g.left + g.width / 2, 14);
    for (let c = 0; c < nh; c++) ctx.fillText(String(c), g.left + (c + 0.5) * CELL_W, g.top - 3);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText("layer ↓", g.left - 6, 20);
    for (let r = 0; r < g.rows; r++) {
      ctx.fillStyle = "#1d2230";
      ctx.fillText(String(r), g.left - 6, g.top + (r + 0.5) * CELL_H);
      for (let c = 0; c < nh; c++) {
        ctx.fillStyle = rgb(delta[r * nh + c]);
        ctx.fillRect(g.left + c * CELL_W, g.top + r * CELL_H, CELL_W, CELL_H);
      }
    }
    ctx.lineWidth = 1; // thin white lines between the cells
    ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
    for (let c = 1; c < nh; c++) line(ctx, g.left + c * CELL_W, g.top, g.left + c * CELL_W, g.top + g.height);
    for (let r = 1; r < g.rows; r++) line(ctx, g.left, g.top + r * CELL_H, g.left + g.width, g.top + r * CELL_H);
    const outline = (r, c, colour) => {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.strokeRect(g.left + c * CELL_W + 1, g.top + r * CELL_H + 1, CELL_W - 2, CELL_H - 2);
    };
    for (const key of zeroed) {
      const [r, c] = key.split("/").map(Number);
      if (r < g.rows && c < nh) outline(r, c, "#1d2230");
    }
    if (hover) outline(hover.layer, hover.head, "#f5b800");

    for (const key of ["layer", "head", "pAblated"]) delete readout.dataset[key];
    readout.classList.toggle("mono", hover !== null); // numbers line up; the hint reads as prose
    if (!hover) {
      readout.textContent = "Hover a cell to read it; click it to zero that head (black outline: zeroed above).";
      return;
    }
    const pa = p[hover.layer * nh + hover.head];
    readout.textContent = `layer ${hover.layer} head ${hover.head}: ${fmtChange(answer.p_base, pa)} ` +
      `(${fmtPts(pa - answer.p_base)})` + (zeroed.has(`${hover.layer}/${hover.head}`) ? ", zeroed above" : "; click to zero it");
    Object.assign(readout.dataset, {layer: hover.layer, head: hover.head, pAblated: pa});
  }

  function zeroHead(layer, head) {
    const e = {kind: "zero", site: "head", layer, head, position: null};
    kindSel.value = "zero";
    siteSel.value = "head";
    layerIn.value = layer;
    headIn.value = head;
    posSel.value = "";
    syncControls();
    if (edits.some((x) => same(x, e))) return;
    apply([...edits, e]);
  }

  if (bar.text.value.trim()) await bar.run();
}

function line(ctx, x0, y0, x1, y1) {
  ctx.beginPath();
  ctx.moveTo(x0 + 0.5, y0 + 0.5);
  ctx.lineTo(x1 + 0.5, y1 + 0.5);
  ctx.stroke();
}
