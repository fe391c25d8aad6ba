"""``lucidlm generate`` and ``lucidlm chat``: thin front ends over ``lucidlm.generate``."""

from __future__ import annotations

import argparse
import sys
import time

from lucidlm.cli.args import quiet_openmp, starts_fast, startup_done


def _load(args: argparse.Namespace):
    from lucidlm.loading.load import load_for_generation

    return load_for_generation(args.model, random_init=args.random_init, fast_decode=not args.no_fast_decode,
                               keep_quantized=not args.dequantize)


def _params(args: argparse.Namespace):
    """The model's recommended sampling settings with the user's options on top, announced on
    stderr: a student should know how the tokens were chosen (generate/defaults.py says why)."""
    from lucidlm.generate.defaults import model_sampling_defaults, resolve_sampling

    defaults = model_sampling_defaults(args.model)
    params, text = resolve_sampling(
        defaults, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repetition_penalty=args.repetition_penalty, frequency_penalty=args.frequency_penalty,
        presence_penalty=args.presence_penalty, seed=args.seed)
    print(f"lucidlm: sampling: {text}", file=sys.stderr, flush=True)
    return params


def _options(args: argparse.Namespace, params) -> dict:
    return dict(max_tokens=args.max_tokens, params=params, stop=args.stop, stop_ids=args.stop_id,
                ignore_eos=args.ignore_eos, use_cache=not args.no_cache, truncate=args.truncate,
                prefill_progress=_PrefillProgress())


class _PrefillProgress:
    """Reads the prompt's progress (the model sees a long prompt in chunks) and shows it on stderr
    once it has taken more than 2 s: a 20k-token prompt takes minutes on a CPU."""

    def __init__(self, after_s: float = 2.0) -> None:
        self.start, self.after_s, self.shown = time.perf_counter(), after_s, False

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed < self.after_s and not self.shown:
            return
        self.shown = True
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else 0.0
        end = "\n" if done >= total else ""
        print(f"\rlucidlm: reading the prompt: {done}/{total} tokens ({rate:.0f} tokens/s, ~{left:.0f} s left)",
              end=end, file=sys.stderr, flush=True)


def _template(args: argparse.Namespace, tokenizer) -> str:
    from lucidlm.generate.chat import CHATML_TEMPLATE, chat_template_from_option

    if args.template:
        return chat_template_from_option(args.template)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    if not _encodes_as_one_token(tokenizer, "<|im_start|>"):
        raise ValueError(
            f"{args.model} has no chat template, and its tokenizer has no ChatML tokens (<|im_start|>) to "
            "fall back on: it was trained on plain text, not conversations. Continue text with `lucidlm generate "
            f"--model {args.model} \"TEXT\"`, or give a template its tokenizer can encode with --template FILE")
    print("lucidlm: the model has no chat template; using ChatML, whose tokens its tokenizer has "
          "(--template to choose)", file=sys.stderr)
    return CHATML_TEMPLATE


def _encodes_as_one_token(tokenizer, text: str) -> bool:
    from lucidlm.generate.decode import encode_prompt

    try:
        return len(encode_prompt(tokenizer, text, add_special=False)) == 1
    except ValueError:  # a character the vocabulary lacks
        return False


def _show(token) -> str:
    return repr(token.token)


@starts_fast
def cmd_generate(args: argparse.Namespace) -> int:
    quiet_openmp()  # before torch is imported (cli/args.py says why)
    from lucidlm.generate.chat import render_chat
    from lucidlm.generate.decode import stream

    model, tok = _load(args)
    params = _params(args)
    startup_done()
    prompt = args.prompt
    if args.chat:
        messages = ([{"role": "system", "content": args.system}] if args.system else [])
        prompt = render_chat([*messages, {"role": "user", "content": prompt}], template=_template(args, tok),
                             tokenizer=tok)
    start, n, reason, n_prompt = time.perf_counter(), 0, None, 0
    events = stream(model, tok, prompt, logprobs=args.show_probs, add_special=not args.chat,
                    **_options(args, params))
    shown = "" if args.chat else args.prompt  # the text printed before the completion
    if not args.show_probs:
        print(shown, end="", flush=True)
    pieces = []
    for event in events:
        n, reason, n_prompt = n + 1, event.finish_reason, event.prompt_tokens
        pieces.append(event.text)
        if args.show_probs:  # one line per token: the chosen one, then the most likely alternatives
            lp = event.logprob
            alts = "  ".join(f"{_show(a)} {a.prob:.1%}" for a in lp.top)
            print(f"{event.position:>4} {_show(lp):<16} p={lp.prob:6.1%}   top: {alts}", flush=True)
        else:
            print(event.text, end="", flush=True)
    seconds = time.perf_counter() - start
    if args.show_probs:  # the table shows tokens one by one; here is what they say together
        print(f"\ntext: {shown}{''.join(pieces)}")
    else:
        print()
    print(f"[{reason}: {n_prompt} prompt + {n} generated tokens, {n / seconds:.1f} tokens/s]", file=sys.stderr)
    return 0


@starts_fast
def cmd_chat(args: argparse.Namespace) -> int:
    quiet_openmp()  # before torch is imported (cli/args.py says why)
    from lucidlm.generate.chat import render_chat
    from lucidlm.generate.decode import encode_prompt, stream

    model, tok = _load(args)
    params = _params(args)
    startup_done()
    template = _template(args, tok)
    system = args.system
    history: list[dict] = []  # user and assistant turns; the system message is kept apart
    context = model.cfg.max_seq_len
    print("chat: type a message; /reset clears the history, /system TEXT sets the system message, /quit ends",
          file=sys.stderr)
    while True:
        print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input
            print()
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() in ("/quit", "/exit"):
            return 0
        if text.strip() == "/reset":
            history.clear()
            print("(history cleared)")
            continue
        if text.startswith("/system"):
            system = text[len("/system"):].strip() or None
            print(f"(system message {'set' if system else 'removed'})")
            continue
        history.append({"role": "user", "content": text})
        # Keep the conversation within the context: drop the oldest turns until the prompt and the
        # reply (max_tokens) fit. The latest user message always stays.
        while True:
            messages = ([{"role": "system", "content": system}] if system else []) + history
            ids = encode_prompt(tok, render_chat(messages, template=template, tokenizer=tok), add_special=False)
            if len(ids) + args.max_tokens <= context or len(history) == 1:
                break
            del history[:2 if len(history) > 2 else 1]  # one user + assistant exchange
        if len(ids) + args.max_tokens > context:
            history.pop()
            print(f"(message too long: {len(ids)} tokens + max_tokens {args.max_tokens} > context {context})")
            continue
        print("assistant> ", end="", flush=True)
        reply = []
        for event in stream(model, tok, ids, **_options(args, params)):
            reply.append(event.text)
            print(event.text, end="", flush=True)
        print()
        history.append({"role": "assistant", "content": "".join(reply)})


def _add_sampling_flags(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--model", "-m", default="smollm2-135m-instruct",
                   help="a pretrained model (`lucidlm models`), checkpoint directory, HF directory or .gguf file "
                        "(default: %(default)s)")
    p.add_argument("--random-init", action="store_true",
                   help="allow an architecture preset (gpt2, smollm2-135m, ...): random weights, so noise")
    p.add_argument("--max-tokens", "-n", type=int, default=max_tokens, help=f"tokens to generate (default {max_tokens})")
    # Sampling options default to None: "not given", so the model's recommended value applies.
    model_default = "default: the model's recommended value, else llama.cpp's {}; the first line of output says"
    p.add_argument("--temperature", "-t", type=float, default=None,
                   help="0 = greedy; < 1 sharper, > 1 flatter (" + model_default.format("0.8") + ")")
    p.add_argument("--top-k", type=int, default=None,
                   help="keep the k most likely tokens, 0 = off (" + model_default.format("40") + ")")
    p.add_argument("--top-p", type=float, default=None,
                   help="nucleus: keep tokens until their probability sums to p, 1 = off ("
                        + model_default.format("0.95") + ")")
    p.add_argument("--min-p", type=float, default=None,
                   help="keep tokens with p >= min_p * the top token's p, 0 = off (" + model_default.format("0.05") + ")")
    p.add_argument("--repetition-penalty", type=float, default=None, help="CTRL/HF penalty on seen tokens (1 = off)")
    p.add_argument("--frequency-penalty", type=float, default=None, help="OpenAI: - count * f (-2..2, 0 = off)")
    p.add_argument("--presence-penalty", type=float, default=None, help="OpenAI: - p if seen (-2..2, 0 = off)")
    p.add_argument("--seed", type=int, default=None, help="same seed, same text (default: a fresh draw)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable); not printed")
    p.add_argument("--stop-id", action="append", type=int, default=[], help="stop token id (repeatable), besides EOS")
    p.add_argument("--ignore-eos", action="store_true", help="keep going past the EOS token")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole sequence each step (the reference)")
    p.add_argument("--no-fast-decode", action="store_true",
                   help="one-token steps through PyTorch's ops (the reference path), not the C kernels")
    p.add_argument("--dequantize", action="store_true",
                   help="expand a GGUF's quantised weights to float32 (default: keep its Q8_0/Q4_0/Q4_1 blocks, "
                        "5x less memory and faster steps; the same numbers up to float32 rounding)")
    p.add_argument("--truncate", action="store_true", help="drop the prompt's oldest tokens if it does not fit")
    p.add_argument("--template", default=None, help="chat template: a Jinja file or 'chatml' (default: the model's)")
    p.add_argument("--system", default=None, help="system message")


def register_cli(subparsers) -> None:
    g = subparsers.add_parser("generate", help="continue a prompt with a language model")
    g.add_argument("prompt", help="the text to continue")
    _add_sampling_flags(g, max_tokens=64)
    g.add_argument("--show-probs", nargs="?", type=int, const=5, default=0, metavar="N",
                   help="print each token with its probability and the N most likely alternatives (default 5)")
    g.add_argument("--chat", action="store_true", help="send the prompt as a user message through the chat template")
    g.set_defaults(func=cmd_generate)

    c = subparsers.add_parser("chat", help="talk to a chat model (streaming; /reset, /system TEXT, /quit)")
    _add_sampling_flags(c, max_tokens=256)
    c.set_defaults(func=cmd_chat)
