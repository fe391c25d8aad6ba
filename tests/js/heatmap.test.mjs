// lib/heatmap.js: the pixel <-> cell rule, hit testing, the causal mask of a full matrix and of a
// max-pooled thumbnail, grouped-query heads, the diverging scale, and the painter itself.
import assert from "node:assert/strict";
import { test } from "node:test";

import { viridisRGB } from "../../src/lucidlm/explorer/static/lib/colors.js";
import {
  MASKED_RGB, adaptiveRange, causalMaskStart, cellAt, cellIndex, cellStart, divergingRGB, hitTest, kvHeadOf,
  onHatch, paintMatrix, thumbMaskStart,
} from "../../src/lucidlm/explorer/static/lib/heatmap.js";

test("cellIndex: each pixel belongs to one cell; cells are whole pixels, as even as can be", () => {
  assert.equal(cellIndex(0, 4, 10), 0);
  assert.equal(cellIndex(5, 4, 10), 2);
  assert.equal(cellIndex(9, 4, 10), 3);
  for (const [n, size] of [[5, 200], [4, 10], [512, 512], [7, 13], [3, 1000], [1024, 1024]]) {
    const counts = new Array(n).fill(0);
    for (let p = 0; p < size; p++) counts[cellIndex(p, n, size)]++;
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `${n} cells in ${size} px: ${counts}`);
  }
});

test("cellStart is the inverse of cellIndex: a cell's first pixel", () => {
  for (const [n, size] of [[4, 10], [7, 13], [5, 200], [512, 512]]) {
    for (let i = 0; i < n; i++) {
      const p = cellStart(i, n, size);
      assert.equal(cellIndex(p, n, size), i, `cell ${i} of ${n} in ${size} px starts at ${p}`);
      if (p > 0) assert.equal(cellIndex(p - 1, n, size), i - 1);
    }
    assert.equal(cellStart(n, n, size), size);
  }
});

test("cellAt maps a point to the cell drawn there, null outside the plot", () => {
  const g = { left: 10, top: 20, width: 100, height: 50, rows: 5, cols: 4 };
  assert.deepEqual(cellAt(10, 20, g), { row: 0, col: 0 });
  assert.deepEqual(cellAt(109.9, 69.9, g), { row: 4, col: 3 });
  assert.deepEqual(cellAt(35, 30, g), { row: 1, col: 1 }); // x: 25 px of 25-px columns -> column 1
  assert.equal(cellAt(9.9, 30, g), null);
  assert.equal(cellAt(110, 30, g), null); // the right edge belongs to no cell
  assert.equal(cellAt(50, 70, g), null);
});

test("hitTest tells cells from row labels and column labels", () => {
  const g = { left: 100, top: 10, width: 50, height: 50, rows: 5, cols: 5, labelLeft: 20, labelBottom: 120 };
  assert.deepEqual(hitTest(125, 35, g), { region: "cell", row: 2, col: 2 });
  assert.deepEqual(hitTest(60, 15, g), { region: "rowLabel", row: 0 });
  assert.deepEqual(hitTest(145, 100, g), { region: "colLabel", col: 4 });
  assert.equal(hitTest(10, 15, g), null); // left of the labels (the axis title)
  assert.equal(hitTest(60, 100, g), null); // the corner below the row labels
  assert.equal(hitTest(145, 130, g), null); // below the column labels
});

test("adaptiveRange cuts rows as PyTorch's adaptive pooling does", () => {
  // adaptive_max_pool of 10 -> 3: [floor(i*10/3), ceil((i+1)*10/3)) = [0,4), [3,7), [6,10)
  assert.deepEqual([0, 1, 2].map((i) => adaptiveRange(i, 3, 10)), [[0, 4], [3, 7], [6, 10]]);
  assert.deepEqual([0, 1].map((i) => adaptiveRange(i, 2, 4)), [[0, 2], [2, 4]]);
  assert.deepEqual(adaptiveRange(5, 32, 32), [5, 6]); // n = T: one cell per block
  for (const [n, T] of [[32, 512], [32, 33], [32, 1000], [7, 20]]) { // blocks cover every row
    assert.equal(adaptiveRange(0, n, T)[0], 0);
    assert.equal(adaptiveRange(n - 1, n, T)[1], T);
    for (let i = 1; i < n; i++) assert.ok(adaptiveRange(i, n, T)[0] <= adaptiveRange(i - 1, n, T)[1]);
  }
});

test("causalMaskStart: query i sees keys 0..i", () => {
  assert.equal(causalMaskStart(0, 5, 5), 1);
  assert.equal(causalMaskStart(4, 5, 5), 5); // the last token sees everything
  assert.equal(causalMaskStart(0, 2, 5), 4); // 3 cached keys before the 2 queries
});

test("thumbMaskStart: a block is masked only when every cell in it is", () => {
  assert.equal(thumbMaskStart(0, 2, 4), 1);
  assert.equal(thumbMaskStart(0, 3, 4), 2); // block (0, 1) holds key 1, which query 1 sees
  // against the definition, cell by cell, for sizes the explorer meets (n = min(T, 32))
  for (const T of [1, 2, 5, 31, 32, 33, 50, 100, 512]) {
    const n = Math.min(T, 32);
    for (let bi = 0; bi < n; bi++) {
      const [r0, r1] = adaptiveRange(bi, n, T);
      let want = n;
      for (let bj = n - 1; bj >= 0; bj--) {
        const [c0, c1] = adaptiveRange(bj, n, T);
        let all = true;
        for (let i = r0; i < r1 && all; i++) for (let j = c0; j < c1 && all; j++) all = j > i;
        if (!all) break;
        want = bj;
      }
      assert.equal(thumbMaskStart(bi, n, T), want, `T=${T} block row ${bi}`);
    }
  }
});

test("kvHeadOf: consecutive query heads share a KV head", () => {
  assert.deepEqual(Array.from({ length: 9 }, (_, h) => kvHeadOf(h, 9, 3)), [0, 0, 0, 1, 1, 1, 2, 2, 2]);
  assert.deepEqual(Array.from({ length: 4 }, (_, h) => kvHeadOf(h, 4, 4)), [0, 1, 2, 3]); // plain multi-head
  assert.deepEqual(Array.from({ length: 4 }, (_, h) => kvHeadOf(h, 4, 1)), [0, 0, 0, 0]); // multi-query
});

test("divergingRGB: white at 0, blue below, red above, symmetric, clamped", () => {
  assert.deepEqual(divergingRGB(0, 1), [255, 255, 255]);
  assert.deepEqual(divergingRGB(-1, 1), [33, 102, 172]);
  assert.deepEqual(divergingRGB(2, 2), [178, 24, 43]);
  assert.deepEqual(divergingRGB(50, 2), [178, 24, 43]);
  assert.deepEqual(divergingRGB(null, 1), MASKED_RGB);
  assert.deepEqual(divergingRGB(3, 0), [255, 255, 255]); // an all-zero table stays white
  const [r, g, b] = divergingRGB(-0.5, 1); // halfway to blue: lighter than the end
  assert.ok(r > 33 && g > 102 && b > 172 && b > r);
});

test("paintMatrix: each pixel shows its cell's viridis colour; masked cells are grey and hatched", () => {
  const rows = 3, cols = 3, width = 30, height = 30;
  const values = Float32Array.of(1, 0, 0, 0.5, 0.5, 0, 0.2, 0.3, 0.5); // a causal (T, T) head
  const pixels = new Uint8ClampedArray(width * height * 4);
  paintMatrix(pixels, width, height, values, { rows, cols, maskStart: (i) => causalMaskStart(i, rows, cols) });
  const hatch = [255, 255, 255];
  for (let py = 0; py < height; py++) {
    for (let px = 0; px < width; px++) {
      const { row, col } = cellAt(px, py, { left: 0, top: 0, width, height, rows, cols });
      const got = Array.from(pixels.subarray(4 * (py * width + px), 4 * (py * width + px) + 3));
      const want = col > row ? (onHatch(px, py) ? hatch : MASKED_RGB)
        : viridisRGB(Math.round(values[row * cols + col] * 255) / 255);
      assert.deepEqual(got, want, `pixel (${px}, ${py}) in cell (${row}, ${col})`);
      assert.equal(pixels[4 * (py * width + px) + 3], 255);
    }
  }
  const masked = [];
  for (let py = 0; py < 10; py++) for (let px = 20; px < 30; px++) masked.push(onHatch(px, py));
  assert.ok(masked.includes(true) && masked.includes(false), "a masked cell shows both grey and hatch lines");
});

test("paintMatrix reads thumbnail bytes with scale 255 and no mask", () => {
  const pixels = new Uint8ClampedArray(2 * 1 * 4);
  paintMatrix(pixels, 2, 1, Uint8Array.of(0, 255), { rows: 1, cols: 2, scale: 255 });
  assert.deepEqual(Array.from(pixels), [...viridisRGB(0), 255, ...viridisRGB(1), 255]);
});
