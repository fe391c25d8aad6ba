// panels/intervene.js: the URL's compact edit list and how the panel writes changes.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  decodeEdits, encodeEdit, fmtChange, fmtKL, fmtPts, toRequest,
} from "../../src/lucidlm/explorer/static/lib/edits.js";

const zeroHead = { kind: "zero", site: "head", layer: 20, head: 4, position: null };
const scaleMlp = { kind: "scale", site: "mlp", layer: 3, head: null, position: null, factor: 0.5 };
const patch = { kind: "patch", site: "resid", layer: 12, head: null, position: 3 };

test("encodeEdit drops the empty trailing fields", () => {
  assert.equal(encodeEdit(zeroHead), "zero:head:20:4");
  assert.equal(encodeEdit(scaleMlp), "scale:mlp:3::0.5");
  assert.equal(encodeEdit(patch), "patch:resid:12:::3");
  assert.equal(encodeEdit({ ...zeroHead, position: -1 }), "zero:head:20:4::-1");
});

test("decodeEdits reads what encodeEdit writes", () => {
  const edits = [zeroHead, scaleMlp, patch];
  assert.deepEqual(decodeEdits(edits.map(encodeEdit).join(",")), edits);
});

test("decodeEdits skips malformed entries and keeps the rest", () => {
  assert.deepEqual(decodeEdits("bogus:head:1:2,zero:head:20:4,zero:head:x:1,zero:head:3,zero:moon:1"), [zeroHead]);
  assert.deepEqual(decodeEdits(""), []);
  assert.deepEqual(decodeEdits(null), []);
  assert.equal(decodeEdits("scale:mlp:3")[0].factor, 0.5, "a scale without a factor halves");
});

test("toRequest sends only the fields an edit has", () => {
  assert.deepEqual(toRequest(zeroHead), { kind: "zero", site: "head", layer: 20, head: 4 });
  assert.deepEqual(toRequest(scaleMlp), { kind: "scale", site: "mlp", layer: 3, factor: 0.5 });
  assert.deepEqual(toRequest(patch), { kind: "patch", site: "resid", layer: 12, position: 3 });
});

test("fmtPts writes a change in percentage points with its sign", () => {
  assert.equal(fmtPts(-0.163), "−16.3 pts");
  assert.equal(fmtPts(0.041), "+4.1 pts");
  assert.equal(fmtPts(-0.000092), "−0.0092 pts");
  assert.equal(fmtPts(0), "±0.0 pts");
});

test("fmtChange adds decimals only when one decimal would hide the change", () => {
  assert.equal(fmtChange(0.7725, 0.61), "77.3% → 61.0%");
  assert.equal(fmtChange(0.772548, 0.773339), "77.25% → 77.33%");
  assert.equal(fmtChange(0.5, 0.5), "50.0% → 50.0%");
  assert.equal(fmtChange(0.77, 0.0000001), "77.0% → <0.1%");
});

test("fmtKL: exactly 0, three significant digits otherwise", () => {
  assert.equal(fmtKL(0), "0");
  assert.equal(fmtKL(0.000396), "3.96e-4");
  assert.equal(fmtKL(5.0367), "5.04");
});
