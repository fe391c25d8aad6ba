"""Each walkthrough stage's equation as MathML (Chromium and Firefox draw it natively, no script
needed), adapted to the model at hand as ``inspection.walkthrough.stage_equations`` adapts its
one-line text: RMSNorm or LayerNorm, RoPE or learned positions, SwiGLU or a plain MLP, GQA,
post-norm (BERT), causal or bidirectional attention.

The builders below (``mi``, ``frac``, ...) are MathML's own element names, one function each.
"""

from __future__ import annotations

from html import escape


def mi(x: str) -> str:  # an identifier (italic when one letter)
    return f"<mi>{escape(x)}</mi>"


def mo(x: str) -> str:  # an operator
    return f"<mo>{escape(x)}</mo>"


def mn(x: str) -> str:  # a number
    return f"<mn>{escape(x)}</mn>"


def mtext(x: str) -> str:
    return f"<mtext>{escape(x)}</mtext>"


def space() -> str:  # MathML drops the spaces at the ends of an <mtext>: a gap is an <mspace>
    return '<mspace width="0.6em"/>'


def row(*parts: str) -> str:
    return "<mrow>" + "".join(parts) + "</mrow>"


def sub(base: str, script: str) -> str:
    return f"<msub>{base}{script}</msub>"


def sup(base: str, script: str) -> str:
    return f"<msup>{base}{script}</msup>"


def frac(num: str, den: str) -> str:
    return f"<mfrac>{num}{den}</mfrac>"


def sqrt(x: str) -> str:
    return f"<msqrt>{x}</msqrt>"


def fn(name: str, *args: str) -> str:
    """name(arg, arg) with the name upright."""
    inner = mo(",").join(args)
    return row(f'<mi mathvariant="normal">{escape(name)}</mi>', mo("("), inner, mo(")"))


def math(*parts: str) -> str:
    return '<math display="block">' + "".join(parts) + "</math>"


def W(name: str) -> str:
    return sub(mi("W"), mi(name))


def eq(lhs: str, *rhs: str) -> str:
    return math(lhs, mo("="), *rhs)


def equations_for(cfg) -> dict[str, str]:
    """Stage name (as in ``Trace``, without ``layers.{i}.``) -> its equation as MathML."""
    x, h, q, k, v, s, a = (mi(c) for c in "xhqkvsa")
    pre = cfg.norm_placement == "pre"
    src = h if pre else x  # what the block's projections read: the normed copy (pre-norm) or x itself
    if cfg.norm == "rmsnorm":
        norm = row(frac(x, sqrt(row(fn("mean", sup(x, mn("2"))), mo("+"), mi("ε")))), mo("⊙"), mi("g"))
    else:
        norm = row(frac(row(x, mo("−"), fn("mean", x)), sqrt(row(fn("var", x), mo("+"), mi("ε")))), mo("⊙"),
                   mi("g"), mo("+"), mi("b"))
    rope = cfg.positions == "rope"
    d = sub(mi("d"), mtext("head"))
    e = {
        "embed.tokens": eq(x, sub(sub(mi("W"), mi("E")), row(mo("["), mtext("ids"), mo("]")))),
        "embed.positions": eq(mi("p"), sub(sub(mi("W"), mi("P")), row(mo("["), mtext("pos"), mo("]"))))
        if cfg.positions == "learned" else eq(sub(mi("p"), row(mtext("pos"), mo(","), mn("2i"))),
                                             fn("sin", frac(mtext("pos"), sup(mn("10000"), frac(mn("2i"), mi("d")))))),
        "embed.token_types": eq(mi("t"), sub(sub(mi("W"), mi("T")), row(mo("["), mtext("segment"), mo("]")))),
        "embed.out": eq(x, mtext("tokens") if cfg.positions in ("rope", "none") and not cfg.type_vocab_size
                        else row(mtext("tokens"), mo("+"), mtext("positions"))),
        "attn.norm": eq(h, norm),
        "mlp.norm": eq(h, norm),
        "final_norm": eq(mi("y"), norm),
        "attn.q": eq(q, fn("RoPE", row(src, W("q")), mtext("pos")) if rope else row(src, W("q"))),
        "attn.k": eq(k, fn("RoPE", row(src, W("k")), mtext("pos")) if rope else row(src, W("k"))),
        "attn.v": eq(v, row(src, W("v"))),
        "attn.scores": eq(s, frac(row(q, sup(k, mi("T"))), sqrt(d))),
        "attn.scores_masked": eq(s, row(s, mo("+"), mi("M")), mo(","), space(),
                                 row(sub(mi("M"), mi("ij")), mo("="), mo("−∞"), space(), mtext("if j > i (causal)")))
        if cfg.arch != "encoder" else eq(s, row(s, space(), mtext("(no causal mask: every token sees every token)"))),
        "attn.weights": eq(sub(a, mi("ij")), frac(sup(mi("e"), sub(s, mi("ij"))),
                                                  row(sub(mo("∑"), mi("j′")), sup(mi("e"), sub(s, mi("ij′")))))),
        "attn.heads_out": eq(mi("o"), fn("concat", sub(row(a, v), mn("1")), mo("…"), sub(row(a, v), mi("nh")))),
        "attn.out": eq(mtext("attn"), row(mi("o"), W("o"))),
        "attn.resid": eq(x, row(x, mo("+"), mtext("attn"))) if pre
        else eq(x, fn("LayerNorm", row(x, mo("+"), mtext("attn")))),
        "mlp.resid": eq(x, row(x, mo("+"), mtext("mlp"))) if pre
        else eq(x, fn("LayerNorm", row(x, mo("+"), mtext("mlp")))),
        "logits": eq(mtext("logits"), row(mi("y"), sup(sub(mi("W"), mi("E")), mi("T")))),
        "hidden": eq(mi("H"), row(x, space(), mtext("after the last block: one vector per token"))),
    }
    if cfg.embed_norm:  # BERT: the sum of the three embeddings is normalised before the first block
        e["embed.out"] = eq(x, fn("LayerNorm", row(mtext("tokens"), mo("+"), mtext("positions"), mo("+"),
                                                   mtext("segments"))))
    if cfg.mlp == "swiglu":
        e["mlp.pre_act"] = eq(mi("g"), row(src, W("gate")))
        e["mlp.act"] = eq(mi("u"), row(fn(cfg.activation, mi("g")), mo("⊙"), row(mo("("), src, W("up"), mo(")"))))
        e["mlp.out"] = eq(mtext("mlp"), row(mi("u"), W("down")))
    else:
        e["mlp.pre_act"] = eq(mi("g"), row(src, sub(mi("W"), mn("1")), mo("+"), sub(mi("b"), mn("1"))))
        e["mlp.act"] = eq(mi("u"), fn(cfg.activation, mi("g")))
        e["mlp.out"] = eq(mtext("mlp"), row(mi("u"), sub(mi("W"), mn("2")), mo("+"), sub(mi("b"), mn("2"))))
    return e
