"""Training speed: lucidlm's fast BPE trainer against HF `tokenizers` (Rust) and against the
textbook reference trainer, measured in the same run, one core.

    python benchmarks/bench_train.py [--reference-vocab 512] [--big-size 10000000]

Goals from the issue: vocab 1024 on Tiny Shakespeare >= 200x faster than the reference trainer
and within 2x of HF tokenizers; vocab 32k on a 10 MB mixed corpus within 3x of HF tokenizers.
The reference trainer is slow by design (minutes), so it runs once, at ``--reference-vocab``.
All three use the GPT-4 (cl100k) split pattern on raw bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, median_time, pin_to_one_core, print_table  # noqa: E402

pin_to_one_core()  # before HF tokenizers starts its thread pool


def hf_train(text: str, vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from lucidlm.tokenizers.patterns import CL100K_PATTERN

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer)
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-vocab", type=int, default=512, help="vocab size for the slow reference trainer (0: skip)")
    parser.add_argument("--big-size", type=int, default=10_000_000, help="characters of the mixed corpus for vocab 32k")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import tokenizers

    from lucidlm.tokenizers import train_bpe, train_bpe_reference
    from lucidlm.tokenizers.corpus import build_mixed_corpus, tiny_shakespeare

    print(f"bench_train: {machine_line()}; HF tokenizers {tokenizers.__version__}; one core")
    shakespeare = tiny_shakespeare()
    rows = []
    for vocab in (512, 1024):
        t_hf = median_time(lambda v=vocab: hf_train(shakespeare, v), args.repeat)
        t_ours = median_time(lambda v=vocab: train_bpe(shakespeare, v), args.repeat)
        rows.append([f"tiny-shakespeare, vocab {vocab}", t_hf, t_ours, t_ours / t_hf, ""])
        if vocab == args.reference_vocab:
            t_ref = median_time(lambda v=vocab: train_bpe_reference(shakespeare, v), 1)
            rows[-1][-1] = f"reference {t_ref:.1f} s = {t_ref / t_ours:.0f}x ours"
    if args.reference_vocab and args.reference_vocab not in (512, 1024):
        t_ref = median_time(lambda: train_bpe_reference(shakespeare, args.reference_vocab), 1)
        t_ours = median_time(lambda: train_bpe(shakespeare, args.reference_vocab), args.repeat)
        rows.append([f"tiny-shakespeare, vocab {args.reference_vocab}", float("nan"), t_ours, float("nan"),
                     f"reference {t_ref:.1f} s = {t_ref / t_ours:.0f}x ours"])
    big = build_mixed_corpus(args.big_size, seed=0)
    mb = len(big.encode("utf-8")) / 1e6
    t_hf = median_time(lambda: hf_train(big, 32_000), 1)
    t_ours = median_time(lambda: train_bpe(big, 32_000), 1)
    rows.append([f"mixed {mb:.1f} MB, vocab 32000", t_hf, t_ours, t_ours / t_hf, ""])
    print_table("BPE training time in seconds (lower is better); ratio = ours / HF",
                ["task", "HF tokenizers s", "lucidlm s", "ours/HF", "reference trainer"], rows)


if __name__ == "__main__":
    main()
