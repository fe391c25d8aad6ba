// panels/molecules.js: the card's summary numbers, by hand.
import assert from "node:assert/strict";
import { test } from "node:test";

import { geometricMean, leastLikely } from "../../src/lucidlm/explorer/static/panels/molecules.js";

test("geometricMean is exp of the mean log: the typical probability of a molecule's tokens", () => {
  assert.equal(geometricMean([0.5, 0.5]), 0.5);
  assert.ok(Math.abs(geometricMean([0.25, 1]) - 0.5) < 1e-12); // sqrt(0.25 * 1)
  assert.ok(Number.isNaN(geometricMean([])));
});

test("leastLikely finds the token the model was least sure of, the first on a tie", () => {
  assert.deepEqual(leastLikely([{ p: 0.9 }, { p: 0.2 }, { p: 0.5 }]), { index: 1, p: 0.2 });
  assert.deepEqual(leastLikely([{ p: 0.3 }, { p: 0.3 }]), { index: 0, p: 0.3 });
  assert.equal(leastLikely([]), null);
});
