"""Sampling: turn the model's next-token logits (V,) into one token id.

The pipeline ``process_logits`` runs, in this order (each step a short function below):

0. logit bias (OpenAI's API): a number added to the raw logit of chosen tokens (-100 bans a
   token in practice, +100 forces it);
1. penalties, which look at the tokens already there:
   - repetition (Keskar et al. 2019, CTRL; as Hugging Face): a seen token's logit is divided by
     ``repetition_penalty`` when positive and multiplied by it when negative, so it always drops;
   - frequency and presence (OpenAI's API):  logit -= count * frequency + (count > 0) * presence;
2. temperature:  logits / T  (T < 1 sharpens the distribution, T > 1 flattens it);
3. filters, which set the logits of excluded tokens to -inf:
   - top-k: keep the k largest logits (exactly k, even when several tie at the k-th place);
   - top-p, "nucleus" (Holtzman et al. 2019): keep the most likely tokens until their
     probabilities add up to p;
   - min-p (Nguyen et al. 2024): keep tokens whose probability is at least min_p * the top one's.

``sample_token`` then draws from softmax(processed logits), or takes the argmax when
temperature == 0 (greedy). Notation: V vocabulary size.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How to choose each next token. The defaults sample from the model's own distribution."""

    temperature: float = 1.0  # 0 -> greedy (always the most likely token)
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    top_p: float = 1.0  # keep the smallest set whose probability reaches p; 1 = off
    min_p: float = 0.0  # keep tokens with p >= min_p * p_max; 0 = off
    repetition_penalty: float = 1.0  # CTRL / HF: > 1 discourages any token already seen; 1 = off
    frequency_penalty: float = 0.0  # OpenAI: subtract count * f from a generated token's logit
    presence_penalty: float = 0.0  # OpenAI: subtract p from every token generated at least once
    seed: int | None = None  # same seed, same tokens; None = a fresh random draw each time
    # OpenAI's logit_bias: (token id, number added to its logit) pairs; a dict {id: bias} is accepted
    logit_bias: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, valid: str) -> None:
            value = getattr(self, name)
            if not ok:
                raise ValueError(f"SamplingParams.{name}={value!r} is out of range; valid: {valid}")

        bias = self.logit_bias
        pairs = list(bias.items()) if isinstance(bias, dict) else list(bias) if isinstance(bias, (list, tuple)) else None
        ok = pairs is not None and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], int) and not isinstance(p[0], bool)
            and p[0] >= 0 and isinstance(p[1], (int, float)) and not isinstance(p[1], bool)
            and math.isfinite(p[1]) and -100 <= p[1] <= 100 for p in pairs)
        check("logit_bias", ok, "{token id: bias} with ids >= 0 and biases from -100 to 100")
        object.__setattr__(self, "logit_bias", tuple(sorted((int(i), float(b)) for i, b in pairs)))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "logit_bias":
                continue
            if f.name == "seed":
                ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
                check("seed", ok, "None or an int")
            elif f.name == "top_k":
                check("top_k", isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                      "an int >= 0 (0 = off)")
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                check(f.name, ok, "a finite number")
        check("temperature", self.temperature >= 0, ">= 0 (0 = greedy)")
        check("top_p", 0 < self.top_p <= 1, "0 < top_p <= 1 (1 = off)")
        check("min_p", 0 <= self.min_p <= 1, "0 <= min_p <= 1 (0 = off)")
        check("repetition_penalty", self.repetition_penalty > 0, "> 0 (1 = off, > 1 discourages repeats)")
        check("frequency_penalty", -2 <= self.frequency_penalty <= 2, "-2 .. 2, as in OpenAI's API (0 = off)")
        check("presence_penalty", -2 <= self.presence_penalty <= 2, "-2 .. 2, as in OpenAI's API (0 = off)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# ----------------------------------------------------------------------------------------------
# 0. logit bias


def apply_logit_bias(logits: torch.Tensor, bias: Sequence[tuple[int, float]]) -> torch.Tensor:
    """Add each (id, b) of ``bias`` to that token's logit, along the last dimension (V,) or (B, V).

    >>> apply_logit_bias(torch.tensor([1.0, 2.0, 3.0]), [(0, 5.0), (2, -100.0)])
    tensor([  6.,   2., -97.])
    """
    if not bias:
        return logits
    V = logits.shape[-1]
    bad = [i for i, _ in bias if i >= V]
    if bad:
        raise ValueError(f"logit_bias names token id {bad[0]}, outside the vocabulary of {V} tokens")
    ids = torch.tensor([i for i, _ in bias], dtype=torch.long, device=logits.device)
    out = logits.clone()
    out[..., ids] += torch.tensor([b for _, b in bias], dtype=logits.dtype, device=logits.device)
    return out


# ----------------------------------------------------------------------------------------------
# 1. penalties


def apply_repetition_penalty(logits: torch.Tensor, seen: Sequence[int], penalty: float) -> torch.Tensor:
    """CTRL's penalty, as HF applies it: a positive logit is divided by ``penalty``, a negative one
    multiplied, so a seen token becomes less likely either way (dividing a negative logit would
    raise it). Each seen token is penalised once, however often it appeared.

    >>> apply_repetition_penalty(torch.tensor([2.0, -1.0, 3.0]), [0, 1], 2.0)
    tensor([ 1., -2.,  3.])
    """
    if penalty == 1.0 or not seen:
        return logits
    ids = torch.tensor(sorted(set(seen)), dtype=torch.long, device=logits.device)
    picked = logits[ids]
    out = logits.clone()
    out[ids] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return out


def apply_frequency_presence(logits: torch.Tensor, generated: Sequence[int], frequency: float,
                             presence: float) -> torch.Tensor:
    """OpenAI's penalties: logit[j] -= count[j] * frequency + (count[j] > 0) * presence.

    >>> apply_frequency_presence(torch.zeros(3), [0, 0, 2], frequency=0.5, presence=1.0)
    tensor([-2.0000,  0.0000, -1.5000])
    """
    if (frequency == 0 and presence == 0) or not generated:
        return logits
    counts = Counter(generated)
    ids = torch.tensor(list(counts), dtype=torch.long, device=logits.device)
    n = torch.tensor(list(counts.values()), dtype=logits.dtype, device=logits.device)
    out = logits.clone()
    out[ids] -= n * frequency + presence  # every id here occurred at least once
    return out


# ----------------------------------------------------------------------------------------------
# 2. and 3. temperature and filters


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T): T < 1 sharpens, T > 1 flattens. T = 0 (greedy) leaves logits alone."""
    return logits if temperature in (0.0, 1.0) else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits; the rest become -inf. On ties at the k-th place the
    lower token ids win (a stable sort), so exactly k survive (nanoGPT's ``logits < v[-1]``
    keeps every tied token and so can keep more than k).

    >>> top_k_filter(torch.tensor([2.0, 1.0, 1.0, 0.0]), 2)
    tensor([2., 1., -inf, -inf])
    """
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    order = torch.sort(logits, descending=True, stable=True).indices  # (V,)
    out = torch.full_like(logits, float("-inf"))
    keep = order[:k]
    out[keep] = logits[keep]
    return out


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: sort by probability, keep tokens while the probability *before* each one is < p,
    so the kept set is the smallest whose total reaches p (the top token is always kept).

    probs [0.5, 0.3, 0.2], p = 0.7: cumulative before each = [0, 0.5, 0.8] -> keep the first two.
    """
    if p >= 1.0:
        return logits
    order = torch.sort(logits, descending=True, stable=True).indices  # (V,)
    probs = torch.softmax(logits[order].float(), dim=-1)  # (V,) sorted, largest first
    before = torch.cumsum(probs, dim=-1) - probs  # (V,) probability mass ahead of each token
    drop = order[before >= p]
    out = logits.clone()
    out[drop] = float("-inf")
    return out


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens with probability >= min_p * (the top token's probability); the threshold
    scales with the model's confidence. In logits: logit >= max_logit + log(min_p)."""
    if min_p <= 0.0:
        return logits
    probs = torch.softmax(logits.float(), dim=-1)  # (V,)
    out = logits.clone()
    out[probs < min_p * probs.max()] = float("-inf")
    return out


def process_logits(logits: torch.Tensor, params: SamplingParams, previous_ids: Sequence[int] = (), *,
                   prompt_ids: Sequence[int] = ()) -> torch.Tensor:
    """Raw next-token logits (V,) -> the logits ``sample_token`` draws from (V,), -inf where a
    filter excluded a token. ``previous_ids``: the tokens generated so far (counted by the
    frequency and presence penalties, as OpenAI and vLLM count the completion only);
    ``prompt_ids``: the prompt, which the repetition penalty also covers (as HF and vLLM do).
    With temperature 0 only the bias and the penalties apply (they change which token is the argmax).
    """
    if logits.dim() != 1:
        raise ValueError(f"process_logits takes one position's logits (V,), got shape {tuple(logits.shape)}")
    x = apply_logit_bias(logits.float(), params.logit_bias)
    x = apply_repetition_penalty(x, [*prompt_ids, *previous_ids], params.repetition_penalty)
    x = apply_frequency_presence(x, previous_ids, params.frequency_penalty, params.presence_penalty)
    if params.greedy:
        return x
    x = apply_temperature(x, params.temperature)
    x = top_k_filter(x, params.top_k)
    x = top_p_filter(x, params.top_p)
    return min_p_filter(x, params.min_p)


def sampling_probs(logits: torch.Tensor, params: SamplingParams, previous_ids: Sequence[int] = (), *,
                   prompt_ids: Sequence[int] = ()) -> torch.Tensor:
    """The distribution (V,) that ``sample_token`` draws from (one-hot on the argmax when greedy)."""
    x = process_logits(logits, params, previous_ids, prompt_ids=prompt_ids)
    if params.greedy:
        return torch.nn.functional.one_hot(x.argmax(), x.shape[-1]).float()
    return torch.softmax(x, dim=-1)


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None,
                 previous_ids: Sequence[int] = (), *, prompt_ids: Sequence[int] = ()) -> int:
    """One token id from the *raw* logits (V,): runs ``process_logits`` itself (do not pass
    logits that went through it already: the temperature would apply twice), then takes the
    argmax (temperature 0) or draws from the softmax with ``generator`` (seeded: reproducible).
    """
    x = process_logits(logits, params, previous_ids, prompt_ids=prompt_ids)
    if params.greedy:
        return int(x.argmax())
    probs = torch.softmax(x, dim=-1)  # (V,) zero where filtered
    return int(torch.multinomial(probs, 1, generator=generator))


def check_finite_logits(logits: torch.Tensor, step: int) -> None:
    """A NaN or infinite logit means the forward pass broke (NaN/inf weights, an overflow in
    half precision): sampling from it would fail with torch's cryptic message or return junk."""
    if not bool(torch.isfinite(logits).all()):
        what = "NaN" if bool(torch.isnan(logits).any()) else "infinite values"
        raise ValueError(
            f"the model's logits contain {what} at generation step {step}: its weights are probably corrupt "
            "(a NaN or inf in the checkpoint, a broken conversion, or a training run that diverged), or float16 "
            "overflowed; check the weights with torch.isfinite, or load them in float32")


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator of its own per request, so that one request's seed never depends on what
    other requests drew (the global RNG would)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # nondeterministic
    else:
        generator.manual_seed(seed)
    return generator
