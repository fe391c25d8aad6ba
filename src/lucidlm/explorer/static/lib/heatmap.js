// Heatmaps on a canvas: a matrix of numbers painted pixel by pixel into an ImageData, so a
// 1,024 x 1,024 attention matrix is one image (a million cells, no element per cell).
//
// The one rule that keeps drawing and hovering in agreement: a plot `size` pixels wide showing
// `n` cells gives pixel p to cell floor(p * n / size) (cellIndex). The painter colours each
// pixel by that rule and the mouse is mapped back by the same rule, so the cell under the
// pointer is always the cell drawn there, at any zoom and any devicePixelRatio.
//
// Masked cells (a causal decoder's future tokens) are grey with white diagonal hatching, a
// colour viridis never takes, so "not allowed to look" never reads as "a weight of 0". This
// matches the matplotlib heatmaps of `lucidlm inspect` (inspection/walkthrough.py).
//
// The top half of this file is pure (numbers in, numbers out: tests/js/heatmap.test.mjs); the
// bottom half draws on a canvas.

import { viridisRGB } from "./colors.js";

/** Masked cells: the grey of lucidlm's matplotlib heatmaps (MASKED_COLOUR), with white hatching. */
export const MASKED_RGB = [176, 176, 176];
const HATCH_RGB = [255, 255, 255];
const HATCH_PERIOD = 7; // pixels between hatch lines
const HATCH_WIDTH = 2; // pixels per hatch line

// -- pure helpers ------------------------------------------------------------------------------

/**
 * Which of `n` cells pixel `p` of a `size`-pixel plot shows (the painter's rule).
 * @example cellIndex(5, 4, 10) // 2: pixels 5..7 show cell 2 of 4
 */
export function cellIndex(p, n, size) {
  return Math.floor((p * n) / size);
}

/**
 * The first pixel of cell `i` of `n` in a `size`-pixel plot: the inverse of cellIndex
 * (cellIndex(cellStart(i)) === i, cellIndex(cellStart(i) - 1) === i - 1).
 * @example cellStart(2, 4, 10) // 5
 */
export function cellStart(i, n, size) {
  return Math.ceil((i * size) / n);
}

/**
 * The cell under a point, or null outside the plot.
 * @param {number} x, y  point in the same units as the geometry (CSS pixels)
 * @param {{left: number, top: number, width: number, height: number, rows: number, cols: number}} g
 *   the plot's box and its number of rows and columns
 * @returns {{row: number, col: number} | null}
 * @example cellAt(15, 5, {left: 10, top: 0, width: 10, height: 10, rows: 2, cols: 2}) // {row: 1, col: 1}
 */
export function cellAt(x, y, g) {
  const dx = x - g.left;
  const dy = y - g.top;
  if (dx < 0 || dy < 0 || dx >= g.width || dy >= g.height) return null;
  return { row: cellIndex(dy, g.rows, g.height), col: cellIndex(dx, g.cols, g.width) };
}

/**
 * What a point of a labelled heatmap is over: a cell, a row label (left of the plot, on a row),
 * a column label (below the plot, on a column), or nothing.
 * @param {number} x, y  point (CSS pixels)
 * @param {{left, top, width, height, rows, cols, labelLeft?: number, labelBottom?: number}} g
 *   labelLeft: where the row labels start (default 0); labelBottom: where the column labels end
 *   (default top + height + 100)
 * @returns {{region: "cell" | "rowLabel" | "colLabel", row?: number, col?: number} | null}
 */
export function hitTest(x, y, g) {
  const cell = cellAt(x, y, g);
  if (cell) return { region: "cell", ...cell };
  const insideRows = y >= g.top && y < g.top + g.height;
  const insideCols = x >= g.left && x < g.left + g.width;
  if (insideRows && x < g.left && x >= (g.labelLeft ?? 0)) {
    return { region: "rowLabel", row: cellIndex(y - g.top, g.rows, g.height) };
  }
  if (insideCols && y >= g.top + g.height && y < (g.labelBottom ?? g.top + g.height + 100)) {
    return { region: "colLabel", col: cellIndex(x - g.left, g.cols, g.width) };
  }
  return null;
}

/**
 * The rows (or columns) of a length-`total` axis that block `i` of `n` covers under adaptive
 * pooling, as PyTorch's adaptive_max_pool2d cuts them: [floor(i*total/n), ceil((i+1)*total/n)).
 * Blocks may overlap by one when n does not divide total.
 * @returns {[number, number]} start (inclusive), end (exclusive)
 * @example adaptiveRange(1, 3, 10) // [3, 7]
 */
export function adaptiveRange(i, n, total) {
  return [Math.floor((i * total) / n), Math.ceil(((i + 1) * total) / n)];
}

/**
 * Causal mask of a full (T, S) attention matrix: query i may look at keys 0..i (+ S - T when
 * the keys include S - T earlier tokens, as with a KV cache), so key j is masked when
 * j > i + (S - T). Returns the first masked column of row i (S when none is).
 * @example causalMaskStart(0, 5, 5) // 1: the first token sees only itself
 */
export function causalMaskStart(i, T, S) {
  return Math.min(i + 1 + (S - T), S);
}

/**
 * Causal mask of a thumbnail: the n x n max-pooling of a (T, T) matrix. A block is drawn masked
 * only when every cell in it is masked: its first key comes after its last query. Returns the
 * first such block column of block row bi (n when none is).
 * @example thumbMaskStart(0, 2, 4) // 1: block (0, 1) holds keys 2..3 for queries 0..1
 * @example thumbMaskStart(0, 3, 4) // 2: block (0, 1) holds key 1, seen by query 1
 */
export function thumbMaskStart(bi, n, T) {
  const lastQuery = adaptiveRange(bi, n, T)[1] - 1;
  for (let bj = 0; bj < n; bj++) {
    if (adaptiveRange(bj, n, T)[0] > lastQuery) return bj;
  }
  return n;
}

/**
 * Grouped-query attention: the KV head that query head h reads. With nh query heads and kv
 * KV heads, each KV head serves nh / kv consecutive query heads (Ainslie et al. 2023).
 * @example kvHeadOf(4, 9, 3) // 1: heads 3, 4, 5 share KV head 1
 */
export function kvHeadOf(h, nHead, kvHeads) {
  return Math.floor(h / (nHead / kvHeads));
}

/** Whether pixel (px, py) of a masked cell is on a white hatch line (diagonal, /). */
export function onHatch(px, py) {
  return (px + py) % HATCH_PERIOD < HATCH_WIDTH;
}

/**
 * A diverging colour for signed numbers: blue for negative, white at 0, red for positive, full
 * strength at |v| = maxAbs (clamped beyond). The scale is symmetric so that 0 is always white and
 * equal magnitudes look equally strong. NaN (and null) gives grey.
 * @returns {[number, number, number]}
 * @example divergingRGB(0, 1) // [255, 255, 255]
 */
export function divergingRGB(v, maxAbs) {
  if (v === null || Number.isNaN(v)) return [...MASKED_RGB];
  const t = maxAbs > 0 ? Math.max(-1, Math.min(1, v / maxAbs)) : 0;
  // ends: #2166ac (blue) and #b2182b (red), from ColorBrewer's RdBu
  const end = t < 0 ? [33, 102, 172] : [178, 24, 43];
  const a = Math.abs(t);
  return [0, 1, 2].map((c) => Math.round(255 + a * (end[c] - 255)));
}

/** A 256-entry viridis table (byte b -> colour of b / 255), so painting a pixel is one lookup. */
let viridisTable = null;
function viridisLUT() {
  if (viridisTable === null) {
    viridisTable = new Uint8Array(256 * 3);
    for (let b = 0; b < 256; b++) viridisTable.set(viridisRGB(b / 255), 3 * b);
  }
  return viridisTable;
}

/**
 * Paint a matrix into an RGBA pixel buffer, viridis for 0..1, masked cells hatched grey.
 * @param {Uint8ClampedArray} pixels RGBA, width * height * 4 (an ImageData's data)
 * @param {number} width, height  the buffer's size in pixels (the whole plot)
 * @param {ArrayLike<number>} values rows * cols numbers in C order; 0..1 (scale 1) or 0..255
 *   (scale 255, the thumbnails' bytes)
 * @param {{rows: number, cols: number, scale?: number, maskStart?: (row: number) => number}} opt
 *   maskStart(row): the first masked column of a row (cols when none); omit for no mask
 */
export function paintMatrix(pixels, width, height, values, { rows, cols, scale = 1, maskStart = null }) {
  const lut = viridisLUT();
  const colOf = new Int32Array(width); // pixel column -> matrix column, computed once
  for (let px = 0; px < width; px++) colOf[px] = cellIndex(px, cols, width);
  const firstMasked = new Int32Array(rows);
  for (let r = 0; r < rows; r++) firstMasked[r] = maskStart ? maskStart(r) : cols;
  const toByte = 255 / scale;
  let o = 0; // offset into pixels
  for (let py = 0; py < height; py++) {
    const r = cellIndex(py, rows, height);
    const rowOffset = r * cols;
    const masked = firstMasked[r];
    for (let px = 0; px < width; px++, o += 4) {
      const c = colOf[px];
      if (c >= masked) { // not allowed to look: grey, or white on a hatch line
        const rgb = onHatch(px, py) ? HATCH_RGB : MASKED_RGB;
        pixels[o] = rgb[0];
        pixels[o + 1] = rgb[1];
        pixels[o + 2] = rgb[2];
      } else {
        const k = 3 * Math.max(0, Math.min(255, Math.round(values[rowOffset + c] * toByte)));
        pixels[o] = lut[k];
        pixels[o + 1] = lut[k + 1];
        pixels[o + 2] = lut[k + 2];
      }
      pixels[o + 3] = 255;
    }
  }
}

// -- drawing on a canvas -----------------------------------------------------------------------

/**
 * Size a canvas for crisp drawing: `width` x `height` CSS pixels backed by that many device
 * pixels (x devicePixelRatio). Returns the ratio; drawing code scales by it.
 */
export function sizeCanvas(canvas, width, height) {
  const dpr = globalThis.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  return dpr;
}

/**
 * Draw a matrix as a heatmap into ctx, filling `box` ({left, top, width, height} in CSS pixels)
 * at device resolution. Options as paintMatrix.
 */
export function drawMatrix(ctx, box, values, options) {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = Math.round(box.width * dpr);
  const h = Math.round(box.height * dpr);
  if (w <= 0 || h <= 0) return;
  const image = ctx.createImageData(w, h);
  paintMatrix(image.data, w, h, values, options);
  ctx.putImageData(image, Math.round(box.left * dpr), Math.round(box.top * dpr));
}

/** A horizontal colour bar (a legend): `rgbOf(t)` for t from 0 (left) to 1 (right). */
export function drawColorBar(canvas, width, height, rgbOf) {
  const dpr = sizeCanvas(canvas, width, height);
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const image = ctx.createImageData(w, canvas.height);
  for (let px = 0; px < w; px++) {
    const [r, g, b] = rgbOf(px / Math.max(1, w - 1));
    for (let py = 0; py < canvas.height; py++) image.data.set([r, g, b, 255], 4 * (py * w + px));
  }
  ctx.putImageData(image, 0, 0);
  return dpr;
}

/** A small square legend swatch of the masked-cell hatching. */
export function drawMaskSwatch(canvas, size = 16) {
  sizeCanvas(canvas, size, size);
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(canvas.width, canvas.height);
  paintMatrix(image.data, canvas.width, canvas.height, [0], { rows: 1, cols: 1, maskStart: () => 0 });
  ctx.putImageData(image, 0, 0);
}

// -- axes and outlines shared by the Attention panel and the notebook widget --------------------

/** 1, 2, 5, 10, 20, 50... the first at least x: tick spacing on a position axis.
 * @example niceStep(7) // 10 */
export function niceStep(x) {
  for (let p = 1; ; p *= 10) for (const m of [1, 2, 5]) if (m * p >= x) return m * p;
}

/** Text cut with "…" to fit `width` pixels. */
export function clipText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let s = text;
  while (s.length > 1 && ctx.measureText(s + "…").width > width) s = s.slice(0, -1);
  return s + "…";
}

/** A rectangle outline visible on any colour: white inside a dark line. */
export function outline(ctx, x, y, w, hgt) {
  ctx.lineWidth = 3;
  ctx.strokeStyle = "#1d2230";
  ctx.strokeRect(x, y, w, hgt);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = "#ffffff";
  ctx.strokeRect(x, y, w, hgt);
}

/**
 * A head's axes: token labels (or token positions, for long prompts) on both axes, and the axis
 * titles. `g` is the plot box (left, top, width, height, labelLeft, labelBottom); the last T of
 * `labels` label the rows (the queries), the first S the columns (the keys).
 * `axes` (optional): {rowLabels, rowTitle, colTitle} for a matrix whose rows and columns are
 * different sequences (cross-attention: the output being written x the source).
 */
export function drawTokenAxes(ctx, g, labels, T, S, showLabels, height, font, axes = {}) {
  const rowLabels = axes.rowLabels ?? labels.slice(labels.length - T);
  ctx.font = font;
  ctx.fillStyle = "#1d2230";
  if (showLabels) {
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i < T; i++) {
      const y = g.top + (cellStart(i, T, g.height) + cellStart(i + 1, T, g.height)) / 2;
      ctx.fillText(clipText(ctx, rowLabels[i], g.left - g.labelLeft - 6), g.left - 4, y);
    }
    for (let j = 0; j < S; j++) { // key labels run downwards, under their column
      const x = g.left + (cellStart(j, S, g.width) + cellStart(j + 1, S, g.width)) / 2;
      ctx.save();
      ctx.translate(x, g.top + g.height + 4);
      ctx.rotate(Math.PI / 2);
      ctx.textAlign = "left";
      ctx.fillText(clipText(ctx, labels[j], g.labelBottom - g.top - g.height - 8), 0, 0);
      ctx.restore();
    }
  } else { // positions: a tick every `step` tokens
    const step = niceStep(Math.max(T, S) / 6);
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i < T; i += step) ctx.fillText(String(i), g.left - 4, g.top + cellStart(i, T, g.height) + 4);
    ctx.textBaseline = "top";
    ctx.textAlign = "center";
    for (let j = 0; j < S; j += step) ctx.fillText(String(j), g.left + cellStart(j, S, g.width) + 2, g.top + g.height + 4);
  }
  ctx.fillStyle = "#6b7280";
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  const colTitle = axes.colTitle ?? (showLabels ? "key token (looked at) →" : "key token position (looked at) →");
  const rowTitle = axes.rowTitle ?? (showLabels ? "query token (looking) →" : "query token position (looking) →");
  ctx.fillText(colTitle, g.left + g.width / 2, height - 2);
  ctx.save(); // read top to bottom, so the arrow points down the rows
  ctx.translate(4, g.top + g.height / 2);
  ctx.rotate(Math.PI / 2);
  ctx.fillText(rowTitle, 0, 0);
  ctx.restore();
}
