"""``lucidlm chem prepare | train | sample | eval | draw``: a GPT that writes molecules, end to end.

    lucidlm chem prepare --out data/moses                        # MOSES -> rows of <bos> SMILES <eos>
    lucidlm chem train --config configs/moses_cpu.toml           # the trainer, on that dataset
    lucidlm chem sample runs/moses_cpu/best -n 30000 --out samples.smi
    lucidlm chem eval samples.smi                                # the MOSES metric set
    lucidlm chem draw samples.smi --out samples.png              # a grid of the first molecules

Thin front ends over ``lucidlm.chem``; building the parser imports neither torch nor RDKit.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

from lucidlm.cli.args import positive_int
from lucidlm.cli.train import _collect_overrides

CONDITIONS = ("logP", "QED", "SAS", "TPSA")  # chem.conditions.PROPERTIES (not imported: the parser stays light)
SCAFFOLD = "scaffold"  # chem.scaffolds: the molecule's Bemis-Murcko scaffold as its prefix


def _say(text: str) -> None:
    print(f"lucidlm: {text}", file=sys.stderr, flush=True)


def cmd_prepare(args) -> int:
    from lucidlm.chem.data import prepare_moses, prepare_smiles
    from lucidlm.chem.files import read_smiles

    progress = not args.no_progress
    if args.train is None:
        if args.val or args.tokenizer:
            raise ValueError("--val and --tokenizer go with --train FILE (your own molecules); without --train the "
                             "MOSES splits are prepared")
        if args.subset is not None and args.condition is None:
            raise ValueError("--subset goes with --condition (an unconditional dataset is the whole of MOSES train)")
        meta = prepare_moses(args.out, val_size=args.val_size, seed=args.seed, limit=args.limit,
                             condition=args.condition, subset=args.subset, n_jobs=args.n_jobs,
                             overwrite=args.overwrite, progress=progress)
    else:
        tokenizer = None
        if args.tokenizer:
            from lucidlm.tokenizers import load_tokenizer

            tokenizer = load_tokenizer(args.tokenizer)
        train = read_smiles(args.train, limit=args.limit)
        if not train:
            raise ValueError(f"{args.train} holds no molecules")
        val = read_smiles(args.val, limit=args.limit) if args.val else None
        if args.subset is not None:
            raise ValueError("--subset picks molecules of MOSES train; with --train FILE, give the file you want")
        meta = prepare_smiles(args.out, train, val=val, val_size=args.val_size, seed=args.seed, tokenizer=tokenizer,
                              condition=args.condition, n_jobs=args.n_jobs, info={"source": str(args.train)},
                              overwrite=args.overwrite, progress=progress)
    if args.json:
        print(json.dumps(meta, ensure_ascii=False))
        return 0
    counts = ", ".join(f"{name} {n:,}" for name, n in meta["molecules"].items())
    cond = meta.get("condition")
    if cond and cond["name"] == SCAFFOLD:
        frame = "<scaffold> SCAFFOLD <bos> SMILES <eos>"
    else:
        frame = f"<{cond['name']}=...> <bos> SMILES <eos>" if cond else "<bos> SMILES <eos>"
    print(f"wrote {args.out}: {counts} molecules as rows of {meta['row_length']} tokens ({frame}, the longest "
          f"molecule {meta['tokens_per_molecule']['max']} tokens); vocabulary {meta['vocab_size']} tokens")
    if cond and cond["name"] != SCAFFOLD:
        print(f"condition {cond['name']}: {cond['tokens']} tokens from {cond['lo']:g} to {cond['hi']:g} in steps of "
              f"{cond['step']:g} (train mean {cond['train_mean']:g}, sd {cond['train_sd']:g})")
    return 0


def cmd_train(args) -> int:
    from lucidlm.cli.train import cmd_train as train_command
    from lucidlm.data.shards import read_meta
    from lucidlm.train.config import TrainConfig

    overrides = list(getattr(args, "overrides", []))
    cfg = TrainConfig.from_toml(args.config, overrides)
    meta = read_meta(cfg.data) if cfg.data else {}
    if meta.get("layout") != "rows":
        raise ValueError(f"data = {cfg.data!r} is not a molecule dataset (one row per molecule); make one with "
                         "`lucidlm chem prepare --out DIR` and set data = DIR")
    return train_command(args, overrides)


def _sampling_params(args):
    from lucidlm.generate.sampling import SamplingParams

    return SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                          seed=args.seed)


def cmd_sample(args) -> int:
    from lucidlm.chem.files import write_samples
    from lucidlm.chem.sample import load_molecule_model, sample_molecules, summarize

    params = _sampling_params(args)  # checked before the model loads
    if not args.out.lower().endswith((".smi", ".txt", ".csv", ".csv.gz", ".smi.gz")):
        raise ValueError(f"--out {args.out}: write .smi (one SMILES per line) or .csv")
    model, tokenizer = load_molecule_model(args.checkpoint, device=args.device)
    from lucidlm.chem.conditions import condition_prefix, conditions_of
    from lucidlm.chem.scaffolds import SCAFFOLD_TOKEN, scaffold_prefix

    prefix: list[int] = []
    trained_with = conditions_of(tokenizer)
    if args.condition and args.scaffold:
        raise ValueError("pass --condition or --scaffold, not both (a model learns one kind of prefix)")
    if trained_with and not args.condition:  # it never saw a row start at <bos>: its output would mean nothing
        name, cond = next(iter(trained_with.items()))
        raise ValueError(f"this model was trained to write molecules to order: pass --condition {name}=VALUE "
                         f"({cond.lo:g} to {cond.hi:g})")
    if SCAFFOLD_TOKEN in tokenizer.stoi and not args.scaffold:
        raise ValueError("this model was trained to build molecules around a scaffold: pass --scaffold SMILES "
                         "(e.g. --scaffold c1ccccc1)")
    if args.condition:
        prefix, value = condition_prefix(tokenizer, args.condition)
        _say(f"asking for {tokenizer.tokens[prefix[0]]} (the model's nearest condition to {args.condition})")
    if args.scaffold:
        with _chem_extra():
            prefix, canonical = scaffold_prefix(tokenizer, args.scaffold)
        _say(f"asking for molecules around the scaffold {canonical}")
    molecules = sample_molecules(model, tokenizer, args.n, params=params, batch_size=args.batch_size,
                                 max_tokens=args.max_tokens, prefix=prefix, constrained=args.constrained,
                                 progress=not args.no_progress)
    columns = {"tokens": [len(m.token_ids) - (m.ended == "eos") for m in molecules],
               "ended": [m.ended for m in molecules], "logprob": [round(m.logprob, 4) for m in molecules]}
    write_samples(args.out, [m.smiles for m in molecules], columns)
    _say(summarize(molecules))
    print(f"wrote {args.out}: {len(molecules):,} molecules")
    return 0


@contextmanager
def _chem_extra():
    """RDKit or the FCD weights missing: one clear line naming the pip extra, not a traceback."""
    try:
        yield
    except ImportError as exc:
        text = str(exc)
        raise RuntimeError(text if "lucidlm[chem]" in text else f"{text}; pip install 'lucidlm[chem]'") from None


def cmd_eval(args) -> int:
    from lucidlm.chem.files import read_samples

    samples = read_samples(args.samples)  # bad input fails here, before RDKit is needed
    _say(samples.report())
    with _chem_extra():
        if args.target and args.scaffold:
            raise ValueError("pass --target or --scaffold, not both")
        if args.scaffold:
            from lucidlm.chem.scaffolds import scaffold_metrics, scaffold_of

            canonical = scaffold_of(args.scaffold)
            if not canonical:
                raise ValueError(f"--scaffold {args.scaffold!r} is not a ring scaffold RDKit can parse")
            scores = scaffold_metrics(samples.smiles, canonical, n_jobs=args.n_jobs, progress=not args.no_progress)
        elif args.target:
            from lucidlm.chem.conditions import conditioned_metrics

            scores = conditioned_metrics(samples.smiles, args.target, n_jobs=args.n_jobs,
                                         progress=not args.no_progress)
        else:
            from lucidlm.chem.metrics import moses_metrics

            scores = moses_metrics(samples.smiles, n_jobs=args.n_jobs, progress=not args.no_progress)
    if args.out:
        from lucidlm.files.jsonfile import write_json_atomic

        write_json_atomic(args.out, {"samples": str(args.samples), "n": len(samples.smiles), **scores}, indent=2)
    if args.json:
        print(json.dumps(scores))
        return 0
    width = max(len(k) for k in scores)
    for name, value in scores.items():
        print(f"{name:<{width}}  {value:.4f}")
    return 0


def cmd_draw(args) -> int:
    from lucidlm.chem.files import read_samples

    samples = read_samples(args.samples)
    _say(samples.report())
    with _chem_extra():
        from lucidlm.chem.draw import draw_grid

        result = draw_grid(samples.smiles[: args.n], args.out, cols=args.cols, size=args.size)
    print(f"wrote {result['path']}: {result['drawn']} molecules, {result['valid']} valid")
    return 0


def register_cli(subparsers) -> None:
    """Add ``lucidlm chem {prepare,train,sample,eval,draw}`` to the top-level parser's subparsers."""
    p = subparsers.add_parser("chem", help="molecules: train a GPT on MOSES SMILES, sample it, score it",
                              description="A GPT that writes molecules as SMILES, scored as the MOSES benchmark "
                                          "scores models.")
    sub = p.add_subparsers(dest="chem_command", metavar="ACTION", required=True)

    pr = sub.add_parser("prepare", help="MOSES (or your SMILES) -> a training dataset, one molecule per row",
                        description="Tokenize molecules (Schwaller's SMILES regex) into rows of <bos> SMILES <eos>, "
                                    "padded; the padding carries no loss. Default: the MOSES benchmark's splits "
                                    "(the moses asset), with val held out of MOSES train.")
    pr.add_argument("--out", required=True, help="the dataset directory to create")
    pr.add_argument("--train", default=None, metavar="FILE",
                    help="your own training molecules (.smi/.txt one per line, or .csv with a SMILES column) "
                         "instead of MOSES")
    pr.add_argument("--val", default=None, metavar="FILE", help="validation molecules (default: held out of train)")
    pr.add_argument("--tokenizer", default=None, metavar="PATH",
                    help="encode with this tokenizer (a checkpoint's, to fine-tune it); a molecule with a token it "
                         "lacks is an error (default: a vocabulary built from the molecules)")
    pr.add_argument("--val-size", type=positive_int, default=10_000,
                    help="molecules held out of train for validation (default: %(default)s)")
    pr.add_argument("--seed", type=int, default=0, help="which molecules are held out (default: %(default)s)")
    pr.add_argument("--limit", type=positive_int, default=None,
                    help="only the first N molecules of each file (a quick trial)")
    pr.add_argument("--condition", choices=(*CONDITIONS, SCAFFOLD), default=None,
                    help="start each row with the molecule's property as a token (<logP=2.25> <bos> ...), to sample "
                         "molecules to order with `chem sample --condition logP=2`; or with its Bemis-Murcko "
                         "scaffold (scaffold: <scaffold> c1ccccc1 <bos> ...), for `chem sample --scaffold c1ccccc1`")
    pr.add_argument("--subset", type=positive_int, default=None,
                    help="with --condition: this many MOSES train molecules, at random (default: 300000)")
    pr.add_argument("--n-jobs", type=positive_int, default=2, help="processes computing --condition's property "
                                                                   "(default: %(default)s)")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    pr.add_argument("--json", action="store_true", help="print meta.json instead of a summary")
    pr.set_defaults(func=cmd_prepare)

    t = sub.add_parser("train", help="train a GPT on a molecule dataset (lucidlm train, checked for molecules)",
                       description="Run the trainer on a TOML config whose data is a `lucidlm chem prepare` "
                                   "dataset; any setting can be overridden with --key=value.",
                       epilog="configs/moses_cpu.toml: under an hour on 2 CPU cores; configs/moses_full.toml: "
                              "MolGPT-sized, for a GPU. Ctrl-C saves out_dir/last; continue with --resume.")
    t.add_argument("--config", required=True, metavar="FILE.toml", help="training config (TOML)")
    t.add_argument("--resume", action="store_true", help="continue step-exactly from out_dir/last")
    t.add_argument("--overwrite", action="store_true", help="start over in an out_dir that holds a checkpoint")
    t.set_defaults(func=cmd_train)
    _collect_overrides(t)

    s = sub.add_parser("sample", help="sample molecules from a checkpoint into a .smi or .csv file",
                       description="Each molecule starts from <bos> alone and ends at <eos>; invalid and empty "
                                   "generations are written as they are (the metrics count them invalid). The "
                                   "defaults sample the model's own distribution, as MOSES samples its models.")
    s.add_argument("checkpoint", help="a checkpoint directory (e.g. runs/moses_cpu/best)")
    s.add_argument("-n", type=positive_int, default=1000, help="molecules to sample (default: %(default)s; MOSES "
                                                                  "reports 30,000)")
    s.add_argument("--out", required=True, help="FILE.smi (one SMILES per line) or FILE.csv (with tokens, how "
                                                "each ended, log-probability)")
    s.add_argument("--temperature", "-t", type=float, default=1.0, help="0 = greedy (default: %(default)s)")
    s.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens, 0 = off (default)")
    s.add_argument("--top-p", type=float, default=1.0, help="nucleus: keep tokens until p, 1 = off (default)")
    s.add_argument("--min-p", type=float, default=0.0, help="keep p >= min_p * the top p, 0 = off (default)")
    s.add_argument("--seed", type=int, default=None, help="same seed and batch size, same molecules")
    s.add_argument("--batch-size", type=positive_int, default=512, help="rows sampled together (default: "
                                                                        "%(default)s)")
    s.add_argument("--max-tokens", type=positive_int, default=None,
                   help="the longest generation (default: the model's context less <bos>)")
    s.add_argument("--condition", default=None, metavar="NAME=VALUE",
                   help="ask a model trained with `chem prepare --condition NAME` for this value, e.g. logP=2")
    s.add_argument("--scaffold", default=None, metavar="SMILES",
                   help="molecules around this Bemis-Murcko scaffold, from a model trained with `chem prepare "
                        "--condition scaffold`, e.g. c1ccc(Cc2ccccn2)cc1")
    s.add_argument("--constrained", action="store_true",
                   help="draw only tokens that keep the SMILES parsable: no ring or branch left open, no bond "
                        "before ')' (lucidlm.chem.syntax; off by default, as MOSES samples its models freely)")
    s.add_argument("--device", default=None, help="cpu, cuda, ... (default: where the checkpoint loads)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="score a sample file with the MOSES metrics",
                       description="Valid, Unique@1k/@10k, Novelty, IntDiv, Filters, and FCD/SNN/Frag/Scaf against "
                                   "MOSES Test and TestSF. Every line counts: an empty or unreadable SMILES is "
                                   "invalid, and lines that cannot be SMILES at all are reported.")
    e.add_argument("samples", help="a .smi (one SMILES per line) or .csv (a SMILES column) of generated molecules")
    e.add_argument("--n-jobs", type=positive_int, default=2, help="processes for the RDKit work (default: "
                                                                   "%(default)s)")
    e.add_argument("--target", default=None, metavar="NAME=VALUE",
                   help="molecules asked for a property (chem sample --condition): validity, uniqueness, novelty and "
                        "the property's mean absolute deviation (MAD) from VALUE, instead of the MOSES set")
    e.add_argument("--scaffold", default=None, metavar="SMILES",
                   help="molecules asked to be built around this scaffold (chem sample --scaffold): validity, "
                        "uniqueness, novelty, and the share with exactly that scaffold / containing it")
    e.add_argument("--out", default=None, metavar="FILE.json", help="also write the scores here")
    e.add_argument("--json", action="store_true", help="print the scores as JSON")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("draw", help="draw the first molecules of a sample file as a PNG grid",
                       description="One cell per molecule with its SMILES below; invalid ones are blank cells "
                                   "labelled INVALID.")
    d.add_argument("samples", help="a .smi or .csv of molecules")
    d.add_argument("--out", required=True, help="the PNG to write")
    d.add_argument("--n", type=positive_int, default=24, help="molecules to draw (default: %(default)s)")
    d.add_argument("--cols", type=positive_int, default=4, help="cells per row (default: %(default)s)")
    d.add_argument("--size", type=positive_int, default=300, help="pixels per cell (default: %(default)s)")
    d.set_defaults(func=cmd_draw)
