// panels/alignment.js: which matrix a heatmap shows, and each row's strongest column, by hand.
import assert from "node:assert/strict";
import { test } from "node:test";

import { headMatrix, strongestColumns } from "../../src/lucidlm/explorer/static/panels/alignment.js";

// (L=2, nh=2, T=1, S=2): block 0 heads [1, 0] and [0, 1]; block 1 heads [0.2, 0.8] and [0.6, 0.4]
const DATA = [1, 0, 0, 1, 0.2, 0.8, 0.6, 0.4];

test("headMatrix picks one head of one block, or averages the block's heads", () => {
  assert.deepEqual(headMatrix(DATA, 2, 2, 1, 2, 0, 1), [0, 1]);
  assert.deepEqual(headMatrix(DATA, 2, 2, 1, 2, 1, 0), [0.2, 0.8]);
  assert.deepEqual(headMatrix(DATA, 2, 2, 1, 2, 0, null), [0.5, 0.5]);
  const mean = headMatrix(DATA, 2, 2, 1, 2, 1, null);
  assert.ok(Math.abs(mean[0] - 0.4) < 1e-12 && Math.abs(mean[1] - 0.6) < 1e-12);
});

test("strongestColumns gives each row's largest weight, the first on a tie", () => {
  assert.deepEqual(strongestColumns([0.1, 0.9, 0.7, 0.3], 2, 2), [1, 0]);
  assert.deepEqual(strongestColumns([0.5, 0.5, 0.2, 0.3, 0.5, 0], 2, 3), [0, 1]);
});
