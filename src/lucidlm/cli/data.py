"""``lucidlm data prepare | info``: turn text into token files, and look inside them.

Building the parser imports neither torch nor numpy; the commands import what they use.
"""

from __future__ import annotations

import argparse
import json

from lucidlm.cli.args import positive_int


def _fraction(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        f = -1.0
    if not 0 <= f < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {value!r}")
    return f


def cmd_prepare(args) -> int:
    from lucidlm.data.prepare import prepare_dataset

    meta = prepare_dataset(
        args.inputs, args.out, args.tokenizer, val_fraction=args.val_fraction, val_tokens=args.val_tokens,
        text_field=args.text_field, append_eos=not args.no_eos, workers=args.workers,
        overwrite=args.overwrite, progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(meta, ensure_ascii=False))
        return 0
    train, val = meta["splits"]["train"]["tokens"], meta["splits"]["val"]["tokens"]
    print(f"wrote {args.out}: {train:,} train + {val:,} val tokens ({meta['dtype']}, vocab_size "
          f"{meta['vocab_size']:,}, tokenizer {meta['tokenizer_name']}) from {meta['documents']:,} documents "
          f"in {meta['sources_total']} files")
    return 0


def cmd_info(args) -> int:
    from lucidlm.data.shards import TokenDataset, read_meta

    meta = read_meta(args.dataset)
    if args.json:
        print(json.dumps(meta, ensure_ascii=False, indent=2))
        return 0
    print(f"dataset      {args.dataset}")
    print(f"tokenizer    {meta['tokenizer_name']} (vocab_size {meta['vocab_size']:,}, "
          f"end-of-document id {meta.get('eos_id')})")
    print(f"dtype        {meta['dtype']}")
    for name, info in meta["splits"].items():
        print(f"{name:<12} {info['tokens']:>14,} tokens  {info['file']}")
    print(f"documents    {meta.get('documents', '?')} from {meta.get('sources_total', '?')} files")
    ds = TokenDataset(args.dataset, args.split)
    ids = ds.data[: args.sample].tolist()
    if ids:
        print(f"\nfirst {len(ids)} tokens of {args.split}: {ids[:24]}{' ...' if len(ids) > 24 else ''}")
        print("decoded:")
        print(ds.tokenizer().decode(ids))
    return 0


def register_cli(subparsers) -> None:
    """Add ``lucidlm data {prepare,info}`` to the top-level parser's subparsers."""
    p = subparsers.add_parser("data", help="token datasets for training: prepare and inspect")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    pr = sub.add_parser(
        "prepare", help="tokenize text files into train.bin / val.bin + meta.json",
        description="Tokenize text (.txt .md), JSONL (.jsonl .jsonl.gz), parquet or arrow (Hugging Face "
                    "datasets) files, or folders of them, into flat token files a training run memory-maps.",
    )
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders (searched recursively)")
    pr.add_argument("--out", required=True, help="the dataset directory to create")
    pr.add_argument("--tokenizer", default="char",
                    help="'char' (build a character vocab from the corpus, as nanoGPT's shakespeare_char), a "
                         "registered name (gpt2, cl100k_base, smollm2-135m-instruct, ...) or a tokenizer file or "
                         "checkpoint folder (default: %(default)s)")
    pr.add_argument("--val-fraction", type=_fraction, default=0.1,
                    help="share of the token stream, from its end, kept for validation (default: %(default)s)")
    pr.add_argument("--val-tokens", type=int, default=None,
                    help="an exact number of validation tokens instead of --val-fraction")
    pr.add_argument("--text-field", default="text",
                    help="JSONL field or parquet/arrow column holding the text (default: %(default)s)")
    pr.add_argument("--workers", type=positive_int, default=None,
                    help="encoding processes (default: one per CPU; one for inputs under 4 MB)")
    pr.add_argument("--no-eos", action="store_true",
                    help="do not put the end-of-text token after each document")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    pr.add_argument("--json", action="store_true", help="print meta.json instead of a summary")
    pr.set_defaults(func=cmd_prepare)

    info = sub.add_parser("info", help="show a dataset's meta.json and decode its first tokens")
    info.add_argument("dataset", help="a directory made by `lucidlm data prepare`")
    info.add_argument("--split", default="train", help="which split to sample (default: %(default)s)")
    info.add_argument("--sample", type=int, default=64, help="tokens to decode (default: %(default)s)")
    info.add_argument("--json", action="store_true", help="print meta.json as it is")
    info.set_defaults(func=cmd_info)
