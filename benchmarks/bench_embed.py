"""Sentence-embedding throughput of all-MiniLM-L6-v2 at batch 32, one core: lucidlm.embed against
transformers BertModel + mean pooling (what sentence-transformers computes), in the same run.

    python benchmarks/bench_embed.py [--sentences 512] [--repeat 3]

The peer gets its batches in corpus order (as a plain loop over a dataset would); lucidlm sorts by
length first, as sentence-transformers does. Goal from the issue: >= 1.2x transformers.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, median_time, pin_to_one_core, print_table  # noqa: E402


def sentences(n: int, seed: int = 0) -> list[str]:
    """n sentences of 3 to 60 words cut from Tiny Shakespeare."""
    from lucidlm.tokenizers.corpus import tiny_shakespeare

    words = tiny_shakespeare().split()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        start = rng.randrange(len(words) - 60)
        out.append(" ".join(words[start : start + rng.randint(3, 60)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pin_to_one_core()
    torch.set_num_threads(1)

    import transformers
    from tokenizers import Tokenizer

    from lucidlm.assets import fetch
    from lucidlm.embeddings import embed, load_embedder

    print(f"bench_embed: {machine_line()}; torch {torch.__version__}, transformers {transformers.__version__}; "
          f"one core, batch {args.batch_size}")
    texts = sentences(args.sentences)
    files = fetch("all-minilm-l6-v2")
    folder = Path(files["model"]).parent
    hf = transformers.BertModel.from_pretrained(str(folder)).eval()
    hf_tok = Tokenizer.from_file(str(files["tokenizer.json"]))
    hf_tok.enable_truncation(256)
    hf_tok.enable_padding(pad_id=0, pad_token="[PAD]")

    @torch.inference_mode()
    def hf_embed() -> torch.Tensor:
        outs = []
        for i in range(0, len(texts), args.batch_size):
            enc = hf_tok.encode_batch(texts[i : i + args.batch_size])
            ids = torch.tensor([e.ids for e in enc])
            mask = torch.tensor([e.attention_mask for e in enc])
            hidden = hf(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
            m = mask[..., None].float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            outs.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(outs)

    load_embedder("all-minilm-l6-v2")  # load once, outside the timing
    ours = embed(texts, batch_size=args.batch_size)
    ref = hf_embed()
    cos = (ours * ref).sum(-1).min().item()
    t_hf = median_time(hf_embed, args.repeat)
    t_ours = median_time(lambda: embed(texts, batch_size=args.batch_size), args.repeat)
    n = len(texts)
    print_table(f"{n} sentences (3-60 words); min cosine lucidlm vs transformers {cos:.6f}",
                ["embedder", "sentences/s", "x transformers"],
                [["transformers BertModel + mean pooling", n / t_hf, 1.0],
                 ["lucidlm.embed (length-sorted batches)", n / t_ours, t_hf / t_ours]])


if __name__ == "__main__":
    main()
