/**
 * Interventions as the Intervene and Compare panels write them: the URL's compact edit list
 * ("zero:head:20:4,scale:mlp:3::0.5"), the request form of an edit, and how changes are printed.
 * Pure functions, tested in tests/js/intervene.test.mjs.
 */

import {fmtProb} from "./format.js";

export const KINDS = ["zero", "scale", "patch"];
export const SITES = {head: "a head", attn: "an attention sub-block", mlp: "an MLP", resid: "the residual stream"};

/** {kind: "scale", site: "mlp", layer: 3, factor: 0.5} -> "scale:mlp:3::0.5" (empty trailing fields dropped). */
export function encodeEdit(e) {
  const fields = [e.kind, e.site, e.layer, e.head ?? "", e.kind === "scale" ? e.factor : "", e.position ?? ""];
  while (fields.at(-1) === "") fields.pop();
  return fields.join(":");
}

/** "zero:head:20:4,scale:mlp:3::0.5" -> edits; a malformed entry is skipped (the API checks the numbers). */
export function decodeEdits(text) {
  const int = (s) => (/^-?\d+$/.test(s ?? "") ? Number(s) : null);
  const edits = [];
  for (const item of (text ?? "").split(",").filter(Boolean)) {
    const [kind, site, layer, head, factor, position] = item.split(":");
    if (!KINDS.includes(kind) || !(site in SITES) || int(layer) === null) continue;
    const e = {kind, site, layer: int(layer), head: site === "head" ? int(head) : null, position: int(position)};
    if (site === "head" && e.head === null) continue;
    if (kind === "scale") e.factor = Number.isFinite(Number(factor)) && factor !== "" ? Number(factor) : 0.5;
    edits.push(e);
  }
  return edits;
}

/** The request's form of an edit: {kind, site, layer, head?, position?, factor?}. */
export function toRequest(e) {
  const out = {kind: e.kind, site: e.site, layer: e.layer};
  if (e.head !== null) out.head = e.head;
  if (e.position !== null) out.position = e.position;
  if (e.kind === "scale") out.factor = e.factor;
  return out;
}

/** A change in probability in percentage points, with its sign: -0.163 -> "−16.3 pts". */
export function fmtPts(d) {
  const x = 100 * d;
  const digits = Math.abs(x) >= 0.1 || x === 0 ? x.toFixed(1) : x.toPrecision(2);
  return (x > 0 ? "+" : x < 0 ? "−" : "±") + digits.replace("-", "") + " pts";
}

/** Two probabilities "before → after", with more decimals when one decimal would hide the change:
 * (0.77255, 0.77334) -> "77.25% → 77.33%", (0.7725, 0.61) -> "77.3% → 61.0%". */
export function fmtChange(a, b) {
  let [x, y] = [fmtProb(a), fmtProb(b)];
  for (let digits = 2; x === y && a !== b && digits <= 4 && a > 0.001 && b > 0.001; digits++) {
    [x, y] = [`${(100 * a).toFixed(digits)}%`, `${(100 * b).toFixed(digits)}%`];
  }
  return `${x} → ${y}`;
}

/** A KL divergence in nats: 3 significant digits, exactly "0" when it is 0. */
export function fmtKL(kl) {
  return kl === 0 ? "0" : kl < 0.001 ? kl.toExponential(2) : kl.toPrecision(3);
}
