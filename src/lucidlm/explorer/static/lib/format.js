// Numbers as the explorer shows them: probabilities as percentages, activations and weights with
// four significant digits and a sign, shapes as Python prints them.

/**
 * A probability as a percentage with one decimal. The ends are kept honest: a tiny but nonzero
 * probability reads "<0.1%" (not "0.0%", which would mean the token cannot be drawn) and one just
 * short of certain reads ">99.9%".
 * @param {number} p in [0, 1]
 * @returns {string} e.g. fmtProb(0.1234) === "12.3%", fmtProb(0) === "0%", fmtProb(1) === "100%"
 */
export function fmtProb(p) {
  if (Number.isNaN(p)) return "NaN";
  if (p === 0) return "0%";
  if (p === 1) return "100%";
  if (p > 0 && p < 0.001) return "<0.1%";
  if (p > 0.999 && p < 1) return ">99.9%";
  return `${(100 * p).toFixed(1)}%`;
}

/** "1.500" -> "1.5", "2.000" -> "2", "1200" unchanged (only zeros after a decimal point go). */
function trimZeros(digits) {
  return digits.includes(".") ? digits.replace(/\.?0+$/, "") : digits;
}

/**
 * A number with 4 significant digits and an explicit sign, in plain notation from 0.001 up to
 * 9999 and in scientific notation outside it; trailing zeros dropped.
 * @param {number} x
 * @returns {string} e.g. "+0.123", "-1.23e-5", "+1.235e4", "0", "+inf", "NaN"
 */
export function fmtNum(x) {
  if (Number.isNaN(x)) return "NaN";
  if (x === 0) return "0"; // -0 too
  const sign = x < 0 ? "-" : "+";
  const abs = Math.abs(x);
  if (abs === Infinity) return `${sign}inf`;
  const rounded = Number(abs.toPrecision(4)); // decide the notation after rounding: 9999.7 -> 1e4
  if (rounded >= 1e-3 && rounded < 1e4) return sign + trimZeros(rounded.toPrecision(4));
  const [mantissa, exponent] = abs.toExponential(3).split("e"); // "1.230e-5" -> ["1.230", "-5"]
  return `${sign}${trimZeros(mantissa)}e${Number(exponent)}`;
}

/**
 * A tensor shape as Python prints a tuple.
 * @param {number[]} shape
 * @returns {string} e.g. fmtShape([1, 9, 12, 64]) === "(1, 9, 12, 64)", [5] -> "(5,)", [] -> "()"
 */
export function fmtShape(shape) {
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
}

/** An attention weight as the readouts show it: 3 decimals, or 2 significant digits when smaller.
 * @example fmtWeight(0.12345) // "0.123" */
export function fmtWeight(w) {
  if (w === 0) return "0";
  return w >= 0.001 ? w.toFixed(3) : w.toExponential(1);
}
