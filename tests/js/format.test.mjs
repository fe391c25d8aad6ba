// fmtProb, fmtNum, fmtShape.
import assert from "node:assert/strict";
import { test } from "node:test";

import { fmtNum, fmtProb, fmtShape } from "../../src/lucidlm/explorer/static/lib/format.js";

test("fmtProb: one decimal, honest at both ends", () => {
  assert.equal(fmtProb(0.1234), "12.3%");
  assert.equal(fmtProb(0.5), "50.0%");
  assert.equal(fmtProb(0.001), "0.1%");
  assert.equal(fmtProb(0.0004), "<0.1%");
  assert.equal(fmtProb(1e-12), "<0.1%");
  assert.equal(fmtProb(0), "0%");
  assert.equal(fmtProb(0.9996), ">99.9%");
  assert.equal(fmtProb(1), "100%");
  assert.equal(fmtProb(NaN), "NaN");
});

test("fmtNum: 4 significant digits with a sign", () => {
  assert.equal(fmtNum(0.123), "+0.123");
  assert.equal(fmtNum(-1.23e-5), "-1.23e-5");
  assert.equal(fmtNum(3.14159), "+3.142");
  assert.equal(fmtNum(-2), "-2");
  assert.equal(fmtNum(1200), "+1200");
  assert.equal(fmtNum(12345), "+1.235e4");
  assert.equal(fmtNum(9999.7), "+1e4"); // rounds up past the plain range
  assert.equal(fmtNum(0.001), "+0.001");
  assert.equal(fmtNum(0.00099996), "+0.001");
  assert.equal(fmtNum(0.0009995), "+9.995e-4");
  assert.equal(fmtNum(0), "0");
  assert.equal(fmtNum(-0), "0");
  assert.equal(fmtNum(-Infinity), "-inf");
  assert.equal(fmtNum(NaN), "NaN");
});

test("fmtShape prints Python tuples", () => {
  assert.equal(fmtShape([1, 9, 12, 64]), "(1, 9, 12, 64)");
  assert.equal(fmtShape([5]), "(5,)");
  assert.equal(fmtShape([]), "()");
});
