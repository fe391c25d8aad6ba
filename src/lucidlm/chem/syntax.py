"""Syntax-constrained sampling: never draw a token that makes the SMILES certainly unparsable.

A free sampler draws each token from the model's distribution; a SMILES written that way can end
with a ring left open ("C1CC") or a branch never closed ("CC(C"), and RDKit rejects it. A
constrained sampler keeps, for each row, the little state a SMILES parser keeps (how deep in
branches it is, which ring labels are open, what kind of token came last) and, before each draw,
sets the logits of the tokens that would break the syntax to -inf. The model's distribution is
renormalised over what is left. The same idea makes an LLM write valid JSON (grammar-constrained
decoding in llama.cpp, Outlines, vLLM): the grammar decides what may come next, the model decides
which of those.

The rules, each checked against RDKit (``tests/test_chem_syntax.py``), follow the OpenSMILES
grammar; only what certainly fails is forbidden, so no valid string is ever ruled out:

    after          may come                              not
    <bos>, "."     an atom                               bond, ring label, ( ) . <eos>
    "("            an atom or a bond                     ring label, ( ) . <eos>
    a bond         an atom; a ring label unless the      ( ) . <eos>
                   bond opened a branch ("C(=1" fails)
    atom, ring     anything else                         ")" outside a branch; <eos> inside a
    label, ")"                                           branch or with a ring label open
    and a ring label may not close onto its own atom ("C11") or onto an atom already bonded to
    this one ("C1C1", "C12CC12": a second bond between the same two atoms).

What syntax cannot see stays the model's job: aromatic rings RDKit cannot kekulize and atoms
over their valence (about half of the CPU recipe's invalid molecules) are still drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

BONDS = frozenset("-=#$:/\\~")
_WORDLESS = frozenset("+@?>")  # only meaningful inside [brackets]: never valid as a token of their own


def token_kind(token: str) -> str:
    """What a vocabulary entry is to the grammar: "atom", "bond", "ring", "open", "close", "dot",
    "special" (<bos>, <eos>, <pad>, a condition token) or "bad" (a character that is no SMILES
    token on its own, such as "+" outside brackets)."""
    if token.startswith("<") and token.endswith(">"):
        return "special"
    if token == "(":
        return "open"
    if token == ")":
        return "close"
    if token == ".":
        return "dot"
    if token in BONDS:
        return "bond"
    if token.isdigit() or (token.startswith("%") and token[1:].isdigit()):
        return "ring"
    if token in _WORDLESS:
        return "bad"
    return "atom"


@dataclass
class _Row:
    """One SMILES being written: the parser's state after its tokens so far."""

    last: str = "start"  # kind of the last token: start, atom, bond, branch_bond, ring, open, close, dot
    atoms: int = 0  # atoms written
    current: int = -1  # the atom the next atom or ring label attaches to
    branch_points: list[int] = field(default_factory=list)  # a stack: the atom each open "(" returns to
    rings: dict[str, int] = field(default_factory=dict)  # open ring label -> the atom that opened it
    neighbours: list[set[int]] = field(default_factory=list)  # each atom's bonded atoms so far

    def push(self, token: str, kind: str) -> None:
        if kind == "atom":
            self.neighbours.append(set())
            if self.last not in ("start", "dot"):  # bonded to the atom before it (or the branch point)
                self._bond(self.current, self.atoms)
            self.current, self.atoms = self.atoms, self.atoms + 1
        elif kind == "ring":
            if token in self.rings:  # closes the ring: a bond to the atom that opened it
                self._bond(self.rings.pop(token), self.current)
            else:
                self.rings[token] = self.current
        elif kind == "open":
            self.branch_points.append(self.current)
        elif kind == "close":
            self.current = self.branch_points.pop()
        if kind == "bond" and self.last == "open":
            kind = "branch_bond"
        self.last = kind

    def _bond(self, a: int, b: int) -> None:
        self.neighbours[a].add(b)
        self.neighbours[b].add(a)

    def can_close(self, label: str) -> bool:
        opener = self.rings[label]
        return opener != self.current and opener not in self.neighbours[self.current]


class SmilesSyntax:
    """The constraint for one vocabulary: ``mask(rows)`` (B, V) says which tokens each row may
    draw next; ``push(rows, tokens)`` moves each row's state on. A row is created by ``start(B)``.

    >>> syntax = SmilesSyntax(["<pad>", "<bos>", "<eos>", "C", "(", ")", "1"], eos_id=2)
    >>> rows = syntax.start(1)
    >>> syntax.push(rows, [3]); syntax.push(rows, [6])      # "C1"
    >>> [syntax.vocab[i] for i in syntax.mask(rows)[0].nonzero().flatten().tolist()]
    ['C', '(']
    """

    def __init__(self, vocab: Sequence[str], eos_id: int) -> None:
        self.vocab = list(vocab)
        self.eos_id = eos_id
        self.kinds = [token_kind(t) for t in self.vocab]
        V = len(self.vocab)

        def ids(*kinds: str) -> torch.Tensor:
            out = torch.zeros(V, dtype=torch.bool)
            out[[i for i, k in enumerate(self.kinds) if k in kinds]] = True
            return out

        atom, bond = ids("atom"), ids("bond")
        anything = ids("atom", "bond", "ring", "open", "dot")  # ")" and <eos> are decided per row
        self._allowed = {"start": atom, "dot": atom, "open": atom | bond, "branch_bond": atom,
                         "bond": atom | ids("ring"), "atom": anything, "ring": anything, "close": anything}
        self._close = [i for i, k in enumerate(self.kinds) if k == "close"]
        self._rings = [(i, t) for i, (t, k) in enumerate(zip(self.vocab, self.kinds)) if k == "ring"]

    def start(self, B: int) -> list[_Row]:
        return [_Row() for _ in range(B)]

    def mask(self, rows: Sequence[_Row]) -> torch.Tensor:
        """(B, V) True where a row may draw the token."""
        out = torch.stack([self._allowed[row.last] for row in rows])  # (B, V)
        for b, row in enumerate(rows):
            if row.last in ("atom", "ring", "close"):
                if row.branch_points:
                    out[b, self._close] = True
                elif not row.rings:
                    out[b, self.eos_id] = True
            if row.last != "branch_bond":  # a ring label may follow; may it close what it names?
                for i, label in self._rings:
                    if label in row.rings and not row.can_close(label):
                        out[b, i] = False
        return out

    def push(self, rows: Sequence[_Row], tokens: Sequence[int]) -> None:
        for row, t in zip(rows, tokens):
            if t != self.eos_id:
                row.push(self.vocab[t], self.kinds[t])
