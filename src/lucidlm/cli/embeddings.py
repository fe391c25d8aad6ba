"""``lucidlm embed search | encode``. Kept apart from ``search.py`` so that building the command
line parser imports neither torch nor the model."""

from __future__ import annotations

import json

from lucidlm.cli.args import positive_int

DEFAULT_MODEL = "all-minilm-l6-v2"  # lucidlm.embeddings.DEFAULT_MODEL (not imported: it loads torch)


def cmd_search(args) -> int:
    from lucidlm.embeddings.search import search_file

    hits = search_file(args.corpus, args.query, top=args.top, model=args.model, batch_size=args.batch_size,
                       max_length=args.max_length, cache=not args.no_cache)
    if args.json:
        print(json.dumps([{"rank": h.rank, "score": round(h.score, 6), "line": h.line, "text": h.text}
                          for h in hits], ensure_ascii=False))
        return 0
    for h in hits:
        print(f"{h.rank:>3}  {h.score:.4f}  line {h.line}: {h.text}")
    return 0


def cmd_encode(args) -> int:
    from lucidlm.embeddings.sentence import embed

    e = embed(args.texts, args.model, args.batch_size, max_length=args.max_length)
    if args.json:
        print(json.dumps([[round(x, 7) for x in row] for row in e.tolist()]))
        return 0
    print(f"shape {tuple(e.shape)}  (L2-normalised, mean-pooled)")
    for text, row in zip(args.texts, e.tolist()):
        head = ", ".join(f"{x:+.4f}" for x in row[: args.show])
        print(f"[{head}, ...]  {text}")
    return 0


def register_cli(subparsers) -> None:
    """Add ``lucidlm embed {search,encode}`` to the top-level parser's subparsers."""
    p = subparsers.add_parser("embed", help="sentence embeddings and similarity search (all-MiniLM-L6-v2)")
    sub = p.add_subparsers(dest="embed_command", metavar="ACTION", required=True)

    def common(q) -> None:
        q.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"{DEFAULT_MODEL!r} or a Hugging Face BERT directory (default: %(default)s)")
        q.add_argument("--max-length", type=positive_int, default=None,
                       help="word pieces kept per text, [CLS]/[SEP] included; longer texts are truncated "
                            "(default: the model's, 256 for all-MiniLM-L6-v2)")
        q.add_argument("--batch-size", type=positive_int, default=32,
                       help="texts per forward pass (default: 32)")
        q.add_argument("--json", action="store_true", help="print JSON instead of a table")

    s = sub.add_parser("search", help="rank the lines of a file by cosine similarity to a query")
    s.add_argument("--corpus", required=True, help="UTF-8 text file, one text per line (blank lines skipped)")
    s.add_argument("--query", required=True, help="the text to search for")
    s.add_argument("--top", type=positive_int, default=5, help="how many lines to show (default: 5)")
    s.add_argument("--no-cache", action="store_true", help="do not read or write the corpus embedding cache")
    common(s)
    s.set_defaults(func=cmd_search)

    e = sub.add_parser("encode", help="print the embeddings of texts")
    e.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed")
    e.add_argument("--show", type=positive_int, default=8, help="values shown per vector (default: 8)")
    common(e)
    e.set_defaults(func=cmd_encode)
