"""The Cross-attention panel's numbers: where an encoder-decoder looks in its source while it
writes each character of its answer.

    output  = translate(model, vocab, [source], beam)        greedy or beam search (generate/seq2seq_decode.py)
    weights = cross_attention(model, vocab, source, output)  every decoder block's cross-attention
                                                             over the source, (L, nh, T, S), rows sum to 1
                                                             (inspection/seq2seq_attention.py)

Rows are the answer's characters and its <eos> (row t: the query that wrote character t), columns
the source's characters and its <eos>. Examples come from the task's own held-out test split (the
first ones `lucidlm seq2seq eval` scores), so the panel can say whether the answer is right.
"""

from __future__ import annotations

from pathlib import Path

from lucidlm.data.seq2seq_tasks import make_splits
from lucidlm.explorer.forward import tensor_json
from lucidlm.inspection.seq2seq_attention import cross_attention
from lucidlm.train.seq2seq import SEQ2SEQ_FILE

MAX_SOURCE_CHARS = 200  # a request's source text, before the model's own context limit
N_EXAMPLES = 8  # held-out examples offered per split


def is_seq2seq_checkpoint(path: Path) -> bool:
    """A checkpoint ``lucidlm seq2seq train`` wrote (or its run directory, which holds ``best/``)."""
    return (path / SEQ2SEQ_FILE).is_file() or (path / "best" / SEQ2SEQ_FILE).is_file()


def examples(task, n: int = N_EXAMPLES) -> list[dict]:
    """The first ``n`` held-out test examples (and of the "extra" split, where the task has one:
    addition with one more digit than training saw), each {split, source, target}."""
    splits = make_splits(task, n_test=n, n_valid=0, n_extra=n)
    out = [{"split": "test", "source": e.source, "target": e.target} for e in splits.test]
    return out + [{"split": "extra", "source": e.source, "target": e.target} for e in splits.extra]


def alignment_json(model, task, vocab, text: str, *, beam: int = 1) -> dict:
    """The model's answer to ``text`` and every block's cross-attention while writing it."""
    if not isinstance(text, str) or not text:
        raise ValueError("type a source text: the model translates it and shows where it looked")
    if len(text) > MAX_SOURCE_CHARS:
        raise ValueError(f"the source is {len(text)} characters; at most {MAX_SOURCE_CHARS}")
    if len(text) + 1 > model.cfg.max_seq_len:  # + <eos>
        raise ValueError(f"the source is {len(text)} characters; this model reads at most "
                         f"{model.cfg.max_seq_len - 1} (its max_seq_len is {model.cfg.max_seq_len}, with <eos>)")
    if beam not in (1, 2, 4, 8):
        raise ValueError(f"beam={beam}: choose 1 (greedy), 2, 4 or 8")
    a = cross_attention(model, vocab, text, beam=beam)
    L, nh, T, S = a.weights.shape
    return {"task": task.name, "source": text, "output": a.output, "beam": beam,
            "source_tokens": a.source_tokens, "output_tokens": a.output_tokens,
            "n_layer": L, "n_head": nh, "weights": tensor_json(a.weights, "float32")}
