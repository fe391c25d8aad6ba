// Colours for the explorer: viridis for heatmaps (attention, activations), a pastel palette for
// token spans, and a red -> green scale for a token's probability.

// Viridis (van der Walt and Smith, matplotlib's default colormap): perceptually uniform, readable
// in greyscale and by most colour-blind viewers. 16 anchors at t = 0, 1/15, ..., 1, sampled from
// matplotlib's table and rounded to 0..255; linear interpolation between them stays within 7 units
// (of 255) of the full 256-entry table, which the eye does not tell apart in a heatmap.
const VIRIDIS = [
  [68, 1, 84], [72, 26, 108], [71, 47, 125], [65, 68, 135],
  [57, 86, 140], [49, 104, 142], [42, 120, 142], [35, 136, 142],
  [31, 152, 139], [34, 168, 132], [53, 183, 121], [84, 197, 104],
  [122, 209, 81], [165, 219, 54], [210, 226, 27], [253, 231, 37],
];

/** Grey for a value that is not a number (a NaN in a heatmap should stand out, not look like 0). */
const NAN_RGB = [128, 128, 128];

/**
 * Viridis as integers, for filling canvas ImageData without parsing colour strings.
 * t is clamped to [0, 1]; NaN gives grey.
 * @param {number} t 0 -> dark purple (#440154), 1 -> yellow (#fde725)
 * @returns {[number, number, number]} r, g, b in 0..255
 */
export function viridisRGB(t) {
  if (Number.isNaN(t)) return [...NAN_RGB];
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1); // position in anchor units
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2); // left anchor; t = 1 uses the last pair
  const f = x - i; // 0..1 between anchor i and i + 1
  const a = VIRIDIS[i];
  const b = VIRIDIS[i + 1];
  return [0, 1, 2].map((c) => Math.round(a[c] + f * (b[c] - a[c])));
}

/**
 * Viridis as a CSS colour.
 * @param {number} t in [0, 1] (clamped; NaN gives grey)
 * @returns {string} e.g. viridis(0) === "rgb(68,1,84)"
 */
export function viridis(t) {
  const [r, g, b] = viridisRGB(t);
  return `rgb(${r},${g},${b})`;
}

// Paul Tol's "light" qualitative scheme (https://personal.sron.nl/~pault/), made to sit behind
// black text and to stay distinct for colour-blind readers; ordered so that neighbours differ in
// hue and lightness (consecutive tokens get consecutive colours).
const TOKEN_COLORS = [
  "#77aadd", // light blue
  "#ee8866", // orange
  "#bbcc33", // pear
  "#ffaabb", // pink
  "#99ddff", // light cyan
  "#eedd88", // light yellow
  "#44bb99", // mint
  "#aaaa00", // olive
];

/**
 * Background colour of the i-th token span; cycles through 8 pastel colours.
 * @param {number} i token position (any integer; negative ones wrap too)
 * @returns {string} a CSS hex colour
 */
export function tokenColor(i) {
  const n = TOKEN_COLORS.length;
  return TOKEN_COLORS[((Math.trunc(i) % n) + n) % n];
}

/**
 * Background colour for a token by its probability: hue from red (p = 0) through yellow to green
 * (p = 1), pale (lightness 80%) so black text stays readable. p is clamped to [0, 1]; NaN gives grey.
 * @param {number} p probability
 * @returns {string} a CSS hsl() colour, e.g. probColor(1) === "hsl(120, 65%, 80%)"
 */
export function probColor(p) {
  if (Number.isNaN(p)) return "hsl(0, 0%, 80%)";
  const hue = Math.round(120 * Math.min(Math.max(p, 0), 1));
  return `hsl(${hue}, 65%, 80%)`;
}
