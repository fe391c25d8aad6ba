// panels/runs.js: the loss chart's columns and Watch it learn's step look-ups.
import assert from "node:assert/strict";
import { test } from "node:test";

import { answerDepth, lossAt, nearestIndex } from "../../src/lucidlm/explorer/static/panels/learn.js";
import { lossSeries } from "../../src/lucidlm/explorer/static/panels/runs.js";

test("lossSeries makes one column per step, null where a split has no value", () => {
  const records = [{ step: 2, split: "val", loss: 2.5 }, { step: 1, split: "train", loss: 3 },
    { step: 2, split: "train", loss: 2.8 }, { step: 2, split: "train", loss: 2.7 }, { step: 3, split: "train", loss: NaN }];
  assert.deepEqual(lossSeries(records), [[1, 2], [3, 2.7], [null, 2.5]]); // a repeated step keeps its last record
});

test("lossAt finds the record of a split logged closest to a step, the earlier on a tie", () => {
  const records = [{ step: 50, split: "val", loss: 2 }, { step: 100, split: "val", loss: 1.5 },
    { step: 100, split: "train", loss: 1.4 }];
  assert.equal(lossAt(records, "val", 90).loss, 1.5);
  assert.equal(lossAt(records, "val", 75).step, 50);
  assert.equal(lossAt(records, "train", 0).step, 100);
  assert.equal(lossAt(records, "val", 100).loss, 1.5);
  assert.equal(lossAt([], "val", 10), null);
});

test("nearestIndex picks the kept step closest to a wanted one", () => {
  assert.equal(nearestIndex([0, 20, 40], 27), 1);
  assert.equal(nearestIndex([0, 20, 40], 999), 2);
  assert.equal(nearestIndex([0, 20, 40], -5), 0);
});

test("answerDepth is the first lens row from which the answer stays on top", () => {
  assert.equal(answerDepth([5, 7, 7, 9, 9], 9), 3);
  assert.equal(answerDepth([9, 7, 9, 9], 9), 2); // on top at row 0, then lost: it forms at row 2
  assert.equal(answerDepth([9, 9, 9], 9), 0);
  assert.equal(answerDepth([1, 2, 3], 9), -1); // never (the lens's last row is the model's answer, so rare)
});
