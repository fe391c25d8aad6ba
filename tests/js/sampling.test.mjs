// processLogits, topK, mulberry32, sampleIndex: hand-computed cases. tests/test_explorer_js.py
// also checks processLogits against Python's sampling_probs on random logits.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  mulberry32, processLogits, sampleIndex, softmax, topK,
} from "../../src/lucidlm/explorer/static/lib/sampling.js";

function assertClose(got, want, tol = 1e-12) {
  assert.equal(got.length, want.length);
  want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) <= tol, `[${i}]: got ${got[i]}, want ${w}`));
}

test("temperature 0.5 on [1, 2, 3] is softmax([2, 4, 6])", () => {
  // = [e^-4, e^-2, 1] / (1 + e^-2 + e^-4); e^-2 = 0.1353352832366127, e^-4 = 0.0183156388887342,
  // sum = 1.1536509221253469
  assertClose(processLogits([1, 2, 3], { temperature: 0.5 }),
    [0.015876239976466765, 0.11731042782619835, 0.8668133321973349]);
  assertClose(softmax([0, Math.log(3)]), [0.25, 0.75]);
});

test("temperature 0 is greedy: one-hot on the first maximum, as torch.argmax", () => {
  assert.deepEqual(Array.from(processLogits([1, 3, 3, 2], { temperature: 0 })), [0, 1, 0, 0]);
  // greedy ignores the filters (Python returns before applying them)
  assert.deepEqual(Array.from(processLogits([5, 1], { temperature: 0, topP: 0.1, minP: 1 })), [1, 0]);
});

test("top-k keeps exactly k on ties, lower ids first", () => {
  // [2, 1, 1, 0], k = 2 -> [2, 1, -inf, -inf] -> [e, 1] / (e + 1)
  assertClose(processLogits([2, 1, 1, 0], { topK: 2 }), [0.7310585786300049, 0.2689414213699951, 0, 0]);
  assert.deepEqual(Array.from(processLogits([0, 0, 0], { topK: 1 })), [1, 0, 0]);
  assertClose(processLogits([0, 0], { topK: 5 }), [0.5, 0.5]); // k >= V: off
});

test("top-p drops a token whose mass-before equals p exactly", () => {
  // four equal logits: probabilities exactly 0.25; mass before each = [0, 0.25, 0.5, 0.75]
  assert.deepEqual(Array.from(processLogits([0, 0, 0, 0], { topP: 0.5 })), [0.5, 0.5, 0, 0]);
  assertClose(processLogits([0, 0, 0, 0], { topP: 0.5000001 }), [1 / 3, 1 / 3, 1 / 3, 0]);
  assert.deepEqual(Array.from(processLogits([0, 0, 0, 0], { topP: 0.25 })), [1, 0, 0, 0]);
  // probs [0.5, 0.3, 0.2], p = 0.7: mass before = [0, 0.5, 0.8] -> keep two: [0.625, 0.375]
  assertClose(processLogits([0.2, 0.5, 0.3].map(Math.log), { topP: 0.7 }), [0, 0.625, 0.375]);
  // the top token always stays, however small p
  assert.deepEqual(Array.from(processLogits([0, 1, 0], { topP: 0.01 })), [0, 1, 0]);
});

test("min-p keeps p >= minP * p_max", () => {
  // probs [0.5, 0.3, 0.2], minP = 0.5: threshold 0.25 -> [0.5, 0.3] renormalised
  assertClose(processLogits([0.5, 0.3, 0.2].map(Math.log), { minP: 0.5 }), [0.625, 0.375, 0]);
  // minP = 1 keeps only the tokens tied with the top one
  assert.deepEqual(Array.from(processLogits([0, -1, 0], { minP: 1 })), [0.5, 0, 0.5]);
});

test("the filters run in order: temperature, top-k, top-p, min-p", () => {
  // logits ln[0.4, 0.3, 0.2, 0.1]; top-k 3 -> [4, 3, 2] / 9; top-p 0.5: mass before = [0, 4/9, 7/9]
  // -> keep two -> [4/7, 3/7]; min-p 0.8: 3/7 < 0.8 * 4/7 -> only the first
  const logits = [0.4, 0.3, 0.2, 0.1].map(Math.log);
  assertClose(processLogits(logits, { topK: 3, topP: 0.5 }), [4 / 7, 3 / 7, 0, 0]);
  assert.deepEqual(Array.from(processLogits(logits, { topK: 3, topP: 0.5, minP: 0.8 })), [1, 0, 0, 0]);
});

test("-Infinity logits are banned tokens; broken logits throw", () => {
  assertClose(processLogits([0, -Infinity, 0]), [0.5, 0, 0.5]);
  assert.throws(() => processLogits([-Infinity, -Infinity]), /every logit is -Infinity/);
  assert.throws(() => processLogits([-Infinity], { temperature: 0 }), /no finite logit/);
  assert.throws(() => processLogits([0, NaN]), /logit 1 is NaN/);
  assert.throws(() => processLogits([0, Infinity]), /logit 1 is Infinity/);
});

test("parameters out of range throw a RangeError naming the valid range", () => {
  assert.throws(() => processLogits([0], { temperature: -1 }), { name: "RangeError", message: /temperature=-1/ });
  assert.throws(() => processLogits([0], { topK: 1.5 }), /topK=1.5 is out of range/);
  assert.throws(() => processLogits([0], { topP: 0 }), /0 < topP <= 1/);
  assert.throws(() => processLogits([0], { minP: 2 }), /0 <= minP <= 1/);
});

test("topK sorts descending, lower index first on ties", () => {
  assert.deepEqual(topK([0.1, 0.6, 0.3], 2), [{ index: 1, p: 0.6 }, { index: 2, p: 0.3 }]);
  assert.deepEqual(topK([0.2, 0.4, 0.2, 0.2], 3).map((e) => e.index), [1, 0, 2]);
  assert.equal(topK([0.5, 0.5], 10).length, 2);
  assert.deepEqual(topK([0.5, 0.5], 0), []);
});

test("topK's partial selection agrees with a full sort", () => {
  const rng = mulberry32(7);
  const probs = Array.from({ length: 1000 }, () => Math.floor(rng() * 50) / 50); // many ties
  const full = Array.from(probs.keys()).sort((i, j) => probs[j] - probs[i] || i - j);
  for (const k of [1, 5, 60, 200, 1000]) {
    assert.deepEqual(topK(probs, k).map((e) => e.index), full.slice(0, k), `k = ${k}`);
  }
});

test("mulberry32 is deterministic and uniform on [0, 1)", () => {
  const a = mulberry32(42);
  const b = mulberry32(42);
  const xs = Array.from({ length: 10000 }, () => a());
  assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b()));
  assert.notEqual(mulberry32(43)(), xs[0]);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
});

test("sampleIndex inverts the cumulative distribution and never draws a zero", () => {
  const probs = [0.2, 0, 0.5, 0.3];
  const at = (u) => sampleIndex(probs, () => u);
  assert.equal(at(0), 0);
  assert.equal(at(0.19), 0);
  assert.equal(at(0.2), 2); // u = 0.2 is past token 0's [0, 0.2); token 1 has no mass
  assert.equal(at(0.69), 2);
  assert.equal(at(0.71), 3);
  assert.equal(at(0.9999999999), 3);
  assert.equal(sampleIndex([0, 1, 0], () => 0), 1);
  assert.throws(() => sampleIndex([0, 0], () => 0.5), /no token has a positive probability/);
});

test("sampleIndex's frequencies follow the probabilities", () => {
  const rng = mulberry32(1);
  const counts = [0, 0, 0];
  for (let i = 0; i < 20000; i++) counts[sampleIndex([0.2, 0.5, 0.3], rng)]++;
  assertClose(counts.map((c) => c / 20000), [0.2, 0.5, 0.3], 0.02);
});
