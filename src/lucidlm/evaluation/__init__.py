"""Scoring a model: perplexity and bits per byte on a text (``perplexity``), and the benchmarks of
lm-evaluation-harness run in-process (``harness``, needs the optional ``[eval]`` extra)."""

from lucidlm.evaluation.perplexity import Perplexity, perplexity, perplexity_of_ids, token_nll

__all__ = ["Perplexity", "perplexity", "perplexity_of_ids", "token_nll"]
