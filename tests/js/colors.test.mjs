// viridis, tokenColor, probColor.
import assert from "node:assert/strict";
import { test } from "node:test";

import { probColor, tokenColor, viridis, viridisRGB } from "../../src/lucidlm/explorer/static/lib/colors.js";

test("viridis ends on its known colours", () => {
  assert.equal(viridis(0), "rgb(68,1,84)"); // #440154
  assert.equal(viridis(1), "rgb(253,231,37)"); // #fde725
  assert.deepEqual(viridisRGB(-3), [68, 1, 84]); // clamped
  assert.deepEqual(viridisRGB(7), [253, 231, 37]);
  assert.deepEqual(viridisRGB(NaN), [128, 128, 128]);
});

test("viridis in between is close to matplotlib's table", () => {
  // matplotlib: viridis(0.5) = #21918c, viridis(0.25) = #3b528b (the 64th of 256 entries, t = 64/255)
  const close = (got, want) => got.every((c, i) => Math.abs(c - want[i]) <= 2);
  assert.ok(close(viridisRGB(0.5), [0x21, 0x91, 0x8c]), String(viridisRGB(0.5)));
  assert.ok(close(viridisRGB(64 / 255), [0x3b, 0x52, 0x8b]), String(viridisRGB(64 / 255)));
});

/** WCAG relative luminance of "#rrggbb". */
function luminance(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

test("tokenColor cycles through 8 distinct light colours", () => {
  const colors = Array.from({ length: 8 }, (_, i) => tokenColor(i));
  assert.equal(new Set(colors).size, 8);
  assert.equal(tokenColor(8), tokenColor(0));
  assert.equal(tokenColor(-1), tokenColor(7));
  for (const c of colors) {
    // black text on it has a contrast ratio of at least 7:1 (WCAG AAA)
    assert.ok((luminance(c) + 0.05) / 0.05 >= 7, `${c} is too dark for black text`);
  }
});

test("probColor runs from red to green", () => {
  assert.equal(probColor(0), "hsl(0, 65%, 80%)");
  assert.equal(probColor(0.5), "hsl(60, 65%, 80%)");
  assert.equal(probColor(1), "hsl(120, 65%, 80%)");
  assert.equal(probColor(2), probColor(1));
  assert.equal(probColor(NaN), "hsl(0, 0%, 80%)");
});
