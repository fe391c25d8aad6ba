// The tree of continuations the Next-token panel grows: the prompt is the root, each generated
// token a node, and picking a different token somewhere starts a new branch beside the old one
// (nothing is thrown away, so a student can compare "Paris." with "the city of...").
//
//   root (the prompt)
//   ├─ " Paris" ─ "." ─ " It"          <- one branch: its path is [Paris, ., It]
//   └─ " the" ─ " city"                <- a second branch, from the same point
//
// A node is {id, parent, token, p, children}: `token` the token id it adds (null at the root),
// `p` the probability the model gave it where it was drawn, `children` the ids of its children.
// The tree is a plain object {nodes: [...]} with node ids as indices, so it is easy to inspect
// and to test; every function here is pure apart from addChild, which appends to it.

/**
 * A tree holding only the root (the prompt).
 * @returns {{nodes: {id: number, parent: number|null, token: number|null, p: number|null, children: number[]}[]}}
 */
export function createTree() {
  return { nodes: [{ id: 0, parent: null, token: null, p: null, children: [] }] };
}

/** The node with this id; a RangeError for an id the tree does not have. */
export function getNode(tree, id) {
  const node = tree.nodes[id];
  if (node === undefined) throw new RangeError(`tree: no node ${id} (the tree has ${tree.nodes.length})`);
  return node;
}

/**
 * Add `token` as a child of node `parentId` and return the child. When the parent already has a
 * child with that token, that child is returned instead (the same continuation is one branch,
 * not two), and its `p` is kept.
 * @example
 *   const t = createTree();
 *   addChild(t, 0, 7042, 0.77);   // {id: 1, parent: 0, token: 7042, p: 0.77, children: []}
 *   addChild(t, 0, 7042, 0.77);   // the same node 1
 */
export function addChild(tree, parentId, token, p) {
  const parent = getNode(tree, parentId);
  for (const childId of parent.children) {
    if (tree.nodes[childId].token === token) return tree.nodes[childId];
  }
  const node = { id: tree.nodes.length, parent: parentId, token, p, children: [] };
  tree.nodes.push(node);
  parent.children.push(node.id);
  return node;
}

/**
 * The nodes from the root's first child down to `id` (the root itself is not included).
 * @example for the tree above, nodesTo(tree, <id of "It">) -> [Paris, ., It] (nodes)
 */
export function nodesTo(tree, id) {
  const path = [];
  for (let node = getNode(tree, id); node.parent !== null; node = tree.nodes[node.parent]) path.push(node);
  return path.reverse();
}

/**
 * The token ids the branch ending at node `id` adds after the prompt.
 * @example pathTo(tree, <id of "It">) -> [7042, 13, 657]
 */
export function pathTo(tree, id) {
  return nodesTo(tree, id).map((node) => node.token);
}

/** The nodes with no children, in depth-first order (the root alone is no branch: []). */
export function leaves(tree) {
  const out = [];
  const visit = (node) => {
    if (node.children.length === 0) {
      if (node.parent !== null) out.push(node);
    } else {
      for (const childId of node.children) visit(tree.nodes[childId]);
    }
  };
  visit(tree.nodes[0]);
  return out;
}

/**
 * Every branch: for each leaf, its id and the token ids from the prompt to it.
 * @returns {{leaf: number, ids: number[]}[]}
 */
export function branches(tree) {
  return leaves(tree).map((leaf) => ({ leaf: leaf.id, ids: pathTo(tree, leaf.id) }));
}

/** True when node `a` is `b` or one of its ancestors (so `b`'s branch goes through `a`). */
export function isOnPath(tree, a, b) {
  for (let node = getNode(tree, b); node !== undefined; node = tree.nodes[node.parent]) {
    if (node.id === a) return true;
    if (node.parent === null) break;
  }
  return false;
}

/**
 * The tree cut into chains for drawing it as an indented list: a chain starts at a child of the
 * root or of a node with several children, and goes on while each node has exactly one child.
 * Chains come in depth-first order; `depth` is how many branch points lie above the chain, and
 * `leaf` tells whether the chain ends a branch.
 * @returns {{depth: number, nodes: object[], leaf: boolean}[]}
 * @example the tree above -> [{depth: 0, nodes: [Paris, ., It], leaf: true},
 *                             {depth: 0, nodes: [the, city], leaf: true}]
 */
export function chains(tree) {
  const out = [];
  const startChain = (node, depth) => {
    const nodes = [node];
    while (node.children.length === 1) {
      node = tree.nodes[node.children[0]];
      nodes.push(node);
    }
    out.push({ depth, nodes, leaf: node.children.length === 0 });
    for (const childId of node.children) startChain(tree.nodes[childId], depth + 1);
  };
  for (const childId of tree.nodes[0].children) startChain(tree.nodes[childId], 0);
  return out;
}
