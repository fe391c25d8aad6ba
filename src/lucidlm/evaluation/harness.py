"""lucidlm models inside lm-evaluation-harness, in-process: no server, no Hugging Face copy.

lm-evaluation-harness (EleutherAI) asks a model three things, and every benchmark is built on them:

    loglikelihood(context, continuation)  -> (log p(continuation | context), was it the greedy one?)
        multiple choice (MMLU, HellaSwag, ARC, ...): the choice with the highest log-likelihood wins
    loglikelihood_rolling(text)           -> log p(text): perplexity tasks (wikitext, ...)
    generate_until(context, until=...)    -> text: generation tasks (GSM8K, ...), scored on the answer

``LucidLM`` answers them with a lucidlm model: ``TemplateLM`` (the harness's own base class)
splits each (context, continuation) into tokens exactly as its API and Hugging Face models do, so
the same task gives the same numbers in-process and through ``lucidlm serve`` with the harness's
``local-completions`` model (tests/test_evaluation.py checks it item by item). Continuations are
scored in batches of right-padded rows: a causal model's logits at a position never see the
padding after it.

    lm_eval --model lucidlm --model_args pretrained=runs/my-llama/best --tasks hellaswag
    lucidlm eval tasks --model runs/my-llama/best --tasks hellaswag        # the same, through lucidlm

This module imports ``lm_eval`` (the optional ``[eval]`` extra); importing it registers the
"lucidlm" model name with the harness.
"""

from __future__ import annotations

import lm_eval.models  # noqa: F401  the harness's own models first: it fills its registry only while empty
import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from lucidlm.evaluation.perplexity import token_nll


@register_model("lucidlm")
class LucidLM(TemplateLM):
    """A lucidlm model for the harness. ``pretrained``: any name or path ``load_model`` opens;
    or pass ``model`` and ``tokenizer`` already loaded."""

    def __init__(self, pretrained: str | None = None, *, model=None, tokenizer=None, batch_size: int | str = 8,
                 max_length: int | None = None, max_gen_toks: int = 256, **_ignored) -> None:
        super().__init__()
        if model is None:
            if pretrained is None:
                raise ValueError("LucidLM needs pretrained=NAME_OR_PATH (or model= and tokenizer=)")
            from lucidlm.loading.load import load_model

            model, tokenizer = load_model(pretrained)
        if tokenizer is None:
            raise ValueError("LucidLM needs the model's tokenizer: the harness gives it text")
        self.model, self.lucid_tokenizer = model.eval(), tokenizer
        self.batch_size = 8 if batch_size in ("auto", None) else int(batch_size)
        self.max_length = int(max_length or model.cfg.max_seq_len)
        self.max_gen_toks = int(max_gen_toks)
        self._name = str(pretrained or getattr(model.cfg, "name", "lucidlm"))

    # -- tokens ----------------------------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        tok = self.lucid_tokenizer
        for attr in ("eos_id", "bos_id"):
            if getattr(tok, attr, None) is not None:
                return int(getattr(tok, attr))
        raise ValueError("the tokenizer has no end-of-text token; the harness needs one for an empty context")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """As the Hugging Face tokenizer directory of the same model encodes it: special tokens in
        the text become their ids, and nothing is added around it."""
        try:
            return list(self.lucid_tokenizer.encode(string, allowed_special="all"))
        except TypeError:  # a tokenizer without special-token options (characters, SMILES, WordPiece)
            return list(self.lucid_tokenizer.encode(string))

    def tok_decode(self, ids) -> str:
        return self.lucid_tokenizer.decode(list(ids))

    # -- log-likelihoods -------------------------------------------------------------------------

    @torch.inference_mode()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """For each (key, context ids, continuation ids): (sum of the continuation's log-probabilities,
        whether each of its tokens was the argmax). The row fed is context + continuation without
        its last id, cut on the left to the model's context."""
        device = next(self.model.parameters()).device
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1]) - len(requests[i][2]))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        for k in tqdm(range(0, len(order), self.batch_size), desc="log-likelihoods", disable=disable_tqdm):
            batch = order[k:k + self.batch_size]
            rows, conts = [], []
            for i in batch:
                _, context, continuation = requests[i]
                if not continuation:
                    raise ValueError("an empty continuation has no log-likelihood to score")
                whole = (list(context) + list(continuation))[-(self.max_length + 1):]
                rows.append(whole[:-1])
                conts.append(whole[len(whole) - min(len(continuation), len(whole) - 1):])  # all of it that was cut in
            width = max(len(r) for r in rows)
            x = torch.zeros(len(rows), width, dtype=torch.long, device=device)  # (B, T) right-padded
            for b, r in enumerate(rows):
                x[b, :len(r)] = torch.tensor(r, dtype=torch.long)
            logp = torch.log_softmax(self.model(x).float(), dim=-1)  # (B, T, V)
            for b, i in enumerate(batch):
                n, c = len(rows[b]), conts[b]
                picked = logp[b, n - len(c):n]  # (len(c), V): the rows that predict the continuation
                target = torch.tensor(c, device=device)
                score = float(picked.gather(-1, target[:, None]).sum())
                greedy = bool((picked.argmax(-1) == target).all())
                results[i] = (score, greedy)
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """log p(text) of each request's text, the end-of-text token before it, in windows of the
        model's context (``evaluation.perplexity``)."""
        out = []
        for req in tqdm(requests, desc="rolling log-likelihoods", disable=disable_tqdm):
            ids = [self.eot_token_id, *self.tok_encode(req.args[0])]
            out.append(-float(token_nll(self.model, ids, context=self.max_length).sum()) if len(ids) > 1 else 0.0)
        return out

    # -- generation ------------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lucidlm.generate import generate
        from lucidlm.generate.sampling import SamplingParams

        out = []
        for req in tqdm(requests, desc="generating", disable=disable_tqdm):
            context, gen_kwargs = req.args
            kwargs = dict(gen_kwargs)
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_tokens = int(kwargs.pop("max_gen_toks", kwargs.pop("max_tokens", self.max_gen_toks)))
            temperature = float(kwargs.pop("temperature", 0.0)) if kwargs.pop("do_sample", False) else 0.0
            result = generate(self.model, self.lucid_tokenizer, self.tok_encode(context), max_tokens=max_tokens,
                              params=SamplingParams(temperature=temperature), stop=until, truncate=True)
            out.append(result.text)
        return out

    # -- chat ------------------------------------------------------------------------------------

    @property
    def tokenizer_name(self) -> str:
        return self._name.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.lucid_tokenizer, "chat_template", None) if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        from lucidlm.generate.chat import render_chat

        return render_chat(chat_history, tokenizer=self.lucid_tokenizer, add_generation_prompt=add_generation_prompt)
