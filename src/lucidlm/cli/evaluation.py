"""``lucidlm eval``: score a model the way papers do.

    lucidlm eval perplexity --model runs/demo/gpt/best --file held-out.txt
    lucidlm eval tasks --model smollm2-135m-instruct --tasks arc_easy,hellaswag --limit 100
    lucidlm eval tasks --model runs/my/best --tasks my_task --include-path my_tasks/   # your own YAML tasks
"""

from __future__ import annotations

import argparse

from lucidlm.cli.args import positive_int


def _model(args):
    from lucidlm.loading.load import check_pretrained, load_model

    check_pretrained(args.model, random_init=args.random_init)
    model, tokenizer = load_model(args.model)
    if tokenizer is None:
        raise ValueError(f"{args.model} has no tokenizer beside its weights: eval reads text")
    if getattr(model.cfg, "arch", "decoder") != "decoder":
        raise ValueError(f"{args.model} is not a decoder (arch={model.cfg.arch!r}): only a language model that "
                         "predicts the next token has a perplexity")
    return model.eval(), tokenizer


def cmd_perplexity(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lucidlm.evaluation import perplexity, perplexity_of_ids

    if sum(x is not None for x in (args.file, args.text, args.data)) != 1:
        raise ValueError("give what to score as --file PATH, --text TEXT or --data DATASET_DIR (one of them)")
    if args.data is not None:
        from lucidlm.data import TokenDataset

        ds = TokenDataset(args.data, args.split)
        if ds.row_length is not None:
            raise ValueError(f"{args.data} holds padded rows (one sequence each), not a text stream; "
                             "score a text file with --file")
        model, tokenizer = _model(args)
        ds.check_vocab(model.cfg.vocab_size)
        probe = "The quick brown fox, 1234!"
        try:
            same = ds.tokenizer().encode(probe) == tokenizer.encode(probe)
        except ValueError:  # a vocabulary that cannot spell the probe: compare what can be compared
            same = ds.tokenizer().vocab_size == tokenizer.vocab_size
        if not same:
            raise ValueError(f"{args.data} was tokenized with another tokenizer than {args.model}'s: its ids mean "
                             "other text to this model")
        ids = ds.data[: args.max_tokens] if args.max_tokens else ds.data
        result = perplexity_of_ids(model, tokenizer, ids, context=args.context, stride=args.stride,
                                   progress=not args.quiet)
        print(f"{args.model} on {args.data} ({args.split}): {result.summary()}")
        return 0
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"no file at {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    else:
        text = args.text
    model, tokenizer = _model(args)
    result = perplexity(model, tokenizer, text, context=args.context, stride=args.stride, progress=not args.quiet)
    print(f"{args.model}: {result.summary()}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    import json

    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ValueError("lucidlm eval tasks runs lm-evaluation-harness, which is not installed: "
                         "pip install 'lucidlm[eval]'") from None
    from lucidlm.evaluation.harness import LucidLM

    model, tokenizer = _model(args)
    lm = LucidLM(args.model, model=model, tokenizer=tokenizer, batch_size=args.batch_size)
    tasks = [t for t in args.tasks.split(",") if t]
    manager = None
    if args.include_path:  # your own tasks only: skip indexing the harness's thousands of task files
        manager = TaskManager(include_path=args.include_path, include_defaults=False)
        if not all(t in manager.all_tasks for t in tasks):
            manager = None
    if manager is None:
        manager = TaskManager(include_path=args.include_path) if args.include_path else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; `lm_eval ls tasks` lists them (your own YAML: --include-path)")
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=args.limit,
                                      num_fewshot=args.num_fewshot, apply_chat_template=args.apply_chat_template,
                                      log_samples=args.out is not None)
    from lm_eval.utils import make_table

    print(make_table(results))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=str)
        print(f"wrote {args.out}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("eval", help="perplexity on a text; lm-evaluation-harness tasks, in-process",
                              description="Score a model the way papers do: perplexity on a text, and lm-evaluation-harness tasks in-process.")
    sub = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND", required=True)

    def model_args(sp) -> None:
        sp.add_argument("--model", required=True, help="a checkpoint, model asset, Hugging Face directory or .gguf")
        sp.add_argument("--random-init", action="store_true", help="allow an architecture preset (random weights)")

    pp = sub.add_parser("perplexity", help="log-likelihood, perplexity and bits per byte of a text",
                        description="Score a text in windows of the model's context (or --context) that advance by "
                                    "--stride: a smaller stride gives each token more context.")
    model_args(pp)
    pp.add_argument("--file", help="a UTF-8 text file")
    pp.add_argument("--text", help="the text itself")
    pp.add_argument("--data", help="a prepared token dataset (lucidlm data prepare), scored as it was tokenized")
    pp.add_argument("--split", default="val", help="the dataset's split (default: %(default)s)")
    pp.add_argument("--max-tokens", type=positive_int, default=None, help="score only the split's first N tokens")
    pp.add_argument("--context", type=positive_int, default=None, help="tokens a window feeds (default: the model's)")
    pp.add_argument("--stride", type=positive_int, default=None, help="tokens a window advances (default: context)")
    pp.add_argument("--quiet", action="store_true", help="no progress bar")
    pp.set_defaults(func=cmd_perplexity)

    tp = sub.add_parser("tasks", help="lm-evaluation-harness tasks, in-process (pip install 'lucidlm[eval]')",
                        description="Runs lm_eval.simple_evaluate with lucidlm's model class (lucidlm.evaluation."
                                    "harness.LucidLM). Tasks whose data is on the Hugging Face Hub need it reachable.")
    model_args(tp)
    tp.add_argument("--tasks", required=True, help="comma-separated task names, e.g. arc_easy,hellaswag")
    tp.add_argument("--include-path", default=None, help="a folder of your own task YAML files")
    tp.add_argument("--limit", type=positive_int, default=None, help="at most this many items per task")
    tp.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default: the task's)")
    tp.add_argument("--batch-size", type=positive_int, default=8, help="rows scored together (default: 8)")
    tp.add_argument("--apply-chat-template", action="store_true", help="wrap prompts in the model's chat template")
    tp.add_argument("--out", default=None, help="write the results (and every item) as JSON here")
    tp.set_defaults(func=cmd_tasks)
