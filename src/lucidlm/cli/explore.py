"""``lucidlm explore``: the Explorer web app on 127.0.0.1 (uvicorn)."""

from __future__ import annotations

import argparse

from lucidlm.cli.args import port, positive_int


def build_workspace(args: argparse.Namespace):
    from lucidlm.explorer.workspace import Workspace

    return Workspace(args.model or None, tokenizers=args.tokenizer or [], runs=args.runs or [], corpus=args.corpus,
                     max_tokens=args.max_tokens, random_init=args.random_init)


def cmd_explore(args: argparse.Namespace) -> int:
    import uvicorn

    from lucidlm.cli.serve import bind

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"--host {args.host}: the explorer has no authentication and shows your models and "
                         "runs, so it only listens on the loopback interface (127.0.0.1, localhost or ::1)")
    workspace = build_workspace(args)  # checks the names given before taking the port
    sock = bind(args.host, args.port)
    try:
        from lucidlm.explorer.app import create_app

        first = workspace.model_names[0]
        print(f"lucidlm: loading {first} ...", flush=True)
        seq2seq = workspace.is_seq2seq(first)
        if seq2seq:  # loaded now, so the first page draws at once
            workspace.seq2seq(first)
        else:
            workspace.model(first)
        app = create_app(workspace)
        host = f"[{args.host}]" if ":" in args.host else args.host
        page = "?panel=alignment" if seq2seq else ""  # an encoder-decoder opens on its own panel
        print(f"lucidlm: the explorer is at http://{host}:{sock.getsockname()[1]}/{page}  (models: "
              f"{', '.join(workspace.model_names)}); Ctrl-C stops", flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level=args.log_level)).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("explore", help="a local web app that shows each step of an LLM on your model and prompt")
    p.add_argument("--model", "-m", action="append", metavar="NAME_OR_PATH",
                   help="a model to explore (repeat for several): an asset, checkpoint or HF directory, or .gguf "
                        "(default: smollm2-135m-instruct, all-minilm-l6-v2 and runs/demo/gpt/best when it exists)")
    p.add_argument("--tokenizer", action="append", metavar="NAME_OR_FILE",
                   help="another tokenizer for the Tokens panel (repeat for several), beside the registered ones")
    p.add_argument("--runs", action="append", metavar="DIR",
                   help="a training run, or a folder of runs, for the Training runs panel (default: runs/)")
    p.add_argument("--corpus", metavar="FILE", help="a text file, one text per line: nearest neighbours in the "
                                                    "Embeddings panel")
    p.add_argument("--random-init", action="store_true",
                   help="allow an architecture preset (gpt2, smollm2-135m, ...): random weights")
    p.add_argument("--max-tokens", type=positive_int, default=1024,
                   help="longest prompt a trace takes, in tokens (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default: %(default)s)")
    p.add_argument("--port", type=port, default=8765, help="port (default: %(default)s)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default: %(default)s)")
    p.set_defaults(func=cmd_explore)
