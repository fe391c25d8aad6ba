// The tree of continuations (static/lib/tree.js): hand-built trees, checked node by node.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  addChild, branches, chains, createTree, getNode, isOnPath, leaves, nodesTo, pathTo,
} from "../../src/lucidlm/explorer/static/lib/tree.js";

/** root ─ 10 ─ 11 ─ 12
 *        └─ 20 ─ 21
 *              └─ 22          (the branch point is the node of token 20) */
function example() {
  const t = createTree();
  const a = addChild(t, 0, 10, 0.5);
  const b = addChild(t, a.id, 11, 0.4);
  const c = addChild(t, b.id, 12, 0.3);
  const d = addChild(t, 0, 20, 0.2);
  const e = addChild(t, d.id, 21, 0.6);
  const f = addChild(t, d.id, 22, 0.1);
  return { t, a, b, c, d, e, f };
}

test("a new tree is the root alone: no branches yet", () => {
  const t = createTree();
  assert.deepEqual(t.nodes, [{ id: 0, parent: null, token: null, p: null, children: [] }]);
  assert.deepEqual(leaves(t), []);
  assert.deepEqual(branches(t), []);
  assert.deepEqual(chains(t), []);
  assert.deepEqual(pathTo(t, 0), []);
});

test("addChild numbers nodes in order and links both ways", () => {
  const { t, a, b, d } = example();
  assert.deepEqual([a.id, b.id, d.id], [1, 2, 4]);
  assert.deepEqual(getNode(t, 0).children, [1, 4]);
  assert.equal(b.parent, a.id);
  assert.equal(b.p, 0.4);
});

test("adding a token a node already has returns that child: one branch, not two", () => {
  const { t, a } = example();
  const again = addChild(t, 0, 10, 0.99);
  assert.equal(again, a);
  assert.equal(again.p, 0.5, "the first p is kept");
  assert.equal(t.nodes.length, 7);
});

test("pathTo and nodesTo walk from the prompt down to a node", () => {
  const { t, c, f } = example();
  assert.deepEqual(pathTo(t, c.id), [10, 11, 12]);
  assert.deepEqual(pathTo(t, f.id), [20, 22]);
  assert.deepEqual(nodesTo(t, f.id).map((n) => n.id), [4, 6]);
});

test("leaves and branches: one per leaf, depth first", () => {
  const { t } = example();
  assert.deepEqual(leaves(t).map((n) => n.token), [12, 21, 22]);
  assert.deepEqual(branches(t), [
    { leaf: 3, ids: [10, 11, 12] }, { leaf: 5, ids: [20, 21] }, { leaf: 6, ids: [20, 22] },
  ]);
});

test("isOnPath: a node is on the branches below it", () => {
  const { t, a, c, d, f } = example();
  assert.ok(isOnPath(t, a.id, c.id));
  assert.ok(isOnPath(t, c.id, c.id));
  assert.ok(isOnPath(t, 0, f.id));
  assert.ok(!isOnPath(t, a.id, f.id));
  assert.ok(!isOnPath(t, c.id, a.id), "a descendant is not on its ancestor's path");
  assert.ok(isOnPath(t, d.id, f.id));
});

test("chains: runs of single children, indented below each branch point", () => {
  const { t } = example();
  const got = chains(t).map((ch) => ({ depth: ch.depth, tokens: ch.nodes.map((n) => n.token), leaf: ch.leaf }));
  assert.deepEqual(got, [
    { depth: 0, tokens: [10, 11, 12], leaf: true },
    { depth: 0, tokens: [20], leaf: false },
    { depth: 1, tokens: [21], leaf: true },
    { depth: 1, tokens: [22], leaf: true },
  ]);
});

test("an unknown node id is a RangeError that names it", () => {
  const { t } = example();
  assert.throws(() => addChild(t, 99, 1, 0.1), /no node 99/);
  assert.throws(() => pathTo(t, -1), RangeError);
});
