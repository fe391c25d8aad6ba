"""``lucidlm serve --model M``: the OpenAI-compatible API on 127.0.0.1 (uvicorn)."""

from __future__ import annotations

import argparse

from lucidlm.cli.args import port, positive_int, quiet_openmp, starts_fast, startup_done


def build_app(args: argparse.Namespace):
    """The app the command serves (separate from ``cmd_serve`` so a test can build it)."""
    quiet_openmp()  # before torch is imported
    from lucidlm.generate.chat import chat_template_from_option
    from lucidlm.generate.defaults import describe, model_sampling_defaults
    from lucidlm.loading.load import load_for_generation
    from lucidlm.serve.app import create_app

    template = chat_template_from_option(args.chat_template) if args.chat_template else None
    model, tokenizer = load_for_generation(args.model, random_init=args.random_init,
                                           keep_quantized=not args.dequantize)
    embedder, embed_name = None, None
    if args.embed_model != "none":
        from lucidlm.embeddings.sentence import load_embedder

        embed_name = args.embed_model

        def embedder():  # loaded on the first /v1/embeddings request
            return load_embedder(embed_name)

    defaults = model_sampling_defaults(args.model)
    print(f"lucidlm: sampling fields a request leaves out: {describe(defaults.params(), defaults.source)}")
    if template is None and not getattr(tokenizer, "chat_template", None):
        print("lucidlm: the model has no chat template, so /v1/chat/completions answers 400; "
              "--chat-template chatml|FILE gives it one")
    return create_app(model, tokenizer, model_name=args.served_name or str(args.model), embedder=embedder,
                      embed_model_name=embed_name, max_tokens_cap=args.max_tokens_cap, max_batch=args.max_batch,
                      max_context=args.max_context, max_body_bytes=args.max_body_bytes,
                      request_timeout_s=args.timeout, chat_template=template,
                      sampling_defaults=defaults.params())


def bind(host: str, port: int):
    """A listening socket, made before the model loads and before anything says "serving": a
    port in use is a clear error at once, not after the load."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may reuse a port in TIME_WAIT
    # Accepted connections inherit TCP_NODELAY (Linux). Without it a response written in two parts
    # (headers, then body) waits for the client's delayed ACK of the first: +40 ms on every request
    # of a kept-alive connection (a browser, the openai client), measured here.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror}): another server is probably using "
                         "the port; stop it or pick another with --port") from None
    sock.listen(128)
    return sock


@starts_fast
def cmd_serve(args: argparse.Namespace) -> int:
    quiet_openmp()  # before torch is imported (cli/args.py says why)
    import uvicorn

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"--host {args.host}: this server has no authentication, so it only listens on the "
                         "loopback interface (127.0.0.1, localhost or ::1); put a proxy in front to expose it")
    from lucidlm.loading.load import check_pretrained

    check_pretrained(args.model, random_init=args.random_init)  # before taking the port
    sock = bind(args.host, args.port)
    try:
        app = build_app(args)
        startup_done()
        port = sock.getsockname()[1]  # the real one when --port 0 asked for any free port
        print(f"lucidlm: serving {args.model} at http://{args.host}:{port}/v1 (docs: /docs); Ctrl-C stops",
              flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level))
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def register_cli(subparsers) -> None:
    """Add ``lucidlm serve`` to the top-level parser's subparsers."""
    p = subparsers.add_parser("serve", help="an OpenAI-compatible HTTP API (completions, chat, embeddings)")
    p.add_argument("--model", required=True,
                   help="a model asset (smollm2-135m-instruct), a checkpoint or Hugging Face directory, or a .gguf")
    p.add_argument("--random-init", action="store_true",
                   help="allow an architecture preset (gpt2, smollm2-135m, ...): random weights, so noise")
    p.add_argument("--chat-template", default=None, metavar="chatml|FILE",
                   help="chat template for /v1/chat/completions: 'chatml' or a Jinja file (default: the model's)")
    p.add_argument("--dequantize", action="store_true",
                   help="expand a GGUF's quantised weights to float32 (default: keep its Q8_0/Q4_0/Q4_1 blocks: "
                        "5x less memory, faster decoding)")
    p.add_argument("--served-name", default=None, help="the model's name in the API (default: --model)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default: %(default)s)")
    p.add_argument("--port", type=port, default=8000, help="port (default: %(default)s)")
    p.add_argument("--embed-model", default="all-minilm-l6-v2",
                   help="embedding model for /v1/embeddings, loaded on first use, or 'none' (default: %(default)s)")
    p.add_argument("--max-batch", type=positive_int, default=8, help="requests decoded together (default: %(default)s)")
    p.add_argument("--max-tokens-cap", type=positive_int, default=2048,
                   help="most tokens one request may generate (default: %(default)s)")
    p.add_argument("--max-context", type=positive_int, default=4096,
                   help="prompt + completion tokens per request, at most the model's (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=positive_int, default=1 << 20,
                   help="largest request body accepted (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default: %(default)s)")
    p.set_defaults(func=cmd_serve)
