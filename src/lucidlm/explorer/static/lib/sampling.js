// Sampling in the browser: the same pipeline as Python's lucidlm/generate/sampling.py, so the
// explorer can move the temperature / top-k / top-p / min-p sliders over logits it already has,
// with no round trip to the server, and show exactly what `lucidlm generate` would draw from.
//
//   logits (V,) --temperature--> logits / T
//               --top-k-------> keep the k largest (exactly k: on ties the lower token ids win)
//               --top-p-------> keep tokens while the probability *before* each one is < p
//               --min-p-------> keep tokens with p >= min_p * p_max
//               --softmax-----> probabilities (V,), 0 where a filter dropped the token
//
// Temperature 0 is greedy: a one-hot on the argmax (the lowest index on ties, as torch.argmax).
// The penalties (repetition, frequency, presence) need the token history and are not here.
//
// Python computes in float32 and this file in float64: probabilities agree to ~1e-7, and only a
// token sitting exactly on a top-p or min-p threshold could be kept by one and dropped by the
// other. Notation: V vocabulary size.

/** Indices of the k largest values, largest first; on ties the lower index comes first (the
 * order of a stable descending sort, torch.sort(..., descending=True, stable=True)). */
function largestIndices(values, k) {
  const n = values.length;
  k = Math.max(0, Math.min(k, n));
  const cmp = (i, j) => (values[i] > values[j] ? -1 : values[i] < values[j] ? 1 : i - j);
  if (k * 8 >= n) { // a large share of the values: sort them all
    const all = Array.from({ length: n }, (_, i) => i);
    return all.sort(cmp).slice(0, k);
  }
  // A few of many (top 10 of a 50k vocabulary): keep a sorted list of the best k seen so far.
  // Most values lose to the current k-th and cost one comparison.
  const best = [];
  for (let i = 0; i < n; i++) {
    if (best.length === k && cmp(i, best[k - 1]) > 0) continue;
    let lo = 0;
    let hi = best.length;
    while (lo < hi) { // binary search for i's place
      const mid = (lo + hi) >> 1;
      if (cmp(best[mid], i) < 0) lo = mid + 1; else hi = mid;
    }
    best.splice(lo, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}

/**
 * softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x); subtracting the max keeps exp from
 * overflowing. -Infinity logits get probability 0.
 * @param {ArrayLike<number>} logits (V,)
 * @returns {Float64Array} (V,)
 * @throws {Error} when no logit is finite (nothing to normalise)
 * @example softmax([0, Math.log(3)]) // [0.25, 0.75]
 */
export function softmax(logits) {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  if (max === -Infinity) throw new Error("softmax: every logit is -Infinity, no token is left to sample");
  const probs = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp(logits[i] - max);
    sum += probs[i];
  }
  for (let i = 0; i < probs.length; i++) probs[i] /= sum;
  return probs;
}

function checkParams({ temperature, topK, topP, minP }) {
  const check = (name, value, ok, valid) => {
    if (!ok) throw new RangeError(`processLogits: ${name}=${value} is out of range; valid: ${valid}`);
  };
  check("temperature", temperature, Number.isFinite(temperature) && temperature >= 0, "a number >= 0 (0 = greedy)");
  check("topK", topK, Number.isInteger(topK) && topK >= 0, "an integer >= 0 (0 = off)");
  check("topP", topP, Number.isFinite(topP) && topP > 0 && topP <= 1, "0 < topP <= 1 (1 = off)");
  check("minP", minP, Number.isFinite(minP) && minP >= 0 && minP <= 1, "0 <= minP <= 1 (0 = off)");
}

/** Keep exactly the k largest logits (ties: lower ids win), the rest become -Infinity.
 * [2, 1, 1, 0], k = 2 -> [2, 1, -inf, -inf]. Changes x in place. */
function topKFilter(x, k) {
  if (k <= 0 || k >= x.length) return;
  const keep = new Uint8Array(x.length);
  for (const i of largestIndices(x, k)) keep[i] = 1;
  for (let i = 0; i < x.length; i++) if (!keep[i]) x[i] = -Infinity;
}

/** Nucleus (Holtzman et al. 2019): in order of probability, keep a token while the mass
 * *before* it is < p, so the kept set is the smallest whose total reaches p and the top token
 * always stays. probs [0.5, 0.3, 0.2], p = 0.7: mass before = [0, 0.5, 0.8] -> keep two.
 * A token whose mass-before equals p is dropped, and "equals" allows for rounding: 60 tied tokens
 * and p = 0.25 put 15 * (1/60) before the 16th, which float64 sums to 0.24999999999999997 (Python's
 * float32 happens to reach 0.25), so mass within 1e-12 of p counts as reaching it. Changes x in place. */
function topPFilter(x, p) {
  if (p >= 1) return;
  let finite = 0;
  for (let i = 0; i < x.length; i++) if (x[i] > -Infinity) finite++;
  const order = largestIndices(x, finite); // tokens still in, most likely first
  const probs = softmax(x);
  let before = 0; // probability mass ahead of the current token
  for (const i of order) {
    if (before >= p - 1e-12) x[i] = -Infinity;
    before += probs[i];
  }
}

/** Min-p (Nguyen et al. 2024): keep tokens with probability >= minP * (the top one's), a
 * threshold that scales with the model's confidence. Changes x in place. */
function minPFilter(x, minP) {
  if (minP <= 0) return;
  const probs = softmax(x);
  let maxProb = 0;
  for (let i = 0; i < probs.length; i++) if (probs[i] > maxProb) maxProb = probs[i];
  for (let i = 0; i < x.length; i++) if (probs[i] < minP * maxProb) x[i] = -Infinity;
}

/**
 * Raw next-token logits -> the distribution sampling draws from, as Python's
 * `sampling_probs(logits, SamplingParams(temperature, top_k, top_p, min_p))`.
 * @param {ArrayLike<number>} logits (V,) one position's logits; -Infinity marks a banned token
 * @param {{temperature?: number, topK?: number, topP?: number, minP?: number}} [params]
 *   defaults: temperature 1, topK 0 (off), topP 1 (off), minP 0 (off)
 * @returns {Float64Array} (V,) probabilities summing to 1, 0 for filtered tokens; with
 *   temperature 0 a one-hot on the argmax (the lowest index on ties)
 * @throws {RangeError} on a parameter out of range; {Error} on NaN/+Infinity logits or when
 *   every logit is -Infinity
 * @example processLogits([1, 2, 3], {temperature: 0}) // [0, 0, 1]
 */
export function processLogits(logits, { temperature = 1, topK = 0, topP = 1, minP = 0 } = {}) {
  checkParams({ temperature, topK, topP, minP });
  const x = Float64Array.from(logits);
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]) || x[i] === Infinity) {
      throw new Error(`processLogits: logit ${i} is ${x[i]}; the model's output is broken (NaN or overflow)`);
    }
  }
  if (temperature === 0) { // greedy: the first maximum, as torch.argmax
    let best = 0;
    for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
    if (!(x[best] > -Infinity)) throw new Error("processLogits: no finite logit (empty, or every one -Infinity)");
    const oneHot = new Float64Array(x.length);
    oneHot[best] = 1;
    return oneHot;
  }
  if (temperature !== 1) for (let i = 0; i < x.length; i++) x[i] /= temperature;
  topKFilter(x, topK);
  topPFilter(x, topP);
  minPFilter(x, minP);
  return softmax(x);
}

/**
 * The k most likely tokens, most likely first (ties: the lower index first). Returns
 * min(k, V) entries, including zero-probability ones when fewer than k are nonzero.
 * @param {ArrayLike<number>} probs (V,)
 * @param {number} k
 * @returns {{index: number, p: number}[]}
 * @example topK([0.1, 0.6, 0.3], 2) // [{index: 1, p: 0.6}, {index: 2, p: 0.3}]
 */
export function topK(probs, k) {
  return largestIndices(probs, k).map((index) => ({ index, p: probs[index] }));
}

/**
 * A small seeded random number generator (mulberry32, by Tommy Ettinger): same seed, same
 * sequence, in every browser and in Node. Not for cryptography. (Python draws with torch's
 * generator, so a seed here does not reproduce the tokens Python draws.)
 * @param {number} seed taken as a 32-bit unsigned integer
 * @returns {() => number} a function returning floats in [0, 1)
 */
export function mulberry32(seed) {
  let state = seed >>> 0;
  return function next() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296; // / 2^32
  };
}

/**
 * Draw one index with probability proportional to probs[i] (inverse CDF: the first index where
 * the running sum passes u * total). Zero-probability tokens are never drawn.
 * @param {ArrayLike<number>} probs (V,) nonnegative weights; they need not sum to exactly 1
 * @param {() => number} [rng] floats in [0, 1), e.g. mulberry32(seed); default Math.random
 * @returns {number} the index drawn
 * @throws {Error} when no weight is positive
 */
export function sampleIndex(probs, rng = Math.random) {
  let total = 0;
  for (let i = 0; i < probs.length; i++) total += probs[i];
  if (!(total > 0)) throw new Error("sampleIndex: no token has a positive probability");
  const u = rng() * total;
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] > 0) {
      cumulative += probs[i];
      last = i;
      if (u < cumulative) return i;
    }
  }
  return last; // u landed past the end by rounding: the last possible token
}
